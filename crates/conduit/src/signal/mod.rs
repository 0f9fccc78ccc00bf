//! Signals done the safe way: received as values, sent through pidfds,
//! queued with a value, graceful termination, process groups.
//!
//! * [`Signals`] subscribes to a set of signals and hands each delivery
//!   over as a [`Received`] value (number, sender pid and uid, origin, the
//!   queued value). No user code ever runs in a signal handler.
//! * [`send()`], [`send_group`] and [`queue`] send by number; [`Process`]
//!   sends through a pidfd, so a signal meant for a process that has exited
//!   can never hit another process that got the same PID.
//! * [`Termination`]: the first SIGINT/SIGTERM/SIGHUP asks the program to
//!   stop (a flag, a pollable fd, a blocking wait or a future); a second one
//!   takes the signal's default action.
//! * [`Supervised`]: a child in its own process group, with the terminal's
//!   job-control signals forwarded to the group and the child reaped
//!   through its pidfd.
//!
//! # How signals are received
//!
//! [`Signals`] has two back ends ([`Mode`]):
//!
//! * **signalfd** — the signals are blocked and read from a `signalfd`. This
//!   needs the signals blocked in *every* thread: a process-directed signal
//!   goes to any one thread that does not block it, and there it takes its
//!   normal action (for SIGTERM: the process dies) instead of reaching the
//!   descriptor. [`Signals::new`] blocks the signals in the calling thread and
//!   uses signalfd when, after that, `/proc/self/task/*/status` shows them
//!   blocked in all threads — typically when it is called from `main` before
//!   any thread is started (threads inherit their creator's mask).
//! * **self-pipe** — otherwise a `SA_SIGINFO` handler is installed through
//!   `signal-hook-registry` (so it coexists with tokio, signal-hook and
//!   anything else using the registry); it copies the kernel's `siginfo`
//!   into a 32-byte record and `write`s it to a non-blocking pipe. Nothing
//!   else runs in the handler.
//!
//! # Pitfalls
//!
//! * **The blocked mask is inherited** by threads, by `fork` and across
//!   `exec`, and `std::process::Command` passes it on unchanged. A program
//!   that blocks SIGTERM for signalfd and starts a child gives it SIGTERM
//!   blocked: the child will not die on SIGTERM, and signalfd-less programs
//!   never see it. Start children through [`Supervised`] or call
//!   [`reset_signal_mask`] on the `Command`. Ignored dispositions
//!   (`SIG_IGN`) are inherited across `exec` too.
//! * **Standard signals coalesce**: while one is pending, more of the same
//!   are dropped (with their values). Only real-time signals
//!   ([`Signal::realtime`]) queue, in order, each with its value, up to
//!   `RLIMIT_SIGPENDING`. The self-pipe back end drops a record when its
//!   pipe is full (thousands of pending deliveries), and keeps the order
//!   only while one thread handles them: the kernel hands queued signals to
//!   any thread that does not block them, and two handlers running at once
//!   on two threads may write their records in either order. Use the
//!   signalfd back end (subscribe in `main` before starting threads) when
//!   order matters.
//! * **SIGCHLD** is a standard signal: many children exiting at once give
//!   one SIGCHLD. Reap with a loop of non-blocking waits, or better, use a
//!   pidfd per child ([`Process`]), which is readable once that child exits.
//! * **SIGPIPE**: Rust programs ignore it (writes return `EPIPE`); do not
//!   subscribe to it expecting to learn about broken pipes from a signal.
//! * **SIGKILL and SIGSTOP** can be neither caught nor blocked; subscribing
//!   to them is [`SubscribeError::Uncatchable`]. SIGSEGV, SIGBUS, SIGILL and
//!   SIGFPE raised by a fault cannot usefully be handled this way either.
//! * A signal sent to one thread (`tgkill`) only reaches a signalfd read by
//!   that thread.
//! * When a signalfd-mode [`Signals`] is dropped on the thread that created
//!   it, the mask is restored, and a signal still pending then takes its
//!   normal action.

mod group;
mod number;
mod send;
mod subscribe;
mod termination;

pub use group::{SpawnError, SuperviseError, Supervised};
pub use number::{ParseSignalError, Signal};
pub use send::{ExitState, OpenError, Process, SendError, WaitError, queue, send, send_group};
pub use subscribe::{Mode, Origin, ReceiveError, Received, Signals, SubscribeError};
pub use termination::{Requested, Termination};

/// Makes `command` start its child with no signal blocked (a `pre_exec`
/// hook), undoing the mask this process may have set up for [`Signals`].
/// [`Supervised::spawn`] does this itself.
pub fn reset_signal_mask(command: &mut std::process::Command) {
    crate::sys::signal::clear_mask_on_exec(command);
}
