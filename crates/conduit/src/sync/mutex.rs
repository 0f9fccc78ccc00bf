//! [`RobustMutex`]: a futex mutex in shared memory that survives the death
//! of its owner.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use super::atomic::{AtomicU32, AtomicU64, Ordering};
use super::futex;
use super::identity::{self, Identity};
use super::robust_list::{self, ListEntry};
use crate::shm::ShmSafe;

/// Lock word bit 31: some contender may sleep on the word, so the
/// unlocker must `FUTEX_WAKE` (the kernel's `FUTEX_WAITERS`).
const WAITERS: u32 = 1 << 31;
/// Lock word bit 30: the last owner died holding the lock; set by the
/// kernel (the kernel's `FUTEX_OWNER_DIED`).
const OWNER_DIED: u32 = 1 << 30;
/// Lock word bits 0–29: the owner field (the kernel's `FUTEX_TID_MASK`).
const OWNER_MASK: u32 = OWNER_DIED - 1;
/// Owner field: nobody holds the mutex.
const UNLOCKED: u32 = 0;
/// Owner field: the mutex is permanently unusable (an owner died and its
/// successor did not mark the data consistent). Never a thread id (those
/// are below 2^22, `PID_MAX_LIMIT`), so the kernel never touches it.
const NOT_RECOVERABLE_OWNER: u32 = OWNER_MASK;
/// The lock word written for "not recoverable": `0x7fff_ffff`, the value
/// glibc uses for `PTHREAD_MUTEX_NOTRECOVERABLE` and the value earlier
/// versions of conduit wrote.
const NOT_RECOVERABLE: u32 = OWNER_DIED | NOT_RECOVERABLE_OWNER;

/// Spins on a held lock before a contender goes to sleep.
const SPIN_LIMIT: u32 = if cfg!(loom) { 0 } else { 100 };
/// Longest sleep of a contender before it looks at the lock word again.
/// Only a safety net: the unlocker, or the kernel when the owner dies,
/// wakes sleepers. It covers kernels older than the 2020 fix ("futex:
/// Prevent robust futex exit race"), on which an owner that dies between
/// releasing the lock and waking a sleeper leaves the sleeper asleep.
const RECHECK: Duration = Duration::from_millis(100);

