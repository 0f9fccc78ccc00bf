//! `conduit soak`: N publishers and M subscribers in separate processes,
//! killed with SIGKILL at random (seeded) times and restarted, for a
//! configurable time; every sample is stamped and checked.
//!
//! # Roles
//!
//! The parent (`conduit soak`) creates the service `soak/data` (a `[u8]`
//! slice service with a [`Stamp`] user header, overflow policy
//! [`Overflow::Block`]) and keeps it open; it then re-runs its own
//! executable as workers (`conduit soak-worker --role pub|sub …`, a hidden
//! subcommand), one per publisher and subscriber slot. Each start of a slot
//! is an *incarnation* (0, 1, …).
//!
//! * A publisher stamps every sample with (slot, incarnation, sequence
//!   1, 2, …, length, FNV-1a checksum over the stamp and the payload
//!   bytes). A send that times out (a full queue, e.g. of a subscriber
//!   that was just killed) reached nobody: it is retried with the same
//!   sequence number.
//! * A subscriber checks every sample: the checksum and length (else
//!   *corrupt*), and, per (publisher slot, incarnation), that sequence
//!   numbers go up by exactly one (a repeat or reordering is a
//!   *duplicate*, a jump a *gap*, counted as *lost*).
//!
//! # Protocol between parent and workers
//!
//! Workers write lines to stdout: `ready` once their port exists,
//! `report k=v …` every 100 ms,
//! `violation kind=corrupt|duplicate|gap count=N …` at once when a check
//! fails (counted by the parent even if the worker is killed before its
//! next report),
//! `stream pub=P inc=I first=F last=L` and `final k=v …` when stopped.
//! The parent writes `stop` to a worker's stdin (publishers stop sending,
//! subscribers drain their queues) and closes stdin to make it exit; a
//! worker whose stdin closes unexpectedly (the parent died) exits too.
//!
//! # What counts as lost
//!
//! *Lost* is a sample that a subscriber should have received and did not:
//! a gap inside the sequence of one publisher incarnation as seen by one
//! subscriber incarnation, plus, after the graceful stop, the samples a
//! surviving publisher sent after the last one a surviving subscriber
//! received from it. Not lost: samples sent before a subscriber connected
//! (the service keeps no history), samples queued for a subscriber when it
//! was killed, and samples a killed publisher never sent. The overflow
//! policy `Block` never drops a sample, so no loss is allowed.
//!
//! The parent also fails the run for a *hang* (a worker that makes no
//! progress for `--stall-timeout`, or does not start, stop or exit in that
//! time), an unexpected worker exit, a final subscriber that got nothing
//! from a final publisher (*unconnected*; the last generation runs
//! together, without kills, before the stop), and anything of the domain
//! left in /dev/shm after the final node cleanup. Definitions and design:
//! `crates/conduit/tests/README.md` ("Soak").

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use conduit::prelude::*;
use conduit::pubsub::{LoanError, ReceiveError, SendError};
use serde_json::json;

use crate::common::{self, CmdResult, Failure, exit};

/// The service every soak worker uses.
const SERVICE: &str = "soak/data";
/// How often workers report their counters.
const REPORT_EVERY: Duration = Duration::from_millis(100);
/// A publisher's block timeout: short, so a full queue of a killed
/// subscriber costs little before the send is retried.
const BLOCK_TIMEOUT: Duration = Duration::from_millis(50);
/// At the end, all workers run together (without kills) this long after
/// the last one started, before they are stopped.
const SETTLE: Duration = Duration::from_millis(300);
/// A subscriber drains until nothing arrives for this long after `stop`.
const DRAIN_QUIET: Duration = Duration::from_millis(200);

/// The stamp in every sample's user header.
#[derive(ShmSafe, Clone, Copy, Default, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Stamp {
    /// Publisher slot (0..N).
    pub publisher: u64,
    /// The publisher slot's incarnation (0 for the first start).
    pub incarnation: u64,
    /// Sequence number within the incarnation: 1, 2, …
    pub sequence: u64,
    /// Payload length in bytes.
    pub len: u64,
    /// FNV-1a over the four words above (little endian) and the payload.
    pub checksum: u64,
}

/// `conduit soak` arguments.
#[derive(Args)]
pub struct SoakArgs {
    /// Publisher processes.
    #[arg(long, default_value_t = 2)]
    pub publishers: usize,
    /// Subscriber processes.
    #[arg(long, default_value_t = 2)]
    pub subscribers: usize,
    /// How long to run ("500ms", "30s", "10m", "1h"; a bare number is
    /// seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Mean time between two SIGKILLs of a random worker (exponentially
    /// distributed); 0 = no kills.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub kill_interval: Duration,
    /// Seed of the kill schedule and the payloads (default: from the
    /// clock; always printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Longest payload in bytes (each sample's length varies in 1..=this).
    #[arg(long, default_value_t = 1024)]
    pub payload_size: usize,
    /// A worker that makes no progress (or does not stop) for this long
    /// is hung: the run fails.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub stall_timeout: Duration,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Test only: make publisher 0 send one faulty sample (or subscriber 0
    /// stall), to prove that the checks catch it.
    #[arg(long, hide = true, value_enum)]
    pub inject_fault: Option<Fault>,
}

