//! Publish/subscribe with nodes and services, across real processes:
//! typed and slice payloads, QoS policies, blocking receive, crash
//! recovery with SIGKILL, corrupted shared state, and a stress test.

mod common;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{read_line, shm_objects_containing, spawn_child, unique, watchdog};
use conduit::node::{Node, NodeState};
use conduit::prelude::*;
use conduit::pubsub::{LoanError, RawType, ReceiveError, SendError};
use conduit::service::{PortId, ServiceError};

#[derive(ShmSafe, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct Pose {
    x: f64,
    y: f64,
    seq: u64,
}

#[derive(ShmSafe, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct Stamp {
    publisher: u64,
    checksum: u64,
}

fn node(domain: &str, name: &str) -> Node {
    Node::builder().name(name).domain(domain).create().unwrap()
}

fn kill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn assert_clean(domain: &str) {
    let _ = Node::cleanup(domain);
    let left = shm_objects_containing(&format!("conduit.{domain}."));
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

fn dispatch(role: &str, args: &[String]) {
    let domain = &args[0];
    let svc = &args[1];
    let node = node(domain, role);
    match role {
        // Publishes `n` poses, waiting for the subscriber first.
        "publisher" => {
            let n: u64 = args[2].parse().unwrap();
            let topic = node
                .service(svc)
                .publish_subscribe::<Pose>()
                .open_or_create()
                .unwrap();
            let publisher = topic.publisher().create().unwrap();
            println!("ready");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            for i in 1..=n {
                publisher
                    .loan_uninit()
                    .unwrap()
                    .write(Pose {
                        x: i as f64,
                        y: -(i as f64),
                        seq: i,
                    })
                    .send()
                    .unwrap();
            }
            println!("sent");
            std::io::stdin().read_line(&mut line).unwrap();
        }
        // Publishes `n` poses on a service opened with a run-time type
        // (as the C and Python bindings do): `Pose`'s name, size and
        // alignment written out, the fingerprint given by the parent.
        "raw_publisher" => {
            let n: u64 = args[2].parse().unwrap();
            let fingerprint = u64::from_str_radix(&args[3], 16).unwrap();
            let pose = RawType {
                name: "Pose".to_owned(),
                size: 24,
                align: 8,
                fingerprint,
            };
            let topic = node
                .service(svc)
                .publish_subscribe_raw(pose)
                .open_or_create()
                .unwrap();
            let publisher = topic.publisher().create().unwrap();
            assert_eq!(publisher.max_bytes(), 24);
            println!("ready");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            for i in 1..=n {
                let mut sample = publisher.loan_zeroed(24).unwrap();
                sample[0..8].copy_from_slice(&(i as f64).to_ne_bytes());
                sample[8..16].copy_from_slice(&(-(i as f64)).to_ne_bytes());
                sample[16..24].copy_from_slice(&i.to_ne_bytes());
                sample.send().unwrap();
            }
            println!("sent");
            std::io::stdin().read_line(&mut line).unwrap();
        }
        // Sends 3 samples and then hangs until killed.
        // Last words: sends `n` poses (seq 1..=n, x = 1.5 × seq) to the
        // subscribers already there, prints "sent", then exits ("exit") or
        // waits to be killed ("hang").
        "publisher_last_words" => {
            let n: u64 = args[2].parse().unwrap();
            let topic = last_words_topic(&node, svc);
            let publisher = topic.publisher().create().unwrap();
            println!("{:016x}", publisher.id());
            for seq in 1..=n {
                publisher.send_copy(last_words_pose(seq)).unwrap();
            }
            println!("sent");
            if args[3] == "hang" {
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        // A subscriber that never reads: prints "ready", then drops
        // everything and exits when stdin says so (or is killed first).
        "subscriber_silent" => {
            let topic = last_words_topic(&node, svc);
            let subscriber = topic.subscriber().create().unwrap();
            println!("ready");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            drop(subscriber);
        }
        "publisher_hang" => {
            let topic = node
                .service(svc)
                .publish_subscribe::<Pose>()
                .max_publishers(1)
                .open_or_create()
                .unwrap();
            let publisher = topic.publisher().create().unwrap();
            println!("{:016x}", publisher.id());
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            for i in 1..=3 {
                publisher
                    .send_copy(Pose {
                        seq: i,
                        ..Default::default()
                    })
                    .unwrap();
            }
            println!("sent");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        // Receives and holds `hold` samples, then hangs until killed.
        "subscriber_hold" => {
            let hold: usize = args[2].parse().unwrap();
            let topic = node
                .service(svc)
                .publish_subscribe::<Pose>()
                .open()
                .unwrap();
            let subscriber = topic.subscriber().create().unwrap();
            println!("ready");
            let mut held = Vec::new();
            while held.len() < hold {
                held.push(subscriber.receive_timeout(Duration::from_secs(5)).unwrap());
            }
            println!("holding");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        // Waits for a line, then receives `n` samples and reports them.
        "subscriber_slow" => {
            let n: usize = args[2].parse().unwrap();
            let topic = node
                .service(svc)
                .publish_subscribe::<Pose>()
                .open()
                .unwrap();
            let subscriber = topic.subscriber().create().unwrap();
            println!("ready");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            let mut seqs = Vec::new();
            for _ in 0..n {
                let s = subscriber.receive_timeout(Duration::from_secs(5)).unwrap();
                seqs.push(s.seq.to_string());
            }
            println!("{}", seqs.join(","));
        }
        // Creates the service segment and hangs inside its initialiser.
        "hang_in_create" => {
            let _ = conduit::shm::Segment::builder(
                &conduit::ServiceKind::PublishSubscribe.segment_name(svc),
            )
            .domain(domain)
            .size(4096)
            .init(|_| {
                println!("initializing");
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
            .create();
        }
        // Stress publisher: `n` slices with sequence and checksum.
        "stress_pub" => {
            let n: u64 = args[2].parse().unwrap();
            let topic = stress_topic(&node, svc);
            let publisher = topic.publisher().max_slice_len(64).create().unwrap();
            println!("ready");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            for i in 1..=n {
                let len = (i % 64) as usize + 1;
                let mut sample = publisher
                    .loan_slice_uninit(len)
                    .unwrap()
                    .write_from_fn(|k| i.wrapping_mul(31).wrapping_add(k as u64));
                let checksum = sample.iter().fold(0u64, |a, v| a.rotate_left(5) ^ v);
                *sample.header_mut() = Stamp {
                    publisher: publisher.id().0,
                    checksum,
                };
                sample.send().unwrap();
            }
            println!("done {}", publisher.dropped());
            std::io::stdin().read_line(&mut line).unwrap();
        }
        // Stress subscriber: checks every sample until told to stop.
        "stress_sub" => {
            let topic = stress_topic(&node, svc);
            let subscriber = topic.subscriber().create().unwrap();
            println!("ready");
            let mut last: std::collections::HashMap<u64, u64> = Default::default();
            let mut received = 0u64;
            let stdin_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = stdin_done.clone();
            std::thread::spawn(move || {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).unwrap();
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            loop {
                match subscriber.receive_timeout(Duration::from_millis(20)) {
                    Ok(sample) => {
                        let h = *sample.header();
                        let checksum = sample.iter().fold(0u64, |a, v| a.rotate_left(5) ^ v);
                        assert_eq!(checksum, h.checksum, "torn sample");
                        let seq = sample.sequence();
                        let first = sample[0].wrapping_sub(0);
                        assert_eq!(first, seq.wrapping_mul(31), "payload/sequence mismatch");
                        let prev = last.insert(h.publisher, seq).unwrap_or(0);
                        assert!(seq > prev, "duplicate or reordered: {seq} after {prev}");
                        received += 1;
                    }
                    Err(ReceiveError::Timeout(_)) => {
                        if stdin_done.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            println!("received {received}");
        }
        // Receives one sample and writes into it through a cast pointer:
        // the read-only mapping must kill it with SIGSEGV.
        "vandal" => {
            let topic = node
                .service(svc)
                .publish_subscribe::<Pose>()
                .open()
                .unwrap();
            let subscriber = topic.subscriber().create().unwrap();
            println!("ready");
            let sample = subscriber.receive_timeout(Duration::from_secs(5)).unwrap();
            // No core file from the expected crash.
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: a valid rlimit for this process.
            unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
            println!("writing");
            let p = (&*sample as *const Pose).cast_mut();
            // SAFETY: deliberately not: this write must fault.
            unsafe { std::ptr::write_volatile(&mut (*p).seq, 666) };
            println!("wrote");
        }
        _ => panic!("unknown role {role}"),
    }
}

child_entry!(dispatch);

fn stress_topic(node: &Node, svc: &str) -> conduit::pubsub::PubSubService<[u64], Stamp> {
    node.service(svc)
        .publish_subscribe::<[u64]>()
        .user_header::<Stamp>()
        .max_publishers(2)
        .max_subscribers(2)
        .subscriber_buffer(8)
        .open_or_create()
        .unwrap()
}

fn send_line(child: &mut Child) {
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(b"go\n").unwrap();
    stdin.flush().unwrap();
}

fn spawn_with_stdin(role: &str, args: &[&str]) -> Child {
    common::child_command(role, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn typed_roundtrip_in_one_process() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("ps");
    {
        let node = node(&domain, "solo");
        let topic = node
            .service("robot/pose")
            .publish_subscribe::<Pose>()
            .open_or_create()
            .unwrap();
        let publisher = topic.publisher().create().unwrap();
        let subscriber = topic.subscriber().create().unwrap();
        assert!(subscriber.try_receive().unwrap().is_none());
        let reached = publisher
            .loan_uninit()
            .unwrap()
            .write(Pose {
                x: 1.5,
                y: 2.5,
                seq: 7,
            })
            .send()
            .unwrap();
        assert_eq!(reached, 1);
        let sample = subscriber.receive_timeout(Duration::from_secs(1)).unwrap();
        assert_eq!(
            *sample,
            Pose {
                x: 1.5,
                y: 2.5,
                seq: 7
            }
        );
        assert_eq!(sample.sequence(), 1);
        assert_eq!(sample.publisher_id(), publisher.id());
        drop(sample);
        let mut loan = publisher.loan().unwrap();
        loan.seq = 9;
        loan.send().unwrap();
        publisher
            .send_copy(Pose {
                seq: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(subscriber.try_receive().unwrap().unwrap().seq, 9);
        assert_eq!(subscriber.receive().unwrap().seq, 10);
        // Many sends: chunks are recycled (the pool never runs out).
        for i in 0..1000u64 {
            publisher
                .send_copy(Pose {
                    seq: i,
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(subscriber.try_receive().unwrap().unwrap().seq, i);
        }
        // Max loans.
        let a = publisher.loan_uninit().unwrap();
        let b = publisher.loan_uninit().unwrap();
        assert!(matches!(
            publisher.loan_uninit(),
            Err(LoanError::ExceedsMaxLoans(2))
        ));
        drop((a, b));
        // Max borrowed.
        for _ in 0..3 {
            publisher.send_copy(Pose::default()).unwrap();
        }
        let s1 = subscriber.try_receive().unwrap().unwrap();
        let s2 = subscriber.try_receive().unwrap().unwrap();
        assert!(matches!(
            subscriber.try_receive(),
            Err(ReceiveError::ExceedsMaxBorrowed(2))
        ));
        drop((s1, s2));
        assert!(subscriber.try_receive().unwrap().is_some());
        assert!(matches!(
            subscriber.receive_timeout(Duration::from_millis(1)),
            Err(ReceiveError::Timeout(_))
        ));
        let list = conduit::pubsub::list(&conduit::Domain::new(&domain).unwrap()).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].name, "robot/pose");
        assert_eq!(list[0].payload.name, "Pose");
        assert_eq!((list[0].publishers, list[0].subscribers), (1, 1));
        let nodes = Node::list(&domain).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].state, NodeState::Alive);
        assert_eq!(nodes[0].name, "solo");
    }
    let left = shm_objects_containing(&format!("conduit.{domain}."));
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

#[test]
fn names_types_and_qos_are_checked() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("ps");
    {
        let node = node(&domain, "checker");
        for bad in ["", "a b", "caf\u{e9}", &"x".repeat(256)] {
            let e = node
                .service(bad)
                .publish_subscribe::<u64>()
                .create()
                .unwrap_err();
            assert!(
                matches!(e, ServiceError::InvalidName { .. }),
                "{bad:?}: {e}"
            );
        }
        assert!(matches!(
            node.service("t")
                .publish_subscribe::<u64>()
                .open()
                .unwrap_err(),
            ServiceError::NotFound(_)
        ));
        let _t = node
            .service("t")
            .publish_subscribe::<u64>()
            .max_subscribers(2)
            .create()
            .unwrap();
        assert!(matches!(
            node.service("t")
                .publish_subscribe::<u64>()
                .create()
                .unwrap_err(),
            ServiceError::AlreadyExists(_)
        ));
        let e = node
            .service("t")
            .publish_subscribe::<Pose>()
            .open()
            .unwrap_err();
        assert!(matches!(e, ServiceError::IncompatibleType { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("u64") && msg.contains("Pose"), "{msg}");
        let e = node
            .service("t")
            .publish_subscribe::<[u64]>()
            .open()
            .unwrap_err();
        assert!(matches!(e, ServiceError::IncompatibleType { .. }), "{e}");
        let e = node
            .service("t")
            .publish_subscribe::<u64>()
            .max_subscribers(3)
            .open()
            .unwrap_err();
        assert!(matches!(e, ServiceError::IncompatibleConfig { .. }), "{e}");
        assert!(
            e.to_string().contains("has max_subscribers 2")
                && e.to_string().contains("requires max_subscribers >= 3"),
            "{e}"
        );
        let e = node
            .service("t")
            .publish_subscribe::<u64>()
            .overflow(Overflow::Fail)
            .open()
            .unwrap_err();
        assert!(matches!(e, ServiceError::IncompatibleConfig { .. }), "{e}");
        let ok = node
            .service("t")
            .publish_subscribe::<u64>()
            .max_subscribers(1)
            .open();
        assert!(ok.is_ok());
        let e = node
            .service("q")
            .publish_subscribe::<u64>()
            .history(5)
            .subscriber_buffer(2)
            .create()
            .unwrap_err();
        assert!(matches!(e, ServiceError::InvalidConfig(_)), "{e}");
    }
    assert_clean(&domain);
}

#[test]
fn typed_topic_across_processes() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("ps");
    {
        let node = node(&domain, "sub");
        let topic = node
            .service("robot/pose")
            .publish_subscribe::<Pose>()
            .subscriber_buffer(64)
            .open_or_create()
            .unwrap();
        // No spin: every wait sleeps on the futex and is woken by the
        // publisher in the other process.
        let subscriber = topic.subscriber().spin(Spin::NONE).create().unwrap();
        let mut child = spawn_with_stdin("publisher", &[&domain, "robot/pose", "50"]);
        assert_eq!(read_line(&mut child), "ready");
        send_line(&mut child);
        for i in 1..=25u64 {
            let s = subscriber.receive_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(s.seq, i);
            assert_eq!(s.x, i as f64);
        }
        assert_eq!(read_line(&mut child), "sent");
        // The publisher exits (its data segment is unlinked); what it
        // queued stays readable.
        send_line(&mut child);
        assert!(child.wait().unwrap().success());
        for i in 26..=50u64 {
            let s = subscriber.receive_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(s.seq, i);
        }
        assert!(subscriber.try_receive().unwrap().is_none());
        assert_eq!(subscriber.publishers(), 0);
    }
    assert_clean(&domain);
}

/// A `Pose` read from a raw sample's bytes.
fn pose_of(bytes: &[u8]) -> Pose {
    let word = |i: usize| <[u8; 8]>::try_from(&bytes[8 * i..8 * i + 8]).unwrap();
    Pose {
        x: f64::from_ne_bytes(word(0)),
        y: f64::from_ne_bytes(word(1)),
        seq: u64::from_ne_bytes(word(2)),
    }
}

#[test]
fn raw_ports_meet_typed_ports_across_processes() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("psraw");
    {
        let node = node(&domain, "sub");
        // A typed Rust publisher (child) → a raw subscriber (here).
        let raw = node
            .service("pose/typed-to-raw")
            .publish_subscribe_raw(RawType::of::<Pose>())
            .subscriber_buffer(16)
            .open_or_create()
            .unwrap();
        let subscriber = raw.subscriber().spin(Spin::NONE).create().unwrap();
        let mut child = spawn_with_stdin("publisher", &[&domain, "pose/typed-to-raw", "10"]);
        assert_eq!(read_line(&mut child), "ready");
        send_line(&mut child);
        for i in 1..=10u64 {
            let s = subscriber.receive_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!((s.len(), s.elements()), (24, 1));
            let pose = pose_of(&s);
            assert_eq!((pose.x, pose.y, pose.seq), (i as f64, -(i as f64), i));
        }
        assert_eq!(read_line(&mut child), "sent");
        send_line(&mut child);
        assert!(child.wait().unwrap().success());

        // A raw publisher (child, type written out) → a typed subscriber.
        let typed = node
            .service("pose/raw-to-typed")
            .publish_subscribe::<Pose>()
            .subscriber_buffer(16)
            .open_or_create()
            .unwrap();
        let subscriber = typed.subscriber().spin(Spin::NONE).create().unwrap();
        let fingerprint = format!("{:x}", Pose::LAYOUT.fingerprint);
        let mut child = spawn_with_stdin(
            "raw_publisher",
            &[&domain, "pose/raw-to-typed", "10", &fingerprint],
        );
        assert_eq!(read_line(&mut child), "ready");
        send_line(&mut child);
        for i in 1..=10u64 {
            let s = subscriber.receive_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(
                *s,
                Pose {
                    x: i as f64,
                    y: -(i as f64),
                    seq: i
                }
            );
        }
        assert_eq!(read_line(&mut child), "sent");
        send_line(&mut child);
        assert!(child.wait().unwrap().success());
        // Both services are recorded as a typed Rust port records them.
        for info in conduit::pubsub::list(node.domain_ref()).unwrap() {
            assert_eq!(info.kind, "typed");
            assert_eq!(info.payload.name, "Pose");
            assert_eq!(info.payload.fingerprint, Pose::LAYOUT.fingerprint);
        }
    }
    assert_clean(&domain);
}

#[test]
fn raw_types_are_checked_like_typed_ones() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("psrawchk");
    {
        let node = node(&domain, "n");
        let pose = RawType::of::<Pose>();
        let _typed = node
            .service("typed")
            .publish_subscribe::<Pose>()
            .create()
            .unwrap();
        let _raw = node
            .service("raw")
            .publish_subscribe_raw(pose.clone())
            .create()
            .unwrap();
        let variants = [
            (
                "name",
                RawType {
                    name: "Pose2".into(),
                    ..pose.clone()
                },
            ),
            (
                "size",
                RawType {
                    size: 32,
                    ..pose.clone()
                },
            ),
            (
                "align",
                RawType {
                    align: 4,
                    ..pose.clone()
                },
            ),
            (
                "fingerprint",
                RawType {
                    fingerprint: pose.fingerprint ^ 1,
                    ..pose.clone()
                },
            ),
        ];
        for (what, wrong) in variants {
            // A raw opener of a typed service.
            let e = node
                .service("typed")
                .publish_subscribe_raw(wrong.clone())
                .open()
                .unwrap_err();
            assert!(
                matches!(e, ServiceError::IncompatibleType { .. }),
                "{what}: {e}"
            );
            let msg = e.to_string();
            assert!(msg.contains("Pose (size 24, align 8"), "{what}: {msg}");
            assert!(msg.contains(&wrong.name), "{what}: {msg}");
            // A raw opener of a raw service.
            let e = node
                .service("raw")
                .publish_subscribe_raw(wrong)
                .open()
                .unwrap_err();
            assert!(
                matches!(e, ServiceError::IncompatibleType { .. }),
                "{what}: {e}"
            );
        }
        // A typed opener of a raw service; the slice flag counts too.
        assert!(
            node.service("raw")
                .publish_subscribe::<Pose>()
                .open()
                .is_ok()
        );
        let e = node
            .service("raw")
            .publish_subscribe::<Stamp>()
            .open()
            .unwrap_err();
        assert!(matches!(e, ServiceError::IncompatibleType { .. }), "{e}");
        let e = node
            .service("raw")
            .publish_subscribe_raw_slice(pose.clone())
            .open()
            .unwrap_err();
        assert!(matches!(e, ServiceError::IncompatibleType { .. }), "{e}");
        // Types no compiler makes are refused before any segment exists.
        for bad in [
            RawType::leaf("odd", 12, 8),
            RawType::leaf("odd", 12, 3),
            RawType::leaf("x".repeat(200), 8, 8),
        ] {
            let e = node
                .service("bad")
                .publish_subscribe_raw(bad)
                .open_or_create()
                .unwrap_err();
            assert!(matches!(e, ServiceError::InvalidConfig(_)), "{e}");
        }
        // A one-value loan is exactly one value.
        let publisher = _raw.publisher().create().unwrap();
        for len in [0, 23, 48] {
            assert!(matches!(
                publisher.loan_uninit(len).map(drop).unwrap_err(),
                LoanError::WrongLength {
                    size: 24,
                    slice: false,
                    ..
                }
            ));
        }
        // A raw byte-slice service is the `[u8]` service.
        let bytes = node
            .service("bytes")
            .publish_subscribe_raw_slice(RawType::of::<u8>())
            .create()
            .unwrap();
        let typed = node
            .service("bytes")
            .publish_subscribe::<[u8]>()
            .open()
            .unwrap();
        let subscriber = typed.subscriber().create().unwrap();
        let publisher = bytes.publisher().max_slice_len(16).create().unwrap();
        assert_eq!(publisher.max_bytes(), 16);
        assert_eq!(publisher.send_copy(b"hello").unwrap(), 1);
        assert_eq!(&*subscriber.try_receive().unwrap().unwrap(), b"hello");
        assert!(matches!(
            publisher.send_copy(&[0; 17]).unwrap_err(),
            conduit::pubsub::SendOrLoanError::Loan(LoanError::SliceTooLong { len: 17, max: 16 })
        ));
    }
    assert_clean(&domain);
}

#[test]
fn slices_and_user_header() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("ps");
    {
        let node = node(&domain, "slices");
        let topic = node
            .service("frames")
            .publish_subscribe::<[u8]>()
            .user_header::<Stamp>()
            .open_or_create()
            .unwrap();
        let publisher = topic.publisher().max_slice_len(1000).create().unwrap();
        let subscriber = topic.subscriber().create().unwrap();
        assert_eq!(publisher.max_slice_len(), 1000);
        assert!(matches!(
            publisher.loan_slice(1001),
            Err(LoanError::SliceTooLong {
                len: 1001,
                max: 1000
            })
        ));
        let mut s = publisher.loan_slice(300).unwrap();
        s.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        s.header_mut().checksum = 42;
        s.send().unwrap();
        publisher.send_slice_copy(&[9, 8, 7]).unwrap();
        let got = subscriber.try_receive().unwrap().unwrap();
        assert_eq!(got.len(), 300);
        assert!(got.iter().enumerate().all(|(i, b)| *b == i as u8));
        assert_eq!(got.header().checksum, 42);
        let got = subscriber.try_receive().unwrap().unwrap();
        assert_eq!(&*got, &[9, 8, 7]);
        assert_eq!(got.header().checksum, 0);
    }
    assert_clean(&domain);
}

#[test]
fn overflow_drop_oldest_counts_drops() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("ps");
    {
        let node = node(&domain, "drop");
        let topic = node
            .service("t")
            .publish_subscribe::<u64>()
            .subscriber_buffer(2)
            .open_or_create()
            .unwrap();
        let publisher = topic.publisher().create().unwrap();
        let subscriber = topic.subscriber().create().unwrap();
        for i in 1..=5u64 {
            assert_eq!(publisher.send_copy(i).unwrap(), 1);
        }
        assert_eq!(publisher.dropped(), 3);
        // Tools see the same count, per connection, from shared memory.
        let d = conduit::pubsub::details(&conduit::Domain::new(&domain).unwrap(), "t")
            .unwrap()
            .unwrap();
        assert_eq!(d.connections.len(), 1);
        assert_eq!(d.connections[0].dropped, 3);
        assert_eq!(topic.details().connections[0].dropped, 3);
        assert_eq!(*subscriber.try_receive().unwrap().unwrap(), 4);
        assert_eq!(*subscriber.try_receive().unwrap().unwrap(), 5);
        assert!(subscriber.try_receive().unwrap().is_none());
        // The dropped chunks came back: keep going far past the pool size.
        for i in 0..200u64 {
            publisher.send_copy(i).unwrap();
        }
        assert_eq!(*subscriber.try_receive().unwrap().unwrap(), 198);
        assert_eq!(
            topic.details().connections[0].dropped,
            publisher.dropped(),
            "every drop counted once in shared memory"
        );
    }
    assert_clean(&domain);
}

#[test]
fn overflow_fail_refuses_the_send() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("ps");
    {
        let node = node(&domain, "fail");
        let topic = node
            .service("t")
            .publish_subscribe::<u64>()
            .subscriber_buffer(2)
            .overflow(Overflow::Fail)
            .open_or_create()
            .unwrap();
        let publisher = topic.publisher().create().unwrap();
        let subscriber = topic.subscriber().create().unwrap();
        publisher.send_copy(1).unwrap();
        publisher.send_copy(2).unwrap();
        assert!(matches!(
            publisher.send_copy(3),
            Err(conduit::pubsub::SendOrLoanError::Send(SendError::QueueFull))
        ));
        assert_eq!(*subscriber.try_receive().unwrap().unwrap(), 1);
        publisher.send_copy(4).unwrap();
        assert_eq!(*subscriber.try_receive().unwrap().unwrap(), 2);
        assert_eq!(*subscriber.try_receive().unwrap().unwrap(), 4);
        assert_eq!(publisher.dropped(), 0);
    }
    assert_clean(&domain);
}

#[test]
fn overflow_block_waits_for_the_subscriber() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("ps");
    {
        let node = node(&domain, "block");
        let topic = node
            .service("t")
            .publish_subscribe::<Pose>()
            .subscriber_buffer(2)
            .overflow(Overflow::Block)
            .open_or_create()
            .unwrap();
        let publisher = topic
            .publisher()
            .block_timeout(Duration::from_secs(10))
            .create()
            .unwrap();
        // Nobody reads: the send times out.
        {
            let quick = topic
                .publisher()
                .block_timeout(Duration::from_millis(20))
                .create()
                .unwrap();
            let local = topic.subscriber().create().unwrap();
            quick.send_copy(Pose::default()).unwrap();
            quick.send_copy(Pose::default()).unwrap();
            assert!(matches!(
                quick.send_copy(Pose::default()),
                Err(conduit::pubsub::SendOrLoanError::Send(SendError::Timeout(
                    _
                )))
            ));
            drop(local);
        }
        let mut child = spawn_with_stdin("subscriber_slow", &[&domain, "t", "6"]);
        assert_eq!(read_line(&mut child), "ready");
        publisher.update_connections();
        publisher
            .send_copy(Pose {
                seq: 1,
                ..Default::default()
            })
            .unwrap();
        publisher
            .send_copy(Pose {
                seq: 2,
                ..Default::default()
            })
            .unwrap();
        send_line(&mut child);
        // These block until the child takes samples; none is lost.
        for seq in 3..=6 {
            assert_eq!(
                publisher
                    .send_copy(Pose {
                        seq,
                        ..Default::default()
                    })
                    .unwrap(),
                1
            );
        }
        assert_eq!(read_line(&mut child), "1,2,3,4,5,6");
        child.wait().unwrap();
    }
    assert_clean(&domain);
}

#[test]
fn history_reaches_late_joiners() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("ps");
    {
        let node = node(&domain, "hist");
        let topic = node
            .service("t")
            .publish_subscribe::<u64>()
            .history(2)
            .open_or_create()
            .unwrap();
        let publisher = topic.publisher().create().unwrap();
        for i in 1..=5u64 {
            assert_eq!(publisher.send_copy(i).unwrap(), 0);
        }
        let subscriber = topic.subscriber().create().unwrap();
        publisher.update_connections();
        assert_eq!(*subscriber.try_receive().unwrap().unwrap(), 4);
        assert_eq!(*subscriber.try_receive().unwrap().unwrap(), 5);
        assert!(subscriber.try_receive().unwrap().is_none());
        publisher.send_copy(6).unwrap();
        assert_eq!(*subscriber.try_receive().unwrap().unwrap(), 6);
    }
    assert_clean(&domain);
}

#[test]
fn killed_publisher_leaves_samples_readable() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("ps");
    {
        let node = node(&domain, "survivor");
        let topic = node
            .service("t")
            .publish_subscribe::<Pose>()
            .max_publishers(1)
            .max_borrowed(4)
            .open_or_create()
            .unwrap();
        let subscriber = topic.subscriber().create().unwrap();
        let mut child = spawn_with_stdin("publisher_hang", &[&domain, "t"]);
        let pub_id = read_line(&mut child);
        send_line(&mut child);
        assert_eq!(read_line(&mut child), "sent");
        let a = subscriber.try_receive().unwrap().unwrap();
        let b = subscriber.try_receive().unwrap().unwrap();
        kill(&mut child);
        let dead_segment = format!("conduit.{domain}.pub.{pub_id}");
        assert_eq!(shm_objects_containing(&dead_segment).len(), 1);
        // The service stays usable: a new publisher takes the dead one's
        // slot. Sample 3 is still queued for us: the data segment stays
        // until we read it.
        let publisher = topic.publisher().create().unwrap();
        assert_eq!(shm_objects_containing(&dead_segment).len(), 1);
        // Samples held from the dead publisher are intact.
        assert_eq!((a.seq, b.seq), (1, 2));
        publisher
            .send_copy(Pose {
                seq: 99,
                ..Default::default()
            })
            .unwrap();
        let mut seqs = Vec::new();
        while let Some(s) = subscriber.try_receive().unwrap() {
            seqs.push(s.seq);
        }
        assert_eq!(seqs, [3, 99]);
        assert!(shm_objects_containing(&dead_segment).is_empty());
        assert_eq!((a.seq, b.seq), (1, 2));
    }
    assert_clean(&domain);
}

#[test]
fn killed_subscribers_give_every_chunk_back() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("ps");
    {
        let node = node(&domain, "owner");
        let topic = node
            .service("t")
            .publish_subscribe::<Pose>()
            .max_subscribers(1)
            .subscriber_buffer(4)
            .max_borrowed(2)
            .overflow(Overflow::Fail)
            .open_or_create()
            .unwrap();
        let publisher = topic.publisher().create().unwrap();
        for round in 0..20 {
            let mut child = spawn_with_stdin("subscriber_hold", &[&domain, "t", "2"]);
            assert_eq!(read_line(&mut child), "ready");
            publisher.update_connections();
            // Two to hold, then fill the queue.
            let mut sent = 0;
            while publisher.send_copy(Pose::default()).is_ok() {
                sent += 1;
                if sent == 2 {
                    assert_eq!(read_line(&mut child), "holding", "round {round}");
                }
                assert!(sent < 100, "queue never fills");
            }
            assert_eq!(sent, 6, "round {round}");
            kill(&mut child);
            // The next subscriber's creation reclaims the dead one's slot.
        }
        // Every chunk came back: the whole pool can be loaned in turn.
        topic.cleanup_dead_ports();
        publisher.update_connections();
        for _ in 0..publisher_pool(&topic) {
            publisher.send_copy(Pose::default()).unwrap();
        }
    }
    assert_clean(&domain);
}

fn publisher_pool<P: conduit::pubsub::Payload + ?Sized>(
    topic: &conduit::pubsub::PubSubService<P>,
) -> usize {
    topic.qos().chunks_per_publisher()
}

#[test]
fn killed_during_service_creation() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("ps");
    {
        let mut child = spawn_child("hang_in_create", &[&domain, "t"]);
        assert_eq!(read_line(&mut child), "initializing");
        kill(&mut child);
        let node = node(&domain, "next");
        let topic = node
            .service("t")
            .publish_subscribe::<u64>()
            .open_or_create()
            .unwrap();
        let publisher = topic.publisher().create().unwrap();
        let subscriber = topic.subscriber().create().unwrap();
        publisher.send_copy(5).unwrap();
        assert_eq!(*subscriber.try_receive().unwrap().unwrap(), 5);
    }
    assert_clean(&domain);
}

#[test]
fn dead_nodes_are_listed_and_cleaned() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("ps");
    let mut child = spawn_with_stdin("publisher_hang", &[&domain, "t"]);
    let _ = read_line(&mut child);
    kill(&mut child);
    let nodes = Node::list(&domain).unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].state, NodeState::Dead);
    assert_eq!(nodes[0].name, "publisher_hang");
    let removed = Node::cleanup(&domain).unwrap();
    assert_eq!(removed, vec![nodes[0].id]);
    assert_clean(&domain);
}