/// A mutual-exclusion lock that lives in shared memory and survives the
/// death of its owner, like a pthread robust mutex (`EOWNERDEAD`,
/// `ENOTRECOVERABLE`), and like it built on the kernel's robust-futex
/// list.
///
/// Zeroed memory is an unlocked mutex holding a zeroed `T`. The mutex
/// holds no pointer that another process reads, so it works when the
/// segment it is in is mapped at a different address in each process.
///
/// # Owner death
///
/// The lock word holds the owner's thread id, and while it holds the lock
/// the owner keeps the mutex linked into its thread's robust-futex list
/// (joining glibc's; see `sync::robust_list`). When a thread exits or
/// dies holding the lock, the **kernel** sets `OWNER_DIED` in the lock word,
/// clears the id and wakes one sleeper. The next locker then gets
/// [`LockError::OwnerDied`] with a guard: the data may be half-updated.
/// Repair it and call [`RobustMutexGuard::mark_consistent`]; dropping the
/// guard without that makes the mutex permanently
/// [`LockError::NotRecoverable`] (and wakes every sleeper so they learn
/// it). A thread that exits (not only a process that dies) while it holds
/// the lock is a dead owner too.
///
/// No process ever looks another's thread id up (in `/proc` or
/// otherwise): the kernel compares the id in the word with the dying
/// thread's id in its own PID namespace, the one it wrote. So processes
/// in different PID namespaces that share the memory (containers with a
/// shared `/dev/shm` or IPC namespace, a Kubernetes pod) never take a lock
/// from a live owner, and do recover one from a dead owner.
///
/// # Layout (`#[repr(C)]`)
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | `state`: the lock word (futex) |
/// | 4 | 4 | reserved, zero |
/// | 8 | 8 | `owner`: the owner's token (0: none) |
/// | 16 | 8 | reserved, zero |
/// | 24 | 8 | `entry.prev`: robust-list link, in the owner's address space |
/// | 32 | 8 | `entry.next`: robust-list link, in the owner's address space |
/// | 40 | `size_of::<T>()` | the data (at a larger offset if `T` needs more than 8-byte alignment) |
///
/// `entry.next` is 32 bytes after the lock word because glibc's robust
/// list (which conduit joins) has that futex offset. This layout replaced
/// one (24 bytes of header, owner record `tid << 42 | start time`) whose
/// owners judged liveness through `/proc`; the type's layout fingerprint
/// names the new version (`conduit::RobustMutex/robust-list`), so a
/// segment holding the old layout is refused on open instead of being
/// shared by the two protocols.
///
/// # The lock word
///
/// ```text
///  31        30           29                      0
/// +---------+------------+-------------------------+
/// | WAITERS | OWNER_DIED |  owner: 0 = unlocked,   |
/// |         |            |  tid, 0x3fff_ffff = not |
/// |         |            |  recoverable            |
/// +---------+------------+-------------------------+
/// ```
///
/// | from | to | by |
/// |---|---|---|
/// | `0` / `WAITERS` | `tid` (fast path) or `tid \| WAITERS` | a locker, CAS (Acquire); a locker that slept, or found `WAITERS`, keeps `WAITERS` set because others may still sleep |
/// | `OWNER_DIED [\| WAITERS]` | `tid [\| WAITERS]` | a locker, CAS (Acquire); it gets `OwnerDied` |
/// | `tid` | `tid \| WAITERS` | a contender about to sleep, CAS |
/// | `tid [\| WAITERS]` | `0` | the owner unlocking, CAS (Release); `FUTEX_WAKE(1)` if `WAITERS` was set |
/// | `tid [\| WAITERS]` | `OWNER_DIED [\| WAITERS]` | **the kernel**, when thread `tid` (of the namespace that wrote it) exits or dies; `FUTEX_WAKE(1)` if `WAITERS` |
/// | `tid [\| WAITERS]` | `NOT_RECOVERABLE` (`0x7fff_ffff`) | an owner that got `OwnerDied` and dropped the guard without `mark_consistent`; `FUTEX_WAKE(all)` |
/// | owner field `0x3fff_ffff` | — | final: not recoverable |
///
/// Every change of the lock word is a read-modify-write (the kernel's is a
/// cmpxchg), so each one continues the release sequence of the last
/// unlock: a locker that reads the word with Acquire also sees the data
/// written before that unlock.
///
/// # The other shared words
///
/// * `owner`: a random 64-bit token of the owning thread, stored right
///   after the lock CAS and cleared right before the unlock. It is read
///   only by a locker that finds **its own** thread id in the lock word, to
///   tell "this thread holds it" ([`LockError::WouldDeadlock`]) from "a
///   thread with the same id in another PID namespace holds it" (wait).
///   The thread only ever compares its own token, which it wrote itself.
/// * `entry`: the owner's robust-list links (its own addresses), written
///   only by the owner (and by glibc on the owner's thread, when it links
///   or unlinks a neighbouring pthread mutex) and read by the kernel when
///   the owner dies. Stale after the owner leaves; the next owner
///   overwrites them.
///
/// # Residual risks
///
/// * A frozen but alive owner (stopped, deadlocked, looping) blocks every
///   contender forever, as with any mutex. [`lock_timeout`](Self::lock_timeout)
///   bounds the wait.
/// * A lock word that names a thread which never held it (corrupted
///   memory) is never released: nobody will unlock it and the kernel will
///   not mark it. [`try_lock`](Self::try_lock) and
///   [`lock_timeout`](Self::lock_timeout) report it as held; `lock` waits.
///   `NOT_RECOVERABLE` and `OWNER_DIED` words are reported as such.
/// * Garbage written into `entry` while a thread holds the lock is never
///   followed: the unlock proves each link before rewriting it, and cuts
///   the thread's robust list back to empty if one fails, so that
///   thread's other held robust locks lose death reporting until they are
///   released (see `sync::robust_list`).
/// * Thread ids of different PID namespaces collide. A locker sets the
///   kernel's `list_op_pending` to this mutex for the few instructions
///   around its lock CAS (as glibc does, so that a death right after the
///   CAS is still reported). If it is killed inside that window while a
///   thread of **another** PID namespace with the **same** thread id holds
///   the lock, the kernel marks that live owner dead. glibc's robust
///   mutexes have the same window, and keep it open while they sleep;
///   conduit closes it before sleeping.
/// * The robust list's own limits: on a target or C library where
///   conduit cannot join the list (not 64-bit glibc), or in a thread that
///   dies holding more than 2048 robust locks, a dead owner's lock is
///   never recovered. A guard that is forgotten (`mem::forget`) stays
///   linked in its thread's list; unmapping the segment afterwards while
///   the thread lives on leaves the list pointing into the unmapped
///   memory, as with a locked pthread robust mutex.
/// * `fork()` while holding the guard: the child does not own the lock
///   (it has another thread id, and glibc empties its robust list); the
///   parent still does. Dropping the guard in the child releases nothing.
///
/// The guard is `!Send`: the lock belongs to a thread (its id is in the
/// lock word, the mutex is in its robust list).
#[repr(C)]
pub struct RobustMutex<T: ShmSafe> {
    state: AtomicU32,
    _reserved: u32,
    owner: AtomicU64,
    _reserved2: u64,
    entry: ListEntry,
    data: cell::DataCell<T>,
}

