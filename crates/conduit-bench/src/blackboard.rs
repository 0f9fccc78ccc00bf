//! Blackboard costs, per operation, with the other process pinned to the
//! other CPU (this one on CPU 0, the peer on CPU 1), against a plain load
//! of a shared-memory word and a `RobustMutex<u64>` in shared memory, all
//! in the same run:
//!
//! * reading one 8-byte entry that does not change (`get()`), against a
//!   plain `Acquire` load of a shared word (issue 14's target: within
//!   1.5x);
//! * reading it while a writer process updates it continuously, against a
//!   plain load of a word another process stores to continuously (a cache
//!   miss per load: "one cache miss");
//! * an update with no reader, and with a reader process reading the entry
//!   continuously (target: readers slow the writer by at most 1.2x);
//! * the same reads and updates of a `RobustMutex<u64>` (lock, copy,
//!   unlock).
//!
//! Each figure is the median over batches of `batch` operations of the
//! batch's mean (one clock read per batch); the peer's loop runs until
//! this side sets a stop word.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use conduit::blackboard::Blackboard;
use conduit::node::Node;
use conduit::shm::Segment;
use conduit::sync::RobustMutex;

use crate::harness::{self, Peer, Plan, Timing};

/// The peer's role.
pub const ROLE: &str = "blackboard_peer";

const BOARD: &str = "bench/blackboard";
const SHARED: &str = "bench-blackboard-words";

/// A word on its own cache line.
#[repr(C, align(64))]
struct Line(AtomicU64);

/// The baselines' shared words (a zeroed segment is a valid value: the
/// mutex unlocked, holding 0).
#[repr(C)]
struct Shared {
    /// Loaded by the plain-load baseline (stored to by the peer in the
    /// "written" case).
    plain: Line,
    /// Set by this side when the peer's loop must end.
    stop: Line,
    /// The mutex-protected value.
    mutex: MutexLine,
}

#[repr(C, align(64))]
struct MutexLine(RobustMutex<u64>);

/// What the peer process does until stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerLoop {
    StorePlain,
    Update,
    Read,
    ReadPaced,
    LockWrite,
    LockRead,
}

impl PeerLoop {
    fn name(self) -> &'static str {
        match self {
            PeerLoop::StorePlain => "store-plain",
            PeerLoop::Update => "update",
            PeerLoop::Read => "read",
            PeerLoop::ReadPaced => "read-paced",
            PeerLoop::LockWrite => "lock-write",
            PeerLoop::LockRead => "lock-read",
        }
    }
}

/// One measured cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    /// What was measured (the table's mechanism).
    pub name: &'static str,
    /// Whether it is a baseline (plain load, mutex).
    pub baseline: bool,
    /// Median nanoseconds per operation.
    pub ns: f64,
}

/// One ratio of two costs of the same run.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    /// What it compares, with its target.
    pub name: &'static str,
    /// The ratio.
    pub value: f64,
    /// Whether it meets its target (`None`: no target).
    pub met: Option<bool>,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// The costs.
    pub costs: Vec<Cost>,
    /// The ratios between them.
    pub ratios: Vec<Ratio>,
}

struct Setup {
    domain: String,
    node: Node,
    board: Blackboard<u32, u64>,
    segment: Segment,
}

impl Setup {
    fn shared(&self) -> &Shared {
        shared(&self.segment)
    }

    /// Runs `measure` while a peer process on CPU 1 runs `peer`.
    fn with_peer<R>(&self, peer: PeerLoop, measure: impl FnOnce() -> R) -> R {
        self.shared().stop.0.store(0, Ordering::Relaxed);
        let mut child = Peer::spawn(ROLE, &[self.domain.clone(), peer.name().to_owned()], &[]);
        child.wait_ready();
        let r = measure();
        self.shared().stop.0.store(1, Ordering::Release);
        child.finish();
        r
    }
}

fn shared(segment: &Segment) -> &Shared {
    let p = segment
        .data()
        .resolve::<Shared>(0)
        .expect("the segment holds the shared words");
    // SAFETY: the segment is at least `size_of::<Shared>()` bytes, aligned
    // (resolve checked both), mapped for as long as `segment` lives, and
    // every field is an atomic or a RobustMutex: shared access from both
    // processes is what they are for; zeroed bytes are a valid value.
    unsafe { p.as_ref() }
}

