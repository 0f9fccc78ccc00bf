//! `cargo run --release -p conduit-bench --bin heap_alloc [OPS]`: shared-
//! memory heap vs std::alloc allocation/free throughput (scenario `heap`).

fn main() {
    let ops = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("OPS must be a number"))
        .unwrap_or(1_000_000);
    let r = conduit_bench::heap::run(ops, 3);
    println!(
        "scenario heap: {} alloc/free pairs, mixed sizes 16 B..64 KiB, window {}",
        r.ops,
        conduit_bench::heap::WINDOW
    );
    println!(
        "  conduit shm heap (TLSF) : {:>12.0} ops/s",
        r.shm_ops_per_sec
    );
    println!(
        "  std::alloc (baseline)   : {:>12.0} ops/s",
        r.std_ops_per_sec
    );
    println!("  ratio shm/std           : {:>12.2}", r.ratio());
}
