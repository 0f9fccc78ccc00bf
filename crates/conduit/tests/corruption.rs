//! A hostile process scribbles over shared memory while another process
//! keeps using it through the public API.
//!
//! Each scenario runs the *reader* in a child process, so that a crash
//! (SIGSEGV, SIGBUS, a panic, the child's own watchdog abort) shows up as
//! a failed exit status instead of taking the test harness down with it.
//! A second child, the *hostile* one, maps every `/dev/shm` object of the
//! test's domain directly (no header validation: it opens the file, not a
//! [`Segment`]) and writes random bytes, plausible small numbers, copies
//! of other words of the same object (plausible offsets), bit flips and
//! extreme values over
//!
//! * segment headers,
//! * the service segment: static configuration, publisher and subscriber
//!   registry slots, connection links, queue heads and entries, return
//!   rings,
//! * publisher data segments (chunk headers and payloads),
//! * the event service segment (configuration, notifier and listener
//!   slots, pending bits),
//! * the blackboard service segment (configuration, key table, writer
//!   and reader slots, entry words: `current`, sequence words, copies),
//! * node segments,
//! * the managed segment: its lock word, TLSF heap state and block
//!   headers, the directory map and the containers' offsets and lengths,
//!
//! and now and then restores a snapshot taken before it started, so that
//! the reader also walks the paths that recover from corruption. The reader
//! must get `Ok` with data or an error, within bounded time, in every
//! iteration; it must not panic, fault or hang.
//!
//! The PRNG seed is printed; `CONDUIT_CORRUPT_SEED=<seed>` replays it (the
//! interleaving with the reader is not replayed, so a replay is likely,
//! not certain, to hit the same bug).

mod common;

use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use common::os::{self, Mapping};
use common::{child_command, read_line, shm_objects_containing, spawn_child, unique, watchdog};
use conduit::node::Node;
use conduit::shm::{
    ManagedSegment, Region, Segment, ShmBox, ShmHashMap, ShmList, ShmString, ShmVec,
};

/// Environment variable that fixes the scribbler's seed.
const SEED_ENV: &str = "CONDUIT_CORRUPT_SEED";

child_entry!(dispatch);

fn dispatch(role: &str, args: &[String]) {
    let domain = &args[0];
    match role {
        "pubsub_reader" => pubsub_reader(domain, args[1].parse().unwrap()),
        "managed_reader" => managed_reader(domain, args[1].parse().unwrap()),
        "blackboard_reader" => blackboard_reader(domain, args[1].parse().unwrap()),
        "hostile" => hostile(domain, args[1].parse().unwrap()),
        _ => panic!("unknown role {role}"),
    }
}

use common::Rng;

fn seed() -> u64 {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            t.as_nanos() as u64 ^ u64::from(std::process::id())
        });
    eprintln!("corruption seed {seed} (replay with {SEED_ENV}={seed})");
    seed
}

/// Environment variable that overrides the readers' iteration count (for
/// longer runs than CI's).
const ITERATIONS_ENV: &str = "CONDUIT_CORRUPT_ITERATIONS";