#[test]
fn corrupted_queues_give_errors_not_crashes() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("ps");
    {
        let node = node(&domain, "victim");
        let topic = node
            .service("t")
            .publish_subscribe::<u64>()
            .open_or_create()
            .unwrap();
        let publisher = topic.publisher().create().unwrap();
        let subscriber = topic.subscriber().create().unwrap();
        publisher.send_copy(1).unwrap();
        let raw = conduit::shm::Segment::builder(
            &conduit::ServiceKind::PublishSubscribe.segment_name("t"),
        )
        .domain(&domain)
        .open()
        .unwrap();
        let data = raw.data();
        // Scribble over the connection area (the second half).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for off in (data.len() / 2..data.len() - 8).step_by(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let p = data.resolve::<std::sync::atomic::AtomicU64>(off).unwrap();
            // SAFETY: in bounds and aligned (resolve); atomics tolerate
            // concurrent access.
            unsafe { p.as_ref() }.store(x, std::sync::atomic::Ordering::Relaxed);
        }
        for _ in 0..100 {
            match subscriber.try_receive() {
                Ok(_) | Err(ReceiveError::Corrupted { .. }) => {}
                Err(e) => panic!("unexpected {e}"),
            }
            let _ = publisher.send_copy(2);
        }
    }
    assert_clean(&domain);
}

