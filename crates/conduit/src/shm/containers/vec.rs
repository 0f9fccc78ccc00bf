//! [`ShmVec`]: a growable array in shared memory.

use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use super::{ContainerError, Context, View, bad, cast, check_disjoint, generic_layout, to_usize};
use crate::shm::alloc::commit_point;
use crate::shm::relptr::Offset;
use crate::shm::shm_safe::{ShmSafe, TypeLayout};

/// A growable array of `T` whose elements live in the heap of a region.
///
/// Layout (`#[repr(C)]`, 24 bytes): `data: Offset<T>` (u64, `u64::MAX` =
/// no storage), `len: u64`, `capacity: u64` (elements).
///
/// ```
/// # use conduit::shm::{Context, HeapState, Region, ShmVec};
/// # let mut buf = vec![0u64; 4096];
/// # let len = buf.len() * 8;
/// # // SAFETY: `buf` outlives `region` and nothing else uses it.
/// # let region = unsafe { Region::new(core::ptr::NonNull::new(buf.as_mut_ptr().cast()).unwrap(), len) };
/// # let mut heap = HeapState::zeroed();
/// # heap.init(&region, 0, len).unwrap();
/// let mut ctx = Context::new(region, &mut heap);
/// let mut v = ShmVec::<u32>::new();
/// v.push(&mut ctx, 7).unwrap();
/// assert_eq!(v.as_slice(&ctx).unwrap(), &[7]);
/// v.free(&mut ctx).unwrap();
/// ```
#[repr(C)]
pub struct ShmVec<T> {
    data: Offset<T>,
    len: u64,
    capacity: u64,
    _marker: PhantomData<T>,
}

// SAFETY: repr(C), three u64 words (PhantomData is zero-sized); every bit
// pattern is valid because every use validates the offset and lengths.
unsafe impl<T: ShmSafe> ShmSafe for ShmVec<T> {
    const LAYOUT: TypeLayout = generic_layout(
        "ShmVec",
        size_of::<Self>(),
        align_of::<Self>(),
        &[T::LAYOUT.fingerprint],
    );
}

impl<T> Default for ShmVec<T> {
    fn default() -> Self {
        ShmVec {
            data: Offset::NULL,
            len: 0,
            capacity: 0,
            _marker: PhantomData,
        }
    }
}

