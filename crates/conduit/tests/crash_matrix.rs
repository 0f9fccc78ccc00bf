//! The crash matrix: for every pattern (publish/subscribe, request/response,
//! events, the blackboard, the
//! managed segment and its allocator, the robust mutex, the node cleanup
//! itself) and every role, a real child process is killed with SIGKILL at
//! a chosen point, many times, with seeded randomness; after each kill the
//! survivors must keep working, a new participant must be able to join,
//! and at the end nothing of the test's domain may be left in /dev/shm.
//!
//! Two kinds of kill points:
//! * **named points**: the child runs up to an exact state (a loan taken
//!   but not written, written but not sent, samples held, the service
//!   segment half initialised, the managed lock held in the middle of a
//!   two-container update, ...), prints `at <point>` and stays there; the
//!   parent kills it after reading that line;
//! * **random time**: the child loops over operations (chosen by a PRNG
//!   seeded from the parent) and is killed after a random delay, so kills
//!   land inside creation, allocation, cleanup, ... wherever the time
//!   goes. The delay only spreads the kills; no check depends on it.
//!
//! Every test prints its seed (`crash-matrix seed=<n>`); replay a failure
//! with `CONDUIT_CRASH_SEED=<n> cargo test -p conduit --test crash_matrix
//! <test>`. Iterations per test: `CONDUIT_CRASH_ITERS` (default 6; a long
//! run is e.g. `CONDUIT_CRASH_ITERS=500`). The promise each test checks:
//! `tests/README.md` ("Crash matrix").

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::{child_command, read_line, shm_objects_containing, unique, watchdog};
use conduit::event::EventService;
use conduit::node::Node;
use conduit::prelude::*;
use conduit::pubsub::PubSubService;
use conduit::shm::{ManagedSegment, Segment, ShmHashMap, ShmString, ShmVec};
use conduit::sync::{LockError, RobustMutex};

// ---------------------------------------------------------------------------
// Seeds, iterations, small helpers
// ---------------------------------------------------------------------------

use common::Rng;

/// The test's seed: `CONDUIT_CRASH_SEED`, or time and pid mixed. Printed
/// with the replay command (stderr, so it shows when the test fails).
fn seeded(test: &str) -> Rng {
    let seed = std::env::var("CONDUIT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            let mut r = Rng(t ^ (u64::from(std::process::id()) << 32));
            r.next() % 1_000_000_000_000
        });
    eprintln!(
        "crash-matrix seed={seed} (replay: CONDUIT_CRASH_SEED={seed} cargo test -p conduit --test crash_matrix {test})"
    );
    Rng(seed)
}

