//! loom models of the publish/subscribe queue protocol and of the
//! connection link (the registries are modelled in `service::loom_tests`).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p conduit --release --lib loom_`.
//!
//! The models call the real protocol steps (`crate::queue`: `push`,
//! `make_room`, `drop_oldest`, `pop`, `push_return`, `collect_returns`,
//! `connect`, `linked`) on loom atomics laid out as in the segment. Only
//! the process-local bookkeeping of the publisher and subscriber (free
//! list, cached heads) is re-written here, as small as the property needs. Payloads are loom
//! `UnsafeCell`s, so a chunk read before its publication, or rewritten
//! while a subscriber still reads it, is a data race that loom reports.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use loom::thread;

use super::departed;

use super::queue::{Pop, Steal};
use crate::queue::{Conn, ConnWords};

use crate::sync::loom_model as model;

const GENERATION: u64 = 1;
const SUB_ID: u64 = 0x5b;

/// One connection's shared words (as `ServiceView::conn` finds them in
/// the segment) and a pool of chunks with one `u32` payload each.
struct Shared {
    words: ConnWords,
    payload: Vec<UnsafeCell<u32>>,
}

impl Shared {
    /// `ring` entries (a power of two), `chunks` chunks (and as many
    /// return slots, rounded up to a power of two, as the layout does).
    fn new(ring: usize, chunks: usize) -> Arc<Shared> {
        Arc::new(Shared {
            words: ConnWords::new(ring, chunks.next_power_of_two(), SUB_ID, 1, GENERATION),
            payload: (0..chunks).map(|_| UnsafeCell::new(0)).collect(),
        })
    }

    fn conn(&self) -> Conn<'_> {
        self.words.conn()
    }

    /// Publisher: writes the payload of a chunk it owns.
    fn write(&self, chunk: u32, value: u32) {
        // SAFETY: the publisher owns the chunk (free, never delivered, or
        // returned and collected); loom reports a race if a subscriber can
        // still read it.
        self.payload[chunk as usize].with_mut(|p| unsafe { *p = value });
    }

    /// Subscriber: reads the payload of a chunk it claimed.
    fn read(&self, chunk: u32) -> u32 {
        // SAFETY: claimed by a successful pop, after the publisher's
        // Release of the entry; loom reports a race otherwise.
        self.payload[chunk as usize].with(|p| unsafe { *p })
    }
}

/// The subscriber's side: pops (spinning while empty) until it has
/// `n` samples; returns (chunk, payload, len) in order.
fn receive_n(shared: &Shared, n: usize, returns: bool) -> Vec<(u32, u32, usize)> {
    let conn = shared.conn();
    let mut head = 0;
    let mut ret_tail = 0;
    let mut got = Vec::new();
    while got.len() < n {
        match conn.pop(&mut head, GENERATION) {
            Pop::Chunk(chunk, len) => {
                got.push((chunk, shared.read(chunk), len));
                if returns {
                    conn.push_return(ret_tail, GENERATION, chunk);
                    ret_tail += 1;
                }
            }
            Pop::Empty => thread::yield_now(),
            Pop::Gone => panic!("entry of another generation"),
        }
    }
    got
}

#[test]
fn loom_pubsub_spsc_wraparound() {
    // Ring and buffer of 2, three samples: the third push reuses slot 0
    // once the subscriber has claimed position 0 (the publisher waits for
    // room as under `Overflow::Block`). No entry lost or duplicated, in
    // order, and the payload is visible (published before the index).
    model(|| {
        let shared = Shared::new(2, 3);
        let publisher = {
            let shared = shared.clone();
            thread::spawn(move || {
                let conn = shared.conn();
                for tail in 0..3u64 {
                    while tail - conn.head.load(Ordering::Acquire) >= 2 {
                        thread::yield_now();
                    }
                    let chunk = tail as u32;
                    shared.write(chunk, 100 + chunk);
                    conn.push(tail, GENERATION, chunk, 7 + tail);
                }
            })
        };
        let got = receive_n(&shared, 3, false);
        publisher.join().unwrap();
        assert_eq!(got, vec![(0, 100, 7), (1, 101, 8), (2, 102, 9)]);
    });
}

