//! [`RobustMutex`]: a futex mutex in shared memory that survives the death
//! of its owner.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use super::atomic::{AtomicU32, AtomicU64, Ordering};
use super::futex;
use super::identity::{self, Identity, Liveness};
use crate::shm::ShmSafe;

/// Lock word bit: some contender may sleep on the word, so the unlocker
/// must `FUTEX_WAKE`.
const WAITERS: u32 = 1 << 31;
/// Lock word bits 0..31: the owner field.
const OWNER_MASK: u32 = !WAITERS;
/// Owner field: nobody holds the mutex.
const UNLOCKED: u32 = 0;
/// Owner field: the mutex is permanently unusable (an owner died and its
/// successor did not mark the data consistent). The value glibc uses for
/// `PTHREAD_MUTEX_NOTRECOVERABLE`; never a thread id (those are < 2^22).
const NOT_RECOVERABLE: u32 = 0x7fff_ffff;

/// Spins on a held lock before a contender goes to sleep.
const SPIN_LIMIT: u32 = if cfg!(loom) { 0 } else { 100 };
/// First interval between liveness checks of the owner while sleeping.
const FIRST_CHECK: Duration = Duration::from_millis(2);
/// Longest interval between liveness checks (the interval doubles).
const LAST_CHECK: Duration = Duration::from_millis(64);
/// How long a lock word may name a live task that never published its
/// owner record before the word is taken for garbage (see the type docs).
const UNPUBLISHED_GRACE: Duration = Duration::from_secs(1);

/// A mutual-exclusion lock that lives in shared memory and survives the
/// death of its owner, like a pthread robust mutex (`EOWNERDEAD`,
/// `ENOTRECOVERABLE`), but without the kernel's robust-futex list (glibc
/// owns each thread's list, so a library cannot safely add to it).
///
/// Zeroed memory is an unlocked mutex holding a zeroed `T`. The mutex holds
/// no pointer, so it works when the segment it is in is mapped at a
/// different address in each process.
///
/// # Owner death
///
/// The lock word holds the owner's thread id; the owner also publishes a
/// record `(thread id, thread start time)` next to it. A contender sleeps
/// on the futex with a bounded timeout (2 ms, doubling up to 64 ms) and,
/// every time the owner has held the lock for such an interval, checks in
/// `/proc/<tid>/stat` that a task with that id and start time still runs
/// (a zombie counts as dead; a reused id has another start time). If not,
/// it takes the lock over and gets [`LockError::OwnerDied`] with a guard:
/// the data may be half-updated. Repair it and call
/// [`RobustMutexGuard::mark_consistent`]; dropping the guard without that
/// makes the mutex permanently [`LockError::NotRecoverable`] (and wakes
/// every sleeper so they learn it). A thread that exits (not only a
/// process that dies) while it holds the lock is a dead owner too.
///
/// # Layout (`#[repr(C)]`)
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | `state`: the lock word (futex) |
/// | 4 | 4 | reserved, zero |
/// | 8 | 8 | `owner`: owner record `tid << 42 \| start_time` (0: none) |
/// | 16 | `size_of::<T>()` | the data (at a larger offset if `T` needs more than 8-byte alignment) |
///
/// # The lock word
///
/// ```text
///  31       30                              0
/// +---------+--------------------------------+
/// | WAITERS |  owner: 0 = unlocked, tid,     |
/// |         |  0x7fff_ffff = not recoverable |
/// +---------+--------------------------------+
/// ```
///
/// | from | to | by |
/// |---|---|---|
/// | `0` / `WAITERS` | `tid` (fast path) or `tid \| WAITERS` | a locker, CAS (Acquire); a locker that slept, or found `WAITERS`, keeps `WAITERS` set because others may still sleep |
/// | `tid` | `tid \| WAITERS` | a contender about to sleep, CAS |
/// | `tid [\| WAITERS]` | `0` | the owner unlocking, CAS (Release); `FUTEX_WAKE(1)` if `WAITERS` was set |
/// | `dead \| …` (any garbage) | `me \| WAITERS` | a contender that found the owner dead, CAS (Acquire) |
/// | `tid [\| WAITERS]` | `NOT_RECOVERABLE` | an owner that got `OwnerDied` and dropped the guard without `mark_consistent`; `FUTEX_WAKE(all)` |
/// | `NOT_RECOVERABLE` | — | final |
///
/// Every change of the lock word is a read-modify-write, so each one
/// continues the release sequence of the last unlock: a contender that
/// reads the word with Acquire also sees the owner record cleared by that
/// unlock (or a newer one).
///
/// The owner record is written with a plain store right after the lock CAS
/// and cleared right before the unlock CAS. A contender trusts it only when
/// its thread id equals the lock word's; otherwise the owner is between its
/// CAS and its store ("unpublished") and counts as alive as long as any
/// task with that id exists; if a live task has that id and the record
/// stays unpublished for more than a second, the word is taken for
/// garbage (see below).
///
/// # Residual risks
///
/// * A frozen but alive owner (stopped, deadlocked, looping) blocks every
///   contender forever, as with any mutex. [`lock_timeout`](Self::lock_timeout)
///   bounds the wait.
/// * Thread-id reuse is covered by the start time. Start times have a
///   resolution of one clock tick (10 ms); a thread id reused by a new
///   thread within the same tick after the owner's death would be taken
///   for the owner. The kernel hands out ids cyclically, so this needs
///   `pid_max` threads to be created within 10 ms.
/// * An owner stopped for more than a second exactly between its lock CAS
///   and publishing its record (a window of a few instructions) is taken
///   for garbage and loses the lock.
/// * A corrupted lock word never hangs a contender: an owner field that
///   names no task is dead at the first check; one that names an unrelated
///   live task is taken over after a second; `NOT_RECOVERABLE` is reported
///   as such.
/// * Without a readable `/proc`, liveness is unknown and owners are assumed
///   alive (no recovery, never a false takeover).
/// * `fork()` while holding the guard: the child does not own the lock
///   (it has another thread id); the parent still does.
///
/// The guard is `!Send`: the lock belongs to a thread (its id is in the
/// lock word).
#[repr(C)]
pub struct RobustMutex<T: ShmSafe> {
    state: AtomicU32,
    _reserved: u32,
    owner: AtomicU64,
    data: cell::DataCell<T>,
}

