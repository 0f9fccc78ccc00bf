//! Shared machinery of the two-process benchmarks: CPU pinning, CPU-time
//! accounting, the child-process entry point, the ping-pong timing loop,
//! the result record (with its JSON form) and the report table.
//!
//! # How a scenario runs
//!
//! The measuring process (pinned to CPU 0) starts a child with
//! [`Peer::spawn`]: the current executable re-executed with the role in the
//! environment variable [`ROLE_ENV`], its arguments on the command line and
//! up to [`FD_ENV`]`.len()` inherited descriptors (a memfd, pipe ends).
//! Every binary that runs scenarios therefore calls
//! [`child_main_if_requested`] (or [`child_main_if_requested_with`] for
//! roles of its own) first thing in `main`: in a child it pins to CPU 1,
//! runs the role and exits; in the parent it returns at once.
//!
//! The child sets itself up, calls [`ready`], then echoes with
//! [`echo_loop`]; the parent waits for [`Peer::wait_ready`], runs
//! [`measure`] and collects the child's CPU time with [`Peer::finish`].
//! Both sides run `plan.warmup + plan.rounds` round trips, so neither
//! needs a stop message.
//!
//! # Timing
//!
//! One-way latency is half a round trip. Busy-polling scenarios read the
//! clock once per batch of round trips ([`Timing::Batched`]): a clock read
//! right after a spin loop costs 20–60 ns that are not the system under
//! test; their percentiles are over batch means. Sleeping scenarios read
//! it once per round trip ([`Timing::PerRoundTrip`]).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Environment variable naming the role of a benchmark child process.
pub const ROLE_ENV: &str = "CONDUIT_BENCH_CHILD_ROLE";
/// Environment variables carrying inherited descriptors to the child.
pub const FD_ENV: [&str; 4] = [
    "CONDUIT_BENCH_CHILD_FD0",
    "CONDUIT_BENCH_CHILD_FD1",
    "CONDUIT_BENCH_CHILD_FD2",
    "CONDUIT_BENCH_CHILD_FD3",
];
/// CPU the measuring process runs on.
pub const PARENT_CPU: usize = 0;
/// CPU the echoing child runs on.
pub const CHILD_CPU: usize = 1;

const READY_LINE: &str = "conduit-bench-ready";
const CPU_LINE: &str = "conduit-bench-child-cpu-ns";

