//! The parent's side of a run: starts the worker processes, SIGKILLs and
//! restarts them on a seeded schedule, watches for hangs and unexpected
//! exits, stops them gracefully and reaps them. Everything their lines
//! say goes into [`Findings`].

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::findings::{Findings, Line, Record};
use super::{DRAIN_QUIET, Role, SoakArgs, WorkerId};
use crate::common::{self, Failure, exit};
use crate::rng::Rng;

/// At the end, all workers run together (without kills) this long after
/// the last one started, before they are stopped.
const SETTLE: Duration = Duration::from_millis(300);
/// How often the main loop checks for hangs and unexpected exits.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// A running worker process.
struct Worker {
    id: WorkerId,
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

/// SIGKILLs survived, by role.
#[derive(Default)]
pub(super) struct Kills {
    pub publishers: u64,
    pub subscribers: u64,
}

impl Kills {
    pub fn total(&self) -> u64 {
        self.publishers + self.subscribers
    }
}

/// What a run leaves for the report.
pub(super) struct Run {
    pub findings: Findings,
    /// The last incarnation of every slot.
    pub finals: Vec<WorkerId>,
    pub kills: Kills,
    /// How long the workers ran (from all ready to the end or Ctrl-C).
    pub ran: Duration,
    /// Stopped early by Ctrl-C or SIGTERM.
    pub interrupted: bool,
}

/// Starts, kills, stops and reaps the workers of one run.
pub(super) struct Supervisor<'a> {
    args: &'a SoakArgs,
    domain: String,
    seed: u64,
    /// This executable, re-run as `conduit soak-worker`.
    exe: PathBuf,
    tx: mpsc::Sender<Line>,
    rx: mpsc::Receiver<Line>,
    workers: Vec<Worker>,
    findings: Findings,
    kills: Kills,
    ran: Duration,
    interrupted: bool,
}

