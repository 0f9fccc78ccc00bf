//! Sharing an anonymous memory file (memfd) through a socket: a segment
//! with no name in `/dev/shm` or anywhere else, sealed so that the
//! receiver can trust its size.
//!
//! The sender creates a [`SharedMemfd`] (memfd, `ftruncate`,
//! `fallocate`, shared mapping), fills it, seals it with
//! `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL` and sends the descriptor
//! with an 8-byte payload holding the length. The receiver checks that
//! the two size seals are present (otherwise the sender could shrink the
//! file later and make every access past the new end fault with
//! `SIGBUS`), that the length matches the file's size, and maps it.
//!
//! The contents are not write-sealed: both sides may keep writing (that is
//! what a publish/subscribe segment needs), so accesses must be
//! synchronised by the structure built in the segment. A received
//! descriptor becomes a `shm::Segment` through [`SharedMemfd::into_fd`] and
//! `Segment::from_fd` (which checks the seals again); `socket::ShmChannel`
//! builds a whole publish/subscribe channel this way. `F_SEAL_FUTURE_WRITE`
//! (Linux ≥ 5.1) makes a memfd read-only for everyone who maps it later;
//! the channel uses it for its data segment.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{RecvError, SendError};
use crate::sys;
use crate::sys::Errno;
use crate::sys::memfd::Seals;
use crate::sys::mman::{Mapping, Protection};
use crate::sys::socket::Kind;

/// The seals a shared memfd must carry.
const REQUIRED: Seals = Seals {
    shrink: true,
    grow: true,
    write: false,
    seal: false,
    future_write: false,
};

/// Error creating a [`SharedMemfd`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemfdError {
    /// A size of zero cannot be mapped.
    #[error("a memfd segment needs a size above zero")]
    ZeroSize,
    /// The memory (or tmpfs quota) for `len` bytes is not available.
    #[error("not enough memory for a memfd segment of {len} bytes")]
    NoSpace {
        /// Bytes asked for.
        len: usize,
        /// `ENOSPC`/`ENOMEM`.
        #[source]
        source: Errno,
    },
    /// Any other failure (`memfd_create`, `mmap`, `F_ADD_SEALS`).
    #[error("memfd operation failed")]
    Other(#[source] Errno),
}

/// Error sending a memfd.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendMemfdError {
    /// The memfd is not sealed against shrinking and growing: call
    /// [`SharedMemfd::seal`] first, or the receiver would refuse it.
    #[error("the memfd is not sealed (call SharedMemfd::seal before sending)")]
    NotSealed,
    /// Sending failed.
    #[error("cannot send the memfd")]
    Send(#[from] SendError),
}

