//! [`Signals`]: a subscription to a set of signals, received as values.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sys::Errno;
use crate::sys::signal::{self as sys, HandlerId, MaskHow, SigInfo, SigSet};

use super::Signal;

/// Which back end a [`Signals`] uses (see the [module docs](super)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// signalfd when the signals end up blocked in every thread after
    /// blocking them in the calling thread, else the self-pipe.
    Auto,
    /// Block the signals in the calling thread and read them from a
    /// `signalfd`. The caller guarantees that every other thread blocks
    /// them too (e.g. it is called before any thread starts); otherwise
    /// deliveries may take their default action in another thread.
    SignalFd,
    /// A `SA_SIGINFO` handler (via `signal-hook-registry`) that writes each
    /// delivery to a pipe. Works with any number of threads. The signals
    /// are unblocked in the calling thread (a handler only runs in a thread
    /// that does not block its signal). Leaves the signal caught (not
    /// default) after the [`Signals`] is dropped.
    SelfPipe,
}

/// Who or what raised a signal (`si_code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `kill`, `killpg`, `pidfd_send_signal` without info (`SI_USER`).
    User,
    /// `sigqueue` or a pidfd send with a value (`SI_QUEUE`): carries a value.
    Queue,
    /// A POSIX timer expired (`SI_TIMER`): carries the timer's value.
    Timer,
    /// `tgkill`/`raise` to one thread (`SI_TKILL`).
    Thread,
    /// A POSIX message queue became non-empty (`SI_MESGQ`).
    MessageQueue,
    /// The kernel: a fault, a child's state change (`SIGCHLD`), a terminal
    /// (`SI_KERNEL` or a positive signal-specific code, kept here).
    Kernel(i32),
    /// Another negative `si_code` (`SI_ASYNCIO`, `SI_SIGIO`, ...).
    Other(i32),
}

impl Origin {
    fn from_code(code: i32) -> Origin {
        match code {
            sys::SI_USER => Origin::User,
            sys::SI_QUEUE => Origin::Queue,
            sys::SI_TIMER => Origin::Timer,
            sys::SI_TKILL => Origin::Thread,
            sys::SI_MESGQ => Origin::MessageQueue,
            c if c > 0 => Origin::Kernel(c),
            c => Origin::Other(c),
        }
    }
}

/// One delivered signal, with what the kernel says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The signal.
    pub signal: Signal,
    /// Who raised it.
    pub origin: Origin,
    /// Sender's process id (0 for kernel-generated signals; for `SIGCHLD`
    /// the child's id), as the kernel translates it into the **receiver's**
    /// PID namespace: 0 also when the sender lives in a PID namespace the
    /// receiver cannot see (a sibling container).
    pub sender_pid: u32,
    /// Sender's real user id.
    pub sender_uid: u32,
    /// The value sent with [`queue`](super::queue) (or by a timer or
    /// message queue), as a pointer-sized integer; `None` for signals that
    /// carry no value.
    pub value: Option<usize>,
    /// The raw `si_code`.
    pub code: i32,
}

impl Received {
    fn from_info(info: SigInfo) -> Option<Received> {
        let signal = Signal::from_raw(info.signo)?;
        let origin = Origin::from_code(info.code);
        let value = match origin {
            Origin::Queue | Origin::Timer | Origin::MessageQueue => Some(info.value as usize),
            _ => None,
        };
        Some(Received {
            signal,
            origin,
            sender_pid: info.pid,
            sender_uid: info.uid,
            value,
            code: info.code,
        })
    }

    /// The value's `int` member (its low 32 bits), as C's `si_value.sival_int`.
    pub fn value_int(&self) -> Option<i32> {
        self.value.map(|v| v as u32 as i32)
    }
}

