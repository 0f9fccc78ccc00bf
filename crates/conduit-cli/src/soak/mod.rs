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
//!
//! # Code
//!
//! This file holds the options, the sample format and [`run`], the
//! sequence of steps; `worker.rs` the worker processes, `supervisor.rs`
//! starting, killing, stopping and reaping them, `findings.rs` what the
//! parent learns from their lines, `report.rs` the totals, the verdict
//! and the output. The random numbers come from [`crate::rng`].

mod findings;
mod report;
mod supervisor;
mod worker;

use std::hash::Hasher;
use std::time::Duration;

use clap::{Args, ValueEnum};
use conduit::prelude::*;
use conduit::shm::StableHasher;

use crate::common::{self, CmdResult, Failure, exit};

pub use worker::{WorkerArgs, worker};

use report::Report;
use supervisor::Supervisor;

/// The service every soak worker uses.
const SERVICE: &str = "soak/data";
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
    /// [`checksum`] over the four words above (little endian) and the
    /// payload.
    pub checksum: u64,
}

/// The checksum a sample with this stamp and payload must carry: the
/// library's [`StableHasher`] (FNV-1a and a final mix; the same in every
/// process) over the stamp's words and the payload.
pub fn checksum(stamp: &Stamp, payload: &[u8]) -> u64 {
    let mut hasher = StableHasher::new();
    for word in [
        stamp.publisher,
        stamp.incarnation,
        stamp.sequence,
        stamp.len,
    ] {
        hasher.write(&word.to_le_bytes());
    }
    hasher.write(payload);
    hasher.finish()
}

/// `conduit soak` arguments.
#[derive(Args)]
pub struct SoakArgs {
    /// Publisher processes.
    #[arg(long, default_value_t = 2, allow_negative_numbers = true, value_parser = crate::common::whole::<usize>)]
    pub publishers: usize,
    /// Subscriber processes.
    #[arg(long, default_value_t = 2, allow_negative_numbers = true, value_parser = crate::common::whole::<usize>)]
    pub subscribers: usize,
    /// How long to run ("500ms", "30s", "10m", "1h"; a bare number is
    /// seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub duration: Duration,
    /// Mean time between two SIGKILLs of a random worker (exponentially
    /// distributed); 0 = no kills.
    #[arg(long, default_value = "500ms", value_parser = parse_duration, allow_hyphen_values = true)]
    pub kill_interval: Duration,
    /// Seed of the kill schedule and the payloads (default: from the
    /// clock; always printed).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::common::whole::<u64>)]
    pub seed: Option<u64>,
    /// Longest payload in bytes (each sample's length varies in 1..=this).
    #[arg(long, default_value_t = 1024, allow_negative_numbers = true, value_parser = crate::common::whole::<usize>)]
    pub payload_size: usize,
    /// A worker that makes no progress (or does not stop) for this long
    /// is hung: the run fails.
    #[arg(long, default_value = "5s", value_parser = parse_duration, allow_hyphen_values = true)]
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

    /// The role whose slot 0, first incarnation, injects the fault.
    fn injected_by(self) -> Role {
        match self {
            Fault::Stall => Role::Sub,
            Fault::Corrupt | Fault::Duplicate | Fault::Gap => Role::Pub,
        }
    }
}

/// A worker's role (publishers sort first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
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

    /// The value of `soak-worker --role`.
    fn arg(self) -> &'static str {
        match self {
            Role::Pub => "pub",
            Role::Sub => "sub",
        }
    }
}

/// One incarnation of one worker slot; shown as
/// "publisher 1 (incarnation 2)".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct WorkerId {
    role: Role,
    slot: usize,
    incarnation: u64,
}

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} (incarnation {})",
            self.role.name(),
            self.slot,
            self.incarnation
        )
    }
}

/// Parses "250ms", "1.5s", "10m", "2h", "30" (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(format!("must be 0 or more, not {text}"));
    }
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

