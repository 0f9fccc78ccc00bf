//! Request/response round trips between two processes pinned to CPU 0
//! and 1: the parent is the client, the child (a [`crate::harness`] role)
//! the server.
//!
//! One round trip `i`: the client loans a request, writes every byte with
//! one bulk write of [`fill_byte`]`(i)` and sends it; the server takes it,
//! sums and checks every byte, loans a response, writes every byte the
//! same way, sends it and drops the request (which ends the stream); the
//! client takes the response and sums and checks every byte, then drops
//! the pending response. The same payload work as every payload row
//! ([`harness::fill_payload`], [`harness::check_payload`]), shared with
//! bench-peers' `iceoryx2_reqres`.
//!
//! The measuring loop and statistic are [`harness::measure`]'s, the same
//! as every other row's: one-way = round trip / 2, p50/p99/mean over
//! per-round-trip samples; busy mode adds a separately reported batch
//! phase. Both processes report their CPU time.

use std::mem::MaybeUninit;

use conduit::node::Node;
use conduit::reqres::{Client, ReqResService, Server};
use conduit::shm::ShmSafe;
use conduit::sync::Spin;

use crate::harness::{self, ChildSpec, Measurement, Peer, Plan, fill_byte};

/// The server role (registered in [`harness`]'s built-in roles).
pub const ROLE: &str = "conduit-reqres-server";
/// Payload sizes measured (typed payloads: `[u8; N]`).
pub const SIZES: [usize; 3] = [8, 1024, 64 * 1024];

/// How both sides wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Busy-poll `try_receive`.
    Busy,
    /// Blocking `receive()` with the default spin budget.
    Blocking,
}

impl Mode {
    fn code(self) -> &'static str {
        match self {
            Mode::Busy => "busy",
            Mode::Blocking => "blocking",
        }
    }
}

fn service<const N: usize>(node: &Node) -> ReqResService<[u8; N], [u8; N]> {
    node.service("rr")
        .request_response::<[u8; N], [u8; N]>()
        .max_clients(1)
        .max_servers(1)
        .active_requests(2)
        .response_buffer(2)
        .max_loans(1)
        .open_or_create()
        .expect("open the bench service")
}

/// Writes every byte of a loaned `[u8; N]` payload with `byte`
/// ([`harness::fill_payload`]): the sender's share of the payload work.
/// Shared with bench-peers' `iceoryx2_reqres`.
pub fn fill<const N: usize>(payload: &mut MaybeUninit<[u8; N]>, byte: u8) {
    // SAFETY: `MaybeUninit<[u8; N]>` has the layout of `[MaybeUninit<u8>;
    // N]`; the slice covers exactly the exclusively borrowed place.
    let bytes: &mut [MaybeUninit<u8>] =
        unsafe { core::slice::from_raw_parts_mut(payload.as_mut_ptr().cast(), N) };
    harness::fill_payload(bytes, byte);
}

/// Writes every byte of a fresh loan with `fill`, then sends it.
macro_rules! fill_and_send {
    ($loan:expr, $fill:expr) => {{
        let mut loan = $loan;
        fill(loan.payload_mut(), $fill);
        // SAFETY: `[u8; N]` has no invalid bit patterns and `fill` just
        // wrote every byte.
        unsafe { loan.assume_init() }.send().expect("send")
    }};
}

/// Sums and checks every byte of a received `[u8; N]` payload
/// ([`harness::check_payload`]): the receiver's share of the payload work
/// (shared with bench-peers' `iceoryx2_reqres`).
pub fn read_all<const N: usize>(bytes: &[u8; N], byte: u8) {
    harness::check_payload(bytes, byte);
}

fn round_trip<const N: usize>(client: &Client<[u8; N], [u8; N]>, mode: Mode, seq: u64) {
    let pending = fill_and_send!(client.loan_uninit().expect("loan"), fill_byte(seq));
    let response = match mode {
        Mode::Busy => loop {
            if let Some(r) = pending.try_receive().expect("response") {
                break r;
            }
            std::hint::spin_loop();
        },
        Mode::Blocking => pending.receive().expect("response"),
    };
    read_all(&response, fill_byte(seq));
}