#[test]
fn corrupted_hold_words_are_a_named_error() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("ps");
    {
        let node = node(&domain, "victim");
        let topic = node
            .service("t")
            .publish_subscribe::<u64>()
            .max_publishers(1)
            .max_subscribers(1)
            .open_or_create()
            .unwrap();
        let subscriber = topic.subscriber().create().unwrap();
        let raw = conduit::shm::Segment::builder(
            &conduit::ServiceKind::PublishSubscribe.segment_name("t"),
        )
        .domain(&domain)
        .open()
        .unwrap();
        let data = raw.data();
        // Connection (0, 0): after the header line, 80 configuration words
        // and one slot of each kind (`pubsub/layout.rs`); `kept` and
        // `kept_gen` are the link line's fifth and sixth words.
        let conn = 64 + 80 * 8 + 64 + 64;
        let word = |off: usize| {
            let p = data.resolve::<std::sync::atomic::AtomicU64>(off).unwrap();
            // SAFETY: in bounds and aligned (resolve); an atomic.
            unsafe { p.as_ref() }
        };
        word(conn + 40).store(200, std::sync::atomic::Ordering::Relaxed);
        word(conn + 32).store(0x1234, std::sync::atomic::Ordering::Release);
        match subscriber.try_receive() {
            Err(ReceiveError::Corrupted { reason, .. }) => {
                assert!(reason.contains("kept generation"), "{reason}")
            }
            other => panic!("expected Corrupted, got {:?}", other.map(|s| s.is_some())),
        }
        assert!(subscriber.try_receive().unwrap().is_none());
        assert_eq!(
            word(conn + 32).load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        let publisher = topic.publisher().create().unwrap();
        publisher.send_copy(7).unwrap();
        assert_eq!(*subscriber.try_receive().unwrap().unwrap(), 7);
    }
    assert_clean(&domain);
}

