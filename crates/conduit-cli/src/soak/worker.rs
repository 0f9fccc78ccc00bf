//! `conduit soak-worker`: one publisher or subscriber process of a soak
//! run. It talks to the parent through lines on stdout and stdin (see
//! the protocol in the module docs of `soak`).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use conduit::prelude::*;
use conduit::pubsub::{LoanError, ReceiveError, SendError};

use super::{DRAIN_QUIET, Fault, Role, SERVICE, Stamp, checksum};
use crate::common::{self, CmdResult, Failure, exit};
use crate::rng::{self, Rng};

/// How often workers report their counters.
const REPORT_EVERY: Duration = Duration::from_millis(100);
/// A publisher's block timeout: short, so a full queue of a killed
/// subscriber costs little before the send is retried.
const BLOCK_TIMEOUT: Duration = Duration::from_millis(50);

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
        Role::Pub => publish(&service, &args),
        Role::Sub => subscribe(&service, args.inject_fault == Some(Fault::Stall)),
    }
}

// ---------------------------------------------------------------------------
// Talking to the parent
// ---------------------------------------------------------------------------

/// What the parent said on stdin: `stop` sets `stop`; end of input (or
/// `exit`) sets both.
struct Orders {
    stop: Arc<AtomicBool>,
    quit: Arc<AtomicBool>,
}

