//! Synchronisation primitives that live in shared memory.
//!
//! * [`EventWord`]: a 4-byte futex word with an epoch counter and a sleeper
//!   count: `wait(epoch)` sleeps until the epoch moves, `wake_one` /
//!   `wake_all` advance it and make **no system call when nobody sleeps**.
//!   [`EventWord::wait_until`] spins for a bounded [`Spin`] budget before it
//!   sleeps.
//! * `fdwake` (crate-internal): waking a port through a file descriptor
//!   (an abstract datagram socket armed through a shared flag), for
//!   epoll, the WaitSet and async runtimes;
//! * [`RobustMutex`]: a mutex whose lock word holds the owner's thread id
//!   and which its owner links into its thread's kernel robust-futex list;
//!   when the owner dies (killed, or thread exited) the kernel marks the
//!   word, and the next locker takes the lock and is told so
//!   ([`LockError::OwnerDied`]), like a pthread robust mutex (`EOWNERDEAD` /
//!   `ENOTRECOVERABLE`), whatever the PID namespaces of the processes.
//!
//! Both are `#[repr(C)]`, hold no pointer that another process follows, and
//! are valid when their memory is all zero, so they can be placed in a
//! segment that several processes map at different addresses.
//!
//! # Testing under loom
//!
//! Atomics come from a small shim (`atomic`) and the futex from another
//! (`futex`), so the same code runs under `loom`
//! (`RUSTFLAGS="--cfg loom" cargo test -p conduit --release --lib loom`).
//! Under loom the futex is a model of the kernel's wait queue (a loom mutex
//! standing for the hash-bucket lock and a loom condvar), so a lost wake-up
//! shows up as a loom deadlock. Timeouts are ignored under loom (a timed
//! wait blocks like an untimed one) so that they cannot hide a lost
//! wake-up.

#[allow(unused_imports)]
pub(crate) mod atomic {
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
}

mod event;
pub(crate) mod fdwake;
mod futex;
mod identity;
mod mutex;
mod robust_list;
pub(crate) mod slot;

#[cfg(all(test, loom))]
mod loom_tests;

pub use event::{EventWord, Register, Spin, WaitResult};
pub use mutex::{LockError, LockTimeoutError, RobustMutex, RobustMutexGuard, TryLockError};

/// Number of futex wake system calls the calling thread has made through
/// [`EventWord`] and [`RobustMutex`] (and everything built on them) since
/// it started. Per thread, so other threads of the process do not disturb
/// a measurement of one's own code.
///
/// A diagnostic: the notifier's fast path makes no system call when nobody
/// sleeps, and this counter lets a test (or a curious user) check it. The
/// counter is only touched on the slow path, right next to the system call.
pub fn futex_wake_calls() -> u64 {
    futex::wake_calls()
}

/// Spin-loop hint (a `pause` instruction; a loom yield under loom).
#[inline]
/// Runs loom model `f` with the preemption bound every model of the
/// crate uses (3, unless `LOOM_MAX_PREEMPTIONS` sets another).
#[cfg(all(loom, test))]
pub(crate) fn loom_model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

pub(crate) fn spin_loop() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}
