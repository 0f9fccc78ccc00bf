//! Offsets instead of pointers: [`Region`], [`RelPtr`] and [`Offset`].
//!
//! Two processes map a segment at different base addresses, so an address
//! stored in shared memory means nothing to the other side. Data in a
//! segment therefore refers to other data either
//! * **self-relatively** with [`RelPtr<T>`]: "the target is `n` bytes from
//!   where this `RelPtr` itself lives" (Boost.Interprocess' `offset_ptr`),
//!   which stays valid however the whole segment is mapped; or
//! * **from the base** with [`Offset<T>`]: "the target is `n` bytes from the
//!   start of the region", for references handed between structures and
//!   processes.
//!
//! Resolving either always goes through a [`Region`] and is bounds- and
//! alignment-checked: an offset read from shared memory may have been
//! written by a buggy or hostile process, and a bad one must give an
//! [`OffsetError`], never a wild access. The returned pointer is derived
//! from the region's base pointer, so it carries the provenance of the
//! whole mapping (this is what makes the code correct under Miri's strict
//! provenance rules, too).

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use super::shm_safe::{ShmSafe, TypeLayout, fingerprint};

/// Why an offset could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OffsetError {
    /// The target range `[offset, offset + size)` is not inside the region.
    #[error(
        "offset {offset:#x} (+{size} bytes) lies outside the {len}-byte region: the data is corrupted"
    )]
    OutOfBounds {
        /// Offset from the region's base (may be negative for a `RelPtr`
        /// that points before the region).
        offset: i128,
        /// Size of the target type.
        size: usize,
        /// Length of the region.
        len: usize,
    },
    /// The target address is not aligned for the target type.
    #[error("offset {offset:#x} is not aligned to {align} bytes: the data is corrupted")]
    Misaligned {
        /// Offset from the region's base.
        offset: usize,
        /// Required alignment.
        align: usize,
    },
    /// The address to store is not inside the region at all.
    #[error("the address is not inside the region")]
    NotInRegion,
}

/// A contiguous range of memory that offsets are resolved against: a
/// mapped segment, the data area of one, or (in tests and under Miri) a
/// plain heap buffer.
///
/// A `Region` is a pair (base pointer, length); it does not own the
/// memory. Whoever creates it guarantees that the range stays mapped while
/// the `Region` is used.
#[derive(Clone, Copy)]
pub struct Region {
    base: NonNull<u8>,
    len: usize,
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("base", &self.base)
            .field("len", &self.len)
            .finish()
    }
}

impl Region {
    /// Describes `len` bytes at `base`.
    ///
    /// # Safety
    ///
    /// `base..base+len` must be one allocation (or mapping) that stays
    /// valid for reads (and for writes, if the region is used to write)
    /// for as long as this `Region` or any pointer resolved through it is
    /// used.
    pub const unsafe fn new(base: NonNull<u8>, len: usize) -> Region {
        Region { base, len }
    }

    /// Base address.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A sub-region of `len` bytes starting at `offset`, or an error if it
    /// does not fit.
    pub fn sub(&self, offset: usize, len: usize) -> Result<Region, OffsetError> {
        self.check_range(offset, len, 1)?;
        // SAFETY: the range was checked to lie inside this region; the
        // pointer is derived from our base, so it keeps its provenance.
        let base = unsafe { NonNull::new_unchecked(self.base.as_ptr().add(offset)) };
        Ok(Region { base, len })
    }

    fn check_range(&self, offset: usize, size: usize, align: usize) -> Result<(), OffsetError> {
        let fits = offset.checked_add(size).is_some_and(|end| end <= self.len);
        if !fits {
            return Err(OffsetError::OutOfBounds {
                offset: offset as i128,
                size,
                len: self.len,
            });
        }
        if (self.base.as_ptr() as usize).wrapping_add(offset) % align != 0 {
            return Err(OffsetError::Misaligned { offset, align });
        }
        Ok(())
    }