// The kernel finds the lock word at `entry.next + FUTEX_OFFSET` (loom's
// atomics have other sizes; nothing is shared under loom).
#[cfg(not(loom))]
const _: () = assert!(
    core::mem::offset_of!(RobustMutex<u8>, entry) + 8
        == (core::mem::offset_of!(RobustMutex<u8>, state) as isize - robust_list::FUTEX_OFFSET)
            as usize
);

// SAFETY: the mutex hands out `&T`/`&mut T` only to the one thread that
// holds the lock (a guard), so sharing `&RobustMutex<T>` between threads is
// sound whenever `T` may move between threads; ShmSafe data is plain bytes.
// The list entry is written only by the thread that holds the lock.
unsafe impl<T: ShmSafe + Send> Sync for RobustMutex<T> {}

// SAFETY: repr(C) of two atomics, plain integers, the list entry (two u64
// cells: addresses meaningful to the owner only, never dereferenced by
// another process) and a ShmSafe T: a fixed layout, and every bit pattern
// is a valid state (garbage lock words are handled, see the type docs).
// Under loom (a test-only build in which nothing is shared between
// processes) the atomics are loom's and the impl only lets types that
// embed a RobustMutex compile.
unsafe impl<T: ShmSafe> ShmSafe for RobustMutex<T> {
    const LAYOUT: crate::shm::TypeLayout = {
        use crate::shm::fingerprint;
        let mut h = fingerprint::start();
        // The protocol version is part of the name: the robust-list
        // protocol must never meet the /proc one in the same memory.
        h = fingerprint::bytes(h, b"conduit::RobustMutex/robust-list");
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
            _reserved2: 0,
            entry: ListEntry::new(),
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
        self.state.load(Ordering::Relaxed) & OWNER_MASK == NOT_RECOVERABLE_OWNER
    }

