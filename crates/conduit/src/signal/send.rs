//! Sending signals: by PID, to a process group, queued with a value, and
//! through a pidfd ([`Process`]).
//!
//! # PID namespaces
//!
//! Every PID given here is resolved in the **sender's** PID namespace.
//! A pid that another process recorded (a node's `pid`, a segment's
//! `creator_pid`, a `Received::sender_pid`) is that process's own view:
//! from another PID namespace it names another task or none, so signalling
//! it may hit an unrelated process. Send across containers only to pids
//! obtained in the sender's namespace (for example a child it started),
//! and prefer a [`Process`] (a pidfd), which can never be redirected to a
//! newer process that reused the number.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::sys::Errno;
use crate::sys::signal::{self as sys, ChildState};

use super::Signal;

/// Why sending a signal failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No process (or process group) has this id (`ESRCH`).
    #[error("no process {pid}")]
    NoSuchProcess {
        /// The target id.
        pid: u32,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// The process behind a pidfd has exited and been reaped: the signal
    /// went nowhere, and in particular not to a newer process with the same
    /// PID (`ESRCH`). (A zombie, exited but not yet reaped, still accepts
    /// and discards signals, as it does with `kill`.)
    #[error("process {pid} has exited")]
    Exited {
        /// The PID the process had.
        pid: u32,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// The sender may not signal the target (`EPERM`): another user's
    /// process without `CAP_KILL`.
    #[error("not permitted to signal process {pid}")]
    PermissionDenied {
        /// The target id.
        pid: u32,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// The receiver's queue of pending real-time signals is full
    /// (`EAGAIN`, limit `RLIMIT_SIGPENDING`).
    #[error("too many signals already queued for process {pid}")]
    QueueFull {
        /// The target id.
        pid: u32,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// Another OS error.
    #[error("cannot signal process {pid}")]
    Other {
        /// The target id.
        pid: u32,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

impl SendError {
    fn new(pid: u32, source: Errno) -> SendError {
        match source {
            Errno::SRCH => SendError::NoSuchProcess { pid, source },
            Errno::PERM => SendError::PermissionDenied { pid, source },
            Errno::AGAIN => SendError::QueueFull { pid, source },
            _ => SendError::Other { pid, source },
        }
    }
}

/// `kill(pid, signal)`: sends `signal` to process `pid`.
///
/// Prefer [`Process::send`]: a PID can be reused by a new process as soon
/// as the old one has been reaped, and `kill` would hit the new one.
pub fn send(pid: u32, signal: Signal) -> Result<(), SendError> {
    sys::send(pid, signal.as_raw()).map_err(|e| SendError::new(pid, e))
}

/// `killpg(pgid, signal)`: sends `signal` to every process of group `pgid`
/// (what the terminal does with Ctrl-C).
pub fn send_group(pgid: u32, signal: Signal) -> Result<(), SendError> {
    sys::send_group(pgid, signal.as_raw()).map_err(|e| SendError::new(pgid, e))
}

/// `sigqueue(pid, signal, value)`: sends `signal` with a pointer-sized
/// `value`, which the receiver reads as [`Received::value`](super::Received).
///
/// Use a real-time signal ([`Signal::realtime`]): those queue and arrive in
/// order, each with its value. A standard signal that is already pending
/// is dropped together with its value.
pub fn queue(pid: u32, signal: Signal, value: usize) -> Result<(), SendError> {
    sys::queue(pid, signal.as_raw(), value).map_err(|e| SendError::new(pid, e))
}

/// Why [`Process::open`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// No process has this id (`ESRCH`).
    #[error("no process {pid}")]
    NoSuchProcess {
        /// The id.
        pid: u32,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// `pidfd_open` failed otherwise (e.g. `ENOSYS` before Linux 5.3).
    #[error("cannot open a pidfd for process {pid}")]
    Other {
        /// The id.
        pid: u32,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

/// Why waiting for a [`Process`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The process is not a child of this one, or it was already reaped
    /// (`ECHILD`).
    #[error("process {pid} is not an unreaped child of this process")]
    NotAChild {
        /// Its id.
        pid: u32,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// Another OS error.
    #[error("cannot wait for process {pid}")]
    Other {
        /// Its id.
        pid: u32,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitState {
    /// It exited with this status.
    Exited(i32),
    /// This signal ended it.
    Killed(Signal),
    /// A signal conduit does not name ended it (raw number).
    KilledRaw(i32),
}

impl ExitState {
    fn from_sys(state: ChildState) -> ExitState {
        match state {
            ChildState::Exited(c) => ExitState::Exited(c),
            ChildState::Killed(s) => {
                Signal::from_raw(s).map_or(ExitState::KilledRaw(s), ExitState::Killed)
            }
        }
    }
}

/// A process held by a pidfd: it names that process, not its number.
///
/// Signals sent with [`send`](Process::send) or [`queue`](Process::queue)
/// reach this process or fail with [`SendError::Exited`]; they never reach
/// another process that reuses the PID. The fd becomes readable when the
/// process exits ([`AsFd`], for poll/epoll/a WaitSet); a child of this
/// process can be reaped with [`wait`](Process::wait).
///
/// Opening by PID has the usual race: the PID must still name the intended
/// process when [`open`](Process::open) runs. For a child, open it before
/// reaping it (a child's PID cannot be reused until it is reaped), which
/// [`Process::from_child`] and [`Supervised`](super::Supervised) do.
#[derive(Debug)]
pub struct Process {
    pid: u32,
    fd: OwnedFd,
}

impl Process {
    /// `pidfd_open(pid)`.
    pub fn open(pid: u32) -> Result<Process, OpenError> {
        match sys::open_pidfd(pid) {
            Ok(fd) => Ok(Process { pid, fd }),
            Err(source @ Errno::SRCH) => Err(OpenError::NoSuchProcess { pid, source }),
            Err(source) => Err(OpenError::Other { pid, source }),
        }
    }

    /// A pidfd for a child started with `std::process::Command`, opened
    /// before anything reaps it, so it is race-free. Do not also `wait` on
    /// the `Child`: reap through [`wait`](Process::wait).
    pub fn from_child(child: &std::process::Child) -> Result<Process, OpenError> {
        Process::open(child.id())
    }

    /// The process id (informational: use this handle, not the number).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `pidfd_send_signal`: sends `signal` (`SI_USER`, like `kill`).
    pub fn send(&self, signal: Signal) -> Result<(), SendError> {
        sys::pidfd_send(&self.fd, signal.as_raw(), None).map_err(|e| self.send_error(e))
    }

    /// `pidfd_send_signal` with a `siginfo`: sends `signal` with `value`
    /// (`SI_QUEUE`, like [`queue`]).
    pub fn queue(&self, signal: Signal, value: usize) -> Result<(), SendError> {
        sys::pidfd_send(&self.fd, signal.as_raw(), Some(value)).map_err(|e| self.send_error(e))
    }

    fn send_error(&self, source: Errno) -> SendError {
        match source {
            Errno::SRCH => SendError::Exited {
                pid: self.pid,
                source,
            },
            e => SendError::new(self.pid, e),
        }
    }

    /// Whether the process has exited (the pidfd is readable). A zombie
    /// not yet reaped counts as exited.
    pub fn has_exited(&self) -> bool {
        matches!(
            sys::poll_readable(&[self.fd.as_fd()], Some(Duration::ZERO)).as_deref(),
            Ok([true])
        )
    }

    /// `waitid(P_PIDFD, WEXITED | WNOHANG)`: reaps the child if it has
    /// exited. Only for children of this process.
    pub fn try_wait(&self) -> Result<Option<ExitState>, WaitError> {
        sys::wait_pidfd(&self.fd, false)
            .map(|s| s.map(ExitState::from_sys))
            .map_err(|e| self.wait_error(e))
    }

    /// `waitid(P_PIDFD, WEXITED)`: waits for the child to exit and reaps it.
    pub fn wait(&self) -> Result<ExitState, WaitError> {
        loop {
            match sys::wait_pidfd(&self.fd, true) {
                Ok(Some(s)) => return Ok(ExitState::from_sys(s)),
                Ok(None) => continue,
                Err(e) => return Err(self.wait_error(e)),
            }
        }
    }

    fn wait_error(&self, source: Errno) -> WaitError {
        match source {
            Errno::CHILD => WaitError::NotAChild {
                pid: self.pid,
                source,
            },
            _ => WaitError::Other {
                pid: self.pid,
                source,
            },
        }
    }
}

impl AsFd for Process {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Process {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