// SAFETY: the mutex hands out `&T`/`&mut T` only to the one thread that
// holds the lock (a guard), so sharing `&RobustMutex<T>` between threads is
// sound whenever `T` may move between threads; ShmSafe data is plain bytes.
unsafe impl<T: ShmSafe + Send> Sync for RobustMutex<T> {}

// SAFETY: repr(C) of two atomics, a u32 and a ShmSafe T: no pointers, a
// fixed layout, and every bit pattern is a valid state (garbage lock words
// are handled, see the type docs). Under loom (a test-only build in which
// nothing is shared between processes) the fields are loom's and the impl
// only lets types that embed a RobustMutex compile.
unsafe impl<T: ShmSafe> ShmSafe for RobustMutex<T> {
    const LAYOUT: crate::shm::TypeLayout = {
        use crate::shm::fingerprint;
        let mut h = fingerprint::start();
        h = fingerprint::bytes(h, b"conduit::RobustMutex");
        h = fingerprint::word(h, T::LAYOUT.fingerprint);
        crate::shm::TypeLayout {
            name: "RobustMutex",
            size: core::mem::size_of::<RobustMutex<T>>(),
            align: core::mem::align_of::<RobustMutex<T>>(),
            fingerprint: fingerprint::word(h, core::mem::size_of::<RobustMutex<T>>() as u64),
        }
    };
}

/// How a blocking acquisition ended (internal).
enum Acquired {
    Locked,
    OwnerDied,
    NotRecoverable,
    WouldDeadlock,
    WouldBlock,
    Timeout,
}

/// Why [`RobustMutex::lock`] did not simply return a guard.
#[non_exhaustive]
pub enum LockError<'a, T: ShmSafe> {
    /// The previous owner died while holding the lock. The lock is now
    /// held through this guard; the data may be inconsistent: repair it
    /// and call [`RobustMutexGuard::mark_consistent`], or drop the guard
    /// to make the mutex [`NotRecoverable`](LockError::NotRecoverable).
    OwnerDied(RobustMutexGuard<'a, T>),
    /// An earlier owner died and its successor did not mark the data
    /// consistent: the mutex can never be locked again.
    NotRecoverable,
    /// The calling thread already holds this mutex.
    WouldDeadlock,
}