#[test]
fn stress_many_publishers_and_subscribers() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("ps");
    let n = "20000";
    let mut subs: Vec<Child> = (0..2)
        .map(|_| spawn_with_stdin("stress_sub", &[&domain, "s"]))
        .collect();
    for s in &mut subs {
        assert_eq!(read_line(s), "ready");
    }
    let mut pubs: Vec<Child> = (0..2)
        .map(|_| spawn_with_stdin("stress_pub", &[&domain, "s", n]))
        .collect();
    for p in &mut pubs {
        assert_eq!(read_line(p), "ready");
    }
    for p in &mut pubs {
        send_line(p);
    }
    let mut dropped = 0u64;
    for p in &mut pubs {
        let line = read_line(p);
        dropped += line.strip_prefix("done ").unwrap().parse::<u64>().unwrap();
    }
    for s in &mut subs {
        send_line(s);
    }
    let mut received = 0u64;
    for s in &mut subs {
        let line = read_line(s);
        received += line
            .strip_prefix("received ")
            .unwrap_or_else(|| panic!("subscriber failed: {line:?}"))
            .parse::<u64>()
            .unwrap();
        assert!(s.wait().unwrap().success());
    }
    for p in &mut pubs {
        send_line(p);
        assert!(p.wait().unwrap().success());
    }
    // Every sample reached each subscriber unless counted as dropped.
    assert_eq!(
        received + dropped,
        2 * 2 * 20000,
        "received {received}, dropped {dropped}"
    );
    assert_clean(&domain);
}

