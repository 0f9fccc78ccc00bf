//! The WaitSet: one epoll-based event loop over file descriptors,
//! subscribers and listeners ([`Attachable`]), intervals, one-shot
//! timers, deadlines and termination signals.
//!
//! ```no_run
//! use std::time::Duration;
//! use conduit::waitset::{Control, Event, WaitSet};
//!
//! let set = WaitSet::new()?;
//! let tick = set.attach_interval(Duration::from_millis(10))?;
//! let mut ticks = 0;
//! set.run(|event| match event {
//!     Event::Interval { id, count } if id == tick.id() => {
//!         ticks += count;
//!         if ticks >= 3 { Control::Stop } else { Control::Continue }
//!     }
//!     _ => Control::Continue,
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Edge cases
//!
//! - **Level-triggered.** A file descriptor that stays ready (unread data
//!   in a pipe) is reported by every wait until you consume it: drain what
//!   you were told about, or you are told again (never lost, at worst
//!   repeated). Timers, signals and the `acknowledge` hook of an
//!   [`Attachable`] are drained by the WaitSet itself.
//! - **Spurious wake-ups.** A readiness report is a hint: by the time you
//!   read, another reader in another process may have taken the data, so
//!   read non-blocking and accept "nothing there". The WaitSet never
//!   reports a timer that has not expired: if a deadline was re-armed by
//!   its source within the same batch, the stale expiry is dropped.
//! - **Peer crash.** When the process at the other end of a pipe or socket
//!   dies, its end is closed by the kernel: you get one
//!   [`Event::Ready`] with [`Readiness::hang_up`] (or `error`) set. Read
//!   the remaining data until end of file. The WaitSet then stops watching
//!   that descriptor (level-triggered hang-up would otherwise be reported
//!   forever — a busy loop); the attachment stays until detached, and its
//!   deadline, if any, keeps reporting misses.
//! - **Detach while running.** [`WaitSet::detach`] and [`Guard`] may be
//!   used from inside the [`WaitSet::run`] closure, also for the source
//!   being handled or one that is ready in the same batch: a detached
//!   source is never reported afterwards.
//! - **Signals.** `EINTR` is retried with the remaining timeout. Signals
//!   you want to handle go through [`WaitSet::attach_termination`] (a
//!   signalfd), never through handlers.
//! - **What you must drain.** Plain descriptors ([`WaitSet::attach_fd`]):
//!   read (or write) until `EAGAIN`/end of file, or consume at least what
//!   made them ready. An [`Attachable`] whose `acknowledge` resets its
//!   descriptor (like [`WakeUp`]): take every message it holds, because
//!   the wake-ups of a burst are coalesced into one report.
//! - **Lifetimes.** [`Attachable`] sources are borrowed for the life of
//!   the WaitSet: declare them before it. Plain descriptors are
//!   duplicated, not borrowed.
//! - **Not thread-safe.** A WaitSet belongs to one thread (`!Sync`); other
//!   threads and processes wake it through file descriptors (see
//!   [`WakeUp`]).
//!
//! # Design
//!
//! | attach with | watches | reported as |
//! |---|---|---|
//! | [`WaitSet::attach_fd`] | a duplicate of any pollable descriptor | [`Event::Ready`] |
//! | [`WaitSet::attach`] | [`Attachable::fd`], readable; `acknowledge` called before reporting | [`Event::Ready`] |
//! | [`WaitSet::attach_fd_deadline`] / [`WaitSet::attach_deadline`] | as above, plus a timerfd re-armed each time the source is reported | `Ready`, or [`Event::DeadlineMissed`] every period of silence |
//! | [`WaitSet::attach_interval`] | a periodic timerfd | [`Event::Interval`] with the expirations since the last report (overruns) |
//! | [`WaitSet::attach_timer`] | a one-shot timerfd | [`Event::Timer`], once |
//! | [`WaitSet::attach_termination`] | SIGINT and SIGTERM through [`Signals`] | [`Event::Termination`] |
//!
//! **Slot table with generations.** Each attachment lives in a slot; its
//! [`AttachmentId`] is (slot index, 31-bit generation from a per-WaitSet
//! counter). The epoll data word is `generation << 33 | timer_bit << 32 |
//! index`, so a kernel report is matched against the *current* occupant of
//! the slot. The batch from `epoll_wait` (at most 64 reports; the rest stay
//! pending, level-triggered, for the next wait) is processed one report at
//! a time: each is looked up, and its timer or signal read and its
//! `acknowledge` hook run, only right before its event reaches the
//! closure; a report whose slot is empty or holds another generation is
//! dropped. That is what makes detaching during [`WaitSet::run`] safe, and
//! keeps a slot reused inside the closure from receiving the old source's
//! report.
//!
//! **Interior mutability, one thread.** The table is in a `RefCell` and
//! every method takes `&self`, so the closure of `run` can attach and
//! detach through the same `&WaitSet`; no borrow is held while user code
//! (the closure, an `acknowledge` hook) runs.
//!
//! **Borrowed sources, duplicated descriptors.** [`Attachable`]s are
//! borrowed (the WaitSet calls their `acknowledge`). Plain descriptors are
//! duplicated (`F_DUPFD_CLOEXEC`) and the WaitSet watches its own copy: the
//! caller keeps `&mut` use of theirs (a `ChildStdout` needs it), may close
//! it, and a recycled descriptor number never aliases a watched one; the
//! cost is one descriptor per attached fd. Epoll registrations are keyed by
//! (file, fd), so detaching a source always does an explicit
//! `EPOLL_CTL_DEL`; timers and signal descriptors belong to the WaitSet and
//! leave epoll when closed.
//!
//! **Deadline ordering.** A batch is sorted so that source reports come
//! before deadline-timer reports: a source ready in the same batch in which
//! its deadline expired re-arms the timer (`timerfd_settime` resets the
//! count), the timer then reads 0 and its stale report is dropped ("just in
//! time" wins over "missed"). Timers are non-blocking, so a 0 read never
//! blocks.
//!
//! **Hang-up.** `EPOLLHUP`/`EPOLLERR` are always reported and, being
//! level-triggered, never clear: a pipe whose writer died would make every
//! wait return at once. On the first such report the WaitSet reports
//! `Ready` with [`Readiness::hang_up`] (or `error`) and removes the
//! descriptor from epoll; [`WaitSet::wait`] and `run` with nothing epoll can
//! still report return [`WaitError::NothingToWaitFor`] instead of blocking
//! forever.
//!
//! **`EINTR`** is retried with the time left (from `Instant`); a wait that
//! ends with only stale reports waits again, so `wait()` never returns an
//! empty batch and `wait_timeout` only at its timeout. Waits longer than
//! epoll's `i32::MAX` ms are made in steps. Timers use `CLOCK_MONOTONIC`
//! (time spent suspended does not count); there are no absolute-time
//! deadlines.
//!
//! **Why epoll.** One kernel object watches any number of descriptors; the
//! interest list lives in the kernel, so a wait costs O(ready), not
//! O(attached) as with `poll`/`select`, with no per-wait copy of the set.
//! Everything conduit waits on is or can become a descriptor (pipes,
//! sockets, message queues, timerfd, signalfd, eventfd, pidfd, the ports'
//! wake sockets). `io_uring` would save the `read` of timers and eventfds
//! but is often disabled (containers, seccomp), adds a large unsafe
//! surface, and wakes a single sleeper no faster. The epoll descriptor is
//! itself pollable, so a WaitSet nests in another loop (`WaitSet` is
//! `AsFd`).
//!
//! **Why level-triggered.** No lost wake-ups by construction: a user who
//! drains a source partly, or returns [`Control::Stop`] mid-batch, is told
//! again on the next wait (the worst case of a partial drain is an extra
//! wake-up, never a hang). The cost is bounded: everything the WaitSet owns
//! (timers, signals, `acknowledge`) is drained before the event is
//! reported, so only user descriptors repeat, and only while they hold
//! data; permanent conditions are handled as above.

