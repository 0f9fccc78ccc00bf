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

use std::cell::OnceCell;

use conduit::blackboard::{Blackboard, Reader, ReaderEntry, Writer, WriterEntry};
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
    pub name: String,
    /// Whether it is a baseline (plain load, mutex).
    pub baseline: bool,
    /// Median nanoseconds per operation.
    pub ns: f64,
}

/// One ratio of two costs of the same run.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    /// What it compares, with its target.
    pub name: String,
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

impl Figures {
    /// The figures as JSON lines in the format of `conduit bench --json`
    /// rows (`"kind": "cost"` with `p50_ns`, `"kind": "ratio"` with
    /// `ratio` and `target_met`), which `conduit bench --peers FILE`
    /// ingests: how bench-peers' iceoryx2 blackboard rows reach the table.
    pub fn json_lines(&self) -> String {
        let mut out = String::new();
        for c in &self.costs {
            let row = serde_json::json!({
                "kind": "cost", "mechanism": c.name, "baseline": c.baseline, "payload": 8,
                "p50_ns": c.ns, "p99_ns": null,
                "msgs_per_s": if c.ns > 0.0 { Some(1e9 / c.ns) } else { None },
                "bytes_per_s": null, "cpu_ns_per_msg": null, "ratio": null, "target_met": null,
            });
            out.push_str(&row.to_string());
            out.push('\n');
        }
        for r in &self.ratios {
            let row = serde_json::json!({
                "kind": "ratio", "mechanism": r.name, "baseline": false, "payload": 8,
                "p50_ns": null, "p99_ns": null, "msgs_per_s": null, "bytes_per_s": null,
                "cpu_ns_per_msg": null, "ratio": r.value, "target_met": r.met,
            });
            out.push_str(&row.to_string());
            out.push('\n');
        }
        out
    }
}

/// A blackboard implementation under measurement: conduit's
/// ([`Conduit`]) or a peer's (bench-peers implements it for iceoryx2
/// 0.10's blackboard), so that every implementation runs the same
/// operations under the same clock and statistic, next to the same
/// baselines. The entry is key 0 of a `u32 → u64` blackboard.
///
/// [`Bench`] asks for the writer handle only after every peer that writes
/// has finished (a blackboard has one writer at a time), and keeps reader
/// and writer ports for as long as the subject lives.
pub trait Subject {
    /// Names the rows ("blackboard", "iceoryx2 blackboard").
    const NAME: &'static str;
    /// A reader's handle to entry 0.
    type Read<'a>
    where
        Self: 'a;
    /// The writer's handle to entry 0.
    type Write<'a>
    where
        Self: 'a;
    /// A reader handle (in this process).
    fn read(&self) -> Self::Read<'_>;
    /// The latest value of the entry.
    fn get(read: &Self::Read<'_>) -> u64;
    /// The writer handle.
    fn write(&self) -> Self::Write<'_>;
    /// Publishes `value`.
    fn update(write: &Self::Write<'_>, value: u64);
    /// What a peer process needs to open the same blackboard (passed to
    /// the peer's role function after [`Bench`]'s own arguments).
    fn peer_args(&self) -> Vec<String>;
}

/// conduit's blackboard.
pub struct Conduit {
    domain: String,
    reader: OnceCell<Reader<u32, u64>>,
    writer: OnceCell<Writer<u32, u64>>,
    board: Blackboard<u32, u64>,
    /// Keeps the blackboard's node alive.
    _node: Node,
}

impl Conduit {
    /// Creates the blackboard (`create`) or opens it (a peer).
    fn new(domain: &str, create: bool) -> Conduit {
        let node = Node::builder()
            .name("bench-blackboard")
            .domain(domain)
            .create()
            .expect("node");
        let builder = node.service(BOARD).blackboard::<u32, u64>();
        let board = if create {
            builder.entry(0, 0).create()
        } else {
            builder.open()
        }
        .expect("blackboard");
        Conduit {
            domain: domain.to_owned(),
            reader: OnceCell::new(),
            writer: OnceCell::new(),
            board,
            _node: node,
        }
    }
}

impl Subject for Conduit {
    const NAME: &'static str = "blackboard";
    type Read<'a> = ReaderEntry<'a, u32, u64>;
    type Write<'a> = WriterEntry<'a, u32, u64>;
    fn read(&self) -> Self::Read<'_> {
        self.reader
            .get_or_init(|| self.board.reader().expect("reader"))
            .entry(&0)
            .expect("entry")
    }
    fn get(read: &Self::Read<'_>) -> u64 {
        read.get().unwrap_or(0)
    }
    fn write(&self) -> Self::Write<'_> {
        self.writer
            .get_or_init(|| self.board.writer().expect("writer"))
            .entry(&0)
            .expect("entry")
    }
    fn update(write: &Self::Write<'_>, value: u64) {
        black_box(write.update(value));
    }
    fn peer_args(&self) -> Vec<String> {
        vec![self.domain.clone()]
    }
}

