//! Publish/subscribe ping-pong between two processes pinned to CPU 0 and 1.
//!
//! `cargo run --release -p conduit-bench --bin pubsub [-- --quick]`
//!
//! Prints one-way latency (round trip / 2) at p50 and p99 for payloads of
//! 8 B to 1 MiB, header-only and with the payload written and read, then
//! blocking `receive()` with the default spin and with no spin, and the
//! memory a default service occupies in /dev/shm. The floors (two
//! processes spinning on one cache line, futex ping-pong) and iceoryx2
//! come from `conduit_bench::floors` and `crates/bench-peers` (joined by
//! the lead).

use conduit_bench::pubsub;

fn main() {
    if std::env::var_os(pubsub::ROLE_ENV).is_some() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        pubsub::child(&args);
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 2_000 } else { 100_000 };
    println!("| scenario | p50 one-way | p99 one-way | CPU per round trip |");
    println!("|---|---|---|---|");
    for r in pubsub::all(rounds) {
        println!(
            "| {} | {:.0?} | {:.0?} | {:.0?} |",
            r.name, r.p50, r.p99, r.cpu_per_round_trip
        );
        pubsub::settle();
    }
    let (service, data, nodes) = pubsub::default_service_footprint();
    println!();
    println!(
        "default service (u64 payload, default QoS) in /dev/shm: service segment {} KiB, \
         publisher data segment {} KiB, node segment {} KiB each",
        service / 1024,
        data / 1024,
        nodes / 1024
    );
}