mod event;
mod wakeup;

pub use event::{AttachmentId, Control, Event, Interest, Readiness};
pub use wakeup::WakeUp;

use std::cell::RefCell;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::signal::{ReceiveError, Signal, Signals, SubscribeError};
use crate::sys::epoll::{self, EventFlags};
use crate::sys::{Errno, fd, timerfd};

/// Something that can be attached to a [`WaitSet`]: it exposes a file
/// descriptor that becomes readable when it has something for you.
///
/// Subscribers and listeners implement it; so can you. The WaitSet calls
/// [`acknowledge`](Attachable::acknowledge) each time it reports the
/// source ready, before your code runs, so a level-triggered descriptor
/// (an eventfd, say) is reset and a notification that arrives while you
/// handle the event makes it ready again: never lost, at worst reported
/// once more than needed.
pub trait Attachable {
    /// The descriptor the WaitSet watches for readability.
    fn fd(&self) -> BorrowedFd<'_>;

    /// Called when the descriptor was reported readable, before the event
    /// reaches your code; resets it (for example reads an eventfd).
    /// The default does nothing: then you must consume what made it
    /// readable, or it is reported again by every wait.
    fn acknowledge(&self) {}
}

/// Failure to create a [`WaitSet`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The process or system is out of file descriptors.
    #[error(
        "out of file descriptors: {}",
        crate::shm::descriptor_hint(*.0, crate::sys::process::descriptor_limit())
    )]
    TooManyDescriptors(#[source] Errno),
    /// Any other failure of `epoll_create1`.
    #[error("cannot create epoll instance")]
    Other(#[source] Errno),
}

/// Failure to attach a source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// This [`Attachable`] is already attached to this WaitSet. (A
    /// descriptor given to [`WaitSet::attach_fd`] may be attached twice:
    /// each attachment watches its own duplicate.)
    #[error("the source is already attached")]
    AlreadyAttached(#[source] Errno),
    /// The descriptor does not support polling (a regular file or a
    /// directory).
    #[error("the descriptor cannot be polled (regular file?)")]
    NotPollable(#[source] Errno),
    /// An interval, deadline or timer of zero length, or one too long for
    /// the kernel.
    #[error("invalid duration {0:?}: must be non-zero")]
    InvalidDuration(Duration),
    /// Out of file descriptors (each timer and deadline needs one) or of
    /// epoll watches (`/proc/sys/fs/epoll/max_user_watches`).
    #[error("out of file descriptors or epoll watches")]
    LimitReached(#[source] Errno),
    /// Subscribing to the termination signals failed.
    #[error("cannot subscribe to SIGINT/SIGTERM")]
    Signals(#[from] SubscribeError),
    /// Any other failure.
    #[error("cannot attach")]
    Other(#[source] Errno),
}

impl AttachError {
    fn from_errno(e: Errno) -> Self {
        match e {
            Errno::EXIST => Self::AlreadyAttached(e),
            Errno::PERM => Self::NotPollable(e),
            Errno::MFILE | Errno::NFILE | Errno::NOSPC | Errno::NOMEM => Self::LimitReached(e),
            e => Self::Other(e),
        }
    }
}

/// Failure of [`WaitSet::wait`], [`WaitSet::wait_timeout`] or
/// [`WaitSet::run`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// Nothing is attached (or every attached descriptor hung up and has
    /// no deadline): waiting without a timeout would block forever.
    #[error("nothing is attached that could ever become ready")]
    NothingToWaitFor,
    /// `epoll_wait`, or reading a timer or signal descriptor, failed.
    #[error("waiting failed")]
    Other(#[source] Errno),
    /// Reading the termination signals failed.
    #[error("reading the termination signals failed")]
    Signals(#[from] ReceiveError),
}

/// Keeps a source attached; dropping it (or [`Guard::detach`]) detaches
/// the source. Returned by every `attach_*` method.
#[must_use = "dropping the guard detaches the source at once"]
pub struct Guard<'set, 'src> {
    set: &'set WaitSet<'src>,
    id: AttachmentId,
}

impl Guard<'_, '_> {
    /// The id events of this source carry.
    pub fn id(&self) -> AttachmentId {
        self.id
    }

    /// Detaches the source now.
    pub fn detach(self) {
        drop(self);
    }

    /// Keeps the source attached without the guard, until
    /// [`WaitSet::detach`] with the returned id or the end of the WaitSet.
    pub fn keep(self) -> AttachmentId {
        let id = self.id;
        core::mem::forget(self);
        id
    }
}

impl Drop for Guard<'_, '_> {
    fn drop(&mut self) {
        self.set.detach(self.id);
    }
}

impl core::fmt::Debug for Guard<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Guard").field("id", &self.id).finish()
    }
}

/// One source in the slot table.
struct Entry<'src> {
    generation: u32,
    kind: Kind<'src>,
}

enum Kind<'src> {
    /// A descriptor (possibly of an [`Attachable`]), with an optional
    /// deadline timer.
    Source {
        fd: SourceFd<'src>,
        attachable: Option<&'src dyn Attachable>,
        deadline: Option<(OwnedFd, Duration)>,
        /// False once it hung up and was removed from epoll.
        watched: bool,
    },
    Interval(OwnedFd),
    Timer(OwnedFd),
    Termination(Box<Signals>),
}

/// The descriptor of a source: that of a borrowed [`Attachable`], or our
/// own duplicate of a descriptor given to [`WaitSet::attach_fd`] (so the
/// caller may keep using, or close, theirs).
enum SourceFd<'src> {
    Borrowed(BorrowedFd<'src>),
    Owned(OwnedFd),
}

impl AsFd for SourceFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            SourceFd::Borrowed(fd) => *fd,
            SourceFd::Owned(fd) => fd.as_fd(),
        }
    }
}

