//! The end of a run: totals over every incarnation, the verdict (what
//! failed, if anything), and the output (a table, or one JSON object).

use serde_json::json;

use super::findings::Findings;
use super::supervisor::{Kills, Run};
use super::{Role, SoakArgs, WorkerId};
use crate::common::{self, CmdResult, Failure, exit};

/// At most this many violations are printed one by one (text output).
const VIOLATIONS_SHOWN: usize = 20;

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

impl Totals {
    fn new(findings: &Findings, finals: &[WorkerId]) -> Totals {
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
        for (id, r) in &findings.records {
            match id.role {
                Role::Pub => {
                    t.sent += r.get("sent");
                    t.send_timeouts += r.get("timeouts");
                }
                Role::Sub => {
                    t.moved += r.get("received");
                    t.bytes += r.get("bytes");
                    t.lost_gaps += r.violations("lost", "gap");
                    t.duplicates += r.violations("duplicates", "duplicate");
                    t.corrupt += r.violations("corrupt", "corrupt");
                }
            }
        }
        t.add_tail_loss(findings, finals);
        t
    }

    /// Tail loss: what the final publishers sent after the last sample
    /// the final subscribers received from them (only where they were
    /// connected: a subscriber started after a publisher's last send
    /// never saw it).
    fn add_tail_loss(&mut self, findings: &Findings, finals: &[WorkerId]) {
        let finished = |role: Role| {
            finals
                .iter()
                .filter(move |id| id.role == role)
                .filter_map(|id| findings.records.get(id).map(|r| (id, r)))
                .filter(|(_, r)| r.finished)
        };
        for (publisher, p) in finished(Role::Pub) {
            let last_sent = p.get("seq");
            let stream = (publisher.slot as u64, publisher.incarnation);
            for (subscriber, s) in finished(Role::Sub) {
                match s.streams.get(&stream) {
                    Some(last) => self.lost_tail += last_sent.saturating_sub(*last),
                    None if last_sent > 0 => self.unconnected.push(format!(
                        "{subscriber} got nothing from {publisher}, which sent {last_sent}"
                    )),
                    None => {}
                }
            }
        }
    }

    fn lost(&self) -> u64 {
        self.lost_gaps + self.lost_tail
    }
}

/// Everything `conduit soak` prints at the end, and its verdict.
pub(super) struct Report<'a> {
    args: &'a SoakArgs,
    seed: u64,
    domain: &'a str,
    run: Run,
    totals: Totals,
    /// Objects of the domain found in /dev/shm after the final cleanup.
    pub leftovers: Vec<String>,
}

