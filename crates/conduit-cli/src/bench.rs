//! `conduit bench`: every conduit mechanism and the baselines in one run,
//! each scenario a ping-pong (or a stream) between two processes pinned to
//! CPU 0 and 1, over payload sizes; a table, `--json`, and an HTML report.
//!
//! The scenarios are the library functions of `conduit-bench`; the echoing
//! side re-executes this binary (see [`child_main_if_requested`]).

use std::path::PathBuf;

use clap::Args;
use conduit_bench::events::{self, Wait};
use conduit_bench::harness::{self, Measurement, Plan};
use conduit_bench::{blackboard, floors, msg, pubsub, reqres, signal};
use serde::{Deserialize, Serialize};

use crate::common::{self, CmdResult, Failure, exit};

/// `conduit bench` arguments.
#[derive(Args)]
pub struct BenchArgs {
    /// A short run (under a minute on two cores): fewer round trips and
    /// payload sizes up to 64 KiB. Figures are noisier.
    #[arg(long)]
    pub quick: bool,
    /// A tiny run of a few scenarios (seconds; checks that everything
    /// works, the figures mean nothing).
    #[arg(long, conflicts_with = "quick")]
    pub smoke: bool,
    /// Only the mechanisms whose name in the table contains this text
    /// (ignoring case), e.g. "conduit pubsub (busy)" or "pubsub"; give it
    /// several times for the union (e.g. `--only reqres --only "pubsub
    /// (busy)"` for the request/response targets).
    #[arg(long)]
    pub only: Vec<String>,
    /// JSON lines (one per result) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML page with charts to this file.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Add the JSON lines of FILE (e.g. from bench-peers' `--json`) to the
    /// results, marked "(ingested)": figures of another run, shown but
    /// never used in a ratio or target (`--with-iceoryx2` measures
    /// iceoryx2 in this run).
    #[arg(long, visible_alias = "ingest", value_name = "FILE")]
    pub peers: Vec<PathBuf>,
    /// Also run the iceoryx2 scenarios of crates/bench-peers (their
    /// release binaries must be built already).
    #[arg(long)]
    pub with_iceoryx2: bool,
    /// Where the bench-peers binaries are (default: the
    /// `crates/bench-peers/target/release` of the source tree this
    /// `conduit` was built from; give it after `cargo install`).
    #[arg(long, value_name = "DIR", requires = "with_iceoryx2")]
    pub peers_dir: Option<PathBuf>,
}

/// One result row (also one line of `--json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Row {
    /// "latency" (ping-pong, one-way), "throughput" (a stream), "cost"
    /// (one operation, e.g. a blackboard read: `p50_ns` is the median cost
    /// per operation) or "ratio" (of two costs of this run: `ratio`).
    pub kind: String,
    /// The mechanism, e.g. "conduit pubsub (busy)", "pipe".
    pub mechanism: String,
    /// True for the baselines (raw spin, raw futex, plain pipe, TCP…).
    pub baseline: bool,
    /// Payload bytes per message.
    pub payload: u64,
    /// Median one-way latency, ns: of per-round-trip samples (latency
    /// rows; see [`harness::METHOD`]).
    pub p50_ns: Option<f64>,
    /// 99th percentile one-way latency, ns, of the same samples.
    pub p99_ns: Option<f64>,
    /// Busy-polling latency rows: median over batches of `batch` round
    /// trips of the batch's mean one-way latency, ns (a separate phase;
    /// never part of p50/p99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_mean_ns: Option<f64>,
    /// Round trips per batch of `batch_mean_ns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,
    /// One-way messages per second (latency rows: 1 s / the mean one-way
    /// latency of the per-round-trip phase).
    pub msgs_per_s: Option<f64>,
    /// Payload bytes per second (only where the payload was written and
    /// read).
    pub bytes_per_s: Option<f64>,
    /// CPU time per message, both processes measured, ns.
    pub cpu_ns_per_msg: Option<f64>,
    /// For "ratio" rows: the ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// For "ratio" rows with a target: whether it was met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_met: Option<bool>,
    /// Read from a `--peers` file (another run): shown marked, never used
    /// in a ratio or a target.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ingested: bool,
}

