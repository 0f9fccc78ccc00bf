//! Who is this thread: its thread id (for the lock word), a token that
//! names it uniquely across processes and PID namespaces (for the owner
//! record), and the head of its kernel robust-futex list (see
//! [`super::robust_list`]).
//!
//! All three are read once and cached in a thread-local, so the lock fast
//! path makes no system call. A `fork()` child inherits the parent's
//! thread-locals but has a new thread id; an at-fork handler bumps a
//! generation counter that invalidates the cache.
//!
//! Nothing here reads `/proc`: a thread id means nothing to a process in
//! another PID namespace, so conduit never judges another task's liveness
//! by its id. Owner death is reported by the kernel (the robust list).
//!
//! Under loom every loom thread is one OS thread, so identities come from a
//! counter instead and there is no robust list.

/// The calling thread's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Thread id (`gettid`, in the caller's PID namespace), never 0.
    pub(crate) tid: u32,
    /// The fork generation this identity belongs to (see
    /// [`is_current`]).
    pub(crate) generation: u32,
    /// A random 64-bit token, never 0, unique to this thread (of this
    /// process generation) with overwhelming probability, whatever the
    /// PID namespace: thread ids of two namespaces collide, tokens do not.
    pub(crate) token: u64,
    /// Address of the thread's `struct robust_list_head`; 0 when the
    /// thread has none and could not get one (robust futexes unsupported)
    /// or in builds without system calls (loom, Miri).
    pub(crate) head: usize,
}

#[cfg(not(loom))]
mod imp {
    use std::cell::Cell;
    use std::sync::Once;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::Identity;
    use crate::sys::process;

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
            const { Cell::new((0, Identity { tid: 0, generation: 0, token: 0, head: 0 })) };
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

    /// Whether `identity` (from [`current`] in the calling thread) is
    /// still the calling thread's, i.e. no `fork()` happened since: one
    /// load of a global, no thread-local access.
    #[inline]
    pub(crate) fn is_current(identity: Identity) -> bool {
        FORK_GENERATION.load(Ordering::Relaxed).wrapping_add(1) == identity.generation
    }

    /// A random token from std's per-thread random hasher keys (seeded
    /// from the OS), mixed with the thread id.
    fn random_token(tid: u32) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(tid);
        h.write_usize(&h as *const _ as usize);
        h.finish().max(1)
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
        let identity = Identity {
            tid,
            generation,
            token: random_token(tid),
            head: super::super::robust_list::thread_head(),
        };
        if generation != 0 {
            CACHE.with(|c| c.set((generation, identity)));
        }
        identity
    }
}

#[cfg(loom)]
mod imp {
    use super::Identity;
    use loom::sync::atomic::{AtomicU32, Ordering};

    loom::lazy_static! {
        static ref NEXT: AtomicU32 = AtomicU32::new(1);
    }
    loom::thread_local! {
        static ME: u32 = NEXT.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn current() -> Identity {
        let tid = ME.with(|t| *t);
        Identity {
            tid,
            generation: 1,
            token: u64::from(tid),
            head: 0,
        }
    }

    /// No fork under loom.
    pub(crate) fn is_current(_identity: Identity) -> bool {
        true
    }
}

pub(crate) use imp::{current, is_current};

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "gettid")]
    fn own_identity_is_cached_and_distinct_per_thread() {
        let me = current();
        assert_eq!(me.tid, crate::sys::process::thread_id());
        assert_eq!(current(), me);
        assert_ne!(me.token, 0);
        assert_ne!(me.head, 0);
        let other = std::thread::spawn(current).join().unwrap();
        assert_ne!(other.token, me.token);
        assert_ne!(other.tid, me.tid);
    }
}