    /// Acquires the lock, sleeping while another live thread holds it.
    ///
    /// Errors: [`LockError::OwnerDied`] (the lock is acquired, the data may
    /// be inconsistent), [`LockError::NotRecoverable`],
    /// [`LockError::WouldDeadlock`] (this thread holds it already).
    ///
    /// A lock word that names a thread that will never release it (see
    /// the residual risks) makes this wait forever; use
    /// [`lock_timeout`](Self::lock_timeout) where that matters.
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
    /// A lock whose owner died is free to take (the kernel has marked it):
    /// this returns [`TryLockError::OwnerDied`] with the guard. No system
    /// call is made.
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
        self.acquire(UNLOCKED, me.tid, me)
    }

    fn guard(&self, me: Identity, consistent: bool) -> RobustMutexGuard<'_, T> {
        RobustMutexGuard {
            mutex: self,
            me,
            consistent,
            _not_send: PhantomData,
        }
    }

    /// Changes the lock word from `seen` (no owner) to `want` (`me.tid`,
    /// maybe with `WAITERS`) and, if that worked, publishes the owner token
    /// and links the mutex into the thread's robust list. The kernel's
    /// `list_op_pending` names the mutex from before the CAS until it is
    /// linked, so a death anywhere in between is reported too.
    #[inline]
    fn acquire(&self, seen: u32, want: u32, me: Identity) -> bool {
        let entry = self.entry.addr();
        // SAFETY: `me.head` is 0 or this thread's robust-list head (from
        // `identity::current`, which re-reads it after a fork).
        unsafe { robust_list::pending(me.head, entry) };
        let won = self
            .state
            .compare_exchange(seen, want, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if won {
            self.owner.store(me.token, Ordering::Relaxed);
            // SAFETY: as above; we now hold the lock, so the entry is ours
            // and unlinked (a previous owner unlinked it, or died and its
            // list died with it), and the guard about to be returned keeps
            // `self` mapped until the guard unlinks it.
            unsafe { robust_list::link(me.head, entry) };
        }
        // SAFETY: as above.
        unsafe { robust_list::pending(me.head, 0) };
        won
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
        loop {
            let seen = self.state.load(Ordering::Relaxed);
            let owner = seen & OWNER_MASK;
            if owner == NOT_RECOVERABLE_OWNER {
                return Acquired::NotRecoverable;
            }
            if owner == UNLOCKED {
                // Free, or freed by the kernel when its owner died. Keep
                // WAITERS when it is set or when we slept: other
                // contenders may still be asleep and the unlock must wake
                // them. OWNER_DIED is cleared: it is reported to us alone.
                let want = me.tid | (seen & WAITERS) | if slept { WAITERS } else { 0 };
                if self.acquire(seen, want, me) {
                    return if seen & OWNER_DIED != 0 {
                        Acquired::OwnerDied
                    } else {
                        Acquired::Locked
                    };
                }
                continue;
            }
            // Our own id: this thread holds it if the token is ours;
            // otherwise a thread of another PID namespace with the same id
            // does, and we wait like for any other owner.
            if owner == me.tid && self.owner.load(Ordering::Relaxed) == me.token {
                return Acquired::WouldDeadlock;
            }
            if spins > 0 {
                spins -= 1;
                super::spin_loop();
                continue;
            }
            if !blocking {
                return Acquired::WouldBlock;
            }
            let now = Instant::now();
            let mut sleep = RECHECK;
            if let Some(Some(deadline)) = deadline {
                if now >= deadline {
                    return Acquired::Timeout;
                }
                sleep = sleep.min(deadline - now);
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
            slept = true;
            futex::wait(
                &self.state,
                seen | WAITERS,
                Some(sleep.max(Duration::from_micros(1))),
            );
        }
    }

    /// Releases the lock held by `me`, leaving the owner field `to`
    /// (`UNLOCKED`, or `NOT_RECOVERABLE` after an unrepaired owner death),
    /// and unlinks the mutex from the thread's robust list. The kernel's
    /// `list_op_pending` names the mutex from before the unlink until
    /// after the wake, so a death anywhere in between is reported (or the
    /// sleeper woken) by the kernel.
    #[inline]
    fn release(&self, me: Identity, to: u32) {
        let entry = self.entry.addr();
        self.owner.store(0, Ordering::Relaxed);
        // SAFETY: `me.head` is 0 or this thread's head, in which this
        // thread linked the entry when it locked (the caller is the guard
        // of this thread, checked against forks).
        unsafe {
            robust_list::pending(me.head, entry);
            robust_list::unlink(me.head, entry);
        }
        if to != UNLOCKED
            || self
                .state
                .compare_exchange(me.tid, UNLOCKED, Ordering::Release, Ordering::Relaxed)
                .is_err()
        {
            self.release_slow(me.tid, to);
        }
        // SAFETY: as above.
        unsafe { robust_list::pending(me.head, 0) };
    }

    /// Sets the owner field to `to` (UNLOCKED or NOT_RECOVERABLE) if `tid`
    /// still owns the lock, and wakes sleepers: one for an unlock, all for
    /// NOT_RECOVERABLE (each of them must learn it).
    #[cold]
    fn release_slow(&self, tid: u32, to: u32) {
        let to = if to == UNLOCKED {
            UNLOCKED
        } else {
            NOT_RECOVERABLE
        };
        let mut seen = self.state.load(Ordering::Relaxed);
        loop {
            if seen & OWNER_MASK != tid {
                // Not ours any more: the kernel marked us dead (a thread of
                // another namespace with our id was killed while locking,
                // see the residual risks) or the word was overwritten.
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

/// The kernel's side of owner death, for loom models.
#[cfg(loom)]
impl<T: ShmSafe> RobustMutex<T> {
    /// Locks, then ends the calling thread's ownership the way the
    /// kernel's `handle_futex_death` does when the thread dies holding the
    /// lock: if the owner field still names the thread, replace it with
    /// `OWNER_DIED`, keep `WAITERS`, and wake one sleeper if it was set.
    /// Returns whether the lock itself came with `OwnerDied`.
    pub(crate) fn lock_then_die(&self) -> bool {
        let me = identity::current();
        let died = match self.lock() {
            Ok(g) => {
                core::mem::forget(g);
                false
            }
            Err(LockError::OwnerDied(g)) => {
                core::mem::forget(g);
                true
            }
            Err(e) => panic!("{e}"),
        };
        let mut seen = self.state.load(Ordering::Relaxed);
        loop {
            if seen & OWNER_MASK != me.tid {
                return died;
            }
            let dead = (seen & WAITERS) | OWNER_DIED;
            match self
                .state
                .compare_exchange(seen, dead, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        if seen & WAITERS != 0 {
            futex::wake(&self.state, 1);
        }
        died
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
            .field("owner_died", &(state & OWNER_DIED != 0))
            .field("waiters", &(state & WAITERS != 0))
            .finish_non_exhaustive()
    }
}

/// Proof that the lock of a [`RobustMutex`] is held; gives access to the
/// data and unlocks when dropped.
///
/// `!Send`: the lock word names the locking thread, and the mutex is
/// linked into that thread's robust list.
pub struct RobustMutexGuard<'a, T: ShmSafe> {
    mutex: &'a RobustMutex<T>,
    /// The locking thread (its id, token and robust-list head).
    me: Identity,
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
    #[inline]
    fn drop(&mut self) {
        // A guard is !Send, so only a fork() can have moved it to another
        // thread (of a child process): there the lock is the parent's and
        // the robust list glibc's empty one of the child. Release nothing.
        if !identity::is_current(self.me) {
            return;
        }
        let to = if self.consistent {
            UNLOCKED
        } else {
            NOT_RECOVERABLE
        };
        self.mutex.release(self.me, to);
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
        assert_eq!(core::mem::size_of::<RobustMutex<u64>>(), 48);
        assert_eq!(core::mem::align_of::<RobustMutex<u64>>(), 8);
        assert_eq!(core::mem::offset_of!(RobustMutex<u64>, owner), 8);
        assert_eq!(core::mem::offset_of!(RobustMutex<u64>, entry), 24);
        assert_eq!(core::mem::offset_of!(RobustMutex<u64>, data), 40);
        assert_eq!(<RobustMutex<u64> as ShmSafe>::LAYOUT.size, 48);
        assert_ne!(
            <RobustMutex<u64> as ShmSafe>::LAYOUT.fingerprint,
            <RobustMutex<i64> as ShmSafe>::LAYOUT.fingerprint
        );
        // The value every version of conduit (and glibc) uses.
        assert_eq!(NOT_RECOVERABLE, 0x7fff_ffff);
        // The /proc-liveness layout's fingerprint: a segment holding it is
        // refused (FingerprintMismatch), never shared by both protocols.
        use crate::shm::fingerprint;
        let old = fingerprint::word(
            fingerprint::word(
                fingerprint::bytes(fingerprint::start(), b"conduit::RobustMutex"),
                <u64 as ShmSafe>::LAYOUT.fingerprint,
            ),
            24,
        );
        assert_ne!(<RobustMutex<u64> as ShmSafe>::LAYOUT.fingerprint, old);
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
    fn nested_locks_release_in_any_order() {
        let a = RobustMutex::new(1u32);
        let b = RobustMutex::new(2u32);
        let c = RobustMutex::new(3u32);
        let ga = a.lock().unwrap();
        let gb = b.lock().unwrap();
        let gc = c.lock().unwrap();
        drop(gb);
        drop(ga);
        let gb = b.lock().unwrap();
        drop(gc);
        drop(gb);
        for m in [&a, &b, &c] {
            assert_eq!(m.state.load(Ordering::Relaxed), 0);
            assert!(m.try_lock().is_ok());
        }
    }

    #[test]
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
    #[cfg_attr(miri, ignore = "needs the kernel's robust list")]
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
        // The kernel marked the word when the thread exited.
        assert_eq!(m.state.load(Ordering::Relaxed), OWNER_DIED);
        let mut g = m.lock().unwrap_err().into_owner_died().unwrap();
        assert_eq!(*g, 7);
        assert!(!g.is_consistent());
        g.mark_consistent();
        drop(g);
        assert_eq!(*m.lock().unwrap(), 7);
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs the kernel's robust list")]
    fn sleeper_is_woken_by_the_kernel_when_the_owner_thread_exits() {
        let m = std::sync::Arc::new(RobustMutex::new(0u32));
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (exit_tx, exit_rx) = std::sync::mpsc::channel::<()>();
        let m2 = m.clone();
        let owner = std::thread::spawn(move || {
            let g = m2.lock().unwrap();
            locked_tx.send(()).unwrap();
            exit_rx.recv().unwrap();
            core::mem::forget(g);
        });
        locked_rx.recv().unwrap();
        let m3 = m.clone();
        let sleeper = std::thread::spawn(move || match m3.lock() {
            Err(LockError::OwnerDied(mut g)) => g.mark_consistent(),
            other => panic!("expected OwnerDied, got {other:?}"),
        });
        // Let the sleeper announce itself, then end the owner.
        while m.state.load(Ordering::Relaxed) & WAITERS == 0 {
            std::thread::yield_now();
        }
        exit_tx.send(()).unwrap();
        owner.join().unwrap();
        sleeper.join().unwrap();
        assert!(m.try_lock().is_ok());
    }

    #[test]
    fn unrecovered_guard_poisons_for_good() {
        let m = RobustMutex::new(0u32);
        // What the kernel leaves behind when an owner dies.
        m.state.store(OWNER_DIED, Ordering::Relaxed);
        let g = m.try_lock().unwrap_err().into_owner_died().unwrap();
        drop(g);
        assert!(m.is_not_recoverable());
        assert_eq!(m.state.load(Ordering::Relaxed), NOT_RECOVERABLE);
        assert!(matches!(m.lock(), Err(LockError::NotRecoverable)));
        assert!(matches!(m.try_lock(), Err(TryLockError::NotRecoverable)));
        assert!(matches!(
            m.lock_timeout(Duration::from_secs(1)),
            Err(LockTimeoutError::NotRecoverable)
        ));
    }

    #[test]
    fn garbage_lock_words_do_not_hang() {
        // (word, outcome of try_lock/lock_timeout)
        for garbage in [
            WAITERS,
            OWNER_DIED | WAITERS,
            WAITERS | 0x3fff_fffe,
            0x0040_0000,
            OWNER_DIED | 17,
            NOT_RECOVERABLE_OWNER,
            u32::MAX,
        ] {
            let m = RobustMutex::new(0u32);
            m.state.store(garbage, Ordering::Relaxed);
            m.owner.store(0xdead_beef, Ordering::Relaxed);
            let owner = garbage & OWNER_MASK;
            match m.lock_timeout(Duration::from_millis(5)) {
                // WAITERS alone is "unlocked, maybe sleepers".
                Ok(_) => assert_eq!(garbage, WAITERS),
                Err(LockTimeoutError::OwnerDied(mut g)) => {
                    assert_eq!(owner, UNLOCKED, "{garbage:#x}");
                    g.mark_consistent();
                }
                Err(LockTimeoutError::NotRecoverable) => {
                    assert_eq!(owner, NOT_RECOVERABLE_OWNER, "{garbage:#x}");
                    continue;
                }
                // A word naming a thread that never held it: held for good.
                Err(LockTimeoutError::Timeout) => {
                    assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
                    continue;
                }
                Err(e) => panic!("{garbage:#x}: {e}"),
            }
            assert!(m.try_lock().is_ok());
        }
    }

    #[test]
    fn own_id_with_another_token_is_another_owner() {
        // A thread of another PID namespace with our thread id holds it:
        // not a deadlock, and never ours to take.
        let m = RobustMutex::new(0u32);
        let me = identity::current();
        m.state.store(me.tid, Ordering::Relaxed);
        m.owner.store(me.token ^ 1, Ordering::Relaxed);
        assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
        assert!(matches!(
            m.lock_timeout(Duration::from_millis(5)),
            Err(LockTimeoutError::Timeout)
        ));
        assert_eq!(m.state.load(Ordering::Relaxed) & OWNER_MASK, me.tid);
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs the kernel's robust list")]
    fn garbage_in_the_list_links_is_never_followed() {
        let outer = RobustMutex::new(0u32);
        let inner = RobustMutex::new(0u32);
        let mut scratch = [0u64; 4];
        let scratch_addr = scratch.as_mut_ptr() as u64 + 8;
        for (prev, next) in [
            (0, 0),
            (8, 16),
            (0xdead_0000_0000, 0xbeef_0000_0008),
            (u64::MAX - 7, u64::MAX),
            // Mapped, aligned, but not a link naming the entry.
            (scratch_addr, scratch_addr),
        ] {
            let g_outer = outer.lock().unwrap();
            let g_inner = inner.lock().unwrap();
            inner.entry.scribble(prev, next);
            drop(g_inner);
            drop(g_outer);
            assert_eq!(scratch, [0; 4], "wrote through a garbage link");
            assert_eq!(inner.state.load(Ordering::Relaxed), 0);
            assert_eq!(outer.state.load(Ordering::Relaxed), 0);
        }
        // The list works again: a thread that exits holding a lock is
        // still reported dead by the kernel.
        let m = std::sync::Arc::new(RobustMutex::new(0u32));
        let m2 = m.clone();
        std::thread::spawn(move || {
            let g = m2.lock().unwrap();
            m2.entry.scribble(0, 0);
            drop(g);
            core::mem::forget(m2.lock().unwrap());
        })
        .join()
        .unwrap();
        assert!(matches!(m.try_lock(), Err(TryLockError::OwnerDied(_))));
        let again = RobustMutex::new(0u32);
        let g = again.lock().unwrap();
        drop(g);
        assert!(again.try_lock().is_ok());
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