/// `r`, reached through an address computed from `zero` (0 at run time,
/// but not to the compiler): a load through it waits for `zero`'s value.
#[inline(always)]
fn depending<T>(r: &T, zero: usize) -> &T {
    let p = (r as *const T).cast::<u8>().wrapping_add(zero).cast::<T>();
    // SAFETY: `zero` is 0 at run time (the callers mask with a black-boxed
    // 0), so `p` is `r`: valid, aligned, borrowed for the same lifetime.
    unsafe { &*p }
}

/// The median cost per operation of `op`, over `batches` batches of
/// `batch` operations after `warmup` untimed ones.
fn cost(plan: &Plan, mut op: impl FnMut()) -> f64 {
    let batch = match plan.timing {
        Timing::Batched(b) => b,
        Timing::PerRoundTrip => 1,
    };
    for _ in 0..plan.warmup {
        op();
    }
    let mut samples: Vec<f64> = (0..plan.rounds / batch)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                op();
            }
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    samples.sort_unstable_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Runs every measurement (`plan`: operations per figure, batched).
pub fn run(plan: &Plan) -> Figures {
    let domain = format!("bench-bb-{}", std::process::id());
    let node = Node::builder()
        .name("bench-blackboard")
        .domain(&domain)
        .create()
        .expect("node");
    let board = node
        .service(BOARD)
        .blackboard::<u32, u64>()
        .entry(0, 0)
        .create()
        .expect("blackboard");
    let segment = Segment::builder(SHARED)
        .domain(&domain)
        .size(size_of::<Shared>())
        .create()
        .expect("shared words segment");
    let setup = Setup {
        domain,
        node,
        board,
        segment,
    };
    let figures = measure_all(&setup, plan);
    let Setup {
        domain,
        node,
        board,
        segment,
    } = setup;
    let _ = segment.unlink();
    drop((segment, board, node));
    let _ = Node::cleanup(&domain);
    figures
}

fn measure_all(setup: &Setup, plan: &Plan) -> Figures {
    let s = setup.shared();
    let reader = setup.board.reader().expect("reader");
    let entry = reader.entry(&0).expect("entry");
    // Reads are timed as a dependent chain: which word (entry, mutex) the
    // next read uses depends on the value the previous one returned
    // (through a mask the compiler cannot see is 0), so that reads do not
    // overlap in the CPU and each costs its latency (a plain load from L1,
    // or one cache miss when the other CPU stored to the line), for the
    // baseline and the blackboard alike.
    let mask = black_box(0usize);
    let prev = std::cell::Cell::new(0usize);
    let plain = || {
        let word = depending(&s.plain.0, prev.get() & mask);
        prev.set(word.load(Ordering::Acquire) as usize);
    };
    let get = || {
        let entry = depending(&entry, prev.get() & mask);
        prev.set(entry.get().unwrap_or(0) as usize);
    };
    let lock_read = || {
        let mutex = depending(&s.mutex.0, prev.get() & mask);
        prev.set(*mutex.lock().expect("lock") as usize);
    };
    let mut costs = Vec::new();
    let mut add = |name: &'static str, baseline: bool, ns: f64| {
        costs.push(Cost { name, baseline, ns });
        ns
    };
    // Reads of unchanged state.
    let load_idle = add("plain shm load, word unchanged", true, cost(plan, plain));
    let get_idle = add("blackboard get, entry unchanged", false, cost(plan, get));
    let lock_idle = add(
        "RobustMutex read, value unchanged",
        true,
        cost(plan, lock_read),
    );
    // Reads while the other CPU writes continuously.
    let load_busy = add(
        "plain shm load, word stored to by CPU 1",
        true,
        setup.with_peer(PeerLoop::StorePlain, || cost(plan, plain)),
    );
    let get_busy = add(
        "blackboard get, writer updating on CPU 1",
        false,
        setup.with_peer(PeerLoop::Update, || cost(plan, get)),
    );
    let lock_busy = add(
        "RobustMutex read, writer locking on CPU 1",
        true,
        setup.with_peer(PeerLoop::LockWrite, || cost(plan, lock_read)),
    );
    // Updates, alone and with a reader reading continuously.
    drop(reader);
    let writer = setup.board.writer().expect("writer");
    let we = writer.entry(&0).expect("entry");
    let mut n = 0u64;
    let mut update = || {
        n += 1;
        black_box(we.update(n));
    };
    let update_alone = add(
        "blackboard update, no reader",
        false,
        cost(plan, &mut update),
    );
    let update_read = add(
        "blackboard update, reader reading on CPU 1",
        false,
        setup.with_peer(PeerLoop::Read, || cost(plan, &mut update)),
    );
    let update_paced = add(
        "blackboard update, reader reading every 1 µs on CPU 1",
        false,
        setup.with_peer(PeerLoop::ReadPaced, || cost(plan, &mut update)),
    );
    let mut m = 0u64;
    let mut lock_write = || {
        m += 1;
        *s.mutex.0.lock().expect("lock") = m;
    };
    let lock_alone = add(
        "RobustMutex update, no reader",
        true,
        cost(plan, &mut lock_write),
    );
    let lock_read_busy = add(
        "RobustMutex update, reader locking on CPU 1",
        true,
        setup.with_peer(PeerLoop::LockRead, || cost(plan, &mut lock_write)),
    );
    let ratio = |name, a: f64, b: f64, target: Option<f64>| {
        let value = if b > 0.0 { a / b } else { f64::NAN };
        Ratio {
            name,
            value,
            met: target.map(|t| value <= t),
        }
    };
    let ratios = vec![
        ratio(
            "unchanged read: blackboard get / plain load (target ≤ 1.5)",
            get_idle,
            load_idle,
            Some(1.5),
        ),
        ratio(
            "read during updates: blackboard get / plain load of a stored word",
            get_busy,
            load_busy,
            None,
        ),
        ratio(
            "writer slowdown by a reader: update with / without (target ≤ 1.2)",
            update_read,
            update_alone,
            Some(1.2),
        ),
        ratio(
            "writer slowdown by a reader every 1 µs: with / without (target ≤ 1.2)",
            update_paced,
            update_alone,
            Some(1.2),
        ),
        ratio(
            "unchanged read: RobustMutex / blackboard",
            lock_idle,
            get_idle,
            None,
        ),
        ratio(
            "read during updates: RobustMutex / blackboard",
            lock_busy,
            get_busy,
            None,
        ),
        ratio(
            "mutex writer slowdown by a reader: with / without",
            lock_read_busy,
            lock_alone,
            None,
        ),
    ];
    drop(writer);
    Figures { costs, ratios }
}