/// The shared words of the baselines and the peer's stop word, in a
/// conduit segment of their own (the same for every [`Subject`]).
pub struct Bench<S> {
    domain: String,
    segment: Segment,
    subject: S,
    role: &'static str,
}

impl<S: Subject> Bench<S> {
    /// A bench of `subject`, whose peer process runs `role` (a role of
    /// this executable that calls [`peer_loop`]).
    pub fn new(subject: S, role: &'static str) -> Bench<S> {
        let domain = format!("bench-bbw-{}", std::process::id());
        let segment = Segment::builder(SHARED)
            .domain(&domain)
            .size(size_of::<Shared>())
            .create()
            .expect("shared words segment");
        Bench {
            domain,
            segment,
            subject,
            role,
        }
    }

    fn shared(&self) -> &Shared {
        shared(&self.segment)
    }

    /// Runs `measure` while a peer process on CPU 1 runs `peer`.
    fn with_peer<R>(&self, peer: PeerLoop, measure: impl FnOnce() -> R) -> R {
        self.shared().stop.0.store(0, Ordering::Relaxed);
        let mut args = vec![self.domain.clone(), peer.name().to_owned()];
        args.extend(self.subject.peer_args());
        let mut child = Peer::spawn(self.role, &args, &[]);
        child.wait_ready();
        let r = measure();
        self.shared().stop.0.store(1, Ordering::Release);
        child.finish();
        r
    }

    /// Measures the subject's reads and updates next to the plain-load
    /// baselines, and (`mutex`) the `RobustMutex<u64>` rows.
    pub fn measure(&self, plan: &Plan, mutex: bool) -> Figures {
        measure_all(self, plan, mutex)
    }

