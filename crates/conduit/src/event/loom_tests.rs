//! loom models of the event protocol: pending bitset + [`EventWord`] (the
//! futex path) and the descriptor arming (`fd_armed` + registration).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p conduit --release --lib loom_event`.
//! The futex is loom's model (`sync::futex`), so a lost futex wake-up is a
//! loom deadlock. The descriptor path cannot block under loom, so its
//! property is checked on the final state: a listener that armed and did
//! not see the id must have been sent a wake byte.
//!
//! The fd model mirrors `FdWake::poll` and `fdwake::wake` step for step
//! (those use sockets and process-shared std atomics, which loom cannot
//! run).

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use loom::thread;

use crate::sync::{EventWord, Register, Spin};

use crate::sync::loom_model as model;

struct Slot {
    pending: AtomicU64,
    event: EventWord,
    armed: AtomicU32,
    bytes: AtomicU32,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            pending: AtomicU64::new(0),
            event: EventWord::new(),
            armed: AtomicU32::new(0),
            bytes: AtomicU32::new(0),
        }
    }

    /// `Notifier::notify` → `deliver` → `fdwake::wake`.
    fn notify(&self, id: u32) {
        self.pending.fetch_or(1 << id, Ordering::Release);
        if self.event.wake_all_reporting() {
            fence(Ordering::Acquire);
            if self.armed.load(Ordering::Relaxed) != 0 && self.armed.swap(0, Ordering::AcqRel) == 1
            {
                self.bytes.fetch_add(1, Ordering::Release); // the wake byte
            }
        }
    }

    /// `Listener::take`.
    fn take(&self) -> Option<u64> {
        if self.pending.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let v = self.pending.swap(0, Ordering::Acquire);
        (v != 0).then_some(v)
    }
}

#[test]
fn loom_event_futex_path_loses_no_id() {
    // Two notifiers, two ids; the listener blocks (no spin) until it has
    // seen both. A lost wake-up is a deadlock.
    model(|| {
        let slot = Arc::new(Slot::new());
        let notifiers: Vec<_> = (0..2)
            .map(|i| {
                let slot = slot.clone();
                thread::spawn(move || slot.notify(i))
            })
            .collect();
        let mut seen = 0u64;
        while seen != 0b11 {
            seen |= slot
                .event
                .wait_until(Spin::NONE, None, || slot.take())
                .unwrap();
        }
        for n in notifiers {
            n.join().unwrap();
        }
        assert_eq!(slot.event.sleepers(), 0);
    });
}

/// `FdWake::poll` with `Listener::take` as the check; `bytes.swap(0)` is
/// the socket drain.
fn poll(slot: &Slot, registered: &mut bool) -> Option<u64> {
    if *registered && slot.armed.load(Ordering::Acquire) == 0 {
        slot.event.unregister();
        *registered = false;
    }
    loop {
        let epoch = slot.event.epoch();
        if let Some(v) = slot.take() {
            return Some(v);
        }
        slot.bytes.swap(0, Ordering::Acquire);
        if *registered {
            if slot.armed.load(Ordering::Acquire) != 0 {
                return None;
            }
            // A notifier disarmed us since the check (and we may have
            // drained its byte): look again.
            slot.event.unregister();
            *registered = false;
            continue;
        }
        slot.armed.store(1, Ordering::Relaxed);
        match slot.event.register(epoch) {
            Register::Registered => {
                *registered = true;
                return None;
            }
            Register::EpochMoved => continue,
            Register::Saturated => unreachable!("one registrant"),
        }
    }
}

/// The listener's side of one WaitSet round: poll until nothing is left
/// (the user drains), which leaves the descriptor armed.
fn drain_round(slot: &Slot, registered: &mut bool) -> u64 {
    let mut seen = 0;
    while let Some(v) = poll(slot, registered) {
        seen |= v;
    }
    seen
}

#[test]
fn loom_event_fd_arming_loses_no_wakeup() {
    // First arming races with a notification: afterwards the id was taken,
    // or it is pending and a wake byte is in the socket.
    model(|| {
        let slot = Arc::new(Slot::new());
        let notifier = {
            let slot = slot.clone();
            thread::spawn(move || slot.notify(3))
        };
        let mut registered = false;
        let seen = drain_round(&slot, &mut registered);
        notifier.join().unwrap();
        let left = slot.pending.load(Ordering::Relaxed);
        assert_eq!(seen | left, 1 << 3);
        if left != 0 {
            assert!(
                slot.bytes.load(Ordering::Relaxed) > 0,
                "armed, id pending, no byte: a lost wake-up"
            );
        }
        if registered {
            slot.event.unregister();
        }
    });
}

#[test]
fn loom_event_fd_rearm_after_wakeup() {
    // An armed listener's wake-up round (unregister, take, re-arm) races
    // with two notifications: whatever it did not take is announced by a
    // byte sent after its drain.
    model(|| {
        let slot = Arc::new(Slot::new());
        let mut registered = false;
        assert_eq!(drain_round(&slot, &mut registered), 0);
        assert!(registered);
        let notifier = {
            let slot = slot.clone();
            thread::spawn(move || {
                slot.notify(1);
                slot.notify(2);
            })
        };
        let seen = drain_round(&slot, &mut registered);
        notifier.join().unwrap();
        let left = slot.pending.load(Ordering::Relaxed);
        assert_eq!(seen | left, 0b110);
        if left != 0 {
            assert!(
                slot.bytes.load(Ordering::Relaxed) > 0,
                "pending {left:b}, seen {seen:b}, no byte"
            );
        }
        if registered {
            slot.event.unregister();
        }
    });
}
