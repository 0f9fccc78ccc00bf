//! Publish/subscribe ping-pong between two processes pinned to CPU 0 and 1.
//!
//! The parent publishes on `ping` and subscribes to `pong`; the child (a
//! [`crate::harness`] role) does the reverse and echoes every sample. The
//! measuring loop and statistic are [`harness::measure`]'s, the same as
//! every other row's: one-way = round trip / 2, p50/p99/mean over
//! per-round-trip samples; busy modes add a separately reported batch
//! phase ("batch mean of [`harness::BATCH`]"). Both processes report their
//! CPU time.
//!
//! Payloads are `[u8]` slices of 8 B, 1 KiB, 64 KiB and 1 MiB, in modes:
//! * header-only: the sample is loaned and sent, nobody touches the bytes
//!   (shows that latency does not depend on size: zero-copy);
//! * payload: the sender fills every byte with one bulk write
//!   ([`harness::fill_payload`]), the receiver sums every byte and checks
//!   the sum ([`harness::check_payload`]) — the same work as the floors'
//!   and iceoryx2's payload mode;
//! * blocking: `receive()` with a spin budget, then a futex sleep.

use std::time::Duration;

use conduit::node::Node;
use conduit::pubsub::PubSubService;
use conduit::pubsub::{Publisher, Subscriber};
use conduit::sync::Spin;

use crate::harness::{self, ChildSpec, Measurement, Peer, Plan, fill_byte};

/// The child role (registered in [`harness`]'s built-in roles).
pub const ROLE: &str = "conduit-pubsub-echo";
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

    /// The row's scenario name and whether its payload is touched.
    pub fn scenario(self) -> (&'static str, harness::Mode) {
        match self {
            Mode::BusyHeaderOnly => ("conduit_pubsub", harness::Mode::Header),
            Mode::BusyPayload => ("conduit_pubsub", harness::Mode::Payload),
            Mode::BlockingDefaultSpin => ("conduit_pubsub_blocking", harness::Mode::Header),
            Mode::BlockingNoSpin => ("conduit_pubsub_blocking_nospin", harness::Mode::Header),
        }
    }

    /// Whether both sides busy-poll (a busy plan with a batch phase).
    pub fn busy(self) -> bool {
        matches!(self, Mode::BusyHeaderOnly | Mode::BusyPayload)
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
    /// Sends message `seq`: in payload mode every byte written with one
    /// bulk write of [`fill_byte`]`(seq)`.
    #[inline]
    fn send(&self, size: usize, mode: Mode, seq: u64) {
        let mut sample = self.publisher.loan_slice_uninit(size).expect("loan");
        if mode == Mode::BusyPayload {
            harness::fill_payload(sample.payload_mut(), fill_byte(seq));
        }
        // SAFETY: in payload mode every byte was just written. Otherwise the
        // chunk lies in shared memory that the kernel zero-filled and
        // earlier samples wrote: every byte holds a defined value, and in
        // header-only modes nobody reads them.
        let sample = unsafe { sample.assume_init() };
        sample.send().expect("send");
    }

    /// Receives message `seq`; in payload mode sums and checks every byte.
    #[inline]
    fn receive(&self, mode: Mode, seq: u64) {
        let sample = if mode.busy() {
            loop {
                if let Some(s) = self.subscriber.try_receive().expect("receive") {
                    break s;
                }
                std::hint::spin_loop();
            }
        } else {
            self.subscriber.receive().expect("receive")
        };
        if mode == Mode::BusyPayload {
            harness::check_payload(&sample, fill_byte(seq));
        }
    }
}

/// The plan of a conduit pub/sub row of `rounds` timed round trips: busy
/// (with a batch phase of [`harness::BATCH`]) for the busy modes, sleeping
/// for the blocking ones; `rounds / 10` warm-up round trips.
pub fn plan(mode: Mode, rounds: usize) -> Plan {
    let rounds = rounds.max(1) as u64;
    if mode.busy() {
        Plan::busy(rounds / 10, rounds, harness::BATCH)
    } else {
        Plan::sleeping(rounds / 10, rounds)
    }
}

/// Runs one ping-pong scenario under `plan` ([`plan`] for the usual one).
pub fn ping_pong(size: usize, mode: Mode, plan: &Plan) -> Measurement {
    let domain = format!("bench-pubsub-{}", std::process::id());
    let node = Node::builder()
        .name("bench-ping")
        .domain(&domain)
        .create()
        .expect("node");
    let ping = topic(&node, "ping");
    let pong = topic(&node, "pong");
    let ports = ports(&ping, &pong, size, mode.spin());
    let (scenario, touch) = mode.scenario();
    let mut args = plan.to_args();
    args.extend([domain.clone(), size.to_string(), mode.code().to_owned()]);
    let spec = ChildSpec::role(ROLE);
    let mut peer = Peer::spawn(spec.role, &args, spec.fds);
    peer.wait_ready();
    ports.publisher.update_connections();
    let timed = harness::measure(plan, |i| {
        ports.send(size, mode, i);
        ports.receive(mode, i);
    });
    let report = peer.finish();
    drop((ports, ping, pong, node));
    let _ = Node::cleanup(&domain);
    Measurement::new(
        scenario,
        size as u64,
        touch,
        timed,
        plan.timed(),
        Some(report),
    )
}

/// "8 B", "1 KiB", "64 KiB", "1 MiB".
pub fn size_name(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

/// The echoing child (the [`ROLE`] body): `warmup timed domain size
/// mode`.
pub fn child(args: &[String]) {
    let plan = Plan::from_args(args);
    let domain = &args[2];
    let size: usize = args[3].parse().expect("size");
    let mode = Mode::parse(&args[4]);
    let node = Node::builder()
        .name("bench-pong")
        .domain(domain)
        .create()
        .expect("node");
    let ping = topic(&node, "ping");
    let pong = topic(&node, "pong");
    let ports = ports(&pong, &ping, size, mode.spin());
    harness::ready();
    harness::echo_loop(&plan, |i| {
        ports.receive(mode, i);
        ports.send(size, mode, i);
    });
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
pub fn all(rounds: usize) -> Vec<Measurement> {
    let mut out = Vec::new();
    for mode in [Mode::BusyHeaderOnly, Mode::BusyPayload] {
        for size in SIZES {
            let r = if size >= 1 << 20 && mode == Mode::BusyPayload {
                rounds / 20
            } else {
                rounds
            };
            out.push(ping_pong(size, mode, &plan(mode, r)));
        }
    }
    out.push(ping_pong(
        8,
        Mode::BlockingDefaultSpin,
        &plan(Mode::BlockingDefaultSpin, rounds),
    ));
    out.push(ping_pong(
        8,
        Mode::BlockingNoSpin,
        &plan(Mode::BlockingNoSpin, rounds / 50),
    ));
    out
}

/// Sleeps briefly between scenarios so the previous child is fully gone.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(20));
}