#[test]
fn publisher_makes_no_syscall_when_nobody_sleeps() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("ps");
    {
        let node = node(&domain, "quiet");
        let topic = node
            .service("t")
            .publish_subscribe::<u64>()
            .open_or_create()
            .unwrap();
        let publisher = topic.publisher().create().unwrap();
        let subscriber = topic.subscriber().create().unwrap();
        publisher.send_copy(0).unwrap();
        subscriber.try_receive().unwrap().unwrap();
        let before = conduit::sync::futex_wake_calls();
        for i in 0..1000u64 {
            publisher.send_copy(i).unwrap();
            assert_eq!(*subscriber.try_receive().unwrap().unwrap(), i);
        }
        assert_eq!(conduit::sync::futex_wake_calls(), before);
    }
    assert_clean(&domain);
}

#[test]
fn subscribers_cannot_write_publisher_data() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("ps");
    {
        let node = node(&domain, "guard");
        let topic = node
            .service("t")
            .publish_subscribe::<Pose>()
            .open_or_create()
            .unwrap();
        let publisher = topic.publisher().create().unwrap();
        let honest = topic.subscriber().create().unwrap();
        let mut child = spawn_child("vandal", &[&domain, "t"]);
        assert_eq!(read_line(&mut child), "ready");
        publisher.update_connections();
        publisher
            .send_copy(Pose {
                seq: 7,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(read_line(&mut child), "writing");
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status}");
        assert_eq!(honest.try_receive().unwrap().unwrap().seq, 7);
    }
    assert_clean(&domain);
}