/// Why [`RobustMutex::try_lock`] did not return a guard.
#[non_exhaustive]
pub enum TryLockError<'a, T: ShmSafe> {
    /// Another live thread holds the lock.
    WouldBlock,
    /// See [`LockError::OwnerDied`].
    OwnerDied(RobustMutexGuard<'a, T>),
    /// See [`LockError::NotRecoverable`].
    NotRecoverable,
    /// See [`LockError::WouldDeadlock`].
    WouldDeadlock,
}

/// Why [`RobustMutex::lock_timeout`] did not simply return a guard.
#[non_exhaustive]
pub enum LockTimeoutError<'a, T: ShmSafe> {
    /// A live thread held the lock for the whole timeout.
    Timeout,
    /// See [`LockError::OwnerDied`].
    OwnerDied(RobustMutexGuard<'a, T>),
    /// See [`LockError::NotRecoverable`].
    NotRecoverable,
    /// See [`LockError::WouldDeadlock`].
    WouldDeadlock,
}

macro_rules! error_impls {
    ($name:ident { $($variant:ident => $message:expr),* $(,)? }) => {
        impl<T: ShmSafe> fmt::Debug for $name<'_, T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $name::OwnerDied(_) => f.write_str(concat!(stringify!($name), "::OwnerDied(..)")),
                    $($name::$variant => f.write_str(concat!(stringify!($name), "::", stringify!($variant))),)*
                }
            }
        }
        impl<T: ShmSafe> fmt::Display for $name<'_, T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $name::OwnerDied(_) => f.write_str(
                        "the previous owner of the mutex died while holding it; the data may be inconsistent",
                    ),
                    $($name::$variant => f.write_str($message),)*
                }
            }
        }
        impl<T: ShmSafe> std::error::Error for $name<'_, T> {}
        impl<'a, T: ShmSafe> $name<'a, T> {
            /// The guard when the previous owner died (the lock is held),
            /// `None` otherwise.
            pub fn into_owner_died(self) -> Option<RobustMutexGuard<'a, T>> {
                match self {
                    $name::OwnerDied(guard) => Some(guard),
                    _ => None,
                }
            }
        }
    };
}

const NOT_RECOVERABLE_MESSAGE: &str = "the mutex is not recoverable: an owner died and its successor did not mark the data consistent";

error_impls!(LockError {
    NotRecoverable => NOT_RECOVERABLE_MESSAGE,
    WouldDeadlock => "the calling thread already holds this mutex",
});
error_impls!(TryLockError {
    WouldBlock => "the mutex is held by another live thread",
    NotRecoverable => NOT_RECOVERABLE_MESSAGE,
    WouldDeadlock => "the calling thread already holds this mutex",
});
error_impls!(LockTimeoutError {
    Timeout => "the mutex stayed held by a live thread for the whole timeout",
    NotRecoverable => NOT_RECOVERABLE_MESSAGE,
    WouldDeadlock => "the calling thread already holds this mutex",
});

impl<T: ShmSafe> RobustMutex<T> {
    /// A new unlocked mutex holding `value` (for building a value that is
    /// then copied into shared memory; zeroed memory is also a valid
    /// unlocked mutex).
    pub fn new(value: T) -> RobustMutex<T> {
        RobustMutex {
            state: AtomicU32::new(UNLOCKED),
            _reserved: 0,
            owner: AtomicU64::new(0),
            data: cell::DataCell::new(value),
        }
    }

    /// The data, through exclusive access to the mutex itself (no locking
    /// needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Whether the mutex is permanently unusable ([`LockError::NotRecoverable`]).
    pub fn is_not_recoverable(&self) -> bool {
        self.state.load(Ordering::Relaxed) & OWNER_MASK == NOT_RECOVERABLE
    }

    /// Acquires the lock, sleeping while another live thread holds it.
    ///
    /// Errors: [`LockError::OwnerDied`] (the lock is acquired, the data may
    /// be inconsistent), [`LockError::NotRecoverable`],
    /// [`LockError::WouldDeadlock`] (this thread holds it already).
    #[inline]
    pub fn lock(&self) -> Result<RobustMutexGuard<'_, T>, LockError<'_, T>> {
        let me = identity::current();
        if self.try_fast(me) {
            return Ok(self.guard(me, true));
        }
        match self.lock_slow(me, None, true) {
            Acquired::Locked => Ok(self.guard(me, true)),
            Acquired::OwnerDied => Err(LockError::OwnerDied(self.guard(me, false))),
            Acquired::NotRecoverable => Err(LockError::NotRecoverable),
            Acquired::WouldDeadlock => Err(LockError::WouldDeadlock),
            Acquired::WouldBlock | Acquired::Timeout => unreachable!("lock without a deadline"),
        }
    }