/// Runs `reader_role` in a child against a hostile child, and fails if the
/// reader did not finish cleanly.
fn scenario(prefix: &str, reader_role: &str, iterations: u32) {
    let iterations = std::env::var(ITERATIONS_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(iterations);
    let _w = watchdog(Duration::from_secs(120 + u64::from(iterations) / 100));
    let domain = unique(prefix);
    let seed = seed();
    let mut reader = child_command(reader_role, &[&domain, &iterations.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn reader");
    let ready = read_line(&mut reader);
    let mut hostile = None;
    let mut report = String::new();
    let mut scribbling = false;
    if ready == "ready" {
        let mut h = spawn_child("hostile", &[&domain, &seed.to_string()]);
        scribbling = read_line(&mut h) == "scribbling";
        hostile = Some(h);
    }
    if scribbling {
        let mut stdin = reader.stdin.take().unwrap();
        writeln!(stdin, "go").unwrap();
        drop(stdin);
        report = read_line(&mut reader);
    } else {
        let _ = reader.kill();
    }
    if let Some(mut h) = hostile {
        let _ = h.kill();
        let _ = h.wait();
    }
    let status = reader.wait().unwrap();
    remove_domain(&domain);
    assert_eq!(ready, "ready", "reader {reader_role} did not start");
    assert!(scribbling, "the hostile child did not start");
    assert!(
        status.success() && report.starts_with("done"),
        "reader {reader_role} failed under corruption ({status}, report {report:?}); \
         replay with {SEED_ENV}={seed}"
    );
    eprintln!("{reader_role}: {report}");
}

/// Removes every object of `domain`: whatever the scribbler did, the test
/// leaves nothing in /dev/shm.
fn remove_domain(domain: &str) {
    let _ = Node::cleanup(domain);
    let prefix = format!("conduit.{domain}.");
    for name in shm_objects_containing(&prefix) {
        let _ = os::shm_unlink(&format!("/{name}"));
    }
    let left = shm_objects_containing(&prefix);
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

/// Tallies the outcome of each call: data or an error. A panic inside a
/// call is not caught: it fails the reader.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
}

impl Tally {
    fn note<T, E: std::fmt::Display>(&mut self, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => {
                self.ok += 1;
                Some(v)
            }
            Err(e) => {
                self.errors += 1;
                if std::env::var_os("CONDUIT_CORRUPT_DEBUG").is_some() {
                    let e = e.to_string();
                    eprintln!("ERR {}", &e[..e.len().min(60)]);
                }
                None
            }
        }
    }
}

fn wait_for_go() {
    println!("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
}

/// Publishes, receives, notifies and waits, joins and leaves services,
/// reopens them (decoding their static configuration) and lists the
/// domain, over and over.
fn pubsub_reader(domain: &str, iterations: u32) {
    let _w = watchdog(Duration::from_secs(60 + u64::from(iterations) / 100));
    let node = Node::builder()
        .name("reader")
        .domain(domain)
        .create()
        .unwrap();
    let topic = node
        .service("victim")
        .publish_subscribe::<u64>()
        .history(1)
        .open_or_create()
        .unwrap();
    let slices = node
        .service("slices")
        .publish_subscribe::<[u32]>()
        .open_or_create()
        .unwrap();
    let mut publisher = topic.publisher().create().unwrap();
    let subscriber = topic.subscriber().create().unwrap();
    let mut slice_pub = slices.publisher().max_slice_len(16).create().unwrap();
    let slice_sub = slices.subscriber().create().unwrap();
    let events = node.service("events").event().open_or_create().unwrap();
    let notifier = events.notifier().create().unwrap();
    let listener = events.listener().create().unwrap();
    // Some state in every queue before the scribbling starts.
    publisher.send_copy(1).unwrap();
    slice_pub.send_slice_copy(&[1, 2, 3]).unwrap();
    let _ = subscriber.try_receive().unwrap();
    wait_for_go();

    let mut t = Tally::default();
    let mut sum = 0u64;
    for i in 0..iterations {
        if t.note(publisher.send_copy(u64::from(i))).is_none() && i % 16 == 0 {
            // Chunks held by a subscriber whose queue was scribbled on
            // never come back: a fresh publisher starts with a full pool.
            if let Some(p) = t.note(topic.publisher().create()) {
                publisher = p;
            }
        }
        if let Some(Some(s)) = t.note(subscriber.try_receive()) {
            sum = sum.wrapping_add(*s).wrapping_add(s.sequence());
        }
        if t.note(slice_pub.send_slice_copy(&[i, i + 1, i + 2][..(i % 4) as usize]))
            .is_none()
            && i % 16 == 0
        {
            if let Some(p) = t.note(slices.publisher().max_slice_len(16).create()) {
                slice_pub = p;
            }
        }
        if let Some(Some(s)) = t.note(slice_sub.try_receive()) {
            sum = sum.wrapping_add(s.iter().map(|&v| u64::from(v)).sum::<u64>());
        }
        // Events: pending bits and listener slots.
        t.note(notifier.notify((i % 64) as usize));
        let set = if i % 64 == 0 {
            listener.wait_timeout(Duration::from_micros(200))
        } else {
            listener.try_wait()
        };
        sum = sum.wrapping_add(set.iter().map(|id| id.value() as u64).sum::<u64>());
        if i % 64 == 0 {
            // The blocking path must give up in time, whatever the queue says.
            if let Some(s) = t.note(subscriber.receive_timeout(Duration::from_micros(200))) {
                sum = sum.wrapping_add(*s);
            }
            t.note(Ok::<_, std::fmt::Error>(subscriber.publishers()));
        }
        if i % 97 == 0 {
            // Registry slots: a port joining scans them, leaving frees one.
            if let Some(s) = t.note(topic.subscriber().create()) {
                t.note(s.try_receive().map(|s| s.map(|s| *s)));
            }
            if let Some(p) = t.note(topic.publisher().create()) {
                t.note(p.send_copy(7));
                p.update_connections();
            }
            topic.cleanup_dead_ports();
            if let Some(l) = t.note(events.listener().create()) {
                t.note(Ok::<_, std::fmt::Error>(l.try_wait()));
            }
            t.note(events.notifier().create());
        }
        if i % 251 == 0 {
            // Segment headers and the static configuration, decoded anew.
            t.note(
                node.service("victim")
                    .publish_subscribe::<u64>()
                    .open()
                    .map(|s| s.qos()),
            );
            t.note(node.service("events").event().open().map(|_| ()));
            t.note(conduit::pubsub::details(
                &conduit::Domain::new(domain).unwrap(),
                "victim",
            ));
            t.note(conduit::pubsub::list(
                &conduit::Domain::new(domain).unwrap(),
            ));
            t.note(Node::list(domain));
        }
    }
    println!("done ok={} errors={} sum={sum:x}", t.ok, t.errors);
}

/// Updates and reads every entry of a blackboard, takes the writer over,
/// joins and leaves as a reader, and reopens the blackboard (decoding its
/// configuration and key table), over and over.
fn blackboard_reader(domain: &str, iterations: u32) {
    use conduit::blackboard::Blackboard;
    let _w = watchdog(Duration::from_secs(60 + u64::from(iterations) / 100));
    let node = Node::builder()
        .name("bb-reader")
        .domain(domain)
        .create()
        .unwrap();
    let open = |create: bool| {
        let b = node
            .service("state")
            .blackboard::<u32, [u64; 4]>()
            .entries((0..8).map(|k| (k, [u64::from(k); 4])));
        if create { b.create() } else { b.open() }
    };
    let board: Blackboard<u32, [u64; 4]> = open(true).unwrap();
    let mut writer = Some(board.writer().unwrap());
    let reader = board.reader().unwrap();
    wait_for_go();
    let mut t = Tally::default();
    let mut sum = 0u64;
    for round in 0..iterations {
        if let Some(w) = &writer {
            for k in 0..8 {
                if let Some(e) = t.note(w.entry(&k)) {
                    e.update([u64::from(round); 4]);
                }
            }
        }
        for k in 0..8 {
            if let Some(e) = t.note(reader.entry(&k)) {
                if let Some(v) = t.note(e.get()) {
                    sum = sum.wrapping_add(v[0]);
                }
                sum = sum.wrapping_add(e.version());
            }
        }
        match round % 16 {
            3 => drop(t.note(board.reader())),
            7 => {
                if let Some(b) = t.note(open(false)) {
                    sum = sum.wrapping_add(b.len() as u64);
                }
            }
            11 => {
                // The old writer leaves first, then a new one takes over.
                drop(writer.take());
                writer = t.note(board.writer());
            }
            // What tools do: the listing, and a board opened without its
            // types, read as bytes.
            13 => {
                let d = conduit::Domain::new(domain).unwrap();
                if let Some(list) = t.note(conduit::blackboard::list(&d)) {
                    sum = sum.wrapping_add(list.iter().map(|b| b.entries.len() as u64).sum());
                }
                let raw = t.note(node.service("state").blackboard_raw().open());
                if let Some(r) = raw.as_ref().and_then(|raw| t.note(raw.reader())) {
                    if let Some(e) = r.entry_at(round as usize % 8) {
                        if let Some((v, _)) = t.note(e.get_with_version()) {
                            sum = sum.wrapping_add(v.len() as u64);
                        }
                    }
                }
            }
            _ => {}
        }
        if round % 8 == 0 {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
    println!("done ok={} errors={} sum={sum:x}", t.ok, t.errors);
}

/// Finds, reads and changes containers in a managed segment, reopens it
/// and lists its directory, over and over.
fn managed_reader(domain: &str, iterations: u32) {
    let _w = watchdog(Duration::from_secs(60 + u64::from(iterations) / 100));
    let builder = || Segment::builder("managed").domain(domain).size(64 << 10);
    let managed = ManagedSegment::create_with(builder()).unwrap();
    {
        let mut m = managed.lock().unwrap();
        let v = m.find_or_construct("vec", ShmVec::<u64>::new).unwrap();
        let (vec, mut ctx) = m.get(v).unwrap();
        for i in 0..40 {
            vec.push(&mut ctx, i).unwrap();
        }
        let s = m.find_or_construct("text", ShmString::new).unwrap();
        let (text, mut ctx) = m.get(s).unwrap();
        text.push_str(&mut ctx, "hello, scribbler").unwrap();
        let l = m.find_or_construct("list", ShmList::<u64>::new).unwrap();
        let (list, mut ctx) = m.get(l).unwrap();
        for i in 0..20 {
            list.push_back(&mut ctx, i).unwrap();
        }
        let h = m
            .find_or_construct("map", ShmHashMap::<u64, u64>::new)
            .unwrap();
        let (map, mut ctx) = m.get(h).unwrap();
        for i in 0..30 {
            map.insert(&mut ctx, i, i * i).unwrap();
        }
        let b = m
            .find_or_construct("boxed", ShmBox::<[u64; 4]>::empty)
            .unwrap();
        let (boxed, mut ctx) = m.get(b).unwrap();
        *boxed = ShmBox::new(&mut ctx, [1, 2, 3, 4]).unwrap();
    }
    wait_for_go();

    let mut t = Tally::default();
    let mut sum = 0u64;
    for i in 0..iterations {
        // Bounded: garbage that names a thread in the lock word holds the
        // lock until the word changes (a restore, or never).
        let Some(mut m) = t.note(managed.lock_timeout(Duration::from_millis(50))) else {
            continue;
        };
        let k = u64::from(i);
        if let Some(Some(v)) = t.note(m.find::<ShmVec<u64>>("vec")) {
            if let Some((vec, mut ctx)) = t.note(m.get(v)) {
                if let Some(s) = t.note(vec.as_slice(ctx.view())) {
                    sum = s.iter().fold(sum, |a, &x| a.wrapping_add(x));
                }
                if i % 3 == 0 {
                    t.note(vec.push(&mut ctx, k));
                } else {
                    t.note(vec.pop(ctx.view()));
                }
            }
        }
        if let Some(Some(s)) = t.note(m.find::<ShmString>("text")) {
            if let Some((text, mut ctx)) = t.note(m.get(s)) {
                if let Some(s) = t.note(text.as_str(ctx.view())) {
                    sum = sum.wrapping_add(s.len() as u64);
                }
                if i % 16 == 0 {
                    text.clear();
                }
                t.note(text.push_str(&mut ctx, "ab"));
            }
        }
        if let Some(Some(l)) = t.note(m.find::<ShmList<u64>>("list")) {
            if let Some((list, mut ctx)) = t.note(m.get(l)) {
                for item in list.iter(ctx.view()) {
                    if let Some(v) = t.note(item) {
                        sum = sum.wrapping_add(*v);
                    }
                }
                for item in list.iter_rev(ctx.view()).take(3) {
                    t.note(item);
                }
                t.note(list.push_back(&mut ctx, k));
                t.note(list.pop_front(&mut ctx));
            }
        }
        if let Some(Some(h)) = t.note(m.find::<ShmHashMap<u64, u64>>("map")) {
            if let Some((map, mut ctx)) = t.note(m.get(h)) {
                if let Some(v) = t.note(map.get(ctx.view(), &(k % 40))) {
                    sum = sum.wrapping_add(v.copied().unwrap_or(0));
                }
                if let Some(iter) = t.note(map.iter(ctx.view())) {
                    for item in iter {
                        t.note(item);
                    }
                }
                t.note(map.insert(&mut ctx, k % 50, k));
                t.note(map.remove(&mut ctx, &((k + 25) % 50)));
            }
        }
        if let Some(Some(b)) = t.note(m.find::<ShmBox<[u64; 4]>>("boxed")) {
            if let Some((boxed, ctx)) = t.note(m.get(b)) {
                if let Some(v) = t.note(boxed.get(ctx.view())) {
                    sum = sum.wrapping_add(v[0]);
                }
            }
        }
        if i % 8 == 0 {
            // Allocations of every size class, and frees, over the heap.
            let ctx = m.context();
            let size = 1 << (i as usize / 8 % 12);
            let region = ctx.region;
            if let Some(off) = t.note(ctx.heap.allocate(&region, size, 8)) {
                t.note(ctx.heap.deallocate(&region, off));
            }
            t.note(m.stats());
            t.note(m.names());
            t.note(m.find::<u64>("absent"));
        }
        drop(m);
        if i % 64 == 0 {
            // The segment header and the managed magic, validated anew.
            if let Some(again) = t.note(ManagedSegment::open_with(
                builder().open_timeout(Duration::from_millis(20)),
            )) {
                if let Some(m) = t.note(again.lock()) {
                    t.note(m.names());
                }
            }
        }
    }
    println!("done ok={} errors={} sum={sum:x}", t.ok, t.errors);
}

/// One object of the domain, mapped directly.
struct Target {
    name: String,
    _map: Mapping,
    region: Region,
    snapshot: Vec<u8>,
}

impl Target {
    fn map(name: &str) -> Option<Target> {
        let len = std::fs::metadata(format!("/dev/shm/{name}")).ok()?.len() as usize;
        if len < 128 {
            return None;
        }
        let fd = os::shm_open(&format!("/{name}")).ok()?;
        let map = Mapping::shared(&fd, len).ok()?;
        // SAFETY: the mapping is `len` bytes and lives in the same struct
        // as the region (dropped together).
        let region = unsafe { Region::new(std::ptr::NonNull::new(map.as_ptr())?, len) };
        let snapshot = (0..len)
            .map(|i| byte(&region, i).load(Ordering::Relaxed))
            .collect();
        Some(Target {
            name: name.to_owned(),
            _map: map,
            region,
            snapshot,
        })
    }

    fn word(&self, off: usize) -> &AtomicU64 {
        let p = self.region.resolve::<AtomicU64>(off & !7).unwrap();
        // SAFETY: in bounds and aligned (resolve); an atomic tolerates the
        // other processes' concurrent accesses.
        unsafe { p.as_ref() }
    }

    fn restore(&self) {
        for (i, b) in self.snapshot.iter().enumerate() {
            byte(&self.region, i).store(*b, Ordering::Relaxed);
        }
    }
}

fn byte(region: &Region, off: usize) -> &AtomicU8 {
    let p = region.resolve::<AtomicU8>(off).unwrap();
    // SAFETY: in bounds (resolve); atomics tolerate concurrent accesses;
    // the mapping outlives every use (see Target).
    unsafe { p.as_ref() }
}

/// Maps the objects of `domain` not mapped yet.
fn rescan(domain: &str, targets: &mut Vec<Target>) {
    for name in shm_objects_containing(&format!("conduit.{domain}.")) {
        if !targets.iter().any(|t| t.name == name) {
            targets.extend(Target::map(&name));
        }
    }
}

/// Scribbles over every object of `domain` until killed.
fn hostile(domain: &str, seed: u64) {
    let mut rng = Rng(seed);
    let mut targets = Vec::new();
    rescan(domain, &mut targets);
    assert!(!targets.is_empty(), "nothing to scribble on");
    let mut announced = false;
    let parent = std::os::unix::process::parent_id();
    for round in 0u64.. {
        if round % 256 == 255 {
            // The parent kills us; should it die first, stop anyway.
            if std::os::unix::process::parent_id() != parent {
                return;
            }
            rescan(domain, &mut targets);
        }
        let t = &targets[rng.below(targets.len())];
        if rng.below(64) == 0 {
            t.restore();
            continue;
        }
        let len = t.region.len();
        for _ in 0..1 + rng.below(4) {
            // Where: the segment header, the first lines of the data area
            // (service config and registry, managed root, lock and heap
            // state), or anywhere (queues, blocks, containers).
            let off = match rng.below(4) {
                0 => rng.below(128),
                1 => 128 + rng.below(len.min(4096) - 128),
                2 => rng.below(len),
                // A word in use (non-zero: an index, offset, length or
                // lock word) is the more interesting victim.
                _ => (0..8)
                    .map(|_| rng.below(len))
                    .find(|&o| t.word(o).load(Ordering::Relaxed) != 0)
                    .unwrap_or(0),
            };
            let w = t.word(off);
            match rng.below(7) {
                0 => w.store(rng.next(), Ordering::Relaxed),
                1 => w.store(rng.next() % 300, Ordering::Relaxed),
                2 => {
                    w.fetch_xor(1 << rng.below(64), Ordering::Relaxed);
                }
                3 => {
                    // A word from elsewhere: a plausible offset or index.
                    let v = t.word(rng.below(len)).load(Ordering::Relaxed);
                    w.store(v, Ordering::Relaxed);
                }
                4 => w.store(
                    [u64::MAX, u64::MAX - 1, 1 << 63, u64::from(u32::MAX), 0][rng.below(5)],
                    Ordering::Relaxed,
                ),
                5 => {
                    let v = w.load(Ordering::Relaxed);
                    w.store(
                        v.wrapping_add(rng.next() % 8).wrapping_sub(4),
                        Ordering::Relaxed,
                    );
                }
                _ => byte(&t.region, off).store(rng.next() as u8, Ordering::Relaxed),
            }
        }
        if !announced {
            announced = true;
            println!("scribbling");
        }
        if round % 8 == 0 {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

#[test]
fn pubsub_survives_a_scribbler() {
    scenario("corrupt-ps", "pubsub_reader", 3000);
}

#[test]
fn blackboard_survives_a_scribbler() {
    scenario("corrupt-bb", "blackboard_reader", 3000);
}

#[test]
fn managed_segment_survives_a_scribbler() {
    scenario("corrupt-mg", "managed_reader", 3000);
}

/// Queue indices at the ends of their range: a head or a return tail of
/// `u64::MAX` (or just below) must not overflow the arithmetic of either
/// side (overflow checks are on in test builds).
#[test]
fn queue_indices_at_their_limits() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("corrupt-ix");
    for (target, value) in [
        ("head", u64::MAX),
        ("head", u64::MAX - 1),
        ("head", u64::MAX - 4),
        ("ret_tail", u64::MAX),
        ("ret_tail", u64::MAX - 1),
    ] {
        let node = Node::builder()
            .name("victim")
            .domain(&domain)
            .create()
            .unwrap();
        let topic = node
            .service("limits")
            .publish_subscribe::<u64>()
            .max_publishers(1)
            .max_subscribers(1)
            .subscriber_buffer(4)
            .max_borrowed(1)
            .create()
            .unwrap();
        let publisher = topic.publisher().create().unwrap();
        let subscriber = topic.subscriber().create().unwrap();
        let raw = Segment::builder(&conduit::ServiceKind::PublishSubscribe.segment_name("limits"))
            .domain(&domain)
            .open()
            .unwrap();
        // Offsets from pubsub/layout.rs with one publisher and one
        // subscriber: header line, 80 config words, one slot each, then
        // the connection: link, ret_tail, head, entries (16 B each).
        let conn = 64 + 80 * 8 + 64 + 64;
        let word = |off: usize| {
            let p = raw.data().resolve::<AtomicU64>(off).unwrap();
            // SAFETY: in bounds and aligned (resolve); atomics.
            unsafe { &*p.as_ptr() }
        };
        let (ret_tail, head, entries) = (word(conn + 64), word(conn + 128), conn + 192);
        publisher.send_copy(1).unwrap(); // connects
        if target == "ret_tail" {
            ret_tail.store(value, Ordering::Relaxed);
        }
        for round in 0..12u64 {
            let _ = publisher.send_copy(round);
            if target == "head" && round % 3 == 0 {
                head.store(value, Ordering::Relaxed);
                // An entry whose length word disagrees with its sequence
                // looks like a drop by the publisher: the subscriber then
                // follows the shared head.
                for e in 0..4 {
                    word(entries + 16 * e + 8).fetch_xor(1 << 40, Ordering::Relaxed);
                }
            }
            for _ in 0..3 {
                // Data or an error, both fine; a panic is not.
                drop(subscriber.try_receive());
            }
            publisher.update_connections();
        }
        drop((subscriber, publisher, topic, raw, node));
    }
    remove_domain(&domain);
}
