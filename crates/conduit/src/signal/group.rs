//! [`Supervised`]: a child in its own process group, with job-control
//! signals forwarded to the group and the child reaped through a pidfd.

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use crate::sys::Errno;
use crate::sys::signal as sys;

use super::{
    ExitState, OpenError, Process, ReceiveError, Received, SendError, Signal, Signals, WaitError,
    send_group,
};

/// Why [`Supervised::spawn`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// Starting the program failed (not found, not executable, ...).
    #[error("cannot start the child process")]
    Spawn(#[source] std::io::Error),
    /// The child started but no pidfd could be opened for it (it has been
    /// killed again).
    #[error("cannot open a pidfd for the child")]
    Pidfd(#[source] OpenError),
}

/// Why [`Supervised::supervise`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuperviseError {
    /// Receiving a signal failed.
    #[error("cannot receive signals")]
    Receive(#[source] ReceiveError),
    /// Waiting failed.
    #[error("cannot wait for the child and the signals")]
    Poll(#[source] Errno),
    /// Reaping the child failed.
    #[error("cannot reap the child")]
    Wait(#[source] WaitError),
    /// Forwarding a signal failed (other than the group being gone).
    #[error("cannot forward a signal to the child's process group")]
    Forward(#[source] SendError),
}

/// A child process in a new process group of its own, supervised through
/// a pidfd.
///
/// The child is the leader of its group (its process group id is its PID),
/// so it and everything it starts (unless they change group) can be
/// signalled together with [`forward`](Supervised::forward) — what a shell
/// does for a job — while a Ctrl-C on the terminal reaches the supervisor's
/// group only, and the supervisor decides. The child is reaped through its
/// pidfd ([`Process`]), so the supervisor needs no SIGCHLD handling, and a
/// signal can never reach a recycled PID while the child is unreaped.
///
/// The child starts with an empty signal mask, so a supervisor that blocks
/// the forwarded signals for its signalfd does not pass the block on (which
/// `std::process::Command` alone would do).
#[derive(Debug)]
pub struct Supervised {
    child: Child,
    process: Process,
}

impl Supervised {
    /// The signals a supervisor forwards to its child's group: SIGINT,
    /// SIGTERM, SIGHUP, SIGTSTP, SIGCONT.
    pub const FORWARDED: [Signal; 5] = [
        Signal::INT,
        Signal::TERM,
        Signal::HUP,
        Signal::TSTP,
        Signal::CONT,
    ];

    /// Starts `command` in a new process group (`setpgid(0, 0)` in the
    /// child before `exec`), with an empty signal mask (see
    /// [`reset_signal_mask`](super::reset_signal_mask)), and opens its pidfd.
    pub fn spawn(command: &mut Command) -> Result<Supervised, SpawnError> {
        sys::clear_mask_on_exec(command);
        let child = command
            .process_group(0)
            .spawn()
            .map_err(SpawnError::Spawn)?;
        // Not reaped yet, so the PID still names this child.
        let process = Process::from_child(&child).map_err(SpawnError::Pidfd)?;
        Ok(Supervised { child, process })
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The child's process group id (equal to its PID).
    pub fn process_group(&self) -> u32 {
        self.process.pid()
    }

    /// The child's pidfd handle: readable when it exits.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// The `std` handle, for its stdin/stdout/stderr. Do not `wait` on it:
    /// reap through [`wait`](Supervised::wait) or
    /// [`supervise`](Supervised::supervise).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// `killpg(pgid, signal)`: sends `signal` to the child's whole group.
    pub fn forward(&self, signal: Signal) -> Result<(), SendError> {
        send_group(self.process_group(), signal)
    }

    /// Waits for the child to exit and reaps it.
    pub fn wait(&self) -> Result<ExitState, WaitError> {
        self.process.wait()
    }

    /// Forwards every signal `signals` receives to the child's group until
    /// the child exits, then reaps it and returns how it ended.
    ///
    /// `signals` would normally subscribe to [`Supervised::FORWARDED`].
    /// Processes of the group that outlive the child are not waited for.
    /// A forwarded SIGTSTP stops the child's group, not the supervisor
    /// (which subscribed to it); a supervisor that should stop with its job
    /// under a shell must do so itself in `on_signal`.
    pub fn supervise(&self, signals: &mut Signals) -> Result<ExitState, SuperviseError> {
        self.supervise_with(signals, |_| {})
    }

    /// As [`supervise`](Supervised::supervise), calling `on_signal` with
    /// each signal before it is forwarded.
    pub fn supervise_with(
        &self,
        signals: &mut Signals,
        mut on_signal: impl FnMut(&Received),
    ) -> Result<ExitState, SuperviseError> {
        loop {
            let ready = match sys::poll_readable(&[signals.as_fd(), self.process.as_fd()], None) {
                Ok(r) => r,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(SuperviseError::Poll(e)),
            };
            while let Some(received) = signals.try_next().map_err(SuperviseError::Receive)? {
                on_signal(&received);
                match self.forward(received.signal) {
                    // The group is empty: the child is exiting; the pidfd
                    // will say so.
                    Ok(()) | Err(SendError::NoSuchProcess { .. }) => {}
                    Err(e) => return Err(SuperviseError::Forward(e)),
                }
            }
            if ready[1] {
                return self.wait().map_err(SuperviseError::Wait);
            }
        }
    }
}
