//! loom models of the registries: port slots claimed, released and
//! reclaimed from dead nodes (`sync::slot`, used by the publish/subscribe
//! `PortSlot`s and by the event service's notifier and listener slots),
//! and the generation words that tell peers to rescan.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p conduit --release --lib loom_service`.
//! The models call the real functions (`sync::slot::{try_claim, release,
//! reclaim_if_dead}`, `service::registry::{claim_free_slot, release_slot}`)
//! on loom atomics.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loom::thread;

use super::registry::{PortSlot, claim_free_slot, release_slot};
use crate::sync::slot;

use crate::sync::loom_model as model;

fn slots(n: usize) -> Vec<PortSlot> {
    (0..n).map(|_| PortSlot::new()).collect()
}

#[test]
fn loom_service_slot_claim_race() {
    // Two ports of two nodes want the one slot: they take turns (the loser
    // retries until the winner releases), never both own it, and each
    // sees its own id while it owns it.
    model(|| {
        let shared = Arc::new((slots(1), AtomicU64::new(0), AtomicU32::new(0)));
        let claimant = |node: u64, id: u64| {
            let shared = shared.clone();
            move || {
                let (slots, generation, owners) = &*shared;
                while claim_free_slot(slots, generation, node, id, |_| {}).is_none() {
                    thread::yield_now();
                }
                assert_eq!(owners.fetch_add(1, Ordering::Relaxed), 0, "two owners");
                assert_eq!(slots[0].id.load(Ordering::Acquire), id);
                owners.fetch_sub(1, Ordering::Relaxed);
                release_slot(&slots[0], generation);
            }
        };
        let other = thread::spawn(claimant(1, 11));
        claimant(2, 22)();
        other.join().unwrap();
        let (slots, generation, _) = &*shared;
        assert_eq!(generation.load(Ordering::Relaxed), 4);
        assert_eq!(slots[0].node_id.load(Ordering::Relaxed), 0);
        assert_eq!(slots[0].id.load(Ordering::Relaxed), 0);
    });
}

#[test]
fn loom_service_generation_publishes_slot() {
    // A peer that sees the generation move (Acquire) and rescans the
    // slots finds the new port's id, so it connects it in that scan.
    model(|| {
        let shared = Arc::new((slots(2), AtomicU64::new(0)));
        let port = {
            let shared = shared.clone();
            thread::spawn(move || claim_free_slot(&shared.0, &shared.1, 1, 11, |_| {}))
        };
        let (slots, generation) = &*shared;
        if generation.load(Ordering::Acquire) != 0 {
            let ids: Vec<u64> = slots.iter().map(|s| s.id.load(Ordering::Acquire)).collect();
            assert_eq!(ids, vec![11, 0]);
        }
        assert_eq!(port.join().unwrap(), Some(0));
    });
}

#[test]
fn loom_service_slot_cleanup_race() {
    // The slot belongs to a dead node's port (id 7). Two cleaners free it
    // while a live port claims it as soon as it is free: exactly one
    // cleaner frees it, and the new owner keeps its id (a late cleaner
    // must not clear it).
    const DEAD: u64 = 9;
    model(|| {
        let shared = Arc::new((slots(1), AtomicU32::new(0)));
        shared.0[0].node_id.store(DEAD, Ordering::Relaxed);
        shared.0[0].id.store(7, Ordering::Relaxed);
        let cleaner = || {
            let shared = shared.clone();
            move || {
                let mut removed = None;
                if shared.0[0].reclaim_if_dead(|node| node != DEAD, |id| removed = Some(id)) {
                    shared.1.fetch_add(1, Ordering::Relaxed);
                }
                assert!(matches!(removed, None | Some(7)), "removed {removed:?}");
            }
        };
        let cleaners = [thread::spawn(cleaner()), thread::spawn(cleaner())];
        while !shared.0[0].try_claim(1, 11, || {}) {
            thread::yield_now();
        }
        for c in cleaners {
            c.join().unwrap();
        }
        assert_eq!(shared.1.load(Ordering::Relaxed), 1, "freed exactly once");
        assert_eq!(shared.0[0].node_id.load(Ordering::Relaxed), 1);
        assert_eq!(
            shared.0[0].id.load(Ordering::Relaxed),
            11,
            "the new owner's id was cleared"
        );
    });
}

#[test]
fn loom_service_listener_claim_publishes_reset() {
    // An event listener slot left by a dead listener still has a pending
    // bit set. A new listener claims it and clears the pending words in
    // `prepare`; a notifier that reads the new id (Acquire) and sets a
    // bit comes after the reset: the old bit is gone, the new one stays.
    model(|| {
        let shared = Arc::new((AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0b100)));
        let listener = {
            let shared = shared.clone();
            thread::spawn(move || {
                let (node_id, id, pending) = &*shared;
                assert!(slot::try_claim(node_id, id, 1, 11, || {
                    pending.store(0, Ordering::Relaxed);
                }));
            })
        };
        let (_, id, pending) = &*shared;
        // The notifier: delivers bit 0 to the listener whose id it reads.
        let notified = id.load(Ordering::Acquire) == 11;
        if notified {
            pending.fetch_or(0b1, Ordering::Release);
        }
        listener.join().unwrap();
        let left = pending.load(Ordering::Relaxed);
        assert_eq!(
            left & 0b100,
            0,
            "the dead listener's bit survived the claim"
        );
        if notified {
            assert_eq!(left & 0b1, 0b1, "the reset erased a notification");
        }
    });
}