/// Runs a benchmark child role if this process is one, then exits.
pub fn child_main_if_requested() {
    harness::child_main_if_requested_with(&[
        (events::EVENT_ROLE, events::event_echo_child),
        (blackboard::ROLE, blackboard::peer_child),
    ]);
    // Not a child unless the first argument is `--child`; only then are
    // the arguments (all ours, ASCII) read as strings. A user's argument
    // that is not UTF-8 goes on to clap, which reports it.
    if std::env::args_os().nth(1).as_deref() != Some(std::ffi::OsStr::new("--child")) {
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() >= 2 {
        msg::throughput_child(&args[1], &args[2..]);
        std::process::exit(0);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Size {
    Smoke,
    Quick,
    Full,
}

struct Job {
    /// What the progress bar shows (mechanism and payload).
    name: String,
    /// The mechanism as the table names it (what `--only` matches).
    mechanism: String,
    run: Box<dyn FnOnce() -> Vec<Row>>,
}

/// The row of every latency measurement, conduit's, the floors' and the
/// peers' alike: the figures of [`Measurement`]'s one statistic
/// (`msgs_per_s`, `bytes_per_s`, `cpu_ns_per_msg`).
fn from_measurement(m: &Measurement, mechanism: &str, baseline: bool) -> Row {
    Row {
        kind: "latency".into(),
        mechanism: mechanism.to_owned(),
        baseline,
        payload: m.payload,
        p50_ns: Some(m.p50_ns),
        p99_ns: Some(m.p99_ns),
        batch_mean_ns: m.batch_mean_ns,
        batch: m.batch,
        msgs_per_s: m.msgs_per_s(),
        bytes_per_s: m.bytes_per_s(),
        cpu_ns_per_msg: m.cpu_ns_per_msg(),
        ..Row::default()
    }
}

fn jobs(size: Size) -> Vec<Job> {
    let mut jobs: Vec<Job> = Vec::new();
    let mut add = |name: String, mechanism: &str, run: Box<dyn FnOnce() -> Vec<Row>>| {
        jobs.push(Job {
            name,
            mechanism: mechanism.to_owned(),
            run,
        })
    };
    let sizes: &[usize] = match size {
        Size::Smoke => &[8, 1024],
        Size::Quick => &[8, 1024, 64 * 1024],
        Size::Full => &[8, 1024, 64 * 1024, 1024 * 1024],
    };
    let (busy_rounds, sleep_rounds, pubsub_rounds, msg_rounds, sig_iters, stream_bytes) = match size
    {
        Size::Smoke => (2_000u64, 200u64, 200usize, 200usize, 100usize, 4u64 << 20),
        Size::Quick => (1_000_000, 10_000, 50_000, 10_000, 5_000, 512 << 20),
        Size::Full => (5_000_000, 50_000, 200_000, 50_000, 50_000, 2 << 30),
    };
    // Fewer round trips for big payloads (each moves and reads the bytes).
    let scaled = |rounds: u64, payload: usize| (rounds / (payload as u64 / 1024).max(1)).max(200);

    // Signals first: they fork, which is safest before any helper thread.
    if size != Size::Smoke {
        add(
            "signal (sigqueue + Signals)".into(),
            "signal (sigqueue, conduit Signals)",
            Box::new(move || {
                let r = signal::signal_ping_pong(sig_iters / 10, sig_iters, true);
                vec![signal_row(&r, "signal (sigqueue, conduit Signals)")]
            }),
        );
    }
    // Baselines.
    for &payload in sizes {
        let rounds = scaled(busy_rounds, payload);
        add(
            format!("spin on a shared line, {}", pubsub::size_name(payload)),
            "raw spin (shared memory)",
            Box::new(move || {
                let plan = Plan::busy(rounds / 10, rounds, harness::BATCH);
                let m = floors::spin_line_with_payload(&plan, payload, harness::Mode::Payload);
                vec![from_measurement(&m, "raw spin (shared memory)", true)]
            }),
        );
    }
    add(
        "raw futex".into(),
        "raw futex",
        Box::new(move || {
            let m = floors::futex_pingpong(&Plan::sleeping(sleep_rounds / 10, sleep_rounds));
            vec![from_measurement(&m, "raw futex", true)]
        }),
    );
    add(
        "plain pipe".into(),
        "plain pipe",
        Box::new(move || {
            let m = floors::pipe_pingpong(&Plan::sleeping(sleep_rounds / 10, sleep_rounds));
            vec![from_measurement(&m, "plain pipe", true)]
        }),
    );
    // conduit events, the listener sleeping (or spinning first).
    let waits: &[(Wait, &str)] = if size == Size::Smoke {
        &[(Wait::Spin, "conduit event (default spin)")]
    } else {
        &[
            (Wait::Spin, "conduit event (default spin)"),
            (Wait::NoSpin, "conduit event (no spin)"),
            (Wait::WaitSet, "conduit event (WaitSet)"),
            (Wait::Tokio, "conduit event (tokio)"),
        ]
    };
    for &(wait, name) in waits {
        add(
            name.to_owned(),
            name,
            Box::new(move || {
                let m = events::ping_pong(&Plan::sleeping(sleep_rounds / 10, sleep_rounds), wait);
                vec![from_measurement(&m, name, false)]
            }),
        );
    }
    // conduit publish/subscribe, busy, payload written and read.
    for &payload in sizes {
        let rounds = scaled(pubsub_rounds as u64, payload) as usize;
        add(
            format!("conduit pubsub busy, {}", pubsub::size_name(payload)),
            "conduit pubsub (busy)",
            Box::new(move || {
                let mode = pubsub::Mode::BusyPayload;
                let m = pubsub::ping_pong(payload, mode, &pubsub::plan(mode, rounds));
                pubsub::settle();
                vec![from_measurement(&m, "conduit pubsub (busy)", false)]
            }),
        );
    }
    add(
        "conduit pubsub blocking".into(),
        "conduit pubsub (blocking)",
        Box::new(move || {
            let mode = pubsub::Mode::BlockingDefaultSpin;
            let m = pubsub::ping_pong(8, mode, &pubsub::plan(mode, pubsub_rounds));
            pubsub::settle();
            vec![from_measurement(&m, "conduit pubsub (blocking)", false)]
        }),
    );
    if size != Size::Smoke {
        add(
            "conduit pubsub blocking, no spin".into(),
            "conduit pubsub (blocking, no spin)",
            Box::new(move || {
                let mode = pubsub::Mode::BlockingNoSpin;
                let m = pubsub::ping_pong(8, mode, &pubsub::plan(mode, pubsub_rounds / 4));
                pubsub::settle();
                vec![from_measurement(
                    &m,
                    "conduit pubsub (blocking, no spin)",
                    false,
                )]
            }),
        );
    }
    // conduit request/response round trips (payload written and read on
    // both sides, as the pub/sub rows), busy and blocking.
    for &payload in sizes.iter().filter(|s| reqres::SIZES.contains(s)) {
        // The counts bench-peers' iceoryx2_reqres runs (--quick for quick).
        let rounds = match size {
            Size::Smoke => scaled(pubsub_rounds as u64, payload) as usize,
            _ => reqres::bench_rounds(payload, size == Size::Quick),
        };
        add(
            format!("conduit reqres busy, {}", pubsub::size_name(payload)),
            "conduit reqres (busy)",
            Box::new(move || {
                let mode = reqres::Mode::Busy;
                let m = reqres::round_trips(payload, mode, &reqres::plan(mode, rounds));
                pubsub::settle();
                vec![from_measurement(&m, "conduit reqres (busy)", false)]
            }),
        );
    }
    add(
        "conduit reqres blocking".into(),
        "conduit reqres (blocking)",
        Box::new(move || {
            let mode = reqres::Mode::Blocking;
            let m = reqres::round_trips(8, mode, &reqres::plan(mode, pubsub_rounds));
            pubsub::settle();
            vec![from_measurement(&m, "conduit reqres (blocking)", false)]
        }),
    );
    // The blackboard: read and update costs, the baselines and the ratios
    // (one job: the ratios need every figure of the same run).
    let bb_ops = match size {
        Size::Smoke => 20_000,
        Size::Quick => 1_000_000,
        Size::Full => 5_000_000,
    };
    add(
        "conduit blackboard (reads, updates, RobustMutex)".into(),
        "conduit blackboard",
        Box::new(move || blackboard_rows(&blackboard::run(&Plan::busy(bb_ops / 10, bb_ops, 1000)))),
    );
    // Message passing, 8-byte ping-pong.
    let latency: Vec<&str> = if size == Size::Smoke {
        vec!["unix-stream"]
    } else {
        // "pipe" is the plain-pipe baseline measured above.
        msg::LATENCY
            .iter()
            .copied()
            .filter(|n| *n != "pipe")
            .collect()
    };
    for name in latency {
        add(
            format!("{name} ping-pong"),
            &mechanism_name(name),
            Box::new(move || {
                let m = msg::latency(name, &msg::latency_plan(name, msg_rounds));
                vec![from_measurement(
                    &m,
                    &mechanism_name(name),
                    is_baseline(name),
                )]
            }),
        );
    }
    // Streams.
    let streams: Vec<&str> = if size == Size::Smoke {
        vec!["pipe"]
    } else {
        msg::THROUGHPUT.to_vec()
    };
    for name in streams {
        add(
            format!("{name} stream"),
            &mechanism_name(name),
            Box::new(move || {
                let t = msg::throughput(name, stream_bytes);
                let bps = t.bytes as f64 / t.elapsed.as_secs_f64().max(1e-9);
                vec![Row {
                    kind: "throughput".into(),
                    mechanism: mechanism_name(name),
                    baseline: is_baseline(name),
                    payload: msg::CHUNK as u64,
                    msgs_per_s: Some(bps / msg::CHUNK as f64),
                    bytes_per_s: Some(bps),
                    ..Row::default()
                }]
            }),
        );
    }
    jobs
}

/// Whether `--only TEXT` selects `job`: TEXT is part of the mechanism's
/// name in the table or of the job's progress name, ignoring case (any
/// of the TEXTs when given several times).
fn matches_only(job: &Job, only: &[String]) -> bool {
    only.iter().any(|only| {
        let only = only.to_lowercase();
        job.mechanism.to_lowercase().contains(&only) || job.name.to_lowercase().contains(&only)
    })
}

fn is_baseline(name: &str) -> bool {
    matches!(
        name,
        "pipe" | "big-pipe" | "tcp-loopback" | "raw-vmsplice-splice-huge-busy"
    )
}

fn mechanism_name(name: &str) -> String {
    match name {
        "pipe" => "plain pipe".into(),
        "framed-pipe" => "conduit framed pipe".into(),
        "fast-busy" => "conduit fast pipe (busy)".into(),
        "fast-vmsplice" => "conduit fast pipe (vmsplice)".into(),
        "fast-splice" => "conduit fast pipe (splice)".into(),
        "fast-huge" => "conduit fast pipe (huge pages)".into(),
        "fifo" => "conduit FIFO".into(),
        "unix-stream" => "unix socket (stream)".into(),
        "unix-datagram" => "unix socket (datagram)".into(),
        "unix-seqpacket" => "unix socket (seqpacket)".into(),
        "posix-mq" => "POSIX message queue".into(),
        "tcp-loopback" => "TCP loopback".into(),
        other => other.to_owned(),
    }
}

/// The blackboard figures as rows: a "cost" row per figure, a "ratio"
/// row per ratio.
fn blackboard_rows(f: &blackboard::Figures) -> Vec<Row> {
    let row = |kind: &str, mechanism: &str, baseline: bool| Row {
        kind: kind.into(),
        mechanism: mechanism.to_owned(),
        baseline,
        payload: 8,
        ..Row::default()
    };
    let costs = f.costs.iter().map(|c| Row {
        p50_ns: Some(c.ns),
        msgs_per_s: (c.ns > 0.0).then(|| 1e9 / c.ns),
        ..row("cost", &c.name, c.baseline)
    });
    let ratios = f.ratios.iter().map(|r| Row {
        ratio: Some(r.value),
        target_met: r.met,
        ..row("ratio", &r.name, false)
    });
    costs.chain(ratios).collect()
}

fn signal_row(r: &signal::Report, mechanism: &str) -> Row {
    Row {
        kind: "latency".into(),
        mechanism: mechanism.to_owned(),
        baseline: false,
        payload: 8,
        p50_ns: Some(r.p50.as_nanos() as f64),
        p99_ns: Some(r.p99.as_nanos() as f64),
        msgs_per_s: Some(r.round_trips_per_sec * 2.0),
        ..Row::default()
    }
}

/// Reads `--peers` files: JSON lines in the harness format.
fn ingest(text: &str, rows: &mut Vec<Row>) -> Result<usize, String> {
    let mut n = 0;
    for line in text.lines().map(str::trim).filter(|l| l.starts_with('{')) {
        if let Ok(row) = serde_json::from_str::<Row>(line) {
            rows.push(row);
        } else {
            let m: Measurement = serde_json::from_str(line).map_err(|e| e.to_string())?;
            // The floors are measured by this run already.
            if matches!(
                m.scenario.as_str(),
                "spin_line" | "futex_pingpong" | "pipe_pingpong"
            ) {
                continue;
            }
            let mut name = m.scenario.replace('_', " ");
            if m.mode == harness::Mode::Header {
                name.push_str(" (header only)");
            }
            rows.push(from_measurement(&m, &name, false));
        }
        n += 1;
    }
    Ok(n)
}

/// bench-peers' iceoryx2 binaries, each named `iceoryx2_<kind>`: `--only`
/// text containing a kind runs that binary only.
const ICEORYX2_BINARIES: [&str; 4] = [
    "iceoryx2_pubsub",
    "iceoryx2_event",
    "iceoryx2_blackboard",
    "iceoryx2_reqres",
];

/// The bench-peers iceoryx2 binaries that are built (in `peers_dir`, or
/// next to the source tree this binary was built from).
fn iceoryx2_binaries(peers_dir: Option<&std::path::Path>) -> Result<Vec<PathBuf>, Failure> {
    let dir = peers_dir
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("bench-peers/target/release")
        });
    let found: Vec<PathBuf> = ICEORYX2_BINARIES
        .iter()
        .map(|b| dir.join(b))
        .filter(|p| p.exists())
        .collect();
    if found.is_empty() {
        return Err(Failure::new(
            exit::NOT_FOUND,
            format!(
                "no iceoryx2 binaries ({}) in {}: build them with `cargo build --release --manifest-path crates/bench-peers/Cargo.toml` in conduit's source tree, and pass --peers-dir <that tree>/crates/bench-peers/target/release if this conduit was installed",
                ICEORYX2_BINARIES.join(", "),
                dir.display()
            ),
        ));
    }
    Ok(found)
}

fn iceoryx2(size: Size, bins: &[PathBuf], rows: &mut Vec<Row>) -> Result<(), Failure> {
    // The peer binaries pin their own processes; do not hand them our
    // CPU-0 affinity (they would see one CPU and warn).
    conduit_bench::harness::unpin();
    for path in bins {
        let bin = path
            .file_name()
            .map_or("iceoryx2".into(), |n| n.to_string_lossy());
        let mut cmd = std::process::Command::new(path);
        cmd.arg("--json");
        if size != Size::Full {
            cmd.arg("--quick");
        }
        let out = cmd
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| Failure::from_error(exit::FAILURE, &format!("cannot run {bin}: "), &e))?;
        if !out.status.success() {
            return Err(Failure::new(
                exit::FAILURE,
                format!("{bin} failed: {}", out.status),
            ));
        }
        ingest(&String::from_utf8_lossy(&out.stdout), rows)
            .map_err(|e| Failure::new(exit::FAILURE, format!("{bin}: bad JSON line: {e}")))?;
    }
    Ok(())
}