/// A fault a publisher can inject (test only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Fault {
    /// One sample whose payload does not match its checksum.
    Corrupt,
    /// One sample sent twice with the same sequence number.
    Duplicate,
    /// One sequence number skipped.
    Gap,
    /// Subscriber 0 stops taking samples until it is stopped (a hang).
    Stall,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Corrupt => "corrupt",
            Fault::Duplicate => "duplicate",
            Fault::Gap => "gap",
            Fault::Stall => "stall",
        }
    }
}

/// A worker's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Publisher.
    Pub,
    /// Subscriber.
    Sub,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Pub => "publisher",
            Role::Sub => "subscriber",
        }
    }
}

/// `conduit soak-worker` arguments (internal: started by `conduit soak`).
#[derive(Args)]
pub struct WorkerArgs {
    /// Publisher or subscriber.
    #[arg(long, value_enum)]
    pub role: Role,
    /// The slot (publisher or subscriber number).
    #[arg(long)]
    pub slot: u64,
    /// The slot's incarnation.
    #[arg(long)]
    pub incarnation: u64,
    /// Longest payload in bytes.
    #[arg(long)]
    pub payload_size: usize,
    /// Seed of the payload lengths.
    #[arg(long)]
    pub seed: u64,
    /// Number of subscribers (a publisher injects its fault once a send
    /// reached them all).
    #[arg(long, default_value_t = 0)]
    pub subscribers: usize,
    /// Test only: the fault to inject.
    #[arg(long, value_enum)]
    pub inject_fault: Option<Fault>,
}

/// Parses "250ms", "1.5s", "10m", "2h", "30" (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 30s, 10m, 1h)"))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("{text:?} is out of range"))
}

/// FNV-1a, 64 bits.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The checksum a sample with this stamp and payload must carry.
pub fn checksum(stamp: &Stamp, payload: &[u8]) -> u64 {
    let mut h = FNV_START;
    for w in [
        stamp.publisher,
        stamp.incarnation,
        stamp.sequence,
        stamp.len,
    ] {
        h = fnv1a(h, &w.to_le_bytes());
    }
    fnv1a(h, payload)
}

/// splitmix64: small, seedable, good enough for schedules and payloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponentially distributed with mean `mean`.
    fn exponential(&mut self, mean: Duration) -> Duration {
        let u = 1.0 - self.unit(); // (0, 1]
        mean.mul_f64((-u.ln()).min(20.0))
    }
}

// ---------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------

