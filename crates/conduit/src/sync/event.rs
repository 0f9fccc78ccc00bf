//! [`EventWord`]: a futex word with an epoch and a sleeper count.
//!
//! The word's layout, its transition table and the argument that no
//! wake-up is lost are in the docs of [`EventWord`]. Two design choices
//! are argued here:
//!
//! * **A count, not a "sleepers" bit.** A bit cannot support `wake_one`
//!   (after waking one of two sleepers the waker cannot know whether to
//!   clear it), and clearing it after a `FUTEX_WAKE` that woke nobody races
//!   with a waiter that just went to sleep.
//! * **One word, no fence.** Register (CAS) and notify (`fetch_add`) are
//!   read-modify-writes of the same word, so its modification order decides
//!   every race. A flag plus a separate counter would be a Dekker pattern
//!   needing SeqCst fences on both sides.
//!
//! [`Spin`] bounds the polling before a sleep: [`Spin::NONE`],
//! [`Spin::iterations`] (n polls with `pause`) or [`Spin::duration`] (polls
//! for about that long, reading the clock every 64 polls). The spin counts
//! toward the timeout. A dead waiter's registration cannot be reclaimed
//! (the word records no owner to check), so it costs every later notify
//! one useless `FUTEX_WAKE`: correct, only slower.

use std::time::{Duration, Instant};

use super::atomic::{AtomicU32, Ordering};
use super::futex::{self, WaitOutcome};

/// Bits 0..8 of the word: number of registered sleepers.
const SLEEPER_BITS: u32 = 8;
/// Mask of the sleeper count.
const SLEEPER_MASK: u32 = (1 << SLEEPER_BITS) - 1;
/// One step of the epoch (bits 8..32).
const EPOCH_ONE: u32 = 1 << SLEEPER_BITS;
/// Mask of an epoch value as returned by [`EventWord::epoch`] (24 bits).
const EPOCH_VALUE_MASK: u32 = u32::MAX >> SLEEPER_BITS;
/// How long a waiter that finds the sleeper count saturated sleeps
/// (uncounted) before it looks again.
const SATURATED_POLL: Duration = Duration::from_millis(1);

/// A 4-byte event word in shared memory: waiters sleep until its epoch
/// moves; notifiers move the epoch and wake sleepers, **without any system
/// call when nobody sleeps**.
///
/// The usual pattern (a consumer waiting for a condition that a producer
/// makes true):
///
/// ```
/// # use conduit::sync::{EventWord, WaitResult};
/// # use std::sync::atomic::{AtomicBool, Ordering};
/// # let event = EventWord::new();
/// # let ready = AtomicBool::new(true);
/// // consumer
/// loop {
///     let epoch = event.epoch();                 // 1. snapshot the epoch
///     if ready.load(Ordering::Acquire) { break } // 2. check the condition
///     event.wait(epoch, None);                   // 3. sleep unless it moved
/// }
/// // producer
/// ready.store(true, Ordering::Release);          // make the condition true
/// event.wake_all();                              // then notify
/// ```
///
/// A notification that happens between 1 and 3 moves the epoch, so the
/// `wait` returns at once: no wake-up is lost. [`EventWord::wait_until`]
/// packages this loop with a bounded spin before sleeping.
///
/// # The word
///
/// ```text
///  31                        8 7          0
/// +---------------------------+------------+
/// |  epoch (24 bits, wraps)   |  sleepers  |
/// +---------------------------+------------+
/// ```
///
/// All zero is the initial state (epoch 0, nobody asleep). Every change is
/// one atomic read-modify-write on this one word, so the word's
/// modification order alone decides every race; no fence is needed.
///
/// | transition | by | change |
/// |---|---|---|
/// | register | a waiter whose epoch still matches | CAS `sleepers += 1` (only if the epoch still equals its snapshot) |
/// | sleep | a registered waiter | `FUTEX_WAIT(word, value it registered with)`; any change of the word (another register, a notify) makes the kernel refuse with `EAGAIN`, and the waiter looks again |
/// | unregister | a waiter that is leaving (epoch moved or timeout) | `fetch_sub(1)` |
/// | register without sleeping | a waiter that sleeps elsewhere (epoll on a wake-up descriptor; `register`) | CAS `sleepers += 1` (AcqRel) if the epoch is its snapshot; stays counted until `unregister` |
/// | notify | `wake_one` / `wake_all` | `fetch_add(1 << 8)` (Release); `FUTEX_WAKE` **only if the old value had sleepers > 0** |
///
/// **No lost wake-up.** A waiter's register CAS and a notifier's
/// `fetch_add` are read-modify-writes of the same word, so one comes first
/// in its modification order. If the notify comes first, the CAS fails
/// (the epoch differs) and the waiter returns without sleeping. If the
/// register comes first, the notifier's `fetch_add` reads a count ≥ 1 and
/// calls `FUTEX_WAKE`; the waiter then either is already queued in the
/// kernel (and is woken) or calls `FUTEX_WAIT` with a value the word no
/// longer holds (and the kernel returns at once: it compares under the
/// same bucket lock that `FUTEX_WAKE` takes). A waiter only decrements
/// after it stopped sleeping, so the count never under-states the sleepers
/// and `wake_one` always finds one when there is one.
///
/// # Edges
///
/// * **Spurious returns**: `wait` may return [`WaitResult::Changed`] for an
///   epoch that moved for another reason than the one you wait for; always
///   re-check your own condition.
/// * **At most 255 registered sleepers.** Further waiters sleep unregistered
///   for at most 1 ms at a time and look again (correct, but polling).
/// * **A waiter killed while asleep** leaves the count raised: every later
///   notify then makes one (useless) `FUTEX_WAKE` system call. Still
///   correct, only slower.
/// * **Epoch wrap**: the epoch has 24 bits. A waiter that took its snapshot,
///   was then descheduled while exactly a multiple of 2^24 notifications
///   happened, sleeps until the next notification (or its timeout).
/// * **Memory ordering**: `wake_*` is a Release operation and the epoch
///   load in `epoch()`/`wait` is Acquire, so data written before a notify
///   is visible to a waiter that saw the new epoch.
#[repr(C)]
#[derive(Debug, Default)]
pub struct EventWord {
    word: AtomicU32,
}