/// Pins the calling process to one CPU (`sched_setaffinity`); ignored when
/// that CPU does not exist.
pub fn pin_to_cpu(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

/// Lets this process run on every CPU again (undoes [`pin_to_cpu`]), so
/// that programs it spawns afterwards do not inherit a one-CPU affinity.
pub fn unpin() {
    let mut set = rustix::thread::CpuSet::new();
    for cpu in 0..rustix::thread::CpuSet::MAX_CPU {
        set.set(cpu);
    }
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

/// Number of CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPU time (user + system) of this process, or of its reaped children
/// (`getrusage`).
pub fn cpu_time(children: bool) -> Duration {
    let who = if children {
        libc::RUSAGE_CHILDREN
    } else {
        libc::RUSAGE_SELF
    };
    // SAFETY: an all-zero rusage is a valid value to be filled in.
    let mut usage: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The body of a child role: receives the arguments given to
/// [`Peer::spawn`].
pub type ChildFn = fn(&[String]);

/// Roles this library itself defines.
const BUILTIN_ROLES: &[(&str, ChildFn)] = &[
    (
        crate::floors::SPIN_LINE_ROLE,
        crate::floors::spin_line_child,
    ),
    (
        crate::floors::FUTEX_ROLE,
        crate::floors::futex_pingpong_child,
    ),
    (crate::floors::PIPE_ROLE, crate::floors::pipe_pingpong_child),
];

/// If this process is a benchmark child (started by [`Peer::spawn`]), runs
/// its role and exits; otherwise returns at once. Call it first in `main`
/// of every binary that runs this library's scenarios.
pub fn child_main_if_requested() {
    child_main_if_requested_with(&[]);
}

/// [`child_main_if_requested`] that also knows the binary's own roles
/// (name, body); a role unknown to both panics.
pub fn child_main_if_requested_with(roles: &[(&str, ChildFn)]) {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let body = BUILTIN_ROLES
        .iter()
        .chain(roles)
        .find(|(name, _)| *name == role)
        .unwrap_or_else(|| panic!("unknown benchmark child role {role:?}"))
        .1;
    // Die with the parent: a measuring process that panics must not leave
    // a child spinning on a CPU forever. (If the parent is already gone,
    // the child was re-parented and stops here.)
    let parent = std::os::unix::process::parent_id();
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    if std::os::unix::process::parent_id() != parent {
        std::process::exit(1);
    }
    pin_to_cpu(CHILD_CPU);
    body(&args);
    std::process::exit(0);
}

/// Takes ownership of inherited descriptor `i` in a child.
pub fn inherited_fd(i: usize) -> OwnedFd {
    conduit::pipe::take_inherited_fd(FD_ENV[i]).expect("inherited fd")
}

/// Tells the parent (blocked in [`Peer::wait_ready`]) that this child is
/// set up.
pub fn ready() {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{READY_LINE}").expect("stdout");
    out.flush().expect("stdout");
}

/// A running child process, seen from the measuring side.
///
/// A thread reads the child's stdout: it forwards the [`ready`] and
/// [`echo_loop`] report lines to this side, passes any other line (a
/// library's log) to stderr, and — if the child's stdout closes before its
/// report arrived, i.e. the child died — ends this process with an error,
/// since the measuring loop may be spinning for an answer that will never
/// come. (The child in turn dies with its parent: see
/// [`child_main_if_requested_with`].)
#[derive(Debug)]
pub struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// What the child reported when it finished.
#[derive(Debug, Clone, Copy)]
pub struct PeerReport {
    /// CPU time the child spent over the timed round trips.
    pub cpu: Duration,
}

impl Peer {
    /// Starts the current executable as a child running `role` with `args`,
    /// handing it `fds` (taken in the child with [`inherited_fd`]).
    pub fn spawn(role: &str, args: &[String], fds: &[&dyn AsFd]) -> Peer {
        assert!(fds.len() <= FD_ENV.len(), "too many descriptors");
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .env(ROLE_ENV, role)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let guards: Vec<_> = fds
            .iter()
            .zip(FD_ENV)
            .map(|(fd, env)| conduit::pipe::pass_to_child(fd, &mut cmd, env).expect("pass fd"))
            .collect();
        let mut child = cmd.spawn().expect("spawn benchmark child");
        drop(guards);
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        let role = role.to_owned();
        std::thread::Builder::new()
            .name(String::from("bench-child-stdout"))
            .spawn(move || forward_lines(stdout, &tx, &role))
            .expect("spawn stdout reader");
        Peer { child, lines }
    }

    /// Waits for the child's line starting with `prefix`; returns the rest.
    fn read_until(&mut self, prefix: &str) -> String {
        loop {
            let line = self.lines.recv().expect("benchmark child stdout reader");
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }

    /// Blocks until the child called [`ready`].
    pub fn wait_ready(&mut self) {
        self.read_until(READY_LINE);
    }

    /// Collects the child's report (from [`echo_loop`]) and waits for it to
    /// exit successfully.
    pub fn finish(mut self) -> PeerReport {
        let ns: u64 = self.read_until(CPU_LINE).parse().expect("cpu line");
        let status = self.child.wait().expect("wait child");
        assert!(status.success(), "benchmark child failed: {status}");
        PeerReport {
            cpu: Duration::from_nanos(ns),
        }
    }
}

/// Body of a [`Peer`]'s stdout thread.
fn forward_lines(stdout: ChildStdout, tx: &mpsc::Sender<String>, role: &str) {
    let mut reported = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if line.starts_with(READY_LINE) || line.starts_with(CPU_LINE) {
            reported |= line.starts_with(CPU_LINE);
            let _ = tx.send(line);
        } else {
            eprintln!("{line}");
        }
    }
    if !reported {
        eprintln!("error: benchmark child {role:?} died before reporting (see its stderr above)");
        std::process::exit(2);
    }
}

/// How the measuring side reads the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Once per this many round trips (busy polling); percentiles over
    /// batch means.
    Batched(u64),
    /// Once per round trip (sleeping scenarios).
    PerRoundTrip,
}

/// How many round trips a scenario runs and how they are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Untimed round trips first (page faults, caches, frequency).
    pub warmup: u64,
    /// Timed round trips (a multiple of the batch when batched).
    pub rounds: u64,
    /// Clock reads.
    pub timing: Timing,
}

impl Plan {
    /// A busy-polling plan: clock read once per `batch` round trips;
    /// `rounds` is rounded up to a multiple of `batch`.
    pub fn busy(warmup: u64, rounds: u64, batch: u64) -> Plan {
        let batch = batch.max(1);
        Plan {
            warmup,
            rounds: rounds.div_ceil(batch).max(1) * batch,
            timing: Timing::Batched(batch),
        }
    }

    /// A sleeping plan: clock read once per round trip.
    pub fn sleeping(warmup: u64, rounds: u64) -> Plan {
        Plan {
            warmup,
            rounds: rounds.max(1),
            timing: Timing::PerRoundTrip,
        }
    }

    /// Total round trips both sides run.
    pub fn total(&self) -> u64 {
        self.warmup + self.rounds
    }

    /// The plan as the child's first two arguments (`warmup rounds`).
    pub fn to_args(&self) -> Vec<String> {
        vec![self.warmup.to_string(), self.rounds.to_string()]
    }

    /// Reads `warmup rounds` from a child's first two arguments (the timing
    /// is the measuring side's business).
    pub fn from_args(args: &[String]) -> Plan {
        let n = |i: usize| -> u64 { args[i].parse().expect("plan argument") };
        Plan::sleeping(n(0), n(1))
    }
}

/// Child side of a ping-pong: calls `echo(i)` for each of the plan's round
/// trips (`i` counts from 0 across warm-up and timed rounds), then reports
/// its CPU time over the timed ones to the parent ([`Peer::finish`]).
pub fn echo_loop(plan: &Plan, mut echo: impl FnMut(u64)) {
    for i in 0..plan.warmup {
        echo(i);
    }
    let cpu_start = cpu_time(false);
    for i in plan.warmup..plan.total() {
        echo(i);
    }
    let cpu = cpu_time(false).saturating_sub(cpu_start);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{CPU_LINE} {}", cpu.as_nanos()).expect("stdout");
    out.flush().expect("stdout");
}

/// Latency figures of one timed ping-pong, one-way, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timed {
    /// Median one-way latency (of batch means when batched).
    pub p50_ns: f64,
    /// 99th percentile one-way latency (of batch means when batched).
    pub p99_ns: f64,
    /// Mean one-way latency over all timed round trips.
    pub mean_ns: f64,
    /// Timed round trips.
    pub iterations: u64,
    /// CPU time of the measuring process per round trip.
    pub cpu_ns_per_round_trip: f64,
}