#[test]
fn loom_pubsub_drop_oldest_race() {
    // Buffer of 1 under DropOldest: the publisher sends chunk 0, then
    // chunk 1, dropping position 0 if it is still queued, while the
    // subscriber tries to take position 0. Exactly one side gets chunk 0:
    // the subscriber (which returns it through the return ring) or the
    // publisher (a drop). Chunk 1 always arrives.
    model(|| {
        let shared = Shared::new(1, 2);
        let publisher = {
            let shared = shared.clone();
            thread::spawn(move || {
                let conn = shared.conn();
                let mut head = 0;
                let mut dropped = Vec::new();
                for tail in 0..2u64 {
                    let chunk = tail as u32;
                    shared.write(chunk, 100 + chunk);
                    if let Some(old) = conn.make_room(tail, &mut head, 1, GENERATION) {
                        dropped.push(old);
                    }
                    conn.push(tail, GENERATION, chunk, 1);
                }
                dropped
            })
        };
        // The subscriber's try_receive: one attempt, racing the drop.
        let conn = shared.conn();
        let mut head = 0;
        let mut ret_tail = 0;
        let mut received = Vec::new();
        if let Pop::Chunk(chunk, _) = conn.pop(&mut head, GENERATION) {
            assert_eq!(shared.read(chunk), 100 + chunk);
            received.push(chunk);
            conn.push_return(ret_tail, GENERATION, chunk);
            ret_tail += 1;
        }
        let dropped = publisher.join().unwrap();
        // Afterwards the subscriber drains the queue.
        loop {
            match conn.pop(&mut head, GENERATION) {
                Pop::Chunk(chunk, _) => {
                    assert_eq!(shared.read(chunk), 100 + chunk);
                    received.push(chunk);
                    conn.push_return(ret_tail, GENERATION, chunk);
                    ret_tail += 1;
                }
                Pop::Empty => break,
                Pop::Gone => panic!("entry of another generation"),
            }
        }
        // The publisher collects the returns: with the drops, every
        // chunk comes back exactly once.
        let mut back = dropped.clone();
        let mut ret_head = 0;
        conn.collect_returns(&mut ret_head, GENERATION, |c| back.push(c));
        back.sort_unstable();
        assert_eq!(
            back,
            vec![0, 1],
            "received {received:?}, dropped {dropped:?}"
        );
        assert!(received.contains(&1), "the newest sample is never dropped");
        assert_eq!(conn.head.load(Ordering::Relaxed), 2);
    });
}

#[test]
fn loom_pubsub_drop_oldest_steal_vs_claim() {
    // The bare race on one position: the publisher's `drop_oldest` CAS
    // against the subscriber's claim in `pop`. Exactly one wins.
    model(|| {
        let shared = Shared::new(1, 1);
        shared.write(0, 100);
        shared.conn().push(0, GENERATION, 0, 1);
        let publisher = {
            let shared = shared.clone();
            thread::spawn(move || shared.conn().drop_oldest(0, GENERATION))
        };
        let mut head = 0;
        let popped = shared.conn().pop(&mut head, GENERATION);
        let stolen = publisher.join().unwrap();
        match (popped, stolen) {
            (Pop::Chunk(0, 1), Steal::Lost(1)) => {}
            (Pop::Empty, Steal::Dropped(Some(0))) => {}
            other => panic!("both or neither got the chunk: {other:?}"),
        }
        assert_eq!(shared.conn().head.load(Ordering::Relaxed), 1);
    });
}

#[test]
fn loom_pubsub_return_ring() {
    // Two chunks, buffer 2, three samples: the third send needs a chunk
    // back, which the publisher gets only from the return ring (it spins
    // on `collect_returns` like a loan that finds the pool empty). Every
    // chunk is returned exactly once, and the publisher rewrites a chunk
    // only after the subscriber is done with it (loom checks the payload
    // cell for races).
    model(|| {
        let shared = Shared::new(2, 2);
        let publisher = {
            let shared = shared.clone();
            thread::spawn(move || {
                let conn = shared.conn();
                let mut free = vec![1u32, 0];
                let mut ret_head = 0;
                let mut collected = Vec::new();
                for tail in 0..3u64 {
                    let chunk = loop {
                        if let Some(c) = free.pop() {
                            break c;
                        }
                        conn.collect_returns(&mut ret_head, GENERATION, |c| {
                            collected.push(c);
                            free.push(c);
                        });
                        if free.is_empty() {
                            thread::yield_now();
                        }
                    };
                    shared.write(chunk, 100 + tail as u32);
                    // Room: two chunks cannot overfill a buffer of two.
                    conn.push(tail, GENERATION, chunk, 1);
                }
                collected
            })
        };
        let got = receive_n(&shared, 3, true);
        let mut collected = publisher.join().unwrap();
        let values: Vec<u32> = got.iter().map(|g| g.1).collect();
        assert_eq!(values, vec![100, 101, 102]);
        let mut ret_head = collected.len() as u64;
        shared
            .conn()
            .collect_returns(&mut ret_head, GENERATION, |c| collected.push(c));
        // Returned: chunk 0 (reused), then chunk 1 and chunk 0 again.
        let sent: Vec<u32> = got.iter().map(|g| g.0).collect();
        assert_eq!(
            collected, sent,
            "each delivery returned exactly once, in order"
        );
    });
}