/// How [`EventWord::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitResult {
    /// The epoch is no longer the expected one; here is the current one.
    Changed(u32),
    /// The timeout elapsed and the epoch still was the expected one.
    TimedOut,
}

/// What [`EventWord::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    /// Registered: call [`EventWord::unregister`] once done.
    Registered,
    /// The epoch is no longer the expected one: look at your condition again.
    EpochMoved,
    /// 255 sleepers are registered already; nothing was done.
    Saturated,
}

/// How long [`EventWord::wait_until`] polls its condition before it goes
/// to sleep.
///
/// Spinning turns a wake-up that costs tens of microseconds (an idle CPU
/// must be woken) into one that costs about a cache miss, at the price of
/// burning CPU while nothing arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spin {
    iterations: u32,
    duration: Option<Duration>,
}

impl Spin {
    /// Do not spin: check once, then sleep.
    pub const NONE: Spin = Spin {
        iterations: 0,
        duration: None,
    };

    /// Poll the condition this many times (with a CPU pause hint between
    /// polls) before sleeping.
    pub const fn iterations(iterations: u32) -> Spin {
        Spin {
            iterations,
            duration: None,
        }
    }

    /// Poll the condition for about this long before sleeping (the clock
    /// is read once every 64 polls).
    pub const fn duration(duration: Duration) -> Spin {
        Spin {
            iterations: 0,
            duration: Some(duration),
        }
    }

    /// Polls `ready` within the budget; `Some` as soon as it is.
    fn run<R>(self, ready: &mut impl FnMut() -> Option<R>) -> Option<R> {
        for _ in 0..self.iterations {
            super::spin_loop();
            if let Some(r) = ready() {
                return Some(r);
            }
        }
        if let Some(limit) = self.duration {
            let start = Instant::now();
            loop {
                for _ in 0..64 {
                    super::spin_loop();
                    if let Some(r) = ready() {
                        return Some(r);
                    }
                }
                if start.elapsed() >= limit {
                    break;
                }
            }
        }
        None
    }
}

impl EventWord {
    /// A new event word (epoch 0, nobody asleep): the same state as
    /// zeroed memory.
    #[cfg(not(loom))]
    pub const fn new() -> EventWord {
        EventWord {
            word: AtomicU32::new(0),
        }
    }

    /// A new event word (epoch 0, nobody asleep).
    #[cfg(loom)]
    pub fn new() -> EventWord {
        EventWord {
            word: AtomicU32::new(0),
        }
    }

    /// The current epoch (24 bits, wraps). Acquire: whatever a notifier
    /// wrote before the notification that produced this epoch is visible.
    #[inline]
    pub fn epoch(&self) -> u32 {
        self.word.load(Ordering::Acquire) >> SLEEPER_BITS
    }

    /// Number of waiters currently registered as (about to go) asleep.
    ///
    /// Diagnostic and for tests: it may change right after it is read.
    pub fn sleepers(&self) -> u32 {
        self.word.load(Ordering::Relaxed) & SLEEPER_MASK
    }