/// Error receiving a memfd.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvMemfdError {
    /// The message carried no descriptor, or more than one.
    #[error("expected one descriptor, received {0}")]
    WrongFdCount(usize),
    /// The descriptor is not a sealable memory file.
    #[error("the received descriptor is not a sealable memfd")]
    NotAMemfd(#[source] Errno),
    /// The size seals are missing: the sender could shrink the file and
    /// make our accesses fault.
    #[error("the received memfd lacks the shrink/grow seals (found {found:?})")]
    NotSealed {
        /// Seals found.
        found: Seals,
    },
    /// The announced length does not match the file.
    #[error("announced length {announced} differs from the file size {actual}")]
    SizeMismatch {
        /// Length in the message.
        announced: u64,
        /// `st_size` of the file.
        actual: u64,
    },
    /// Receiving failed.
    #[error("cannot receive the memfd")]
    Recv(#[from] RecvError),
    /// Mapping failed.
    #[error("cannot map the received memfd")]
    Map(#[source] Errno),
}

/// An anonymous shared memory file and this process's mapping of it.
#[derive(Debug)]
pub struct SharedMemfd {
    fd: OwnedFd,
    mapping: Mapping,
}

impl SharedMemfd {
    /// Creates a memfd of `len` bytes (`memfd_create`, `ftruncate`,
    /// `fallocate` so that touching it can never `SIGBUS`) and maps it
    /// read-write. `name` only shows in `/proc/<pid>/fd`.
    pub fn create(name: &str, len: usize) -> Result<SharedMemfd, MemfdError> {
        if len == 0 {
            return Err(MemfdError::ZeroSize);
        }
        let space = |source| match source {
            Errno::NOSPC | Errno::NOMEM | Errno::FBIG => MemfdError::NoSpace { len, source },
            e => MemfdError::Other(e),
        };
        let fd = sys::memfd::create(name).map_err(MemfdError::Other)?;
        sys::fd::truncate(&fd, len as u64).map_err(space)?;
        sys::fd::allocate(&fd, len as u64).map_err(space)?;
        let mapping = Mapping::map(&fd, len, Protection::ReadWrite).map_err(space)?;
        Ok(SharedMemfd { fd, mapping })
    }

    /// Seals the size: `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`.
    /// The contents stay writable.
    pub fn seal(&self) -> Result<(), MemfdError> {
        sys::memfd::add_seals(
            &self.fd,
            Seals {
                shrink: true,
                grow: true,
                write: false,
                seal: true,
                future_write: false,
            },
        )
        .map_err(MemfdError::Other)
    }

    /// Seals currently on the file.
    pub fn seals(&self) -> Result<Seals, MemfdError> {
        sys::memfd::seals(&self.fd).map_err(MemfdError::Other)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.mapping.len()
    }

    /// Always false: a memfd segment has at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Base address of this process's mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.mapping.as_ptr()
    }

    /// The contents as a byte slice.
    ///
    /// # Safety
    ///
    /// No other process or thread may write the segment while the slice
    /// lives (use atomics in the segment otherwise).
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping covers len() readable bytes for as long as
        // self lives; the caller excludes concurrent writers.
        unsafe { core::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }

    /// The contents as a mutable byte slice.
    ///
    /// # Safety
    ///
    /// The mapping must be writable (created here, or received with
    /// `writable`), and no other process or thread may access the segment
    /// while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: as above; the caller guarantees exclusive access and a
        // writable mapping.
        unsafe { core::slice::from_raw_parts_mut(self.as_ptr(), self.len()) }
    }

    /// The file descriptor, e.g. to hand to `shm::Segment`.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for SharedMemfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn has_required(seals: Seals) -> bool {
    (!REQUIRED.shrink || seals.shrink) && (!REQUIRED.grow || seals.grow)
}

pub(super) fn send(socket: BorrowedFd<'_>, memfd: &SharedMemfd) -> Result<(), SendMemfdError> {
    let seals = sys::memfd::seals(&memfd.fd).map_err(|_| SendMemfdError::NotSealed)?;
    if !has_required(seals) {
        return Err(SendMemfdError::NotSealed);
    }
    let payload = (memfd.len() as u64).to_le_bytes();
    super::fds::send_with_fds(socket, &payload, &[memfd.fd.as_fd()])?;
    Ok(())
}

pub(super) fn recv(
    socket: BorrowedFd<'_>,
    kind: Kind,
    writable: bool,
) -> Result<SharedMemfd, RecvMemfdError> {
    let mut payload = [0u8; 8];
    let (mut got, mut fds) = super::fds::recv_with_fds(socket, &mut payload, kind)?;
    while got < payload.len() && kind == Kind::Stream {
        let r = sys::socket::recv(socket, &mut payload[got..], false)
            .map_err(|e| RecvMemfdError::Recv(super::recv_error(e)))?;
        if r.len == 0 {
            return Err(RecvError::Closed.into());
        }
        got += r.len;
    }
    if fds.len() != 1 {
        return Err(RecvMemfdError::WrongFdCount(fds.len()));
    }
    let fd = fds.remove(0);
    let found = sys::memfd::seals(&fd).map_err(RecvMemfdError::NotAMemfd)?;
    if !has_required(found) {
        return Err(RecvMemfdError::NotSealed { found });
    }
    let announced = u64::from_le_bytes(payload);
    let actual = sys::fd::status(&fd).map_err(RecvMemfdError::Map)?.size;
    if announced != actual || actual == 0 {
        return Err(RecvMemfdError::SizeMismatch { announced, actual });
    }
    let len = usize::try_from(actual).map_err(|_| RecvMemfdError::Map(Errno::FBIG))?;
    let protection = if writable {
        Protection::ReadWrite
    } else {
        Protection::ReadOnly
    };
    let mapping = Mapping::map(&fd, len, protection).map_err(RecvMemfdError::Map)?;
    Ok(SharedMemfd { fd, mapping })
}