/// The peer process: runs its loop until the stop word is set.
pub fn peer_child(args: &[String]) {
    let domain = &args[0];
    let node = Node::builder()
        .name("bench-blackboard-peer")
        .domain(domain)
        .create()
        .expect("node");
    let board = node
        .service(BOARD)
        .blackboard::<u32, u64>()
        .open()
        .expect("blackboard");
    let segment = Segment::builder(SHARED)
        .domain(domain)
        .open()
        .expect("shared words segment");
    let s = shared(&segment);
    let stopped = || s.stop.0.load(Ordering::Relaxed) != 0;
    let what = args[1].as_str();
    harness::ready();
    match what {
        "store-plain" => {
            let mut i = 0;
            while !stopped() {
                i += 1;
                s.plain.0.store(i, Ordering::Release);
            }
        }
        "update" => {
            let writer = board.writer().expect("writer");
            let e = writer.entry(&0).expect("entry");
            let mut i = 0;
            while !stopped() {
                i += 1;
                e.update(i);
            }
        }
        "read" => {
            let reader = board.reader().expect("reader");
            let e = reader.entry(&0).expect("entry");
            while !stopped() {
                black_box(e.get().ok());
            }
        }
        "read-paced" => {
            let reader = board.reader().expect("reader");
            let e = reader.entry(&0).expect("entry");
            while !stopped() {
                black_box(e.get().ok());
                let t = Instant::now();
                while t.elapsed().as_nanos() < 1000 {
                    std::hint::spin_loop();
                }
            }
        }
        "lock-write" => {
            let mut i = 0;
            while !stopped() {
                i += 1;
                *s.mutex.0.lock().expect("lock") = i;
            }
        }
        "lock-read" => {
            while !stopped() {
                black_box(*s.mutex.0.lock().expect("lock"));
            }
        }
        other => panic!("unknown blackboard peer loop {other:?}"),
    }
    // The report `Peer::finish` waits for (no timed round trips here).
    harness::echo_loop(
        &Plan {
            warmup: 0,
            rounds: 0,
            timing: Timing::PerRoundTrip,
        },
        |_| {},
    );
}