/// Measuring side of a ping-pong: `round_trip(i)` sends message `i` and
/// returns once its echo arrived. Runs the plan's warm-up, then its timed
/// rounds.
///
/// Panics if the plan's rounds are not a positive multiple of its batch
/// (the child would wait for round trips that never come); [`Plan::busy`]
/// rounds up for you.
pub fn measure(plan: &Plan, mut round_trip: impl FnMut(u64)) -> Timed {
    let batch = match plan.timing {
        Timing::Batched(b) => b,
        Timing::PerRoundTrip => 1,
    };
    assert!(
        batch > 0 && plan.rounds >= batch && plan.rounds % batch == 0,
        "plan rounds ({}) must be a positive multiple of the batch ({batch})",
        plan.rounds
    );
    for i in 0..plan.warmup {
        round_trip(i);
    }
    let batches = plan.rounds / batch;
    let mut samples: Vec<f64> = Vec::with_capacity(batches as usize);
    let cpu_start = cpu_time(false);
    let start = Instant::now();
    let mut last = start;
    let mut i = plan.warmup;
    for _ in 0..batches {
        for _ in 0..batch {
            round_trip(i);
            i += 1;
        }
        let now = Instant::now();
        samples.push((now - last).as_nanos() as f64 / batch as f64 / 2.0);
        last = now;
    }
    let elapsed = last - start;
    let cpu = cpu_time(false).saturating_sub(cpu_start);
    let timed = batches * batch;
    samples.sort_unstable_by(f64::total_cmp);
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    Timed {
        p50_ns: pct(0.50),
        p99_ns: pct(0.99),
        mean_ns: elapsed.as_nanos() as f64 / timed as f64 / 2.0,
        iterations: timed,
        cpu_ns_per_round_trip: cpu.as_nanos() as f64 / timed as f64,
    }
}