#[test]
fn port_limits_are_enforced() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("ps");
    {
        let node = node(&domain, "limits");
        let topic = node
            .service("t")
            .publish_subscribe::<u64>()
            .max_publishers(1)
            .max_subscribers(2)
            .open_or_create()
            .unwrap();
        let publisher = topic.publisher().create().unwrap();
        assert!(matches!(
            topic.publisher().create(),
            Err(conduit::pubsub::PublisherCreateError::ExceedsMaxPublishers { max: 1, .. })
        ));
        let a = topic.subscriber().create().unwrap();
        let b = topic.subscriber().create().unwrap();
        assert!(matches!(
            topic.subscriber().create(),
            Err(conduit::pubsub::SubscriberCreateError::ExceedsMaxSubscribers { max: 2, .. })
        ));
        assert_eq!(publisher.send_copy(3).unwrap(), 2);
        assert_eq!(*a.try_receive().unwrap().unwrap(), 3);
        assert_eq!(*b.try_receive().unwrap().unwrap(), 3);
        // A slot freed by a dropped port is reused.
        drop(b);
        let c = topic.subscriber().create().unwrap();
        assert_eq!(publisher.send_copy(4).unwrap(), 2);
        assert_eq!(*c.try_receive().unwrap().unwrap(), 4);
        // Samples queued by a publisher that left stay readable.
        drop(publisher);
        assert_eq!(*a.try_receive().unwrap().unwrap(), 4);
        let publisher = topic.publisher().create().unwrap();
        publisher.send_copy(5).unwrap();
        assert_eq!(*a.try_receive().unwrap().unwrap(), 5);
        assert_eq!(*c.try_receive().unwrap().unwrap(), 5);
    }
    assert_clean(&domain);
}

#[test]
fn blocked_publisher_recovers_from_a_killed_subscriber() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("ps");
    {
        let node = node(&domain, "blocked");
        let topic = node
            .service("t")
            .publish_subscribe::<Pose>()
            .subscriber_buffer(2)
            .overflow(Overflow::Block)
            .open_or_create()
            .unwrap();
        let publisher = topic
            .publisher()
            .block_timeout(Duration::from_millis(100))
            .create()
            .unwrap();
        let mut child = spawn_with_stdin("subscriber_hold", &[&domain, "t", "1"]);
        assert_eq!(read_line(&mut child), "ready");
        publisher.update_connections();
        publisher.send_copy(Pose::default()).unwrap();
        assert_eq!(read_line(&mut child), "holding");
        publisher.send_copy(Pose::default()).unwrap();
        publisher.send_copy(Pose::default()).unwrap();
        kill(&mut child);
        // The queue of the dead subscriber never drains: after its block
        // timeout the publisher cleans up dead ports and goes on.
        assert_eq!(publisher.send_copy(Pose::default()).unwrap(), 0);
    }
    assert_clean(&domain);
}