/// Runs `conduit soak`.
pub fn run(args: SoakArgs, domain: Option<String>) -> CmdResult {
    check_args(&args)?;
    // Before any thread starts, so that signalfd can be used (see
    // `conduit::signal`); workers get a clean mask (`Supervisor::spawn`).
    let mut interrupt = common::Interrupt::watch();
    let seed = args.seed.unwrap_or_else(seed_from_clock);
    let domain = match domain {
        Some(d) => common::domain(Some(d))?,
        None => format!("soak-{}-{}", std::process::id(), seed % 1_000_000),
    };
    let mut supervisor = Supervisor::new(&args, &domain, seed)?;
    if !args.json {
        let kills = if args.kill_interval.is_zero() {
            "no kills".to_owned()
        } else {
            format!("kill every ~{:?}", args.kill_interval)
        };
        println!(
            "conduit soak: {} publishers, {} subscribers, {:?}, {kills}, seed {seed}, payload 1..={} B, domain {domain}",
            args.publishers, args.subscribers, args.duration, args.payload_size
        );
    }
    // The parent keeps the service (and so its configuration) for the
    // whole run, whoever is killed.
    let node = common::node(&domain)?;
    let service = create_service(&node, &args)?;
    let result = supervisor.run(&mut interrupt);
    supervisor.reap();
    // Leave nothing behind: our own ports, then what killed workers left.
    drop(service);
    drop(node);
    let mut run = supervisor.finish();
    if let Err(e) = conduit::node::Node::cleanup(&domain) {
        run.findings
            .failures
            .push(Failure::from_error(exit::FAILURE, "node cleanup failed: ", &e).message);
    }
    let leftovers = leftover_objects(&domain);
    if let Err(f) = result {
        run.findings.failures.push(f.message);
    }
    let report = Report::new(&args, seed, &domain, run, leftovers);
    report.print();
    // Leftovers are removed so that a failed run does not pollute the
    // next one (they were counted above).
    remove_leftovers(&domain, &report.leftovers);
    report.verdict()
}

/// Rejects counts and sizes the service cannot have.
fn check_args(args: &SoakArgs) -> CmdResult {
    if args.publishers == 0 || args.subscribers == 0 {
        return Err(Failure::new(
            exit::USAGE,
            "--publishers and --subscribers must be at least 1",
        ));
    }
    let max = conduit::pubsub::MAX_PORTS;
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
    Ok(())
}

/// A seed below 10⁹ (easy to type back in) from the clock.
fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()) ^ d.as_secs().wrapping_mul(1_000_003))
        .unwrap_or(1)
        % 1_000_000_000
}

/// The service of the run: room for every worker, and overflow policy
/// `Block`, so no sample may be lost.
fn create_service(node: &Node, args: &SoakArgs) -> Result<PubSubService<[u8], Stamp>, Failure> {
    node.service(SERVICE)
        .publish_subscribe::<[u8]>()
        .user_header::<Stamp>()
        .max_publishers(args.publishers)
        .max_subscribers(args.subscribers)
        .subscriber_buffer(8)
        .overflow(Overflow::Block)
        .create()
        .map_err(common::service_failure)
}

/// The shared-memory objects of `domain` still in /dev/shm (after the
/// final cleanup there should be none), by their `/dev/shm` name.
fn leftover_objects(domain: &str) -> Vec<String> {
    conduit::Domain::new(domain)
        .map(|d| d.objects().unwrap_or_default())
        .unwrap_or_default()
        .iter()
        .map(conduit::DomainObject::file_name)
        .collect()
}

/// Removes what [`leftover_objects`] found (best effort).
fn remove_leftovers(domain: &str, names: &[String]) {
    let Ok(domain) = conduit::Domain::new(domain) else {
        return;
    };
    for object in domain.objects().unwrap_or_default() {
        if names.contains(&object.file_name()) {
            let _ = domain.remove_object(&object);
        }
    }
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
    fn worker_ids_read_as_in_the_output() {
        let id = WorkerId {
            role: Role::Sub,
            slot: 1,
            incarnation: 2,
        };
        assert_eq!(id.to_string(), "subscriber 1 (incarnation 2)");
    }
}