    /// Acquires the lock, or gives up with [`LockTimeoutError::Timeout`]
    /// once a live thread has held it for `timeout`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RobustMutexGuard<'_, T>, LockTimeoutError<'_, T>> {
        let me = identity::current();
        if self.try_fast(me) {
            return Ok(self.guard(me, true));
        }
        let deadline = Instant::now().checked_add(timeout);
        match self.lock_slow(me, Some(deadline), true) {
            Acquired::Locked => Ok(self.guard(me, true)),
            Acquired::OwnerDied => Err(LockTimeoutError::OwnerDied(self.guard(me, false))),
            Acquired::NotRecoverable => Err(LockTimeoutError::NotRecoverable),
            Acquired::WouldDeadlock => Err(LockTimeoutError::WouldDeadlock),
            Acquired::WouldBlock | Acquired::Timeout => Err(LockTimeoutError::Timeout),
        }
    }

    /// Acquires the lock if that needs no waiting.
    ///
    /// When the lock is held, this checks whether the owner is still alive
    /// (a read of `/proc/<tid>/stat`, a few microseconds) and takes the lock
    /// over if not ([`TryLockError::OwnerDied`]).
    pub fn try_lock(&self) -> Result<RobustMutexGuard<'_, T>, TryLockError<'_, T>> {
        let me = identity::current();
        if self.try_fast(me) {
            return Ok(self.guard(me, true));
        }
        match self.lock_slow(me, None, false) {
            Acquired::Locked => Ok(self.guard(me, true)),
            Acquired::OwnerDied => Err(TryLockError::OwnerDied(self.guard(me, false))),
            Acquired::NotRecoverable => Err(TryLockError::NotRecoverable),
            Acquired::WouldDeadlock => Err(TryLockError::WouldDeadlock),
            Acquired::WouldBlock | Acquired::Timeout => Err(TryLockError::WouldBlock),
        }
    }

    #[inline]
    fn try_fast(&self, me: Identity) -> bool {
        if self
            .state
            .compare_exchange(UNLOCKED, me.tid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.owner.store(me.packed(), Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    fn guard(&self, me: Identity, consistent: bool) -> RobustMutexGuard<'_, T> {
        RobustMutexGuard {
            mutex: self,
            tid: me.tid,
            consistent,
            _not_send: PhantomData,
        }
    }

    /// Takes the lock from a dead owner: CAS from exactly the word that was
    /// judged dead.
    fn take_over(&self, seen: u32, me: Identity) -> bool {
        if self
            .state
            .compare_exchange(seen, me.tid | WAITERS, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.owner.store(me.packed(), Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Whether the owner named by lock word `seen` is dead. `unpublished`
    /// remembers since when a live task's id has been in the word without
    /// an owner record (`None` for try_lock: no grace tracking).
    fn owner_dead(&self, seen: u32, unpublished: Option<&mut Option<(u32, Instant)>>) -> bool {
        let tid = seen & OWNER_MASK;
        let record = Identity::unpack(self.owner.load(Ordering::Acquire));
        match record {
            Some(owner) if owner.tid == tid => {
                identity::liveness(owner.tid, owner.start) == Liveness::Dead
            }
            _ => match identity::exists(tid) {
                Liveness::Dead => true,
                Liveness::Unknown => false,
                Liveness::Alive => match unpublished {
                    None => false,
                    // Compare the owner field only: our own WAITERS bit
                    // must not restart the grace period.
                    Some(since) => match *since {
                        Some((field, at)) if field == tid => at.elapsed() >= UNPUBLISHED_GRACE,
                        _ => {
                            *since = Some((tid, Instant::now()));
                            false
                        }
                    },
                },
            },
        }
    }

    /// The contended path of every lock operation. `deadline`:
    /// `Some(None)` means a deadline too far to represent.
    #[cold]
    fn lock_slow(
        &self,
        me: Identity,
        deadline: Option<Option<Instant>>,
        blocking: bool,
    ) -> Acquired {
        let mut spins = if blocking { SPIN_LIMIT } else { 0 };
        let mut slept = false;
        let mut interval = FIRST_CHECK;
        let mut next_check: Option<Instant> = None;
        let mut unpublished: Option<(u32, Instant)> = None;
        loop {
            let seen = self.state.load(Ordering::Relaxed);
            let owner = seen & OWNER_MASK;
            if owner == NOT_RECOVERABLE {
                return Acquired::NotRecoverable;
            }
            if owner == UNLOCKED {
                // Keep WAITERS when it is set or when we slept: other
                // contenders may still be asleep and the unlock must wake
                // them.
                let want = me.tid | (seen & WAITERS) | if slept { WAITERS } else { 0 };
                if self
                    .state
                    .compare_exchange(seen, want, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.owner.store(me.packed(), Ordering::Relaxed);
                    return Acquired::Locked;
                }
                continue;
            }
            if owner == me.tid {
                // Either this thread holds it (its record is ours), or an
                // earlier thread with the same id died holding it.
                if self.owner.load(Ordering::Acquire) == me.packed() && me.packed() != 0 {
                    return Acquired::WouldDeadlock;
                }
                if self.take_over(seen, me) {
                    return Acquired::OwnerDied;
                }
                continue;
            }
            if spins > 0 {
                spins -= 1;
                super::spin_loop();
                continue;
            }
            if !blocking {
                if self.owner_dead(seen, None) {
                    if self.take_over(seen, me) {
                        return Acquired::OwnerDied;
                    }
                    continue;
                }
                return Acquired::WouldBlock;
            }
            let now = Instant::now();
            let check_at = *next_check.get_or_insert(now + interval);
            // Under loom owners never die and real time must not steer
            // the execution (loom replays executions deterministically).
            if cfg!(not(loom)) && now >= check_at {
                if self.owner_dead(seen, Some(&mut unpublished)) {
                    if self.take_over(seen, me) {
                        return Acquired::OwnerDied;
                    }
                    continue;
                }
                interval = (interval * 2).min(LAST_CHECK);
                next_check = Some(now + interval);
            }
            if let Some(Some(deadline)) = deadline {
                if now >= deadline {
                    return Acquired::Timeout;
                }
            }
            // Announce that we are about to sleep.
            if seen & WAITERS == 0
                && self
                    .state
                    .compare_exchange(seen, seen | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let check_at = next_check.unwrap_or(now);
            let mut sleep = check_at.saturating_duration_since(now);
            if let Some(Some(deadline)) = deadline {
                sleep = sleep.min(deadline.saturating_duration_since(now));
            }
            slept = true;
            futex::wait(
                &self.state,
                seen | WAITERS,
                Some(sleep.max(Duration::from_micros(1))),
            );
        }
    }

    /// Releases the lock held by thread `tid`.
    #[inline]
    fn unlock(&self, tid: u32) {
        self.owner.store(0, Ordering::Relaxed);
        if self
            .state
            .compare_exchange(tid, UNLOCKED, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.unlock_slow(tid, UNLOCKED);
        }
    }

    /// Sets the owner field to `to` (UNLOCKED or NOT_RECOVERABLE) if `tid`
    /// still owns the lock, and wakes sleepers: one for an unlock, all for
    /// NOT_RECOVERABLE (each of them must learn it).
    #[cold]
    fn unlock_slow(&self, tid: u32, to: u32) {
        self.owner.store(0, Ordering::Relaxed);
        let mut seen = self.state.load(Ordering::Relaxed);
        loop {
            if seen & OWNER_MASK != tid {
                // The lock was taken from us (we were judged dead, see the
                // residual risks): it is no longer ours to release.
                return;
            }
            match self
                .state
                .compare_exchange(seen, to, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        if seen & WAITERS != 0 {
            let count = if to == NOT_RECOVERABLE {
                i32::MAX as u32
            } else {
                1
            };
            futex::wake(&self.state, count);
        }
    }
}

impl<T: ShmSafe + Default> Default for RobustMutex<T> {
    fn default() -> Self {
        RobustMutex::new(T::default())
    }
}

impl<T: ShmSafe> fmt::Debug for RobustMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load(Ordering::Relaxed);
        f.debug_struct("RobustMutex")
            .field("owner", &(state & OWNER_MASK))
            .field("waiters", &(state & WAITERS != 0))
            .finish_non_exhaustive()
    }
}

/// Proof that the lock of a [`RobustMutex`] is held; gives access to the
/// data and unlocks when dropped.
///
/// `!Send`: the lock word names the locking thread.
pub struct RobustMutexGuard<'a, T: ShmSafe> {
    mutex: &'a RobustMutex<T>,
    tid: u32,
    consistent: bool,
    _not_send: PhantomData<*const ()>,
}

impl<T: ShmSafe> RobustMutexGuard<'_, T> {
    /// Declares the data consistent again after an
    /// [`OwnerDied`](LockError::OwnerDied): the mutex goes back to normal
    /// when this guard drops. Without this call, dropping a guard obtained
    /// through `OwnerDied` makes the mutex permanently not recoverable.
    #[doc(alias = "pthread_mutex_consistent")]
    pub fn mark_consistent(&mut self) {
        self.consistent = true;
    }

    /// False for a guard obtained through `OwnerDied` until
    /// [`mark_consistent`](Self::mark_consistent) is called.
    pub fn is_consistent(&self) -> bool {
        self.consistent
    }
}

impl<T: ShmSafe> Deref for RobustMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock, so no other thread or process
        // (following the protocol) accesses the data until it is dropped;
        // the reference cannot outlive the guard.
        unsafe { &*self.mutex.data.ptr() }
    }
}

impl<T: ShmSafe> DerefMut for RobustMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only
        // reference handed out by this guard.
        unsafe { &mut *self.mutex.data.ptr_mut() }
    }
}

