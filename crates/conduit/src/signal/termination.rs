//! [`Termination`]: the first SIGINT/SIGTERM/SIGHUP asks the program to
//! stop, a second one forces the signal's default action.

use std::future::Future;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sys::Errno;
use crate::sys::signal::{self as sys, MaskHow, SigSet};

use super::{Mode, Received, Signal, Signals, SubscribeError};

struct Shared {
    /// Set once, by the watcher thread, on the first signal; never reset.
    /// Release on store / Acquire on load so that `first` is visible to a
    /// reader that saw the flag.
    requested: AtomicBool,
    first: Mutex<Option<Received>>,
    cond: Condvar,
    wakers: Mutex<Vec<Waker>>,
}

/// The graceful-shutdown pattern.
///
/// The first termination signal (by default SIGINT, SIGTERM or SIGHUP) is
/// only recorded: [`is_requested`](Termination::is_requested) becomes true,
/// [`wait`](Termination::wait) returns, the [`requested`](Termination::requested)
/// future completes, and the fd ([`AsFd`]) becomes readable — and stays
/// readable, so it can sit in a poll/epoll set or a WaitSet. The program
/// then shuts down in its own time. A second termination signal (of any of
/// the subscribed kinds) is not caught any more: its default action runs,
/// which for these signals ends the process at once (the parent sees it as
/// killed by that signal, the conventional outcome).
///
/// A watcher thread reads a [`Signals`] subscription; create the
/// `Termination` early in `main`, before other threads, so that the
/// signalfd back end can be used (see the [module docs](super)).
pub struct Termination {
    shared: Arc<Shared>,
    mode: Mode,
    notify_read: OwnedFd,
    stop_write: Option<OwnedFd>,
    watcher: Option<JoinHandle<Option<Signals>>>,
}

impl core::fmt::Debug for Termination {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Termination")
            .field("requested", &self.is_requested())
            .finish()
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SubscribeError> {
    sys::nonblocking_pipe().map_err(SubscribeError::Pipe)
}

impl Termination {
    /// Watches SIGINT, SIGTERM and SIGHUP.
    pub fn install() -> Result<Termination, SubscribeError> {
        Termination::for_signals([Signal::INT, Signal::TERM, Signal::HUP])
    }

    /// Watches the given signals.
    pub fn for_signals(
        signals: impl IntoIterator<Item = Signal>,
    ) -> Result<Termination, SubscribeError> {
        let mut subscription = Signals::new(signals)?;
        let mode = subscription.mode();
        let (notify_read, notify_write) = pipe()?;
        let (stop_read, stop_write) = pipe()?;
        let shared = Arc::new(Shared {
            requested: AtomicBool::new(false),
            first: Mutex::new(None),
            cond: Condvar::new(),
            wakers: Mutex::new(Vec::new()),
        });
        let watcher_shared = Arc::clone(&shared);
        let watcher = std::thread::Builder::new()
            .name("conduit-termination".into())
            .spawn(move || {
                watch(
                    &mut subscription,
                    &watcher_shared,
                    &notify_write,
                    &stop_read,
                );
                Some(subscription)
            })
            .map_err(SubscribeError::Thread)?;
        Ok(Termination {
            shared,
            mode,
            notify_read,
            stop_write: Some(stop_write),
            watcher: Some(watcher),
        })
    }

    /// The back end of the underlying [`Signals`] subscription.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether a termination signal has arrived.
    pub fn is_requested(&self) -> bool {
        self.shared.requested.load(Ordering::Acquire)
    }

    /// The first termination signal, once one has arrived.
    pub fn signal(&self) -> Option<Received> {
        *lock(&self.shared.first)
    }

    /// Blocks until a termination signal arrives.
    pub fn wait(&self) -> Received {
        let mut first = lock(&self.shared.first);
        loop {
            if let Some(r) = *first {
                return r;
            }
            first = self
                .shared
                .cond
                .wait(first)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Blocks at most `timeout` for a termination signal.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Received> {
        let deadline = Instant::now().checked_add(timeout);
        let mut first = lock(&self.shared.first);
        loop {
            if let Some(r) = *first {
                return Some(r);
            }
            let left = match deadline {
                Some(d) => d.checked_duration_since(Instant::now())?,
                None => Duration::from_secs(3600),
            };
            first = self
                .shared
                .cond
                .wait_timeout(first, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// A future that completes with the first termination signal (works
    /// with any executor).
    pub fn requested(&self) -> Requested<'_> {
        Requested { termination: self }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn watch(signals: &mut Signals, shared: &Shared, notify: &OwnedFd, stop: &OwnedFd) {
    loop {
        let ready = match sys::poll_readable(&[signals.as_fd(), stop.as_fd()], None) {
            Ok(r) => r,
            Err(Errno::INTR) => continue,
            Err(_) => return,
        };
        if ready[1] {
            return;
        }
        loop {
            let received = match signals.try_next() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(_) => return,
            };
            if !shared.requested.load(Ordering::Acquire) {
                // The fd first, so that whoever sees the flag or the
                // condition also finds the fd readable.
                let _ = sys::write_wake_byte(notify);
                *lock(&shared.first) = Some(received);
                shared.requested.store(true, Ordering::Release);
                shared.cond.notify_all();
                for w in lock(&shared.wakers).drain(..) {
                    w.wake();
                }
            } else {
                force_default(received.signal);
            }
        }
    }
}

/// Lets `signal` take its default action: restore `SIG_DFL`, raise it
/// again for the process, and unblock it in this thread (which may be the
/// only one not blocking it), where it is then delivered.
fn force_default(signal: Signal) {
    let raw = signal.as_raw();
    let _ = sys::set_default_action(raw);
    let _ = sys::send(crate::sys::process::process_id(), raw);
    if let Ok(set) = SigSet::of(&[raw]) {
        let _ = sys::thread_mask(MaskHow::Unblock, &set);
    }
}

impl AsFd for Termination {
    /// A descriptor that becomes readable when termination is requested,
    /// and stays readable.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.notify_read.as_fd()
    }
}

impl AsRawFd for Termination {
    fn as_raw_fd(&self) -> RawFd {
        self.notify_read.as_raw_fd()
    }
}

impl Drop for Termination {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_write.take() {
            let _ = sys::write_wake_byte(&stop);
        }
        if let Some(w) = self.watcher.take() {
            // The subscription comes back and is dropped here, on the
            // thread that (normally) created it, so its mask is restored.
            drop(w.join());
        }
    }
}

/// Future returned by [`Termination::requested`].
#[derive(Debug)]
pub struct Requested<'a> {
    termination: &'a Termination,
}

impl Future for Requested<'_> {
    type Output = Received;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Received> {
        let shared = &self.termination.shared;
        if let Some(r) = *lock(&shared.first) {
            return Poll::Ready(r);
        }
        {
            let mut wakers = lock(&shared.wakers);
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        // Re-check after registering: the watcher may have fired between
        // the first check and the push.
        match *lock(&shared.first) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}
