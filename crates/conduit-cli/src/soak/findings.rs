//! What the parent learns during a run: each worker incarnation's last
//! counters and streams (from its stdout lines), every violation it
//! announced, and the hangs and failures the supervisor saw.

use std::collections::BTreeMap;

use super::WorkerId;

/// A line from a worker (`None`: its end of output).
pub(super) struct Line {
    pub from: WorkerId,
    pub text: Option<String>,
}

/// What the parent knows of one incarnation of a worker.
#[derive(Default)]
pub(super) struct Record {
    /// The last `report` or `final` counters.
    counters: BTreeMap<String, u64>,
    /// `final` seen.
    pub finished: bool,
    /// (publisher, incarnation) → last sequence received (subscribers).
    pub streams: BTreeMap<(u64, u64), u64>,
    /// Said `ready` (its port exists).
    pub ready: bool,
    /// Violations announced, by kind (corrupt, duplicate, gap).
    violations: BTreeMap<String, u64>,
}

impl Record {
    /// The counter `key` of the last report (0 before one).
    pub fn get(&self, key: &str) -> u64 {
        self.counters.get(key).copied().unwrap_or(0)
    }

    /// A subscriber's count of `key`: its last report, or the violations
    /// of `kind` it announced if more (it may have been killed before
    /// reporting).
    pub fn violations(&self, key: &str, kind: &str) -> u64 {
        self.get(key)
            .max(self.violations.get(kind).copied().unwrap_or(0))
    }
}

/// Everything the run found, for the report.
#[derive(Default)]
pub(super) struct Findings {
    /// One record per worker incarnation ever started.
    pub records: BTreeMap<WorkerId, Record>,
    /// Announced violations, as lines for the output.
    pub violations: Vec<String>,
    pub hangs: Vec<String>,
    pub failures: Vec<String>,
}

impl Findings {
    /// The record of `id` (every started incarnation has one).
    pub fn record(&self, id: &WorkerId) -> &Record {
        &self.records[id]
    }

    /// Takes in one line of a worker.
    pub fn absorb(&mut self, line: Line) {
        let Some(text) = line.text else { return };
        let Some(record) = self.records.get_mut(&line.from) else {
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
                let (kind, count, text) = parse_violation(rest);
                *record.violations.entry(kind.to_owned()).or_default() += count;
                self.violations
                    .push(format!("{}: {kind} {text}", line.from));
            }
            _ => {}
        }
    }
}

/// Splits `kind=K count=N text` (an unknown kind, a count of 1 and an
/// empty text where missing).
fn parse_violation(rest: &str) -> (&str, u64, &str) {
    let mut parts = rest.splitn(3, ' ');
    let kind = parts
        .next()
        .and_then(|k| k.strip_prefix("kind="))
        .unwrap_or("unknown");
    let count = parts
        .next()
        .and_then(|c| c.strip_prefix("count="))
        .and_then(|c| c.parse::<u64>().ok())
        .unwrap_or(1);
    (kind, count, parts.next().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::super::Role;
    use super::*;

    #[test]
    fn announced_violations_count_without_a_report() {
        let mut r = Record::default();
        r.violations.insert("corrupt".into(), 3);
        r.counters.insert("corrupt".into(), 1);
        assert_eq!(r.violations("corrupt", "corrupt"), 3);
        r.counters.insert("corrupt".into(), 5);
        assert_eq!(r.violations("corrupt", "corrupt"), 5);
    }

    #[test]
    fn lines_update_the_record_of_their_incarnation() {
        let from = WorkerId {
            role: Role::Sub,
            slot: 0,
            incarnation: 1,
        };
        let mut findings = Findings::default();
        findings.records.insert(from, Record::default());
        for text in [
            "ready",
            "violation kind=gap count=2 publisher 0 incarnation 0 sequences 4..=5 missing",
            "stream pub=0 inc=0 first=1 last=9",
            "final received=7 lost=2",
        ] {
            findings.absorb(Line {
                from,
                text: Some(text.to_owned()),
            });
        }
        let r = findings.record(&from);
        assert!(r.ready && r.finished);
        assert_eq!(r.get("received"), 7);
        assert_eq!(r.violations("lost", "gap"), 2);
        assert_eq!(r.streams[&(0, 0)], 9);
        assert_eq!(
            findings.violations,
            ["subscriber 0 (incarnation 1): gap publisher 0 incarnation 0 sequences 4..=5 missing"]
        );
    }
}
