//! Raw system calls for the benchmark floors and for staging tests, made
//! with `rustix` directly and kept out of the `conduit` library on purpose.
//!
//! * A benchmark floor is only honest if it measures the OS call itself,
//!   not conduit's wrapper of it, so the baselines do not go through
//!   conduit (`conduit-bench`).
//! * Some tests need memory or descriptors conduit does not hand out (a
//!   plain memfd, a second mapping of a foreign object, an unsealed file, a
//!   hostile writer's raw mapping) (`crates/conduit/tests`).
//!
//! Each function makes exactly the call its doc names (retrying `EINTR`
//! where it says so) and panics on any other error, unless it returns a
//! `Result`: neither a benchmark nor a test's set-up has a use for a failed
//! system call.

use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::AtomicU32;
use std::os::fd::{AsFd, OwnedFd};

use rustix::io::Errno;

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`: an anonymous
/// memory file, zero-filled, with no name in any file system.
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
/// `EINTR` retried: backs the first `len` bytes with pages now.
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

/// A mapping made with `mmap` and removed with `munmap` when dropped.
pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)`: the
    /// first `len` (non-zero) bytes of `fd`, shared with every other
    /// mapping of it (two mappings of one file have two base addresses that
    /// alias the same memory).
    pub fn shared(fd: impl AsFd, len: usize) -> Result<Mapping, Errno> {
        use rustix::mm::{MapFlags, ProtFlags};
        assert!(len > 0);
        // SAFETY: a null hint lets the kernel pick fresh addresses, so no
        // existing object is replaced; the range belongs to the new Mapping
        // until Drop unmaps it.
        let ptr = unsafe {
            rustix::mm::mmap(
                core::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }?;
        Ok(Mapping {
            base: NonNull::new(ptr.cast()).expect("mmap returned null"),
            len,
        })
    }

    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE |
    /// MAP_ANONYMOUS)`: private zeroed memory.
    pub fn anonymous(len: usize) -> Mapping {
        use rustix::mm::{MapFlags, ProtFlags};
        // SAFETY: as in `shared`: fresh addresses chosen by the kernel.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                core::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }
        .expect("mmap");
        Mapping {
            base: NonNull::new(ptr.cast()).expect("mmap returned null"),
            len,
        }
    }

    /// Base address.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping is never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `madvise(base + offset, len, MADV_HUGEPAGE)` on a page-aligned
    /// sub-range; the result is returned, since huge pages are optional.
    pub fn advise_huge_pages(&self, offset: usize, len: usize) -> Result<(), Errno> {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        // SAFETY: the range lies inside this mapping (checked above);
        // MADV_HUGEPAGE changes how pages are backed, not their contents.
        unsafe {
            rustix::mm::madvise(
                self.as_ptr().add(offset).cast::<c_void>(),
                len,
                rustix::mm::Advice::LinuxHugepage,
            )
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly what mmap returned; nothing borrows
        // from the range once its owner is dropped.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast::<c_void>(), self.len) };
    }
}

/// `pipe2(O_CLOEXEC)`: `(read end, write end)`.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe2")
}

/// `read(fd, buf)`, `EINTR` retried. `Ok(0)` is end of file; other errors
/// (`EAGAIN` on a non-blocking descriptor) are the caller's.
pub fn read(fd: impl AsFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let fd = fd.as_fd();
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// `write(fd, buf)`, `EINTR` retried; may write fewer bytes than given.
pub fn write(fd: impl AsFd, buf: &[u8]) -> Result<usize, Errno> {
    let fd = fd.as_fd();
    loop {
        match rustix::io::write(fd, buf) {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// `fcntl(fd, F_GETFL)` then `fcntl(fd, F_SETFL, flags | O_NONBLOCK)`.
pub fn set_nonblocking(fd: impl AsFd) {
    let fd = fd.as_fd();
    let flags = rustix::fs::fcntl_getfl(fd).expect("F_GETFL");
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK).expect("F_SETFL");
}

/// `futex(word, FUTEX_WAIT, expected, NULL)` (shared, not
/// `FUTEX_PRIVATE`): sleeps while `*word == expected`. Returns on a wake-up,
/// a spurious one, a signal (`EINTR`) or a word that already changed
/// (`EAGAIN`); callers loop on their own condition.
pub fn futex_wait(word: &AtomicU32, expected: u32) {
    use rustix::thread::futex;
    match futex::wait(word, futex::Flags::empty(), expected, None) {
        Ok(()) | Err(Errno::AGAIN | Errno::INTR) => {}
        Err(e) => panic!("futex wait: {e}"),
    }
}

/// `futex(word, FUTEX_WAKE, count)` (shared): wakes at most `count`
/// sleepers.
pub fn futex_wake(word: &AtomicU32, count: u32) {
    use rustix::thread::futex;
    futex::wake(word, futex::Flags::empty(), count).expect("futex wake");
}
