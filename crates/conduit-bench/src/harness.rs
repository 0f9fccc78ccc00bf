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
//! One-way latency is half a round trip. Every scenario reads the clock
//! after every timed round trip: p50, p99 and the mean of every row are
//! over these per-round-trip samples ([`measure`], [`statistic`]). A clock
//! read right after a spin loop costs 20–60 ns that are not the system
//! under test, so busy-polling scenarios ([`Timing::Batched`]) then run a
//! second phase with one clock read per batch and report the median batch
//! mean separately ([`Measurement::batch_mean_ns`]), never inside p50/p99.

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
    (crate::pubsub::ROLE, crate::pubsub::child),
    (crate::reqres::ROLE, crate::reqres::child),
    (crate::msg::ECHO_ROLE, crate::msg::echo_child),
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

/// Round trips per clock read in the separate batch phase of a busy plan
/// (the same for every busy-polling row: conduit, floors, peers).
pub const BATCH: u64 = 100;

/// How the measuring side reads the clock.
///
/// Every plan first runs its timed round trips with the clock read once
/// per round trip: p50, p99 and the mean come from those per-round-trip
/// samples, for every row. A busy plan then runs as many round trips
/// again with the clock read once per batch, and reports the median of
/// those batch means separately (`batch_mean_ns`, labelled "batch mean of
/// N"): what a busy poll costs without a clock read after every spin. It
/// never enters p50/p99.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Busy polling: per-round-trip samples, then a batch phase of this
    /// many round trips per clock read.
    Batched(u64),
    /// Per-round-trip samples only (sleeping scenarios).
    PerRoundTrip,
}

/// How many round trips a scenario runs and how they are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Untimed round trips first (page faults, caches, frequency).
    pub warmup: u64,
    /// Timed round trips with a clock read each (p50/p99/mean); a busy
    /// plan runs a batch phase of as many again (a multiple of the batch).
    pub rounds: u64,
    /// Clock reads.
    pub timing: Timing,
}

impl Plan {
    /// A busy-polling plan: `rounds` per-round-trip samples, then a batch
    /// phase of `rounds` (rounded up to a multiple of `batch`) with the
    /// clock read once per `batch` round trips.
    pub fn busy(warmup: u64, rounds: u64, batch: u64) -> Plan {
        let batch = batch.max(1);
        Plan {
            warmup,
            rounds: rounds.div_ceil(batch).max(1) * batch,
            timing: Timing::Batched(batch),
        }
    }

    /// A sleeping plan: per-round-trip samples only.
    pub fn sleeping(warmup: u64, rounds: u64) -> Plan {
        Plan {
            warmup,
            rounds: rounds.max(1),
            timing: Timing::PerRoundTrip,
        }
    }

    /// Round trips per clock read in the batch phase (None: no batch phase).
    pub fn batch(&self) -> Option<u64> {
        match self.timing {
            Timing::Batched(b) => Some(b),
            Timing::PerRoundTrip => None,
        }
    }

    /// Round trips of the batch phase (0 without one).
    pub fn batch_rounds(&self) -> u64 {
        self.batch().map_or(0, |b| self.rounds.div_ceil(b) * b)
    }

    /// Timed round trips of both phases (what the CPU time is divided by).
    pub fn timed(&self) -> u64 {
        self.rounds + self.batch_rounds()
    }

    /// Total round trips both sides run.
    pub fn total(&self) -> u64 {
        self.warmup + self.timed()
    }

    /// The plan as the child's first two arguments (`warmup timed`): the
    /// child echoes every round trip of both phases.
    pub fn to_args(&self) -> Vec<String> {
        vec![self.warmup.to_string(), self.timed().to_string()]
    }

    /// Reads `warmup timed` from a child's first two arguments (the timing
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
    /// Median one-way latency: of per-round-trip samples (round trip / 2).
    pub p50_ns: f64,
    /// 99th percentile one-way latency, of the same samples.
    pub p99_ns: f64,
    /// Mean one-way latency over the per-round-trip phase (its wall time /
    /// round trips / 2, clock reads included).
    pub mean_ns: f64,
    /// Median over the batch phase's batches of the batch's mean one-way
    /// latency (busy plans only).
    pub batch_mean_ns: Option<f64>,
    /// Round trips per batch of [`Timed::batch_mean_ns`].
    pub batch: Option<u64>,
    /// Per-round-trip samples (round trips of the first phase).
    pub iterations: u64,
    /// CPU time of the measuring process per timed round trip (both
    /// phases).
    pub cpu_ns_per_round_trip: f64,
}