/// Like [`spawn_with_stdin`], as the first process of a new PID namespace
/// (the returned process is `unshare`); `None` (after printing why) where
/// PID namespaces are unavailable.
fn spawn_in_new_pid_namespace(role: &str, args: &[&str]) -> Option<Child> {
    if let Some(why) = common::pid_namespaces_unavailable() {
        println!("skipped: {why}");
        return None;
    }
    Some(
        common::child_command_in_new_pid_namespace(role, args)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn typed_topic_across_pid_namespaces() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("ps");
    {
        let node = node(&domain, "sub");
        let topic = node
            .service("robot/pose")
            .publish_subscribe::<Pose>()
            .subscriber_buffer(64)
            .open_or_create()
            .unwrap();
        let subscriber = topic.subscriber().spin(Spin::NONE).create().unwrap();
        // The publisher is pid 1 of its own namespace, as in a container
        // that shares only /dev/shm with us.
        let Some(mut child) =
            spawn_in_new_pid_namespace("publisher", &[&domain, "robot/pose", "50"])
        else {
            return;
        };
        assert_eq!(read_line(&mut child), "ready");
        // Its node is alive for us although its pid means nothing here.
        let nodes = Node::list(&domain).unwrap();
        assert!(
            nodes
                .iter()
                .any(|n| n.name == "publisher" && n.state == NodeState::Alive),
            "{nodes:?}"
        );
        send_line(&mut child);
        for i in 1..=25u64 {
            let s = subscriber.receive_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(s.seq, i);
        }
        assert_eq!(read_line(&mut child), "sent");
        send_line(&mut child);
        assert!(child.wait().unwrap().success());
        for i in 26..=50u64 {
            let s = subscriber.receive_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(s.seq, i);
        }
        assert!(subscriber.try_receive().unwrap().is_none());
        assert_eq!(subscriber.publishers(), 0);
    }
    assert_clean(&domain);
}

#[test]
fn killed_publisher_in_another_pid_namespace_is_cleaned_up() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("ps");
    {
        let node = node(&domain, "survivor");
        let topic = node
            .service("t")
            .publish_subscribe::<Pose>()
            .max_publishers(1)
            .max_borrowed(4)
            .open_or_create()
            .unwrap();
        let subscriber = topic.subscriber().create().unwrap();
        let Some(mut child) = spawn_in_new_pid_namespace("publisher_hang", &[&domain, "t"]) else {
            return;
        };
        let pub_id = read_line(&mut child);
        send_line(&mut child);
        assert_eq!(read_line(&mut child), "sent");
        let a = subscriber.try_receive().unwrap().unwrap();
        common::kill_namespace_init(&mut child);
        let dead_segment = format!("conduit.{domain}.pub.{pub_id}");
        assert_eq!(shm_objects_containing(&dead_segment).len(), 1);
        // Its node is dead for us, and its slot and segment are reclaimed.
        let nodes = Node::list(&domain).unwrap();
        assert!(
            nodes
                .iter()
                .any(|n| n.name == "publisher_hang" && n.state == NodeState::Dead),
            "{nodes:?}"
        );
        // Samples 2 and 3 are still queued for us: the segment stays until
        // we read them.
        let publisher = topic.publisher().create().unwrap();
        assert_eq!(shm_objects_containing(&dead_segment).len(), 1);
        assert_eq!(a.seq, 1);
        publisher
            .send_copy(Pose {
                seq: 99,
                ..Default::default()
            })
            .unwrap();
        let mut seqs = Vec::new();
        while let Some(s) = subscriber.try_receive().unwrap() {
            seqs.push(s.seq);
        }
        assert_eq!(seqs, [2, 3, 99]);
        assert!(shm_objects_containing(&dead_segment).is_empty());
    }
    assert_clean(&domain);
}

// A publisher's last words: samples sent before the publisher left are
// delivered to a subscriber that polls only afterwards.

const LAST_WORDS: u64 = 5;

fn last_words_topic(node: &Node, svc: &str) -> PubSubService<Pose> {
    node.service(svc)
        .publish_subscribe::<Pose>()
        .max_publishers(1)
        .max_subscribers(2)
        .subscriber_buffer(8)
        .max_borrowed(2)
        .open_or_create()
        .unwrap()
}

fn last_words_pose(seq: u64) -> Pose {
    Pose {
        x: seq as f64 * 1.5,
        y: -(seq as f64),
        seq,
    }
}

/// Receives every sample now queued; checks each one's content.
fn drain_poses(subscriber: &Subscriber<Pose>) -> Vec<(u64, PortId)> {
    let mut got = Vec::new();
    while let Some(s) = subscriber.try_receive().unwrap() {
        assert_eq!(*s, last_words_pose(s.seq), "content of sample {}", s.seq);
        got.push((s.seq, s.publisher_id()));
    }
    got
}

fn pub_segment(domain: &str, pub_id: &str) -> String {
    format!("conduit.{domain}.pub.{pub_id}")
}

/// (a) and (b): the publisher sends, then exits normally or is killed;
/// the subscriber polls only afterwards and gets every sample, in order.
fn publisher_leaves_then_subscriber_polls(mode: &str) {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("lw");
    {
        let node = node(&domain, "late-reader");
        let topic = last_words_topic(&node, "t");
        let subscriber = topic.subscriber().create().unwrap();
        let n = LAST_WORDS.to_string();
        let mut child = common::spawn_child("publisher_last_words", &[&domain, "t", &n, mode]);
        let pub_id = read_line(&mut child);
        assert_eq!(read_line(&mut child), "sent");
        if mode == "hang" {
            kill(&mut child);
            // The dead-port cleanup frees its slot, as a later open or
            // `conduit clean` would: the data segment must stay.
            topic.cleanup_dead_ports();
        } else {
            assert!(child.wait().unwrap().success());
        }
        assert_eq!(topic.details().publishers.len(), 0, "the publisher left");
        let segment = pub_segment(&domain, &pub_id);
        assert_eq!(shm_objects_containing(&segment).len(), 1, "kept for us");
        let got = drain_poses(&subscriber);
        let seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(seqs, (1..=LAST_WORDS).collect::<Vec<_>>());
        assert!(got.iter().all(|g| format!("{}", g.1) == pub_id));
        assert!(
            shm_objects_containing(&segment).is_empty(),
            "removed once drained"
        );
    }
    assert_clean(&domain);
}

#[test]
fn publisher_exits_and_a_late_subscriber_gets_its_last_samples() {
    publisher_leaves_then_subscriber_polls("exit");
}

#[test]
fn publisher_killed_after_sending_and_a_late_subscriber_gets_its_last_samples() {
    publisher_leaves_then_subscriber_polls("hang");
}

