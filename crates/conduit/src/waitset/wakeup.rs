//! An eventfd as a wake-up source.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{Attachable, CreateError};
use crate::sys::{Errno, eventfd};

/// A wake-up counter (an eventfd): [`wake`](WakeUp::wake) from any
/// thread, or from another process that received the descriptor (fd
/// passing, inheritance); attached to a WaitSet it is reported as
/// [`Event::Ready`](super::Event::Ready) and reset automatically.
#[derive(Debug)]
pub struct WakeUp {
    fd: OwnedFd,
}

impl WakeUp {
    /// A new counter at zero.
    pub fn new() -> Result<Self, CreateError> {
        let fd = eventfd::create().map_err(|e| match e {
            Errno::MFILE | Errno::NFILE => CreateError::TooManyDescriptors(e),
            e => CreateError::Other(e),
        })?;
        Ok(Self { fd })
    }

    /// Wraps an eventfd received from elsewhere.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self { fd }
    }

    /// Wakes the waiter (adds 1 to the counter). Wake-ups coalesce: many
    /// before the waiter runs are reported once.
    pub fn wake(&self) -> Result<(), Errno> {
        eventfd::add(&self.fd, 1)
    }

    /// Takes the number of wake-ups since the last take (0 if none).
    pub fn take(&self) -> Result<u64, Errno> {
        eventfd::take(&self.fd)
    }
}

impl AsFd for WakeUp {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Attachable for WakeUp {
    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn acknowledge(&self) {
        let _ = eventfd::take(&self.fd);
    }
}