impl<T: ShmSafe> Drop for RobustMutexGuard<'_, T> {
    fn drop(&mut self) {
        if self.consistent {
            self.mutex.unlock(self.tid);
        } else {
            self.mutex.unlock_slow(self.tid, NOT_RECOVERABLE);
        }
    }
}

impl<T: ShmSafe> fmt::Debug for RobustMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RobustMutexGuard")
            .field("consistent", &self.consistent)
            .finish_non_exhaustive()
    }
}

/// The data cell: `core::cell::UnsafeCell` normally, loom's `UnsafeCell`
/// (which checks that accesses are ordered by the lock) under loom.
mod cell {
    #[cfg(not(loom))]
    #[repr(transparent)]
    pub(super) struct DataCell<T>(core::cell::UnsafeCell<T>);

    #[cfg(not(loom))]
    impl<T> DataCell<T> {
        pub(super) fn new(value: T) -> Self {
            DataCell(core::cell::UnsafeCell::new(value))
        }
        pub(super) fn get_mut(&mut self) -> &mut T {
            self.0.get_mut()
        }
        pub(super) fn ptr(&self) -> *const T {
            self.0.get()
        }
        pub(super) fn ptr_mut(&self) -> *mut T {
            self.0.get()
        }
    }

    #[cfg(loom)]
    pub(super) struct DataCell<T>(loom::cell::UnsafeCell<T>);