/// Why [`Signals::new`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// `SIGKILL` and `SIGSTOP` can be neither caught nor blocked.
    #[error("{0} cannot be caught or blocked, so it cannot be subscribed to")]
    Uncatchable(Signal),
    /// No signal was given.
    #[error("no signal to subscribe to")]
    Empty,
    /// Changing the thread's signal mask failed.
    #[error("cannot block the signals in this thread")]
    Mask(#[source] Errno),
    /// Reading `/proc/self/task` to check the other threads' masks failed.
    #[error("cannot read the other threads' signal masks")]
    ThreadMasks(#[source] Errno),
    /// `signalfd` failed.
    #[error("cannot create a signalfd")]
    SignalFd(#[source] Errno),
    /// Creating the self-pipe failed.
    #[error("cannot create the self-pipe")]
    Pipe(#[source] Errno),
    /// Starting the watcher thread of a [`Termination`](super::Termination)
    /// failed.
    #[error("cannot start the termination watcher thread")]
    Thread(#[source] std::io::Error),
    /// Installing the handler for the self-pipe failed.
    #[error("cannot install a handler for {signal}")]
    Handler {
        /// The signal.
        signal: Signal,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

/// Why receiving failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// Reading the signalfd or the pipe failed.
    #[error("cannot read the signal source")]
    Read(#[source] Errno),
    /// Waiting for the source failed.
    #[error("cannot wait for signals")]
    Wait(#[source] Errno),
}

enum Backend {
    Fd {
        fd: OwnedFd,
        /// Signals of the set that this subscription blocked (they were not
        /// blocked before), unblocked again on drop.
        newly_blocked: SigSet,
        owner_thread: u32,
    },
    Pipe {
        read: OwnedFd,
        handlers: Vec<HandlerId>,
    },
}

/// A subscription to a set of signals, received as [`Received`] values.
///
/// Receive with [`next`](Signals::next) (blocking),
/// [`try_next`](Signals::try_next), [`next_timeout`](Signals::next_timeout)
/// or the iterator [`iter`](Signals::iter). The subscription is a
/// readable file descriptor ([`AsFd`]): put it in `poll`/epoll (or a
/// WaitSet) and call `try_next` until it returns `None` when it is readable.
///
/// Which back end is used, and what that implies, is described in the
/// [module docs](super); [`mode`](Signals::mode) tells which one was chosen.
/// Two subscriptions to the same signal in one process share deliveries:
/// each delivery reaches one of them (signalfd) or both (self-pipe).
pub struct Signals {
    set: SigSet,
    backend: Backend,
}

impl core::fmt::Debug for Signals {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Signals")
            .field("signals", &self.set)
            .field("mode", &self.mode())
            .finish()
    }
}

impl Signals {
    /// Subscribes to `signals` with [`Mode::Auto`].
    pub fn new(signals: impl IntoIterator<Item = Signal>) -> Result<Signals, SubscribeError> {
        Signals::with_mode(signals, Mode::Auto)
    }

    /// Subscribes to `signals` with the given back end.
    pub fn with_mode(
        signals: impl IntoIterator<Item = Signal>,
        mode: Mode,
    ) -> Result<Signals, SubscribeError> {
        let mut set = SigSet::empty();
        for s in signals {
            if !s.can_be_caught() {
                return Err(SubscribeError::Uncatchable(s));
            }
            set.add(s.as_raw()).map_err(SubscribeError::Mask)?;
        }
        if set.is_empty() {
            return Err(SubscribeError::Empty);
        }
        match mode {
            Mode::SelfPipe => Signals::self_pipe(set, true),
            Mode::SignalFd => Signals::signalfd(set, false)
                .map(|s| s.expect("signalfd without check always subscribes")),
            Mode::Auto => match Signals::signalfd(set, true)? {
                Some(s) => Ok(s),
                None => Signals::self_pipe(set, false),
            },
        }
    }

    /// Blocks `set` here and opens a signalfd. With `check`, gives up (and
    /// restores the mask) when some other thread does not block `set`.
    fn signalfd(set: SigSet, check: bool) -> Result<Option<Signals>, SubscribeError> {
        let before = sys::thread_mask(MaskHow::Block, &set).map_err(SubscribeError::Mask)?;
        let mut newly_blocked = SigSet::empty();
        for s in set.iter().filter(|&s| !before.contains(s)) {
            // `s` came out of a valid set: adding it cannot fail.
            let _ = newly_blocked.add(s);
        }
        let undo = || {
            let _ = sys::thread_mask(MaskHow::Unblock, &newly_blocked);
        };
        if check {
            match sys::blocked_in_all_threads(&set) {
                Ok(true) => {}
                Ok(false) => {
                    undo();
                    return Ok(None);
                }
                Err(e) => {
                    undo();
                    return Err(SubscribeError::ThreadMasks(e));
                }
            }
        }
        match sys::open_signalfd(&set) {
            Ok(fd) => Ok(Some(Signals {
                set,
                backend: Backend::Fd {
                    fd,
                    newly_blocked,
                    owner_thread: crate::sys::process::thread_id(),
                },
            })),
            Err(e) => {
                undo();
                Err(SubscribeError::SignalFd(e))
            }
        }
    }

    fn self_pipe(set: SigSet, unblock: bool) -> Result<Signals, SubscribeError> {
        let (read, write) = sys::nonblocking_pipe().map_err(SubscribeError::Pipe)?;
        let write = Arc::new(write);
        let mut handlers = Vec::new();
        for s in set.iter() {
            match sys::forward_to_pipe(s, Arc::clone(&write)) {
                Ok(id) => handlers.push(id),
                Err(source) => {
                    for id in handlers {
                        sys::remove_handler(id);
                    }
                    return Err(SubscribeError::Handler {
                        signal: Signal::from_raw(s).unwrap_or(Signal::TERM),
                        source,
                    });
                }
            }
        }
        if unblock {
            // A handler only runs in a thread that does not block the
            // signal: make sure at least this one does not.
            sys::thread_mask(MaskHow::Unblock, &set).map_err(SubscribeError::Mask)?;
        }
        Ok(Signals {
            set,
            backend: Backend::Pipe { read, handlers },
        })
    }

    /// The back end in use.
    pub fn mode(&self) -> Mode {
        match self.backend {
            Backend::Fd { .. } => Mode::SignalFd,
            Backend::Pipe { .. } => Mode::SelfPipe,
        }
    }

    /// Whether `signal` is part of this subscription.
    pub fn contains(&self, signal: Signal) -> bool {
        self.set.contains(signal.as_raw())
    }

    /// Takes one delivered signal if there is one, without waiting.
    pub fn try_next(&mut self) -> Result<Option<Received>, ReceiveError> {
        loop {
            let info = match &self.backend {
                Backend::Fd { fd, .. } => sys::read_signalfd(fd),
                Backend::Pipe { read, .. } => sys::read_pipe_record(read),
            }
            .map_err(ReceiveError::Read)?;
            match info {
                None => return Ok(None),
                Some(info) => {
                    if let Some(r) = Received::from_info(info) {
                        return Ok(Some(r));
                    }
                    // A number outside the usable range cannot be in our
                    // set; skip it rather than fail.
                }
            }
        }
    }

    /// Waits for the next delivered signal.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Received, ReceiveError> {
        loop {
            if let Some(r) = self.next_deadline(None)? {
                return Ok(r);
            }
        }
    }

    /// Waits at most `timeout` for the next delivered signal; `None` if none
    /// came.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Received>, ReceiveError> {
        self.next_deadline(Instant::now().checked_add(timeout))
    }

    fn next_deadline(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Received>, ReceiveError> {
        loop {
            if let Some(r) = self.try_next()? {
                return Ok(Some(r));
            }
            let remaining = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return Ok(None),
                },
            };
            match sys::poll_readable(&[self.as_fd()], remaining) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(ReceiveError::Wait(e)),
            }
        }
    }

    /// A blocking iterator over deliveries; it never ends by itself (only
    /// an error, which it yields, is worth stopping for).
    pub fn iter(&mut self) -> Iter<'_> {
        Iter { signals: self }
    }

    /// Takes every delivery already pending, without waiting.
    pub fn drain(&mut self) -> Result<Vec<Received>, ReceiveError> {
        let mut all = Vec::new();
        while let Some(r) = self.try_next()? {
            all.push(r);
        }
        Ok(all)
    }
}

/// Blocking iterator returned by [`Signals::iter`].
#[derive(Debug)]
pub struct Iter<'a> {
    signals: &'a mut Signals,
}

impl Iterator for Iter<'_> {
    type Item = Result<Received, ReceiveError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.signals.next())
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.backend {
            Backend::Fd { fd, .. } => fd.as_fd(),
            Backend::Pipe { read, .. } => read.as_fd(),
        }
    }
}

impl AsRawFd for Signals {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        match &mut self.backend {
            Backend::Fd {
                newly_blocked,
                owner_thread,
                ..
            } => {
                // The mask belongs to the thread that blocked; another
                // thread cannot restore it.
                if *owner_thread == crate::sys::process::thread_id() {
                    let _ = sys::thread_mask(MaskHow::Unblock, newly_blocked);
                }
            }
            Backend::Pipe { handlers, .. } => {
                for id in handlers.drain(..) {
                    sys::remove_handler(id);
                }
            }
        }
    }
}

/// A `Signals` subscription can be attached to a
/// [`WaitSet`](crate::waitset::WaitSet): it is reported ready when a signal
/// is pending; read it with [`Signals::try_next`] (the WaitSet does not
/// consume it for you).
impl crate::waitset::Attachable for Signals {
    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}