struct Inner<'src> {
    slots: Vec<Option<Entry<'src>>>,
    free: Vec<u32>,
    next_generation: u32,
    /// Attachments epoll can still report (every slot but hung-up sources
    /// without a deadline).
    live: usize,
}

/// Bit 32 of the epoll data: set for the deadline timer of a source.
const TIMER_BIT: u64 = 1 << 32;
/// Generations use 31 bits (bits 33..64 of the epoll data).
const GENERATION_MASK: u32 = (1 << 31) - 1;

fn encode(id: AttachmentId, timer: bool) -> u64 {
    (u64::from(id.generation) << 33) | if timer { TIMER_BIT } else { 0 } | u64::from(id.index)
}

fn decode(data: u64) -> (AttachmentId, bool) {
    let id = AttachmentId {
        index: data as u32,
        generation: (data >> 33) as u32,
    };
    (id, data & TIMER_BIT != 0)
}

/// The longest single `epoll_wait`; longer timeouts loop.
const MAX_SINGLE_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// Up to this many ready descriptors are taken from the kernel per wait.
const BATCH: usize = 64;

/// An event loop over many sources. See the [module docs](self).
///
/// `'src` is the lifetime of the borrowed [`Attachable`] sources
/// (subscribers, listeners): they must outlive the WaitSet, so declare
/// them before it. Plain descriptors are not borrowed (see
/// [`attach_fd`](Self::attach_fd)).
pub struct WaitSet<'src> {
    epoll: OwnedFd,
    inner: RefCell<Inner<'src>>,
}