/// Whether a message's payload bytes were touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only the header / a sequence number is written and read; the payload
    /// is not touched.
    Header,
    /// The sender writes every payload byte and the receiver reads every
    /// one (a checksum).
    Payload,
}

impl Mode {
    /// `"header"` or `"payload"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Header => "header",
            Mode::Payload => "payload",
        }
    }
}

/// One scenario's result; also one line of `--json` output:
///
/// ```json
/// {"scenario":"spin_line","payload":8,"mode":"header","p50_ns":140.2,"p99_ns":180.5,
///  "mean_ns":142.0,"iterations":1000000,"cpu_ns_per_rt_measurer":281.0,"cpu_ns_per_rt_echoer":280.1}
/// ```
///
/// The two CPU fields are optional (absent when unknown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Scenario name, e.g. `spin_line`, `iceoryx2_pubsub`.
    pub scenario: String,
    /// Payload bytes per message.
    pub payload: u64,
    /// Whether the payload was touched.
    pub mode: Mode,
    /// Median one-way latency, ns.
    pub p50_ns: f64,
    /// 99th percentile one-way latency, ns.
    pub p99_ns: f64,
    /// Mean one-way latency, ns.
    pub mean_ns: f64,
    /// Timed round trips.
    pub iterations: u64,
    /// CPU time of the measuring process per round trip, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ns_per_rt_measurer: Option<f64>,
    /// CPU time of the echoing process per round trip, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ns_per_rt_echoer: Option<f64>,
}

impl Measurement {
    /// Combines a [`Timed`] run with the child's report.
    pub fn new(
        scenario: &str,
        payload: u64,
        mode: Mode,
        timed: Timed,
        peer: Option<PeerReport>,
    ) -> Measurement {
        Measurement {
            scenario: scenario.to_owned(),
            payload,
            mode,
            p50_ns: timed.p50_ns,
            p99_ns: timed.p99_ns,
            mean_ns: timed.mean_ns,
            iterations: timed.iterations,
            cpu_ns_per_rt_measurer: Some(timed.cpu_ns_per_round_trip),
            cpu_ns_per_rt_echoer: peer
                .map(|p| p.cpu.as_nanos() as f64 / timed.iterations.max(1) as f64),
        }
    }

    /// The record as one JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serialise measurement")
    }
}

/// The child side of a scenario: which role to run, with which extra
/// arguments (after the plan's) and inherited descriptors.
#[derive(Clone, Copy)]
pub struct ChildSpec<'a> {
    /// Role name, as registered with [`child_main_if_requested_with`] (or
    /// built in).
    pub role: &'a str,
    /// Arguments after the plan's two.
    pub args: &'a [String],
    /// Descriptors the child takes with [`inherited_fd`]`(0..)`.
    pub fds: &'a [&'a dyn AsFd],
}

impl<'a> ChildSpec<'a> {
    /// A child running `role` with no extra arguments or descriptors.
    pub fn role(role: &'a str) -> ChildSpec<'a> {
        ChildSpec {
            role,
            args: &[],
            fds: &[],
        }
    }
}

/// Runs a whole two-process ping-pong: spawns the child with the plan and
/// its arguments, waits until it is ready, measures with `round_trip`,
/// collects the child's CPU time.
pub fn run_ping_pong(
    scenario: &str,
    payload: u64,
    mode: Mode,
    plan: &Plan,
    child: ChildSpec<'_>,
    round_trip: impl FnMut(u64),
) -> Measurement {
    let mut args = plan.to_args();
    args.extend_from_slice(child.args);
    let mut peer = Peer::spawn(child.role, &args, child.fds);
    peer.wait_ready();
    let timed = measure(plan, round_trip);
    let report = peer.finish();
    Measurement::new(scenario, payload, mode, timed, Some(report))
}

/// A table of results with ratios to a baseline scenario.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Printed above the table.
    pub title: String,
    /// Scenario whose p50 the ratio column divides by (the row with the same
    /// payload and mode if there is one, else its first row).
    pub baseline: Option<String>,
    /// The results, in print order.
    pub rows: Vec<Measurement>,
}