    /// Advances the epoch and wakes at most one sleeper. No system call
    /// when nobody sleeps.
    ///
    /// Waiters that are not asleep yet see the new epoch and do not sleep;
    /// of those asleep, one wakes (the others keep sleeping until the next
    /// notification or their timeout).
    #[inline]
    pub fn wake_one(&self) {
        let old = self.word.fetch_add(EPOCH_ONE, Ordering::Release);
        if old & SLEEPER_MASK != 0 {
            self.wake_slow(1);
        }
    }

    /// Advances the epoch and wakes every sleeper. No system call when
    /// nobody sleeps.
    #[inline]
    pub fn wake_all(&self) {
        self.wake_all_reporting();
    }

    /// [`wake_all`](Self::wake_all), returning whether a sleeper was
    /// registered (a futex sleeper or a [`register`](Self::register)ed
    /// descriptor waiter). When it returns `true`, a following
    /// `fence(Acquire)` makes everything the registrant wrote before its
    /// registration visible (the registration is a Release CAS that this
    /// read-modify-write reads from, directly or through later
    /// read-modify-writes).
    #[inline]
    pub fn wake_all_reporting(&self) -> bool {
        let old = self.word.fetch_add(EPOCH_ONE, Ordering::Release);
        if old & SLEEPER_MASK != 0 {
            self.wake_slow(i32::MAX as u32);
            true
        } else {
            false
        }
    }

    /// Registers the caller as a sleeper **without sleeping**, if the epoch
    /// still is `expected`: from then on every notification reports
    /// sleepers ([`wake_all_reporting`](Self::wake_all_reporting) returns
    /// `true`) until [`unregister`](Self::unregister). Used by waiters that
    /// sleep elsewhere (in `epoll`, on a descriptor that the notifier
    /// makes readable when it sees a sleeper).
    ///
    /// The CAS is AcqRel: what the caller wrote before is visible to a
    /// notifier that saw the registration and then fenced with Acquire.
    pub fn register(&self, expected: u32) -> Register {
        let expected = expected & EPOCH_VALUE_MASK;
        loop {
            let value = self.word.load(Ordering::Acquire);
            if value >> SLEEPER_BITS != expected {
                return Register::EpochMoved;
            }
            if value & SLEEPER_MASK == SLEEPER_MASK {
                return Register::Saturated;
            }
            if self
                .word
                .compare_exchange(value, value + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Register::Registered;
            }
        }
    }

    /// Undoes one successful [`register`](Self::register).
    pub fn unregister(&self) {
        self.word.fetch_sub(1, Ordering::Relaxed);
    }

    #[cold]
    fn wake_slow(&self, count: u32) {
        futex::wake(&self.word, count);
    }

    /// Sleeps until the epoch differs from `expected` (a value from
    /// [`EventWord::epoch`]), or `timeout` elapses (`None`: no limit).
    ///
    /// Returns at once if the epoch already differs. Signals do not end
    /// the wait. The timeout is measured on `CLOCK_MONOTONIC`.
    pub fn wait(&self, expected: u32, timeout: Option<Duration>) -> WaitResult {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let expected = expected & EPOCH_VALUE_MASK;
        let mut registered = false;
        let result = loop {
            let value = self.word.load(Ordering::Acquire);
            if value >> SLEEPER_BITS != expected {
                break WaitResult::Changed(value >> SLEEPER_BITS);
            }
            let remaining = match remaining(timeout, deadline) {
                Some(Duration::ZERO) => break WaitResult::TimedOut,
                r => r,
            };
            let mut sleep_value = value;
            let mut sleep_for = remaining;
            if !registered {
                if value & SLEEPER_MASK == SLEEPER_MASK {
                    // Saturated: sleep unregistered, briefly.
                    sleep_for = Some(remaining.map_or(SATURATED_POLL, |r| r.min(SATURATED_POLL)));
                } else {
                    // Register; fails if anything changed, then look again.
                    match self.word.compare_exchange(
                        value,
                        value + 1,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            registered = true;
                            sleep_value = value + 1;
                        }
                        Err(_) => continue,
                    }
                }
            }
            // Returns at once (EAGAIN) if the word changed since we read it.
            let _: WaitOutcome = futex::wait(&self.word, sleep_value, sleep_for);
        };
        if registered {
            self.word.fetch_sub(1, Ordering::Relaxed);
        }
        result
    }

    /// Waits until `ready` returns `Some`, or `timeout` elapses (then
    /// `None`): polls for the `spin` budget, then sleeps on this word
    /// between polls.
    ///
    /// `ready` must become `Some` only through a change that its producer
    /// follows with [`wake_one`](Self::wake_one) or
    /// [`wake_all`](Self::wake_all) on this word; it is called again after
    /// every wake-up (and possibly spuriously).
    pub fn wait_until<R>(
        &self,
        spin: Spin,
        timeout: Option<Duration>,
        mut ready: impl FnMut() -> Option<R>,
    ) -> Option<R> {
        if let Some(r) = ready() {
            return Some(r);
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        if let Some(r) = spin.run(&mut ready) {
            return Some(r);
        }
        loop {
            let epoch = self.epoch();
            if let Some(r) = ready() {
                return Some(r);
            }
            let remaining = remaining(timeout, deadline);
            if remaining == Some(Duration::ZERO) {
                return None;
            }
            self.wait(epoch, remaining);
        }
    }
}