    #[cfg(loom)]
    impl<T> DataCell<T> {
        pub(super) fn new(value: T) -> Self {
            DataCell(loom::cell::UnsafeCell::new(value))
        }
        pub(super) fn get_mut(&mut self) -> &mut T {
            // SAFETY: `&mut self` excludes every other access.
            self.0.with_mut(|p| unsafe { &mut *p })
        }
        /// Records a shared access with loom at the time of the call.
        pub(super) fn ptr(&self) -> *const T {
            self.0.with(|p| p)
        }
        /// Records an exclusive access with loom at the time of the call.
        pub(super) fn ptr_mut(&self) -> *mut T {
            self.0.with_mut(|p| p)
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(core::mem::size_of::<RobustMutex<u64>>(), 24);
        assert_eq!(core::mem::align_of::<RobustMutex<u64>>(), 8);
        assert_eq!(core::mem::offset_of!(RobustMutex<u64>, owner), 8);
        assert_eq!(core::mem::offset_of!(RobustMutex<u64>, data), 16);
        assert_eq!(<RobustMutex<u64> as ShmSafe>::LAYOUT.size, 24);
        assert_ne!(
            <RobustMutex<u64> as ShmSafe>::LAYOUT.fingerprint,
            <RobustMutex<i64> as ShmSafe>::LAYOUT.fingerprint
        );
    }