impl Report {
    /// An empty report.
    pub fn new(title: &str, baseline: Option<&str>) -> Report {
        Report {
            title: title.to_owned(),
            baseline: baseline.map(str::to_owned),
            rows: Vec::new(),
        }
    }

    /// Adds a result (and prints a progress line to stderr).
    pub fn push(&mut self, m: Measurement) {
        eprintln!(
            "  done: {} {} B {}: p50 {}",
            m.scenario,
            m.payload,
            m.mode.as_str(),
            fmt_ns(m.p50_ns)
        );
        self.rows.push(m);
    }

    /// Adds the records of `--json` output (lines not starting with `{` are
    /// skipped), e.g. from `bench-peers`.
    pub fn ingest(&mut self, text: &str) -> serde_json::Result<usize> {
        let mut n = 0;
        for line in text.lines().map(str::trim).filter(|l| l.starts_with('{')) {
            self.rows.push(serde_json::from_str(line)?);
            n += 1;
        }
        Ok(n)
    }

    fn baseline_p50(&self, row: &Measurement) -> Option<f64> {
        let name = self.baseline.as_deref()?;
        let candidates: Vec<&Measurement> =
            self.rows.iter().filter(|r| r.scenario == name).collect();
        candidates
            .iter()
            .find(|r| r.payload == row.payload && r.mode == row.mode)
            .or(candidates.first())
            .map(|r| r.p50_ns)
    }

    /// The plain-text table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        if !self.title.is_empty() {
            s.push_str(&self.title);
            s.push('\n');
        }
        let ratio_head = match &self.baseline {
            Some(b) => format!("x {b}"),
            None => String::from("ratio"),
        };
        s.push_str(&format!(
            "{:<28} {:>9} {:>8} {:>10} {:>10} {:>10} {:>18} {:>12} {:>12}\n",
            "scenario",
            "payload",
            "mode",
            "p50",
            "p99",
            "mean",
            ratio_head,
            "cpu/rt meas",
            "cpu/rt echo"
        ));
        for r in &self.rows {
            let ratio = self
                .baseline_p50(r)
                .map_or(String::from("-"), |b| format!("{:.2}", r.p50_ns / b));
            let cpu = |c: Option<f64>| c.map_or(String::from("-"), fmt_ns);
            s.push_str(&format!(
                "{:<28} {:>9} {:>8} {:>10} {:>10} {:>10} {:>18} {:>12} {:>12}\n",
                r.scenario,
                fmt_bytes(r.payload),
                r.mode.as_str(),
                fmt_ns(r.p50_ns),
                fmt_ns(r.p99_ns),
                fmt_ns(r.mean_ns),
                ratio,
                cpu(r.cpu_ns_per_rt_measurer),
                cpu(r.cpu_ns_per_rt_echoer),
            ));
        }
        s
    }

    /// One JSON object per line, one line per row.
    pub fn json_lines(&self) -> String {
        self.rows.iter().map(|r| r.to_json() + "\n").collect()
    }

    /// Prints the JSON lines if `json`, else the table.
    pub fn print(&self, json: bool) {
        if json {
            print!("{}", self.json_lines());
        } else {
            print!("{}", self.table());
        }
    }
}

/// Nanoseconds as `123 ns` / `12.3 us` / `1.23 ms`.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 10_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 10_000_000.0 {
        format!("{:.1} us", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// Bytes as `8 B` / `1 KiB` / `1 MiB`.
pub fn fmt_bytes(n: u64) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

/// Command-line options common to the benchmark binaries.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--quick`: a short run (checks that it works; noisy figures).
    pub quick: bool,
    /// `--json`: print JSON lines instead of the table.
    pub json: bool,
    /// `--ingest FILE`: add the JSON lines of FILE to the report.
    pub ingest: Vec<String>,
}

impl Options {
    /// Parses the process arguments; panics on an unknown one.
    pub fn from_args() -> Options {
        let mut o = Options::default();
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => o.quick = true,
                "--json" => o.json = true,
                "--ingest" => o.ingest.push(args.next().expect("--ingest FILE")),
                other => {
                    panic!("unknown argument {other:?} (expected --quick, --json, --ingest FILE)")
                }
            }
        }
        o
    }
}