#[test]
fn loom_pubsub_link_generation() {
    // Publisher slot reuse: publisher 1 connects subscriber SUB_ID (and the
    // subscriber consumes a little: head 3, ret_tail 2), leaves, and
    // publisher 2 takes over the slot and connects the same subscriber. A
    // subscriber that accepts the link for publisher 2 must see
    // publisher 2's reset, never publisher 1's generation, head or
    // return tail, even when the `link` value it reads is publisher 1's.
    model(|| {
        let shared = Shared::new(1, 1);
        shared.conn().link.link.store(0, Ordering::Relaxed);
        shared.conn().link.generation.store(0, Ordering::Relaxed);
        let publishers = {
            let shared = shared.clone();
            thread::spawn(move || {
                let conn = shared.conn();
                assert_eq!(conn.connect(1, SUB_ID), 1);
                conn.head.store(3, Ordering::Release);
                conn.ret_tail.store(2, Ordering::Release);
                assert_eq!(conn.connect(2, SUB_ID), 2);
            })
        };
        if let Some(linked) = shared.conn().linked(SUB_ID, 2) {
            assert_eq!(
                linked.generation, 2,
                "generation of the previous connection"
            );
            assert_eq!(linked.head, 0, "head of the previous connection");
            assert_eq!(linked.ret_tail, 0, "return tail of the previous connection");
        }
        publishers.join().unwrap();
    });
}

/// A departed publisher's id, its successor's, and a second subscriber.
const DEPARTED: u64 = 0xd1;
const SUCCESSOR: u64 = 0xd2;
const OTHER_SUB: u64 = 0x5c;

/// The words of a departure: the publisher's slot, two subscriber slots
/// and the connections to them (one unread entry each), and a count of
/// removals of the data segment's name.
struct Departure {
    pub_slot: AtomicU64,
    subs: [AtomicU64; 2],
    conns: [ConnWords; 2],
    unlinked: AtomicUsize,
}

impl Departure {
    fn new() -> Arc<Departure> {
        let d = Departure {
            pub_slot: AtomicU64::new(DEPARTED),
            subs: [AtomicU64::new(SUB_ID), AtomicU64::new(OTHER_SUB)],
            conns: [
                ConnWords::new(2, 1, SUB_ID, DEPARTED, GENERATION),
                ConnWords::new(2, 1, OTHER_SUB, DEPARTED, GENERATION),
            ],
            unlinked: AtomicUsize::new(0),
        };
        for c in &d.conns {
            c.conn().push(0, GENERATION, 0, 1);
        }
        Arc::new(d)
    }

