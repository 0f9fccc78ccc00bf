//! A Rust program that meets Python programs on the same services: the
//! peer the Python binding's tests (`tests/py/`) run against, and an
//! example of a mixed Rust/Python system.
//!
//! `cargo run -p conduit-python --bin rust_peer -- ROLE DOMAIN [ID]`, where
//! ROLE is:
//!
//! * `echo`: subscribes to `py/ping` (`[u8]`) and publishes every payload
//!   reversed on `py/pong` (empty payloads are not echoed: probes for the
//!   connection); a payload `quit` ends it;
//! * `serve`: answers each request of `py/upper` (`[u8]` → `[u8]`) with a
//!   stream of two responses (the request in upper case, then its length
//!   in decimal) and ends the stream; a request `quit` ends it;
//! * `board`: creates the blackboard `py/board` (`u32` → `u64`, keys 1 and
//!   2 with values 10 and 20, `notify_changes`), then reads commands from
//!   stdin: `set KEY VALUE` updates an entry, `quit` ends it;
//! * `typed`: creates `py/typed`, a `publish_subscribe::<u64>()` service,
//!   and waits for a line on stdin;
//! * `pose`: the typed peer of a Python `ctypes.Structure`: subscribes to
//!   `py/pose` and publishes on `py/pose-back`, both
//!   `publish_subscribe::<Pose>()` of the `#[repr(C)]` struct below;
//!   after `ready` it prints `fingerprint <hex>` (`Pose::LAYOUT`'s, which
//!   Python passes when it opens them), then answers every pose `p` with
//!   `{x: 2 p.x, y: 2 p.y, seq: p.seq + 1000}` until a pose with `seq` 0;
//! * `notify` (with ID): notifies event `ID` on the event service `py/events`;
//! * `bounce`: the benchmark's echo: copies every payload of `bench/ping`
//!   into a loan on `bench/pong` (a memcpy out of the sample, into the
//!   loan) until an empty payload;
//! * `measure` (with SIZE and ROUNDS): the Rust side of the benchmark: the
//!   same round trips as `python/conduit` `bench.py` against `bounce`;
//!   prints `median_ns <round trip median>`;
//! * `subscribe` (with SERVICE and COUNT): subscribes to the `[u8]` service
//!   SERVICE and prints `received <sequence> <text>` for COUNT samples.
//!
//! Each prints `ready` once its services exist.

use std::io::{BufRead, Write};

use conduit::ShmSafe;
use conduit::node::Node;

/// The Rust side of the Python test's `ctypes.Structure` `Pose`.
#[derive(ShmSafe, Clone, Copy, Debug)]
#[repr(C)]
struct Pose {
    x: f64,
    y: f64,
    seq: u64,
}

