//! Relocatable containers that live in a shared-memory region and keep
//! their storage in a [`HeapState`] in the same region.
//!
//! Every container is a small `#[repr(C)]` [`ShmSafe`](crate::ShmSafe) header that refers
//! to its storage by [`Offset`] (from the region base), never by pointer,
//! so it means the same thing in every process and every mapping of the
//! region. The header can itself live in the region (usually inside a
//! [`ShmBox`] or another container) or be copied around as a value: an
//! `Offset` does not depend on where it is stored.
//!
//! Operations that allocate take a [`Context`] (the region plus `&mut` to
//! the heap); read-only ones take just the [`Region`]. Containers have no
//! `Drop` (shared memory outlives processes): call `free` to give their
//! storage back to the heap.
//!
//! Another process may have written garbage into any header or node. Each
//! operation validates what it reads (offsets inside the region and
//! aligned, lengths within capacities, list links that point back, slot
//! states that exist, UTF-8) and returns a [`ContainerError`]; every walk
//! is bounded by the recorded length or capacity, so a corrupted cycle
//! ends in an error, never an endless loop.
//!
//! Concurrency: none here. Share a container between processes by
//! guarding it (and the heap) with a process-shared lock.
//!
//! # Layouts (`#[repr(C)]`, little-endian)
//!
//! | type | size | fields |
//! |---|---|---|
//! | [`ShmVec<T>`] | 24 | `data: Offset<T>` (`u64::MAX` = no storage), `len: u64`, `capacity: u64` (elements) |
//! | [`ShmString`] | 24 | one `ShmVec<u8>` |
//! | [`ShmBox<T>`] | 8 | `ptr: Offset<T>` (`u64::MAX` = empty) |
//! | [`ShmList<T>`] | 24 | `head`, `tail: Offset<ListNode<T>>`, `len: u64` |
//! | `ListNode<T>` | 16 + `T`, padded | `next`, `prev: Offset`, `value: T` |
//! | [`ShmHashMap<K, V>`] | 32 | `slots: Offset<Slot<K, V>>`, `capacity: u64` (a power of two, or 0), `len: u64`, `tombstones: u64` |
//! | `Slot<K, V>` | 8 + `K` + `V`, padded | `state: u64` (0 empty, 1 full, 2 deleted), `key: K`, `value: V` |
//!
//! Headers refer to storage by `Offset` (from the region base), not
//! `RelPtr` (self-relative): a header is made as a Rust value and then moved
//! into the region or returned, and an `Offset` stays valid wherever it is
//! copied; it is also what the heap hands out. Every layout carries a
//! `TypeLayout` fingerprint that folds in the element types'.
//!
//! Maps use open addressing with linear probing and tombstones; they grow
//! (×2) or rehash in place when `len + tombstones + 1 > ¾ · capacity`
//! (saturating: a garbage count cannot overflow it); minimum capacity 8.
//! Keys hash through `core::hash::Hash` into [`StableHasher`] (FNV-1a 64 +
//! avalanche, the same in every process; std's `RandomState` is per
//! process), so `K`'s `Hash` must be deterministic.
//!
//! # What is validated
//!
//! The storage offset resolves inside the region, aligned, with the whole
//! capacity inside; storage does not overlap the container's own header;
//! `len ≤ capacity`; storage lies inside the heap's block range
//! ([`ContainerError::OutsideHeap`]) whenever the heap is known: always for
//! writes (they take the [`Context`]) and for reads given `&ctx` or a
//! [`View`] with the heap, so a corrupted offset never makes a container
//! read or write the heap state. Maps: capacity a power of two, `len +
//! tombstones ≤ capacity`, slot states in {0, 1, 2}. Lists: `head`, `tail`
//! and `len` agree on emptiness, every step checks that the back link names
//! the previous node, the walk stops after `len` nodes
//! ([`ContainerError::ListTooLong`] if more follow,
//! [`ContainerError::ListTooShort`] if the chain ends early,
//! [`ContainerError::BrokenLink`] if the last node is not `tail`);
//! `remove(node)` checks the node is a live heap block and both neighbours
//! link back. Strings are UTF-8-checked on every `as_str`.
//!
//! Not guaranteed: integrity against a hostile writer (it can rewrite your
//! values or forge a consistent structure). The guarantee is that a reader
//! never touches memory outside the region, has no undefined behaviour,
//! never loops forever, and gets a named error for inconsistent metadata.
//! Reads given a bare [`Region`] (a process that maps read-only and never
//! takes the lock) check region bounds and overlap with the header, not the
//! heap range (see [`View`]). Corrupted headers can make two containers
//! share one block; writing one while holding a slice of the other is then
//! a Rust aliasing violation, though never an access outside the heap
//! (`extend_from_slice` and growth use `memmove` for that reason).
//! References returned by `as_slice` / `get` alias shared memory: hold the
//! lock while you hold them.
//!
//! # Crash consistency
//!
//! A lock holder may die at any instruction. Containers switch to new
//! storage first and free the old last (`ShmVec::reserve` allocates, copies,
//! stores the new offset, then frees; `free` of vectors and maps,
//! `ShmBox::take` and a map rehash forget before they free), store the
//! offset before the capacity, and publish a map slot's `FULL` state or a
//! vector's length only after the element is written. A death leaks one
//! block at worst. [`ShmList`] link and unlink update several links without
//! a commit point: a death in the middle can leave a list whose walk stops
//! early or reports an error (the heap stays usable).
//!
//! # Pitfalls
//!
//! * Containers have no `Drop`: call `free(ctx)`; a leaked header's storage
//!   stays allocated (visible in `HeapStats::allocations`).
//! * [`ShmList::remove`] takes a [`NodeId`] from `push_*` or `find`; an id
//!   of another list whose neighbours happen to link back is accepted, so
//!   pass only ids of the same list.

