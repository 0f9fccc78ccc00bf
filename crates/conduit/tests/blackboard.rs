//! Blackboards across real processes: readers in other processes never
//! see a torn value while the writer updates continuously; a writer
//! SIGKILLed at random points leaves every entry readable with a complete
//! value and a new writer takes over; killed readers change nothing; wrong
//! types, unknown keys and a second writer are named errors.

mod common;

use std::process::Child;
use std::time::Duration;

use common::{Rng, read_line, shm_objects_containing, spawn_child, unique, watchdog};
use conduit::blackboard::{EntryError, PortCreateError, ReadError, WaitError};
use conduit::node::Node;
use conduit::prelude::*;
use conduit::service::ServiceError;

/// A value whose 32 words must agree: a torn read shows as words that
/// differ. Each word is `key << 40 | counter`.
type Value = [u64; 32];
const BOARD: &str = "robot/state";
const KEYS: u32 = 4;

fn value(key: u32, counter: u64) -> Value {
    [u64::from(key) << 40 | counter; 32]
}

/// Checks that `v` is a complete value of entry `key`; returns its counter.
fn counter_of(key: u32, v: &Value) -> u64 {
    assert!(v.iter().all(|w| *w == v[0]), "torn value: {v:?}");
    assert_eq!(v[0] >> 40, u64::from(key), "value of another entry");
    v[0] & ((1 << 40) - 1)
}

fn node(domain: &str, name: &str) -> Node {
    Node::builder().name(name).domain(domain).create().unwrap()
}

fn board(node: &Node) -> Blackboard<u32, Value> {
    node.service(BOARD)
        .blackboard::<u32, Value>()
        .entries((0..KEYS).map(|k| (k, value(k, 0))))
        .open_or_create()
        .unwrap()
}

/// The blackboard whose writer wakes waiting readers.
fn notifying_board(node: &Node) -> Blackboard<u32, Value> {
    node.service("robot/watched")
        .blackboard::<u32, Value>()
        .entry(0, value(0, 0))
        .notify_changes(true)
        .open_or_create()
        .unwrap()
}

/// The blackboard whose entries 0 and 1 are bound to events
/// [`EVENT_OF_0`] and [`EVENT_OF_0`] + 1 (entry 2 is not bound), and its
/// event service, of the same name.
const BOUND: &str = "robot/bound";
const EVENT_OF_0: usize = 5;

fn bound_board(node: &Node) -> (Blackboard<u32, Value>, EventService) {
    let board = node
        .service(BOUND)
        .blackboard::<u32, Value>()
        .entries((0..3).map(|k| (k, value(k, 0))))
        .bind_event(0, EVENT_OF_0)
        .bind_event(1, EVENT_OF_0 + 1)
        .open_or_create()
        .unwrap();
    let events = node
        .service(BOUND)
        .event()
        .max_event_id(15)
        .open_or_create()
        .unwrap();
    (board, events)
}

