//! Publish/subscribe ping-pong between two processes pinned to CPU 0 and 1.
//!
//! The parent publishes on `ping` and subscribes to `pong`; the child does
//! the reverse and echoes every sample. One-way latency = round trip / 2.
//! The clock is read once per batch of [`BATCH`] round trips (a clock read
//! right after a spin loop would add tens of ns that are not conduit), so
//! p50/p99 are over batch means.
//!
//! Payloads are `[u8]` slices of 8 B, 1 KiB, 64 KiB and 1 MiB, in modes:
//! * header-only: the sample is loaned and sent, nobody touches the bytes
//!   (shows that latency does not depend on size: zero-copy);
//! * payload: the sender fills every byte, the receiver reads every byte;
//! * blocking: `receive()` with a spin budget, then a futex sleep.

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conduit::node::Node;
use conduit::pubsub::PubSubService;
use conduit::pubsub::{Publisher, Subscriber};
use conduit::sync::Spin;

use crate::msg::{Latency, cpu_time, pin_to_cpu};

/// Environment variable that makes the bench binary a ping-pong child.
pub const ROLE_ENV: &str = "CONDUIT_BENCH_PUBSUB_ROLE";
/// Round trips per clock read.
pub const BATCH: usize = 16;
/// Payload sizes measured.
pub const SIZES: [usize; 4] = [8, 1024, 64 * 1024, 1024 * 1024];

/// How the two sides wait and what they do with the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Busy-poll `try_receive`; nobody touches the payload bytes.
    BusyHeaderOnly,
    /// Busy-poll; the sender writes every byte, the receiver reads every byte.
    BusyPayload,
    /// Blocking `receive()` with the default spin budget.
    BlockingDefaultSpin,
    /// Blocking `receive()` that sleeps on the futex at once.
    BlockingNoSpin,
}

impl Mode {
    fn code(self) -> &'static str {
        match self {
            Mode::BusyHeaderOnly => "busy-header",
            Mode::BusyPayload => "busy-payload",
            Mode::BlockingDefaultSpin => "blocking-spin",
            Mode::BlockingNoSpin => "blocking-nospin",
        }
    }

    fn parse(s: &str) -> Mode {
        match s {
            "busy-header" => Mode::BusyHeaderOnly,
            "busy-payload" => Mode::BusyPayload,
            "blocking-spin" => Mode::BlockingDefaultSpin,
            _ => Mode::BlockingNoSpin,
        }
    }

    fn spin(self) -> Spin {
        match self {
            Mode::BlockingNoSpin => Spin::NONE,
            _ => Spin::duration(conduit::pubsub::DEFAULT_SPIN),
        }
    }
}

/// A sample of length 0 tells the child to stop.
type Topic = PubSubService<[u8]>;

fn topic(node: &Node, name: &str) -> Topic {
    node.service(name)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(1)
        .max_loans(1)
        .max_borrowed(1)
        .open_or_create()
        .expect("open the bench service")
}

fn ports(topic_out: &Topic, topic_in: &Topic, size: usize, spin: Spin) -> Ports {
    let publisher = topic_out
        .publisher()
        .max_slice_len(size)
        .create()
        .expect("publisher");
    let subscriber = topic_in
        .subscriber()
        .spin(spin)
        .create()
        .expect("subscriber");
    Ports {
        publisher,
        subscriber,
    }
}

struct Ports {
    publisher: Publisher<[u8]>,
    subscriber: Subscriber<[u8]>,
}

impl Ports {
    #[inline]
    fn send(&self, size: usize, mode: Mode, stop: bool, fill: u8) {
        let len = if stop { 0 } else { size };
        let sample = self.publisher.loan_slice_uninit(len).expect("loan");
        let sample = if mode == Mode::BusyPayload {
            sample.write_from_fn(|_| fill)
        } else {
            // SAFETY: the chunk lies in shared memory that the kernel
            // zero-filled and earlier samples wrote: every byte holds a
            // defined value, and in header-only modes nobody reads them.
            unsafe { sample.assume_init() }
        };
        sample.send().expect("send");
    }

    /// Receives one sample; returns its length.
    #[inline]
    fn receive(&self, mode: Mode) -> usize {
        let sample = match mode {
            Mode::BusyHeaderOnly | Mode::BusyPayload => loop {
                if let Some(s) = self.subscriber.try_receive().expect("receive") {
                    break s;
                }
                std::hint::spin_loop();
            },
            _ => self.subscriber.receive().expect("receive"),
        };
        if mode == Mode::BusyPayload {
            let sum = sample
                .iter()
                .fold(0u64, |a, b| a.wrapping_add(u64::from(*b)));
            black_box(sum);
        }
        sample.len()
    }
}

