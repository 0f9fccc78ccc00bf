//! Two bridges on loopback (two Zenoh sessions, explicit endpoints,
//! multicast scouting off, free ports), two conduit domains standing for
//! two hosts, and the publishers, subscribers, notifiers and listeners in
//! child processes.
//!
//! The children wait for a "go" file before they send, so the parent can
//! first wait for the forwarding path to be in place (the bridges' ports
//! show up in `conduit::pubsub::list`); no test asserts a duration, every
//! wait is bounded.

#[macro_use]
// The helpers of conduit's own integration tests (child processes,
// watchdog, unique names, the /dev/shm leak check), not a copy of them.
#[path = "../../conduit/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{read_line, shm_objects_containing, spawn_child, unique, watchdog};
use conduit::ShmSafe;
use conduit::node::Node;
use conduit::pubsub::Overflow;

child_entry!(dispatch);

/// The payload of the test service.
#[derive(ShmSafe, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct Pose {
    x: f64,
    y: u64,
}

/// Its user header.
#[derive(ShmSafe, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct Stamp {
    stamp: u64,
    tag: u32,
    _pad: u32,
}

const SAMPLES: u64 = 200;

fn dispatch(role: &str, args: &[String]) {
    let node = Node::builder().domain(&args[0]).create().unwrap();
    match role {
        "publisher" => {
            let (name, count, go, quit) = (
                &args[1],
                args[2].parse::<u64>().unwrap(),
                &args[3],
                &args[4],
            );
            let service = pose_service(&node, name);
            let publisher = service.publisher().create().unwrap();
            println!("ready");
            wait_file(go);
            for i in 1..=count {
                let mut sample = publisher.loan().unwrap();
                *sample.header_mut() = Stamp {
                    stamp: i * 1000,
                    tag: 0xC0DE,
                    _pad: 0,
                };
                *sample = Pose {
                    x: i as f64 / 2.0,
                    y: i,
                };
                sample.send().unwrap();
            }
            println!("done");
            wait_file(quit);
        }
        "subscriber" => {
            let (name, count) = (&args[1], args[2].parse::<u64>().unwrap());
            let service = pose_service(&node, name);
            let subscriber = service.subscriber().create().unwrap();
            println!("ready");
            for i in 1..=count {
                let Ok(sample) = subscriber.receive_timeout(Duration::from_secs(20)) else {
                    println!("missing {i}");
                    return;
                };
                let want = Pose {
                    x: i as f64 / 2.0,
                    y: i,
                };
                let stamp = Stamp {
                    stamp: i * 1000,
                    tag: 0xC0DE,
                    _pad: 0,
                };
                if *sample != want || *sample.header() != stamp {
                    println!("bad {i}: {:?} {:?}", *sample, sample.header());
                    return;
                }
            }
            println!("ok {count}");
            let mut extra = 0;
            while subscriber
                .receive_timeout(Duration::from_millis(500))
                .is_ok()
            {
                extra += 1;
            }
            println!("extra {extra}");
        }
        "two-publishers-subscriber" => {
            // Every sample of each of two publishers, in each one's order,
            // exactly once.
            let (name, count) = (&args[1], args[2].parse::<u64>().unwrap());
            let service = pose_service(&node, name);
            let subscriber = service.subscriber().create().unwrap();
            println!("ready");
            let mut next: std::collections::BTreeMap<u64, u64> = Default::default();
            let mut received = 0;
            let mut extra = 0;
            while let Ok(sample) =
                subscriber.receive_timeout(Duration::from_secs(if received < 2 * count {
                    20
                } else {
                    1
                }))
            {
                let n = next.entry(sample.publisher_id().0).or_insert(1);
                if sample.y != *n || sample.header().stamp != *n * 1000 {
                    println!("bad: got {} expected {n}", sample.y);
                    return;
                }
                *n += 1;
                received += 1;
                if received > 2 * count {
                    extra += 1;
                }
            }
            println!(
                "received {} from {} publishers, extra {extra}",
                received.min(2 * count),
                next.len()
            );
        }
        "slice-publisher" => {
            let (name, go, quit) = (&args[1], &args[2], &args[3]);
            let service = bytes_service(&node, name);
            let publisher = service.publisher().max_slice_len(1 << 20).create().unwrap();
            println!("ready");
            wait_file(go);
            for (i, len) in SLICE_LENGTHS.iter().enumerate() {
                let sample = publisher
                    .loan_slice_uninit(*len)
                    .unwrap()
                    .write_from_fn(|k| (k as u8).wrapping_mul(31).wrapping_add(i as u8));
                sample.send().unwrap();
            }
            println!("done");
            wait_file(quit);
        }
        "slice-subscriber" => {
            let service = bytes_service(&node, &args[1]);
            let subscriber = service.subscriber().create().unwrap();
            println!("ready");
            for (i, len) in SLICE_LENGTHS.iter().enumerate() {
                let Ok(sample) = subscriber.receive_timeout(Duration::from_secs(20)) else {
                    println!("missing {len}");
                    return;
                };
                let good = sample.len() == *len
                    && sample
                        .iter()
                        .enumerate()
                        .all(|(k, b)| *b == (k as u8).wrapping_mul(31).wrapping_add(i as u8));
                if !good {
                    println!("bad sample of {} bytes, expected {len}", sample.len());
                    return;
                }
            }
            println!("ok");
        }
        "other-type-subscriber" => {
            let name = &args[1];
            let service = node
                .service(name)
                .publish_subscribe::<u64>()
                .open_or_create()
                .unwrap();
            let subscriber = service.subscriber().create().unwrap();
            println!("ready");
            wait_file(&args[2]);
            let mut got = 0;
            while subscriber
                .receive_timeout(Duration::from_millis(1000))
                .is_ok()
            {
                got += 1;
            }
            println!("got {got}");
        }
        "notifier" => {
            let (name, id, go, quit) = (
                &args[1],
                args[2].parse::<usize>().unwrap(),
                &args[3],
                &args[4],
            );
            let service = node
                .service(name)
                .event()
                .max_event_id(63)
                .open_or_create()
                .unwrap();
            let notifier = service.notifier().create().unwrap();
            println!("ready");
            wait_file(go);
            notifier.notify(id).unwrap();
            println!("done");
            wait_file(quit);
        }
        "listener" => {
            let name = &args[1];
            let service = node
                .service(name)
                .event()
                .max_event_id(63)
                .open_or_create()
                .unwrap();
            let listener = service.listener().create().unwrap();
            println!("ready");
            let ids = listener.wait_timeout(Duration::from_secs(20));
            let ids: Vec<String> = ids.iter().map(|i| i.value().to_string()).collect();
            println!("got {}", ids.join(","));
        }
        other => panic!("unknown role {other}"),
    }
}