impl core::fmt::Debug for WaitSet<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WaitSet")
            .field("attached", &self.len())
            .finish()
    }
}

impl<'src> WaitSet<'src> {
    /// An empty WaitSet (one epoll instance).
    pub fn new() -> Result<Self, CreateError> {
        let epoll = epoll::create().map_err(|e| match e {
            Errno::MFILE | Errno::NFILE => CreateError::TooManyDescriptors(e),
            e => CreateError::Other(e),
        })?;
        Ok(Self {
            epoll,
            inner: RefCell::new(Inner {
                slots: Vec::new(),
                free: Vec::new(),
                next_generation: 0,
                live: 0,
            }),
        })
    }

    /// How many sources are attached.
    pub fn len(&self) -> usize {
        self.inner.borrow().slots.iter().flatten().count()
    }

    /// Whether nothing is attached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Watches any file descriptor for `interest`; reported as
    /// [`Event::Ready`]. You must consume what made it ready (read the
    /// data), or it is reported again by every wait.
    ///
    /// The WaitSet watches its own duplicate of `fd` (one more descriptor
    /// per attachment), so you keep full use of yours, may close it, and
    /// a reused descriptor number can never be confused with it. Closing
    /// yours does not end the watch while the file stays open through the
    /// duplicate: detach to stop.
    pub fn attach_fd(
        &self,
        fd: impl AsFd,
        interest: Interest,
    ) -> Result<Guard<'_, 'src>, AttachError> {
        let fd = fd::duplicate(fd).map_err(AttachError::from_errno)?;
        self.attach_source(SourceFd::Owned(fd), None, interest, None)
    }