/// Runs one ping-pong scenario; `rounds` timed round trips after
/// `rounds / 10` warm-up ones.
pub fn ping_pong(size: usize, mode: Mode, rounds: usize) -> Latency {
    let domain = format!("bench-pubsub-{}", std::process::id());
    let node = Node::builder()
        .name("bench-ping")
        .domain(&domain)
        .create()
        .expect("node");
    let ping = topic(&node, "ping");
    let pong = topic(&node, "pong");
    let ports = ports(&ping, &pong, size, mode.spin());
    pin_to_cpu(0);
    let mut child = spawn(&domain, size, mode);
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line).expect("child ready");
    assert_eq!(line.trim(), "ready", "child failed to start");
    ports.publisher.update_connections();

    let warmup = (rounds / 10).max(BATCH);
    for i in 0..warmup {
        ports.send(size, mode, false, i as u8);
        ports.receive(mode);
    }
    let batches = rounds.div_ceil(BATCH);
    let mut one_way = Vec::with_capacity(batches);
    let cpu0 = cpu_time(false);
    for b in 0..batches {
        let start = Instant::now();
        for i in 0..BATCH {
            ports.send(size, mode, false, (b + i) as u8);
            ports.receive(mode);
        }
        one_way.push(start.elapsed() / (2 * BATCH as u32));
    }
    let cpu = cpu_time(false) - cpu0;
    ports.send(size, mode, true, 0);
    let status = child.wait().expect("wait child");
    assert!(status.success(), "child failed: {status}");
    one_way.sort();
    let pct = |p: f64| one_way[((one_way.len() - 1) as f64 * p) as usize];
    Latency {
        name: format!("conduit {} {}", mode.code(), size_name(size)),
        p50: pct(0.5),
        p99: pct(0.99),
        cpu_per_round_trip: cpu / (batches * BATCH) as u32,
    }
}

/// "8 B", "1 KiB", "64 KiB", "1 MiB".
pub fn size_name(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

fn spawn(domain: &str, size: usize, mode: Mode) -> Child {
    Command::new(std::env::current_exe().expect("current_exe"))
        .env(ROLE_ENV, "pong")
        .args([domain, &size.to_string(), mode.code()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

/// The echoing child (call from `main` when [`ROLE_ENV`] is set, with the
/// program's arguments after argv\[0\]).
pub fn child(args: &[String]) {
    let domain = &args[0];
    let size: usize = args[1].parse().expect("size");
    let mode = Mode::parse(&args[2]);
    pin_to_cpu(1);
    let node = Node::builder()
        .name("bench-pong")
        .domain(domain)
        .create()
        .expect("node");
    let ping = topic(&node, "ping");
    let pong = topic(&node, "pong");
    let ports = ports(&pong, &ping, size, mode.spin());
    println!("ready");
    loop {
        if ports.receive(mode) == 0 {
            break;
        }
        ports.send(size, mode, false, 1);
    }
}

/// Bytes in /dev/shm of a default service (`u64` payload, default QoS)
/// with one publisher and one subscriber, node segments included:
/// (service segment, publisher data segment, both node segments).
pub fn default_service_footprint() -> (u64, u64, u64) {
    let domain = format!("bench-footprint-{}", std::process::id());
    let node = Node::builder().domain(&domain).create().expect("node");
    let topic = node
        .service("footprint")
        .publish_subscribe::<u64>()
        .open_or_create()
        .expect("service");
    let publisher = topic.publisher().create().expect("publisher");
    let _subscriber = topic.subscriber().create().expect("subscriber");
    let size = |name: String| {
        std::fs::metadata(format!("/dev/shm/conduit.{domain}.{name}")).map_or(0, |m| m.len())
    };
    let service = size(conduit::ServiceKind::PublishSubscribe.segment_name("footprint"));
    let data = size(conduit::pubsub::data_segment_name(publisher.id()));
    let nodes = size(format!("node.{}", node.id()));
    (service, data, nodes)
}

/// Runs every conduit ping-pong scenario.
pub fn all(rounds: usize) -> Vec<Latency> {
    let mut out = Vec::new();
    for mode in [Mode::BusyHeaderOnly, Mode::BusyPayload] {
        for size in SIZES {
            let r = if size >= 1 << 20 && mode == Mode::BusyPayload {
                rounds / 20
            } else {
                rounds
            };
            out.push(ping_pong(size, mode, r.max(BATCH)));
        }
    }
    out.push(ping_pong(8, Mode::BlockingDefaultSpin, rounds));
    out.push(ping_pong(
        8,
        Mode::BlockingNoSpin,
        (rounds / 50).max(BATCH * 4),
    ));
    out
}

/// Sleeps briefly between scenarios so the previous child is fully gone.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(20));
}
