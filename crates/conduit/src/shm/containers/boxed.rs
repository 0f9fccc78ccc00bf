//! [`ShmBox`]: one value in the heap of a region.

use core::ptr::{self, NonNull};

use super::{ContainerError, Context, View, bad, cast, check_disjoint, generic_layout};
use crate::shm::alloc::commit_point;
use crate::shm::relptr::Offset;
use crate::shm::shm_safe::{ShmSafe, TypeLayout};

/// One `T` allocated in the heap of a region, owned by this handle.
///
/// Layout: one `Offset<T>` (u64; `u64::MAX` = empty). Unlike
/// `std::boxed::Box` it is not freed on drop (shared memory outlives the
/// process): call [`ShmBox::free`].
#[repr(C)]
pub struct ShmBox<T> {
    ptr: Offset<T>,
}

// SAFETY: repr(C) around one Offset (u64), validated on every use.
unsafe impl<T: ShmSafe> ShmSafe for ShmBox<T> {
    const LAYOUT: TypeLayout = generic_layout(
        "ShmBox",
        size_of::<Self>(),
        align_of::<Self>(),
        &[T::LAYOUT.fingerprint],
    );
}

impl<T> core::fmt::Debug for ShmBox<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("ShmBox").field(&self.ptr).finish()
    }
}

impl<T: ShmSafe> ShmBox<T> {
    /// An empty box.
    pub const fn empty() -> ShmBox<T> {
        ShmBox { ptr: Offset::NULL }
    }

    /// Allocates room for `value` in the heap and moves it there.
    pub fn new(ctx: &mut Context<'_>, value: T) -> Result<ShmBox<T>, ContainerError> {
        let off = ctx
            .heap
            .allocate(&ctx.region, size_of::<T>(), align_of::<T>())?;
        let p = ctx
            .region
            .resolve::<T>(off.raw() as usize)
            .map_err(bad("box"))?;
        // SAFETY: a fresh allocation of size_of::<T>() bytes, aligned.
        unsafe { ptr::write(p.as_ptr(), value) };
        Ok(ShmBox { ptr: cast(off) })
    }

    /// A box that owns the value at `offset` (for example one read from
    /// a well-known place in a segment). It is validated on use.
    pub const fn from_offset(offset: Offset<T>) -> ShmBox<T> {
        ShmBox { ptr: offset }
    }

    /// The offset of the value.
    pub fn offset(&self) -> Offset<T> {
        self.ptr
    }

    /// Whether the box is empty.
    pub fn is_empty(&self) -> bool {
        self.ptr.is_null()
    }

    fn target(&self, view: &View) -> Result<NonNull<T>, ContainerError> {
        let region = view.region();
        let p = self
            .ptr
            .resolve(region)
            .map_err(bad("box"))?
            .ok_or(ContainerError::Empty)?;
        check_disjoint(region, self, self.ptr.raw(), size_of::<T>(), "box")?;
        view.check(self.ptr.raw(), size_of::<T>(), "box")?;
        Ok(p)
    }

    /// The value.
    pub fn get(&self, view: impl Into<View>) -> Result<&T, ContainerError> {
        let p = self.target(&view.into())?;
        // SAFETY: inside the region, aligned, not overlapping this handle;
        // every bit pattern is a valid `T: ShmSafe`.
        Ok(unsafe { &*p.as_ptr() })
    }

    /// The value, mutably.
    pub fn get_mut<'a>(&'a mut self, ctx: &Context<'_>) -> Result<&'a mut T, ContainerError> {
        let p = self.target(&ctx.view())?;
        // SAFETY: as in `get`, and `&mut self` makes this the only access
        // through this box.
        Ok(unsafe { &mut *p.as_ptr() })
    }

    /// Moves the value out and frees its memory; the box becomes empty.
    pub fn take(&mut self, ctx: &mut Context<'_>) -> Result<T, ContainerError> {
        let p = self.target(&ctx.view())?;
        // Check the block before reading, so a bad offset changes nothing.
        ctx.heap.usable_size(&ctx.region, cast(self.ptr))?;
        // SAFETY: validated as in `get`; the memory is freed right after.
        let value = unsafe { ptr::read(p.as_ptr()) };
        // Empty the box first (a death before the free leaks the block
        // rather than leaving the box on freed memory).
        let old = self.ptr;
        self.ptr = Offset::NULL;
        commit_point();
        ctx.heap.deallocate(&ctx.region, cast(old))?;
        Ok(value)
    }

    /// Frees the value's memory; the box becomes empty.
    pub fn free(&mut self, ctx: &mut Context<'_>) -> Result<(), ContainerError> {
        self.take(ctx).map(drop)
    }
}