impl Orders {
    /// Starts the thread that reads stdin.
    fn watch_stdin() -> Orders {
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
        Orders { stop, quit }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Blocks until stdin closes (the parent reaps us then).
    fn wait_quit(&self) {
        while !self.quit.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One line to the parent.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The parent reads every line; if it is gone, so are we soon.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

// ---------------------------------------------------------------------------
// Publisher
// ---------------------------------------------------------------------------

/// A publishing worker: its port, where its sequence stands, the fault it
/// still has to inject, and its counters.
struct Sender<'a> {
    publisher: Publisher<[u8], Stamp>,
    args: &'a WorkerArgs,
    /// Seed of this incarnation's payloads.
    seed: u64,
    /// The fault still to inject (once a send reached every subscriber).
    fault: Option<Fault>,
    /// The next send repeats the last sequence number (fault `duplicate`).
    duplicate_next: bool,
    all_reached: bool,
    /// The last sequence number sent.
    sequence: u64,
    sent: u64,
    timeouts: u64,
    out_of_chunks: u64,
}

/// The next sample's sequence number, and what is wrong with it.
struct Plan {
    sequence: u64,
    injected: Option<Fault>,
    corrupt: bool,
}

fn publish(service: &PubSubService<[u8], Stamp>, args: &WorkerArgs) -> CmdResult {
    let publisher = service
        .publisher()
        .max_slice_len(args.payload_size.max(1))
        .block_timeout(BLOCK_TIMEOUT)
        .create()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot create a publisher: ", &e))?;
    let orders = Orders::watch_stdin();
    say("ready");
    let mut sender = Sender {
        publisher,
        args,
        seed: args.seed ^ (args.slot << 48) ^ (args.incarnation << 32),
        fault: args.inject_fault,
        duplicate_next: false,
        all_reached: false,
        sequence: 0,
        sent: 0,
        timeouts: 0,
        out_of_chunks: 0,
    };
    let mut last_report = Instant::now();
    while !orders.stopped() {
        if last_report.elapsed() >= REPORT_EVERY {
            sender.report("report");
            last_report = Instant::now();
        }
        sender.send_next()?;
    }
    sender.report("final");
    orders.wait_quit();
    Ok(())
}

impl Sender<'_> {
    fn report(&self, kind: &str) {
        say(&format!(
            "{kind} sent={} seq={} timeouts={} out_of_chunks={}",
            self.sent, self.sequence, self.timeouts, self.out_of_chunks
        ));
    }

    /// The next sequence number (a duplicate reuses the last one), with
    /// the fault injected into it, if any is due.
    fn plan(&mut self) -> Plan {
        let mut plan = Plan {
            sequence: if self.duplicate_next {
                self.sequence
            } else {
                self.sequence + 1
            },
            injected: None,
            corrupt: false,
        };
        if self.all_reached
            && let Some(f) = self.fault.take()
        {
            match f {
                Fault::Corrupt => plan.corrupt = true,
                Fault::Duplicate => self.duplicate_next = true,
                Fault::Gap => plan.sequence += 1,
                Fault::Stall => {}
            }
            plan.injected = Some(f);
        }
        plan
    }

    /// Loans, fills, stamps and sends one sample (or counts why not).
    fn send_next(&mut self) -> CmdResult {
        let plan = self.plan();
        let mut rng = Rng::new(self.seed ^ plan.sequence.wrapping_mul(rng::GAMMA));
        let len = 1 + rng.below(self.args.payload_size.max(1));
        let sample = match self.publisher.loan_slice_uninit(len) {
            Ok(s) => s,
            Err(LoanError::OutOfChunks) => {
                // Every chunk is held by subscribers (a killed one's are
                // reclaimed by the next loan's cleanup): try again.
                self.out_of_chunks += 1;
                std::thread::sleep(Duration::from_millis(1));
                return Ok(());
            }
            Err(e) => return Err(Failure::from_error(exit::FAILURE, "loan failed: ", &e)),
        };
        let mut sample = sample.write_from_fn(|_| 0);
        Rng::new(rng.next_u64()).fill(&mut sample);
        let mut stamp = Stamp {
            publisher: self.args.slot,
            incarnation: self.args.incarnation,
            sequence: plan.sequence,
            len: len as u64,
            checksum: 0,
        };
        stamp.checksum = checksum(&stamp, &sample);
        if plan.corrupt {
            sample[0] ^= 0x5a;
        }
        *sample.header_mut() = stamp;
        match sample.send() {
            Ok(reached) => self.sent_to(reached, &plan),
            // Reached nobody: the same sequence number goes again.
            Err(SendError::Timeout(_)) => {
                self.timeouts += 1;
                // A corrupt sample or a skipped number that reached nobody
                // goes again (a pending duplicate stays pending by itself).
                if matches!(plan.injected, Some(Fault::Corrupt | Fault::Gap)) {
                    self.fault = plan.injected;
                }
            }
            Err(e) => return Err(Failure::from_error(exit::FAILURE, "send failed: ", &e)),
        }
        Ok(())
    }

    /// A send reached `reached` subscribers.
    fn sent_to(&mut self, reached: usize, plan: &Plan) {
        if plan.sequence > self.sequence {
            self.sequence = plan.sequence;
        } else {
            self.duplicate_next = false;
        }
        self.sent += 1;
        if reached >= self.args.subscribers {
            self.all_reached = true;
        }
    }
}

// ---------------------------------------------------------------------------
// Subscriber
// ---------------------------------------------------------------------------

/// What a subscriber knows of one publisher incarnation.
struct Stream {
    first: u64,
    last: u64,
}

/// A subscribing worker's checks: the streams it follows and its counters.
#[derive(Default)]
struct Checker {
    /// (publisher, incarnation) → stream.
    streams: BTreeMap<(u64, u64), Stream>,
    received: u64,
    bytes: u64,
    lost: u64,
    duplicates: u64,
    corrupt: u64,
}

fn subscribe(service: &PubSubService<[u8], Stamp>, stall: bool) -> CmdResult {
    let subscriber = service
        .subscriber()
        .create()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot create a subscriber: ", &e))?;
    let orders = Orders::watch_stdin();
    say("ready");
    let mut checker = Checker::default();
    let mut last_report = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    loop {
        if last_report.elapsed() >= REPORT_EVERY {
            checker.report("report");
            last_report = Instant::now();
        }
        let stopping = orders.stopped();
        if stopping && quiet_since.is_some_and(|t| t.elapsed() >= DRAIN_QUIET) {
            break;
        }
        if stall && !stopping {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        match subscriber.receive_timeout(Duration::from_millis(20)) {
            Ok(sample) => {
                quiet_since = None;
                checker.check(*sample.header(), &sample);
            }
            Err(ReceiveError::Timeout(_)) => {
                if stopping && quiet_since.is_none() {
                    quiet_since = Some(Instant::now());
                }
            }
            Err(ReceiveError::Corrupted { publisher, reason }) => {
                checker.corrupt += 1;
                say(&format!(
                    "violation kind=corrupt count=1 library reported corrupted state of publisher {publisher:016x}: {reason}"
                ));
            }
            Err(e) => return Err(Failure::from_error(exit::FAILURE, "receive failed: ", &e)),
        }
    }
    checker.finish();
    orders.wait_quit();
    Ok(())
}

impl Checker {
    fn report(&self, kind: &str) {
        say(&format!(
            "{kind} received={} bytes={} lost={} duplicates={} corrupt={} streams={}",
            self.received,
            self.bytes,
            self.lost,
            self.duplicates,
            self.corrupt,
            self.streams.len()
        ));
    }

    /// Checks one sample: its checksum and length, then its place in its
    /// stream.
    fn check(&mut self, stamp: Stamp, payload: &[u8]) {
        self.received += 1;
        self.bytes += payload.len() as u64;
        let expected = checksum(&stamp, payload);
        if stamp.len != payload.len() as u64 || stamp.checksum != expected {
            self.corrupt += 1;
            say(&format!(
                "violation kind=corrupt count=1 publisher {} incarnation {} sequence {}: length {} (stamp says {}), checksum {:016x} (stamp says {:016x})",
                stamp.publisher,
                stamp.incarnation,
                stamp.sequence,
                payload.len(),
                stamp.len,
                expected,
                stamp.checksum
            ));
            // If the stamp is the one expected next, only the payload is
            // bad: move the stream on so the sample is not also a gap.
            if let Some(s) = self.streams.get_mut(&(stamp.publisher, stamp.incarnation))
                && stamp.sequence == s.last + 1
            {
                s.last = stamp.sequence;
            }
            return;
        }
        self.follow(stamp);
    }

    /// Sequence numbers of one publisher incarnation must go up by one: a
    /// repeat or reordering is a duplicate, a jump a gap.
    fn follow(&mut self, stamp: Stamp) {
        let s = match self.streams.entry((stamp.publisher, stamp.incarnation)) {
            Entry::Vacant(v) => {
                v.insert(Stream {
                    first: stamp.sequence,
                    last: stamp.sequence,
                });
                return;
            }
            Entry::Occupied(o) => o.into_mut(),
        };
        if stamp.sequence <= s.last {
            self.duplicates += 1;
            say(&format!(
                "violation kind=duplicate count=1 publisher {} incarnation {} sequence {} after {}",
                stamp.publisher, stamp.incarnation, stamp.sequence, s.last
            ));
            return;
        }
        if stamp.sequence > s.last + 1 {
            let missing = stamp.sequence - s.last - 1;
            self.lost += missing;
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

    /// After the drain: every stream followed, then the final counters.
    fn finish(&self) {
        for ((p, i), s) in &self.streams {
            say(&format!(
                "stream pub={p} inc={i} first={} last={}",
                s.first, s.last
            ));
        }
        self.report("final");
    }
}