/// Runs `conduit bench`.
pub fn run(args: BenchArgs) -> CmdResult {
    let size = if args.smoke {
        Size::Smoke
    } else if args.quick {
        Size::Quick
    } else {
        Size::Full
    };
    // Read the inputs first: a typo fails before minutes of measuring.
    let mut rows = Vec::new();
    for path in &args.peers {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::from_error(
                exit::USAGE,
                &format!("cannot read {}: ", path.display()),
                &e,
            )
        })?;
        let before = rows.len();
        ingest(&text, &mut rows).map_err(|e| {
            Failure::new(
                exit::USAGE,
                format!("{}: bad JSON line: {e}", path.display()),
            )
        })?;
        // Another run's figures: shown, marked, never in a ratio.
        for r in &mut rows[before..] {
            r.ingested = true;
        }
    }
    if let Some(path) = &args.report {
        std::fs::write(path, "").map_err(|e| {
            Failure::from_error(
                exit::FAILURE,
                &format!("cannot write {}: ", path.display()),
                &e,
            )
        })?;
    }
    let iceoryx2_bins = if args.with_iceoryx2 {
        let mut bins = iceoryx2_binaries(args.peers_dir.as_deref())?;
        // `--only blackboard` (or pubsub, event, reqres) runs only that
        // peer; several `--only` run each one named.
        let only: Vec<String> = args.only.iter().map(|o| o.to_lowercase()).collect();
        let kinds = ICEORYX2_BINARIES.map(|b| b.trim_start_matches("iceoryx2_"));
        let named = |k: &str| only.iter().any(|o| o.contains(k));
        if kinds.iter().any(|k| named(k)) {
            bins.retain(|b| {
                let name = b.file_name().map(|n| n.to_string_lossy().into_owned());
                kinds
                    .iter()
                    .any(|k| named(k) && name.as_deref().is_some_and(|n| n.ends_with(k)))
            });
        }
        bins
    } else {
        Vec::new()
    };
    let mut jobs = jobs(size);
    if !args.only.is_empty() {
        let only = &args.only;
        let mut names: Vec<String> = Vec::new();
        for j in &jobs {
            if !names.contains(&j.mechanism) {
                names.push(j.mechanism.clone());
            }
        }
        jobs.retain(|j| matches_only(j, only));
        if jobs.is_empty() {
            return Err(Failure::new(
                exit::USAGE,
                format!(
                    "no scenario matches {}; --only takes a name from the table, or part of one: {}",
                    only.iter()
                        .map(|o| format!("{o:?}"))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    names.join(", ")
                ),
            ));
        }
    }
    harness::setup_parent();
    let bar = indicatif::ProgressBar::new(jobs.len() as u64);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    for job in jobs {
        bar.set_message(job.name.clone());
        rows.extend((job.run)());
        bar.inc(1);
    }
    bar.finish_and_clear();
    if args.with_iceoryx2 {
        iceoryx2(size, &iceoryx2_bins, &mut rows)?;
    }
    if args.json {
        for r in &rows {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
    } else {
        print!("{}", table(&rows));
    }
    if let Some(path) = &args.report {
        let title = match size {
            Size::Smoke => "conduit bench --smoke",
            Size::Quick => "conduit bench --quick",
            Size::Full => "conduit bench",
        };
        let html = crate::bench_report::html(title, &rows, &table(&rows));
        std::fs::write(path, html).map_err(|e| {
            Failure::from_error(
                exit::FAILURE,
                &format!("cannot write {}: ", path.display()),
                &e,
            )
        })?;
        eprintln!("conduit: wrote {}", path.display());
    }
    Ok(())
}