    /// Watches a subscriber, listener or any [`Attachable`] for
    /// readability; reported as [`Event::Ready`] after its
    /// [`acknowledge`](Attachable::acknowledge) hook ran.
    pub fn attach<A: Attachable>(&self, source: &'src A) -> Result<Guard<'_, 'src>, AttachError> {
        self.attach_source(
            SourceFd::Borrowed(source.fd()),
            Some(source),
            Interest::READABLE,
            None,
        )
    }

    /// Like [`attach_fd`](Self::attach_fd), with a deadline: if the
    /// descriptor does not become ready within `deadline` of the last
    /// time it did (or of attaching), [`Event::DeadlineMissed`] is
    /// reported, and again every `deadline` while nothing arrives.
    pub fn attach_fd_deadline(
        &self,
        fd: impl AsFd,
        interest: Interest,
        deadline: Duration,
    ) -> Result<Guard<'_, 'src>, AttachError> {
        let fd = fd::duplicate(fd).map_err(AttachError::from_errno)?;
        self.attach_source(SourceFd::Owned(fd), None, interest, Some(deadline))
    }

    /// Like [`attach`](Self::attach), with a deadline (see
    /// [`attach_fd_deadline`](Self::attach_fd_deadline)).
    pub fn attach_deadline<A: Attachable>(
        &self,
        source: &'src A,
        deadline: Duration,
    ) -> Result<Guard<'_, 'src>, AttachError> {
        self.attach_source(
            SourceFd::Borrowed(source.fd()),
            Some(source),
            Interest::READABLE,
            Some(deadline),
        )
    }

    /// A periodic timer (a timerfd) firing every `period`, first after one
    /// `period`; reported as [`Event::Interval`] with the number of
    /// periods that passed since the last report (more than one when the
    /// loop was late: overruns are counted, never lost or reported twice).
    pub fn attach_interval(&self, period: Duration) -> Result<Guard<'_, 'src>, AttachError> {
        let timer = new_timer(period, Some(period))?;
        self.attach_owned(Kind::Interval(timer))
    }

    /// A one-shot timer firing once, `after` from now; reported once as
    /// [`Event::Timer`]. It stays attached (and silent) until detached.
    pub fn attach_timer(&self, after: Duration) -> Result<Guard<'_, 'src>, AttachError> {
        let timer = new_timer(after, None)?;
        self.attach_owned(Kind::Timer(timer))
    }