/// Time left until `deadline`; `None` means no limit (also when the
/// deadline overflowed `Instant`).
fn remaining(timeout: Option<Duration>, deadline: Option<Instant>) -> Option<Duration> {
    match (timeout, deadline) {
        (None, _) | (Some(_), None) => None,
        (Some(_), Some(d)) => Some(d.saturating_duration_since(Instant::now())),
    }
}

// SAFETY: one AtomicU32 in a repr(C) struct: no pointers, fixed layout,
// every bit pattern is a valid state (see the state table above). Under
// loom (a test-only build in which nothing is shared between processes)
// the atomic is loom's and the impl only lets types that embed an
// EventWord compile.
unsafe impl crate::shm::ShmSafe for EventWord {
    const LAYOUT: crate::shm::TypeLayout = crate::shm::TypeLayout::leaf(
        "conduit::EventWord",
        core::mem::size_of::<EventWord>(),
        core::mem::align_of::<EventWord>(),
    );
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn layout_is_one_word() {
        assert_eq!(core::mem::size_of::<EventWord>(), 4);
        assert_eq!(core::mem::align_of::<EventWord>(), 4);
    }

    #[test]
    fn wait_returns_at_once_when_epoch_moved() {
        let e = EventWord::new();
        let before = e.epoch();
        e.wake_one();
        assert_eq!(e.wait(before, None), WaitResult::Changed(before + 1));
        assert_eq!(e.sleepers(), 0);
    }

    #[test]
    fn wait_times_out_and_unregisters() {
        let e = EventWord::new();
        let r = e.wait(e.epoch(), Some(Duration::from_millis(1)));
        assert_eq!(r, WaitResult::TimedOut);
        assert_eq!(e.sleepers(), 0);
    }

    #[test]
    fn epoch_wraps_without_touching_sleepers() {
        let e = EventWord::new();
        e.word.store(!SLEEPER_MASK | 3, Ordering::Relaxed);
        assert_eq!(e.epoch(), EPOCH_VALUE_MASK);
        // wake would call futex (3 sleepers registered, none real): fine.
        e.wake_all();
        assert_eq!(e.epoch(), 0);
        assert_eq!(e.sleepers(), 3);
    }

    #[test]
    fn notify_without_sleepers_makes_no_syscall() {
        let e = EventWord::new();
        // The counter is this thread's, and only this thread touches `e`:
        // with nobody registered, 2000 notifies make no system call at all.
        let before = super::super::futex_wake_calls();
        for _ in 0..1000 {
            e.wake_one();
            e.wake_all();
        }
        assert_eq!(super::super::futex_wake_calls() - before, 0);
        assert_eq!(e.epoch(), 2000);
        // Control: with a sleeper registered, each notify makes exactly one
        // call (the registration stays until `unregister`), and none again
        // once it is gone.
        assert_eq!(e.register(e.epoch()), Register::Registered);
        let before = super::super::futex_wake_calls();
        e.wake_one();
        e.wake_all();
        assert_eq!(super::super::futex_wake_calls() - before, 2);
        e.unregister();
        let before = super::super::futex_wake_calls();
        e.wake_all();
        assert_eq!(super::super::futex_wake_calls() - before, 0);
    }

    #[test]
    fn threads_ping_pong() {
        let words = std::sync::Arc::new((EventWord::new(), EventWord::new()));
        let other = words.clone();
        let rounds = if cfg!(miri) { 10 } else { 2000 };
        let t = std::thread::spawn(move || {
            for i in 0..rounds {
                let spin = if i % 2 == 0 {
                    Spin::NONE
                } else {
                    Spin::iterations(100)
                };
                other
                    .0
                    .wait_until(spin, None, || (other.0.epoch() > i).then_some(()))
                    .unwrap();
                other.1.wake_one();
            }
        });
        for i in 0..rounds {
            words.0.wake_one();
            words
                .1
                .wait_until(Spin::NONE, None, || (words.1.epoch() > i).then_some(()))
                .unwrap();
        }
        t.join().unwrap();
    }
}