/// Watches a worker's stdin: `stop` sets `stop`; end of input (or `exit`)
/// sets both.
fn watch_stdin() -> (Arc<AtomicBool>, Arc<AtomicBool>) {
    let stop = Arc::new(AtomicBool::new(false));
    let quit = Arc::new(AtomicBool::new(false));
    let (s, q) = (stop.clone(), quit.clone());
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line.as_deref().map(str::trim) {
                Ok("stop") => s.store(true, Ordering::Release),
                Ok("exit") | Err(_) => break,
                Ok(_) => {}
            }
        }
        s.store(true, Ordering::Release);
        q.store(true, Ordering::Release);
    });
    (stop, quit)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The parent reads every line; if it is gone, so are we soon.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn wait_quit(quit: &AtomicBool) {
    while !quit.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `conduit soak-worker` (its stdout is read by `conduit soak`).
pub fn worker(args: WorkerArgs, domain: Option<String>) -> CmdResult {
    let domain = common::domain(domain)?;
    let node = Node::builder()
        .name(&format!(
            "soak-{}-{}.{}",
            args.role.name(),
            args.slot,
            args.incarnation
        ))
        .domain(&domain)
        .create()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot create a node: ", &e))?;
    let service = node
        .service(SERVICE)
        .publish_subscribe::<[u8]>()
        .user_header::<Stamp>()
        .open()
        .map_err(common::service_failure)?;
    match args.role {
        Role::Pub => publisher(&service, &args),
        Role::Sub => subscriber(&service, args.inject_fault == Some(Fault::Stall)),
    }
}

/// Fills `payload` deterministically from `seed`.
fn fill(payload: &mut [u8], seed: u64) {
    let mut rng = Rng(seed);
    for chunk in payload.chunks_mut(8) {
        let w = rng.next().to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

fn publisher(service: &PubSubService<[u8], Stamp>, args: &WorkerArgs) -> CmdResult {
    let max = args.payload_size.max(1);
    let publisher = service
        .publisher()
        .max_slice_len(max)
        .block_timeout(BLOCK_TIMEOUT)
        .create()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot create a publisher: ", &e))?;
    let (stop, quit) = watch_stdin();
    say("ready");
    let seed = args.seed ^ (args.slot << 48) ^ (args.incarnation << 32);
    let mut fault = args.inject_fault;
    let mut duplicate_next = false;
    let (mut sequence, mut sent, mut timeouts, mut out_of_chunks) = (0u64, 0u64, 0u64, 0u64);
    let mut all_reached = false;
    let mut last_report = Instant::now();
    let report = |kind: &str, sequence: u64, sent: u64, timeouts: u64, out_of_chunks: u64| {
        say(&format!(
            "{kind} sent={sent} seq={sequence} timeouts={timeouts} out_of_chunks={out_of_chunks}"
        ));
    };
    while !stop.load(Ordering::Acquire) {
        if last_report.elapsed() >= REPORT_EVERY {
            report("report", sequence, sent, timeouts, out_of_chunks);
            last_report = Instant::now();
        }
        // The next sequence number; a duplicate reuses the last one.
        let mut next = if duplicate_next {
            sequence
        } else {
            sequence + 1
        };
        let mut corrupt = false;
        let mut injected = None;
        if all_reached && let Some(f) = fault.take() {
            match f {
                Fault::Corrupt => corrupt = true,
                Fault::Duplicate => duplicate_next = true,
                Fault::Gap => next += 1,
                Fault::Stall => {}
            }
            injected = Some(f);
        }
        let mut rng = Rng(seed ^ next.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let len = 1 + (rng.next() % max as u64) as usize;
        let sample = match publisher.loan_slice_uninit(len) {
            Ok(s) => s,
            Err(LoanError::OutOfChunks) => {
                // Every chunk is held by subscribers (a killed one's are
                // reclaimed by the next loan's cleanup): try again.
                out_of_chunks += 1;
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(e) => return Err(Failure::from_error(exit::FAILURE, "loan failed: ", &e)),
        };
        let content = rng.next();
        let mut sample = sample.write_from_fn(|_| 0);
        fill(&mut sample, content);
        let mut stamp = Stamp {
            publisher: args.slot,
            incarnation: args.incarnation,
            sequence: next,
            len: len as u64,
            checksum: 0,
        };
        stamp.checksum = checksum(&stamp, &sample);
        if corrupt {
            sample[0] ^= 0x5a;
        }
        *sample.header_mut() = stamp;
        match sample.send() {
            Ok(reached) => {
                if next > sequence {
                    sequence = next;
                } else {
                    duplicate_next = false;
                }
                sent += 1;
                if reached >= args.subscribers {
                    all_reached = true;
                }
            }
            // Reached nobody: the same sequence number goes again.
            Err(SendError::Timeout(_)) => {
                timeouts += 1;
                // A corrupt sample or a skipped number that reached nobody
                // goes again (a pending duplicate stays pending by itself).
                if matches!(injected, Some(Fault::Corrupt | Fault::Gap)) {
                    fault = injected;
                }
            }
            Err(e) => return Err(Failure::from_error(exit::FAILURE, "send failed: ", &e)),
        }
    }
    report("final", sequence, sent, timeouts, out_of_chunks);
    wait_quit(&quit);
    Ok(())
}

/// What a subscriber knows of one publisher incarnation.
struct Stream {
    first: u64,
    last: u64,
}

#[derive(Default)]
struct SubCounters {
    received: u64,
    bytes: u64,
    lost: u64,
    duplicates: u64,
    corrupt: u64,
}

fn subscriber(service: &PubSubService<[u8], Stamp>, stall: bool) -> CmdResult {
    let subscriber = service
        .subscriber()
        .create()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot create a subscriber: ", &e))?;
    let (stop, quit) = watch_stdin();
    say("ready");
    let mut streams: BTreeMap<(u64, u64), Stream> = BTreeMap::new();
    let mut c = SubCounters::default();
    let mut last_report = Instant::now();
    let report = |kind: &str, c: &SubCounters, streams: usize| {
        say(&format!(
            "{kind} received={} bytes={} lost={} duplicates={} corrupt={} streams={streams}",
            c.received, c.bytes, c.lost, c.duplicates, c.corrupt
        ));
    };
    let mut quiet_since: Option<Instant> = None;
    loop {
        if last_report.elapsed() >= REPORT_EVERY {
            report("report", &c, streams.len());
            last_report = Instant::now();
        }
        let stopping = stop.load(Ordering::Acquire);
        if stopping && quiet_since.is_some_and(|t| t.elapsed() >= DRAIN_QUIET) {
            break;
        }
        if stall && !stopping {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let sample = match subscriber.receive_timeout(Duration::from_millis(20)) {
            Ok(s) => s,
            Err(ReceiveError::Timeout(_)) => {
                if stopping && quiet_since.is_none() {
                    quiet_since = Some(Instant::now());
                }
                continue;
            }
            Err(ReceiveError::Corrupted { publisher, reason }) => {
                c.corrupt += 1;
                say(&format!(
                    "violation kind=corrupt count=1 library reported corrupted state of publisher {publisher:016x}: {reason}"
                ));
                continue;
            }
            Err(e) => return Err(Failure::from_error(exit::FAILURE, "receive failed: ", &e)),
        };
        quiet_since = None;
        let stamp = *sample.header();
        c.received += 1;
        c.bytes += sample.len() as u64;
        let expected = checksum(&stamp, &sample);
        if stamp.len != sample.len() as u64 || stamp.checksum != expected {
            c.corrupt += 1;
            say(&format!(
                "violation kind=corrupt count=1 publisher {} incarnation {} sequence {}: length {} (stamp says {}), checksum {:016x} (stamp says {:016x})",
                stamp.publisher,
                stamp.incarnation,
                stamp.sequence,
                sample.len(),
                stamp.len,
                expected,
                stamp.checksum
            ));
            // If the stamp is the one expected next, only the payload is
            // bad: move the stream on so the sample is not also a gap.
            if let Some(s) = streams.get_mut(&(stamp.publisher, stamp.incarnation))
                && stamp.sequence == s.last + 1
            {
                s.last = stamp.sequence;
            }
            continue;
        }
        match streams.entry((stamp.publisher, stamp.incarnation)) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(Stream {
                    first: stamp.sequence,
                    last: stamp.sequence,
                });
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let s = o.get_mut();
                if stamp.sequence <= s.last {
                    c.duplicates += 1;
                    say(&format!(
                        "violation kind=duplicate count=1 publisher {} incarnation {} sequence {} after {}",
                        stamp.publisher, stamp.incarnation, stamp.sequence, s.last
                    ));
                } else {
                    if stamp.sequence > s.last + 1 {
                        let missing = stamp.sequence - s.last - 1;
                        c.lost += missing;
                        say(&format!(
                            "violation kind=gap count={missing} publisher {} incarnation {} sequences {}..={} missing",
                            stamp.publisher,
                            stamp.incarnation,
                            s.last + 1,
                            stamp.sequence - 1
                        ));
                    }
                    s.last = stamp.sequence;
                }
            }
        }
    }
    for ((p, i), s) in &streams {
        say(&format!(
            "stream pub={p} inc={i} first={} last={}",
            s.first, s.last
        ));
    }
    report("final", &c, streams.len());
    wait_quit(&quit);
    Ok(())
}

// ---------------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------------

/// A line from a worker (or its end of output).
struct Line {
    role: Role,
    slot: usize,
    incarnation: u64,
    text: Option<String>,
}

/// What the parent knows of one incarnation of a worker.
#[derive(Default)]
struct Record {
    /// The last `report` or `final` counters.
    counters: BTreeMap<String, u64>,
    /// `final` seen.
    finished: bool,
    /// (publisher, incarnation) → last sequence received (subscribers).
    streams: BTreeMap<(u64, u64), u64>,
    /// Said `ready` (its port exists).
    ready: bool,
    /// Violations announced, by kind (corrupt, duplicate, gap).
    violations: BTreeMap<String, u64>,
}

impl Record {
    fn get(&self, key: &str) -> u64 {
        self.counters.get(key).copied().unwrap_or(0)
    }

    /// A subscriber's count of `key`: its last report, or the violations
    /// it announced if more (it may have been killed before reporting).
    fn violations(&self, key: &str, kind: &str) -> u64 {
        self.get(key)
            .max(self.violations.get(kind).copied().unwrap_or(0))
    }
}

/// A running worker process.
struct Worker {
    role: Role,
    slot: usize,
    incarnation: u64,
    child: Child,
    stdin: Option<ChildStdin>,
    /// When the progress counter last went up (or the process started).
    progress_at: Instant,
    progress: u64,
    /// Exited by itself (a failure, reported once).
    exited: bool,
    /// Reported as hung (once per incarnation).
    hung: bool,
}

struct Soak<'a> {
    args: &'a SoakArgs,
    domain: String,
    seed: u64,
    exe: std::path::PathBuf,
    tx: mpsc::Sender<Line>,
    records: BTreeMap<(usize, usize, u64), Record>,
    violations: Vec<String>,
    hangs: Vec<String>,
    failures: Vec<String>,
}

fn role_index(role: Role) -> usize {
    match role {
        Role::Pub => 0,
        Role::Sub => 1,
    }
}

impl Soak<'_> {
    fn spawn(&mut self, role: Role, slot: usize, incarnation: u64) -> Result<Worker, Failure> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--domain")
            .arg(&self.domain)
            .arg("soak-worker")
            .arg("--role")
            .arg(match role {
                Role::Pub => "pub",
                Role::Sub => "sub",
            })
            .arg("--slot")
            .arg(slot.to_string())
            .arg("--incarnation")
            .arg(incarnation.to_string())
            .arg("--payload-size")
            .arg(self.args.payload_size.to_string())
            .arg("--seed")
            .arg(self.seed.to_string())
            .arg("--subscribers")
            .arg(self.args.subscribers.to_string());
        if let Some(f) = self.args.inject_fault
            && role
                == (if f == Fault::Stall {
                    Role::Sub
                } else {
                    Role::Pub
                })
            && slot == 0
            && incarnation == 0
        {
            cmd.arg("--inject-fault").arg(f.name());
        }
        // Own process group: Ctrl-C in the terminal reaches the parent only,
        // which then stops the workers gracefully.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        conduit::signal::reset_signal_mask(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Failure::from_error(exit::FAILURE, "cannot start a worker: ", &e))?;
        let stdout = child.stdout.take().expect("piped");
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(text) = line else { break };
                let msg = Line {
                    role,
                    slot,
                    incarnation,
                    text: Some(text),
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
            let _ = tx.send(Line {
                role,
                slot,
                incarnation,
                text: None,
            });
        });
        self.records
            .insert((role_index(role), slot, incarnation), Record::default());
        Ok(Worker {
            role,
            slot,
            incarnation,
            stdin: child.stdin.take(),
            child,
            progress_at: Instant::now(),
            progress: 0,
            exited: false,
            hung: false,
        })
    }

    /// Takes in one line of a worker.
    fn absorb(&mut self, line: Line) {
        let Some(text) = line.text else { return };
        let who = format!(
            "{} {} (incarnation {})",
            line.role.name(),
            line.slot,
            line.incarnation
        );
        let Some(record) =
            self.records
                .get_mut(&(role_index(line.role), line.slot, line.incarnation))
        else {
            return;
        };
        let (kind, rest) = text.split_once(' ').unwrap_or((&text, ""));
        let pairs = || {
            rest.split_whitespace().filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.parse::<u64>().ok()?))
            })
        };
        match kind {
            "report" | "final" => {
                record.counters = pairs().collect();
                if kind == "final" {
                    record.finished = true;
                }
            }
            "ready" => record.ready = true,
            "stream" => {
                let m: BTreeMap<String, u64> = pairs().collect();
                if let (Some(p), Some(i), Some(last)) = (m.get("pub"), m.get("inc"), m.get("last"))
                {
                    record.streams.insert((*p, *i), *last);
                }
            }
            "violation" => {
                // kind=K count=N text
                let mut parts = rest.splitn(3, ' ');
                let kind = parts
                    .next()
                    .and_then(|k| k.strip_prefix("kind="))
                    .unwrap_or("unknown")
                    .to_owned();
                let count = parts
                    .next()
                    .and_then(|c| c.strip_prefix("count="))
                    .and_then(|c| c.parse::<u64>().ok())
                    .unwrap_or(1);
                let text = parts.next().unwrap_or("");
                *record.violations.entry(kind.clone()).or_default() += count;
                self.violations.push(format!("{who}: {kind} {text}"));
            }
            _ => {}
        }
    }

    fn progress_of(&self, w: &Worker) -> u64 {
        let r = &self.records[&(role_index(w.role), w.slot, w.incarnation)];
        match w.role {
            Role::Pub => r.get("sent"),
            Role::Sub => r.get("received"),
        }
    }

    /// Hang check: every worker must make progress within the stall
    /// timeout (subscribers: receive something; publishers: send).
    fn watch(&mut self, workers: &mut [Worker]) {
        let now = Instant::now();
        for w in workers.iter_mut().filter(|w| !w.exited && !w.hung) {
            let p = self.progress_of(w);
            if p > w.progress {
                w.progress = p;
                w.progress_at = now;
            } else if now - w.progress_at > self.args.stall_timeout {
                self.hangs.push(format!(
                    "{} {} (incarnation {}) made no progress for {:?}",
                    w.role.name(),
                    w.slot,
                    w.incarnation,
                    self.args.stall_timeout
                ));
                w.hung = true;
            }
        }
    }

    /// An exit we did not cause is a failure.
    fn check_alive(&mut self, workers: &mut [Worker]) {
        for w in workers.iter_mut().filter(|w| !w.exited) {
            if let Ok(Some(status)) = w.child.try_wait() {
                w.exited = true;
                self.failures.push(format!(
                    "{} {} (incarnation {}) exited by itself: {status}",
                    w.role.name(),
                    w.slot,
                    w.incarnation
                ));
            }
        }
    }

    /// Waits until every worker said `ready` (bounded by the stall
    /// timeout), then lets them run together for [`SETTLE`].
    fn settle(&mut self, workers: &mut [Worker], rx: &mpsc::Receiver<Line>) {
        self.wait_ready(workers, rx);
        let until = Instant::now() + SETTLE;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if let Ok(line) = rx.recv_timeout(left) {
                self.absorb(line);
            }
        }
        self.watch(workers);
    }

    /// Waits until every worker said `ready`; one that does not within
    /// the stall timeout is a hang.
    fn wait_ready(&mut self, workers: &mut [Worker], rx: &mpsc::Receiver<Line>) {
        let deadline = Instant::now() + self.args.stall_timeout;
        loop {
            let waiting: Vec<&Worker> = workers
                .iter()
                .filter(|w| !w.exited)
                .filter(|w| !self.records[&(role_index(w.role), w.slot, w.incarnation)].ready)
                .collect();
            if waiting.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let late: Vec<String> = waiting
                    .iter()
                    .map(|w| {
                        format!(
                            "{} {} (incarnation {}) did not start within {:?}",
                            w.role.name(),
                            w.slot,
                            w.incarnation,
                            self.args.stall_timeout
                        )
                    })
                    .collect();
                self.hangs.extend(late);
                for w in workers.iter_mut() {
                    w.hung |= !self.records[&(role_index(w.role), w.slot, w.incarnation)].ready;
                }
                break;
            }
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(20)) {
                self.absorb(line);
            }
        }
    }

    /// Sends `stop` to the workers of `role` and waits (taking in their
    /// lines) until each said `final`.
    fn stop_role(&mut self, role: Role, workers: &mut [Worker], rx: &mpsc::Receiver<Line>) {
        for w in workers.iter_mut().filter(|w| w.role == role) {
            if let Some(stdin) = w.stdin.as_mut() {
                let _ = writeln!(stdin, "stop");
                let _ = stdin.flush();
            }
        }
        let deadline = Instant::now() + self.args.stall_timeout + DRAIN_QUIET;
        loop {
            let pending: Vec<_> = workers
                .iter_mut()
                .filter(|w| w.role == role)
                .filter(|w| !self.records[&(role_index(w.role), w.slot, w.incarnation)].finished)
                .filter_map(|w| (!matches!(w.child.try_wait(), Ok(Some(_)))).then_some(w))
                .map(|w| (w.slot, w.incarnation))
                .collect();
            if pending.is_empty() {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                for (slot, incarnation) in pending {
                    self.hangs.push(format!(
                        "{} {slot} (incarnation {incarnation}) did not stop within {:?}",
                        role.name(),
                        self.args.stall_timeout
                    ));
                }
                return;
            }
            if let Ok(line) = rx.recv_timeout((deadline - now).min(Duration::from_millis(50))) {
                self.absorb(line);
            }
        }
    }
}

