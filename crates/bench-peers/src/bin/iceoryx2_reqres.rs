//! iceoryx2 0.10 request/response round trips between two processes (the
//! client on CPU 0, the server on CPU 1), under the same measurement as
//! conduit's (`conduit_bench::reqres`): the same payload sizes
//! (`reqres::SIZES`, typed `[u8; N]` requests and responses), the same
//! payload work (`reqres::fill` / `reqres::read_all`), the same plan
//! (`reqres::plan`) and the same measuring loop and statistic as every
//! row (`harness::measure`: one-way = round trip / 2, p50/p99/mean over
//! per-round-trip samples, then a separately reported batch phase; both
//! processes' CPU time).
//!
//! `cargo run --release --manifest-path crates/bench-peers/Cargo.toml --bin
//! iceoryx2_reqres [-- --quick] [--json]`
//!
//! `--json` prints harness measurement lines (scenario "iceoryx2 reqres
//! (busy)"), which `conduit bench --with-iceoryx2` adds to its table next
//! to "conduit reqres (busy)".
//!
//! One round trip `i`: the client loans a request, writes every byte with
//! `fill_byte(i)` (`reqres::fill`) and sends it; the server busy-polls
//! `receive`, sums and checks every byte (`reqres::read_all`), loans a response, writes every byte,
//! sends it and drops the active request (which ends the stream); the
//! client busy-polls its pending response's `receive`, reads every byte,
//! then drops the response and the pending response.
//!
//! Busy polling only: in iceoryx2 0.10 neither a pending response nor a
//! server can block until something arrives — waiting needs a separate
//! event service (a notifier on the sending side, a listener or WaitSet
//! on the receiving one), which would be a different protocol from the
//! request/response one measured here. conduit's blocking row has no
//! iceoryx2 counterpart.

use bench_peers::{Domain, unique_prefix};
use conduit_bench::harness::{self, Measurement, Mode, Peer, Plan, Report, fill_byte};
use conduit_bench::reqres::{self, SIZES};
use iceoryx2::port::client::Client;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::request_response::PortFactory;

const SERVER_ROLE: &str = "iceoryx2-reqres-server";

/// The mechanism the rows are named with.
const MECHANISM: &str = "iceoryx2 reqres (busy)";

type Service<const N: usize> = PortFactory<ipc::Service, [u8; N], (), [u8; N], ()>;

/// The service, with the QoS of conduit's bench service where iceoryx2
/// has the same knob: one client, one server, two active requests per
/// client, a response buffer of two, one loaned request.
fn service<const N: usize>(node: &Node<ipc::Service>, name: &str, create: bool) -> Service<N> {
    let builder = node
        .service_builder(&ServiceName::new(name).expect("service name"))
        .request_response::<[u8; N], [u8; N]>();
    if create {
        builder
            .max_clients(1)
            .max_servers(1)
            .max_active_requests_per_client(2)
            .max_response_buffer_size(2)
            .max_loaned_requests(1)
            .create()
            .expect("create service")
    } else {
        builder.open().expect("open service")
    }
}

/// Sends a request of `fill` bytes and returns the pending response.
fn send<const N: usize>(
    client: &Client<ipc::Service, [u8; N], (), [u8; N], ()>,
    fill: u8,
) -> iceoryx2::pending_response::PendingResponse<ipc::Service, [u8; N], (), [u8; N], ()> {
    let mut request = client.loan_uninit().expect("loan");
    reqres::fill(request.payload_mut(), fill);
    // SAFETY: `[u8; N]` has no invalid bit patterns and `fill` just wrote
    // every byte.
    unsafe { request.assume_init() }.send().expect("send")
}

/// One round trip, client side (see the module docs).
fn round_trip<const N: usize>(client: &Client<ipc::Service, [u8; N], (), [u8; N], ()>, seq: u64) {
    let pending = send(client, fill_byte(seq));
    // A request sent before the client saw the server would reach nobody
    // (and the busy loop would wait for ever): check the first one.
    if seq == 0 {
        assert_eq!(
            pending.number_of_server_connections(),
            1,
            "the first request reached no server"
        );
    }
    let response = loop {
        if let Some(r) = pending.receive().expect("response") {
            break r;
        }
        std::hint::spin_loop();
    };
    reqres::read_all(response.payload(), fill_byte(seq));
}

fn run<const N: usize>(domain: &Domain, quick: bool) -> Measurement {
    let name = unique_prefix("reqres", N, Mode::Payload);
    let node = NodeBuilder::new()
        .config(domain.config())
        .create::<ipc::Service>()
        .expect("node");
    let svc = service::<N>(&node, &name, true);
    let client = svc.client_builder().create().expect("client");
    // conduit's plan for the same size (`conduit bench` uses it too).
    let plan = reqres::plan(reqres::Mode::Busy, reqres::bench_rounds(N, quick));
    let mut args = plan.to_args();
    args.extend([N.to_string(), name]);
    args.extend(domain.to_args());
    let mut peer = Peer::spawn(SERVER_ROLE, &args, &[]);
    peer.wait_ready();
    let timed = harness::measure(&plan, |i| round_trip(&client, i));
    let report = peer.finish();
    Measurement::new(
        MECHANISM,
        N as u64,
        Mode::Payload,
        timed,
        plan.timed(),
        Some(report),
    )
}

/// Child: the server, answering every request of the plan.
fn server(args: &[String]) {
    set_log_level(LogLevel::Warn);
    let plan = Plan::from_args(args);
    let name = &args[3];
    let domain = Domain::from_args(&args[4], &args[5]);
    match args[2].as_str() {
        "8" => serve::<8>(&plan, name, &domain),
        "1024" => serve::<1024>(&plan, name, &domain),
        "65536" => serve::<65536>(&plan, name, &domain),
        other => panic!("unsupported payload size {other}"),
    }
}

fn serve<const N: usize>(plan: &Plan, name: &str, domain: &Domain) {
    let node = NodeBuilder::new()
        .config(domain.config())
        .create::<ipc::Service>()
        .expect("node");
    let svc = service::<N>(&node, name, false);
    let server = svc.server_builder().create().expect("server");
    harness::ready();
    harness::echo_loop(plan, |i| {
        let active = loop {
            if let Some(a) = server.receive().expect("request") {
                break a;
            }
            std::hint::spin_loop();
        };
        reqres::read_all(active.payload(), fill_byte(i));
        let mut response = active.loan_uninit().expect("loan");
        reqres::fill(response.payload_mut(), fill_byte(i));
        // SAFETY: `[u8; N]` has no invalid bit patterns and `fill` just
        // wrote every byte.
        unsafe { response.assume_init() }.send().expect("send");
        // Dropping `active` here ends the stream, as conduit's server does.
    });
}

fn main() {
    harness::child_main_if_requested_with(&[(SERVER_ROLE, server)]);
    set_log_level(LogLevel::Warn);
    let options = harness::Options::from_args();
    harness::setup_parent();
    let domain = Domain::create();
    let mut report = Report::new(
        "iceoryx2 0.10 request/response, busy polling, one-way = round trip / 2",
        None,
    );
    for size in SIZES {
        report.push(match size {
            8 => run::<8>(&domain, options.quick),
            1024 => run::<1024>(&domain, options.quick),
            65536 => run::<65536>(&domain, options.quick),
            other => panic!("unsupported payload size {other}"),
        });
    }
    drop(domain);
    report.print(options.json);
}