fn ns(v: Option<f64>) -> String {
    v.map_or("-".into(), harness::fmt_ns)
}

/// The text table: one row per result; latency ratios against the plain
/// pipe ping-pong of this run; the method ([`harness::METHOD`]) and the
/// targets below.
pub fn table(rows: &[Row]) -> String {
    let pipe = rows
        .iter()
        .find(|r| r.kind == "latency" && r.mechanism == "plain pipe" && !r.ingested)
        .and_then(|r| r.p50_ns);
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.kind.clone(),
                format!(
                    "{}{}{}",
                    r.mechanism,
                    if r.baseline { " *" } else { "" },
                    if r.ingested { " (ingested)" } else { "" }
                ),
                common::bytes(r.payload as f64),
                match r.ratio {
                    Some(v) => format!(
                        "{v:.2}x{}",
                        match r.target_met {
                            Some(true) => " (met)",
                            Some(false) => " (NOT met)",
                            None => "",
                        }
                    ),
                    // Costs are a few ns: one decimal.
                    None if r.kind == "cost" => {
                        r.p50_ns.map_or("-".into(), |v| format!("{v:.1} ns"))
                    }
                    None => ns(r.p50_ns),
                },
                ns(r.p99_ns),
                match (r.batch_mean_ns, r.batch) {
                    (Some(v), Some(b)) => format!("{} /{b}", harness::fmt_ns(v)),
                    _ => "-".into(),
                },
                r.msgs_per_s.map_or("-".into(), |v| format!("{:.0}", v)),
                r.bytes_per_s
                    .map_or("-".into(), |v| format!("{}/s", common::bytes(v))),
                ns(r.cpu_ns_per_msg),
                match (r.p50_ns, pipe) {
                    (Some(a), Some(b)) if b > 0.0 && r.kind == "latency" && !r.ingested => {
                        format!("{:.2}", a / b)
                    }
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    let mut out = common::table(
        &[
            "kind",
            "mechanism",
            "payload",
            "p50",
            "p99",
            "batch mean",
            "msg/s",
            "throughput",
            "CPU/msg",
            "p50/pipe",
        ],
        &body,
    );
    out.push_str(FOOTER);
    out.push_str(harness::METHOD);
    out.push_str(&targets(rows));
    out
}

/// The table's footer before [`harness::METHOD`].
const FOOTER: &str = "\
* baseline; latency rows: every figure from the one statistic below, for conduit, baselines and peers alike;\n\
CPU/msg: measured in both processes (- where the echoing one did not report); throughput: stream rows, and \
latency rows whose payload was written and read;\n\
cost: median per operation (batches of 1000); ratio: of two figures of this run (p50 column).\n";

/// The p50 of `mechanism` at `payload` bytes, if measured in this run
/// (never an ingested row).
fn p50(rows: &[Row], mechanism: &str, payload: u64) -> Option<f64> {
    rows.iter()
        .find(|r| {
            r.kind == "latency" && !r.ingested && r.mechanism == mechanism && r.payload == payload
        })
        .and_then(|r| r.p50_ns)
}

/// The figure of the cost row `mechanism`, if measured in this run.
fn cost_of(rows: &[Row], mechanism: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.kind == "cost" && !r.ingested && r.mechanism == mechanism)
        .and_then(|r| r.p50_ns)
}

