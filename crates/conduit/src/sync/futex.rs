//! The futex as seen by `sync`: the real shared futex of [`crate::sys::futex`]
//! in normal builds, a model of the kernel's wait queue under loom.
//!
//! [`EventWord`](super::EventWord) and [`RobustMutex`](super::RobustMutex)
//! call only [`wait`] and [`wake`] from here, so the code loom checks is the
//! code that runs in production; only the body of these two functions
//! differs.

#[cfg(not(loom))]
use std::time::Duration;

use super::atomic::AtomicU32;

pub(crate) use crate::sys::futex::WaitOutcome;

/// Futex wake system calls made by this process (see
/// [`super::futex_wake_calls`]) by the calling thread. Per thread, so a
/// test (or a user) measuring its own code is not disturbed by other
/// threads; touched only on the slow path next to the system call.
mod counter {
    use std::cell::Cell;

    std::thread_local! {
        static WAKE_CALLS: Cell<u64> = const { Cell::new(0) };
    }

    pub(crate) fn bump() {
        WAKE_CALLS.with(|c| c.set(c.get() + 1));
    }

    pub(crate) fn get() -> u64 {
        WAKE_CALLS.with(Cell::get)
    }
}

pub(crate) fn wake_calls() -> u64 {
    counter::get()
}

/// Sleeps while `*word == expected`, at most `timeout`. Errors of the
/// system call (which cannot happen for an aligned, mapped word) are
/// reported as a spurious wake-up: every caller loops on its own
/// condition.
#[cfg(not(loom))]
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitOutcome {
    crate::sys::futex::wait(word, expected, timeout).unwrap_or(WaitOutcome::Interrupted)
}

/// Wakes at most `count` sleepers on `word`; returns how many woke.
#[cfg(not(loom))]
pub(crate) fn wake(word: &AtomicU32, count: u32) -> usize {
    counter::bump();
    crate::sys::futex::wake(word, count).unwrap_or(0)
}

#[cfg(loom)]
pub(crate) use model::{wait, wake};

/// A model of the kernel's futex for loom.
///
/// The kernel checks `*word == expected` and queues the waiter under the
/// hash-bucket lock, and `FUTEX_WAKE` dequeues under the same lock. Here a
/// loom `Mutex` is that lock and a loom `Condvar` the sleeping: a waiter
/// that is queued and never dequeued blocks forever, and loom reports the
/// execution as a deadlock. Timeouts are ignored on purpose (a timed wait
/// never times out) so that a timeout cannot paper over a lost wake-up.
#[cfg(loom)]
mod model {
    use std::time::Duration;

    use loom::sync::{Condvar, Mutex};

    use super::{AtomicU32, WaitOutcome, counter};
    use crate::sync::atomic::Ordering;

    struct Queue {
        /// (address of the word, ticket) of every sleeping waiter, FIFO.
        sleepers: Vec<(usize, u64)>,
        next_ticket: u64,
    }

    struct Kernel {
        queue: Mutex<Queue>,
        woken: Condvar,
    }

    loom::lazy_static! {
        static ref KERNEL: Kernel = Kernel {
            queue: Mutex::new(Queue { sleepers: Vec::new(), next_ticket: 0 }),
            woken: Condvar::new(),
        };
    }

    pub(crate) fn wait(word: &AtomicU32, expected: u32, _timeout: Option<Duration>) -> WaitOutcome {
        let kernel = &*KERNEL;
        let mut queue = kernel.queue.lock().unwrap();
        // The bucket lock orders this load after any wake that already ran.
        if word.load(Ordering::Relaxed) != expected {
            return WaitOutcome::ValueChanged;
        }
        let address = word as *const AtomicU32 as usize;
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.sleepers.push((address, ticket));
        while queue.sleepers.iter().any(|&(_, t)| t == ticket) {
            queue = kernel.woken.wait(queue).unwrap();
        }
        WaitOutcome::Woken
    }

    pub(crate) fn wake(word: &AtomicU32, count: u32) -> usize {
        counter::bump();
        let kernel = &*KERNEL;
        let mut queue = kernel.queue.lock().unwrap();
        let address = word as *const AtomicU32 as usize;
        let mut woken = 0usize;
        let mut i = 0;
        while i < queue.sleepers.len() && woken < count as usize {
            if queue.sleepers[i].0 == address {
                queue.sleepers.remove(i);
                woken += 1;
            } else {
                i += 1;
            }
        }
        if woken > 0 {
            kernel.woken.notify_all();
        }
        woken
    }
}
