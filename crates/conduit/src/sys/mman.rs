//! Memory mappings (`mmap`, `munmap`, `mprotect`, `madvise`).

use core::ffi::c_void;
use core::ptr::NonNull;
use std::os::fd::AsFd;

use rustix::mm::{Advice, MapFlags, ProtFlags};

use super::Result;

/// Access a mapping allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// `PROT_READ`.
    ReadOnly,
    /// `PROT_READ | PROT_WRITE`.
    ReadWrite,
}

impl Protection {
    fn prot(self) -> ProtFlags {
        match self {
            Protection::ReadOnly => ProtFlags::READ,
            Protection::ReadWrite => ProtFlags::READ | ProtFlags::WRITE,
        }
    }
}

/// Advice for [`Mapping::advise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advise {
    /// `MADV_HUGEPAGE`: back the range with transparent huge pages.
    HugePage,
}

/// A shared mapping of a file, unmapped when dropped (`mmap(MAP_SHARED)`).
///
/// Each `Mapping` has its own base address: mapping the same file twice
/// gives two addresses that alias the same memory.
#[derive(Debug)]
pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a Mapping is an address range owned by this value; the memory
// itself is shared memory whose access is synchronised by the types built
// on top of it (atomics, locks), so moving the owner between threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only hands out raw pointers and the length; every
// dereference happens in code that argues its own synchronisation.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `mmap(NULL, len, prot, MAP_SHARED, fd, 0)`: maps the first `len`
    /// bytes of `fd`. `len` must be non-zero.
    #[doc(alias = "mmap")]
    pub fn map(fd: impl AsFd, len: usize, protection: Protection) -> Result<Mapping> {
        if len == 0 {
            return Err(super::Errno::INVAL);
        }
        // SAFETY: a null hint lets the kernel choose fresh addresses, so no
        // existing Rust object is replaced; the returned range belongs to
        // the new Mapping alone until it is unmapped in Drop.
        let ptr = unsafe {
            rustix::mm::mmap(
                core::ptr::null_mut(),
                len,
                protection.prot(),
                MapFlags::SHARED,
                fd,
                0,
            )?
        };
        let base = NonNull::new(ptr.cast::<u8>()).ok_or(super::Errno::FAULT)?;
        Ok(Mapping { base, len })
    }

    /// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS)`:
    /// private zeroed memory (used for tests and process-local buffers).
    #[doc(alias = "mmap")]
    pub fn anonymous(len: usize) -> Result<Mapping> {
        if len == 0 {
            return Err(super::Errno::INVAL);
        }
        // SAFETY: as in `map`: fresh addresses chosen by the kernel.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                core::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )?
        };
        let base = NonNull::new(ptr.cast::<u8>()).ok_or(super::Errno::FAULT)?;
        Ok(Mapping { base, len })
    }

    /// Base address of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `madvise(base + offset, len, advice)` on a page-aligned sub-range.
    #[doc(alias = "madvise")]
    pub fn advise(&self, offset: usize, len: usize, advice: Advise) -> Result<()> {
        self.check_range(offset, len)?;
        let advice = match advice {
            Advise::HugePage => Advice::LinuxHugepage,
        };
        // SAFETY: the range lies inside this mapping; none of the advices
        // offered changes the contents of shared memory (DONTNEED on a
        // shared mapping only drops page-table entries).
        unsafe { rustix::mm::madvise(self.as_ptr().add(offset).cast::<c_void>(), len, advice) }
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        let page = super::page_size();
        let end = offset.checked_add(len).ok_or(super::Errno::INVAL)?;
        if offset % page != 0 || end > self.len {
            return Err(super::Errno::INVAL);
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: base/len describe exactly the range mmap returned; nothing
        // can borrow from it after the owner is dropped.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast::<c_void>(), self.len) };
    }
}