/// The `p`-quantile (0 ≤ p ≤ 1) of ascending `sorted` samples, nearest
/// rank: `sorted[round((len - 1) × p)]`. The one percentile function of
/// every latency row.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "no samples");
    debug_assert!(sorted.is_sorted_by(|a, b| a <= b), "samples not sorted");
    sorted[((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize]
}

/// The statistic of every latency row, from raw round-trip times: p50 and
/// p99 of `round_trip_ns` (one sample per round trip) halved to one-way;
/// the mean one-way latency of that phase from its wall time
/// `sampled_wall_ns`; the median of `batch_round_trip_means_ns` (each a
/// batch's mean round trip) halved, when there was a batch phase.
pub fn statistic(
    mut round_trip_ns: Vec<f64>,
    sampled_wall_ns: f64,
    mut batch_round_trip_means_ns: Vec<f64>,
    batch: Option<u64>,
    cpu_ns_per_round_trip: f64,
) -> Timed {
    round_trip_ns.sort_unstable_by(f64::total_cmp);
    batch_round_trip_means_ns.sort_unstable_by(f64::total_cmp);
    let n = round_trip_ns.len() as u64;
    Timed {
        p50_ns: percentile(&round_trip_ns, 0.50) / 2.0,
        p99_ns: percentile(&round_trip_ns, 0.99) / 2.0,
        mean_ns: sampled_wall_ns / n as f64 / 2.0,
        batch_mean_ns: (!batch_round_trip_means_ns.is_empty())
            .then(|| percentile(&batch_round_trip_means_ns, 0.50) / 2.0),
        batch: batch.filter(|_| !batch_round_trip_means_ns.is_empty()),
        iterations: n,
        cpu_ns_per_round_trip,
    }
}

/// Measuring side of a ping-pong: `round_trip(i)` sends message `i` and
/// returns once its echo arrived. Runs the plan's warm-up, then its timed
/// rounds with the clock read after each (one sample per round trip),
/// then, for a busy plan, its batch phase (one clock read per batch); see
/// [`statistic`].
pub fn measure(plan: &Plan, mut round_trip: impl FnMut(u64)) -> Timed {
    assert!(plan.rounds > 0, "a plan needs timed round trips");
    for i in 0..plan.warmup {
        round_trip(i);
    }
    let mut samples: Vec<f64> = Vec::with_capacity(plan.rounds as usize);
    let cpu_start = cpu_time(false);
    let start = Instant::now();
    let mut last = start;
    let mut i = plan.warmup;
    for _ in 0..plan.rounds {
        round_trip(i);
        i += 1;
        let now = Instant::now();
        samples.push((now - last).as_nanos() as f64);
        last = now;
    }
    let sampled_wall = (last - start).as_nanos() as f64;
    let mut batch_means = Vec::new();
    if let Some(batch) = plan.batch() {
        let mut last = Instant::now();
        for _ in 0..plan.batch_rounds() / batch {
            for _ in 0..batch {
                round_trip(i);
                i += 1;
            }
            let now = Instant::now();
            batch_means.push((now - last).as_nanos() as f64 / batch as f64);
            last = now;
        }
    }
    let cpu = cpu_time(false).saturating_sub(cpu_start);
    debug_assert_eq!(i, plan.total());
    statistic(
        samples,
        sampled_wall,
        batch_means,
        plan.batch(),
        cpu.as_nanos() as f64 / plan.timed() as f64,
    )
}

/// The byte every payload byte of message `seq` holds (never 0), in every
/// system's payload mode.
pub fn fill_byte(seq: u64) -> u8 {
    (seq % 251) as u8 + 1
}

/// The sender's payload work, the same for every system: one bulk write
/// (`memset`) of `byte` over the whole payload.
pub fn fill_payload(payload: &mut [core::mem::MaybeUninit<u8>], byte: u8) {
    // SAFETY: `payload` is a valid, exclusively borrowed slice of
    // `payload.len()` bytes; any value is valid for `MaybeUninit<u8>`.
    unsafe { core::ptr::write_bytes(payload.as_mut_ptr(), byte, payload.len()) };
}

/// The receiver's payload work, the same for every system: sums every
/// byte and checks the sum against `len × byte` (panics otherwise).
pub fn check_payload(payload: &[u8], byte: u8) {
    let sum: u64 = payload.iter().map(|&b| u64::from(b)).sum();
    assert_eq!(
        sum,
        payload.len() as u64 * u64::from(byte),
        "bad payload (expected every byte {byte})"
    );
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
    /// Timed round trips (per-round-trip samples).
    pub iterations: u64,
    /// Busy plans: median over batches of [`Measurement::batch`] round
    /// trips of the batch's mean one-way latency, ns (never part of
    /// p50/p99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_mean_ns: Option<f64>,
    /// Round trips per batch of `batch_mean_ns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,
    /// CPU time of the measuring process per round trip, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ns_per_rt_measurer: Option<f64>,
    /// CPU time of the echoing process per round trip, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ns_per_rt_echoer: Option<f64>,
    /// Read from a file of another run (`--ingest`), not measured by this
    /// one: shown marked, never used in a ratio to this run's figures.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ingested: bool,
}

impl Measurement {
    /// Combines a [`Timed`] run with the child's report.
    /// `timed_round_trips`: the plan's [`Plan::timed`] (the round trips the
    /// child's CPU time covers).
    pub fn new(
        scenario: &str,
        payload: u64,
        mode: Mode,
        timed: Timed,
        timed_round_trips: u64,
        peer: Option<PeerReport>,
    ) -> Measurement {
        let timed_round_trips = timed_round_trips.max(1);
        Measurement {
            scenario: scenario.to_owned(),
            payload,
            mode,
            p50_ns: timed.p50_ns,
            p99_ns: timed.p99_ns,
            mean_ns: timed.mean_ns,
            iterations: timed.iterations,
            batch_mean_ns: timed.batch_mean_ns,
            batch: timed.batch,
            cpu_ns_per_rt_measurer: Some(timed.cpu_ns_per_round_trip),
            cpu_ns_per_rt_echoer: peer.map(|p| p.cpu.as_nanos() as f64 / timed_round_trips as f64),
            ingested: false,
        }
    }

    /// One-way messages per second, for every row from the same figure:
    /// the mean of the per-round-trip phase (2 messages per round trip /
    /// its wall time = 1 s / `mean_ns`).
    pub fn msgs_per_s(&self) -> Option<f64> {
        (self.mean_ns > 0.0).then(|| 1e9 / self.mean_ns)
    }

    /// Payload bytes per second ([`Measurement::msgs_per_s`] × payload),
    /// only where the payload was written and read ([`Mode::Payload`]).
    pub fn bytes_per_s(&self) -> Option<f64> {
        match self.mode {
            Mode::Payload => self.msgs_per_s().map(|m| m * self.payload as f64),
            Mode::Header => None,
        }
    }

    /// CPU time of both processes per one-way message, ns: (measurer +
    /// echoer per round trip) / 2; unknown unless both were measured.
    pub fn cpu_ns_per_msg(&self) -> Option<f64> {
        match (self.cpu_ns_per_rt_measurer, self.cpu_ns_per_rt_echoer) {
            (Some(a), Some(b)) => Some((a + b) / 2.0),
            _ => None,
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
    Measurement::new(scenario, payload, mode, timed, plan.timed(), Some(report))
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

    /// Adds the records of `--json` output of another run (lines not
    /// starting with `{` are skipped), marked [`Measurement::ingested`]:
    /// shown, never a ratio's baseline nor given a ratio.
    pub fn ingest(&mut self, text: &str) -> serde_json::Result<usize> {
        let mut n = 0;
        for line in text.lines().map(str::trim).filter(|l| l.starts_with('{')) {
            let mut m: Measurement = serde_json::from_str(line)?;
            m.ingested = true;
            self.rows.push(m);
            n += 1;
        }
        Ok(n)
    }

    fn baseline_p50(&self, row: &Measurement) -> Option<f64> {
        if row.ingested {
            return None;
        }
        let name = self.baseline.as_deref()?;
        let candidates: Vec<&Measurement> = self
            .rows
            .iter()
            .filter(|r| r.scenario == name && !r.ingested)
            .collect();
        candidates
            .iter()
            .find(|r| r.payload == row.payload && r.mode == row.mode)
            .or(candidates.first())
            .map(|r| r.p50_ns)
    }

    /// The plain-text table, with [`METHOD`] as its footer.
    pub fn table(&self) -> String {
        let mut s = String::new();
        if !self.title.is_empty() {
            s.push_str(&self.title);
            s.push('\n');
        }
        let ratio_head = match &self.baseline {
            Some(b) => format!("p50 x {b}"),
            None => String::from("ratio"),
        };
        let line = |c: [&str; 12]| {
            format!(
                "{:<30} {:>8} {:>8} {:>10} {:>10} {:>10} {:>16} {:>10} {:>12} {:>10} {:>10} {:>20}\n",
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]
            )
        };
        s.push_str(&line([
            "scenario",
            "payload",
            "mode",
            "p50",
            "p99",
            "mean",
            "batch mean",
            "msg/s",
            "throughput",
            "CPU/msg",
            "CPU/rt echo",
            &ratio_head,
        ]));
        for r in &self.rows {
            let ratio = self
                .baseline_p50(r)
                .map_or(String::from("-"), |b| format!("{:.2}", r.p50_ns / b));
            let opt_ns = |c: Option<f64>| c.map_or(String::from("-"), fmt_ns);
            let name = if r.ingested {
                format!("{} (ingested)", r.scenario)
            } else {
                r.scenario.clone()
            };
            let batch = match (r.batch_mean_ns, r.batch) {
                (Some(ns), Some(b)) => format!("{} /{b}", fmt_ns(ns)),
                _ => String::from("-"),
            };
            s.push_str(&line([
                &name,
                &fmt_bytes(r.payload),
                r.mode.as_str(),
                &fmt_ns(r.p50_ns),
                &fmt_ns(r.p99_ns),
                &fmt_ns(r.mean_ns),
                &batch,
                &r.msgs_per_s()
                    .map_or(String::from("-"), |v| format!("{v:.0}")),
                &r.bytes_per_s()
                    .map_or(String::from("-"), |v| format!("{}/s", fmt_rate(v))),
                &opt_ns(r.cpu_ns_per_msg()),
                &opt_ns(r.cpu_ns_per_rt_echoer),
                &ratio,
            ]));
        }
        s.push_str(METHOD);
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

/// How every latency row is measured: the footer of every table.
pub const METHOD: &str = "\
method: one-way = round trip / 2; p50, p99 and mean are over per-round-trip samples (clock read after \
every round trip) for every row;\n\
batch mean /N (busy rows only): median over a separate phase of batches of N round trips, clock read \
once per batch, never part of p50/p99;\n\
msg/s = 1 s / mean (two messages per round trip); throughput = msg/s x payload, payload rows only; \
CPU/msg = (CPU of both processes per round trip) / 2; (ingested) = from another run, no ratio.\n";

/// Bytes per second as `12.3 MiB` / `1.2 GiB` (binary units).
pub fn fmt_rate(bps: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bps;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
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
    /// `--ingest FILE`: add the JSON lines of FILE (another run) to the
    /// report, marked ingested (never in a ratio).
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
            batch_mean_ns: None,
            batch: None,
            cpu_ns_per_rt_measurer: None,
            cpu_ns_per_rt_echoer: Some(1.5),
            ingested: false,
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
        assert!(b.rows.iter().all(|r| r.ingested));
        for r in &mut b.rows {
            r.ingested = false;
        }
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
    fn ingested_rows_get_no_ratio_and_are_no_baseline() {
        let mut r = Report::new("t", Some("base"));
        r.rows.push(row("peer", 8, Mode::Header, 300.0));
        r.ingest(&row("base", 8, Mode::Header, 100.0).to_json())
            .unwrap();
        r.ingest(&row("other", 8, Mode::Header, 50.0).to_json())
            .unwrap();
        // The only baseline row is ingested: no ratio for anyone.
        assert_eq!(r.baseline_p50(&r.rows[0]), None);
        r.rows.push(row("base", 8, Mode::Header, 150.0));
        assert_eq!(r.baseline_p50(&r.rows[0]), Some(150.0));
        assert_eq!(r.baseline_p50(&r.rows[2]), None, "ingested row");
        let table = r.table();
        assert!(table.contains("base (ingested)"), "{table}");
        assert!(table.contains("other (ingested)"), "{table}");
        assert!(table.ends_with(METHOD), "{table}");
    }

    #[test]
    fn busy_plan_rounds_to_whole_batches_and_adds_a_batch_phase() {
        let p = Plan::busy(5, 1001, 100);
        assert_eq!(p.rounds, 1100);
        assert_eq!(p.timing, Timing::Batched(100));
        assert_eq!((p.batch_rounds(), p.timed(), p.total()), (1100, 2200, 2205));
        let q = Plan::from_args(&p.to_args());
        assert_eq!((q.warmup, q.rounds, q.total()), (5, 2200, 2205));
        let s = Plan::sleeping(5, 1001);
        assert_eq!((s.batch_rounds(), s.timed(), s.total()), (0, 1001, 1006));
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=101).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.50), 51.0);
        assert_eq!(percentile(&v, 0.99), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 1.0), 101.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }

    /// 100 round trips: 98 of 1000 ns, one of 10 000, one of 100 000. Per
    /// round trip, p99 sees the slow ones; a mean of 16 or 100 round trips
    /// would hide them (what a row measured another way would show).
    #[test]
    fn statistic_is_per_round_trip_and_keeps_batch_means_apart() {
        let mut rtt = vec![1000.0; 98];
        rtt.push(10_000.0);
        rtt.push(100_000.0);
        let wall: f64 = rtt.iter().sum();
        let t = statistic(rtt, wall, vec![1500.0, 1200.0, 9000.0], Some(100), 42.0);
        assert_eq!(t.p50_ns, 500.0);
        assert_eq!(t.p99_ns, 5000.0, "p99 of per-round-trip samples / 2");
        assert_eq!(t.mean_ns, wall / 100.0 / 2.0);
        assert_eq!(t.batch_mean_ns, Some(750.0), "median batch mean / 2");
        assert_eq!(t.batch, Some(100));
        assert_eq!(t.iterations, 100);
        // Batch means never reach p50/p99: a 16-round-trip mean of these
        // samples would put p99 nowhere near 5000 ns.
        let batched = statistic(vec![wall / 100.0; 100], wall, vec![], None, 0.0);
        assert_ne!(batched.p99_ns, t.p99_ns);
        assert_eq!((batched.batch_mean_ns, batched.batch), (None, None));
    }

    #[test]
    fn rates_come_from_the_mean_for_every_row() {
        let mut m = row("x", 1024, Mode::Payload, 100.0);
        m.mean_ns = 250.0;
        m.cpu_ns_per_rt_measurer = Some(600.0);
        m.cpu_ns_per_rt_echoer = Some(400.0);
        assert_eq!(m.msgs_per_s(), Some(4e6), "1 s / mean, not / p50");
        assert_eq!(m.bytes_per_s(), Some(4e6 * 1024.0));
        assert_eq!(m.cpu_ns_per_msg(), Some(500.0), "both processes / 2");
        m.cpu_ns_per_rt_echoer = None;
        assert_eq!(m.cpu_ns_per_msg(), None, "never one process doubled");
        m.mode = Mode::Header;
        assert_eq!(m.bytes_per_s(), None, "no throughput for untouched bytes");
    }

    #[test]
    fn measure_takes_one_sample_per_round_trip_then_batches() {
        let plan = Plan::busy(3, 200, 100);
        let mut seen = Vec::new();
        let t = measure(&plan, |i| seen.push(i));
        assert_eq!(seen, (0..403).collect::<Vec<u64>>());
        assert_eq!(t.iterations, 200);
        assert_eq!(t.batch, Some(100));
        assert!(t.batch_mean_ns.is_some());
        assert!(t.p50_ns <= t.p99_ns);
        let plan = Plan::sleeping(1, 10);
        let mut n = 0;
        let t = measure(&plan, |_| n += 1);
        assert_eq!((n, t.iterations, t.batch), (11, 10, None));
        assert_eq!(t.batch_mean_ns, None);
    }

    #[test]
    fn payload_work_is_one_fill_and_a_checked_sum() {
        let mut buf = vec![core::mem::MaybeUninit::<u8>::uninit(); 4096];
        fill_payload(&mut buf, fill_byte(3));
        // SAFETY: fill_payload wrote every byte.
        let bytes: Vec<u8> = buf.iter().map(|b| unsafe { b.assume_init() }).collect();
        check_payload(&bytes, 4);
        assert!(std::panic::catch_unwind(|| check_payload(&bytes, 5)).is_err());
        assert!((0..1000).all(|s| fill_byte(s) != 0));
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_bytes(8), "8 B");
        assert_eq!(fmt_bytes(64 << 10), "64 KiB");
        assert_eq!(fmt_bytes(1 << 20), "1 MiB");
        assert_eq!(fmt_ns(140.4), "140 ns");
        assert_eq!(fmt_ns(31_500.0), "31.5 us");
        assert_eq!(fmt_rate(1536.0), "1.5 KiB");
        assert_eq!(fmt_rate(3.0 * (1u64 << 30) as f64), "3.0 GiB");
    }
}