    /// `departed::unlink_unless_held`, with a count instead of `shm_unlink`.
    fn unlink_unless_held(&self) {
        let conns = self.conns.iter().map(ConnWords::conn);
        if !departed::is_held(std::iter::once(&self.pub_slot), conns, DEPARTED) {
            self.unlinked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn loom_last_words_unlinked_exactly_when_nobody_holds_it() {
    // Publisher DEPARTED leaves with one unread entry queued for each of
    // two subscribers (its `Drop`: `departed::hold_one` on both
    // connections, its slot released, then the removal check). Meanwhile
    // subscriber OTHER_SUB drops (slot released, SeqCst fence, its hold
    // ended, removal check) and subscriber SUB_ID, if it already sees the
    // departure, takes its entry, finds the queue empty and ends its hold.
    // The name is never removed while a hold remains (SUB_ID could not
    // map it any more), and it is removed once none remains.
    model(|| {
        let d = Departure::new();
        let publisher = {
            let d = d.clone();
            thread::spawn(move || {
                for (conn, sub) in d.conns.iter().zip(&d.subs) {
                    departed::hold_one(conn.conn(), sub, DEPARTED);
                }
                d.pub_slot.store(0, Ordering::Release);
                d.unlink_unless_held();
            })
        };
        let other = {
            let d = d.clone();
            thread::spawn(move || {
                d.subs[1].store(0, Ordering::Release);
                loom::sync::atomic::fence(Ordering::SeqCst);
                if d.conns[1].conn().release_hold(DEPARTED) {
                    d.unlink_unless_held();
                }
            })
        };
        // Subscriber SUB_ID: drains the departed publisher's entry if it
        // sees the departure now (else it would do so at a later receive).
        let conn = d.conns[0].conn();
        let mut drained = false;
        if d.pub_slot.load(Ordering::Acquire) == 0 {
            if let Ok(Some(hold)) = conn.hold() {
                let (mut head, ()) = conn.take_up_held(SUB_ID, hold, || Some(())).unwrap();
                assert_eq!(conn.pop(&mut head, hold.generation), Pop::Chunk(0, 1));
                assert_eq!(conn.pop(&mut head, hold.generation), Pop::Empty);
                drained = true;
                if conn.release_hold(DEPARTED) {
                    d.unlink_unless_held();
                }
            }
        }
        publisher.join().unwrap();
        other.join().unwrap();
        let holds = d.conns.iter().filter(|c| c.conn().holds(DEPARTED)).count();
        let unlinked = d.unlinked.load(Ordering::Relaxed);
        if holds > 0 {
            assert_eq!(unlinked, 0, "removed while a subscriber still needs it");
            assert!(!drained);
        } else {
            assert!(unlinked >= 1, "nothing holds it and nobody removed it");
        }
    });
}

#[test]
fn loom_last_words_successor_follows_the_held_entries() {
    // Slot reuse: a connection holds one unread entry (chunk 0) of the
    // departed publisher. Its successor continues the connection
    // (`take_over`) and pushes chunk 7, while the subscriber, which never
    // mapped the departed publisher's segment, takes up the hold and reads.
    // It must get chunk 0 from the held generation first, then meet the
    // successor's entry as another generation (`Gone`), and take chunk 7 up
    // under the successor's link: never the successor's chunk under the
    // held generation (it would resolve it in the wrong segment).
    model(|| {
        let shared = Shared::new(2, 8);
        let conn = shared.conn();
        conn.push(0, GENERATION, 0, 1);
        conn.link.pub_id.store(DEPARTED, Ordering::Relaxed);
        conn.link.link.store(SUB_ID, Ordering::Relaxed);
        assert!(conn.keep_for(DEPARTED, SUB_ID));
        let hold = conn.hold().unwrap().unwrap();
        let successor = {
            let shared = shared.clone();
            thread::spawn(move || {
                let conn = shared.conn();
                let mut producer = conn.take_over(SUCCESSOR, SUB_ID, hold, 2);
                assert_eq!(producer.tail, 1, "after the held entry");
                assert_ne!(producer.generation, hold.generation);
                shared.write(7, 77);
                producer.push(conn, 7, 1);
                producer.generation
            })
        };
        // `None` while the successor's link is 0 (mid take-over): a real
        // subscriber tries again at its next receive.
        let mut head = loop {
            if let Some((head, ())) = conn.take_up_held(SUB_ID, hold, || Some(())) {
                break head;
            }
            thread::yield_now();
        };
        assert_eq!(conn.pop(&mut head, hold.generation), Pop::Chunk(0, 1));
        let after = conn.pop(&mut head, hold.generation);
        let generation = successor.join().unwrap();
        match after {
            Pop::Empty => {}
            Pop::Gone => {}
            Pop::Chunk(c, _) => panic!("chunk {c} taken under the held generation"),
        }
        assert!(conn.release_hold(DEPARTED));
        let linked = conn
            .linked(SUB_ID, SUCCESSOR)
            .expect("linked to the successor");
        assert_eq!((linked.generation, linked.head), (generation, 1));
        let mut head = linked.head;
        assert_eq!(conn.pop(&mut head, generation), Pop::Chunk(7, 1));
        assert_eq!(shared.read(7), 77);
    });
}