    /// Resolves `offset` (bytes from the base) to a pointer to a `T`
    /// lying entirely inside the region and correctly aligned.
    pub fn resolve<T>(&self, offset: usize) -> Result<NonNull<T>, OffsetError> {
        self.check_range(offset, size_of::<T>(), align_of::<T>())?;
        // SAFETY: checked to be inside the region, derived from its base.
        Ok(unsafe { NonNull::new_unchecked(self.base.as_ptr().add(offset).cast::<T>()) })
    }

    /// Resolves a slice of `count` `T`s starting at `offset`.
    pub fn resolve_slice<T>(&self, offset: usize, count: usize) -> Result<NonNull<T>, OffsetError> {
        let size = size_of::<T>()
            .checked_mul(count)
            .ok_or(OffsetError::OutOfBounds {
                offset: offset as i128,
                size: usize::MAX,
                len: self.len,
            })?;
        self.check_range(offset, size, align_of::<T>())?;
        // SAFETY: checked to be inside the region, derived from its base.
        Ok(unsafe { NonNull::new_unchecked(self.base.as_ptr().add(offset).cast::<T>()) })
    }

    /// The offset of `ptr` from the base, if `ptr` points inside the region.
    pub fn offset_of<T: ?Sized>(&self, ptr: *const T) -> Result<usize, OffsetError> {
        let addr = ptr.cast::<u8>() as usize;
        let base = self.base.as_ptr() as usize;
        if addr < base || addr - base >= self.len.max(1) {
            return Err(OffsetError::NotInRegion);
        }
        Ok(addr - base)
    }
}

/// A self-relative pointer: the distance in bytes from the `RelPtr` itself
/// to its target, valid in every mapping of the segment that holds both.
///
/// `0` is the null value (a `RelPtr` cannot point at itself), so zeroed
/// memory is a null `RelPtr`. The layout is one `i64`.
///
/// ```
/// use conduit::shm::{Region, RelPtr};
/// # use core::ptr::NonNull;
/// #[repr(C)]
/// struct Pair { value: u64, next: RelPtr<u64> }
/// let mut buf = vec![0u64; 4];
/// let len = buf.len() * 8;
/// // SAFETY: `buf` outlives `region` and nothing else touches it.
/// let region = unsafe { Region::new(NonNull::new(buf.as_mut_ptr().cast()).unwrap(), len) };
/// let pair = region.resolve::<Pair>(0).unwrap().as_ptr();
/// let target = region.resolve::<u64>(16).unwrap().as_ptr();
/// // SAFETY: both pointers are valid, aligned and unaliased.
/// unsafe {
///     *target = 42;
///     (*pair).next.set(&region, target).unwrap();
///     let got = (*pair).next.resolve(&region).unwrap().unwrap();
///     assert_eq!(*got.as_ptr(), 42);
/// }
/// ```
#[repr(transparent)]
pub struct RelPtr<T> {
    offset: i64,
    _target: PhantomData<T>,
}

impl<T> RelPtr<T> {
    /// The null pointer.
    pub const fn null() -> RelPtr<T> {
        RelPtr {
            offset: 0,
            _target: PhantomData,
        }
    }

    /// Whether this is null.
    pub fn is_null(&self) -> bool {
        self.offset == 0
    }

    /// The raw distance in bytes (0 for null).
    pub fn raw(&self) -> i64 {
        self.offset
    }

    /// Makes this point at `target`, which must lie inside `region`, as
    /// must this `RelPtr` itself. A null `target` stores null.
    pub fn set(&mut self, region: &Region, target: *const T) -> Result<(), OffsetError> {
        if target.is_null() {
            self.offset = 0;
            return Ok(());
        }
        let here = region.offset_of(self as *const Self)?;
        let there = region.offset_of(target)?;
        if here == there {
            // Self-pointing cannot be represented (0 is null).
            return Err(OffsetError::NotInRegion);
        }
        self.offset = there as i64 - here as i64;
        Ok(())
    }

    /// Sets this to null.
    pub fn set_null(&mut self) {
        self.offset = 0;
    }