    /// Reports `SIGINT` and `SIGTERM` as [`Event::Termination`] instead of
    /// letting them end the process.
    ///
    /// Blocks both signals in the calling thread and reads them through a
    /// signalfd. A signal is only queued for the signalfd if **every**
    /// thread blocks it; a thread that does not receives it the default
    /// way (the process ends). Call this on the main thread before any
    /// thread is created (threads inherit the mask), or block the signals
    /// in the others too. Beware of threads you did not create: the test
    /// harness, for one, runs each test on a thread of its own while its
    /// main thread does not block anything. The mask is also inherited
    /// across `fork` and `exec`, so a parent can block the signals for a
    /// whole child process before `exec`. The signals stay blocked after
    /// detaching.
    ///
    /// Uses [`Signals`] for `SIGINT` and `SIGTERM` (a signalfd when every
    /// thread blocks them, a self-pipe otherwise; see [`crate::signal`]).
    pub fn attach_termination(&self) -> Result<Guard<'_, 'src>, AttachError> {
        let signals = Signals::new([Signal::INT, Signal::TERM])?;
        self.attach_owned(Kind::Termination(Box::new(signals)))
    }

    /// Detaches the source `id`; returns whether it was attached. Safe to
    /// call from inside [`run`](Self::run): a detached source is never
    /// reported again, even if it is ready in the batch being handled.
    pub fn detach(&self, id: AttachmentId) -> bool {
        let mut inner = self.inner.borrow_mut();
        let Some(slot) = inner.slots.get_mut(id.index as usize) else {
            return false;
        };
        if !matches!(slot, Some(e) if e.generation == id.generation) {
            return false;
        }
        let entry = slot.take().expect("checked above");
        let counted = match &entry.kind {
            Kind::Source {
                fd,
                watched,
                deadline,
                ..
            } => {
                if *watched {
                    // The file stays open (borrowed, or the caller's copy
                    // of our duplicate), so epoll would keep watching it:
                    // remove it explicitly. Timer and signal descriptors
                    // are ours alone and leave epoll when closed below.
                    let _ = epoll::delete(&self.epoll, fd);
                }
                *watched || deadline.is_some()
            }
            _ => true,
        };
        if counted {
            inner.live -= 1;
        }
        inner.free.push(id.index);
        drop(entry);
        true
    }

    /// Waits until at least one source is ready and returns the events
    /// (never an empty list). [`WaitError::NothingToWaitFor`] instead of
    /// blocking forever when nothing attached can become ready.
    pub fn wait(&self) -> Result<Vec<Event>, WaitError> {
        self.wait_until(None)
    }