/// Pins this process to [`PARENT_CPU`], warning when there are fewer than
/// two CPUs (both processes then share one, and figures mean little).
pub fn setup_parent() {
    if cpus() < 2 {
        eprintln!("warning: fewer than 2 CPUs: both processes share one CPU");
    }
    pin_to_cpu(PARENT_CPU);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: &str, payload: u64, mode: Mode, p50: f64) -> Measurement {
        Measurement {
            scenario: scenario.to_owned(),
            payload,
            mode,
            p50_ns: p50,
            p99_ns: p50 * 2.0,
            mean_ns: p50,
            iterations: 10,
            cpu_ns_per_rt_measurer: None,
            cpu_ns_per_rt_echoer: Some(1.5),
        }
    }

    #[test]
    fn json_lines_round_trip_and_ingest_skips_other_lines() {
        let mut a = Report::new("t", Some("base"));
        a.rows.push(row("base", 8, Mode::Header, 100.0));
        a.rows.push(row("peer", 1024, Mode::Payload, 250.0));
        let text = format!("some log line\n{}\n", a.json_lines());
        let mut b = Report::new("t", Some("base"));
        assert_eq!(b.ingest(&text).unwrap(), 2);
        assert_eq!(a.rows, b.rows);
        let first = a.rows[0].to_json();
        assert!(first.contains(r#""mode":"header""#), "{first}");
        assert!(!first.contains("cpu_ns_per_rt_measurer"), "{first}");
    }

    #[test]
    fn ingest_accepts_the_minimal_schema() {
        let mut r = Report::new("t", None);
        let line = r#"{"scenario":"x","payload":8,"mode":"payload","p50_ns":1,"p99_ns":2,"mean_ns":1.5,"iterations":3}"#;
        assert_eq!(r.ingest(line).unwrap(), 1);
        assert_eq!(r.rows[0].mode, Mode::Payload);
        assert_eq!(r.rows[0].cpu_ns_per_rt_echoer, None);
        assert!(r.ingest(r#"{"scenario":"x"}"#).is_err());
    }

    #[test]
    fn ratio_uses_matching_baseline_row_else_first() {
        let mut r = Report::new("t", Some("base"));
        r.rows.push(row("base", 8, Mode::Header, 100.0));
        r.rows.push(row("base", 1024, Mode::Header, 200.0));
        r.rows.push(row("peer", 1024, Mode::Header, 400.0));
        r.rows.push(row("peer", 4096, Mode::Payload, 300.0));
        assert_eq!(r.baseline_p50(&r.rows[2]), Some(200.0));
        assert_eq!(r.baseline_p50(&r.rows[3]), Some(100.0));
        let table = r.table();
        assert!(table.contains("2.00"), "{table}");
        assert!(table.contains("3.00"), "{table}");
    }

    #[test]
    fn busy_plan_rounds_to_whole_batches() {
        let p = Plan::busy(5, 1001, 100);
        assert_eq!(p.rounds, 1100);
        assert_eq!(p.timing, Timing::Batched(100));
        let args = p.to_args();
        let q = Plan::from_args(&args);
        assert_eq!((q.warmup, q.rounds), (5, 1100));
    }

    #[test]
    #[should_panic(expected = "positive multiple")]
    fn measure_rejects_partial_batches() {
        let plan = Plan {
            warmup: 0,
            rounds: 150,
            timing: Timing::Batched(100),
        };
        measure(&plan, |_| {});
    }

    #[test]
    fn measure_counts_every_round_trip_once() {
        let plan = Plan::busy(3, 200, 100);
        let mut seen = Vec::new();
        let t = measure(&plan, |i| seen.push(i));
        assert_eq!(seen, (0..203).collect::<Vec<u64>>());
        assert_eq!(t.iterations, 200);
        assert!(t.p50_ns <= t.p99_ns);
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_bytes(8), "8 B");
        assert_eq!(fmt_bytes(64 << 10), "64 KiB");
        assert_eq!(fmt_bytes(1 << 20), "1 MiB");
        assert_eq!(fmt_ns(140.4), "140 ns");
        assert_eq!(fmt_ns(31_500.0), "31.5 us");
    }
}