    /// Resolves the target inside `region`: `Ok(None)` for null, an
    /// error if the target (all `size_of::<T>()` bytes of it) is outside
    /// the region or misaligned.
    ///
    /// This `RelPtr` must itself lie inside `region`; if it does not, the
    /// result is [`OffsetError::NotInRegion`].
    pub fn resolve(&self, region: &Region) -> Result<Option<NonNull<T>>, OffsetError> {
        if self.offset == 0 {
            return Ok(None);
        }
        let here = region.offset_of(self as *const Self)? as i128;
        let there = here + self.offset as i128;
        if there < 0 || there > region.len() as i128 {
            return Err(OffsetError::OutOfBounds {
                offset: there,
                size: size_of::<T>(),
                len: region.len(),
            });
        }
        region.resolve::<T>(there as usize).map(Some)
    }
}

impl<T> Default for RelPtr<T> {
    fn default() -> Self {
        RelPtr::null()
    }
}

impl<T> fmt::Debug for RelPtr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_null() {
            f.write_str("RelPtr(null)")
        } else {
            write!(f, "RelPtr({:+})", self.offset)
        }
    }
}

// SAFETY: a RelPtr is one i64 (every bit pattern valid; a bad value is
// caught when resolving), repr(transparent), and carries no address.
unsafe impl<T: ShmSafe> ShmSafe for RelPtr<T> {
    const LAYOUT: TypeLayout = TypeLayout {
        name: "RelPtr",
        size: 8,
        align: 8,
        fingerprint: fingerprint::word(
            fingerprint::bytes(fingerprint::start(), b"RelPtr"),
            // One hop only: `T` may contain this very pointer type (a
            // list node), and `T::LAYOUT` would then be a const cycle.
            T::SHALLOW_FINGERPRINT,
        ),
    };
    const SHALLOW_FINGERPRINT: u64 = fingerprint::bytes(fingerprint::start(), b"RelPtr");
}

/// An offset from the base of a [`Region`] to a `T`; `u64::MAX` is null.
///
/// Unlike [`RelPtr`] its meaning does not depend on where it is stored, so
/// it can be copied between structures and sent through queues.
#[repr(transparent)]
pub struct Offset<T> {
    raw: u64,
    _target: PhantomData<T>,
}

impl<T> Offset<T> {
    /// The null offset.
    pub const NULL: Offset<T> = Offset {
        raw: u64::MAX,
        _target: PhantomData,
    };

    /// An offset of `raw` bytes (not yet checked against any region).
    pub const fn new(raw: u64) -> Offset<T> {
        Offset {
            raw,
            _target: PhantomData,
        }
    }

    /// The offset of `ptr` inside `region`.
    pub fn of(region: &Region, ptr: *const T) -> Result<Offset<T>, OffsetError> {
        region.offset_of(ptr).map(|o| Offset::new(o as u64))
    }

    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.raw
    }

    /// Whether this is the null offset.
    pub const fn is_null(self) -> bool {
        self.raw == u64::MAX
    }

    /// Resolves against `region` with bounds and alignment checks;
    /// `Ok(None)` for null.
    pub fn resolve(self, region: &Region) -> Result<Option<NonNull<T>>, OffsetError> {
        if self.is_null() {
            return Ok(None);
        }
        let off = usize::try_from(self.raw).map_err(|_| OffsetError::OutOfBounds {
            offset: self.raw as i128,
            size: size_of::<T>(),
            len: region.len(),
        })?;
        region.resolve(off).map(Some)
    }
}

impl<T> Clone for Offset<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Offset<T> {}
impl<T> PartialEq for Offset<T> {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}
impl<T> Eq for Offset<T> {}
impl<T> fmt::Debug for Offset<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_null() {
            f.write_str("Offset(null)")
        } else {
            write!(f, "Offset({:#x})", self.raw)
        }
    }
}