fn assert_clean(domain: &str) {
    let _ = Node::cleanup(domain);
    let left = shm_objects_containing(&format!("conduit.{domain}."));
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

fn wait_ok(mut child: Child) {
    let status = child.wait().unwrap();
    assert!(status.success(), "child failed: {status}");
}

fn dispatch(role: &str, args: &[String]) {
    let domain = &args[0];
    let node = node(domain, role);
    let board = board(&node);
    match role {
        // Updates every entry `rounds` times, counter == version.
        "writer" => {
            let rounds: u64 = args[1].parse().unwrap();
            let writer = board.writer().unwrap();
            let entries: Vec<_> = (0..KEYS).map(|k| writer.entry(&k).unwrap()).collect();
            for round in 1..=rounds {
                for (k, e) in (0..KEYS).zip(&entries) {
                    assert_eq!(e.update(value(k, round)), round);
                }
            }
            println!("done");
        }
        // Updates forever (until killed), counter = version before + 1.
        "endless-writer" => {
            let writer = board.writer().unwrap();
            let entries: Vec<_> = (0..KEYS).map(|k| writer.entry(&k).unwrap()).collect();
            println!("writing");
            loop {
                for (k, e) in (0..KEYS).zip(&entries) {
                    // Half of the updates through the loan form.
                    let next = e.version() + 1;
                    if next % 2 == 0 {
                        e.update(value(k, next));
                    } else {
                        let mut loan = e.loan_uninit().write(value(k, 0));
                        *loan = value(k, next);
                        loan.update();
                    }
                }
            }
        }
        // Reads every entry until each reaches version `rounds`: values
        // complete, of their entry, counter == version, never going back.
        "reader" => {
            let rounds: u64 = args[1].parse().unwrap();
            let reader = board.reader().unwrap();
            let entries: Vec<_> = (0..KEYS).map(|k| reader.entry(&k).unwrap()).collect();
            println!("ready");
            let mut last = vec![0u64; KEYS as usize];
            let (mut reads, mut retries, mut contended) = (0u64, 0u64, 0u64);
            let mut histogram = [0u64; 4];
            while last.iter().any(|v| *v < rounds) {
                for (k, e) in (0..KEYS).zip(&entries) {
                    match e.get_counting() {
                        Ok((v, version, attempts)) => {
                            let counter = counter_of(k, &v);
                            assert_eq!(counter, version, "value of another version");
                            assert!(version >= last[k as usize], "version went back");
                            last[k as usize] = version;
                            reads += 1;
                            retries += u64::from(attempts);
                            histogram[(attempts as usize).min(3)] += 1;
                        }
                        Err(ReadError::Contended { .. }) => contended += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            println!(
                "reads {reads} retries {retries} contended {contended} attempts0..3+ {histogram:?}"
            );
        }
        // Waits (futex, or the WaitSet on the wake-up descriptor) for
        // every change of entry 0 until version `rounds`.
        "waiter" | "fd-waiter" => {
            let rounds: u64 = args[1].parse().unwrap();
            let board = notifying_board(&node);
            let mut reader = board.reader().unwrap();
            // Sleep at once, so that every wait goes through the futex.
            reader.set_spin(Spin::NONE);
            let set = conduit::waitset::WaitSet::new().unwrap();
            let _guard = (role == "fd-waiter").then(|| set.attach(&reader).unwrap());
            let e = reader.entry(&0).unwrap();
            let mut seen = e.version();
            println!("waiting");
            let mut wakeups = 0u64;
            while seen < rounds {
                let now = if role == "waiter" {
                    e.wait_changed_since(seen, None).unwrap()
                } else {
                    match e.poll_changed_since(seen) {
                        Some(v) => v,
                        None => {
                            set.wait().unwrap();
                            continue;
                        }
                    }
                };
                assert!(now > seen);
                wakeups += 1;
                let (v, version) = e.get_with_version().unwrap();
                assert_eq!(counter_of(0, &v), version);
                seen = version;
            }
            println!("done after {wakeups} wake-ups");
        }
        // Waits for every change of entry 0 until version `rounds` through
        // an event listener (its futex, or a WaitSet on its descriptor):
        // the reader learns the id from the entry, opens the board
        // without giving entries, and must never hear of entry 1 (never
        // updated) or entry 2 (not bound).
        "listener-waiter" | "listener-waitset" => {
            let rounds: u64 = args[1].parse().unwrap();
            let board = node
                .service(BOUND)
                .blackboard::<u32, Value>()
                .open()
                .unwrap();
            let events = node.service(BOUND).event().open().unwrap();
            let reader = board.reader().unwrap();
            let e = reader.entry(&0).unwrap();
            let id = e.event_id().expect("entry 0 is bound");
            assert_eq!(reader.entry(&2).unwrap().event_id(), None);
            let listener = events.listener().spin(Spin::NONE).create().unwrap();
            let set = conduit::waitset::WaitSet::new().unwrap();
            let _guard = (role == "listener-waitset").then(|| set.attach(&listener).unwrap());
            let mut seen = e.version();
            println!("waiting");
            let mut wakeups = 0u64;
            while seen < rounds {
                let ids = if role == "listener-waiter" {
                    listener.wait()
                } else {
                    // Only an empty `try_wait` re-arms the descriptor.
                    let ids = listener.try_wait();
                    if ids.is_empty() {
                        set.wait().unwrap();
                        continue;
                    }
                    ids
                };
                assert!(
                    ids.iter().all(|i| i == id),
                    "ids {:?}",
                    ids.iter().collect::<Vec<_>>()
                );
                wakeups += 1;
                // One id may stand for several updates, or for one already seen.
                if e.poll_changed_since(seen).is_some() {
                    let (v, version) = e.get_with_version().unwrap();
                    assert_eq!(counter_of(0, &v), version);
                    assert!(version > seen);
                    seen = version;
                }
            }
            println!("done after {wakeups} wake-ups");
        }
        // Reads forever (until killed).
        "endless-reader" => {
            let reader = board.reader().unwrap();
            let e = reader.entry(&0).unwrap();
            println!("reading");
            loop {
                let _ = e.get();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

child_entry!(dispatch);

#[test]
fn ports_are_send() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<Blackboard<u32, Value>>();
    sync::<Blackboard<u32, Value>>();
    send::<conduit::blackboard::Writer<u32, Value>>();
    send::<conduit::blackboard::Reader<u32, Value>>();
}

/// Two reader processes wait for every change of an entry, one on its
/// futex, one in a WaitSet on its wake-up descriptor, while the writer
/// updates it with random pauses (so that they fall asleep): a lost
/// wake-up leaves a reader asleep after the last update, and the
/// watchdog fails the test.
#[test]
fn readers_wait_for_changes_without_losing_a_wakeup() {
    let _w = watchdog(Duration::from_secs(120));
    let domain = unique("bb-wait");
    let rounds = 400u64;
    let node = node(&domain, "parent");
    let board = notifying_board(&node);
    let writer = board.writer().unwrap();
    let mut waiters: Vec<Child> = ["waiter", "fd-waiter"]
        .iter()
        .map(|role| spawn_child(role, &[&domain, &rounds.to_string()]))
        .collect();
    for w in &mut waiters {
        assert_eq!(read_line(w), "waiting");
    }
    let entry = writer.entry(&0).unwrap();
    let mut rng = Rng(u64::from(std::process::id()));
    for round in 1..=rounds {
        assert_eq!(entry.update(value(0, round)), round);
        if rng.below(4) == 0 {
            std::thread::sleep(Duration::from_micros(rng.range(0, 400)));
        }
    }
    for mut w in waiters {
        let report = read_line(&mut w);
        eprintln!("{report}");
        assert!(report.starts_with("done"), "{report}");
        wait_ok(w);
    }
    // A wait with a timeout, and on a blackboard that notifies nobody.
    let reader = board.reader().unwrap();
    assert_eq!(
        reader
            .entry(&0)
            .unwrap()
            .wait_changed_since(rounds, Some(Duration::from_millis(10))),
        Err(WaitError::Timeout)
    );
    assert_eq!(
        reader.entry(&0).unwrap().wait_changed_since(0, None),
        Ok(rounds)
    );
    let quiet = crate::board(&node);
    let quiet_reader = quiet.reader().unwrap();
    assert!(matches!(
        quiet_reader.entry(&0).unwrap().wait_changed_since(0, None),
        Err(WaitError::NotNotifying { .. })
    ));
    assert!(matches!(
        node.service("robot/watched")
            .blackboard::<u32, Value>()
            .notify_changes(false)
            .open(),
        Err(ServiceError::IncompatibleConfig { .. })
    ));
    drop((writer, reader, board, quiet_reader, quiet, node));
    assert_clean(&domain);
}

/// Two reader processes wait for every change of an entry bound to an
/// event id through an event `Listener` (one on its futex, one in a
/// WaitSet), while this process's writer, given a notifier, updates that
/// entry with random pauses and an unbound entry in between: a lost
/// notification leaves a reader asleep and the watchdog fails the test;
/// a notification for the unbound entry fails the reader.
#[test]
fn readers_wait_for_changes_through_a_bound_event_id() {
    let _w = watchdog(Duration::from_secs(120));
    let domain = unique("bb-bound");
    let rounds = 400u64;
    let node = node(&domain, "parent");
    let (board, events) = bound_board(&node);
    assert_eq!(board.event_id(&0), Some(EventId(EVENT_OF_0)));
    assert_eq!(board.event_id(&2), None);
    let mut writer = board.writer().unwrap();
    writer
        .notify_through(events.notifier().create().unwrap())
        .unwrap();
    let mut waiters: Vec<Child> = ["listener-waiter", "listener-waitset"]
        .iter()
        .map(|role| spawn_child(role, &[&domain, &rounds.to_string()]))
        .collect();
    for w in &mut waiters {
        assert_eq!(read_line(w), "waiting");
    }
    let entry = writer.entry(&0).unwrap();
    let unbound = writer.entry(&2).unwrap();
    let mut rng = Rng(u64::from(std::process::id()));
    for round in 1..=rounds {
        assert_eq!(entry.update(value(0, round)), round);
        unbound.update(value(2, round));
        if rng.below(4) == 0 {
            std::thread::sleep(Duration::from_micros(rng.range(0, 400)));
        }
    }
    for mut w in waiters {
        let report = read_line(&mut w);
        eprintln!("{report}");
        assert!(report.starts_with("done"), "{report}");
        wait_ok(w);
    }
    drop((writer, events, board, node));
    assert_clean(&domain);
}

/// What binding an entry to an event can get wrong is a named error.
#[test]
fn bad_event_bindings_are_named_errors() {
    use conduit::blackboard::NotifyThroughError;
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("bb-bind-errors");
    let node = node(&domain, "parent");
    let service = || node.service(BOUND).blackboard::<u32, u64>();
    // A key not given with `entry` first, and an id above the limit.
    assert!(matches!(
        service().entry(0, 0).bind_event(1, 1).create(),
        Err(ServiceError::InvalidConfig(_))
    ));
    assert!(matches!(
        service().entry(0, 0).bind_event(0, 1 << 20).create(),
        Err(ServiceError::InvalidConfig(_))
    ));
    let board = service()
        .entry(0, 0)
        .entry(1, 0)
        .bind_event(0, 9)
        .create()
        .unwrap();
    // Openers that bind: the same id is fine, another id or an unbound
    // entry is not.
    service().entry(0, 0).bind_event(0, 9).open().unwrap();
    for (key, id) in [(0, 8), (1, 9)] {
        assert!(matches!(
            service().entry(key, 0).bind_event(key, id).open(),
            Err(ServiceError::IncompatibleConfig { .. })
        ));
    }
    // A sink that cannot notify the bound id.
    let small = node
        .service(BOUND)
        .event()
        .max_event_id(3)
        .create()
        .unwrap();
    let mut writer = board.writer().unwrap();
    assert_eq!(
        writer.notify_through(small.notifier().create().unwrap()),
        Err(NotifyThroughError::EventIdTooLarge {
            id: EventId(9),
            max: EventId(3)
        })
    );
    // Without a sink the writer notifies nothing; unbound entries never.
    let listener = small.listener().create().unwrap();
    writer.entry(&0).unwrap().update(1);
    assert!(listener.try_wait().is_empty());
    drop((listener, writer, small, board, node));
    assert_clean(&domain);
}

/// A blackboard opened without its types (as tools do): keys and values
/// are bytes, checked against the types' sizes; the listing shows every
/// entry; a raw writer takes the one writer slot.
#[test]
fn raw_blackboards_read_and_write_bytes_and_are_listed() {
    use conduit::blackboard::{self, UpdateError};
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("bb-raw");
    let node = node(&domain, "parent");
    let board = node
        .service("config")
        .blackboard::<u32, [u8; 12]>()
        .entry(7, *b"seven\0\0\0\0\0\0\0")
        .entry(9, [0; 12])
        .bind_event(9, 4)
        .create()
        .unwrap();
    assert!(matches!(
        node.service("nothing").blackboard_raw().open(),
        Err(ServiceError::NotFound(_))
    ));
    let raw = node.service("config").blackboard_raw().open().unwrap();
    assert_eq!(
        raw.keys(),
        vec![7u32.to_le_bytes().to_vec(), 9u32.to_le_bytes().to_vec()]
    );
    assert_eq!((raw.key_type().size, raw.value_type().size), (4, 12));
    assert_eq!(raw.event_id(1), Some(EventId(4)));
    let writer = raw.writer().unwrap();
    assert!(matches!(
        board.writer(),
        Err(PortCreateError::WriterExists { .. })
    ));
    assert_eq!(
        writer.update(&9u32.to_le_bytes(), b"nine, twelve").unwrap(),
        1
    );
    assert!(matches!(
        writer.update(&9u32.to_le_bytes(), b"short"),
        Err(UpdateError::WrongValueSize {
            expected: 12,
            size: 5,
            ..
        })
    ));
    assert!(matches!(
        writer.update(&[9, 0], b"nine, twelve"),
        Err(UpdateError::WrongKeySize {
            expected: 4,
            size: 2,
            ..
        })
    ));
    assert!(matches!(
        writer.update(&8u32.to_le_bytes(), b"nine, twelve"),
        Err(UpdateError::UnknownKey { .. })
    ));
    assert!(matches!(
        writer.update_at(2, b"nine, twelve"),
        Err(UpdateError::UnknownKey { .. })
    ));
    // The typed reader sees the raw writer's bytes, and the other way round.
    let typed = board.reader().unwrap();
    assert_eq!(
        typed.entry(&9).unwrap().get_with_version(),
        Ok((*b"nine, twelve", 1))
    );
    let reader = raw.reader().unwrap();
    let seven = reader.entry(&7u32.to_le_bytes()).unwrap();
    assert_eq!(
        seven.get_with_version(),
        Ok((b"seven\0\0\0\0\0\0\0".to_vec(), 0))
    );
    assert_eq!(seven.event_id(), None);
    assert_eq!(reader.entry_at(1).unwrap().key(), 9u32.to_le_bytes());
    assert!(reader.entry_at(2).is_none());
    assert!(matches!(
        reader.entry(&[1]),
        Err(EntryError::WrongKeySize { .. })
    ));
    // The listing.
    let d = conduit::Domain::new(&domain).unwrap();
    let info = blackboard::inspect(&d, "config").unwrap().unwrap();
    assert_eq!(info.entries.len(), 2);
    assert_eq!(info.entries[1].value.as_deref(), Some(&b"nine, twelve"[..]));
    assert_eq!(
        (info.entries[1].version, info.entries[1].event),
        (1, Some(EventId(4)))
    );
    assert!(info.writer.is_some());
    assert_eq!(info.readers.len(), 2);
    assert_eq!(blackboard::list(&d).unwrap(), vec![info]);
    assert!(blackboard::inspect(&d, "nothing").unwrap().is_none());
    drop((reader, typed, writer, raw, board, node));
    assert_clean(&domain);
}

#[test]
fn readers_in_other_processes_never_see_a_torn_value() {
    let _w = watchdog(Duration::from_secs(120));
    let domain = unique("bb-torn");
    let rounds = "20000";
    let node = node(&domain, "parent");
    let board = board(&node);
    let mut readers: Vec<Child> = (0..2)
        .map(|_| spawn_child("reader", &[&domain, rounds]))
        .collect();
    for r in &mut readers {
        assert_eq!(read_line(r), "ready");
    }
    let mut writer = spawn_child("writer", &[&domain, rounds]);
    // The parent reads too, while the writer runs.
    let reader = board.reader().unwrap();
    let entries: Vec<_> = (0..KEYS).map(|k| reader.entry(&k).unwrap()).collect();
    let rounds: u64 = rounds.parse().unwrap();
    let mut done = false;
    while !done {
        done = true;
        for (k, e) in (0..KEYS).zip(&entries) {
            if let Ok((v, version)) = e.get_with_version() {
                assert_eq!(counter_of(k, &v), version);
                done &= version == rounds;
            } else {
                done = false;
            }
        }
    }
    assert_eq!(read_line(&mut writer), "done");
    wait_ok(writer);
    for mut r in readers {
        let stats = read_line(&mut r);
        eprintln!("reader: {stats}");
        assert!(stats.starts_with("reads "), "{stats}");
        wait_ok(r);
    }
    drop(entries);
    drop((reader, board, node));
    assert_clean(&domain);
}

/// Reads every entry once: each must be a complete value of its entry.
/// Returns the versions.
fn check_every_entry(reader: &conduit::blackboard::Reader<u32, Value>) -> Vec<u64> {
    (0..KEYS)
        .map(|k| {
            let (v, version) = reader
                .entry(&k)
                .unwrap()
                .get_with_version()
                .expect("no writer runs: the read succeeds");
            let counter = counter_of(k, &v);
            assert!(counter <= version, "counter {counter} > version {version}");
            version
        })
        .collect()
}

#[test]
fn a_writer_killed_at_random_points_leaves_every_entry_readable() {
    let _w = watchdog(Duration::from_secs(240));
    let domain = unique("bb-kill");
    let node = node(&domain, "parent");
    let board = board(&node);
    let reader = board.reader().unwrap();
    let iterations = std::env::var("CONDUIT_BB_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let seed = std::process::id() as u64;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let mut last = check_every_entry(&reader);
    for _ in 0..iterations {
        // The new writer takes over the dead one's slot.
        let mut writer = spawn_child("endless-writer", &[&domain]);
        assert_eq!(read_line(&mut writer), "writing");
        std::thread::sleep(Duration::from_micros(rng.range(0, 3000)));
        writer.kill().unwrap();
        writer.wait().unwrap();
        let now = check_every_entry(&reader);
        for (k, (a, b)) in last.iter().zip(&now).enumerate() {
            assert!(b >= a, "entry {k} went back from version {a} to {b}");
        }
        last = now;
    }
    assert!(last.iter().all(|v| *v > 0), "the writers updated: {last:?}");
    // A writer in this process takes over the last dead one, too.
    let writer = board.writer().unwrap();
    let version = writer.entry(&1).unwrap().update(value(1, 7));
    assert!(version > last[1]);
    assert_eq!(reader.entry(&1).unwrap().get().unwrap(), value(1, 7));
    drop((writer, reader, board, node));
    assert_clean(&domain);
}

#[test]
fn killed_readers_change_nothing() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("bb-readers");
    let node = node(&domain, "parent");
    let board = node
        .service(BOARD)
        .blackboard::<u32, Value>()
        .entries((0..KEYS).map(|k| (k, value(k, 0))))
        .max_readers(2)
        .create()
        .unwrap();
    let writer = board.writer().unwrap();
    let mut readers: Vec<Child> = (0..2)
        .map(|_| spawn_child("endless-reader", &[&domain]))
        .collect();
    for r in &mut readers {
        assert_eq!(read_line(r), "reading");
    }
    assert_eq!(board.readers(), 2);
    for k in 0..KEYS {
        writer.entry(&k).unwrap().update(value(k, 1));
    }
    for mut r in readers {
        r.kill().unwrap();
        r.wait().unwrap();
    }
    // Both slots are taken by dead readers: creating a reader reclaims them.
    let mine = board.reader().unwrap();
    let also = board.reader().unwrap();
    assert!(matches!(
        board.reader(),
        Err(PortCreateError::ExceedsMaxReaders { max: 2, .. })
    ));
    for k in 0..KEYS {
        let e = writer.entry(&k).unwrap();
        assert_eq!(e.update(value(k, 2)), 2);
        assert_eq!(
            mine.entry(&k).unwrap().get_with_version(),
            Ok((value(k, 2), 2))
        );
        assert!(also.entry(&k).unwrap().changed_since(1));
        assert!(!also.entry(&k).unwrap().changed_since(2));
    }
    drop((mine, also, writer, board, node));
    assert_clean(&domain);
}

#[test]
fn wrong_types_unknown_keys_and_a_second_writer_are_named_errors() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("bb-errors");
    let node = node(&domain, "parent");
    let service = || node.service(BOARD);
    assert!(matches!(
        service().blackboard::<u32, Value>().open(),
        Err(ServiceError::NotFound(_))
    ));
    assert!(matches!(
        service().blackboard::<u32, Value>().create(),
        Err(ServiceError::InvalidConfig(_))
    ));
    assert!(matches!(
        service()
            .blackboard::<u32, u64>()
            .entry(1, 1)
            .entry(1, 2)
            .create(),
        Err(ServiceError::InvalidConfig(_))
    ));
    let board = board(&node);
    assert!(matches!(
        service().blackboard::<u32, u64>().open(),
        Err(ServiceError::IncompatibleType { .. })
    ));
    assert!(matches!(
        service().blackboard::<u64, Value>().open(),
        Err(ServiceError::IncompatibleType { .. })
    ));
    assert!(matches!(
        service()
            .blackboard::<u32, Value>()
            .entry(99, value(99, 0))
            .open(),
        Err(ServiceError::IncompatibleConfig { .. })
    ));
    // Opening with no entries, or a subset of them, is fine.
    let opened = service().blackboard::<u32, Value>().open().unwrap();
    assert_eq!(opened.keys(), (0..KEYS).collect::<Vec<_>>());
    service()
        .blackboard::<u32, Value>()
        .entry(2, value(2, 5))
        .open()
        .unwrap();
    let writer = board.writer().unwrap();
    assert!(matches!(
        opened.writer(),
        Err(PortCreateError::WriterExists { .. })
    ));
    assert!(matches!(
        writer.entry(&KEYS),
        Err(EntryError::UnknownKey { .. })
    ));
    let reader = opened.reader().unwrap();
    assert!(matches!(
        reader.entry(&KEYS),
        Err(EntryError::UnknownKey { .. })
    ));
    // The initial values, version 0.
    assert_eq!(
        reader.entry(&3).unwrap().get_with_version(),
        Ok((value(3, 0), 0))
    );
    drop(writer);
    // The writer's slot is free again once it is dropped.
    let writer = opened.writer().unwrap();
    assert_eq!(writer.entry(&3).unwrap().update(value(3, 1)), 1);
    drop((writer, reader, opened, board, node));
    assert_clean(&domain);
}