fn pose_service(node: &Node, name: &str) -> conduit::pubsub::PubSubService<Pose, Stamp> {
    node.service(name)
        .publish_subscribe::<Pose>()
        .user_header::<Stamp>()
        .subscriber_buffer(16)
        .overflow(Overflow::Block)
        .open_or_create()
        .unwrap()
}

/// Slice lengths the slice test sends, 8 B to 1 MiB.
const SLICE_LENGTHS: [usize; 5] = [8, 1000, 65_536, 500_000, 1 << 20];

fn bytes_service(node: &Node, name: &str) -> conduit::pubsub::PubSubService<[u8]> {
    node.service(name)
        .publish_subscribe::<[u8]>()
        .subscriber_buffer(8)
        .overflow(Overflow::Block)
        .open_or_create()
        .unwrap()
}

/// Waits (bounded) until `path` exists.
fn wait_file(path: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !Path::new(path).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `conduit-bridge` process and the lines of its standard error.
struct BridgeProcess {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl BridgeProcess {
    fn start(domain: &str, prefix: &str, listen: u16, connect: Option<u16>) -> BridgeProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_conduit-bridge"));
        cmd.args(["--domain", domain, "--key-prefix", prefix])
            .args(["--listen", &format!("tcp/127.0.0.1:{listen}")])
            .args(["--no-multicast-scouting", "--announce-period-ms", "100"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(port) = connect {
            cmd.args(["--connect", &format!("tcp/127.0.0.1:{port}")]);
        }
        let mut child = cmd.spawn().expect("spawn conduit-bridge");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let lines = log.clone();
        let tag = domain.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[bridge {tag}] {line}");
                lines.lock().unwrap().push(line);
            }
        });
        let bridge = BridgeProcess { child, log };
        bridge.wait_log("running as bridge");
        bridge
    }

    fn has_logged(&self, fragment: &str) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(fragment))
    }

    fn wait_log(&self, fragment: &str) {
        wait_until(&format!("bridge log {fragment:?}"), || {
            self.has_logged(fragment)
        });
    }

    /// Stops the bridge with SIGTERM (its ports and node are dropped).
    fn stop(mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "bridge exited with {status}");
    }
}