impl<'a> Supervisor<'a> {
    pub fn new(args: &'a SoakArgs, domain: &str, seed: u64) -> Result<Supervisor<'a>, Failure> {
        let exe = std::env::current_exe()
            .map_err(|e| Failure::from_error(exit::FAILURE, "cannot find this executable: ", &e))?;
        let (tx, rx) = mpsc::channel();
        Ok(Supervisor {
            args,
            domain: domain.to_owned(),
            seed,
            exe,
            tx,
            rx,
            workers: Vec::new(),
            findings: Findings::default(),
            kills: Kills::default(),
            ran: Duration::ZERO,
            interrupted: false,
        })
    }

    /// The whole run, up to the graceful stop: every slot started, killed
    /// and restarted for `--duration` (or until Ctrl-C), then the last
    /// generation settled and stopped. An error (a worker that cannot be
    /// started) ends it early; [`reap`](Self::reap) is still due.
    pub fn run(&mut self, interrupt: &mut common::Interrupt) -> Result<(), Failure> {
        self.start_all()?;
        // The duration counts from when every worker is up.
        self.wait_ready();
        self.run_with_kills(interrupt)?;
        // Settle: every worker of the last generation is up, and all of
        // them run together for a while, so that each final subscriber
        // must be connected to each final publisher.
        self.settle();
        // Graceful end: publishers stop first, then subscribers drain
        // everything that was sent, then everyone exits.
        self.check_alive();
        self.stop_role(Role::Pub);
        self.stop_role(Role::Sub);
        Ok(())
    }

    /// Closes every stdin (= exit) and reaps, bounded by the stall
    /// timeout; then takes in the last lines.
    pub fn reap(&mut self) {
        for w in &mut self.workers {
            w.stdin = None;
        }
        let deadline = Instant::now() + self.args.stall_timeout;
        for w in &mut self.workers {
            reap_one(w, deadline, &mut self.findings);
        }
        while let Ok(line) = self.rx.try_recv() {
            self.findings.absorb(line);
        }
    }

    /// The run's results (after [`reap`](Self::reap)).
    pub fn finish(self) -> Run {
        Run {
            findings: self.findings,
            finals: self.workers.iter().map(|w| w.id).collect(),
            kills: self.kills,
            ran: self.ran,
            interrupted: self.interrupted,
        }
    }

    /// Incarnation 0 of every slot, subscribers first.
    fn start_all(&mut self) -> Result<(), Failure> {
        for slot in 0..self.args.subscribers {
            self.start(Role::Sub, slot)?;
        }
        for slot in 0..self.args.publishers {
            self.start(Role::Pub, slot)?;
        }
        Ok(())
    }

    fn start(&mut self, role: Role, slot: usize) -> Result<(), Failure> {
        let worker = self.spawn(WorkerId {
            role,
            slot,
            incarnation: 0,
        })?;
        self.workers.push(worker);
        Ok(())
    }

    /// The main phase: SIGKILLs at exponentially distributed times (seeded)
    /// until `--duration` has passed or Ctrl-C; taking in lines and
    /// watching for hangs meanwhile.
    fn run_with_kills(&mut self, interrupt: &mut common::Interrupt) -> Result<(), Failure> {
        let kill_interval = self.args.kill_interval;
        let mut rng = Rng::new(self.seed);
        let start = Instant::now();
        let end = start + self.args.duration;
        let mut next_kill =
            (!kill_interval.is_zero()).then(|| start + rng.exponential(kill_interval));
        let mut next_watch = start + WATCH_EVERY;
        loop {
            let now = Instant::now();
            self.ran = now - start;
            if now >= end {
                return Ok(());
            }
            if interrupt.happened() {
                self.interrupted = true;
                return Ok(());
            }
            if now >= next_watch {
                self.check_alive();
                self.watch();
                next_watch = now + WATCH_EVERY;
            }
            if let Some(t) = next_kill
                && now >= t
            {
                let victim = rng.below(self.workers.len());
                self.kill_and_restart(victim)?;
                next_kill = Some(Instant::now() + rng.exponential(kill_interval));
            }
            let wait = [Some(end), Some(next_watch), next_kill]
                .into_iter()
                .flatten()
                .min()
                .expect("end")
                .saturating_duration_since(Instant::now());
            self.take_lines(wait);
        }
    }

    /// SIGKILL, then reap: the slot restarts as a new incarnation.
    fn kill_and_restart(&mut self, victim: usize) -> Result<(), Failure> {
        let w = &mut self.workers[victim];
        let _ = w.child.kill();
        let _ = w.child.wait();
        let id = w.id;
        match id.role {
            Role::Pub => self.kills.publishers += 1,
            Role::Sub => self.kills.subscribers += 1,
        }
        self.workers[victim] = self.spawn(WorkerId {
            incarnation: id.incarnation + 1,
            ..id
        })?;
        Ok(())
    }

    /// Starts worker `id`; its stdout lines arrive through `rx`.
    fn spawn(&mut self, id: WorkerId) -> Result<Worker, Failure> {
        let mut child = self
            .worker_command(id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Failure::from_error(exit::FAILURE, "cannot start a worker: ", &e))?;
        forward_lines(id, child.stdout.take().expect("piped"), self.tx.clone());
        self.findings.records.insert(id, Record::default());
        Ok(Worker {
            id,
            stdin: child.stdin.take(),
            child,
            progress_at: Instant::now(),
            progress: 0,
            exited: false,
            hung: false,
        })
    }

    /// `conduit --domain D soak-worker …` for `id`.
    fn worker_command(&self, id: WorkerId) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--domain")
            .arg(&self.domain)
            .arg("soak-worker")
            .arg("--role")
            .arg(id.role.arg())
            .arg("--slot")
            .arg(id.slot.to_string())
            .arg("--incarnation")
            .arg(id.incarnation.to_string())
            .arg("--payload-size")
            .arg(self.args.payload_size.to_string())
            .arg("--seed")
            .arg(self.seed.to_string())
            .arg("--subscribers")
            .arg(self.args.subscribers.to_string());
        if let Some(f) = self.args.inject_fault
            && id.role == f.injected_by()
            && id.slot == 0
            && id.incarnation == 0
        {
            cmd.arg("--inject-fault").arg(f.name());
        }
        // Own process group: Ctrl-C in the terminal reaches the parent only,
        // which then stops the workers gracefully.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        conduit::signal::reset_signal_mask(&mut cmd);
        cmd
    }

    /// Waits up to `timeout` for a line, then takes in every line already
    /// there.
    fn take_lines(&mut self, timeout: Duration) {
        if let Ok(line) = self.rx.recv_timeout(timeout) {
            self.findings.absorb(line);
            while let Ok(line) = self.rx.try_recv() {
                self.findings.absorb(line);
            }
        }
    }

    /// Waits up to `timeout` for one line and takes it in.
    fn take_line(&mut self, timeout: Duration) {
        if let Ok(line) = self.rx.recv_timeout(timeout) {
            self.findings.absorb(line);
        }
    }

