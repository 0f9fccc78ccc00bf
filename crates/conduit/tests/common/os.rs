//! Raw OS access for tests that need memory or descriptors conduit does
//! not hand out (a plain memfd, a second mapping of a foreign object, an
//! unsealed file), made with `rustix` directly. Each function makes the
//! system call its doc names and panics on failure: the tests only use it
//! to set the stage.

use std::os::fd::{AsFd, OwnedFd};

use rustix::io::Errno;

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`: an anonymous,
/// zero-filled, unsealed memory file.
pub fn memfd(name: &str) -> OwnedFd {
    use rustix::fs::MemfdFlags;
    rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .expect("memfd_create")
}

/// `ftruncate(fd, len)`.
pub fn truncate(fd: impl AsFd, len: u64) {
    rustix::fs::ftruncate(fd, len).expect("ftruncate");
}

/// `fallocate(fd, 0, 0, len)` (what `posix_fallocate` issues on tmpfs),
/// `EINTR` retried: sets the size to at least `len` and backs it with pages.
pub fn allocate(fd: impl AsFd, len: u64) {
    let fd = fd.as_fd();
    loop {
        match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), 0, len) {
            Err(Errno::INTR) => continue,
            other => return other.expect("fallocate"),
        }
    }
}

/// This process's effective user id (`geteuid`).
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// `shm_open(name, O_RDWR, 0)`: an existing POSIX shared-memory object.
pub fn shm_open(name: &str) -> Result<OwnedFd, Errno> {
    rustix::shm::open(name, rustix::shm::OFlags::RDWR, rustix::fs::Mode::empty())
}

/// `shm_open(name, O_CREAT | O_EXCL | O_RDWR, mode)`: a new POSIX
/// shared-memory object.
pub fn shm_create(name: &str, mode: u32) -> OwnedFd {
    use rustix::shm::OFlags;
    rustix::shm::open(
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
        rustix::fs::Mode::from_raw_mode(mode),
    )
    .expect("shm_open")
}

/// `shm_unlink(name)`.
pub fn shm_unlink(name: &str) -> Result<(), Errno> {
    rustix::shm::unlink(name)
}

/// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)`, removed
/// with `munmap` when dropped. Two mappings of one file have two base
/// addresses that alias the same memory.
pub struct Mapping {
    base: core::ptr::NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// Maps the first `len` (non-zero) bytes of `fd`, readable and
    /// writable, shared.
    pub fn shared(fd: impl AsFd, len: usize) -> Result<Mapping, Errno> {
        use rustix::mm::{MapFlags, ProtFlags};
        assert!(len > 0);
        // SAFETY: a null hint lets the kernel pick fresh addresses, so no
        // existing object is replaced; the range belongs to the new
        // Mapping until Drop unmaps it.
        let ptr = unsafe {
            rustix::mm::mmap(
                core::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )?
        };
        Ok(Mapping {
            base: core::ptr::NonNull::new(ptr.cast()).expect("mmap returned null"),
            len,
        })
    }

    /// Base address.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly what mmap returned; nothing borrows
        // from the range once its owner is dropped.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
