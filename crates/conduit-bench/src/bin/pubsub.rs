//! Publish/subscribe ping-pong between two processes pinned to CPU 0 and 1,
//! in one run with its floors.
//!
//! ```sh
//! cargo run --release -p conduit-bench --bin pubsub [-- --quick] [--json]
//! ```
//!
//! iceoryx2 is not measured by this binary: `conduit bench
//! --with-iceoryx2` runs both in one run. `--ingest FILE` still shows
//! another run's rows, marked "(ingested)", and never uses them in a
//! ratio or a target: the targets below are computed only from rows this
//! run measured.
//!
//! Prints one-way latency (round trip / 2) at p50 and p99 for payloads of
//! 8 B to 1 MiB, header-only and with the payload written and read, blocking
//! `receive()` with the default spin and with no spin, the floors (two
//! processes spinning on one cache line, the same with the payload written
//! and read, a futex ping-pong), the ratios the publish/subscribe issue
//! targets, and the memory a default service occupies in /dev/shm.
//! `--quick` for a short (noisy) run, `--json` for JSON lines.

use conduit_bench::harness::{self, Measurement, Mode as Touch, Report};
use conduit_bench::{floors, pubsub};

fn conduit_row(size: usize, mode: pubsub::Mode, rounds: usize) -> Measurement {
    let m = pubsub::ping_pong(size, mode, &pubsub::plan(mode, rounds));
    pubsub::settle();
    m
}

fn find<'a>(
    rows: &'a [Measurement],
    scenario: &str,
    payload: u64,
    mode: Touch,
) -> Option<&'a Measurement> {
    rows.iter()
        .find(|m| !m.ingested && m.scenario == scenario && m.payload == payload && m.mode == mode)
}

fn target(
    rows: &[Measurement],
    what: &str,
    a: (&str, u64, Touch),
    b: (&str, u64, Touch),
    limit: &str,
) {
    match (find(rows, a.0, a.1, a.2), find(rows, b.0, b.1, b.2)) {
        (Some(x), Some(y)) => println!(
            "  {what}: {:.0} ns / {:.0} ns = {:.2}x (target {limit})",
            x.p50_ns,
            y.p50_ns,
            x.p50_ns / y.p50_ns
        ),
        _ => println!(
            "  {what}: not measured in this run (target {limit}; iceoryx2: `conduit bench --with-iceoryx2`)"
        ),
    }
}

fn main() {
    harness::child_main_if_requested();
    let options = harness::Options::from_args();
    harness::setup_parent();
    let rounds = if options.quick { 2_000 } else { 100_000 };
    let mut rows = Vec::new();

    let busy = floors::busy_plan(options.quick);
    rows.push(floors::spin_line(&busy));
    for size in pubsub::SIZES {
        let plan = floors::payload_plan(size, Touch::Payload, options.quick);
        rows.push(floors::spin_line_with_payload(&plan, size, Touch::Payload));
    }
    rows.push(floors::futex_pingpong(&floors::sleeping_plan(
        options.quick,
    )));
    for mode in [pubsub::Mode::BusyHeaderOnly, pubsub::Mode::BusyPayload] {
        for size in pubsub::SIZES {
            let r = if size >= 1 << 20 && mode == pubsub::Mode::BusyPayload {
                rounds / 20
            } else {
                rounds
            };
            rows.push(conduit_row(size, mode, r.max(64)));
        }
    }
    rows.push(conduit_row(8, pubsub::Mode::BlockingDefaultSpin, rounds));
    rows.push(conduit_row(
        8,
        pubsub::Mode::BlockingNoSpin,
        (rounds / 50).max(256),
    ));

    let mut report = Report::new(
        "publish/subscribe ping-pong, one-way = round trip / 2 (CPU 0 and 1)",
        Some("spin_line"),
    );
    for m in &rows {
        report.push(m.clone());
    }
    // Another run's rows: shown (marked), never part of a target.
    for path in &options.ingest {
        let text = std::fs::read_to_string(path).expect("read --ingest file");
        report.ingest(&text).expect("parse --ingest file");
    }
    report.print(options.json);
    if options.json {
        return;
    }

    println!();
    println!("targets (p50 ratios from this run):");
    use Touch::{Header, Payload};
    target(
        &rows,
        "busy-poll 8 B vs two-process spin floor",
        ("conduit_pubsub", 8, Header),
        ("spin_line", 8, Header),
        "<= 1.3x",
    );
    target(
        &rows,
        "busy-poll 8 B vs iceoryx2",
        ("conduit_pubsub", 8, Header),
        ("iceoryx2_pubsub", 8, Header),
        "<= 0.33x",
    );
    target(
        &rows,
        "header-only 1 MiB vs 8 B",
        ("conduit_pubsub", 1 << 20, Header),
        ("conduit_pubsub", 8, Header),
        "<= 1.10x",
    );
    for size in pubsub::SIZES {
        target(
            &rows,
            &format!(
                "payload written+read {} vs iceoryx2",
                pubsub::size_name(size)
            ),
            ("conduit_pubsub", size as u64, Payload),
            ("iceoryx2_pubsub", size as u64, Payload),
            "<= 1.0x",
        );
    }
    target(
        &rows,
        "blocking receive, default spin, vs iceoryx2 event",
        ("conduit_pubsub_blocking", 8, Header),
        ("iceoryx2_event", 0, Header),
        "<= 0.1x",
    );
    target(
        &rows,
        "blocking receive, no spin, vs raw futex",
        ("conduit_pubsub_blocking_nospin", 8, Header),
        ("futex_pingpong", 8, Header),
        "<= 1.1x",
    );

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
