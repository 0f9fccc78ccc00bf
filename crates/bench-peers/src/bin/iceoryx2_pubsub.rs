//! iceoryx2 0.10 publish/subscribe ping-pong between two processes (CPU 0
//! and CPU 1), both busy-polling, next to the `spin_line` floor measured in
//! the same run.
//!
//! `cargo run --release --manifest-path crates/bench-peers/Cargo.toml --bin
//! iceoryx2_pubsub [-- --quick] [--json]`
//!
//! Two `ipc::Service` publish/subscribe services of `[u8]` slices with a
//! `u64` user header (the sequence number): `ping` (this process publishes,
//! the child subscribes) and `pong` (the reverse). Payloads of 8 B, 1 KiB,
//! 64 KiB and 1 MiB, each in two modes:
//! - `header`: only the user header is written and read; the payload bytes
//!   are loaned and sent untouched (what zero-copy transport costs by
//!   itself);
//! - `payload`: the sender fills every payload byte with one bulk write,
//!   the receiver sums every byte and checks the sum
//!   (`harness::fill_payload` / `check_payload`, the same work as conduit's
//!   and the floor's payload mode).
//!
//! The statistic is `harness::measure`'s, the same for every row:
//! per-round-trip samples for p50/p99/mean, then a separately reported
//! batch phase ("batch mean of `harness::BATCH`").
//!
//! Ratios are to `spin_line` with the same payload and mode: the header
//! rows to the bare cache-line floor, the payload rows to
//! `spin_line_with_payload` (fill and sum the same bytes in a shared
//! buffer, hand over with one spinning line per direction).

use core::mem::MaybeUninit;

use bench_peers::{Domain, PAYLOADS, pubsub_plan, unique_prefix};
use conduit_bench::floors;
use conduit_bench::harness::{self, ChildSpec, Measurement, Mode, Plan, Report, fill_byte};
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;

const ECHO_ROLE: &str = "iceoryx2-pubsub-echo";

type Pub = Publisher<ipc::Service, [u8], u64>;
type Sub = Subscriber<ipc::Service, [u8], u64>;

fn service_name(prefix: &str, direction: &str) -> ServiceName {
    ServiceName::new(&format!("{prefix}/{direction}")).expect("service name")
}

/// Loans a slice of `len` bytes, writes `seq` into the user header (and
/// every payload byte in payload mode), sends it.
fn send(publisher: &Pub, seq: u64, len: usize, mode: Mode) {
    let mut sample = publisher.loan_slice_uninit(len).expect("loan");
    *sample.user_header_mut() = seq;
    if mode == Mode::Payload {
        let bytes: &mut [MaybeUninit<u8>] = sample.payload_mut();
        harness::fill_payload(bytes, fill_byte(seq));
    }
    // SAFETY: in payload mode every byte was just written. In header mode
    // the bytes are not written on purpose (the point of the mode): they
    // live in iceoryx2's shared-memory data segment, which the kernel
    // zero-fills when it is created and which holds earlier messages'
    // bytes afterwards, so they hold initialised u8 values (any bit
    // pattern is a valid u8); nobody reads them in header mode.
    let sample = unsafe { sample.assume_init() };
    sample.send().expect("send");
}

/// Busy-polls until message `seq` arrives; in payload mode sums every byte
/// and checks the sum.
fn receive(subscriber: &Sub, seq: u64, len: usize, mode: Mode) {
    loop {
        if let Some(sample) = subscriber.receive().expect("receive") {
            assert_eq!(*sample.user_header(), seq, "out-of-order message");
            if mode == Mode::Payload {
                let payload: &[u8] = sample.payload();
                assert_eq!(payload.len(), len);
                harness::check_payload(payload, fill_byte(seq));
            }
            return;
        }
        core::hint::spin_loop();
    }
}

fn ports(
    node: &Node<ipc::Service>,
    prefix: &str,
    outgoing: &str,
    incoming: &str,
    len: usize,
    create: bool,
) -> (Pub, Sub) {
    let open = |direction: &str| {
        let builder = node
            .service_builder(&service_name(prefix, direction))
            .publish_subscribe::<[u8]>()
            .user_header::<u64>();
        if create {
            builder
                .history_size(0)
                .max_publishers(1)
                .max_subscribers(1)
                .create()
                .expect("create service")
        } else {
            builder.open().expect("open service")
        }
    };
    let out = open(outgoing);
    let inc = open(incoming);
    let publisher = out
        .publisher_builder()
        .initial_max_slice_len(len)
        .create()
        .expect("publisher");
    let subscriber = inc.subscriber_builder().create().expect("subscriber");
    // The services themselves stay alive as long as a port or the node
    // refers to them; dropping the factories here is fine.
    (publisher, subscriber)
}

fn run(domain: &Domain, payload: usize, mode: Mode, plan: &Plan) -> Measurement {
    let prefix = unique_prefix("pubsub", payload, mode);
    let node = NodeBuilder::new()
        .config(domain.config())
        .create::<ipc::Service>()
        .expect("node");
    let (publisher, subscriber) = ports(&node, &prefix, "ping", "pong", payload, true);
    let mut args = vec![
        payload.to_string(),
        mode.as_str().to_owned(),
        prefix.clone(),
    ];
    args.extend(domain.to_args());
    harness::run_ping_pong(
        "iceoryx2_pubsub",
        payload as u64,
        mode,
        plan,
        ChildSpec {
            role: ECHO_ROLE,
            args: &args,
            fds: &[],
        },
        |i| {
            send(&publisher, i, payload, mode);
            receive(&subscriber, i, payload, mode);
        },
    )
}

/// Child: echoes every ping as a pong of the same size and mode.
fn echo(args: &[String]) {
    set_log_level(LogLevel::Warn);
    let plan = Plan::from_args(args);
    let payload: usize = args[2].parse().expect("payload");
    let mode = match args[3].as_str() {
        "header" => Mode::Header,
        _ => Mode::Payload,
    };
    let prefix = &args[4];
    let domain = Domain::from_args(&args[5], &args[6]);
    let node = NodeBuilder::new()
        .config(domain.config())
        .create::<ipc::Service>()
        .expect("node");
    let (publisher, subscriber) = ports(&node, prefix, "pong", "ping", payload, false);
    harness::ready();
    harness::echo_loop(&plan, |i| {
        receive(&subscriber, i, payload, mode);
        send(&publisher, i, payload, mode);
    });
}

fn main() {
    harness::child_main_if_requested_with(&[(ECHO_ROLE, echo)]);
    set_log_level(LogLevel::Warn);
    let options = harness::Options::from_args();
    harness::setup_parent();
    let mut report = Report::new(
        "iceoryx2 0.10 publish/subscribe ping-pong, busy polling, one-way = round trip / 2",
        Some("spin_line"),
    );
    report.push(floors::spin_line(&floors::busy_plan(options.quick)));
    let domain = Domain::create();
    for payload in PAYLOADS {
        // The floor for payload mode: the same bytes written and summed,
        // handed over through one spinning cache line per direction.
        let plan = pubsub_plan(payload, Mode::Payload, options.quick);
        report.push(floors::spin_line_with_payload(
            &plan,
            payload,
            Mode::Payload,
        ));
        for mode in [Mode::Header, Mode::Payload] {
            let plan = pubsub_plan(payload, mode, options.quick);
            report.push(run(&domain, payload, mode, &plan));
        }
    }
    drop(domain);
    report.print(options.json);
}
