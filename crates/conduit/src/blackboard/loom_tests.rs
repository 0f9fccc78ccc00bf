//! loom models of the blackboard's entry protocol: the very `update` and
//! `try_read` of `layout.rs`, on loom atomics.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p conduit --release --lib loom_blackboard`.
//! Properties: a read that succeeds returns a complete value (every word
//! of one update) together with that update's version; versions a reader
//! sees never go back; a writer that takes over the half-written copy a
//! dead writer left never lets a reader see that garbage.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;

use super::layout::{EntryWords, try_read, update};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

const WORDS: usize = 2;

/// One entry: current, seq[0], seq[1], copy 0, copy 1.
struct Entry(Vec<AtomicU64>);

impl Entry {
    /// Version 0 with the value `initial` in copy 0.
    fn new(initial: u64) -> Entry {
        let words = (0..3 + 2 * WORDS)
            .map(|i| {
                AtomicU64::new(if (3..3 + WORDS).contains(&i) {
                    initial
                } else {
                    0
                })
            })
            .collect();
        Entry(words)
    }

    fn words(&self) -> EntryWords<'_> {
        EntryWords {
            current: &self.0[0],
            seq: [&self.0[1], &self.0[2]],
            copies: [&self.0[3..3 + WORDS], &self.0[3 + WORDS..3 + 2 * WORDS]],
        }
    }
}

/// Reads once; if it succeeds, checks the value is complete and belongs
/// to its version (`value(version)`), and returns the version.
fn read_checked(entry: &Entry, value: impl Fn(u64) -> u64) -> Option<u64> {
    let mut out = [u64::MAX; WORDS];
    let version = try_read(entry.words(), |i, w| out[i] = w)?;
    assert!(out.iter().all(|w| *w == out[0]), "torn: {out:?}");
    assert_eq!(out[0], value(version), "value of another version");
    Some(version)
}

#[test]
fn loom_blackboard_reads_are_never_torn() {
    model(|| {
        let entry = Arc::new(Entry::new(100));
        let writer = {
            let entry = entry.clone();
            thread::spawn(move || {
                // Two updates: the second rewrites the copy a slow reader
                // of version 0 was sent to.
                assert_eq!(update(entry.words(), |_| 101), 1);
                assert_eq!(update(entry.words(), |_| 102), 2);
            })
        };
        let first = read_checked(&entry, |v| 100 + v);
        let second = read_checked(&entry, |v| 100 + v);
        if let (Some(a), Some(b)) = (first, second) {
            assert!(b >= a, "version went back: {a} then {b}");
        }
        writer.join().unwrap();
        assert_eq!(read_checked(&entry, |v| 100 + v), Some(2));
    });
}

#[test]
fn loom_blackboard_takeover_never_shows_the_dead_writers_copy() {
    model(|| {
        let entry = Arc::new(Entry::new(100));
        assert_eq!(update(entry.words(), |_| 101), 1);
        // A writer died in the middle of the next update: copy 0 odd
        // (version 2 being written), one word of garbage stored.
        let w = entry.words();
        w.seq[0].store(2 * 2 + 1, Ordering::Relaxed);
        w.copies[0][0].store(0xdead, Ordering::Relaxed);
        let writer = {
            let entry = entry.clone();
            thread::spawn(move || {
                // The new writer: versions above the dead one's.
                assert_eq!(update(entry.words(), |_| 100 + 3), 3);
            })
        };
        let seen = read_checked(&entry, |v| 100 + v);
        assert!(matches!(seen, None | Some(1) | Some(3)), "{seen:?}");
        writer.join().unwrap();
        assert_eq!(read_checked(&entry, |v| 100 + v), Some(3));
    });
}

/// `notify_changes`: a reader that joins (stores its slot id, SeqCst
/// fence) and then waits for a change on its event word, against a writer
/// that updates, fences (SeqCst) and wakes the readers it finds. A lost
/// wake-up leaves the reader asleep: a loom deadlock.
#[test]
fn loom_blackboard_waiting_reader_is_woken() {
    use crate::sync::atomic::fence;
    use crate::sync::{EventWord, Spin};
    model(|| {
        let entry = Arc::new(Entry::new(100));
        let slot_id = Arc::new(AtomicU64::new(0));
        let event = Arc::new(EventWord::new());
        let writer = {
            let (entry, slot_id, event) = (entry.clone(), slot_id.clone(), event.clone());
            thread::spawn(move || {
                update(entry.words(), |_| 101);
                // `Writer::wake_readers`.
                fence(Ordering::SeqCst);
                if slot_id.load(Ordering::Acquire) != 0 {
                    event.wake_all();
                }
            })
        };
        // `Reader::create`, then `ReaderEntry::wait_changed_since(0, None)`.
        slot_id.store(7, Ordering::Release);
        fence(Ordering::SeqCst);
        let version = event.wait_until(Spin::NONE, None, || {
            let (version, _) =
                super::layout::published(entry.words().current.load(Ordering::Acquire));
            (version != 0).then_some(version)
        });
        assert_eq!(version, Some(1));
        writer.join().unwrap();
    });
}
