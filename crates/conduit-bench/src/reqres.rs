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

/// Writes every byte of a fresh loan with `fill`.
macro_rules! fill_and_send {
    ($loan:expr, $fill:expr) => {{
        let mut loan = $loan;
        let bytes = loan.payload_mut();
        // SAFETY: `[u8; N]` has no invalid bit patterns; every byte is
        // written here before `assume_init`.
        unsafe {
            bytes
                .as_mut_ptr()
                .cast::<u8>()
                .write_bytes($fill, size_of_val(bytes));
            loan.assume_init()
        }
        .send()
        .expect("send")
    }};
}

fn read_all<const N: usize>(bytes: &[u8; N]) -> u8 {
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

/// Runs one scenario: `rounds` timed round trips after `rounds / 10`
/// warm-up ones, payload `size` bytes (one of [`SIZES`]).
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

    let warmup = (rounds / 10).max(BATCH);
    for i in 0..warmup {
        round_trip(&client, mode, (i as u8) | 1);
    }
    let batches = rounds.div_ceil(BATCH);
    let mut one_way = Vec::with_capacity(batches);
    let cpu0 = cpu_time(false);
    for b in 0..batches {
        let start = Instant::now();
        for i in 0..BATCH {
            round_trip(&client, mode, ((b + i) as u8) | 1);
        }
        one_way.push(start.elapsed() / (2 * BATCH as u32));
    }
    let cpu = cpu_time(false) - cpu0;
    drop(fill_and_send!(client.loan_uninit().expect("loan"), 0));
    let status = child.wait().expect("wait server");
    assert!(status.success(), "server failed: {status}");
    one_way.sort();
    let pct = |p: f64| one_way[((one_way.len() - 1) as f64 * p) as usize];
    Latency {
        name: format!("conduit reqres {} {}", mode.code(), size_name(N)),
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
