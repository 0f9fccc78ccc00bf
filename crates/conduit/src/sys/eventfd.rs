//! eventfd: a 64-bit kernel counter that is a file descriptor, readable
//! while the counter is not zero.

use std::os::fd::{AsFd, OwnedFd};

use rustix::event::{EventfdFlags, eventfd};

use super::{Errno, Result};

/// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`: a new counter at zero.
#[doc(alias = "eventfd")]
pub fn create() -> Result<OwnedFd> {
    eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
}

/// `write(fd, &value)`: adds `value` to the counter and wakes readers.
/// `EAGAIN` if the counter would overflow. `EINTR` is retried.
#[doc(alias = "write(2)")]
pub fn add(fd: impl AsFd, value: u64) -> Result<()> {
    let fd = fd.as_fd();
    loop {
        match rustix::io::write(fd, &value.to_ne_bytes()) {
            Ok(8) => return Ok(()),
            Ok(_) => return Err(Errno::IO),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `read(fd, &mut u64)`: takes the counter's value and resets it to zero.
/// `Ok(0)` when it was zero (on a non-blocking descriptor; a blocking one
/// waits). `EINTR` is retried.
#[doc(alias = "read(2)")]
pub fn take(fd: impl AsFd) -> Result<u64> {
    let fd = fd.as_fd();
    let mut buf = [0u8; 8];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(8) => return Ok(u64::from_ne_bytes(buf)),
            Ok(_) => return Err(Errno::IO),
            Err(Errno::AGAIN) => return Ok(0),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}
