//! Operations on open file descriptors: size, space reservation, status and
//! advisory locks.

use std::os::fd::AsFd;

use rustix::fs::{FallocateFlags, FlockOperation};

use super::{Errno, Result};

/// `ftruncate(fd, len)`: sets the size of a file or shared-memory object.
///
/// On tmpfs this only sets the size: pages are allocated on first touch, so
/// a full file system shows up later as `SIGBUS`. Call [`allocate`] too.
#[doc(alias = "ftruncate")]
pub fn truncate(fd: impl AsFd, len: u64) -> Result<()> {
    rustix::fs::ftruncate(fd, len)
}

/// `posix_fallocate(fd, 0, len)`: reserves backing store for the first
/// `len` bytes, so that touching them later can never fail.
///
/// Implemented as Linux `fallocate(fd, 0, 0, len)`, which is what glibc's
/// `posix_fallocate` issues on file systems that support it (tmpfs does).
/// `ENOSPC` means the file system cannot hold `len` bytes. `EINTR` is
/// retried.
#[doc(alias = "posix_fallocate")]
#[doc(alias = "fallocate")]
pub fn allocate(fd: impl AsFd, len: u64) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    loop {
        match rustix::fs::fallocate(fd.as_fd(), FallocateFlags::empty(), 0, len) {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// What [`status`] reports about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Device and inode number: together they identify the file.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

/// `fstat(fd)`: owner, permission bits and size of an open file.
#[doc(alias = "fstat")]
pub fn status(fd: impl AsFd) -> Result<Status> {
    let st = rustix::fs::fstat(fd)?;
    Ok(Status {
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode & 0o7777,
        size: u64::try_from(st.st_size).unwrap_or(0),
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// `fchmod(fd, mode)`: changes the permission bits of an open file.
#[doc(alias = "fchmod")]
pub fn set_mode(fd: impl AsFd, mode: u32) -> Result<()> {
    rustix::fs::fchmod(fd, rustix::fs::Mode::from_raw_mode(mode))
}

/// `fchown(fd, -1, gid)`: gives an open file to group `gid`, keeping its
/// owner. `EPERM` unless the caller owns the file and is a member of
/// `gid`, or has `CAP_CHOWN`.
#[doc(alias = "fchown")]
pub fn set_group(fd: impl AsFd, gid: u32) -> Result<()> {
    if gid == u32::MAX {
        // -1 means "leave unchanged" to the kernel: not a group.
        return Err(Errno::INVAL);
    }
    rustix::fs::fchown(fd, None, Some(rustix::fs::Gid::from_raw(gid)))
}

/// Gives the file at `path` (not following a final symlink) to group
/// `gid` if `Some` (`chown(path, -1, gid)`), then sets its permission bits
/// to exactly `mode` (`chmod`, no umask): for files that have no
/// descriptor to `fchmod` (FIFOs before they are opened, socket files).
/// `chown` first: it may clear set-id bits, never the rw bits.
pub fn set_path_permissions(path: &std::path::Path, mode: u32, gid: Option<u32>) -> Result<()> {
    use rustix::fs::{AtFlags, CWD, Gid, Mode};
    if let Some(gid) = gid {
        rustix::fs::chownat(
            CWD,
            path,
            None,
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    rustix::fs::chmodat(
        CWD,
        path,
        Mode::from_raw_mode(mode & 0o7777),
        AtFlags::empty(),
    )
}

/// The effective user id of this process (`geteuid`).
#[doc(alias = "geteuid")]
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Kind of an advisory lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Many holders at once.
    Shared,
    /// One holder.
    Exclusive,
}

/// `flock(fd, LOCK_SH|LOCK_EX [| LOCK_NB])`: takes a whole-file lock that
/// belongs to the open file description and that the kernel drops when its
/// last descriptor closes, in particular when the holder dies.
///
/// With `wait == false` returns `Ok(false)` when another description holds
/// a conflicting lock. `EINTR` is retried.
pub fn flock(fd: impl AsFd, kind: LockKind, wait: bool) -> Result<bool> {
    let op = match (kind, wait) {
        (LockKind::Shared, true) => FlockOperation::LockShared,
        (LockKind::Shared, false) => FlockOperation::NonBlockingLockShared,
        (LockKind::Exclusive, true) => FlockOperation::LockExclusive,
        (LockKind::Exclusive, false) => FlockOperation::NonBlockingLockExclusive,
    };
    lock_result(|| rustix::fs::flock(fd.as_fd(), op))
}

/// `flock(fd, LOCK_UN)`: releases a lock taken with [`flock`].
#[doc(alias = "flock")]
pub fn funlock(fd: impl AsFd) -> Result<()> {
    rustix::fs::flock(fd, FlockOperation::Unlock)
}

fn lock_result(mut op: impl FnMut() -> Result<()>) -> Result<bool> {
    loop {
        match op() {
            Ok(()) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(Errno::WOULDBLOCK) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, 0)`: a second descriptor for the same open
/// file description, closed on `exec`.
#[doc(alias = "F_DUPFD_CLOEXEC")]
#[doc(alias = "dup")]
pub fn duplicate(fd: impl AsFd) -> Result<std::os::fd::OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0)
}
