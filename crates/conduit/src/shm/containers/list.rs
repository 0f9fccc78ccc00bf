//! [`ShmList`]: a doubly linked list in shared memory.

use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use super::{ContainerError, Context, View, bad, cast, check_disjoint, generic_layout};
use crate::shm::relptr::Offset;
use crate::shm::shm_safe::{ShmSafe, TypeLayout};

/// One node of a [`ShmList`], allocated in the heap.
///
/// Layout (`#[repr(C)]`): `next: Offset` (u64), `prev: Offset` (u64),
/// `value: T`; `u64::MAX` is "none".
#[repr(C)]
pub struct ListNode<T> {
    next: Offset<ListNode<T>>,
    prev: Offset<ListNode<T>>,
    value: T,
}

// SAFETY: repr(C): two u64 offsets (validated on use) and a ShmSafe value.
unsafe impl<T: ShmSafe> ShmSafe for ListNode<T> {
    const LAYOUT: TypeLayout = generic_layout(
        "ListNode",
        size_of::<Self>(),
        align_of::<Self>(),
        &[T::LAYOUT.fingerprint],
    );
}

/// Identifies a node of a list (its offset in the region).
pub type NodeId<T> = Offset<ListNode<T>>;

/// A doubly linked list of `T` whose nodes live in the heap of a region.
///
/// Layout (`#[repr(C)]`, 24 bytes): `head: Offset<ListNode<T>>`,
/// `tail: Offset<ListNode<T>>`, `len: u64`.
///
/// Walks are bounded by `len`: a list whose links form a cycle or do not
/// point back ends in [`ContainerError::ListTooLong`] /
/// [`ContainerError::BrokenLink`], never in an endless loop.
#[repr(C)]
pub struct ShmList<T> {
    head: NodeId<T>,
    tail: NodeId<T>,
    len: u64,
    _marker: PhantomData<T>,
}

// SAFETY: repr(C): three u64 words, every value validated on use.
unsafe impl<T: ShmSafe> ShmSafe for ShmList<T> {
    const LAYOUT: TypeLayout = generic_layout(
        "ShmList",
        size_of::<Self>(),
        align_of::<Self>(),
        &[T::LAYOUT.fingerprint],
    );
}

impl<T> core::fmt::Debug for ShmList<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShmList")
            .field("head", &self.head)
            .field("tail", &self.tail)
            .field("len", &self.len)
            .finish()
    }
}

impl<T> Default for ShmList<T> {
    fn default() -> Self {
        ShmList {
            head: Offset::NULL,
            tail: Offset::NULL,
            len: 0,
            _marker: PhantomData,
        }
    }
}

/// Which end of the list.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Front,
    Back,
}

impl<T: ShmSafe> ShmList<T> {
    /// An empty list.
    pub fn new() -> ShmList<T> {
        ShmList::default()
    }