    /// Hang check: every worker must make progress within the stall
    /// timeout (subscribers: receive something; publishers: send).
    fn watch(&mut self) {
        let now = Instant::now();
        let stall_timeout = self.args.stall_timeout;
        for w in self.workers.iter_mut().filter(|w| !w.exited && !w.hung) {
            let p = progress(self.findings.record(&w.id), w.id.role);
            if p > w.progress {
                w.progress = p;
                w.progress_at = now;
            } else if now - w.progress_at > stall_timeout {
                self.findings
                    .hangs
                    .push(format!("{} made no progress for {stall_timeout:?}", w.id));
                w.hung = true;
            }
        }
    }

    /// An exit we did not cause is a failure.
    fn check_alive(&mut self) {
        for w in self.workers.iter_mut().filter(|w| !w.exited) {
            if let Ok(Some(status)) = w.child.try_wait() {
                w.exited = true;
                self.findings
                    .failures
                    .push(format!("{} exited by itself: {status}", w.id));
            }
        }
    }

    /// Waits until every worker said `ready` (bounded by the stall
    /// timeout), then lets them run together for [`SETTLE`].
    fn settle(&mut self) {
        self.wait_ready();
        let until = Instant::now() + SETTLE;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            self.take_line(left);
        }
        self.watch();
    }

    /// Waits until every worker said `ready`; one that does not within
    /// the stall timeout is a hang.
    fn wait_ready(&mut self) {
        let stall_timeout = self.args.stall_timeout;
        let deadline = Instant::now() + stall_timeout;
        loop {
            let waiting: Vec<WorkerId> = self
                .workers
                .iter()
                .filter(|w| !w.exited && !self.findings.record(&w.id).ready)
                .map(|w| w.id)
                .collect();
            if waiting.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                for id in waiting {
                    self.findings
                        .hangs
                        .push(format!("{id} did not start within {stall_timeout:?}"));
                }
                for w in &mut self.workers {
                    w.hung |= !self.findings.record(&w.id).ready;
                }
                return;
            }
            self.take_line(Duration::from_millis(20));
        }
    }

    /// Sends `stop` to the workers of `role` and waits (taking in their
    /// lines) until each said `final`.
    fn stop_role(&mut self, role: Role) {
        for w in self.workers.iter_mut().filter(|w| w.id.role == role) {
            if let Some(stdin) = w.stdin.as_mut() {
                let _ = writeln!(stdin, "stop");
                let _ = stdin.flush();
            }
        }
        let deadline = Instant::now() + self.args.stall_timeout + DRAIN_QUIET;
        loop {
            let findings = &self.findings;
            let pending: Vec<WorkerId> = self
                .workers
                .iter_mut()
                .filter(|w| w.id.role == role && !findings.record(&w.id).finished)
                .filter_map(|w| (!matches!(w.child.try_wait(), Ok(Some(_)))).then_some(w.id))
                .collect();
            if pending.is_empty() {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                for id in pending {
                    self.findings.hangs.push(format!(
                        "{id} did not stop within {:?}",
                        self.args.stall_timeout
                    ));
                }
                return;
            }
            self.take_line((deadline - now).min(Duration::from_millis(50)));
        }
    }
}

/// What shows that a worker is alive: samples sent or received.
fn progress(record: &Record, role: Role) -> u64 {
    match role {
        Role::Pub => record.get("sent"),
        Role::Sub => record.get("received"),
    }
}

/// Sends every stdout line of worker `from` to `tx`, then its end.
fn forward_lines(from: WorkerId, stdout: ChildStdout, tx: mpsc::Sender<Line>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(text) = line else { break };
            if tx
                .send(Line {
                    from,
                    text: Some(text),
                })
                .is_err()
            {
                return;
            }
        }
        let _ = tx.send(Line { from, text: None });
    });
}

/// Waits until `w` exits (a failure unless it exits successfully); at
/// `deadline` it is a hang and is killed.
fn reap_one(w: &mut Worker, deadline: Instant, findings: &mut Findings) {
    loop {
        match w.child.try_wait() {
            Ok(Some(status)) => {
                if !status.success() {
                    findings
                        .failures
                        .push(format!("{} ended with {status}", w.id));
                }
                return;
            }
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => {
                findings
                    .hangs
                    .push(format!("{} did not exit; killed", w.id));
                let _ = w.child.kill();
                let _ = w.child.wait();
                return;
            }
        }
    }
}