/// (c): the subscriber leaves too without reading (dropped, or killed):
/// the departed publisher's data segment goes, and nothing is left.
#[test]
fn departed_publishers_segment_goes_when_its_subscriber_leaves_unread() {
    let _w = watchdog(Duration::from_secs(30));
    for (publisher_fate, subscriber_fate) in [
        ("exit", "drop"),
        ("exit", "kill"),
        ("hang", "drop"),
        ("hang", "kill"),
    ] {
        let domain = unique("lw");
        {
            let node = node(&domain, "bystander");
            let topic = last_words_topic(&node, "t");
            let mut sub = spawn_with_stdin("subscriber_silent", &[&domain, "t"]);
            assert_eq!(read_line(&mut sub), "ready");
            let n = LAST_WORDS.to_string();
            let mut publisher =
                common::spawn_child("publisher_last_words", &[&domain, "t", &n, publisher_fate]);
            let pub_id = read_line(&mut publisher);
            assert_eq!(read_line(&mut publisher), "sent");
            if publisher_fate == "hang" {
                kill(&mut publisher);
                topic.cleanup_dead_ports();
            } else {
                assert!(publisher.wait().unwrap().success());
            }
            let segment = pub_segment(&domain, &pub_id);
            assert_eq!(
                shm_objects_containing(&segment).len(),
                1,
                "{publisher_fate}/{subscriber_fate}: kept for the subscriber"
            );
            if subscriber_fate == "kill" {
                kill(&mut sub);
                topic.cleanup_dead_ports();
            } else {
                send_line(&mut sub);
                assert!(sub.wait().unwrap().success());
            }
            assert!(
                shm_objects_containing(&segment).is_empty(),
                "{publisher_fate}/{subscriber_fate}: removed when the subscriber left"
            );
        }
        assert_clean(&domain);
    }
}

/// (c), the service's last user: a subscriber killed unread and a
/// departed publisher, and the service dropped without any cleanup call
/// in between: nothing is left.
#[test]
fn killed_subscriber_and_departed_publisher_leave_nothing_when_the_service_goes() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("lw");
    let mut sub = spawn_with_stdin("subscriber_silent", &[&domain, "t"]);
    assert_eq!(read_line(&mut sub), "ready");
    let n = LAST_WORDS.to_string();
    let mut publisher = common::spawn_child("publisher_last_words", &[&domain, "t", &n, "exit"]);
    let _ = read_line(&mut publisher);
    assert_eq!(read_line(&mut publisher), "sent");
    assert!(publisher.wait().unwrap().success());
    kill(&mut sub);
    assert_clean(&domain);
}

/// (d): a new publisher takes the departed one's slot before the
/// subscriber polled: the subscriber reads the old samples first, then the
/// new ones, each from the right publisher.
#[test]
fn new_publisher_in_the_slot_follows_the_departed_ones_samples() {
    let _w = watchdog(Duration::from_secs(30));
    for mode in ["exit", "hang"] {
        let domain = unique("lw");
        {
            let node = node(&domain, "reader");
            let topic = last_words_topic(&node, "t");
            let subscriber = topic.subscriber().create().unwrap();
            let mut child = common::spawn_child("publisher_last_words", &[&domain, "t", "3", mode]);
            let old_id = read_line(&mut child);
            assert_eq!(read_line(&mut child), "sent");
            if mode == "hang" {
                kill(&mut child);
            } else {
                assert!(child.wait().unwrap().success());
            }
            // max_publishers = 1: it takes the departed (or dead) one's slot.
            let publisher = topic.publisher().create().unwrap();
            for seq in [101, 102] {
                publisher.send_copy(last_words_pose(seq)).unwrap();
            }
            let got = drain_poses(&subscriber);
            let seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
            assert_eq!(seqs, vec![1, 2, 3, 101, 102], "{mode}");
            let from: Vec<String> = got.iter().map(|g| format!("{}", g.1)).collect();
            let new_id = format!("{}", publisher.id());
            assert_eq!(
                from,
                [&old_id, &old_id, &old_id, &new_id, &new_id].map(String::clone)
            );
            assert!(shm_objects_containing(&pub_segment(&domain, &old_id)).is_empty());
            publisher.send_copy(last_words_pose(103)).unwrap();
            assert_eq!(drain_poses(&subscriber).len(), 1);
        }
        assert_clean(&domain);
    }
}

/// A raw service with a run-time user header (`user_header_raw`, what
/// conduit-bridge opens) meets the typed service with that header: the
/// header bytes travel both ways, a different header type is refused.
#[test]
fn raw_user_header_meets_the_typed_header() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("ps");
    {
        let node = node(&domain, "solo");
        let typed = node
            .service("robot/stamped")
            .publish_subscribe::<Pose>()
            .user_header::<Stamp>()
            .open_or_create()
            .unwrap();
        let raw = node
            .service("robot/stamped")
            .publish_subscribe_raw(RawType::of::<Pose>())
            .user_header_raw(RawType::of::<Stamp>())
            .open()
            .unwrap();
        let typed_sub = typed.subscriber().create().unwrap();
        let raw_sub = raw.subscriber().create().unwrap();
        let raw_pub = raw.publisher().create().unwrap();
        let mut loan = raw_pub.loan_zeroed(24).unwrap();
        assert_eq!(loan.header_bytes_mut().len(), 16);
        assert!(loan.header_bytes_mut().iter().all(|b| *b == 0));
        loan.header_bytes_mut()[..8].copy_from_slice(&7u64.to_ne_bytes());
        loan.header_bytes_mut()[8..].copy_from_slice(&9u64.to_ne_bytes());
        loan[16..24].copy_from_slice(&5u64.to_ne_bytes());
        loan.send().unwrap();
        let s = typed_sub.receive_timeout(Duration::from_secs(1)).unwrap();
        assert_eq!(
            (s.header().publisher, s.header().checksum, s.seq),
            (7, 9, 5)
        );
        drop(s);
        let typed_pub = typed.publisher().create().unwrap();
        let mut loan = typed_pub.loan().unwrap();
        *loan.header_mut() = Stamp {
            publisher: 11,
            checksum: 12,
        };
        loan.send().unwrap();
        for _ in 0..2 {
            let s = raw_sub.receive_timeout(Duration::from_secs(1)).unwrap();
            let h = s.header_bytes();
            assert_eq!(h.len(), 16);
            if s.publisher_id() == typed_pub.id() {
                assert_eq!(h[..8], 11u64.to_ne_bytes());
                assert_eq!(h[8..], 12u64.to_ne_bytes());
            }
        }
        let other = node
            .service("robot/stamped")
            .publish_subscribe_raw(RawType::of::<Pose>())
            .user_header_raw(RawType::of::<u64>())
            .open();
        assert!(matches!(other, Err(ServiceError::IncompatibleType { .. })));
        let bad = node
            .service("robot/bad-header")
            .publish_subscribe_raw(RawType::of::<Pose>())
            .user_header_raw(RawType::leaf("odd", 12, 8))
            .open_or_create();
        assert!(matches!(bad, Err(ServiceError::InvalidConfig(_))));
    }
    assert_clean(&domain);
}