impl Drop for BridgeProcess {
    /// A test that fails leaves no bridge running: SIGTERM (the bridge
    /// removes its node), SIGKILL if it has not exited within 5 s; a
    /// bridge already reaped is left alone.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.wait();
        }
    }
}

/// Polls `cond` until it holds; panics (naming `what`) after 30 s.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Publishers and subscribers of `name` in `domain` now (0, 0 if none).
fn ports(domain: &str, name: &str) -> (usize, usize) {
    let domain = conduit::Domain::new(domain).unwrap();
    conduit::pubsub::list(&domain)
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| (s.publishers, s.subscribers))
        .unwrap_or((0, 0))
}

/// Two domains, two bridges connected on loopback, and a scratch
/// directory for go files.
struct Hosts {
    a: String,
    b: String,
    bridge_a: Option<BridgeProcess>,
    bridge_b: Option<BridgeProcess>,
    dir: PathBuf,
    /// The Zenoh key prefix both bridges use.
    prefix: String,
    /// Bridge A's listening port.
    port_a: u16,
    /// Bridge B's listening port.
    port_b: u16,
}

impl Hosts {
    fn new() -> Hosts {
        let a = unique("bra");
        let b = unique("brb");
        let prefix = format!("conduit-test/{a}");
        let (pa, pb) = (free_port(), free_port());
        let bridge_a = BridgeProcess::start(&a, &prefix, pa, None);
        let bridge_b = BridgeProcess::start(&b, &prefix, pb, Some(pa));
        let dir = std::env::temp_dir().join(unique("conduit-bridge-test"));
        std::fs::create_dir_all(&dir).unwrap();
        Hosts {
            a,
            b,
            bridge_a: Some(bridge_a),
            bridge_b: Some(bridge_b),
            dir,
            prefix,
            port_a: pa,
            port_b: pb,
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn touch(&self, name: &str) {
        std::fs::write(self.file(name), b"").unwrap();
    }

    /// Stops what still runs and checks that nothing of either domain is
    /// left in /dev/shm (after a cleanup of dead nodes, for a killed
    /// bridge).
    fn finish(mut self) {
        for bridge in [self.bridge_a.take(), self.bridge_b.take()]
            .into_iter()
            .flatten()
        {
            bridge.stop();
        }
        for d in [&self.a, &self.b] {
            let domain = conduit::Domain::new(d).unwrap();
            domain
                .cleanup(conduit::shm::Permissions::owner_only())
                .unwrap();
            let left = shm_objects_containing(&format!("conduit.{d}."));
            assert!(left.is_empty(), "left in /dev/shm: {left:?}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn expect_line(child: &mut Child, want: &str) {
    let line = read_line(child);
    assert_eq!(line, want, "child said {line:?}, expected {want:?}");
}

fn reap(mut child: Child) {
    let status = child.wait().unwrap();
    assert!(status.success(), "child exited with {status}");
}

#[test]
fn samples_cross_in_order_with_headers_exactly_once() {
    let _w = watchdog(Duration::from_secs(120));
    let hosts = Hosts::new();
    let name = "robot/pose";
    let count = SAMPLES.to_string();
    let (go, quit) = (hosts.file("go"), hosts.file("quit"));
    let mut sub_b = spawn_child("subscriber", &[&hosts.b, name, &count]);
    expect_line(&mut sub_b, "ready");
    let mut sub_a = spawn_child("subscriber", &[&hosts.a, name, &count]);
    expect_line(&mut sub_a, "ready");
    let mut publisher = spawn_child("publisher", &[&hosts.a, name, &count, &go, &quit]);
    expect_line(&mut publisher, "ready");
    // The path: bridge A subscribes in A, bridge B publishes in B.
    wait_until("bridge A's subscriber in A", || {
        ports(&hosts.a, name).1 >= 2
    });
    wait_until("bridge B's publisher in B", || ports(&hosts.b, name).0 >= 1);
    hosts.touch("go");
    expect_line(&mut publisher, "done");
    // Every sample, in order, payload and header intact, on both hosts;
    // and none twice (no echo back from B, no loop).
    expect_line(&mut sub_b, &format!("ok {SAMPLES}"));
    expect_line(&mut sub_a, &format!("ok {SAMPLES}"));
    expect_line(&mut sub_b, "extra 0");
    expect_line(&mut sub_a, "extra 0");
    // Bridge A never republished in A (it forwards in only what B's own
    // programs publish, and B has none).
    assert_eq!(ports(&hosts.a, name).0, 1);
    hosts.touch("quit");
    reap(publisher);
    reap(sub_a);
    reap(sub_b);
    hosts.finish();
}

#[test]
fn an_event_in_a_wakes_a_listener_in_b_with_its_id() {
    let _w = watchdog(Duration::from_secs(120));
    let hosts = Hosts::new();
    let name = "robot/alarm";
    let (go, quit) = (hosts.file("go"), hosts.file("quit"));
    let mut listener = spawn_child("listener", &[&hosts.b, name]);
    expect_line(&mut listener, "ready");
    let mut notifier = spawn_child("notifier", &[&hosts.a, name, "42", &go, &quit]);
    expect_line(&mut notifier, "ready");
    let events = |d: &str| {
        conduit::event::list(&conduit::Domain::new(d).unwrap())
            .unwrap()
            .into_iter()
            .find(|s| s.name == name)
    };
    wait_until("bridge A's listener in A", || {
        events(&hosts.a).is_some_and(|e| !e.listeners.is_empty())
    });
    wait_until("bridge B's notifier in B", || {
        events(&hosts.b).is_some_and(|e| e.notifiers >= 1)
    });
    hosts.touch("go");
    expect_line(&mut notifier, "done");
    expect_line(&mut listener, "got 42");
    hosts.touch("quit");
    reap(notifier);
    reap(listener);
    hosts.finish();
}

#[test]
fn a_service_of_another_type_is_refused_and_not_forwarded() {
    let _w = watchdog(Duration::from_secs(120));
    let hosts = Hosts::new();
    let name = "robot/odometry";
    let (go, quit) = (hosts.file("go"), hosts.file("quit"));
    let mut other = spawn_child("other-type-subscriber", &[&hosts.b, name, &go]);
    expect_line(&mut other, "ready");
    let mut publisher = spawn_child("publisher", &[&hosts.a, name, "20", &go, &quit]);
    expect_line(&mut publisher, "ready");
    wait_until("bridge A's subscriber in A", || {
        ports(&hosts.a, name).1 >= 1
    });
    let bridge_b = hosts.bridge_b.as_ref().unwrap();
    bridge_b.wait_log("type mismatch");
    assert!(bridge_b.has_logged(&format!("service {name:?}")));
    hosts.touch("go");
    expect_line(&mut publisher, "done");
    expect_line(&mut other, "got 0");
    // Bridge B opened no publisher on the mismatched service.
    assert_eq!(ports(&hosts.b, name).0, 0);
    hosts.touch("quit");
    reap(publisher);
    reap(other);
    hosts.finish();
}

#[test]
fn a_killed_bridge_leaves_the_other_running_and_local_services_usable() {
    let _w = watchdog(Duration::from_secs(120));
    let mut hosts = Hosts::new();
    let name = "robot/scan";
    let (go, quit) = (hosts.file("go"), hosts.file("quit"));
    let mut sub_b = spawn_child("subscriber", &[&hosts.b, name, "5"]);
    expect_line(&mut sub_b, "ready");
    let mut publisher = spawn_child("publisher", &[&hosts.a, name, "5", &go, &quit]);
    expect_line(&mut publisher, "ready");
    wait_until("bridge B's publisher in B", || ports(&hosts.b, name).0 >= 1);
    wait_until("bridge A's subscriber in A", || {
        ports(&hosts.a, name).1 >= 1
    });

    // While A runs, B keeps it (its announcements are its liveness):
    // after a dozen periods it is still there.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(!hosts.bridge_b.as_ref().unwrap().has_logged("is gone"));
    assert!(ports(&hosts.b, name).0 >= 1);

    let mut bridge_a = hosts.bridge_a.take().unwrap();
    bridge_a.child.kill().unwrap(); // SIGKILL
    bridge_a.child.wait().unwrap();
    let bridge_b = hosts.bridge_b.as_mut().unwrap();
    // B notices (three silent periods) and drops its forwarding publisher.
    bridge_b.wait_log("is gone");
    wait_until("bridge B's publisher gone", || ports(&hosts.b, name).0 == 0);
    assert!(
        bridge_b.child.try_wait().unwrap().is_none(),
        "bridge B must keep running"
    );
    // A's publisher still works locally after its bridge died.
    hosts.touch("go");
    expect_line(&mut publisher, "done");
    // B's service is usable locally: a publisher in B reaches B's
    // subscriber.
    let b_go = hosts.file("b-go");
    let b_quit = hosts.file("b-quit");
    let mut pub_b = spawn_child("publisher", &[&hosts.b, name, "5", &b_go, &b_quit]);
    expect_line(&mut pub_b, "ready");
    hosts.touch("b-go");
    expect_line(&mut pub_b, "done");
    expect_line(&mut sub_b, "ok 5");
    expect_line(&mut sub_b, "extra 0");
    hosts.touch("quit");
    hosts.touch("b-quit");
    reap(publisher);
    reap(pub_b);
    reap(sub_b);
    hosts.finish();
}

#[test]
fn publishers_on_both_hosts_never_loop() {
    let _w = watchdog(Duration::from_secs(120));
    let hosts = Hosts::new();
    let name = "robot/both";
    let count = SAMPLES.to_string();
    let (go, quit) = (hosts.file("go"), hosts.file("quit"));
    let mut sub_a = spawn_child("two-publishers-subscriber", &[&hosts.a, name, &count]);
    expect_line(&mut sub_a, "ready");
    let mut sub_b = spawn_child("two-publishers-subscriber", &[&hosts.b, name, &count]);
    expect_line(&mut sub_b, "ready");
    let mut pub_a = spawn_child("publisher", &[&hosts.a, name, &count, &go, &quit]);
    expect_line(&mut pub_a, "ready");
    let mut pub_b = spawn_child("publisher", &[&hosts.b, name, &count, &go, &quit]);
    expect_line(&mut pub_b, "ready");
    // Each bridge both subscribes (for its host's publisher) and
    // publishes (for the other's) on the same service.
    for d in [&hosts.a, &hosts.b] {
        wait_until("both bridges' ports", || {
            let (p, s) = ports(d, name);
            p >= 2 && s >= 2
        });
    }
    hosts.touch("go");
    expect_line(&mut pub_a, "done");
    expect_line(&mut pub_b, "done");
    let want = format!("received {} from 2 publishers, extra 0", 2 * SAMPLES);
    expect_line(&mut sub_a, &want);
    expect_line(&mut sub_b, &want);
    hosts.touch("quit");
    for child in [pub_a, pub_b, sub_a, sub_b] {
        reap(child);
    }
    hosts.finish();
}

#[test]
fn slices_from_8_bytes_to_1_mib_cross() {
    let _w = watchdog(Duration::from_secs(120));
    let hosts = Hosts::new();
    let name = "camera/raw";
    let (go, quit) = (hosts.file("go"), hosts.file("quit"));
    let mut sub_b = spawn_child("slice-subscriber", &[&hosts.b, name]);
    expect_line(&mut sub_b, "ready");
    let mut publisher = spawn_child("slice-publisher", &[&hosts.a, name, &go, &quit]);
    expect_line(&mut publisher, "ready");
    wait_until("bridge A's subscriber in A", || {
        ports(&hosts.a, name).1 >= 1
    });
    wait_until("bridge B's publisher in B", || ports(&hosts.b, name).0 >= 1);
    hosts.touch("go");
    expect_line(&mut publisher, "done");
    expect_line(&mut sub_b, "ok");
    hosts.touch("quit");
    reap(publisher);
    reap(sub_b);
    hosts.finish();
}

#[test]
fn malformed_remote_input_is_logged_and_skipped() {
    use conduit_bridge::wire::{
        ANNOUNCEMENT_VERSION, Announcement, QosAnnouncement, SampleMessage, ServiceAnnouncement,
        TypeAnnouncement,
    };
    use zenoh::Wait;

    let _w = watchdog(Duration::from_secs(120));
    let hosts = Hosts::new();
    let name = "robot/pose";
    // A third Zenoh peer, connected to bridge A, that sends garbage.
    let mut config = zenoh::Config::default();
    config
        .insert_json5(
            "connect/endpoints",
            &format!("[\"tcp/127.0.0.1:{}\"]", hosts.port_a),
        )
        .unwrap();
    config.insert_json5("listen/endpoints", "[]").unwrap();
    config
        .insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    let session = zenoh::open(config).wait().unwrap();
    let put = |key: &str, bytes: Vec<u8>| {
        session
            .put(format!("{}/{key}", hosts.prefix), bytes)
            .wait()
            .unwrap();
    };
    let ty = |layout: &conduit::shm::TypeLayout| TypeAnnouncement {
        name: layout.name.to_owned(),
        size: layout.size as u64,
        align: layout.align as u64,
        fingerprint: layout.fingerprint,
    };
    // The QoS of `pose_service`, so that the children can open what the
    // bridges created for the fake bridge.
    let mut qos = QosAnnouncement::from(conduit::pubsub::Qos::default());
    qos.subscriber_buffer = 16;
    qos.overflow = "block".into();
    let fake = Announcement {
        version: ANNOUNCEMENT_VERSION,
        bridge: 0x4d,
        domain: "nowhere".into(),
        services: vec![ServiceAnnouncement::PublishSubscribe {
            name: name.into(),
            slice: false,
            payload: ty(&Pose::LAYOUT),
            header: ty(&Stamp::LAYOUT),
            qos,
            publishers: 1,
        }],
    };
    let bridge_b = hosts.bridge_b.as_ref().unwrap();
    // Until bridge B has the fake bridge's service (the link is up).
    wait_until("bridge B forwarding the fake service", || {
        put("announce/4d", fake.encode());
        std::thread::sleep(Duration::from_millis(20));
        bridge_b.has_logged("of bridge 0x4d in")
    });
    put("announce/4d", fake.encode());
    put(
        &format!("pubsub/{name}"),
        SampleMessage {
            bridge: 0x4d,
            sequence: 1,
            header: &[0; 16],
            payload: &[1, 2, 3],
        }
        .encode(),
    );
    put("announce/66", b"{not json".to_vec());
    put(&format!("pubsub/{name}"), b"CDS1 short".to_vec());
    put("event/robot/alarm", vec![0xff; 40]);
    bridge_b.wait_log("malformed message skipped: announcement");
    bridge_b.wait_log("malformed message skipped: sample: shorter");
    bridge_b.wait_log("malformed message skipped: event");
    bridge_b.wait_log("from bridge 0x4d: ");
    drop(session);

    // Both bridges still forward.
    let count = SAMPLES.to_string();
    let (go, quit) = (hosts.file("go"), hosts.file("quit"));
    let mut sub_b = spawn_child("subscriber", &[&hosts.b, name, &count]);
    expect_line(&mut sub_b, "ready");
    let mut publisher = spawn_child("publisher", &[&hosts.a, name, &count, &go, &quit]);
    expect_line(&mut publisher, "ready");
    wait_until("bridge A's subscriber in A", || {
        ports(&hosts.a, name).1 >= 1
    });
    wait_until("bridge B's publisher in B", || ports(&hosts.b, name).0 >= 1);
    hosts.touch("go");
    expect_line(&mut publisher, "done");
    expect_line(&mut sub_b, &format!("ok {SAMPLES}"));
    expect_line(&mut sub_b, "extra 0");
    hosts.touch("quit");
    reap(publisher);
    reap(sub_b);
    hosts.finish();
}

#[test]
fn a_restarted_bridge_resumes_forwarding() {
    let _w = watchdog(Duration::from_secs(120));
    let mut hosts = Hosts::new();
    let name = "robot/restart";
    let (go, quit) = (hosts.file("go"), hosts.file("quit"));
    let mut publisher = spawn_child("publisher", &[&hosts.a, name, "5", &go, &quit]);
    expect_line(&mut publisher, "ready");
    wait_until("bridge B's publisher in B", || ports(&hosts.b, name).0 >= 1);
    let mut old = hosts.bridge_a.take().unwrap();
    old.child.kill().unwrap(); // SIGKILL
    old.child.wait().unwrap();
    let bridge_b = hosts.bridge_b.as_ref().unwrap();
    bridge_b.wait_log("is gone");
    wait_until("bridge B's publisher gone", || ports(&hosts.b, name).0 == 0);

    // A new bridge for A (connecting to B this time); the programs run on.
    let new = BridgeProcess::start(&hosts.a, &hosts.prefix, free_port(), Some(hosts.port_b));
    new.wait_log(&format!("forwarding local service {name:?} out"));
    let mut sub_b = spawn_child("subscriber", &[&hosts.b, name, "5"]);
    expect_line(&mut sub_b, "ready");
    wait_until("bridge B's publisher in B again", || {
        ports(&hosts.b, name).0 >= 1
    });
    hosts.bridge_a = Some(new);
    hosts.touch("go");
    expect_line(&mut publisher, "done");
    expect_line(&mut sub_b, "ok 5");
    expect_line(&mut sub_b, "extra 0");
    hosts.touch("quit");
    reap(publisher);
    reap(sub_b);
    hosts.finish();
}