    /// Recorded number of nodes (not validated).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the recorded length is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn node(&self, view: &View, id: NodeId<T>) -> Result<NonNull<ListNode<T>>, ContainerError> {
        let region = view.region();
        let p = id
            .resolve(region)
            .map_err(bad("list node"))?
            .ok_or(ContainerError::BrokenLink { node: id.raw() })?;
        check_disjoint(
            region,
            self,
            id.raw(),
            size_of::<ListNode<T>>(),
            "list node",
        )?;
        view.check(id.raw(), size_of::<ListNode<T>>(), "list node")?;
        Ok(p)
    }

    fn links(&self, view: &View, id: NodeId<T>) -> Result<(NodeId<T>, NodeId<T>), ContainerError> {
        let p = self.node(view, id)?;
        // SAFETY: `p` is inside the region, aligned, not overlapping the
        // header; reading two u64 words by value creates no reference.
        unsafe {
            Ok((
                ptr::read(&raw const (*p.as_ptr()).next),
                ptr::read(&raw const (*p.as_ptr()).prev),
            ))
        }
    }

    fn set_next(
        &self,
        ctx: &Context<'_>,
        id: NodeId<T>,
        next: NodeId<T>,
    ) -> Result<(), ContainerError> {
        let p = self.node(&ctx.view(), id)?;
        // SAFETY: as in `links`, writing one u64 field.
        unsafe { ptr::write(&raw mut (*p.as_ptr()).next, next) };
        Ok(())
    }

    fn set_prev(
        &self,
        ctx: &Context<'_>,
        id: NodeId<T>,
        prev: NodeId<T>,
    ) -> Result<(), ContainerError> {
        let p = self.node(&ctx.view(), id)?;
        // SAFETY: as in `set_next`.
        unsafe { ptr::write(&raw mut (*p.as_ptr()).prev, prev) };
        Ok(())
    }

    fn check_ends(&self) -> Result<(), ContainerError> {
        if self.head.is_null() != self.tail.is_null() || self.head.is_null() != (self.len == 0) {
            return Err(ContainerError::BrokenLink {
                node: if self.head.is_null() {
                    self.tail.raw()
                } else {
                    self.head.raw()
                },
            });
        }
        Ok(())
    }

    fn push(
        &mut self,
        ctx: &mut Context<'_>,
        value: T,
        end: End,
    ) -> Result<NodeId<T>, ContainerError> {
        self.check_ends()?;
        let view = ctx.view();
        let region = ctx.region;
        let old = if end == End::Back {
            self.tail
        } else {
            self.head
        };
        if !old.is_null() {
            // The old end must really be an end.
            let (next, prev) = self.links(&view, old)?;
            let outer = if end == End::Back { next } else { prev };
            if !outer.is_null() {
                return Err(ContainerError::BrokenLink { node: old.raw() });
            }
        }
        let off =
            ctx.heap
                .allocate(&region, size_of::<ListNode<T>>(), align_of::<ListNode<T>>())?;
        let id: NodeId<T> = cast(off);
        let p = self.node(&view, id)?;
        let (next, prev) = if end == End::Back {
            (Offset::NULL, old)
        } else {
            (old, Offset::NULL)
        };
        // SAFETY: a fresh allocation large and aligned enough for a node.
        unsafe { ptr::write(p.as_ptr(), ListNode { next, prev, value }) };
        if old.is_null() {
            self.head = id;
            self.tail = id;
        } else if end == End::Back {
            self.set_next(ctx, old, id)?;
            self.tail = id;
        } else {
            self.set_prev(ctx, old, id)?;
            self.head = id;
        }
        self.len = self.len.saturating_add(1);
        Ok(id)
    }

    /// Appends `value` at the back; returns the new node's id.
    pub fn push_back(
        &mut self,
        ctx: &mut Context<'_>,
        value: T,
    ) -> Result<NodeId<T>, ContainerError> {
        self.push(ctx, value, End::Back)
    }

    /// Inserts `value` at the front; returns the new node's id.
    pub fn push_front(
        &mut self,
        ctx: &mut Context<'_>,
        value: T,
    ) -> Result<NodeId<T>, ContainerError> {
        self.push(ctx, value, End::Front)
    }

    /// Removes and returns the front value.
    pub fn pop_front(&mut self, ctx: &mut Context<'_>) -> Result<Option<T>, ContainerError> {
        self.check_ends()?;
        if self.head.is_null() {
            return Ok(None);
        }
        self.remove(ctx, self.head).map(Some)
    }

    /// Removes and returns the back value.
    pub fn pop_back(&mut self, ctx: &mut Context<'_>) -> Result<Option<T>, ContainerError> {
        self.check_ends()?;
        if self.tail.is_null() {
            return Ok(None);
        }
        self.remove(ctx, self.tail).map(Some)
    }

    /// Unlinks node `id`, frees it and returns its value. The node's links
    /// and its neighbours' links are checked first: a node of another list,
    /// a freed node or garbage is an error and changes nothing.
    pub fn remove(&mut self, ctx: &mut Context<'_>, id: NodeId<T>) -> Result<T, ContainerError> {
        self.check_ends()?;
        let view = ctx.view();
        let region = ctx.region;
        let broken = ContainerError::BrokenLink { node: id.raw() };
        let (next, prev) = self.links(&view, id)?;
        ctx.heap.usable_size(&region, cast(id))?;
        if prev.is_null() {
            if self.head != id {
                return Err(broken);
            }
        } else if prev == id || self.links(&view, prev)?.0 != id {
            return Err(broken);
        }
        if next.is_null() {
            if self.tail != id {
                return Err(broken);
            }
        } else if next == id || self.links(&view, next)?.1 != id {
            return Err(broken);
        }
        // All checked: unlink.
        if prev.is_null() {
            self.head = next;
        } else {
            self.set_next(ctx, prev, next)?;
        }
        if next.is_null() {
            self.tail = prev;
        } else {
            self.set_prev(ctx, next, prev)?;
        }
        self.len = self.len.saturating_sub(1);
        let p = self.node(&view, id)?;
        // SAFETY: the node is validated and now unlinked; the value is
        // moved out before the memory is freed.
        let value = unsafe { ptr::read(&raw const (*p.as_ptr()).value) };
        ctx.heap.deallocate(&region, cast(id))?;
        Ok(value)
    }

    /// Iterates front to back. Each item is checked (offset in range, back
    /// link agrees); the walk stops after the recorded length.
    pub fn iter<'a>(&'a self, view: impl Into<View>) -> ListIter<'a, T> {
        ListIter {
            list: self,
            view: view.into(),
            next: self.head,
            expect_back: Offset::NULL,
            seen: 0,
            forward: true,
            done: false,
        }
    }

    /// Iterates back to front, with the same checks as [`ShmList::iter`].
    pub fn iter_rev<'a>(&'a self, view: impl Into<View>) -> ListIter<'a, T> {
        ListIter {
            list: self,
            view: view.into(),
            next: self.tail,
            expect_back: Offset::NULL,
            seen: 0,
            forward: false,
            done: false,
        }
    }

    /// The id of the first node (front to back) whose value satisfies `pred`.
    pub fn find(
        &self,
        view: impl Into<View>,
        mut pred: impl FnMut(&T) -> bool,
    ) -> Result<Option<NodeId<T>>, ContainerError> {
        let mut it = self.iter(view);
        while let Some(item) = it.next_node() {
            let (id, v) = item?;
            if pred(v) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Removes and frees every node (bounded by the recorded length).
    pub fn free(&mut self, ctx: &mut Context<'_>) -> Result<(), ContainerError> {
        let n = self.len;
        for _ in 0..n {
            if self.pop_front(ctx)?.is_none() {
                break;
            }
        }
        self.check_ends()?;
        if !self.head.is_null() {
            return Err(ContainerError::ListTooLong { len: n });
        }
        Ok(())
    }
}

/// Iterator over a [`ShmList`]; yields `Err` once (then stops) when the
/// list is corrupted.
pub struct ListIter<'a, T> {
    list: &'a ShmList<T>,
    view: View,
    next: NodeId<T>,
    expect_back: NodeId<T>,
    seen: u64,
    forward: bool,
    done: bool,
}