/// One line of [`targets`]: `label: a / b = r x`, with the target and
/// whether `r` meets it where there is one.
fn ratio_line(label: &str, a: f64, b: f64, target: Option<f64>) -> String {
    let r = a / b;
    let target = target.map_or(String::new(), |t| {
        format!(
            " (target <= {t}x, {})",
            if r <= t { "met" } else { "NOT met" }
        )
    });
    format!(
        "{label} = {} / {} = {r:.2}x{target}\n",
        harness::fmt_ns(a),
        harness::fmt_ns(b)
    )
}

/// The ratios the issues set targets for, from this run's rows only (a
/// line only where both sides were measured in this run; `--peers` rows
/// never count), and conduit against iceoryx2 where both ran
/// (`--with-iceoryx2`): blackboard costs, request/response
/// round trips, pub/sub one-way latencies.
fn targets(rows: &[Row]) -> String {
    let mut out = String::new();
    for what in [
        "get, entry unchanged",
        "get, writer updating on CPU 1",
        "update, no reader",
        "update, reader reading on CPU 1",
    ] {
        let ours = cost_of(rows, &format!("blackboard {what}"));
        let theirs = cost_of(rows, &format!("iceoryx2 blackboard {what}"));
        if let (Some(ours), Some(theirs)) = (ours, theirs) {
            let label = format!("blackboard {what}: conduit / iceoryx2");
            out.push_str(&ratio_line(&label, ours, theirs, None));
        }
    }
    for payload in reqres::SIZES.map(|s| s as u64) {
        let size = common::bytes(payload as f64);
        // The latency rows are one-way: a round trip is 2 × p50.
        let rr = p50(rows, "conduit reqres (busy)", payload).map(|p| 2.0 * p);
        let theirs = p50(rows, "iceoryx2 reqres (busy)", payload).map(|p| 2.0 * p);
        if let (Some(rr), Some(theirs)) = (rr, theirs) {
            let label = format!("request/response round trip, busy, {size}: conduit / iceoryx2");
            out.push_str(&ratio_line(&label, rr, theirs, Some(0.4)));
        }
        if let (Some(rr), Some(ps)) = (rr, p50(rows, "conduit pubsub (busy)", payload)) {
            let label = format!(
                "request/response round trip vs pub/sub one-way, busy, {size}: conduit reqres / conduit pubsub"
            );
            out.push_str(&ratio_line(&label, rr, ps, Some(2.6)));
        }
    }
    for payload in pubsub::SIZES.map(|s| s as u64) {
        let ours = p50(rows, "conduit pubsub (busy)", payload);
        let theirs = p50(rows, "iceoryx2 pubsub", payload);
        if let (Some(ours), Some(theirs)) = (ours, theirs) {
            let label = format!(
                "pub/sub one-way, busy, {}: conduit / iceoryx2",
                common::bytes(payload as f64)
            );
            out.push_str(&ratio_line(&label, ours, theirs, None));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(payload: u64, mode: harness::Mode, p50: f64) -> Measurement {
        Measurement {
            scenario: "x".into(),
            payload,
            mode,
            p50_ns: p50,
            p99_ns: 2.0 * p50,
            mean_ns: 1.25 * p50,
            iterations: 10,
            batch_mean_ns: None,
            batch: None,
            cpu_ns_per_rt_measurer: Some(3.0 * p50),
            cpu_ns_per_rt_echoer: Some(p50),
            ingested: false,
        }
    }

    fn latency(mechanism: &str, payload: u64, p50: f64) -> Row {
        from_measurement(
            &measurement(payload, harness::Mode::Payload, p50),
            mechanism,
            false,
        )
    }

    #[test]
    fn every_latency_row_takes_its_rates_from_the_one_statistic() {
        let mut m = measurement(1024, harness::Mode::Payload, 500.0);
        m.batch_mean_ns = Some(450.0);
        m.batch = Some(harness::BATCH);
        let r = from_measurement(&m, "iceoryx2 reqres (busy)", false);
        assert_eq!(r.kind, "latency");
        assert_eq!(r.mechanism, "iceoryx2 reqres (busy)");
        assert_eq!(r.payload, 1024);
        assert_eq!((r.p50_ns, r.p99_ns), (Some(500.0), Some(1000.0)));
        // msg/s from the mean (625 ns), never from p50.
        assert_eq!(r.msgs_per_s, Some(1.6e6));
        assert_eq!(r.bytes_per_s, Some(1024.0 * 1.6e6));
        // Both processes: (1500 + 500) / 2 per message.
        assert_eq!(r.cpu_ns_per_msg, Some(1000.0));
        assert_eq!((r.batch_mean_ns, r.batch), (Some(450.0), Some(100)));
        assert_eq!((r.ratio, r.target_met, r.ingested), (None, None, false));
        let table = table(&[r]);
        assert!(table.contains("450 ns /100"), "{table}");
        assert!(table.contains(harness::METHOD), "{table}");
        // Header-only: no throughput; one process unknown: no CPU/msg.
        let mut h = measurement(8, harness::Mode::Header, 500.0);
        h.cpu_ns_per_rt_echoer = None;
        let r = from_measurement(&h, "h", false);
        assert_eq!((r.bytes_per_s, r.cpu_ns_per_msg), (None, None));
    }

    #[test]
    fn ingested_rows_are_marked_and_left_out_of_targets() {
        let mut theirs = latency("iceoryx2 reqres (busy)", 8, 4000.0);
        theirs.ingested = true;
        let rows = [latency("conduit reqres (busy)", 8, 1000.0), theirs];
        assert_eq!(targets(&rows), "");
        let t = table(&rows);
        assert!(t.contains("iceoryx2 reqres (busy) (ingested)"), "{t}");
        let json = serde_json::to_string(&rows[1]).unwrap();
        assert!(json.contains(r#""ingested":true"#), "{json}");
        assert!(
            !serde_json::to_string(&rows[0])
                .unwrap()
                .contains("ingested")
        );
    }

    #[test]
    fn ratio_lines_show_both_figures_and_the_target() {
        assert_eq!(
            ratio_line("x: conduit / iceoryx2", 400.0, 1000.0, Some(0.4)),
            "x: conduit / iceoryx2 = 400 ns / 1000 ns = 0.40x (target <= 0.4x, met)\n"
        );
        assert!(ratio_line("x", 401.0, 1000.0, Some(0.4)).ends_with("(target <= 0.4x, NOT met)\n"));
        assert!(ratio_line("x", 1.0, 2.0, None).ends_with(" = 0.50x\n"));
    }

    #[test]
    fn targets_use_only_rows_measured_on_both_sides() {
        let rows = [
            latency("conduit reqres (busy)", 8, 1000.0),
            latency("iceoryx2 reqres (busy)", 8, 4000.0),
            latency("conduit pubsub (busy)", 8, 800.0),
            // No iceoryx2 row at 1 KiB, no pub/sub row either: no line.
            latency("conduit reqres (busy)", 1024, 1000.0),
            latency("iceoryx2 pubsub", 8, 1600.0),
            // Not the busy pub/sub row: ignored.
            latency("conduit pubsub (blocking)", 1024, 10.0),
        ];
        let text = targets(&rows);
        let lines: Vec<&str> = text.lines().collect();
        let rr = ratio_line(
            "request/response round trip, busy, 8 B: conduit / iceoryx2",
            2000.0,
            8000.0,
            Some(0.4),
        );
        let own = ratio_line(
            "request/response round trip vs pub/sub one-way, busy, 8 B: conduit reqres / conduit pubsub",
            2000.0,
            800.0,
            Some(2.6),
        );
        let ps = ratio_line(
            "pub/sub one-way, busy, 8 B: conduit / iceoryx2",
            800.0,
            1600.0,
            None,
        );
        assert_eq!(
            lines,
            [rr.trim_end(), own.trim_end(), ps.trim_end()],
            "{text}"
        );
        assert!(rr.contains("= 0.25x (target <= 0.4x, met)"), "{rr}");
        assert!(own.contains("= 2.50x (target <= 2.6x, met)"), "{own}");
        assert!(ps.contains("= 0.50x\n"), "{ps}");
    }
}