impl<'a> Report<'a> {
    pub fn new(
        args: &'a SoakArgs,
        seed: u64,
        domain: &'a str,
        run: Run,
        leftovers: Vec<String>,
    ) -> Report<'a> {
        let totals = Totals::new(&run.findings, &run.finals);
        Report {
            args,
            seed,
            domain,
            run,
            totals,
            leftovers,
        }
    }

    /// Every invariant the run violated (empty: it passed).
    fn problems(&self) -> Vec<String> {
        let (t, f) = (&self.totals, &self.run.findings);
        let mut problems = Vec::new();
        if t.corrupt > 0 {
            problems.push(format!("{} corrupt sample(s)", t.corrupt));
        }
        if t.duplicates > 0 {
            problems.push(format!("{} duplicate(s)", t.duplicates));
        }
        if t.lost() > 0 {
            problems.push(format!("{} lost sample(s) (0 allowed)", t.lost()));
        }
        if !self.leftovers.is_empty() {
            problems.push(format!("{} leftover(s) in /dev/shm", self.leftovers.len()));
        }
        if !t.unconnected.is_empty() {
            problems.push(format!(
                "{} unconnected publisher/subscriber pair(s)",
                t.unconnected.len()
            ));
        }
        if !f.hangs.is_empty() {
            problems.push(format!("{} hang(s)", f.hangs.len()));
        }
        if !f.failures.is_empty() {
            problems.push(format!("{} worker failure(s)", f.failures.len()));
        }
        if t.moved == 0 {
            problems.push("no sample moved".to_owned());
        }
        problems
    }

    /// Success, or exit code 1 naming every problem.
    pub fn verdict(&self) -> CmdResult {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Failure::new(
                exit::FAILURE,
                format!("soak failed: {}", problems.join(", ")),
            ))
        }
    }

    /// One JSON object (`--json`) or the findings and a table.
    pub fn print(&self) {
        let passed = self.problems().is_empty();
        if self.args.json {
            self.print_json(passed);
        } else {
            self.print_findings();
            self.print_table();
            println!(
                "{}",
                if passed {
                    common::paint("PASS", common::Style::Good)
                } else {
                    common::paint("FAIL", common::Style::Bad)
                }
            );
        }
    }

    fn print_json(&self, passed: bool) {
        let (args, t, f, run) = (self.args, &self.totals, &self.run.findings, &self.run);
        let Kills {
            publishers,
            subscribers,
        } = run.kills;
        common::print_json(&json!({
            "seed": self.seed,
            "domain": self.domain,
            "publishers": args.publishers,
            "subscribers": args.subscribers,
            "duration_s": args.duration.as_secs_f64(),
            "ran_s": run.ran.as_secs_f64(),
            "interrupted": run.interrupted,
            "kill_interval_s": args.kill_interval.as_secs_f64(),
            "payload_size": args.payload_size,
            "moved": t.moved,
            "bytes": t.bytes,
            "sent": t.sent,
            "send_timeouts": t.send_timeouts,
            "kills": { "total": run.kills.total(), "publishers": publishers, "subscribers": subscribers },
            "restarts": run.kills.total(),
            "corrupt": t.corrupt,
            "duplicates": t.duplicates,
            "lost": t.lost(),
            "lost_gaps": t.lost_gaps,
            "lost_tail": t.lost_tail,
            "lost_allowed": 0,
            "leftovers": self.leftovers,
            "hangs": f.hangs,
            "unconnected": t.unconnected,
            "failures": f.failures,
            "violations": f.violations,
            "passed": passed,
        }));
    }

    /// One line per violation (the first [`VIOLATIONS_SHOWN`]), hang,
    /// unconnected pair and failure.
    fn print_findings(&self) {
        let f = &self.run.findings;
        for v in f.violations.iter().take(VIOLATIONS_SHOWN) {
            println!("violation: {v}");
        }
        if f.violations.len() > VIOLATIONS_SHOWN {
            println!(
                "… {} more violations",
                f.violations.len() - VIOLATIONS_SHOWN
            );
        }
        for h in &f.hangs {
            println!("hang: {h}");
        }
        for d in &self.totals.unconnected {
            println!("unconnected: {d}");
        }
        for failure in &f.failures {
            println!("failure: {failure}");
        }
        if self.run.interrupted {
            println!(
                "interrupted after {:.1?}: stopped early, checked what ran",
                self.run.ran
            );
        }
    }

    fn print_table(&self) {
        let (t, run) = (&self.totals, &self.run);
        let secs = run.ran.as_secs_f64().max(1e-9);
        let restarts = run.kills.total();
        let rows = vec![
            row(
                "moved",
                t.moved,
                format!(
                    "samples received and verified ({}, {:.0}/s); {} sent by publishers",
                    common::bytes(t.bytes as f64),
                    t.moved as f64 / secs,
                    t.sent
                ),
            ),
            row(
                "kills",
                restarts,
                format!(
                    "SIGKILLs survived: {} publisher(s), {} subscriber(s); {restarts} restarts",
                    run.kills.publishers, run.kills.subscribers
                ),
            ),
            row(
                "corrupt",
                t.corrupt,
                "samples whose checksum or length did not match their stamp",
            ),
            row(
                "duplicates",
                t.duplicates,
                "samples not newer than the last one seen from the same publisher incarnation",
            ),
            row(
                "lost",
                t.lost(),
                format!(
                    "{} in gaps + {} at the end (allowed: 0; overflow policy Block drops nothing)",
                    t.lost_gaps, t.lost_tail
                ),
            ),
            row(
                "retries",
                t.send_timeouts,
                "sends that timed out on a full queue and were retried (not a loss)",
            ),
            row(
                "leftovers",
                self.leftovers.len(),
                if self.leftovers.is_empty() {
                    "objects of the domain in /dev/shm after cleanup".to_owned()
                } else {
                    self.leftovers.join(" ")
                },
            ),
            row(
                "unconnected",
                t.unconnected.len(),
                "final publisher/subscriber pairs with nothing delivered",
            ),
            row(
                "hangs",
                run.findings.hangs.len(),
                format!("workers without progress for {:?}", self.args.stall_timeout),
            ),
            row(
                "seed",
                self.seed,
                "rerun with --seed to repeat the kill schedule",
            ),
        ];
        common::print_table(&["what", "count", "meaning"], &rows);
    }
}

/// One row of the summary table.
fn row(what: &str, count: impl std::fmt::Display, meaning: impl Into<String>) -> Vec<String> {
    vec![what.to_owned(), count.to_string(), meaning.into()]
}