impl<'a, T: ShmSafe> ListIter<'a, T> {
    fn fail(&mut self, e: ContainerError) -> Option<Result<(NodeId<T>, &'a T), ContainerError>> {
        self.done = true;
        Some(Err(e))
    }

    /// The next node's id and value.
    pub fn next_node(&mut self) -> Option<Result<(NodeId<T>, &'a T), ContainerError>> {
        if self.done {
            return None;
        }
        let len = self.list.len;
        if self.seen == len {
            self.done = true;
            if !self.next.is_null() {
                return self.fail(ContainerError::ListTooLong { len });
            }
            let end = if self.forward {
                self.list.tail
            } else {
                self.list.head
            };
            if end != self.expect_back {
                return self.fail(ContainerError::BrokenLink { node: end.raw() });
            }
            return None;
        }
        if self.next.is_null() {
            return self.fail(ContainerError::ListTooShort {
                len,
                found: self.seen,
            });
        }
        let id = self.next;
        let (next, prev) = match self.list.links(&self.view, id) {
            Ok(l) => l,
            Err(e) => return self.fail(e),
        };
        let (ahead, back) = if self.forward {
            (next, prev)
        } else {
            (prev, next)
        };
        if back != self.expect_back {
            return self.fail(ContainerError::BrokenLink { node: id.raw() });
        }
        let p = match self.list.node(&self.view, id) {
            Ok(p) => p,
            Err(e) => return self.fail(e),
        };
        self.expect_back = id;
        self.next = ahead;
        self.seen += 1;
        // SAFETY: the node is inside the region, aligned and not
        // overlapping the list header; `T: ShmSafe` accepts any bytes. The
        // reference lives as long as the shared borrow of the list.
        Some(Ok((id, unsafe { &(*p.as_ptr()).value })))
    }
}

impl<'a, T: ShmSafe> Iterator for ListIter<'a, T> {
    type Item = Result<&'a T, ContainerError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_node().map(|r| r.map(|(_, v)| v))
    }
}
