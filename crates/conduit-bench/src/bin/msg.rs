//! Message-passing benchmark: `cargo run --release -p conduit-bench --bin msg
//! [-- --bytes N --rounds N --repeat N --only NAME]`.
//!
//! Throughput (GiB/s) and 8-byte ping-pong latency (one-way p50/p99) of every
//! message-passing mechanism, with the baselines (plain pipe write/read, a
//! raw vmsplice+splice+huge-page+busy loop) measured in the same run and
//! reported as ratios. Parent pinned to CPU 0, child to CPU 1.

use conduit_bench::harness::{self, Report};
use conduit_bench::msg;

fn main() {
    harness::child_main_if_requested();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        msg::throughput_child(&args[1], &args[2..]);
        return;
    }
    let mut bytes: u64 = 1 << 30;
    let mut rounds: usize = 20_000;
    let mut only: Option<String> = None;
    let mut repeat: usize = 3;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--bytes" => bytes = args[i + 1].parse().expect("--bytes N"),
            "--rounds" => rounds = args[i + 1].parse().expect("--rounds N"),
            "--only" => only = Some(args[i + 1].clone()),
            "--repeat" => repeat = args[i + 1].parse().expect("--repeat N"),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    if msg::cpus() < 2 {
        eprintln!("warning: fewer than 2 CPUs: both processes share one CPU");
    }
    msg::pin_to_cpu(0);
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));

    println!(
        "throughput, {} MiB per scenario, median of {repeat} interleaved runs (reader: first to last byte)",
        bytes >> 20
    );
    println!("{:<32} {:>10} {:>10}", "scenario", "GiB/s", "x pipe");
    let names: Vec<&str> = msg::THROUGHPUT
        .iter()
        .copied()
        .filter(|n| wanted(n))
        .collect();
    let mut runs: Vec<Vec<msg::Throughput>> = vec![Vec::new(); names.len()];
    // Interleaved, so that a burst of load from elsewhere hits every
    // scenario alike instead of one.
    for _ in 0..repeat.max(1) {
        for (k, name) in names.iter().enumerate() {
            runs[k].push(msg::throughput(name, bytes));
        }
    }
    let results: Vec<msg::Throughput> = runs
        .into_iter()
        .map(|mut r| {
            r.sort_by_key(|t| t.elapsed);
            r.swap_remove(r.len() / 2)
        })
        .collect();
    let base = results
        .iter()
        .find(|t| t.name == "pipe")
        .map(|t| t.gib_per_s());
    for t in &results {
        let ratio = base.map_or(String::from("-"), |b| format!("{:.2}", t.gib_per_s() / b));
        println!("{:<32} {:>10.2} {:>10}", t.name, t.gib_per_s(), ratio);
    }
    let get = |n: &str| results.iter().find(|t| t.name == n).map(|t| t.gib_per_s());
    if let (Some(fast), Some(raw)) = (get("fast-busy"), get("raw-vmsplice-splice-huge-busy")) {
        println!(
            "target: fast pipe (busy) / raw loop = {:.2} (target >= 0.9)",
            fast / raw
        );
    }
    if let (Some(framed), Some(plain)) = (get("framed-pipe"), get("pipe")) {
        println!(
            "target: framed 64 KiB frames / plain 64 KiB write-read, 64 KiB pipe = {:.2} (target >= 1.0)",
            framed / plain
        );
    }

    println!();
    let mut report = Report::new(
        &format!("latency, 8-byte ping-pong, {rounds} round trips"),
        Some("pipe"),
    );
    for name in msg::LATENCY.iter().filter(|n| wanted(n)) {
        report.push(msg::latency(name, &msg::latency_plan(name, rounds)));
    }
    print!("{}", report.table());
}
