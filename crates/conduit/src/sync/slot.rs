//! Port slots of the service registries (the first two words of the
//! service core's `service::registry::PortSlot`, used by every pattern's
//! ports): two words per slot, claimed by CAS, freed by their owner or,
//! once the owner's node is dead, by any cleaner.
//!
//! | word | transitions |
//! |---|---|
//! | `node_id` | 0 (free) → owner's node id (CAS by the claimant) → 0 (store by the owner on drop; CAS `dead → 0` by a cleaner) |
//! | `id` | 0 → port id (Release, after the claim) → 0 (store by the owner; CAS `dead port's id → 0` by a cleaner) |
//!
//! Readers (peers rescanning after a generation bump) go by `id`;
//! claimants and cleaners by `node_id`. The loom models in
//! `service::loom_tests` run these functions.

use super::atomic::{AtomicU64, Ordering};

/// Claims the slot for port `id` of node `node` if it is free: `node_id:
/// 0 → node` (CAS; exactly one claimant wins), `prepare()` (resets the
/// slot's other words while nobody can see the port yet), then `id ← id`
/// (Release, publishing the reset).
#[inline]
pub(crate) fn try_claim(
    node_id: &AtomicU64,
    id_word: &AtomicU64,
    node: u64,
    id: u64,
    prepare: impl FnOnce(),
) -> bool {
    if node_id
        .compare_exchange(0, node, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    prepare();
    id_word.store(id, Ordering::Release);
    true
}

/// The owning port frees its slot (`id ← 0`, then `node_id ← 0`).
#[inline]
pub(crate) fn release(node_id: &AtomicU64, id_word: &AtomicU64) {
    id_word.store(0, Ordering::Release);
    node_id.store(0, Ordering::Release);
}

/// Cleanup: frees the slot if its owner node is dead (`is_alive` says
/// so), calling `dead_port` with the dead port's id (if it had stored one)
/// before the slot is freed. True if this call freed it (the caller then
/// bumps the generation and wakes waiters). Any number of cleaners and
/// claimants may race.
///
/// The dead port's id is read (Acquire) and then `node_id` checked again:
/// a new owner stores its id after its claim, so a cleaner that sees that
/// id also sees the new `node_id` and leaves the slot alone. Then `id:
/// dead port's id → 0` and `node_id: dead → 0`, both by CAS, so a late
/// cleaner cannot clear the id of a port that claimed the slot after
/// another cleaner freed it. (Before, cleanup stored `id ← 0` and then
/// CASed `node_id`: a cleaner that had read the dead node id before
/// another cleaner freed the slot and a new port claimed it would clear
/// the new port's id, and remove its data segment: loom model
/// `loom_service_slot_cleanup_race`.)
#[inline]
pub(crate) fn reclaim_if_dead(
    node_id: &AtomicU64,
    id_word: &AtomicU64,
    is_alive: impl FnOnce(u64) -> bool,
    dead_port: impl FnOnce(u64),
) -> bool {
    let node = node_id.load(Ordering::Acquire);
    if node == 0 || is_alive(node) {
        return false;
    }
    let id = id_word.load(Ordering::Acquire);
    if node_id.load(Ordering::Acquire) != node {
        return false; // Freed (and maybe claimed again) meanwhile.
    }
    if id != 0 {
        dead_port(id);
        let _ = id_word.compare_exchange(id, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
    node_id
        .compare_exchange(node, 0, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    use super::{reclaim_if_dead, release, try_claim};

    #[test]
    fn claim_release_reclaim() {
        let (node_id, id) = (AtomicU64::new(0), AtomicU64::new(0));
        assert!(try_claim(&node_id, &id, 5, 50, || {}));
        assert!(!try_claim(&node_id, &id, 6, 60, || panic!(
            "no prepare for a loser"
        )));
        assert_eq!(id.load(Ordering::Relaxed), 50);
        assert!(!reclaim_if_dead(
            &node_id,
            &id,
            |_| true,
            |_| panic!("alive")
        ));
        let mut removed = None;
        assert!(reclaim_if_dead(
            &node_id,
            &id,
            |_| false,
            |p| removed = Some(p)
        ));
        assert_eq!(removed, Some(50));
        assert_eq!(
            (node_id.load(Ordering::Relaxed), id.load(Ordering::Relaxed)),
            (0, 0)
        );
        assert!(
            !reclaim_if_dead(&node_id, &id, |_| false, |_| {}),
            "free already"
        );
        assert!(try_claim(&node_id, &id, 6, 60, || {}));
        release(&node_id, &id);
        assert_eq!(
            (node_id.load(Ordering::Relaxed), id.load(Ordering::Relaxed)),
            (0, 0)
        );
    }

    #[test]
    fn claimants_take_turns() {
        let threads: u64 = if cfg!(miri) { 3 } else { 8 };
        let rounds = if cfg!(miri) { 5 } else { 1000 };
        let (node_id, id, owners) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU32::new(0));
        std::thread::scope(|s| {
            for t in 1..=threads {
                let (node_id, id, owners) = (&node_id, &id, &owners);
                s.spawn(move || {
                    for _ in 0..rounds {
                        while !try_claim(node_id, id, t, t * 10, || {}) {
                            std::thread::yield_now();
                        }
                        assert_eq!(owners.fetch_add(1, Ordering::Relaxed), 0);
                        assert_eq!(id.load(Ordering::Acquire), t * 10);
                        owners.fetch_sub(1, Ordering::Relaxed);
                        release(node_id, id);
                    }
                });
            }
        });
    }
}
