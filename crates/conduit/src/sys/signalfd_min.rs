//! A minimal signalfd, for the WaitSet's termination source
//! ([`crate::waitset::WaitSet::attach_termination`]).
//!
//! Stop-gap: it will be replaced by `conduit::signal::Signals` once that
//! module is merged. rustix has no signalfd or signal-mask API, so this
//! uses libc.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use super::{Errno, Result};

fn set_of(signals: &[i32]) -> Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it fully.
    let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for &signal in signals {
        // SAFETY: `set` is a valid sigset_t; an invalid number is EINVAL.
        if unsafe { libc::sigaddset(&mut set, signal) } != 0 {
            return Err(Errno::INVAL);
        }
    }
    Ok(set)
}

/// `pthread_sigmask(SIG_BLOCK, signals)`: blocks `signals` in the calling
/// thread (threads it creates afterwards inherit the mask).
#[doc(alias = "pthread_sigmask")]
pub fn block(signals: &[i32]) -> Result<()> {
    let set = set_of(signals)?;
    // SAFETY: `set` is a valid sigset_t; the old mask is not requested.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, core::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(rc))
    }
}

/// `signalfd(-1, signals, SFD_CLOEXEC | SFD_NONBLOCK)`: a descriptor that
/// is readable while one of `signals` is pending. The signals must be
/// blocked (see [`block`]) in every thread, or they are delivered the
/// usual way instead.
#[doc(alias = "signalfd")]
pub fn create(signals: &[i32]) -> Result<OwnedFd> {
    let set = set_of(signals)?;
    // SAFETY: `set` is a valid sigset_t; -1 asks for a new descriptor.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    // SAFETY: signalfd returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `read(fd, &mut signalfd_siginfo)`: the number of one pending signal,
/// which is thereby consumed; `Ok(None)` when none is pending. `EINTR` is
/// retried.
#[doc(alias = "signalfd_siginfo")]
pub fn read(fd: impl AsFd) -> Result<Option<i32>> {
    let fd = fd.as_fd();
    // SAFETY: signalfd_siginfo is plain data, valid zeroed.
    let mut info: libc::signalfd_siginfo = unsafe { core::mem::zeroed() };
    let len = core::mem::size_of::<libc::signalfd_siginfo>();
    loop {
        // SAFETY: `info` is a writable buffer of `len` bytes, `fd` is open.
        let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut info).cast(), len) };
        if n == len as isize {
            return Ok(Some(info.ssi_signo as i32));
        }
        if n >= 0 {
            return Err(Errno::IO);
        }
        match Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        {
            Errno::INTR => continue,
            Errno::AGAIN => return Ok(None),
            e => return Err(e),
        }
    }
}

/// `kill(getpid(), signal)`: sends `signal` to this process.
#[doc(alias = "kill")]
pub fn raise_in_process(signal: i32) -> Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(libc::getpid(), signal) } == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ))
    }
}