use core::hash::Hasher;

use super::alloc::{AllocError, HeapState};
use super::relptr::{Offset, OffsetError, Region};
use super::shm_safe::{TypeLayout, fingerprint};

mod boxed;
mod list;
mod map;
mod string;
mod vec;

pub use boxed::ShmBox;
pub use list::{ListIter, ListNode, NodeId, ShmList};
pub use map::{MapIter, ShmHashMap, Slot};
pub use string::ShmString;
pub use vec::ShmVec;

/// What a container operation needs: the region and the heap inside it.
pub struct Context<'a> {
    /// The region every offset is resolved against.
    pub region: Region,
    /// The heap that owns the containers' storage.
    pub heap: &'a mut HeapState,
}

impl<'a> Context<'a> {
    /// Bundles a region and its heap.
    pub fn new(region: Region, heap: &'a mut HeapState) -> Context<'a> {
        Context { region, heap }
    }

    /// A [`View`] that also knows the heap's range.
    pub fn view(&self) -> View {
        View::with_heap(self.region, self.heap)
    }
}

/// What read-only container operations resolve offsets against: the
/// region and, when known, the heap's block range inside it.
///
/// Every container's storage is a heap block, so with the heap range known
/// a corrupted offset that points at the heap state (or anything else
/// outside the heap) is refused with [`ContainerError::OutsideHeap`]. A
/// view made from a bare [`Region`] checks region bounds only: that is
/// memory-safe, but such a read may then observe the heap state's bytes,
/// which (if the same thread holds `&mut HeapState` in a [`Context`]) is an
/// aliasing violation in Rust's model. Pass `&ctx` when you have one.
#[derive(Debug, Clone, Copy)]
pub struct View {
    region: Region,
    heap: Option<(u64, u64)>,
}

impl View {
    /// A view that checks region bounds only.
    pub fn new(region: Region) -> View {
        View { region, heap: None }
    }

    /// A view that also requires storage to lie inside `heap`'s range.
    pub fn with_heap(region: Region, heap: &HeapState) -> View {
        View {
            region,
            heap: Some(heap.bounds()),
        }
    }

    /// The region.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Checks `[off, off+len)` is inside the heap range, when known.
    fn check(&self, off: u64, len: usize, what: &'static str) -> Result<(), ContainerError> {
        let Some((start, end)) = self.heap else {
            return Ok(());
        };
        let inside = off >= start && off.checked_add(len as u64).is_some_and(|e| e <= end);
        if !inside {
            return Err(ContainerError::OutsideHeap { what });
        }
        Ok(())
    }
}

impl From<&Region> for View {
    fn from(region: &Region) -> View {
        View::new(*region)
    }
}

impl From<&Context<'_>> for View {
    fn from(ctx: &Context<'_>) -> View {
        ctx.view()
    }
}

impl From<&mut Context<'_>> for View {
    fn from(ctx: &mut Context<'_>) -> View {
        ctx.view()
    }
}

impl From<&View> for View {
    fn from(view: &View) -> View {
        *view
    }
}