    #[test]
    fn lock_unlock_and_deadlock_detection() {
        let m = RobustMutex::new(5u64);
        {
            let mut g = m.lock().unwrap();
            *g += 1;
            assert!(matches!(m.lock(), Err(LockError::WouldDeadlock)));
            assert!(matches!(m.try_lock(), Err(TryLockError::WouldDeadlock)));
        }
        assert_eq!(*m.try_lock().unwrap(), 6);
        assert_eq!(m.state.load(Ordering::Relaxed), 0);
        assert_eq!(m.owner.load(Ordering::Relaxed), 0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs /proc liveness")]
    fn try_lock_and_timeout_while_held_by_live_thread() {
        let m = std::sync::Arc::new(RobustMutex::new(0u32));
        let g = m.lock().unwrap();
        let m2 = m.clone();
        std::thread::spawn(move || {
            assert!(matches!(m2.try_lock(), Err(TryLockError::WouldBlock)));
            assert!(matches!(
                m2.lock_timeout(Duration::from_millis(5)),
                Err(LockTimeoutError::Timeout)
            ));
        })
        .join()
        .unwrap();
        drop(g);
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs /proc liveness")]
    fn thread_exit_while_holding_is_owner_death() {
        let m = std::sync::Arc::new(RobustMutex::new(0u32));
        let m2 = m.clone();
        std::thread::spawn(move || {
            let mut g = m2.lock().unwrap();
            *g = 7;
            core::mem::forget(g);
        })
        .join()
        .unwrap();
        let mut g = m.lock().unwrap_err().into_owner_died().unwrap();
        assert_eq!(*g, 7);
        assert!(!g.is_consistent());
        g.mark_consistent();
        drop(g);
        assert_eq!(*m.lock().unwrap(), 7);
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs /proc liveness")]
    fn unrecovered_guard_poisons_for_good() {
        let m = RobustMutex::new(0u32);
        // A lock word naming a task id that cannot exist, with a record.
        m.state.store(0x3f_fff0, Ordering::Relaxed);
        let g = m.try_lock().unwrap_err().into_owner_died().unwrap();
        drop(g);
        assert!(m.is_not_recoverable());
        assert!(matches!(m.lock(), Err(LockError::NotRecoverable)));
        assert!(matches!(m.try_lock(), Err(TryLockError::NotRecoverable)));
        assert!(matches!(
            m.lock_timeout(Duration::from_secs(1)),
            Err(LockTimeoutError::NotRecoverable)
        ));
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs /proc liveness")]
    fn garbage_lock_words_do_not_hang() {
        for garbage in [WAITERS, WAITERS | 0x3fff_ffff, 0x7fff_fffe, 0x0040_0000] {
            let m = RobustMutex::new(0u32);
            m.state.store(garbage, Ordering::Relaxed);
            m.owner.store(0xdead_beef, Ordering::Relaxed);
            match m.lock() {
                // WAITERS alone is "unlocked, maybe sleepers".
                Ok(_) => assert_eq!(garbage, WAITERS),
                Err(LockError::OwnerDied(mut g)) => g.mark_consistent(),
                Err(e) => panic!("{garbage:#x}: {e}"),
            }
            assert!(m.try_lock().is_ok());
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs /proc liveness")]
    fn garbage_naming_a_live_task_is_taken_over_after_grace() {
        // The lock word names a live task (this process's main thread may
        // be elsewhere; use our own thread's id from another thread) with
        // no matching owner record.
        let m = std::sync::Arc::new(RobustMutex::new(0u32));
        let tid = crate::sys::process::thread_id();
        m.state.store(tid, Ordering::Relaxed);
        let m2 = m.clone();
        let died = std::thread::spawn(move || match m2.lock() {
            Err(LockError::OwnerDied(mut g)) => {
                g.mark_consistent();
                true
            }
            _ => false,
        })
        .join()
        .unwrap();
        assert!(died);
    }

    #[test]
    fn threads_count_to_total() {
        let m = std::sync::Arc::new(RobustMutex::new(0u64));
        let per = if cfg!(miri) { 20 } else { 20_000 };
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..per {
                        *m.lock().unwrap() += 1;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(*m.lock().unwrap(), 3 * per);
    }
}