// SAFETY: one u64, every value valid (checked on resolve), no address.
unsafe impl<T: ShmSafe> ShmSafe for Offset<T> {
    const LAYOUT: TypeLayout = TypeLayout {
        name: "Offset",
        size: 8,
        align: 8,
        fingerprint: fingerprint::word(
            fingerprint::bytes(fingerprint::start(), b"Offset"),
            // One hop only: `T` may contain this very pointer type (a
            // list node), and `T::LAYOUT` would then be a const cycle.
            T::SHALLOW_FINGERPRINT,
        ),
    };
    const SHALLOW_FINGERPRINT: u64 = fingerprint::bytes(fingerprint::start(), b"Offset");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-byte-aligned heap buffer as a region (works under Miri).
    fn buffer(words: usize) -> (Vec<u64>, Region) {
        let mut v = vec![0u64; words];
        let len = words * 8;
        // SAFETY: the Vec outlives every use of the region in these tests
        // (it is returned alongside and dropped last); nothing else
        // accesses it.
        let r = unsafe { Region::new(NonNull::new(v.as_mut_ptr().cast()).unwrap(), len) };
        (v, r)
    }

    #[test]
    fn relptr_round_trip_forward_and_backward() {
        let (_keep, region) = buffer(16);
        let a = region.resolve::<RelPtr<u64>>(64).unwrap().as_ptr();
        let before = region.resolve::<u64>(8).unwrap().as_ptr();
        let after = region.resolve::<u64>(120).unwrap().as_ptr();
        // SAFETY: all three pointers are in bounds, aligned, distinct.
        unsafe {
            *before = 1;
            *after = 2;
            (*a).set(&region, after).unwrap();
            assert_eq!((*a).raw(), 56);
            assert_eq!(*(*a).resolve(&region).unwrap().unwrap().as_ptr(), 2);
            (*a).set(&region, before).unwrap();
            assert_eq!((*a).raw(), -56);
            assert_eq!(*(*a).resolve(&region).unwrap().unwrap().as_ptr(), 1);
            (*a).set_null();
            assert!((*a).resolve(&region).unwrap().is_none());
        }
    }

    #[test]
    fn relptr_survives_a_copy_of_the_whole_region() {
        // The classic: copy the bytes elsewhere (another "mapping") and the
        // self-relative pointer still finds its target.
        let (mut first, region) = buffer(8);
        let p = region.resolve::<RelPtr<u64>>(0).unwrap().as_ptr();
        let t = region.resolve::<u64>(40).unwrap().as_ptr();
        // SAFETY: in bounds, aligned, distinct.
        unsafe {
            *t = 7;
            (*p).set(&region, t).unwrap();
        }
        let (mut second, region2) = buffer(8);
        second.copy_from_slice(&first);
        first.fill(0);
        let p2 = region2.resolve::<RelPtr<u64>>(0).unwrap();
        // SAFETY: p2 is in bounds and aligned; the RelPtr resolves inside
        // region2 (checked).
        unsafe {
            let got = p2.as_ref().resolve(&region2).unwrap().unwrap();
            assert_eq!(*got.as_ptr(), 7);
        }
    }

    #[test]
    fn corrupted_relptr_and_offsets_are_errors() {
        let (_keep, region) = buffer(8);
        let p = region.resolve::<RelPtr<u64>>(0).unwrap().as_ptr();
        // SAFETY: in bounds; we write raw distances as a hostile peer would.
        unsafe {
            (*p).offset = 1 << 40;
            assert!(matches!(
                (*p).resolve(&region),
                Err(OffsetError::OutOfBounds { .. })
            ));
            (*p).offset = -8;
            assert!(matches!(
                (*p).resolve(&region),
                Err(OffsetError::OutOfBounds { .. })
            ));
            (*p).offset = 3;
            assert!(matches!(
                (*p).resolve(&region),
                Err(OffsetError::Misaligned { .. })
            ));
            (*p).offset = 60; // 60..68 crosses the end
            assert!(matches!(
                (*p).resolve(&region),
                Err(OffsetError::OutOfBounds { .. })
            ));
        }
        assert!(matches!(
            Offset::<u64>::new(64).resolve(&region),
            Err(OffsetError::OutOfBounds { .. })
        ));
        assert!(matches!(
            Offset::<u64>::new(u64::MAX - 1).resolve(&region),
            Err(OffsetError::OutOfBounds { .. })
        ));
        assert!(Offset::<u64>::NULL.resolve(&region).unwrap().is_none());
        assert!(region.sub(60, 8).is_err());
        let outside = 0u64;
        assert_eq!(region.offset_of(&outside), Err(OffsetError::NotInRegion));
    }
}
