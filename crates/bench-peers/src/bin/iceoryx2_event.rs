//! iceoryx2 0.10 event ping-pong between two processes (CPU 0 and CPU 1),
//! each listener sleeping in `blocking_wait`, next to the `futex_pingpong`
//! and `pipe_pingpong` floors measured in the same run.
//!
//! `cargo run --release --manifest-path crates/bench-peers/Cargo.toml --bin
//! iceoryx2_event [-- --quick] [--json]`
//!
//! Two `ipc::Service` event services: `ping` (this process notifies, the
//! child listens) and `pong` (the reverse). One round trip = notify, the
//! peer wakes and notifies back, this side wakes. One-way = round trip / 2,
//! the clock read once per round trip.

use bench_peers::{Domain, unique_prefix};
use conduit_bench::floors;
use conduit_bench::harness::{self, ChildSpec, Measurement, Mode, Plan, Report};
use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::prelude::*;

const ECHO_ROLE: &str = "iceoryx2-event-echo";

fn ports(
    node: &Node<ipc::Service>,
    prefix: &str,
    outgoing: &str,
    incoming: &str,
    create: bool,
) -> (Notifier<ipc::Service>, Listener<ipc::Service>) {
    let open = |direction: &str| {
        let name = ServiceName::new(&format!("{prefix}/{direction}")).expect("service name");
        let builder = node.service_builder(&name).event();
        if create {
            // Only our own notifications count: no events for notifiers
            // appearing, leaving or dying.
            builder
                .max_notifiers(1)
                .max_listeners(1)
                .disable_notifier_created_event()
                .disable_notifier_dropped_event()
                .disable_notifier_dead_event()
                .create()
                .expect("create event service")
        } else {
            builder.open().expect("open event service")
        }
    };
    let out = open(outgoing);
    let inc = open(incoming);
    let notifier = out.notifier_builder().create().expect("notifier");
    let listener = inc.listener_builder().create().expect("listener");
    (notifier, listener)
}

fn notify(notifier: &Notifier<ipc::Service>) {
    let reached = notifier.notify().expect("notify");
    assert_eq!(reached, 1, "the peer's listener is not connected");
}

/// Sleeps until at least one notification arrived (a wait that returns
/// with none is spurious and waits again).
fn wait(listener: &Listener<ipc::Service>) {
    let mut seen = 0u64;
    while seen == 0 {
        listener
            .blocking_wait(|_| seen += 1)
            .expect("blocking_wait");
    }
    assert_eq!(seen, 1, "more notifications than pings");
}

fn run(domain: &Domain, plan: &Plan) -> Measurement {
    let prefix = unique_prefix("event", 0, Mode::Header);
    let node = NodeBuilder::new()
        .config(domain.config())
        .create::<ipc::Service>()
        .expect("node");
    let (notifier, listener) = ports(&node, &prefix, "ping", "pong", true);
    let mut args = vec![prefix.clone()];
    args.extend(domain.to_args());
    harness::run_ping_pong(
        "iceoryx2_event",
        0,
        Mode::Header,
        plan,
        ChildSpec {
            role: ECHO_ROLE,
            args: &args,
            fds: &[],
        },
        |_| {
            notify(&notifier);
            wait(&listener);
        },
    )
}

/// Child: answers every notification with one.
fn echo(args: &[String]) {
    set_log_level(LogLevel::Warn);
    let plan = Plan::from_args(args);
    let domain = Domain::from_args(&args[3], &args[4]);
    let node = NodeBuilder::new()
        .config(domain.config())
        .create::<ipc::Service>()
        .expect("node");
    let (notifier, listener) = ports(&node, &args[2], "pong", "ping", false);
    harness::ready();
    harness::echo_loop(&plan, |_| {
        wait(&listener);
        notify(&notifier);
    });
}

fn main() {
    harness::child_main_if_requested_with(&[(ECHO_ROLE, echo)]);
    set_log_level(LogLevel::Warn);
    let options = harness::Options::from_args();
    harness::setup_parent();
    let mut report = Report::new(
        "iceoryx2 0.10 event ping-pong, listener sleeping, one-way = round trip / 2",
        Some("futex_pingpong"),
    );
    let plan = floors::sleeping_plan(options.quick);
    report.push(floors::futex_pingpong(&plan));
    report.push(floors::pipe_pingpong(&plan));
    let domain = Domain::create();
    report.push(run(&domain, &plan));
    drop(domain);
    report.print(options.json);
}