/// Totals over every incarnation.
struct Totals {
    moved: u64,
    bytes: u64,
    sent: u64,
    send_timeouts: u64,
    lost_gaps: u64,
    lost_tail: u64,
    duplicates: u64,
    corrupt: u64,
    /// Final (publisher, subscriber) pairs where the subscriber got
    /// nothing from the publisher.
    unconnected: Vec<String>,
}

/// Runs `conduit soak`.
pub fn run(args: SoakArgs, domain: Option<String>) -> CmdResult {
    if args.publishers == 0 || args.subscribers == 0 {
        return Err(Failure::new(
            exit::USAGE,
            "--publishers and --subscribers must be at least 1",
        ));
    }
    let max = conduit::service::MAX_PORTS;
    if args.publishers > max || args.subscribers > max {
        return Err(Failure::new(
            exit::USAGE,
            format!("at most {max} publishers and {max} subscribers"),
        ));
    }
    if args.payload_size == 0 || args.payload_size > 1 << 24 {
        return Err(Failure::new(
            exit::USAGE,
            "--payload-size must be in 1..=16777216",
        ));
    }
    // Before any thread starts, so that signalfd can be used (see
    // `conduit::signal`); workers get a clean mask (`spawn`).
    let mut interrupt = common::Interrupt::watch();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()) ^ d.as_secs().wrapping_mul(1_000_003))
            .unwrap_or(1)
            % 1_000_000_000
    });
    let domain = match domain {
        Some(d) => common::domain(Some(d))?,
        None => format!("soak-{}-{}", std::process::id(), seed % 1_000_000),
    };
    let exe = std::env::current_exe()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot find this executable: ", &e))?;
    if !args.json {
        println!(
            "conduit soak: {} publishers, {} subscribers, {:?}, kill every ~{:?}, seed {seed}, payload 1..={} B, domain {domain}",
            args.publishers, args.subscribers, args.duration, args.kill_interval, args.payload_size
        );
    }
    let (tx, rx) = mpsc::channel();
    let mut soak = Soak {
        args: &args,
        domain: domain.clone(),
        seed,
        exe,
        tx,
        records: BTreeMap::new(),
        violations: Vec::new(),
        hangs: Vec::new(),
        failures: Vec::new(),
    };
    // The parent keeps the service (and so its configuration) for the
    // whole run, whoever is killed.
    let node = common::node(&domain)?;
    let service = node
        .service(SERVICE)
        .publish_subscribe::<[u8]>()
        .user_header::<Stamp>()
        .max_publishers(args.publishers)
        .max_subscribers(args.subscribers)
        .subscriber_buffer(8)
        .overflow(Overflow::Block)
        .create()
        .map_err(common::service_failure)?;

    let mut workers = Vec::new();
    let mut kills = [0u64; 2];
    let mut ran = Duration::ZERO;
    let mut interrupted = false;
    let result = (|| -> Result<(), Failure> {
        for slot in 0..args.subscribers {
            workers.push(soak.spawn(Role::Sub, slot, 0)?);
        }
        for slot in 0..args.publishers {
            workers.push(soak.spawn(Role::Pub, slot, 0)?);
        }
        // The duration counts from when every worker is up.
        soak.wait_ready(&mut workers, &rx);
        let mut rng = Rng(seed);
        let start = Instant::now();
        let end = start + args.duration;
        let mut next_kill =
            (!args.kill_interval.is_zero()).then(|| start + rng.exponential(args.kill_interval));
        let mut next_watch = start + Duration::from_millis(50);
        loop {
            let now = Instant::now();
            ran = now - start;
            if now >= end {
                break;
            }
            if interrupt.happened() {
                interrupted = true;
                break;
            }
            if now >= next_watch {
                soak.check_alive(&mut workers);
                soak.watch(&mut workers);
                next_watch = now + Duration::from_millis(50);
            }
            if let Some(t) = next_kill
                && now >= t
            {
                let victim = (rng.next() % workers.len() as u64) as usize;
                let w = &mut workers[victim];
                // SIGKILL, then reap: the slot restarts as a new incarnation.
                let _ = w.child.kill();
                let _ = w.child.wait();
                let (role, slot, incarnation) = (w.role, w.slot, w.incarnation);
                kills[role_index(role)] += 1;
                workers[victim] = soak.spawn(role, slot, incarnation + 1)?;
                next_kill = Some(Instant::now() + rng.exponential(args.kill_interval));
            }
            let wait = [Some(end), Some(next_watch), next_kill]
                .into_iter()
                .flatten()
                .min()
                .expect("end")
                .saturating_duration_since(Instant::now());
            if let Ok(line) = rx.recv_timeout(wait) {
                soak.absorb(line);
                while let Ok(line) = rx.try_recv() {
                    soak.absorb(line);
                }
            }
        }
        // Settle: every worker of the last generation is up, and all of
        // them run together for a while, so that each final subscriber
        // must be connected to each final publisher.
        soak.settle(&mut workers, &rx);
        // Graceful end: publishers stop first, then subscribers drain
        // everything that was sent, then everyone exits.
        soak.check_alive(&mut workers);
        soak.stop_role(Role::Pub, &mut workers, &rx);
        soak.stop_role(Role::Sub, &mut workers, &rx);
        Ok(())
    })();
    // Close every stdin (= exit) and reap, bounded by the stall timeout.
    for w in &mut workers {
        w.stdin = None;
    }
    let deadline = Instant::now() + args.stall_timeout;
    for w in &mut workers {
        loop {
            match w.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        soak.failures.push(format!(
                            "{} {} (incarnation {}) ended with {status}",
                            w.role.name(),
                            w.slot,
                            w.incarnation
                        ));
                    }
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => {
                    soak.hangs.push(format!(
                        "{} {} (incarnation {}) did not exit; killed",
                        w.role.name(),
                        w.slot,
                        w.incarnation
                    ));
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                    break;
                }
            }
        }
    }
    while let Ok(line) = rx.try_recv() {
        soak.absorb(line);
    }
    // Leave nothing behind: our own ports, then what killed workers left.
    drop(service);
    drop(node);
    if let Err(e) = conduit::node::Node::cleanup(&domain) {
        soak.failures
            .push(Failure::from_error(exit::FAILURE, "node cleanup failed: ", &e).message);
    }
    let leftovers =
        conduit::sys::shm::list(&format!("conduit.{domain}.")).unwrap_or_else(|_| Vec::new());
    if let Err(f) = result.as_ref() {
        soak.failures.push(f.message.clone());
    }

    let totals = totals(&soak, &workers);
    let restarts = kills[0] + kills[1];
    let lost = totals.lost_gaps + totals.lost_tail;
    let mut problems = Vec::new();
    if totals.corrupt > 0 {
        problems.push(format!("{} corrupt sample(s)", totals.corrupt));
    }
    if totals.duplicates > 0 {
        problems.push(format!("{} duplicate(s)", totals.duplicates));
    }
    if lost > 0 {
        problems.push(format!("{lost} lost sample(s) (0 allowed)"));
    }
    if !leftovers.is_empty() {
        problems.push(format!("{} leftover(s) in /dev/shm", leftovers.len()));
    }
    if !totals.unconnected.is_empty() {
        problems.push(format!(
            "{} unconnected publisher/subscriber pair(s)",
            totals.unconnected.len()
        ));
    }
    if !soak.hangs.is_empty() {
        problems.push(format!("{} hang(s)", soak.hangs.len()));
    }
    if !soak.failures.is_empty() {
        problems.push(format!("{} worker failure(s)", soak.failures.len()));
    }
    if totals.moved == 0 {
        problems.push("no sample moved".to_owned());
    }
    let passed = problems.is_empty();
    if args.json {
        common::print_json(&json!({
            "seed": seed,
            "domain": domain,
            "publishers": args.publishers,
            "subscribers": args.subscribers,
            "duration_s": args.duration.as_secs_f64(),
            "ran_s": ran.as_secs_f64(),
            "interrupted": interrupted,
            "kill_interval_s": args.kill_interval.as_secs_f64(),
            "payload_size": args.payload_size,
            "moved": totals.moved,
            "bytes": totals.bytes,
            "sent": totals.sent,
            "send_timeouts": totals.send_timeouts,
            "kills": { "total": restarts, "publishers": kills[0], "subscribers": kills[1] },
            "restarts": restarts,
            "corrupt": totals.corrupt,
            "duplicates": totals.duplicates,
            "lost": lost,
            "lost_gaps": totals.lost_gaps,
            "lost_tail": totals.lost_tail,
            "lost_allowed": 0,
            "leftovers": leftovers,
            "hangs": soak.hangs,
            "unconnected": totals.unconnected,
            "failures": soak.failures,
            "violations": soak.violations,
            "passed": passed,
        }));
    } else {
        for v in soak.violations.iter().take(20) {
            println!("violation: {v}");
        }
        if soak.violations.len() > 20 {
            println!("… {} more violations", soak.violations.len() - 20);
        }
        for h in &soak.hangs {
            println!("hang: {h}");
        }
        for d in &totals.unconnected {
            println!("unconnected: {d}");
        }
        for f in &soak.failures {
            println!("failure: {f}");
        }
        if interrupted {
            println!("interrupted after {ran:.1?}: stopped early, checked what ran");
        }
        let secs = ran.as_secs_f64().max(1e-9);
        let rows = vec![
            vec![
                "moved".into(),
                totals.moved.to_string(),
                format!(
                    "samples received and verified ({}, {:.0}/s); {} sent by publishers",
                    common::bytes(totals.bytes as f64),
                    totals.moved as f64 / secs,
                    totals.sent
                ),
            ],
            vec![
                "kills".into(),
                restarts.to_string(),
                format!(
                    "SIGKILLs survived: {} publisher(s), {} subscriber(s); {restarts} restarts",
                    kills[0], kills[1]
                ),
            ],
            vec![
                "corrupt".into(),
                totals.corrupt.to_string(),
                "samples whose checksum or length did not match their stamp".into(),
            ],
            vec![
                "duplicates".into(),
                totals.duplicates.to_string(),
                "samples not newer than the last one seen from the same publisher incarnation"
                    .into(),
            ],
            vec![
                "lost".into(),
                lost.to_string(),
                format!(
                    "{} in gaps + {} at the end (allowed: 0; overflow policy Block drops nothing)",
                    totals.lost_gaps, totals.lost_tail
                ),
            ],
            vec![
                "retries".into(),
                totals.send_timeouts.to_string(),
                "sends that timed out on a full queue and were retried (not a loss)".into(),
            ],
            vec![
                "leftovers".into(),
                leftovers.len().to_string(),
                if leftovers.is_empty() {
                    "objects of the domain in /dev/shm after cleanup".to_owned()
                } else {
                    leftovers.join(" ")
                },
            ],
            vec![
                "unconnected".into(),
                totals.unconnected.len().to_string(),
                "final publisher/subscriber pairs with nothing delivered".into(),
            ],
            vec![
                "hangs".into(),
                soak.hangs.len().to_string(),
                format!("workers without progress for {:?}", args.stall_timeout),
            ],
            vec![
                "seed".into(),
                seed.to_string(),
                "rerun with --seed to repeat the kill schedule".into(),
            ],
        ];
        common::print_table(&["what", "count", "meaning"], &rows);
        println!(
            "{}",
            if passed {
                common::paint("PASS", common::Style::Good)
            } else {
                common::paint("FAIL", common::Style::Bad)
            }
        );
    }
    // Leftovers are removed so that a failed run does not pollute the
    // next one (they were counted above).
    for name in &leftovers {
        let _ = conduit::sys::shm::unlink(name);
    }
    if passed {
        Ok(())
    } else {
        Err(Failure::new(
            exit::FAILURE,
            format!("soak failed: {}", problems.join(", ")),
        ))
    }
}