    /// Gives back the subject (the words segment is removed).
    pub fn into_subject(self) -> S {
        let Bench {
            domain,
            segment,
            subject,
            ..
        } = self;
        let _ = segment.unlink();
        drop(segment);
        let _ = Node::cleanup(&domain);
        subject
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

/// Runs every measurement of conduit's blackboard (`plan`: operations per
/// figure, batched), with the `RobustMutex` rows.
pub fn run(plan: &Plan) -> Figures {
    let domain = format!("bench-bb-{}", std::process::id());
    let bench = Bench::new(Conduit::new(&domain, true), ROLE);
    let figures = bench.measure(plan, true);
    drop(bench.into_subject());
    let _ = Node::cleanup(&domain);
    figures
}

fn measure_all<S: Subject>(bench: &Bench<S>, plan: &Plan, mutex: bool) -> Figures {
    let s = bench.shared();
    let name = S::NAME;
    let entry = bench.subject.read();
    // Reads are timed as a dependent chain: which word (entry, mutex) the
    // next read uses depends on the value the previous one returned
    // (through a mask the compiler cannot see is 0), so that reads do not
    // overlap in the CPU and each costs its latency (a plain load from L1,
    // or one cache miss when the other CPU stored to the line), for the
    // baseline and every blackboard alike.
    let mask = black_box(0usize);
    let prev = std::cell::Cell::new(0usize);
    let plain = || {
        let word = depending(&s.plain.0, prev.get() & mask);
        prev.set(word.load(Ordering::Acquire) as usize);
    };
    let get = || {
        let entry = depending(&entry, prev.get() & mask);
        prev.set(S::get(entry) as usize);
    };
    let lock_read = || {
        let mutex = depending(&s.mutex.0, prev.get() & mask);
        prev.set(*mutex.lock().expect("lock") as usize);
    };
    let mut costs = Vec::new();
    let mut add = |row: String, baseline: bool, ns: f64| {
        costs.push(Cost {
            name: row,
            baseline,
            ns,
        });
        ns
    };
    // Reads of unchanged state.
    let load_idle = add(
        "plain shm load, word unchanged".into(),
        true,
        cost(plan, plain),
    );
    let get_idle = add(
        format!("{name} get, entry unchanged"),
        false,
        cost(plan, get),
    );
    let lock_idle = mutex.then(|| {
        add(
            "RobustMutex read, value unchanged".into(),
            true,
            cost(plan, lock_read),
        )
    });
    // Reads while the other CPU writes continuously.
    let load_busy = add(
        "plain shm load, word stored to by CPU 1".into(),
        true,
        bench.with_peer(PeerLoop::StorePlain, || cost(plan, plain)),
    );
    let get_busy = add(
        format!("{name} get, writer updating on CPU 1"),
        false,
        bench.with_peer(PeerLoop::Update, || cost(plan, get)),
    );
    let lock_busy = mutex.then(|| {
        add(
            "RobustMutex read, writer locking on CPU 1".into(),
            true,
            bench.with_peer(PeerLoop::LockWrite, || cost(plan, lock_read)),
        )
    });
    // Updates, alone and with a reader reading continuously.
    drop(entry);
    let we = bench.subject.write();
    let mut n = 0u64;
    let mut update = || {
        n += 1;
        S::update(&we, n);
    };
    let update_alone = add(
        format!("{name} update, no reader"),
        false,
        cost(plan, &mut update),
    );
    let update_read = add(
        format!("{name} update, reader reading on CPU 1"),
        false,
        bench.with_peer(PeerLoop::Read, || cost(plan, &mut update)),
    );
    let update_paced = add(
        format!("{name} update, reader reading every 1 µs on CPU 1"),
        false,
        bench.with_peer(PeerLoop::ReadPaced, || cost(plan, &mut update)),
    );
    let mut m = 0u64;
    let mut lock_write = || {
        m += 1;
        *s.mutex.0.lock().expect("lock") = m;
    };
    let lock_alone = mutex.then(|| {
        add(
            "RobustMutex update, no reader".into(),
            true,
            cost(plan, &mut lock_write),
        )
    });
    let lock_read_busy = mutex.then(|| {
        add(
            "RobustMutex update, reader locking on CPU 1".into(),
            true,
            bench.with_peer(PeerLoop::LockRead, || cost(plan, &mut lock_write)),
        )
    });
    let ratio = |row: String, a: f64, b: f64, target: Option<f64>| {
        let value = if b > 0.0 { a / b } else { f64::NAN };
        Ratio {
            name: row,
            value,
            met: target.map(|t| value <= t),
        }
    };
    let mut ratios = vec![
        ratio(
            format!("unchanged read: {name} get / plain load (target ≤ 1.5)"),
            get_idle,
            load_idle,
            Some(1.5),
        ),
        ratio(
            format!("read during updates: {name} get / plain load of a stored word"),
            get_busy,
            load_busy,
            None,
        ),
        ratio(
            format!("writer slowdown by a reader ({name}): update with / without (target ≤ 1.2)"),
            update_read,
            update_alone,
            Some(1.2),
        ),
        ratio(
            format!(
                "writer slowdown by a reader every 1 µs ({name}): with / without (target ≤ 1.2)"
            ),
            update_paced,
            update_alone,
            Some(1.2),
        ),
    ];
    if let (Some(lock_idle), Some(lock_busy), Some(lock_alone), Some(lock_read_busy)) =
        (lock_idle, lock_busy, lock_alone, lock_read_busy)
    {
        ratios.extend([
            ratio(
                format!("unchanged read: RobustMutex / {name}"),
                lock_idle,
                get_idle,
                None,
            ),
            ratio(
                format!("read during updates: RobustMutex / {name}"),
                lock_busy,
                get_busy,
                None,
            ),
            ratio(
                "mutex writer slowdown by a reader: with / without".into(),
                lock_read_busy,
                lock_alone,
                None,
            ),
        ]);
    }
    drop(we);
    Figures { costs, ratios }
}

/// The peer process of conduit's blackboard (role [`ROLE`]).
pub fn peer_child(args: &[String]) {
    let subject = Conduit::new(&args[2], false);
    peer_loop(&subject, args);
}

/// A peer process's work (`args` as [`Bench`] passed them: the words'
/// domain, the loop, then the subject's [`Subject::peer_args`]): runs its
/// loop on `subject` until the stop word is set.
pub fn peer_loop<S: Subject>(subject: &S, args: &[String]) {
    let segment = Segment::builder(SHARED)
        .domain(&args[0])
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
            let e = subject.write();
            let mut i = 0;
            while !stopped() {
                i += 1;
                S::update(&e, i);
            }
        }
        "read" => {
            let e = subject.read();
            while !stopped() {
                black_box(S::get(&e));
            }
        }
        "read-paced" => {
            let e = subject.read();
            while !stopped() {
                black_box(S::get(&e));
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