/// The plan of a request/response row of `rounds` timed round trips (the
/// same for conduit's and iceoryx2's): busy (batch phase of
/// [`harness::BATCH`]) or sleeping, `rounds / 10` warm-up round trips.
pub fn plan(mode: Mode, rounds: usize) -> Plan {
    let rounds = rounds.max(1) as u64;
    match mode {
        Mode::Busy => Plan::busy(rounds / 10, rounds, harness::BATCH),
        Mode::Blocking => Plan::sleeping(rounds / 10, rounds),
    }
}

/// Runs one scenario under `plan` ([`plan`] for the usual one), payload
/// `size` bytes (one of [`SIZES`]); the row's scenario is
/// `conduit_reqres_<mode>`.
pub fn round_trips(size: usize, mode: Mode, plan: &Plan) -> Measurement {
    match size {
        8 => run::<8>(mode, plan),
        1024 => run::<1024>(mode, plan),
        65536 => run::<65536>(mode, plan),
        _ => panic!("unsupported request/response payload size {size}"),
    }
}

fn run<const N: usize>(mode: Mode, plan: &Plan) -> Measurement {
    let domain = format!("bench-reqres-{}", std::process::id());
    let node = Node::builder()
        .name("bench-client")
        .domain(&domain)
        .create()
        .expect("node");
    let svc = service::<N>(&node);
    let client = svc
        .client()
        .spin(Spin::duration(conduit::reqres::DEFAULT_SPIN))
        .create()
        .expect("client");
    let mut args = plan.to_args();
    args.extend([domain.clone(), N.to_string(), mode.code().to_owned()]);
    let spec = ChildSpec::role(ROLE);
    let mut peer = Peer::spawn(spec.role, &args, spec.fds);
    peer.wait_ready();
    let timed = harness::measure(plan, |i| round_trip(&client, mode, i));
    let report = peer.finish();
    drop((client, svc, node));
    let _ = Node::cleanup(&domain);
    Measurement::new(
        &format!("conduit_reqres_{}", mode.code()),
        N as u64,
        harness::Mode::Payload,
        timed,
        plan.timed(),
        Some(report),
    )
}

/// Round trips `conduit bench` (and bench-peers' `iceoryx2_reqres`) time
/// per payload size: fewer for big payloads (each moves and reads the
/// bytes), the `--quick` count when `quick`.
pub fn bench_rounds(size: usize, quick: bool) -> usize {
    let base = if quick { 50_000 } else { 200_000 };
    (base / (size / 1024).max(1)).max(200)
}

/// The server child (the [`ROLE`] body): `warmup timed domain size mode`.
pub fn child(args: &[String]) {
    let plan = Plan::from_args(args);
    let domain = &args[2];
    let mode = if args[4] == "busy" {
        Mode::Busy
    } else {
        Mode::Blocking
    };
    match args[3].as_str() {
        "8" => serve::<8>(&plan, domain, mode),
        "1024" => serve::<1024>(&plan, domain, mode),
        _ => serve::<65536>(&plan, domain, mode),
    }
}

fn serve<const N: usize>(plan: &Plan, domain: &str, mode: Mode)
where
    [u8; N]: ShmSafe,
{
    let node = Node::builder()
        .name("bench-server")
        .domain(domain)
        .create()
        .expect("node");
    let svc = service::<N>(&node);
    let server: Server<[u8; N], [u8; N]> = svc.server().create().expect("server");
    harness::ready();
    harness::echo_loop(plan, |i| {
        let active = match mode {
            Mode::Busy => loop {
                if let Some(a) = server.try_receive().expect("request") {
                    break a;
                }
                std::hint::spin_loop();
            },
            Mode::Blocking => server.receive().expect("request"),
        };
        read_all(&active, fill_byte(i));
        fill_and_send!(active.loan_uninit().expect("loan"), fill_byte(i));
    });
}