fn totals(soak: &Soak<'_>, workers: &[Worker]) -> Totals {
    let mut t = Totals {
        moved: 0,
        bytes: 0,
        sent: 0,
        send_timeouts: 0,
        lost_gaps: 0,
        lost_tail: 0,
        duplicates: 0,
        corrupt: 0,
        unconnected: Vec::new(),
    };
    for ((role, _, _), r) in &soak.records {
        if *role == role_index(Role::Pub) {
            t.sent += r.get("sent");
            t.send_timeouts += r.get("timeouts");
        } else {
            t.moved += r.get("received");
            t.bytes += r.get("bytes");
            t.lost_gaps += r.violations("lost", "gap");
            t.duplicates += r.violations("duplicates", "duplicate");
            t.corrupt += r.violations("corrupt", "corrupt");
        }
    }
    // Tail loss: what the final publishers sent after the last sample the
    // final subscribers received from them (only where they were
    // connected: a subscriber started after a publisher's last send never
    // saw it).
    let finals = |role: Role| {
        workers
            .iter()
            .filter(move |w| w.role == role)
            .filter_map(move |w| {
                soak.records
                    .get(&(role_index(role), w.slot, w.incarnation))
                    .map(|r| (w, r))
            })
            .filter(|(_, r)| r.finished)
    };
    for w in workers.iter().filter(|w| w.role == Role::Pub) {
        let Some(p) = soak
            .records
            .get(&(role_index(Role::Pub), w.slot, w.incarnation))
        else {
            continue;
        };
        if !p.finished {
            continue;
        }
        let last_sent = p.get("seq");
        for (sub, s) in finals(Role::Sub) {
            match s.streams.get(&(w.slot as u64, w.incarnation)) {
                Some(last) => t.lost_tail += last_sent.saturating_sub(*last),
                None if last_sent > 0 => t.unconnected.push(format!(
                    "subscriber {} (incarnation {}) got nothing from publisher {} (incarnation {}), which sent {last_sent}",
                    sub.slot, sub.incarnation, w.slot, w.incarnation
                )),
                None => {}
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn checksum_covers_stamp_and_payload() {
        let stamp = Stamp {
            publisher: 1,
            incarnation: 2,
            sequence: 3,
            len: 4,
            checksum: 0,
        };
        let sum = checksum(&stamp, b"abcd");
        assert_ne!(sum, checksum(&stamp, b"abce"));
        assert_ne!(
            sum,
            checksum(
                &Stamp {
                    sequence: 4,
                    ..stamp
                },
                b"abcd"
            )
        );
    }

    #[test]
    fn announced_violations_count_without_a_report() {
        let mut r = Record::default();
        r.violations.insert("corrupt".into(), 3);
        r.counters.insert("corrupt".into(), 1);
        assert_eq!(r.violations("corrupt", "corrupt"), 3);
        r.counters.insert("corrupt".into(), 5);
        assert_eq!(r.violations("corrupt", "corrupt"), 5);
    }
}
