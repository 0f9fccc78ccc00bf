//! Event ping-pong: `cargo run --release -p conduit-bench --bin events
//! [-- --quick] [--json] [--ingest FILE]`.
//!
//! Two processes on CPU 0 and 1, the listener sleeping: one-way p50/p99
//! with the default spin and with none, through a WaitSet and through
//! tokio, next to the raw futex ping-pong floor measured in the same run.
//! iceoryx2's event ping-pong comes from `crates/bench-peers`
//! (`iceoryx2_event --json > ice.json`, then `--ingest ice.json`).
//! Ratios are to `futex_pingpong`. Also prints the CPU time a listener
//! asleep for one second uses.

use std::time::Duration;

use conduit_bench::events::{self, Wait};
use conduit_bench::{floors, harness};

fn main() {
    harness::child_main_if_requested_with(&[(events::EVENT_ROLE, events::event_echo_child)]);
    let options = harness::Options::from_args();
    harness::setup_parent();
    let plan = floors::sleeping_plan(options.quick);
    let mut report = harness::Report::new(
        "events: two-process ping-pong, listener sleeping, one-way = round trip / 2",
        Some("futex_pingpong"),
    );
    report.push(floors::futex_pingpong(&plan));
    for wait in [Wait::Spin, Wait::NoSpin, Wait::WaitSet, Wait::Tokio] {
        report.push(events::ping_pong(&plan, wait));
    }
    for path in &options.ingest {
        let text = std::fs::read_to_string(path).expect("read --ingest file");
        report.ingest(&text).expect("parse --ingest file");
    }
    report.print(options.json);
    let asleep = if options.quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    };
    let cpu = events::sleeping_listener_cpu(asleep);
    if !options.json {
        println!();
        println!(
            "CPU time of a listener asleep for {asleep:?} (default spin, then futex): {cpu:?}"
        );
    }
}