/// Why a container operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// The heap could not allocate or free (out of memory, corrupted heap,
    /// storage offset that is not a heap block).
    #[error("heap operation failed")]
    Alloc(#[from] AllocError),
    /// A stored offset does not resolve inside the region.
    #[error("the {what} offset is invalid: the container is corrupted")]
    BadOffset {
        /// Which offset.
        what: &'static str,
        /// The resolution error.
        #[source]
        source: OffsetError,
    },
    /// The storage recorded in the header overlaps the header itself.
    #[error("the {what} storage overlaps its own header: the container is corrupted")]
    Overlap {
        /// Which container part.
        what: &'static str,
    },
    /// The recorded length exceeds the recorded capacity.
    #[error("length {len} exceeds capacity {capacity}: the container is corrupted")]
    LengthExceedsCapacity {
        /// Recorded length.
        len: u64,
        /// Recorded capacity.
        capacity: u64,
    },
    /// The requested size does not fit in memory at all.
    #[error("capacity overflow")]
    CapacityOverflow,
    /// The bytes of a string are not UTF-8 (another process wrote garbage).
    #[error("the string is not valid UTF-8")]
    InvalidUtf8(#[source] core::str::Utf8Error),
    /// A list has more nodes than its recorded length (for example a cycle).
    #[error("the list has more than its recorded {len} nodes (a cycle?)")]
    ListTooLong {
        /// Recorded length.
        len: u64,
    },
    /// A list ends before its recorded length.
    #[error("the list ends after {found} of its recorded {len} nodes")]
    ListTooShort {
        /// Recorded length.
        len: u64,
        /// Nodes actually found.
        found: u64,
    },
    /// A list node's back link does not name its predecessor, or head/tail
    /// disagree with the nodes.
    #[error("broken link at list node {node:#x}")]
    BrokenLink {
        /// Offset of the node.
        node: u64,
    },
    /// A hash-map slot has a state byte that is none of empty/full/deleted.
    #[error("hash map slot {index} has invalid state {state}")]
    BadSlotState {
        /// Slot index.
        index: u64,
        /// The state found.
        state: u64,
    },
    /// A hash map's capacity is not a power of two.
    #[error("hash map capacity {capacity} is not a power of two")]
    BadCapacity {
        /// Recorded capacity.
        capacity: u64,
    },
    /// Storage that is about to be written lies outside the heap's range
    /// (for example on top of the heap state): the container is corrupted.
    #[error("the {what} storage lies outside the heap: the container is corrupted")]
    OutsideHeap {
        /// Which container part.
        what: &'static str,
    },
    /// A box is null (never allocated or already freed).
    #[error("the box is empty")]
    Empty,
}

fn bad(what: &'static str) -> impl FnOnce(OffsetError) -> ContainerError {
    move |source| ContainerError::BadOffset { what, source }
}

/// Checks that `[off, off+len)` does not overlap the header at `header`
/// (`header_len` bytes), when the header lies inside the region at all.
fn check_disjoint<H>(
    region: &Region,
    header: *const H,
    off: u64,
    len: usize,
    what: &'static str,
) -> Result<(), ContainerError> {
    if let Ok(h) = region.offset_of(header) {
        let h = h as u64;
        let end = off.saturating_add(len.max(1) as u64);
        if off < h + size_of::<H>() as u64 && h < end {
            return Err(ContainerError::Overlap { what });
        }
    }
    Ok(())
}

/// `TypeLayout` of a generic container `name<params…>`.
const fn generic_layout(
    name: &'static str,
    size: usize,
    align: usize,
    params: &[u64],
) -> TypeLayout {
    let mut h = fingerprint::bytes(fingerprint::start(), name.as_bytes());
    h = fingerprint::word(h, size as u64);
    h = fingerprint::word(h, align as u64);
    let mut i = 0;
    while i < params.len() {
        h = fingerprint::word(h, params[i]);
        i += 1;
    }
    TypeLayout {
        name,
        size,
        align,
        fingerprint: h,
    }
}

/// FNV-1a, 64-bit: a hasher that gives the same result in every process
/// and every run (std's `RandomState` is seeded per process, so two
/// processes would look for the same key in different slots).
///
/// Combined with a key type whose `Hash` impl is deterministic (all
/// integer types, arrays, and `#[derive(Hash)]` over them are).
#[derive(Debug, Clone, Copy)]
pub struct StableHasher(u64);

impl StableHasher {
    /// A fresh hasher.
    pub const fn new() -> StableHasher {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher::new()
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        // A final avalanche so that the low bits (the slot index) depend on
        // every input byte.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    }
}

/// Converts a u64 read from shared memory to a usize length.
fn to_usize(v: u64) -> Result<usize, ContainerError> {
    usize::try_from(v).map_err(|_| ContainerError::CapacityOverflow)
}

/// The offset as a typed `Offset<T>`.
fn cast<T, U>(o: Offset<T>) -> Offset<U> {
    Offset::new(o.raw())
}

#[cfg(test)]
mod tests;
