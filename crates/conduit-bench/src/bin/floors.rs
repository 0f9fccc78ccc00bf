//! The floors: `cargo run --release -p conduit-bench --bin floors
//! [-- --quick] [--json] [--ingest FILE]`.
//!
//! Runs three two-process ping-pongs (parent on CPU 0, child on CPU 1) and
//! prints one-way latency p50/p99/mean with ratios to `spin_line`:
//! spinning on one cache line per direction, sleeping on futex words, and
//! 8 bytes over a pair of pipes. `--ingest FILE` adds JSON lines written by
//! another benchmark's `--json` (e.g. bench-peers' iceoryx2 binaries).

use conduit_bench::{floors, harness};

fn main() {
    harness::child_main_if_requested();
    let options = harness::Options::from_args();
    harness::setup_parent();
    let mut report = harness::Report::new(
        "floors: two-process ping-pong, one-way = round trip / 2",
        Some("spin_line"),
    );
    for m in floors::all(options.quick) {
        report.push(m);
    }
    for path in &options.ingest {
        let text = std::fs::read_to_string(path).expect("read --ingest file");
        report.ingest(&text).expect("parse --ingest file");
    }
    report.print(options.json);
}
