//! Pipes, FIFOs and byte-stream I/O on any file descriptor: `pipe2`,
//! `F_SETPIPE_SZ`, `mkfifo`, `read`/`write`/`readv`/`writev` with `EINTR`
//! retried, `vmsplice`, `splice`, and the `SIGPIPE` disposition.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::pipe::{IoSliceRaw, PipeFlags, SpliceFlags};

use super::{Errno, Result};

/// Retries `op` while it fails with `EINTR`.
fn retry<T>(mut op: impl FnMut() -> Result<T>) -> Result<T> {
    loop {
        match op() {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// `pipe2(O_CLOEXEC)`: a new anonymous pipe, `(read end, write end)`.
#[doc(alias = "pipe2")]
pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
}

/// `fcntl(fd, F_GETPIPE_SZ)`: capacity of a pipe in bytes.
#[doc(alias = "F_GETPIPE_SZ")]
pub fn size(fd: impl AsFd) -> Result<usize> {
    rustix::pipe::fcntl_getpipe_size(fd)
}

/// `fcntl(fd, F_SETPIPE_SZ, len)`: sets the capacity of a pipe; the kernel
/// rounds up to a power-of-two number of pages and returns the new size.
/// `EPERM` when an unprivileged process asks for more than
/// [`max_size`]; `EBUSY` when the pipe holds more data than `len`.
#[doc(alias = "F_SETPIPE_SZ")]
pub fn set_size(fd: impl AsFd, len: usize) -> Result<usize> {
    rustix::pipe::fcntl_setpipe_size(fd, len)
}

/// The largest pipe an unprivileged process may ask for:
/// `/proc/sys/fs/pipe-max-size`.
#[doc(alias = "pipe-max-size")]
pub fn max_size() -> Result<usize> {
    let text = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
    text.trim().parse().map_err(|_| Errno::INVAL)
}

/// `read(fd, buf)`, retried on `EINTR`. `Ok(0)` is end of file.
#[doc(alias = "read(2)")]
pub fn read(fd: impl AsFd, buf: &mut [u8]) -> Result<usize> {
    let fd = fd.as_fd();
    retry(|| rustix::io::read(fd, &mut *buf))
}

/// `write(fd, buf)`, retried on `EINTR`. May write fewer bytes than given.
#[doc(alias = "write(2)")]
pub fn write(fd: impl AsFd, buf: &[u8]) -> Result<usize> {
    let fd = fd.as_fd();
    retry(|| rustix::io::write(fd, buf))
}

/// `readv(fd, bufs)`, retried on `EINTR`.
#[doc(alias = "readv")]
pub fn read_vectored(fd: impl AsFd, bufs: &mut [IoSliceMut<'_>]) -> Result<usize> {
    let fd = fd.as_fd();
    retry(|| rustix::io::readv(fd, bufs))
}

/// `writev(fd, bufs)`, retried on `EINTR`. May write fewer bytes than given.
#[doc(alias = "writev")]
pub fn write_vectored(fd: impl AsFd, bufs: &[IoSlice<'_>]) -> Result<usize> {
    let fd = fd.as_fd();
    retry(|| rustix::io::writev(fd, bufs))
}

/// `writev(fd, iov)` over raw ranges, retried on `EINTR`: for writing the
/// bytes of a value that may contain padding (which must not be viewed as
/// `&[u8]` in Rust, but which the kernel may copy).
///
/// # Safety
///
/// Each `(ptr, len)` must be valid for reads of `len` bytes for the whole
/// call (the bytes may be uninitialised padding).
#[doc(alias = "writev")]
pub unsafe fn write_raw_vectored(fd: impl AsFd, ranges: &[(*const u8, usize)]) -> Result<usize> {
    use std::os::fd::AsRawFd;
    const MAX: usize = 8;
    if ranges.len() > MAX {
        return Err(Errno::INVAL);
    }
    let mut iov = [libc::iovec {
        iov_base: core::ptr::null_mut(),
        iov_len: 0,
    }; MAX];
    for (slot, (ptr, len)) in iov.iter_mut().zip(ranges) {
        slot.iov_base = ptr.cast_mut().cast();
        slot.iov_len = *len;
    }
    let raw = fd.as_fd().as_raw_fd();
    retry(|| {
        // SAFETY: `iov[..ranges.len()]` describes ranges the caller
        // guarantees readable; writev only reads them. `raw` is borrowed
        // from a live fd for the duration of the call.
        let n = unsafe { libc::writev(raw, iov.as_ptr(), ranges.len() as libc::c_int) };
        if n < 0 {
            Err(Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ))
        } else {
            Ok(n as usize)
        }
    })
}

/// `vmsplice(fd, iov, flags)` on the write end of a pipe: maps the pages
/// of `buf` into the pipe instead of copying them. Returns how many bytes
/// were taken (possibly fewer than `buf.len()`). `EAGAIN` with
/// `nonblocking` when the pipe is full. `EINTR` is retried.
///
/// The pipe keeps references to the pages until the reader consumes them:
/// changing `buf` before then changes what the reader sees (not undefined
/// behaviour in this process, but a data race in the stream). See
/// `conduit::pipe::bulk` for a protocol that makes reuse safe.
///
/// # Safety
///
/// `fd` must be the **write** end of a pipe. On a read end, vmsplice would
/// write into `buf`, which is only borrowed immutably.
#[doc(alias = "vmsplice")]
pub unsafe fn vmsplice_write(fd: impl AsFd, buf: &[u8], nonblocking: bool) -> Result<usize> {
    let fd = fd.as_fd();
    let flags = if nonblocking {
        SpliceFlags::NONBLOCK
    } else {
        SpliceFlags::empty()
    };
    let iov = [IoSliceRaw::from_slice(buf)];
    retry(|| {
        // SAFETY: the caller guarantees `fd` is a pipe's write end, so the
        // kernel only reads `buf`, which is borrowed for the call.
        unsafe { rustix::pipe::vmsplice(fd, &iov, flags) }
    })
}

/// `splice(fd_in, NULL, fd_out, NULL, len, SPLICE_F_MOVE [| NONBLOCK])`:
/// moves up to `len` bytes between two descriptors, one of which must be
/// a pipe, without passing through user memory. `Ok(0)` is end of file.
/// `EINVAL` when the pair does not support splicing. `EINTR` is retried.
#[doc(alias = "splice(2)")]
pub fn splice(fd_in: impl AsFd, fd_out: impl AsFd, len: usize, nonblocking: bool) -> Result<usize> {
    let (fd_in, fd_out) = (fd_in.as_fd(), fd_out.as_fd());
    let mut flags = SpliceFlags::MOVE;
    if nonblocking {
        flags |= SpliceFlags::NONBLOCK;
    }
    retry(|| rustix::pipe::splice(fd_in, None, fd_out, None, len, flags))
}

/// `fcntl(fd, F_SETFL, O_NONBLOCK)` on or off.
#[doc(alias = "fcntl")]
#[doc(alias = "O_NONBLOCK")]
pub fn set_nonblocking(fd: impl AsFd, nonblocking: bool) -> Result<()> {
    let fd = fd.as_fd();
    let mut flags = rustix::fs::fcntl_getfl(fd)?;
    flags.set(OFlags::NONBLOCK, nonblocking);
    rustix::fs::fcntl_setfl(fd, flags)
}

/// `mkfifo(path, mode)` then `chmod(path, mode)`: creates a named pipe
/// with exactly `mode` (the umask would otherwise clear bits). `EEXIST`
/// when the path exists.
#[doc(alias = "mkfifo")]
pub fn make_fifo(path: &Path, mode: u32) -> Result<()> {
    let mode = Mode::from_raw_mode(mode & 0o777);
    rustix::fs::mkfifoat(rustix::fs::CWD, path, mode)?;
    if let Err(e) = rustix::fs::chmod(path, mode) {
        let _ = rustix::fs::unlink(path);
        return Err(e);
    }
    Ok(())
}

/// How to open a FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FifoEnd {
    /// `O_RDONLY`.
    Read,
    /// `O_WRONLY`.
    Write,
}

/// `open(path, O_RDONLY|O_WRONLY | O_CLOEXEC [| O_NONBLOCK])` on a FIFO.
/// A blocking open waits until the other end is opened too; a
/// non-blocking open for writing fails with `ENXIO` while no reader exists.
#[doc(alias = "open")]
pub fn open_fifo(path: &Path, end: FifoEnd, nonblocking: bool) -> Result<OwnedFd> {
    let mut flags = OFlags::CLOEXEC;
    flags |= match end {
        FifoEnd::Read => OFlags::RDONLY,
        FifoEnd::Write => OFlags::WRONLY,
    };
    if nonblocking {
        flags |= OFlags::NONBLOCK;
    }
    retry(|| rustix::fs::open(path, flags, Mode::empty()))
}

/// `unlink(path)`.
#[doc(alias = "unlink(2)")]
pub fn unlink(path: &Path) -> Result<()> {
    rustix::fs::unlink(path)
}

/// Kind of file behind a descriptor, as far as splicing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A pipe or FIFO.
    Pipe,
    /// A socket.
    Socket,
    /// A regular file.
    Regular,
    /// A character device such as `/dev/null`.
    CharDevice,
    /// Anything else.
    Other,
}

/// `fstat(fd)`: the kind of file `fd` refers to.
#[doc(alias = "fstat")]
pub fn file_kind(fd: impl AsFd) -> Result<FileKind> {
    use rustix::fs::FileType;
    let st = rustix::fs::fstat(fd)?;
    Ok(match FileType::from_raw_mode(st.st_mode) {
        FileType::Fifo => FileKind::Pipe,
        FileType::Socket => FileKind::Socket,
        FileType::RegularFile => FileKind::Regular,
        FileType::CharacterDevice => FileKind::CharDevice,
        _ => FileKind::Other,
    })
}

/// Makes sure writing to a closed pipe returns `EPIPE` instead of killing
/// the process: if `SIGPIPE` has its default disposition (terminate), sets
/// it to `SIG_IGN`, as the Rust runtime does at start-up for ordinary
/// binaries; a handler installed by the program is left alone (the write
/// still returns `EPIPE` after it ran). Returns whether it changed the
/// disposition.
#[doc(alias = "sigaction")]
#[doc(alias = "SIGPIPE")]
pub fn ignore_sigpipe_if_default() -> Result<bool> {
    // SAFETY: an all-zero sigaction is a valid value to be filled in.
    let mut old: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: a null `act` only queries the disposition into `old`, a
    // valid, writable sigaction.
    if unsafe { libc::sigaction(libc::SIGPIPE, core::ptr::null(), &mut old) } != 0 {
        return Err(last_errno());
    }
    if old.sa_sigaction != libc::SIG_DFL {
        return Ok(false);
    }
    // SAFETY: as above, a zeroed sigaction is valid; SIG_IGN needs no
    // handler code.
    let mut ignore: libc::sigaction = unsafe { core::mem::zeroed() };
    ignore.sa_sigaction = libc::SIG_IGN;
    // SAFETY: `ignore` is a valid sigaction; setting SIG_IGN for SIGPIPE
    // runs no code in signal context. A racing change by another thread
    // between query and set is overwritten only if it was SIG_DFL too.
    if unsafe { libc::sigaction(libc::SIGPIPE, &ignore, core::ptr::null_mut()) } != 0 {
        return Err(last_errno());
    }
    Ok(true)
}

pub(crate) fn last_errno() -> Errno {
    Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, 3)`: a duplicate of `fd`.
#[doc(alias = "fcntl")]
#[doc(alias = "F_DUPFD_CLOEXEC")]
pub fn dup_cloexec(fd: impl AsFd) -> Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 3)
}

/// `fcntl(raw, F_SETFD, 0)`: clears close-on-exec on a raw descriptor
/// number, for use between `fork` and `exec` (async-signal-safe: one
/// system call, no allocation, no lock).
#[doc(alias = "fcntl")]
#[doc(alias = "F_SETFD")]
pub fn clear_cloexec_in_child(raw: std::os::fd::RawFd) -> Result<()> {
    if raw < 0 {
        return Err(Errno::BADF);
    }
    // SAFETY: the borrowed fd is only used for one F_SETFD, which reports
    // EBADF if `raw` is not open.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())
}

/// `fcntl(fd, F_SETFD, FD_CLOEXEC)`.
#[doc(alias = "fcntl")]
#[doc(alias = "FD_CLOEXEC")]
pub fn set_cloexec(fd: impl AsFd) -> Result<()> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)
}

/// `fcntl(raw, F_GETFD)`: whether `raw` is an open descriptor of this
/// process.
#[doc(alias = "fcntl")]
#[doc(alias = "F_GETFD")]
pub fn is_open(raw: std::os::fd::RawFd) -> bool {
    if raw < 0 {
        return false;
    }
    // SAFETY: the borrowed fd is only used for F_GETFD, which is harmless
    // on any number and reports EBADF for a closed one.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
    rustix::io::fcntl_getfd(fd).is_ok()
}

/// `readv(fd, iov)` into raw ranges, retried on `EINTR`: for reading into
/// memory that is not yet initialised (a `MaybeUninit<T>`).
///
/// # Safety
///
/// Each `(ptr, len)` must be valid for writes of `len` bytes for the whole
/// call and not aliased by any live Rust reference.
#[doc(alias = "readv")]
pub unsafe fn read_raw_vectored(fd: impl AsFd, ranges: &[(*mut u8, usize)]) -> Result<usize> {
    use std::os::fd::AsRawFd;
    const MAX: usize = 8;
    if ranges.len() > MAX {
        return Err(Errno::INVAL);
    }
    let mut iov = [libc::iovec {
        iov_base: core::ptr::null_mut(),
        iov_len: 0,
    }; MAX];
    for (slot, (ptr, len)) in iov.iter_mut().zip(ranges) {
        slot.iov_base = ptr.cast();
        slot.iov_len = *len;
    }
    let raw = fd.as_fd().as_raw_fd();
    retry(|| {
        // SAFETY: the caller guarantees the ranges are writable and
        // unaliased; `raw` is borrowed from a live fd for the call.
        let n = unsafe { libc::readv(raw, iov.as_ptr(), ranges.len() as libc::c_int) };
        if n < 0 {
            Err(last_errno())
        } else {
            Ok(n as usize)
        }
    })
}

/// `fcntl(fd, F_GETFL) & O_ACCMODE` allows writing: the condition under
/// which [`vmsplice_write`] only reads user memory.
#[doc(alias = "fcntl")]
#[doc(alias = "F_GETFL")]
pub fn is_writable(fd: impl AsFd) -> Result<bool> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    let mode = flags & OFlags::RWMODE;
    Ok(mode == OFlags::WRONLY || mode == OFlags::RDWR)
}

/// `open("/dev/null", O_WRONLY | O_CLOEXEC)`: a sink for `splice`.
#[doc(alias = "open")]
pub fn open_dev_null() -> Result<OwnedFd> {
    rustix::fs::open("/dev/null", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
}

/// `ioctl(fd, FIONREAD)`: bytes currently queued in a pipe (either end).
#[doc(alias = "ioctl")]
#[doc(alias = "FIONREAD")]
pub fn bytes_queued(fd: impl AsFd) -> Result<u64> {
    rustix::io::ioctl_fionread(fd)
}

/// `poll({fd, POLLOUT}, 0)` on a pipe's write end: whether every reader
/// has closed (`POLLERR`).
#[doc(alias = "poll")]
#[doc(alias = "POLLERR")]
pub fn readers_gone(fd: impl AsFd) -> bool {
    use rustix::event::{PollFd, PollFlags};
    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
    match rustix::event::poll(
        &mut fds,
        Some(&rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        }),
    ) {
        Ok(_) => fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP),
        Err(_) => false,
    }
}