    /// Waits until at least one source is ready or `timeout` passes (then
    /// the result is empty).
    ///
    /// A timeout too large to represent waits forever.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Vec<Event>, WaitError> {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Calls `handle` for each event, waiting for more, until it returns
    /// [`Control::Stop`]. `handle` may attach and detach sources (through
    /// ids or guards it can reach).
    ///
    /// Returns [`WaitError::NothingToWaitFor`] when nothing attached can
    /// become ready any more (for example the handler detached everything).
    pub fn run(&self, mut handle: impl FnMut(Event) -> Control) -> Result<(), WaitError> {
        let mut batch = vec![epoll::empty_event(); BATCH];
        loop {
            let n = self.wait_raw(&mut batch, None)?;
            order_batch(&mut batch[..n]);
            for raw in &batch[..n] {
                if let Some(event) = self.take_event(raw)?
                    && handle(event) == Control::Stop
                {
                    return Ok(());
                }
            }
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<Vec<Event>, WaitError> {
        let mut batch = vec![epoll::empty_event(); BATCH];
        loop {
            let n = self.wait_raw(&mut batch, deadline)?;
            if n == 0 {
                return Ok(Vec::new());
            }
            order_batch(&mut batch[..n]);
            let mut events = Vec::with_capacity(n);
            for raw in &batch[..n] {
                if let Some(event) = self.take_event(raw)? {
                    events.push(event);
                }
            }
            if !events.is_empty() {
                return Ok(events);
            }
            // Only stale timer expiries: wait again.
        }
    }

    /// `epoll_wait` until something is ready or `deadline`; EINTR retried
    /// with the time left. Returns 0 only at the deadline.
    fn wait_raw(
        &self,
        batch: &mut [epoll::Event],
        deadline: Option<Instant>,
    ) -> Result<usize, WaitError> {
        loop {
            let timeout = match deadline {
                // Waits longer than a day are done in steps: without
                // epoll_pwait2, the kernel takes at most i32::MAX ms.
                Some(d) => Some(
                    d.saturating_duration_since(Instant::now())
                        .min(MAX_SINGLE_WAIT),
                ),
                None => {
                    if self.inner.borrow().live == 0 {
                        return Err(WaitError::NothingToWaitFor);
                    }
                    None
                }
            };
            match epoll::wait(&self.epoll, batch, timeout) {
                Ok(0) if timeout.is_some_and(|t| !t.is_zero()) => {
                    // A step of a long wait ended (see MAX_SINGLE_WAIT),
                    // or the clock disagrees by a hair: wait out the rest.
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(0);
                    }
                }
                Ok(n) => return Ok(n),
                Err(Errno::INTR) => {}
                Err(e) => return Err(WaitError::Other(e)),
            }
        }
    }

    /// Turns one kernel report into an event, or `None` when the source
    /// was detached meanwhile or the report is stale.
    fn take_event(&self, raw: &epoll::Event) -> Result<Option<Event>, WaitError> {
        let (id, is_timer) = decode(epoll::event_data(raw));
        let flags = epoll::event_flags(raw);
        let mut guard = self.inner.borrow_mut();
        let Inner { slots, live, .. } = &mut *guard;
        let Some(Some(entry)) = slots.get_mut(id.index as usize) else {
            return Ok(None);
        };
        if entry.generation != id.generation {
            return Ok(None);
        }
        let event = match &mut entry.kind {
            Kind::Source {
                fd,
                attachable,
                deadline,
                watched,
            } => {
                if is_timer {
                    let (timer, _) = deadline.as_ref().expect("timer bit only with a deadline");
                    match timerfd::read(timer).map_err(WaitError::Other)? {
                        0 => return Ok(None),
                        count => Event::DeadlineMissed { id, count },
                    }
                } else {
                    if !*watched {
                        return Ok(None);
                    }
                    if let Some((timer, period)) = deadline {
                        timerfd::arm(&*timer, *period, Some(*period)).map_err(WaitError::Other)?;
                    }
                    let readiness = Readiness::from_flags(flags);
                    if readiness.hang_up() || readiness.error() {
                        // Level-triggered hang-up never clears: stop
                        // watching, or every wait returns at once.
                        let _ = epoll::delete(&self.epoll, &*fd);
                        *watched = false;
                        let still_live = deadline.is_some();
                        if !still_live {
                            *live -= 1;
                        }
                    }
                    let attachable = *attachable;
                    drop(guard);
                    if let Some(a) = attachable
                        && readiness.readable()
                    {
                        a.acknowledge();
                    }
                    return Ok(Some(Event::Ready { id, readiness }));
                }
            }
            Kind::Interval(timer) => match timerfd::read(&*timer).map_err(WaitError::Other)? {
                0 => return Ok(None),
                count => Event::Interval { id, count },
            },
            Kind::Timer(timer) => match timerfd::read(&*timer).map_err(WaitError::Other)? {
                0 => return Ok(None),
                _ => Event::Timer(id),
            },
            Kind::Termination(signals) => match signals.try_next()? {
                None => return Ok(None),
                Some(received) => Event::Termination {
                    id,
                    signal: received.signal,
                },
            },
        };
        Ok(Some(event))
    }

    fn attach_source(
        &self,
        fd: SourceFd<'src>,
        attachable: Option<&'src dyn Attachable>,
        interest: Interest,
        deadline: Option<Duration>,
    ) -> Result<Guard<'_, 'src>, AttachError> {
        let deadline = match deadline {
            Some(d) => Some((new_timer(d, Some(d))?, d)),
            None => None,
        };
        let id = self.reserve();
        let result =
            epoll::add(&self.epoll, &fd, encode(id, false), interest.flags()).and_then(|()| {
                match &deadline {
                    Some((timer, _)) => {
                        epoll::add(&self.epoll, timer, encode(id, true), EventFlags::IN)
                            .inspect_err(|_| {
                                let _ = epoll::delete(&self.epoll, &fd);
                            })
                    }
                    None => Ok(()),
                }
            });
        if let Err(e) = result {
            self.inner.borrow_mut().free.push(id.index);
            return Err(AttachError::from_errno(e));
        }
        self.fill(
            id,
            Kind::Source {
                fd,
                attachable,
                deadline,
                watched: true,
            },
        );
        Ok(Guard { set: self, id })
    }

    fn attach_owned(&self, kind: Kind<'src>) -> Result<Guard<'_, 'src>, AttachError> {
        let id = self.reserve();
        let fd = match &kind {
            Kind::Interval(fd) | Kind::Timer(fd) => fd.as_fd(),
            Kind::Termination(signals) => signals.as_fd(),
            Kind::Source { .. } => unreachable!("sources use attach_source"),
        };
        if let Err(e) = epoll::add(&self.epoll, fd, encode(id, false), EventFlags::IN) {
            self.inner.borrow_mut().free.push(id.index);
            return Err(AttachError::from_errno(e));
        }
        self.fill(id, kind);
        Ok(Guard { set: self, id })
    }

    /// A free slot and a fresh generation (the slot stays empty until
    /// [`fill`](Self::fill)).
    fn reserve(&self) -> AttachmentId {
        let mut inner = self.inner.borrow_mut();
        let generation = inner.next_generation;
        inner.next_generation = (generation + 1) & GENERATION_MASK;
        let index = match inner.free.pop() {
            Some(i) => i,
            None => {
                inner.slots.push(None);
                (inner.slots.len() - 1) as u32
            }
        };
        AttachmentId { index, generation }
    }

    fn fill(&self, id: AttachmentId, kind: Kind<'src>) {
        let mut inner = self.inner.borrow_mut();
        inner.slots[id.index as usize] = Some(Entry {
            generation: id.generation,
            kind,
        });
        inner.live += 1;
    }
}

/// The epoll descriptor: readable when some attached source is ready, so
/// a WaitSet can be nested into another event loop (tokio's `AsyncFd`,
/// another WaitSet). Call [`WaitSet::wait_timeout`] with a zero timeout
/// when it is reported readable.
impl AsFd for WaitSet<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

fn new_timer(first: Duration, period: Option<Duration>) -> Result<OwnedFd, AttachError> {
    if first.is_zero() {
        return Err(AttachError::InvalidDuration(first));
    }
    let timer = timerfd::create().map_err(AttachError::from_errno)?;
    timerfd::arm(&timer, first, period).map_err(|e| match e {
        Errno::INVAL => AttachError::InvalidDuration(first),
        e => AttachError::Other(e),
    })?;
    Ok(timer)
}

/// Puts source reports before deadline-timer reports, so that a source
/// that became ready in the same batch as its deadline expired re-arms
/// the deadline first (the stale expiry then reads as zero and is
/// dropped): "arrived just in time" wins over "missed".
fn order_batch(batch: &mut [epoll::Event]) {
    batch.sort_by_key(|e| epoll::event_data(e) & TIMER_BIT != 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_data_round_trips() {
        for (index, generation, timer) in [
            (0, 0, false),
            (7, 3, true),
            (u32::MAX, GENERATION_MASK, true),
            (12, GENERATION_MASK, false),
        ] {
            let id = AttachmentId { index, generation };
            assert_eq!(decode(encode(id, timer)), (id, timer));
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "epoll and eventfd system calls")]
    fn nested_wait_set_is_readable_when_a_source_is() {
        let wake = WakeUp::new().unwrap();
        let inner = WaitSet::new().unwrap();
        let _g = inner.attach(&wake).unwrap();
        let outer = WaitSet::new().unwrap();
        let nested = outer.attach_fd(&inner, Interest::READABLE).unwrap();
        assert!(outer.wait_timeout(Duration::ZERO).unwrap().is_empty());
        wake.wake().unwrap();
        let events = outer.wait().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id(), nested.id());
        assert_eq!(inner.wait_timeout(Duration::ZERO).unwrap().len(), 1);
    }
}