impl<T> core::fmt::Debug for ShmVec<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShmVec")
            .field("data", &self.data)
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<T: ShmSafe> ShmVec<T> {
    /// An empty vector with no storage.
    pub const fn new() -> ShmVec<T> {
        ShmVec {
            data: Offset::NULL,
            len: 0,
            capacity: 0,
            _marker: PhantomData,
        }
    }

    /// The recorded number of elements (not validated).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the recorded length is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The recorded capacity in elements (not validated).
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Offset of the element storage (null when there is none).
    pub fn data_offset(&self) -> Offset<T> {
        self.data
    }

    /// Validates the header and returns (storage pointer, len, capacity).
    fn storage(&self, view: &View) -> Result<(NonNull<T>, usize, usize), ContainerError> {
        let region = view.region();
        if self.len > self.capacity {
            return Err(ContainerError::LengthExceedsCapacity {
                len: self.len,
                capacity: self.capacity,
            });
        }
        let len = to_usize(self.len)?;
        let cap = to_usize(self.capacity)?;
        if self.data.is_null() {
            if cap != 0 {
                return Err(ContainerError::LengthExceedsCapacity {
                    len: self.len,
                    capacity: 0,
                });
            }
            return Ok((NonNull::dangling(), 0, 0));
        }
        let off = to_usize(self.data.raw())?;
        let p = region
            .resolve_slice::<T>(off, cap)
            .map_err(bad("vector storage"))?;
        let bytes = size_of::<T>()
            .checked_mul(cap)
            .ok_or(ContainerError::CapacityOverflow)?;
        check_disjoint(region, self, self.data.raw(), bytes, "vector")?;
        view.check(self.data.raw(), bytes, "vector")?;
        Ok((p, len, cap))
    }

    fn storage_mut(&self, ctx: &Context<'_>) -> Result<(NonNull<T>, usize, usize), ContainerError> {
        self.storage(&ctx.view())
    }

    /// The elements, after validating the header (pass `&ctx` or a
    /// [`View`] with the heap for the full check; a `&Region` checks
    /// region bounds only).
    pub fn as_slice(&self, view: impl Into<View>) -> Result<&[T], ContainerError> {
        let (p, len, _) = self.storage(&view.into())?;
        // SAFETY: `p..p+len` is inside the region (checked), aligned, and
        // does not overlap this header. The region's bytes are initialised
        // memory and `T: ShmSafe` is valid for every bit pattern. The
        // lifetime is tied to `&self`: mutation needs `&mut self`.
        Ok(unsafe { core::slice::from_raw_parts(p.as_ptr(), len) })
    }

    /// The elements, mutably.
    pub fn as_mut_slice<'a>(
        &'a mut self,
        ctx: &Context<'_>,
    ) -> Result<&'a mut [T], ContainerError> {
        let (p, len, _) = self.storage_mut(ctx)?;
        // SAFETY: as in `as_slice`; `&mut self` makes this the only access
        // through this vector.
        Ok(unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), len) })
    }

    /// Element `index`, or `None` past the end.
    pub fn get(&self, view: impl Into<View>, index: usize) -> Result<Option<&T>, ContainerError> {
        Ok(self.as_slice(view)?.get(index))
    }

    /// An iterator over the elements (validated once, up front).
    pub fn iter<'a>(
        &'a self,
        view: impl Into<View>,
    ) -> Result<core::slice::Iter<'a, T>, ContainerError> {
        Ok(self.as_slice(view)?.iter())
    }

    /// Makes room for at least `additional` more elements, reallocating
    /// the storage in the heap (amortised doubling).
    pub fn reserve(
        &mut self,
        ctx: &mut Context<'_>,
        additional: usize,
    ) -> Result<(), ContainerError> {
        let (_, len, cap) = self.storage_mut(ctx)?;
        let want = len
            .checked_add(additional)
            .ok_or(ContainerError::CapacityOverflow)?;
        if want <= cap {
            return Ok(());
        }
        let new_cap = want.max(cap.saturating_mul(2)).max(4);
        let bytes = new_cap
            .checked_mul(size_of::<T>())
            .ok_or(ContainerError::CapacityOverflow)?;
        let align = align_of::<T>();
        // Allocate, copy, switch, and only then free the old storage: a
        // process killed at any point leaves the vector on valid storage
        // (at worst one block leaks). `reallocate` would free the old
        // block before the vector points at the new one.
        let new = ctx.heap.allocate(&ctx.region, bytes, align)?;
        let old = self.data;
        if !old.is_null() {
            let (p, _, _) = self.storage_mut(ctx)?;
            let dst = ctx
                .region
                .resolve_slice::<T>(new.raw() as usize, new_cap)
                .map_err(bad("vector storage"))?;
            // SAFETY: both ranges are validated and inside the region;
            // `len <= cap < new_cap` elements fit in both. They are two
            // distinct heap blocks unless another process scribbled on the
            // vector's pointer (found by the `containers` fuzz target):
            // `ptr::copy` (memmove) is defined for overlapping ranges too,
            // so garbage in gives garbage out, never undefined behaviour.
            unsafe { ptr::copy(p.as_ptr(), dst.as_ptr(), len) };
        }
        commit_point();
        // Storage before capacity: a death in between leaves a capacity
        // smaller than the (new, larger) storage, which is safe.
        self.data = cast(new);
        commit_point();
        self.capacity = new_cap as u64;
        commit_point();
        if !old.is_null() {
            ctx.heap.deallocate(&ctx.region, cast(old))?;
        }
        Ok(())
    }

    /// Appends `value`, growing the storage if needed.
    pub fn push(&mut self, ctx: &mut Context<'_>, value: T) -> Result<(), ContainerError> {
        self.reserve(ctx, 1)?;
        let (p, len, _) = self.storage_mut(ctx)?;
        // SAFETY: `len < capacity` after reserve, so slot `len` is inside
        // the validated storage.
        unsafe { ptr::write(p.as_ptr().add(len), value) };
        commit_point();
        self.len += 1;
        Ok(())
    }

    /// Appends a copy of every element of `items` (one reservation, one
    /// copy).
    pub fn extend_from_slice(
        &mut self,
        ctx: &mut Context<'_>,
        items: &[T],
    ) -> Result<(), ContainerError>
    where
        T: Copy,
    {
        self.reserve(ctx, items.len())?;
        let (p, len, _) = self.storage_mut(ctx)?;
        // SAFETY: `len + items.len() <= capacity` after reserve, so the
        // destination is inside the validated storage. `copy` (memmove)
        // stays correct even if corrupted metadata made two containers
        // share storage and `items` came from the other one.
        unsafe { ptr::copy(items.as_ptr(), p.as_ptr().add(len), items.len()) };
        commit_point();
        self.len += items.len() as u64;
        Ok(())
    }

    /// Removes and returns the last element.
    pub fn pop(&mut self, view: impl Into<View>) -> Result<Option<T>, ContainerError> {
        let (p, len, _) = self.storage(&view.into())?;
        if len == 0 {
            return Ok(None);
        }
        self.len -= 1;
        // SAFETY: index `len - 1` is inside the validated storage; the
        // element is moved out and its slot is now past the end.
        Ok(Some(unsafe { ptr::read(p.as_ptr().add(len - 1)) }))
    }

    /// Sets the length to 0 (keeps the storage).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Returns the storage to the heap; the vector becomes empty.
    pub fn free(&mut self, ctx: &mut Context<'_>) -> Result<(), ContainerError> {
        // Forget the storage first: a death before the free leaks it
        // rather than leaving the vector on freed memory.
        let old = self.data;
        *self = ShmVec::new();
        commit_point();
        if !old.is_null() {
            ctx.heap.deallocate(&ctx.region, cast(old))?;
        }
        Ok(())
    }
}
