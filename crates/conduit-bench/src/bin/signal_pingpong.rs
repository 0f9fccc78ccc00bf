//! Signal ping-pong against pipe and futex ping-pongs, two processes
//! pinned to CPUs 0 and 1.
//!
//! ```text
//! cargo run --release -p conduit-bench --bin signal_pingpong [-- ROUND_TRIPS]
//! ```

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUND_TRIPS must be a number"))
        .unwrap_or(20_000);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "signal ping-pong: {iters} round trips per scenario, parent on CPU 0, child on CPU 1 ({cpus} CPUs available)"
    );
    let reports = conduit_bench::signal::run_all(iters);
    let pipe_p50 = reports[0].p50.as_secs_f64();
    println!(
        "{:<46} {:>12} {:>12} {:>14} {:>10}",
        "scenario", "p50 one-way", "p99 one-way", "round trips/s", "p50/pipe"
    );
    for r in &reports {
        println!(
            "{:<46} {:>12.2?} {:>12.2?} {:>14.0} {:>10.2}",
            r.name,
            r.p50,
            r.p99,
            r.round_trips_per_sec,
            r.p50.as_secs_f64() / pipe_p50
        );
    }
}
