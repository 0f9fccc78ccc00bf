//! Who is this thread, and is the owner of a lock still alive?
//!
//! A lock owner is named by its thread id **and** its start time (clock
//! ticks since boot, from `/proc/<tid>/stat`): thread ids are reused, the
//! pair is not. The pair of the calling thread is read once and cached in a
//! thread-local, so the lock fast path makes no system call. A `fork()`
//! child inherits the parent's thread-locals but has a new thread id; an
//! at-fork handler bumps a generation counter that invalidates the cache.
//!
//! Under loom every loom thread is one OS thread, so identities come from a
//! counter instead and every owner is alive.

/// Bits of the start time kept in a packed owner record.
pub(crate) const START_BITS: u32 = 42;
const START_MASK: u64 = (1 << START_BITS) - 1;
/// Largest thread id a packed owner record can hold (`PID_MAX_LIMIT` is
/// 2^22 on 64-bit Linux, so every real thread id fits).
const MAX_PACKED_TID: u32 = (1 << (64 - START_BITS)) - 1;

/// The calling thread's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Thread id (`gettid`), never 0.
    pub(crate) tid: u32,
    /// Start time in clock ticks, truncated to [`START_BITS`] bits; 0 when
    /// `/proc` could not be read.
    pub(crate) start: u64,
}

impl Identity {
    /// The record stored next to a lock word: `tid << 42 | start`, or 0
    /// ("not published") when the thread id does not fit.
    pub(crate) fn packed(self) -> u64 {
        if self.tid > MAX_PACKED_TID {
            return 0;
        }
        (u64::from(self.tid) << START_BITS) | (self.start & START_MASK)
    }

    /// Inverse of [`Identity::packed`] (`None` for 0).
    pub(crate) fn unpack(record: u64) -> Option<Identity> {
        if record == 0 {
            return None;
        }
        Some(Identity {
            tid: (record >> START_BITS) as u32,
            start: record & START_MASK,
        })
    }
}

/// What a liveness check found out about a lock owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// The task runs.
    Alive,
    /// The task is gone, a zombie, or its id now names another task.
    Dead,
    /// `/proc` could not tell (not mounted, no permission): assume alive.
    #[cfg_attr(loom, allow(dead_code))]
    Unknown,
}

#[cfg(not(loom))]
mod imp {
    use std::cell::Cell;
    use std::sync::Once;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::{Identity, Liveness, START_MASK};
    use crate::sys::{Errno, process};

    /// Bumped in every fork child; a cached identity of another generation
    /// is stale.
    static FORK_GENERATION: AtomicU32 = AtomicU32::new(0);
    static REGISTER: Once = Once::new();

    extern "C" fn forked() {
        FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    }

    thread_local! {
        /// (fork generation + 1, identity); generation 0 = not cached yet.
        static CACHE: Cell<(u32, Identity)> =
            const { Cell::new((0, Identity { tid: 0, start: 0 })) };
    }

    /// The calling thread's identity, from the thread-local cache.
    #[inline]
    pub(crate) fn current() -> Identity {
        let generation = FORK_GENERATION.load(Ordering::Relaxed).wrapping_add(1);
        let (cached_generation, identity) = CACHE.with(Cell::get);
        if cached_generation == generation && generation != 0 {
            return identity;
        }
        refresh()
    }

    #[cold]
    fn refresh() -> Identity {
        REGISTER.call_once(|| {
            // Without the handler a fork child would lock with its
            // parent's thread id; there is no reasonable way to go on.
            process::on_fork_in_child(forked).expect("pthread_atfork failed");
        });
        let generation = FORK_GENERATION.load(Ordering::Relaxed).wrapping_add(1);
        let tid = process::thread_id();
        // Under Miri thread ids are virtual and /proc is not theirs.
        let start = if cfg!(miri) {
            0
        } else {
            process::start_time(tid).unwrap_or(0) & START_MASK
        };
        let identity = Identity { tid, start };
        if generation != 0 {
            CACHE.with(|c| c.set((generation, identity)));
        }
        identity
    }

    /// Whether the task `tid` that started at `start` (truncated as in
    /// [`Identity::packed`]) still runs.
    pub(crate) fn liveness(tid: u32, start: u64) -> Liveness {
        if tid == 0 {
            return Liveness::Dead;
        }
        if cfg!(miri) {
            // Miri's thread ids are virtual: /proc knows nothing of them.
            return Liveness::Unknown;
        }
        match process::start_time(tid) {
            Err(Errno::SRCH) => Liveness::Dead,
            Err(_) => Liveness::Unknown,
            Ok(actual) if actual & START_MASK != start => Liveness::Dead,
            // Same task: dead if it became a zombie or vanished just now.
            Ok(actual) => {
                if process::is_alive(tid, actual) {
                    Liveness::Alive
                } else {
                    Liveness::Dead
                }
            }
        }
    }

    /// Whether some live task has id `tid`, whatever its start time.
    pub(crate) fn exists(tid: u32) -> Liveness {
        if tid == 0 {
            return Liveness::Dead;
        }
        if cfg!(miri) {
            return Liveness::Unknown;
        }
        match process::start_time(tid) {
            Err(Errno::SRCH) => Liveness::Dead,
            Err(_) => Liveness::Unknown,
            Ok(actual) => liveness(tid, actual & START_MASK),
        }
    }
}

#[cfg(loom)]
mod imp {
    use super::{Identity, Liveness};
    use loom::sync::atomic::{AtomicU32, Ordering};

    loom::lazy_static! {
        static ref NEXT: AtomicU32 = AtomicU32::new(1);
    }
    loom::thread_local! {
        static ME: u32 = NEXT.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn current() -> Identity {
        Identity {
            tid: ME.with(|t| *t),
            start: 1,
        }
    }

    pub(crate) fn liveness(_tid: u32, _start: u64) -> Liveness {
        Liveness::Alive
    }

    pub(crate) fn exists(_tid: u32) -> Liveness {
        Liveness::Alive
    }
}

pub(crate) use imp::{current, exists, liveness};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips() {
        let id = Identity {
            tid: 4_194_303,
            start: (1 << 42) - 1,
        };
        assert_eq!(Identity::unpack(id.packed()), Some(id));
        assert_eq!(Identity::unpack(0), None);
        let too_big = Identity {
            tid: u32::MAX,
            start: 5,
        };
        assert_eq!(too_big.packed(), 0);
    }

    #[cfg(not(loom))]
    #[test]
    #[cfg_attr(miri, ignore = "Miri's thread ids are not in /proc")]
    fn own_thread_is_alive_and_cached() {
        let me = current();
        assert_eq!(me.tid, crate::sys::process::thread_id());
        assert_eq!(current(), me);
        assert_eq!(liveness(me.tid, me.start), Liveness::Alive);
        assert_eq!(liveness(me.tid, me.start ^ 1), Liveness::Dead);
        assert_eq!(liveness(0, 0), Liveness::Dead);
        // Beyond PID_MAX_LIMIT: no such task.
        assert_eq!(liveness(0x3fff_ffff, 1), Liveness::Dead);
        assert_eq!(exists(0x7fff_fff0), Liveness::Dead);
    }
}