fn ready() {
    println!("ready");
    std::io::stdout().flush().expect("stdout");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(role), Some(domain)) = (args.first(), args.get(1)) else {
        eprintln!("usage: rust_peer echo|serve|board|typed|pose|notify|subscribe DOMAIN [ARGS]");
        std::process::exit(2);
    };
    let node = Node::builder().name("rust-peer").domain(domain).create()?;
    match role.as_str() {
        "echo" => {
            let ping = node
                .service("py/ping")
                .publish_subscribe::<[u8]>()
                .open_or_create()?;
            let pong = node
                .service("py/pong")
                .publish_subscribe::<[u8]>()
                .open_or_create()?;
            let sub = ping.subscriber().create()?;
            let publisher = pong.publisher().max_slice_len(1 << 16).create()?;
            ready();
            loop {
                let sample = sub.receive()?;
                if &*sample == b"quit" {
                    break;
                }
                if sample.is_empty() {
                    continue; // the other side's connection probes
                }
                let reversed: Vec<u8> = sample.iter().rev().copied().collect();
                publisher.send_slice_copy(&reversed)?;
            }
        }
        "serve" => {
            let svc = node
                .service("py/upper")
                .request_response::<[u8], [u8]>()
                .open_or_create()?;
            let server = svc.server().max_slice_len(1 << 16).create()?;
            ready();
            loop {
                let request = server.receive()?;
                if &*request == b"quit" {
                    break;
                }
                request.send_slice_copy(&request.to_ascii_uppercase())?;
                request.send_slice_copy(request.len().to_string().as_bytes())?;
            }
        }
        "board" => {
            let board = node
                .service("py/board")
                .blackboard::<u32, u64>()
                .entry(1, 10)
                .entry(2, 20)
                .notify_changes(true)
                .create()?;
            ready();
            let mut writer = None;
            for line in std::io::stdin().lock().lines() {
                let line = line?;
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["set", key, value] => {
                        let w = match writer.as_ref() {
                            Some(w) => w,
                            None => writer.insert(board.writer()?),
                        };
                        let version = w.entry(&key.parse()?)?.update(value.parse()?);
                        println!("version {version}");
                        std::io::stdout().flush()?;
                    }
                    ["release"] => {
                        writer = None;
                        println!("released");
                        std::io::stdout().flush()?;
                    }
                    ["quit"] => break,
                    _ => eprintln!("rust_peer board: unknown command {line:?}"),
                }
            }
        }
        "typed" => {
            let _svc = node
                .service("py/typed")
                .publish_subscribe::<u64>()
                .open_or_create()?;
            ready();
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
        }
        "pose" => {
            let poses = node
                .service("py/pose")
                .publish_subscribe::<Pose>()
                .open_or_create()?;
            let back = node
                .service("py/pose-back")
                .publish_subscribe::<Pose>()
                .open_or_create()?;
            let sub = poses.subscriber().create()?;
            let publisher = back.publisher().create()?;
            ready();
            println!("fingerprint {:x}", Pose::LAYOUT.fingerprint);
            std::io::stdout().flush()?;
            loop {
                let p = *sub.receive()?;
                if p.seq == 0 {
                    break;
                }
                publisher.send_copy(Pose {
                    x: 2.0 * p.x,
                    y: 2.0 * p.y,
                    seq: p.seq + 1000,
                })?;
            }
        }
        "notify" => {
            let id: usize = args.get(2).ok_or("notify needs an id")?.parse()?;
            let events = node.service("py/events").event().open_or_create()?;
            let notifier = events.notifier().create()?;
            ready();
            notifier.notify(id)?;
        }
        "bounce" => {
            let ping = node
                .service("bench/ping")
                .publish_subscribe::<[u8]>()
                .open_or_create()?;
            let pong = node
                .service("bench/pong")
                .publish_subscribe::<[u8]>()
                .open_or_create()?;
            let sub = ping.subscriber().create()?;
            let publisher = pong.publisher().max_slice_len(1 << 20).create()?;
            ready();
            loop {
                let sample = sub.receive()?;
                if sample.is_empty() {
                    break;
                }
                let loan = publisher.loan_slice_uninit(sample.len())?;
                loan.write_from_slice(&sample).send()?;
            }
        }
        "measure" => {
            let size: usize = args.get(2).ok_or("measure needs a size")?.parse()?;
            let rounds: usize = args.get(3).ok_or("measure needs rounds")?.parse()?;
            let ping = node
                .service("bench/ping")
                .publish_subscribe::<[u8]>()
                .open_or_create()?;
            let pong = node
                .service("bench/pong")
                .publish_subscribe::<[u8]>()
                .open_or_create()?;
            let sub = pong.subscriber().create()?;
            let publisher = ping.publisher().max_slice_len(1 << 20).create()?;
            let payload = vec![7u8; size];
            let mut out = vec![0u8; size];
            let mut samples = Vec::with_capacity(rounds);
            for i in 0..rounds + rounds / 10 {
                let start = std::time::Instant::now();
                let loan = publisher.loan_slice_uninit(size)?;
                loan.write_from_slice(&payload).send()?;
                let echo = sub.receive()?;
                out.copy_from_slice(&echo);
                drop(echo);
                if i >= rounds / 10 {
                    samples.push(start.elapsed().as_nanos() as u64);
                }
            }
            std::hint::black_box(&out);
            samples.sort_unstable();
            println!("median_ns {}", samples[samples.len() / 2]);
        }
        "subscribe" => {
            let name = args.get(2).ok_or("subscribe needs a service")?;
            let count: usize = args.get(3).ok_or("subscribe needs a count")?.parse()?;
            let svc = node
                .service(name)
                .publish_subscribe::<[u8]>()
                .open_or_create()?;
            let sub = svc.subscriber().create()?;
            ready();
            for _ in 0..count {
                let sample = sub.receive_timeout(std::time::Duration::from_secs(10))?;
                println!(
                    "received {} {}",
                    sample.sequence(),
                    String::from_utf8_lossy(&sample)
                );
            }
        }
        other => {
            eprintln!("rust_peer: unknown role {other:?}");
            std::process::exit(2);
        }
    }
    Ok(())
}