/// Iterations per test: `CONDUIT_CRASH_ITERS`, default `default`.
fn iterations(default: usize) -> usize {
    std::env::var("CONDUIT_CRASH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Spawns a child with stdin and stdout piped.
fn spawn(role: &str, args: &[&str]) -> Child {
    child_command(role, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child test process")
}

fn expect_line(child: &mut Child, expected: &str, context: &str) {
    let line = read_line(child);
    assert_eq!(line, expected, "{context}");
}

/// SIGKILL and reap.
fn kill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Tells a well-behaved child to finish and checks that it succeeded.
fn finish(mut child: Child) {
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "child failed: {status}");
}

fn node(domain: &str, name: &str) -> Node {
    Node::builder().name(name).domain(domain).create().unwrap()
}

/// Cleans up dead nodes and checks that nothing of `domain` is left.
fn assert_clean(domain: &str) {
    let _ = Node::cleanup(domain);
    let left = shm_objects_containing(&format!("conduit.{domain}."));
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

/// Blocks the child at a kill point until the parent kills it.
fn stay() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn at(point: &str) {
    println!("at {point}");
}

fn wait_stdin() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

// ---------------------------------------------------------------------------
// Payload and service shapes
// ---------------------------------------------------------------------------

/// A sample that can tell a torn or foreign write from a good one.
#[derive(ShmSafe, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct Msg {
    origin: u64,
    seq: u64,
    check: u64,
}

impl Msg {
    fn new(origin: u64, seq: u64) -> Msg {
        Msg {
            origin,
            seq,
            check: origin.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seq,
        }
    }

    fn verify(&self) {
        assert_eq!(*self, Msg::new(self.origin, self.seq), "torn sample");
    }
}

/// Origins: who published a sample.
const PARENT: u64 = 1;
const VICTIM: u64 = 2;
const JOINER: u64 = 3;

const TOPIC: &str = "matrix/topic";
const EVENTS: &str = "matrix/events";
/// The event id a dead notifier is announced with.
const DEAD_EVENT: usize = 63;

/// The QoS every creator of the topic uses (openers accept it).
fn topic(node: &Node, overflow: Overflow) -> PubSubService<Msg> {
    node.service(TOPIC)
        .publish_subscribe::<Msg>()
        .max_publishers(2)
        .max_subscribers(2)
        .subscriber_buffer(4)
        .max_loans(2)
        .max_borrowed(2)
        .overflow(overflow)
        .open_or_create()
        .unwrap()
}

fn open_topic(node: &Node) -> PubSubService<Msg> {
    node.service(TOPIC)
        .publish_subscribe::<Msg>()
        .open()
        .unwrap()
}

fn events(node: &Node) -> EventService {
    node.service(EVENTS)
        .event()
        .max_event_id(DEAD_EVENT)
        .max_notifiers(2)
        .max_listeners(2)
        .notifier_dead_event(DEAD_EVENT)
        .open_or_create()
        .unwrap()
}

const BOARD: &str = "matrix/board";
const BOARD_KEYS: u32 = 3;
/// A blackboard value whose 64 words must agree: `key << 40 | counter`.
type BoardValue = [u64; 64];

fn board_value(key: u32, counter: u64) -> BoardValue {
    [u64::from(key) << 40 | counter; 64]
}

fn board(node: &Node) -> conduit::blackboard::Blackboard<u32, BoardValue> {
    node.service(BOARD)
        .blackboard::<u32, BoardValue>()
        .entries((0..BOARD_KEYS).map(|k| (k, board_value(k, 0))))
        .open_or_create()
        .unwrap()
}

/// Reads every entry of the blackboard (no writer runs): each must be a
/// complete value of its own entry, no older than `last`; returns the
/// versions.
fn check_board(
    reader: &conduit::blackboard::Reader<u32, BoardValue>,
    last: &[u64],
    ctx: &str,
) -> Vec<u64> {
    (0..BOARD_KEYS)
        .map(|k| {
            let (v, version) = reader
                .entry(&k)
                .unwrap()
                .get_with_version()
                .unwrap_or_else(|e| panic!("{ctx}: entry {k} unreadable: {e}"));
            assert!(v.iter().all(|w| *w == v[0]), "{ctx}: torn entry {k}");
            assert_eq!(v[0] >> 40, u64::from(k), "{ctx}: entry {k}");
            assert!(v[0] & ((1 << 40) - 1) <= version, "{ctx}: entry {k}");
            if let Some(before) = last.get(k as usize) {
                assert!(version >= *before, "{ctx}: entry {k} went back");
            }
            version
        })
        .collect()
}

/// Receives from `subscriber` until a sample from `origin` with `seq`
/// arrives, checking every sample on the way.
fn receive_until(subscriber: &Subscriber<Msg>, origin: u64, seq: u64) {
    loop {
        let s = subscriber
            .receive_timeout(Duration::from_secs(10))
            .expect("a sample within 10 s");
        s.verify();
        if s.origin == origin && s.seq == seq {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------

fn dispatch(role: &str, args: &[String]) {
    // SAFETY: prctl(PR_SET_PDEATHSIG, SIGKILL) only sets a process
    // attribute: a child left over by a failed test dies with it.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let domain = &args[0];
    match role {
        "pub_point" => pub_point(domain, &args[1], args[2].parse().unwrap()),
        "sub_point" => sub_point(domain, &args[1], args[2].parse().unwrap()),
        "pubsub_join" => pubsub_join(domain),
        "last_words" => last_words(domain, args[1].parse().unwrap(), &args[2]),
        "create_loop" => create_loop(domain, args[1].parse().unwrap()),
        "create_point" => create_point(domain, &args[1]),
        "notifier_point" => notifier_point(domain, &args[1]),
        "listener_point" => listener_point(domain, &args[1]),
        "event_join" => event_join(domain),
        "managed_random" => managed_random(domain, args[1].parse().unwrap()),
        "managed_point" => managed_point(domain, &args[1]),
        "managed_join" => managed_join(domain),
        "mutex_random" => mutex_random(domain),
        "mutex_point" => mutex_point(domain),
        "mutex_contender" => mutex_contender(domain, args[1].parse().unwrap()),
        "leave_dead" => leave_dead(domain),
        "board_writer" => board_writer(domain),
        "server_point" => server_point(domain, &args[1]),
        "client_point" => client_point(domain, &args[1]),
        "rr_server_join" => rr_server_join(domain),
        "rr_client_join" => rr_client_join(domain),
        "cleaner" => {
            println!("cleaning");
            let _ = Node::cleanup(domain);
            println!("cleaned");
            wait_stdin();
        }
        other => panic!("unknown role {other}"),
    }
}

child_entry!(dispatch);

/// A publisher that sends `pre` samples and stops at `point`.
fn pub_point(domain: &str, point: &str, pre: u64) {
    let node = node(domain, "victim-pub");
    let topic = open_topic(&node);
    let publisher = topic.publisher().create().unwrap();
    publisher.update_connections();
    for seq in 1..=pre {
        publisher.send_copy(Msg::new(VICTIM, seq)).unwrap();
    }
    match point {
        "idle" => {
            at(point);
            stay()
        }
        "loaned" => {
            let _loan = publisher.loan_uninit().unwrap();
            at(point);
            stay()
        }
        "written" => {
            let _written = publisher.loan_uninit().unwrap().write(Msg::new(VICTIM, 99));
            at(point);
            stay()
        }
        "all-loans" => {
            let _a = publisher.loan_uninit().unwrap().write(Msg::new(VICTIM, 98));
            let _b = publisher.loan_uninit().unwrap();
            at(point);
            stay()
        }
        other => panic!("unknown point {other}"),
    }
}

/// A publisher that sends `n` samples, says "sent", then exits normally
/// (`fate` "exit": every port and the node dropped) or waits to be killed.
fn last_words(domain: &str, n: u64, fate: &str) {
    let node = node(domain, "victim-pub");
    let topic = open_topic(&node);
    let publisher = topic.publisher().create().unwrap();
    publisher.update_connections();
    for seq in 1..=n {
        publisher.send_copy(Msg::new(VICTIM, seq)).unwrap();
    }
    println!("sent");
    if fate != "exit" {
        stay()
    }
}

/// A subscriber that takes `hold` samples (each announced) and stops at
/// `point`.
fn sub_point(domain: &str, point: &str, hold: usize) {
    let node = node(domain, "victim-sub");
    let topic = open_topic(&node);
    let subscriber = topic.subscriber().create().unwrap();
    println!("subscribed");
    let mut held = Vec::new();
    for _ in 0..hold {
        let s = subscriber.receive_timeout(Duration::from_secs(10)).unwrap();
        s.verify();
        held.push(s);
    }
    match point {
        // Holds `hold` samples; the parent then fills the queue.
        "holding" => {
            at(point);
            stay()
        }
        // Sleeps inside a blocking receive.
        "receiving" => {
            at(point);
            let _ = subscriber.receive_timeout(Duration::from_secs(3600));
            stay()
        }
        other => panic!("unknown point {other}"),
    }
}

/// A new participant: publishes 1..=3 as JOINER, and receives the
/// parent's sample `PARENT/1000` on its own subscriber.
fn pubsub_join(domain: &str) {
    let node = node(domain, "joiner");
    let topic = open_topic(&node);
    let subscriber = topic.subscriber().create().unwrap();
    let publisher = topic.publisher().create().unwrap();
    publisher.update_connections();
    for seq in 1..=3 {
        publisher.send_copy(Msg::new(JOINER, seq)).unwrap();
    }
    println!("joined");
    receive_until(&subscriber, PARENT, 1000);
    println!("received");
    wait_stdin();
}

/// Creates and drops nodes, services and ports in a loop until killed.
fn create_loop(domain: &str, seed: u64) {
    let mut rng = Rng(seed);
    println!("looping");
    loop {
        let node = node(domain, "creator");
        let pattern = rng.next() % 3;
        if pattern == 2 {
            let board = board(&node);
            let writer = board.writer().unwrap();
            let reader = board.reader().unwrap();
            writer.entry(&1).unwrap().update(board_value(1, 1));
            drop(reader.entry(&1).unwrap().get());
        } else if pattern == 0 {
            let topic = topic(&node, Overflow::DropOldest);
            let publisher = topic.publisher().create().unwrap();
            let subscriber = topic.subscriber().create().unwrap();
            publisher.send_copy(Msg::new(VICTIM, 1)).unwrap();
            drop(subscriber.try_receive());
        } else {
            let events = events(&node);
            let listener = events.listener().create().unwrap();
            let notifier = events.notifier().create().unwrap();
            notifier.notify(1).unwrap();
            drop(listener.try_wait());
        }
    }
}

/// Takes the blackboard's writer over (the previous one is dead) and
/// updates every entry until killed.
fn board_writer(domain: &str) {
    let node = node(domain, "victim-writer");
    let board = board(&node);
    let writer = board.writer().unwrap();
    let entries: Vec<_> = (0..BOARD_KEYS).map(|k| writer.entry(&k).unwrap()).collect();
    println!("writing");
    loop {
        for (k, e) in (0..BOARD_KEYS).zip(&entries) {
            e.update(board_value(k, e.version() + 1));
        }
    }
}

/// Stops inside the initialiser of the service segment (the real one,
/// made by the service builder of `kind`).
fn create_point(domain: &str, kind: &str) {
    let name = match kind {
        "pubsub" => conduit::ServiceKind::PublishSubscribe.segment_name(TOPIC),
        "event" => conduit::ServiceKind::Event.segment_name(EVENTS),
        "blackboard" => conduit::ServiceKind::Blackboard.segment_name(BOARD),
        other => panic!("unknown kind {other}"),
    };
    let _ = Segment::builder(&name)
        .domain(domain)
        .size(4096)
        .init(|_| {
            at("initializing");
            stay()
        })
        .create();
}

fn notifier_point(domain: &str, point: &str) {
    let node = node(domain, "victim-notifier");
    let events = events(&node);
    let notifier = events.notifier().create().unwrap();
    match point {
        "idle" => {
            notifier.notify(1).unwrap();
            at(point);
            stay()
        }
        // Killed somewhere inside notify (random time).
        "notifying" => {
            at(point);
            let mut i = 0usize;
            loop {
                notifier.notify(i % 60).unwrap();
                i += 1;
            }
        }
        other => panic!("unknown point {other}"),
    }
}

fn listener_point(domain: &str, point: &str) {
    let node = node(domain, "victim-listener");
    let events = events(&node);
    let listener = events.listener().create().unwrap();
    match point {
        // Asleep in wait() (spins first, then the futex).
        "waiting" => {
            at(point);
            loop {
                listener.wait();
            }
        }
        // Never looks: its pending bits pile up.
        "ignoring" => {
            at(point);
            stay()
        }
        other => panic!("unknown point {other}"),
    }
}

/// A new participant on the event service: waits for id 7 from the
/// parent, then notifies id 8.
fn event_join(domain: &str) {
    let node = node(domain, "joiner");
    let events = events(&node);
    let listener = events.listener().create().unwrap();
    let notifier = events.notifier().create().unwrap();
    println!("joined");
    while !listener.wait().contains(7) {}
    notifier.notify(8).unwrap();
    println!("received");
    wait_stdin();
}

// ---------------------------------------------------------------------------
// Managed segment children
// ---------------------------------------------------------------------------

const MANAGED: &str = "matrix-managed";
const MANAGED_SIZE: usize = 1 << 16;

fn open_managed(domain: &str) -> ManagedSegment {
    ManagedSegment::open_with(Segment::builder(MANAGED).domain(domain)).unwrap()
}

/// Random operations under the lock until killed: allocation and free of
/// named objects, vector pushes and pops (with reallocation), map inserts
/// and removes, string appends. Keeps `pairs.0 == pairs.1` as an
/// invariant that a kill in the middle of an update may break (the lock
/// then reports the death).
fn managed_random(domain: &str, seed: u64) {
    let mut rng = Rng(seed);
    let managed = open_managed(domain);
    let mut announced = false;
    loop {
        let mut m = match managed.lock() {
            Ok(m) => m,
            Err(e) => panic!("child lock: {e}"),
        };
        let op = rng.below(6);
        let r: Result<(), Box<dyn std::error::Error>> = (|| {
            match op {
                0 => {
                    let v = m.find_or_construct("vec", ShmVec::<u64>::new)?;
                    let (v, mut ctx) = m.get(v)?;
                    if v.len() > 300 {
                        v.free(&mut ctx)?;
                    } else {
                        v.push(&mut ctx, rng.next())?;
                    }
                }
                1 => {
                    let map = m.find_or_construct("map", ShmHashMap::<u64, u64>::new)?;
                    let (map, mut ctx) = m.get(map)?;
                    let k = rng.range(0, 200);
                    if rng.next() % 3 == 0 {
                        map.remove(&mut ctx, &k)?;
                    } else {
                        map.insert(&mut ctx, k, k * 3)?;
                    }
                }
                2 => {
                    let name = format!("obj{}", rng.range(0, 15));
                    if rng.next() % 2 == 0 {
                        m.destroy(&name)?;
                    } else {
                        m.find_or_construct(&name, || [7u64; 16])?;
                    }
                }
                3 => {
                    let s = m.find_or_construct("text", ShmString::new)?;
                    let (s, mut ctx) = m.get(s)?;
                    if s.len() > 2000 {
                        s.free(&mut ctx)?;
                    } else {
                        s.push_str(&mut ctx, "crash-matrix ")?;
                    }
                }
                _ => {
                    let pair = m.find_or_construct("pair", || [0u64; 2])?;
                    let (pair, mut ctx) = m.get(pair)?;
                    pair[0] += 1;
                    // Touch the heap between the two halves.
                    let v = ShmVec::<u64>::new();
                    let mut v = v;
                    v.push(&mut ctx, 1)?;
                    v.free(&mut ctx)?;
                    pair[1] += 1;
                }
            }
            Ok(())
        })();
        // Out of space is fine (the heap is small on purpose); anything
        // else is a bug.
        if let Err(e) = r {
            let mut text = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            assert!(
                text.contains("space") || text.contains("memory") || text.contains("full"),
                "child op {op}: {text}"
            );
        }
        drop(m);
        if !announced {
            announced = true;
            println!("looping");
        }
    }
}

/// Holds the lock in the middle of a two-part update: `a` has the new
/// element, `b` not yet.
fn managed_point(domain: &str, point: &str) {
    let managed = open_managed(domain);
    let mut m = managed.lock().unwrap();
    match point {
        "between-containers" => {
            let a = m.find_or_construct("a", ShmVec::<u64>::new).unwrap();
            m.find_or_construct("b", ShmVec::<u64>::new).unwrap();
            let (a, mut ctx) = m.get(a).unwrap();
            let n = a.len() as u64;
            a.push(&mut ctx, n).unwrap();
            at(point);
            stay()
        }
        "after-alloc" => {
            // Allocated and named, its contents not written yet.
            m.find_or_construct("fresh", || [0u64; 32]).unwrap();
            at(point);
            stay()
        }
        other => panic!("unknown point {other}"),
    }
}

/// A new participant: appends to `a` and `b` (repairing nothing) and
/// reports the lengths.
fn managed_join(domain: &str) {
    let managed = open_managed(domain);
    let mut m = managed.lock().unwrap();
    let a = m.find_or_construct("a", ShmVec::<u64>::new).unwrap();
    let b = m.find_or_construct("b", ShmVec::<u64>::new).unwrap();
    let (a, mut ctx) = m.get(a).unwrap();
    let n = a.len() as u64;
    a.push(&mut ctx, n).unwrap();
    let (b, mut ctx) = m.get(b).unwrap();
    b.push(&mut ctx, n).unwrap();
    let len = b.len();
    m.stats().unwrap();
    println!("joined {len}");
}

// ---------------------------------------------------------------------------
// Robust mutex children
// ---------------------------------------------------------------------------

const MUTEX: &str = "matrix-mutex";

/// Two counters that the lock keeps equal.
#[derive(ShmSafe, Clone, Copy, Default, Debug)]
#[repr(C)]
struct Pair {
    a: u64,
    b: u64,
}

struct MutexSegment {
    segment: Segment,
}

impl MutexSegment {
    fn create(domain: &str) -> MutexSegment {
        let segment = Segment::builder(MUTEX)
            .domain(domain)
            .size(4096)
            .create()
            .unwrap();
        MutexSegment { segment }
    }

    fn open(domain: &str) -> MutexSegment {
        let segment = Segment::builder(MUTEX).domain(domain).open().unwrap();
        MutexSegment { segment }
    }

    fn mutex(&self) -> &RobustMutex<Pair> {
        let p = self.segment.data().resolve::<RobustMutex<Pair>>(0).unwrap();
        // SAFETY: in bounds and aligned (resolve); a zeroed RobustMutex is
        // valid and unlocked, and it is only used through &self; the
        // reference lives as long as `self`, which keeps the mapping.
        unsafe { p.as_ref() }
    }
}

/// Takes the lock, repairing a dead owner's half update.
fn lock_repairing(mutex: &RobustMutex<Pair>) -> (conduit::sync::RobustMutexGuard<'_, Pair>, bool) {
    match mutex.lock() {
        Ok(g) => (g, false),
        Err(LockError::OwnerDied(mut g)) => {
            g.b = g.a;
            g.mark_consistent();
            (g, true)
        }
        Err(e) => panic!("lock: {e}"),
    }
}

fn mutex_random(domain: &str) {
    let seg = MutexSegment::open(domain);
    let mutex = seg.mutex();
    let mut announced = false;
    loop {
        let (mut g, _) = lock_repairing(mutex);
        assert_eq!(g.a, g.b, "invariant broken without an owner death");
        g.a += 1;
        std::hint::black_box(&mut *g);
        g.b += 1;
        drop(g);
        if !announced {
            announced = true;
            println!("looping");
        }
    }
}

fn mutex_point(domain: &str) {
    let seg = MutexSegment::open(domain);
    let (mut g, _) = lock_repairing(seg.mutex());
    g.a += 1;
    at("half-updated");
    stay()
}

/// Increments `n` times, then reports.
fn mutex_contender(domain: &str, n: u64) {
    let seg = MutexSegment::open(domain);
    println!("contending");
    let mut recovered = 0;
    for _ in 0..n {
        let (mut g, r) = lock_repairing(seg.mutex());
        recovered += u64::from(r);
        assert_eq!(g.a, g.b);
        g.a += 1;
        g.b += 1;
    }
    println!("done {recovered}");
    wait_stdin();
}

// ---------------------------------------------------------------------------
// Node cleanup children
// ---------------------------------------------------------------------------

/// Creates a node with a publisher, a subscriber, a notifier and a
/// listener on services of its own, then waits to be killed.
fn leave_dead(domain: &str) {
    let node = node(domain, "doomed");
    let name = format!("doomed/{}", std::process::id());
    let topic = node
        .service(&name)
        .publish_subscribe::<u64>()
        .open_or_create()
        .unwrap();
    let publisher = topic.publisher().create().unwrap();
    let _subscriber = topic.subscriber().create().unwrap();
    publisher.send_copy(1).unwrap();
    let events = node.service(&name).event().open_or_create().unwrap();
    let _notifier = events.notifier().create().unwrap();
    let _listener = events.listener().create().unwrap();
    // The shared topic too, so the cleaner frees ports in a live service.
    let shared = topic_for_cleanup(&node);
    let _p = shared.publisher().create().unwrap();
    at("ready");
    stay()
}

fn topic_for_cleanup(node: &Node) -> PubSubService<u64> {
    node.service("matrix/shared")
        .publish_subscribe::<u64>()
        .max_publishers(8)
        .open_or_create()
        .unwrap()
}

// ---------------------------------------------------------------------------
// Request/response
// ---------------------------------------------------------------------------

/// One client and one server slot, one request in flight, two responses
/// buffered: a pool of 4 response chunks, 3 request chunks, so a kill
/// that leaked a chunk shows in the joiner's round trips.
fn rr_service(node: &Node) -> conduit::reqres::ReqResService<u64, u64> {
    node.service("rr")
        .request_response::<u64, u64>()
        .max_clients(1)
        .max_servers(1)
        .active_requests(1)
        .response_buffer(2)
        .max_loans(1)
        .open_or_create()
        .unwrap()
}

/// A server killed at `point`: idle, holding a request unanswered, in the
/// middle of a stream (two responses sent), or with a response loaned
/// (one sent).
fn server_point(domain: &str, point: &str) {
    let node = node(domain, "victim");
    let svc = rr_service(&node);
    let server = svc.server().create().unwrap();
    println!("ready");
    if point == "idle" {
        at(point);
        stay();
    }
    let active = server.receive().unwrap();
    let sent = match point {
        "holding" => 0,
        "mid-stream" => 2,
        "loaned" => 1,
        other => panic!("unknown point {other}"),
    };
    for step in 0..sent {
        active.send_copy(*active * 10 + step).unwrap();
    }
    let _loan = (point == "loaned").then(|| active.loan_uninit().unwrap());
    at(point);
    stay();
}

/// A new server: answers one request with one response (`request + 1`).
fn rr_server_join(domain: &str) {
    let node = node(domain, "joiner");
    let svc = rr_service(&node);
    let server = svc.server().create().unwrap();
    println!("joined");
    let active = server.receive().unwrap();
    active.send_copy(*active + 1).unwrap();
}

/// A client killed at `point`: with a request loaned, with a request in
/// flight nobody answered yet, asleep in `receive`, or holding one
/// response of two.
fn client_point(domain: &str, point: &str) {
    let node = node(domain, "victim");
    let svc = rr_service(&node);
    let client = svc.client().create().unwrap();
    while client.servers() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    if point == "loaned" {
        let _loan = client.loan_uninit().unwrap();
        at(point);
        stay();
    }
    let pending = client.send_copy(7).unwrap();
    match point {
        "in-flight" => at(point),
        "receiving" => {
            at(point);
            let _ = pending.receive();
        }
        "holding-response" => {
            let _held = pending.receive().unwrap();
            at(point);
            stay();
        }
        other => panic!("unknown point {other}"),
    }
    stay();
}

/// A new client: five round trips of two responses each.
fn rr_client_join(domain: &str) {
    let node = node(domain, "joiner");
    let svc = rr_service(&node);
    let client = svc.client().create().unwrap();
    println!("joined");
    for n in 0..5 {
        let pending = client.send_copy(n).unwrap();
        for step in 0..2 {
            assert_eq!(*pending.receive().unwrap(), n * 10 + step);
        }
        assert_eq!(
            pending.receive().unwrap_err(),
            conduit::reqres::ResponseError::EndOfStream
        );
    }
    println!("done");
}

/// Servers killed at every named point: the waiting client receives the
/// responses that arrived, then `ServerGone` (never hangs), its request
/// chunk comes back, and a new server takes the slot and answers.
#[test]
fn reqres_server_killed_at_named_points() {
    let _w = watchdog(Duration::from_secs(120));
    let mut rng = seeded("reqres_server_killed_at_named_points");
    let points = ["idle", "holding", "mid-stream", "loaned"];
    for round in 0..iterations(6) {
        let domain = unique("cm-rrs");
        let point = *rng.pick(&points);
        let ctx = format!("round {round}: point {point}");
        {
            let node = node(&domain, "survivor");
            let svc = rr_service(&node);
            let client = svc.client().create().unwrap();
            let mut child = spawn("server_point", &[&domain, point]);
            expect_line(&mut child, "ready", &ctx);
            while client.servers() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let request = rng.range(1, 1000);
            let pending = (point != "idle").then(|| client.send_copy(request).unwrap());
            expect_line(&mut child, &format!("at {point}"), &ctx);
            kill(&mut child);
            // Idle: the request goes to the dead server (still registered).
            let pending = pending.unwrap_or_else(|| client.send_copy(request).unwrap());
            let sent = match point {
                "mid-stream" => 2,
                "loaned" => 1,
                _ => 0,
            };
            for step in 0..sent {
                let r = pending.receive().unwrap();
                assert_eq!(*r, request * 10 + step, "{ctx}");
            }
            match pending.receive() {
                Err(conduit::reqres::ResponseError::ServerGone { .. }) => {}
                other => panic!("{ctx}: expected ServerGone, got {other:?}"),
            }
            drop(pending);
            assert_eq!(client.in_flight(), 0, "{ctx}");
            let mut joiner = spawn("rr_server_join", &[&domain]);
            expect_line(&mut joiner, "joined", &ctx);
            let pending = loop {
                match client.send_copy(request) {
                    Ok(p) => break p,
                    // The joiner is registered but we may not see it yet.
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            };
            assert_eq!(*pending.receive().unwrap(), request + 1, "{ctx}");
            assert_eq!(
                pending.receive().unwrap_err(),
                conduit::reqres::ResponseError::EndOfStream,
                "{ctx}"
            );
            finish(joiner);
        }
        assert_clean(&domain);
    }
}

/// Clients killed at every named point: the server's request reads as
/// disconnected and its sends fail with `Disconnected` (never block), the
/// response chunks the client held come back (the joiner's round trips
/// cycle the four-chunk pool), and a new client takes the slot.
#[test]
fn reqres_client_killed_at_named_points() {
    let _w = watchdog(Duration::from_secs(120));
    let mut rng = seeded("reqres_client_killed_at_named_points");
    let points = ["loaned", "in-flight", "receiving", "holding-response"];
    for round in 0..iterations(6) {
        let domain = unique("cm-rrc");
        let point = *rng.pick(&points);
        let ctx = format!("round {round}: point {point}");
        {
            let node = node(&domain, "survivor");
            let svc = rr_service(&node);
            let server = svc.server().create().unwrap();
            let mut child = spawn("client_point", &[&domain, point]);
            let active = (point != "loaned")
                .then(|| server.receive_timeout(Duration::from_secs(10)).unwrap());
            if let Some(a) = &active {
                assert_eq!(**a, 7, "{ctx}");
                if point == "holding-response" {
                    a.send_copy(70).unwrap();
                    a.send_copy(71).unwrap();
                }
            }
            expect_line(&mut child, &format!("at {point}"), &ctx);
            kill(&mut child);
            if let Some(a) = &active {
                let mut tries = 0;
                loop {
                    match a.send_copy(0) {
                        Err(conduit::reqres::ResponseSendOrLoanError::Send(
                            conduit::reqres::ResponseSendError::Disconnected,
                        )) => break,
                        Ok(()) | Err(_) => {
                            tries += 1;
                            assert!(tries < 10_000, "{ctx}: never disconnected");
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                assert!(!a.is_connected(), "{ctx}");
            }
            drop(active);
            let mut joiner = spawn("rr_client_join", &[&domain]);
            expect_line(&mut joiner, "joined", &ctx);
            for _ in 0..5 {
                let a = server.receive_timeout(Duration::from_secs(10)).unwrap();
                for step in 0..2 {
                    a.send_copy(*a * 10 + step).unwrap();
                }
            }
            expect_line(&mut joiner, "done", &ctx);
            finish(joiner);
        }
        assert_clean(&domain);
    }
}

// ---------------------------------------------------------------------------
// Tests: publish/subscribe
// ---------------------------------------------------------------------------

/// A publisher killed at each named point: loaned but not written,
/// written but not sent, all loans taken, idle after sending. Its samples
/// held by the surviving subscriber stay readable, the surviving
/// publisher keeps reaching the subscriber, and a new publisher (which
/// needs the dead one's slot) and a new subscriber can join.
#[test]
fn pubsub_publisher_killed_at_named_points() {
    let _w = watchdog(Duration::from_secs(120));
    let mut rng = seeded("pubsub_publisher_killed_at_named_points");
    let points = ["idle", "loaned", "written", "all-loans"];
    for round in 0..iterations(6) {
        let domain = unique("cm-pub");
        let point = *rng.pick(&points);
        let pre = rng.range(0, 4);
        let hold = rng.range(0, pre.min(1)) as usize;
        let ctx = format!("round {round}: point {point}, pre {pre}, hold {hold}");
        {
            let node = node(&domain, "survivor");
            let topic = topic(&node, Overflow::DropOldest);
            let subscriber = topic.subscriber().create().unwrap();
            let publisher = topic.publisher().create().unwrap();
            let mut child = spawn("pub_point", &[&domain, point, &pre.to_string()]);
            expect_line(&mut child, &format!("at {point}"), &ctx);
            let mut held = Vec::new();
            let mut got = 0;
            while let Some(s) = subscriber.try_receive().unwrap() {
                s.verify();
                assert_eq!((s.origin, s.seq), (VICTIM, got + 1), "{ctx}");
                got += 1;
                if held.len() < hold {
                    held.push(s);
                }
            }
            assert_eq!(got, pre, "{ctx}");
            kill(&mut child);
            // Held samples of the dead publisher are intact.
            for (i, s) in held.iter().enumerate() {
                s.verify();
                assert_eq!((s.origin, s.seq), (VICTIM, i as u64 + 1), "{ctx}");
            }
            drop(held);
            // The surviving publisher still reaches the subscriber.
            publisher.send_copy(Msg::new(PARENT, 1)).unwrap();
            receive_until(&subscriber, PARENT, 1);
            // A new participant joins: its publisher takes the dead slot.
            let mut joiner = spawn("pubsub_join", &[&domain]);
            expect_line(&mut joiner, "joined", &ctx);
            for seq in 1..=3 {
                receive_until(&subscriber, JOINER, seq);
            }
            publisher.update_connections();
            publisher.send_copy(Msg::new(PARENT, 1000)).unwrap();
            expect_line(&mut joiner, "received", &ctx);
            finish(joiner);
        }
        assert_clean(&domain);
    }
}

/// A publisher's last words: it sends 1..=4 samples (a full queue) and exits normally or
/// is killed right after; a subscriber that polls only afterwards (after
/// a dead-port cleanup or not) gets every one, intact and in order, and
/// nothing is left in `/dev/shm`; a subscriber killed without reading
/// leaves nothing either.
#[test]
fn pubsub_publisher_last_words_survive_exit_and_kill() {
    let _w = watchdog(Duration::from_secs(120));
    let mut rng = seeded("pubsub_publisher_last_words_survive_exit_and_kill");
    for round in 0..iterations(8) {
        let domain = unique("cm-lw");
        let fate = *rng.pick(&["exit", "kill"]);
        let reader = *rng.pick(&["polls", "killed"]);
        let clean_first = rng.below(2) == 1;
        let n = rng.range(1, 4); // subscriber_buffer: nothing dropped
        let ctx = format!("round {round}: publisher {fate}, subscriber {reader}, n {n}");
        {
            let node = node(&domain, "survivor");
            let topic = topic(&node, Overflow::DropOldest);
            let subscriber = topic.subscriber().create().unwrap();
            let mut victim_sub = (reader == "killed").then(|| {
                let mut child = spawn("sub_point", &[&domain, "holding", "0"]);
                expect_line(&mut child, "subscribed", &ctx);
                expect_line(&mut child, "at holding", &ctx);
                child
            });
            let mut child = spawn("last_words", &[&domain, &n.to_string(), fate]);
            expect_line(&mut child, "sent", &ctx);
            if fate == "kill" {
                kill(&mut child);
            } else {
                assert!(child.wait().unwrap().success(), "{ctx}");
            }
            if let Some(victim) = victim_sub.as_mut() {
                kill(victim);
            }
            if clean_first {
                topic.cleanup_dead_ports();
            }
            for seq in 1..=n {
                let s = subscriber
                    .try_receive()
                    .unwrap()
                    .unwrap_or_else(|| panic!("{ctx}: sample {seq} lost"));
                s.verify();
                assert_eq!((s.origin, s.seq), (VICTIM, seq), "{ctx}");
            }
            assert!(subscriber.try_receive().unwrap().is_none(), "{ctx}");
        }
        assert_clean(&domain);
    }
}

/// Subscribers killed while holding samples with a full queue, or while
/// asleep in a blocking receive, under each overflow policy, three in a
/// row per round. The surviving publisher keeps sending by itself (with
/// `Fail` and `Block` a dead subscriber's full queue must not stop it for
/// good), the surviving subscriber keeps receiving, every chunk comes back
/// (after three victims, each of which held or had queued up to six
/// chunks, the survivor can still hold its maximum with a full queue while
/// the publisher loans its maximum), and a new subscriber can join.
#[test]
fn pubsub_subscriber_killed_at_named_points() {
    let _w = watchdog(Duration::from_secs(120));
    let mut rng = seeded("pubsub_subscriber_killed_at_named_points");
    let points = ["holding", "receiving"];
    let overflows = [Overflow::DropOldest, Overflow::Fail, Overflow::Block];
    for round in 0..iterations(6) {
        let domain = unique("cm-sub");
        let overflow = *rng.pick(&overflows);
        {
            let node = node(&domain, "survivor");
            let topic = topic(&node, overflow);
            let publisher = topic
                .publisher()
                .block_timeout(Duration::from_millis(50))
                .create()
                .unwrap();
            let subscriber = topic.subscriber().create().unwrap();
            let mut seq = 0;
            for victim in 0..3 {
                let point = *rng.pick(&points);
                let hold = rng.range(0, 2) as usize;
                let ctx = format!(
                    "round {round}, victim {victim}: point {point}, {overflow:?}, hold {hold}"
                );
                let mut child = spawn("sub_point", &[&domain, point, &hold.to_string()]);
                expect_line(&mut child, "subscribed", &ctx);
                publisher.update_connections();
                for _ in 0..hold {
                    seq += 1;
                    publisher.send_copy(Msg::new(PARENT, seq)).unwrap();
                    receive_until(&subscriber, PARENT, seq);
                }
                expect_line(&mut child, &format!("at {point}"), &ctx);
                if point == "holding" {
                    // Fill the victim's queue (the survivor drains its own).
                    for _ in 0..4 {
                        seq += 1;
                        publisher.send_copy(Msg::new(PARENT, seq)).unwrap();
                        receive_until(&subscriber, PARENT, seq);
                    }
                }
                kill(&mut child);
                // The publisher keeps going by itself: no call to any cleanup.
                for _ in 0..8 {
                    seq += 1;
                    let mut sent = false;
                    for _ in 0..1000 {
                        match publisher.send_copy(Msg::new(PARENT, seq)) {
                            Ok(_) => {
                                sent = true;
                                break;
                            }
                            Err(e) => {
                                // Only the dead subscriber's queue can be full.
                                assert_ne!(overflow, Overflow::DropOldest, "{ctx}: {e}");
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                    assert!(sent, "{ctx}: the publisher never recovered");
                    receive_until(&subscriber, PARENT, seq);
                }
            }
            let ctx = format!("round {round}: {overflow:?}");
            // Every chunk is back: the survivor holds its maximum and lets
            // its queue fill, and the publisher can still loan its maximum
            // (8 of the pool's 15 chunks; leaking 3 per victim would leave 6).
            topic.cleanup_dead_ports();
            publisher.update_connections();
            let mut borrowed = Vec::new();
            for _ in 0..2 {
                seq += 1;
                publisher.send_copy(Msg::new(PARENT, seq)).unwrap();
                borrowed.push(subscriber.try_receive().unwrap().expect("sample"));
            }
            for _ in 0..4 {
                seq += 1;
                publisher.send_copy(Msg::new(PARENT, seq)).unwrap();
            }
            let loans = [publisher.loan_uninit(), publisher.loan_uninit()];
            for l in &loans {
                assert!(l.is_ok(), "{ctx}: {:?}", l.as_ref().err());
            }
            drop(loans);
            drop(borrowed);
            while subscriber.try_receive().unwrap().is_some() {}
            // A new subscriber (and publisher) joins.
            let mut joiner = spawn("pubsub_join", &[&domain]);
            expect_line(&mut joiner, "joined", &ctx);
            for s in 1..=3 {
                receive_until(&subscriber, JOINER, s);
            }
            publisher.update_connections();
            publisher.send_copy(Msg::new(PARENT, 1000)).unwrap();
            expect_line(&mut joiner, "received", &ctx);
            finish(joiner);
        }
        assert_clean(&domain);
    }
}

/// Processes killed at a random moment while they create and drop nodes,
/// services (publish/subscribe and event) and ports in a loop: kills land
/// inside `open_or_create`, the segment initialisers, port creation and
/// the removal by the last user. Afterwards a new participant creates the
/// same services and uses them, and the domain is left empty.
#[test]
fn service_creation_killed_at_random_time() {
    let _w = watchdog(Duration::from_secs(120));
    let mut rng = seeded("service_creation_killed_at_random_time");
    let domain = unique("cm-create");
    for round in 0..iterations(6) * 2 {
        let mut child = spawn("create_loop", &[&domain, &rng.next().to_string()]);
        expect_line(&mut child, "looping", &format!("round {round}"));
        std::thread::sleep(Duration::from_micros(rng.range(0, 3000)));
        kill(&mut child);
        // A new participant: both services work.
        let node = node(&domain, "next");
        {
            let topic = topic(&node, Overflow::DropOldest);
            let publisher = topic.publisher().create().unwrap();
            let subscriber = topic.subscriber().create().unwrap();
            publisher.send_copy(Msg::new(PARENT, 1)).unwrap();
            receive_until(&subscriber, PARENT, 1);
            let events = events(&node);
            let listener = events.listener().create().unwrap();
            let notifier = events.notifier().create().unwrap();
            notifier.notify(3).unwrap();
            assert!(listener.wait().contains(3));
            let board = board(&node);
            let reader = board.reader().unwrap();
            check_board(&reader, &[], &format!("round {round}"));
            let writer = board.writer().unwrap();
            writer.entry(&2).unwrap().update(board_value(2, 9));
            assert_eq!(reader.entry(&2).unwrap().get(), Ok(board_value(2, 9)));
        }
        drop(node);
        assert_clean(&domain);
    }
}

/// A process stopped inside the initialiser of a service segment (named
/// point) and killed there: the next `open_or_create` replaces the
/// abandoned segment.
#[test]
fn service_creation_killed_in_initialiser() {
    let _w = watchdog(Duration::from_secs(60));
    let mut rng = seeded("service_creation_killed_in_initialiser");
    for round in 0..iterations(6) {
        let domain = unique("cm-init");
        let kind = *rng.pick(&["pubsub", "event", "blackboard"]);
        let mut child = spawn("create_point", &[&domain, kind]);
        expect_line(
            &mut child,
            "at initializing",
            &format!("round {round} {kind}"),
        );
        kill(&mut child);
        {
            let node = node(&domain, "next");
            let topic = topic(&node, Overflow::DropOldest);
            let publisher = topic.publisher().create().unwrap();
            let subscriber = topic.subscriber().create().unwrap();
            publisher.send_copy(Msg::new(PARENT, 1)).unwrap();
            receive_until(&subscriber, PARENT, 1);
            let events = events(&node);
            let listener = events.listener().create().unwrap();
            events.notifier().create().unwrap().notify(4).unwrap();
            assert!(listener.wait().contains(4));
            let board = board(&node);
            let reader = board.reader().unwrap();
            board
                .writer()
                .unwrap()
                .entry(&0)
                .unwrap()
                .update(board_value(0, 5));
            assert_eq!(reader.entry(&0).unwrap().get(), Ok(board_value(0, 5)));
        }
        assert_clean(&domain);
    }
}

// ---------------------------------------------------------------------------
// Tests: blackboard
// ---------------------------------------------------------------------------

/// A blackboard writer killed at a random time while it updates every
/// entry (512-byte values, so most kills land inside an update): every
/// entry stays readable with a complete value of its own, versions never
/// go back, and the next writer takes the dead one's slot.
#[test]
fn blackboard_writer_killed_at_random_time() {
    let _w = watchdog(Duration::from_secs(120));
    let mut rng = seeded("blackboard_writer_killed_at_random_time");
    let domain = unique("cm-board");
    let node = node(&domain, "survivor");
    let board = board(&node);
    let reader = board.reader().unwrap();
    let mut last = check_board(&reader, &[], "start");
    for round in 0..iterations(6) * 4 {
        let ctx = format!("round {round}");
        let mut child = spawn("board_writer", &[&domain]);
        expect_line(&mut child, "writing", &ctx);
        std::thread::sleep(Duration::from_micros(rng.range(0, 2000)));
        kill(&mut child);
        last = check_board(&reader, &last, &ctx);
    }
    let writer = board.writer().expect("the dead writer's slot is reclaimed");
    let version = writer.entry(&0).unwrap().update(board_value(0, 1));
    assert!(version > last[0]);
    drop((writer, reader, board, node));
    assert_clean(&domain);
}

// ---------------------------------------------------------------------------
// Tests: events
// ---------------------------------------------------------------------------

/// A notifier killed idle or in the middle of `notify` (random time): the
/// surviving listener learns of the death (the dead-notifier event), the
/// surviving notifier still reaches it, and a new notifier, which needs
/// the dead one's slot, and a new listener can join.
#[test]
fn event_notifier_killed() {
    let _w = watchdog(Duration::from_secs(120));
    let mut rng = seeded("event_notifier_killed");
    for round in 0..iterations(6) {
        let domain = unique("cm-notifier");
        let point = *rng.pick(&["idle", "notifying"]);
        let ctx = format!("round {round}: {point}");
        {
            let node = node(&domain, "survivor");
            let events = events(&node);
            let listener = events.listener().create().unwrap();
            let notifier = events.notifier().create().unwrap();
            let mut child = spawn("notifier_point", &[&domain, point]);
            expect_line(&mut child, &format!("at {point}"), &ctx);
            if point == "notifying" {
                std::thread::sleep(Duration::from_micros(rng.range(0, 2000)));
            }
            kill(&mut child);
            // Found by whoever cleans first: here the survivor, explicitly
            // or through Node::cleanup.
            if rng.next() % 2 == 0 {
                assert_eq!(events.cleanup_dead_ports(), 1, "{ctx}");
            } else {
                Node::cleanup(&domain).unwrap();
            }
            let mut seen = conduit::event::EventSet::default();
            while !seen.contains(DEAD_EVENT) {
                seen.merge(&listener.wait());
            }
            notifier.notify(5).unwrap();
            let mut seen = listener.wait();
            while !seen.contains(5) {
                seen.merge(&listener.wait());
            }
            // The dead notifier's slot is free again: max_notifiers is 2.
            drop(notifier);
            let mut joiner = spawn("event_join", &[&domain]);
            expect_line(&mut joiner, "joined", &ctx);
            let notifier = events.notifier().create().unwrap();
            notifier.notify(7).unwrap();
            let mut seen = listener.wait();
            while !seen.contains(8) {
                seen.merge(&listener.wait());
            }
            expect_line(&mut joiner, "received", &ctx);
            finish(joiner);
        }
        assert_clean(&domain);
    }
}

/// A listener killed asleep in `wait` or ignoring its events: notifiers
/// never block on it, its slot is reclaimed for a new listener, and the
/// surviving listener keeps receiving.
#[test]
fn event_listener_killed() {
    let _w = watchdog(Duration::from_secs(120));
    let mut rng = seeded("event_listener_killed");
    for round in 0..iterations(6) {
        let domain = unique("cm-listener");
        let point = *rng.pick(&["waiting", "ignoring"]);
        let ctx = format!("round {round}: {point}");
        {
            let node = node(&domain, "survivor");
            let events = events(&node);
            let listener = events.listener().create().unwrap();
            let notifier = events.notifier().create().unwrap();
            let mut child = spawn("listener_point", &[&domain, point]);
            expect_line(&mut child, &format!("at {point}"), &ctx);
            for id in 0..rng.range(0, 20) as usize {
                notifier.notify(id % 60).unwrap();
            }
            kill(&mut child);
            for id in 0..60 {
                notifier.notify(id).unwrap();
            }
            let mut seen = conduit::event::EventSet::default();
            while !seen.contains(59) {
                seen.merge(&listener.wait());
            }
            // The dead listener's slot (max_listeners is 2) goes to the
            // joiner, found dead when the joiner opens the service.
            let mut joiner = spawn("event_join", &[&domain]);
            expect_line(&mut joiner, "joined", &ctx);
            notifier.notify(7).unwrap();
            let mut seen = listener.wait();
            while !seen.contains(8) {
                seen.merge(&listener.wait());
            }
            expect_line(&mut joiner, "received", &ctx);
            finish(joiner);
            assert_eq!(events.listeners(), 1, "{ctx}");
        }
        assert_clean(&domain);
    }
}

// ---------------------------------------------------------------------------
// Tests: managed segment and allocator
// ---------------------------------------------------------------------------

/// Checks the managed segment after a holder died: every container reads
/// back without error, the pair invariant is repaired, and the heap still
/// allocates and frees.
fn check_managed(managed: &ManagedSegment, ctx: &str) -> bool {
    let mut m = managed
        .lock()
        .unwrap_or_else(|e| panic!("{ctx}: lock: {e}"));
    let recovered = m.recovered();
    let before = m.stats().unwrap();
    if let Some(v) = m.find::<ShmVec<u64>>("vec").unwrap() {
        let (v, mut ctx2) = m.get(v).unwrap();
        v.as_slice(ctx2.view())
            .unwrap_or_else(|e| panic!("{ctx}: vec: {e}"));
        let _ = v.push(&mut ctx2, 5);
    }
    if let Some(map) = m.find::<ShmHashMap<u64, u64>>("map").unwrap() {
        let (map, mut ctx2) = m.get(map).unwrap();
        for item in map.iter(ctx2.view()).unwrap() {
            let (k, v) = item.unwrap_or_else(|e| panic!("{ctx}: map: {e}"));
            assert_eq!(*v, *k * 3, "{ctx}");
        }
        let _ = map.insert(&mut ctx2, 1000, 3000);
    }
    if let Some(s) = m.find::<ShmString>("text").unwrap() {
        let (s, ctx2) = m.get(s).unwrap();
        let text = s
            .as_str(ctx2.view())
            .unwrap_or_else(|e| panic!("{ctx}: text: {e}"));
        assert!(text.replace("crash-matrix ", "").is_empty(), "{ctx}");
    }
    if let Some(pair) = m.find::<[u64; 2]>("pair").unwrap() {
        let (pair, _) = m.get(pair).unwrap();
        if pair[0] != pair[1] {
            assert!(recovered, "{ctx}: half update seen without an owner death");
            pair[1] = pair[0];
        }
    }
    // The heap still allocates and frees.
    m.find_or_construct("probe", || [1u64; 8]).unwrap();
    assert!(m.destroy("probe").unwrap());
    let after = m.stats().unwrap();
    assert!(
        after.free_bytes + 4096 >= before.free_bytes.min(after.free_bytes),
        "{ctx}"
    );
    recovered
}

/// A process doing random allocations, frees and container mutations
/// under the managed lock, killed at a random moment (often while it
/// holds the lock in the middle of the allocator or a container). The
/// next locker is told, the heap verifies, containers still work, and a
/// new process can join. Reports how many kills hit the lock.
#[test]
fn managed_killed_at_random_time() {
    let _w = watchdog(Duration::from_secs(120));
    let mut rng = seeded("managed_killed_at_random_time");
    let domain = unique("cm-managed");
    let managed =
        ManagedSegment::create_with(Segment::builder(MANAGED).domain(&domain).size(MANAGED_SIZE))
            .unwrap();
    let mut recovered = 0;
    let rounds = iterations(6) * 3;
    for round in 0..rounds {
        let ctx = format!("round {round}");
        let mut child = spawn("managed_random", &[&domain, &rng.next().to_string()]);
        expect_line(&mut child, "looping", &ctx);
        std::thread::sleep(Duration::from_micros(rng.range(0, 2000)));
        kill(&mut child);
        if check_managed(&managed, &ctx) {
            recovered += 1;
        }
    }
    eprintln!("crash-matrix: {recovered} of {rounds} kills held the managed lock");
    let mut joiner = spawn("managed_join", &[&domain]);
    assert!(read_line(&mut joiner).starts_with("joined"));
    finish(joiner);
    drop(managed.lock().unwrap());
    managed.segment().unlink().unwrap();
    drop(managed);
    assert_clean(&domain);
}

/// A holder killed at a named point inside the managed lock: between the
/// two halves of an update of two containers, or right after allocating
/// a named object. The next locker gets `recovered()`, sees exactly the
/// half-done state, repairs it, and a new process joins.
#[test]
fn managed_killed_at_named_points() {
    let _w = watchdog(Duration::from_secs(60));
    let mut rng = seeded("managed_killed_at_named_points");
    let domain = unique("cm-mpoint");
    let managed =
        ManagedSegment::create_with(Segment::builder(MANAGED).domain(&domain).size(MANAGED_SIZE))
            .unwrap();
    for round in 0..iterations(6) {
        let point = *rng.pick(&["between-containers", "after-alloc"]);
        let ctx = format!("round {round}: {point}");
        let mut child = spawn("managed_point", &[&domain, point]);
        expect_line(&mut child, &format!("at {point}"), &ctx);
        kill(&mut child);
        {
            let mut m = managed.lock().unwrap();
            assert!(m.recovered(), "{ctx}");
            match point {
                "between-containers" => {
                    let a = m.find::<ShmVec<u64>>("a").unwrap().unwrap();
                    let b = m.find::<ShmVec<u64>>("b").unwrap().unwrap();
                    let (a, ctx_a) = m.get(a).unwrap();
                    let want: Vec<u64> = a.as_slice(ctx_a.view()).unwrap().to_vec();
                    let (b, mut ctx_b) = m.get(b).unwrap();
                    assert_eq!(b.len() + 1, want.len(), "{ctx}");
                    b.push(&mut ctx_b, *want.last().unwrap()).unwrap();
                    assert_eq!(b.as_slice(ctx_b.view()).unwrap(), want, "{ctx}");
                }
                _ => {
                    m.find::<[u64; 32]>("fresh").unwrap().expect("named");
                    assert!(m.destroy("fresh").unwrap());
                }
            }
        }
        assert!(!managed.lock().unwrap().recovered(), "{ctx}");
        let mut joiner = spawn("managed_join", &[&domain]);
        assert!(read_line(&mut joiner).starts_with("joined"), "{ctx}");
        finish(joiner);
    }
    managed.segment().unlink().unwrap();
    drop(managed);
    assert_clean(&domain);
}

// ---------------------------------------------------------------------------
// Tests: robust mutex
// ---------------------------------------------------------------------------

/// A robust-mutex holder killed half-way through an update (named point)
/// or at a random moment of a lock/update/unlock loop, while another
/// process is blocked in `lock()`: the blocked survivor gets the lock
/// (`OwnerDied` exactly when the update is half done, never a clean lock
/// over a half update), and a new process can join.
#[test]
fn robust_mutex_holder_killed() {
    let _w = watchdog(Duration::from_secs(120));
    let mut rng = seeded("robust_mutex_holder_killed");
    let domain = unique("cm-mutex");
    let seg = MutexSegment::create(&domain);
    let mutex = seg.mutex();
    let mut expected_min = 0;
    for round in 0..iterations(6) * 2 {
        let named = rng.next() % 2 == 0;
        let ctx = format!("round {round}: {}", if named { "named" } else { "random" });
        let mut victim = if named {
            let mut c = spawn("mutex_point", &[&domain]);
            expect_line(&mut c, "at half-updated", &ctx);
            c
        } else {
            let mut c = spawn("mutex_random", &[&domain]);
            expect_line(&mut c, "looping", &ctx);
            c
        };
        // A survivor contending for the lock while the victim dies.
        let n = rng.range(1, 50);
        let mut contender = spawn("mutex_contender", &[&domain, &n.to_string()]);
        expect_line(&mut contender, "contending", &ctx);
        if !named {
            std::thread::sleep(Duration::from_micros(rng.range(0, 2000)));
        }
        kill(&mut victim);
        let done = read_line(&mut contender);
        assert!(done.starts_with("done "), "{ctx}: {done}");
        finish(contender);
        expected_min += n;
        let (g, _) = lock_repairing(mutex);
        assert_eq!(g.a, g.b, "{ctx}");
        assert!(g.a >= expected_min, "{ctx}");
        expected_min = g.a;
    }
    // After all that, a plain lock is clean.
    assert!(mutex.lock().is_ok());
    seg.segment.unlink().unwrap();
    drop(seg);
    assert_clean(&domain);
}

// ---------------------------------------------------------------------------
// Tests: node cleanup
// ---------------------------------------------------------------------------

/// `Node::cleanup` itself killed at a random moment while it removes dead
/// nodes' ports, data segments, services and node segments, with a live
/// survivor using a service the dead nodes shared. The survivor keeps
/// working, the next cleanup finishes the job, and nothing is left.
#[test]
fn node_cleanup_killed_at_random_time() {
    let _w = watchdog(Duration::from_secs(120));
    let mut rng = seeded("node_cleanup_killed_at_random_time");
    for round in 0..iterations(6) {
        let domain = unique("cm-cleanup");
        let ctx = format!("round {round}");
        {
            let survivor = node(&domain, "survivor");
            let shared = topic_for_cleanup(&survivor);
            let publisher = shared.publisher().create().unwrap();
            let subscriber = shared.subscriber().create().unwrap();
            let dead = rng.range(1, 3);
            for _ in 0..dead {
                let mut c = spawn("leave_dead", &[&domain]);
                expect_line(&mut c, "at ready", &ctx);
                kill(&mut c);
            }
            // Cleaners, each killed at a random moment of its cleanup.
            for _ in 0..rng.range(1, 3) {
                let mut cleaner = spawn("cleaner", &[&domain]);
                expect_line(&mut cleaner, "cleaning", &ctx);
                std::thread::sleep(Duration::from_micros(rng.range(0, 4000)));
                kill(&mut cleaner);
            }
            // The survivor keeps working.
            publisher.send_copy(11).unwrap();
            let mut last = 0;
            while let Some(s) = subscriber.try_receive().unwrap() {
                last = *s;
            }
            assert_eq!(last, 11, "{ctx}");
            // The next cleanup finishes: only the survivor's objects stay.
            Node::cleanup(&domain).unwrap();
            let nodes = Node::list(&domain).unwrap();
            assert_eq!(nodes.len(), 1, "{ctx}: {nodes:?}");
            // A new participant joins the shared service.
            let other = node(&domain, "late");
            let late = topic_for_cleanup(&other);
            let late_pub = late.publisher().create().unwrap();
            late_pub.send_copy(12).unwrap();
            assert_eq!(*subscriber.try_receive().unwrap().expect("sample"), 12);
        }
        assert_clean(&domain);
    }
}

/// The generator replays: the same seed gives the same choices.
#[test]
fn seeds_replay_the_same_choices() {
    let _w = watchdog(Duration::from_secs(10));
    let draw = |seed| {
        let mut r = Rng(seed);
        (0..8).map(|_| r.next()).collect::<Vec<u64>>()
    };
    assert_eq!(draw(42), draw(42));
    assert_ne!(draw(42), draw(43));
}
