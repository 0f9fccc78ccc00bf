//! Request/response round trips between two processes pinned to CPU 0
//! and 1: the parent is the client, the child the server.
//!
//! One round trip: the client loans a request, writes every byte and sends
//! it; the server takes it, reads every byte, loans a response, writes
//! every byte, sends it and drops the request (which ends the stream);
//! the client takes the response and reads every byte, then drops the
//! pending response. The same payload work as the pub/sub ping-pong's
//! payload mode (`crate::pubsub`), so the two compare in one run.
//!
//! As every latency in `conduit bench`, the figure is one-way: the round
//! trip / 2, its clock read once per batch of [`BATCH`] round trips (p50
//! and p99 are over batch means).

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::mem::MaybeUninit;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use conduit::node::Node;
use conduit::reqres::{Client, ReqResService, Server};
use conduit::shm::ShmSafe;
use conduit::sync::Spin;

use crate::msg::{Latency, cpu_time, pin_to_cpu};
use crate::pubsub::size_name;

/// Environment variable that makes the bench binary a server child.
pub const ROLE_ENV: &str = "CONDUIT_BENCH_REQRES_ROLE";
/// Round trips per clock read.
pub const BATCH: usize = 16;
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

/// The request's first byte 0 tells the server to stop.
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

/// Writes every byte of a loaned `[u8; N]` payload with `byte`: the
/// sender's share of the payload work. Shared with bench-peers'
/// `iceoryx2_reqres`, so that both sides of the comparison do the same.
pub fn fill<const N: usize>(payload: &mut MaybeUninit<[u8; N]>, byte: u8) {
    // SAFETY: `payload` is a valid, exclusively borrowed `[u8; N]`-sized
    // place; writing `N` bytes of any value into it stays inside it (and
    // any byte is a valid `u8`).
    unsafe { payload.as_mut_ptr().cast::<u8>().write_bytes(byte, N) };
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

/// Reads every byte of a received `[u8; N]` payload (a sum the optimiser
/// cannot skip) and returns the first one: the receiver's share of the
/// payload work (shared with bench-peers' `iceoryx2_reqres`).
pub fn read_all<const N: usize>(bytes: &[u8; N]) -> u8 {
    let sum = bytes
        .iter()
        .fold(0u64, |a, b| a.wrapping_add(u64::from(*b)));
    black_box(sum);
    bytes[0]
}

fn round_trip<const N: usize>(client: &Client<[u8; N], [u8; N]>, mode: Mode, fill: u8) {
    let pending = fill_and_send!(client.loan_uninit().expect("loan"), fill);
    let response = match mode {
        Mode::Busy => loop {
            if let Some(r) = pending.try_receive().expect("response") {
                break r;
            }
            std::hint::spin_loop();
        },
        Mode::Blocking => pending.receive().expect("response"),
    };
    read_all(&response);
}

/// Runs one scenario with [`measure`]: `rounds` timed round trips (whole
/// batches) after [`warmup_rounds`] warm-up ones, payload `size` bytes
/// (one of [`SIZES`]).
pub fn round_trips(size: usize, mode: Mode, rounds: usize) -> Latency {
    match size {
        8 => run::<8>(mode, rounds),
        1024 => run::<1024>(mode, rounds),
        65536 => run::<65536>(mode, rounds),
        _ => panic!("unsupported request/response payload size {size}"),
    }
}

fn run<const N: usize>(mode: Mode, rounds: usize) -> Latency {
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
    pin_to_cpu(0);
    let mut child = spawn(&domain, N, mode);
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line).expect("server ready");
    assert_eq!(line.trim(), "ready", "server failed to start");

    let mut latency = measure(rounds, |fill| round_trip(&client, mode, fill));
    drop(fill_and_send!(client.loan_uninit().expect("loan"), 0));
    let status = child.wait().expect("wait server");
    assert!(status.success(), "server failed: {status}");
    latency.name = format!("conduit reqres {} {}", mode.code(), size_name(N));
    latency
}

/// Warm-up round trips of a run of `rounds` timed ones.
pub fn warmup_rounds(rounds: usize) -> usize {
    (rounds / 10).max(BATCH)
}

/// Timed round trips of a run of `rounds`: rounded up to whole batches.
pub fn timed_rounds(rounds: usize) -> usize {
    rounds.div_ceil(BATCH) * BATCH
}

/// Round trips `conduit bench` (and bench-peers' `iceoryx2_reqres`) time
/// per payload size: fewer for big payloads (each moves and reads the
/// bytes), the `--quick` count when `quick`.
pub fn bench_rounds(size: usize, quick: bool) -> usize {
    let base = if quick { 50_000 } else { 200_000 };
    (base / (size / 1024).max(1)).max(200)
}

/// The measuring loop and statistic of every request/response row,
/// conduit's and its peers': [`warmup_rounds`] untimed calls of
/// `round_trip(fill)`, then [`timed_rounds`] timed ones with the clock read
/// once per batch of [`BATCH`]; one-way = batch time / (2 × [`BATCH`]);
/// p50 and p99 over the batch means; CPU time of this (the measuring)
/// process per round trip. `fill` is the request's fill byte, never 0
/// (which stops conduit's server). The returned `name` is empty.
pub fn measure(rounds: usize, mut round_trip: impl FnMut(u8)) -> Latency {
    for i in 0..warmup_rounds(rounds) {
        round_trip((i as u8) | 1);
    }
    let batches = timed_rounds(rounds) / BATCH;
    let mut one_way = Vec::with_capacity(batches);
    let cpu0 = cpu_time(false);
    for b in 0..batches {
        let start = Instant::now();
        for i in 0..BATCH {
            round_trip(((b + i) as u8) | 1);
        }
        one_way.push(start.elapsed() / (2 * BATCH as u32));
    }
    let cpu = cpu_time(false) - cpu0;
    one_way.sort();
    let pct = |p: f64| one_way[((one_way.len() - 1) as f64 * p) as usize];
    Latency {
        name: String::new(),
        p50: pct(0.5),
        p99: pct(0.99),
        cpu_per_round_trip: cpu / (batches * BATCH) as u32,
    }
}

fn spawn(domain: &str, size: usize, mode: Mode) -> Child {
    Command::new(std::env::current_exe().expect("current_exe"))
        .env(ROLE_ENV, "server")
        .args([domain, &size.to_string(), mode.code()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn server")
}

/// The server child (call from `main` when [`ROLE_ENV`] is set, with the
/// program's arguments after argv\[0\]).
pub fn child(args: &[String]) {
    let domain = &args[0];
    let mode = if args[2] == "busy" {
        Mode::Busy
    } else {
        Mode::Blocking
    };
    match args[1].as_str() {
        "8" => serve::<8>(domain, mode),
        "1024" => serve::<1024>(domain, mode),
        _ => serve::<65536>(domain, mode),
    }
}

fn serve<const N: usize>(domain: &str, mode: Mode)
where
    [u8; N]: ShmSafe,
{
    pin_to_cpu(1);
    let node = Node::builder()
        .name("bench-server")
        .domain(domain)
        .create()
        .expect("node");
    let svc = service::<N>(&node);
    let server: Server<[u8; N], [u8; N]> = svc.server().create().expect("server");
    println!("ready");
    loop {
        let active = match mode {
            Mode::Busy => loop {
                if let Some(a) = server.try_receive().expect("request") {
                    break a;
                }
                std::hint::spin_loop();
            },
            Mode::Blocking => server.receive().expect("request"),
        };
        if read_all(&active) == 0 {
            break;
        }
        fill_and_send!(active.loan_uninit().expect("loan"), 2);
    }
}
