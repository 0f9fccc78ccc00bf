//! `conduit signal send|watch`: send a signal (optionally with a value), or
//! print the signals this process receives.

use std::io::Write;

use clap::Subcommand;
use conduit::signal::{Origin, Process, Received, Signal, Signals, queue, send_group};

/// `conduit signal ...`
#[derive(Subcommand)]
pub enum SignalCommand {
    /// Send SIGNAL to process PID, through a pidfd (or to a process group).
    ///
    /// SIGNAL is a name (TERM, SIGUSR1, RTMIN+2) or a number. With
    /// --value the signal is queued with that value (sigqueue); use a
    /// real-time signal so several values queue instead of coalescing.
    Send {
        /// Target process id (with --group: process group id).
        pid: u32,
        /// Signal name or number.
        signal: String,
        /// Queue the signal with this pointer-sized value (SI_QUEUE).
        #[arg(long, allow_negative_numbers = true, value_parser = crate::common::whole::<usize>)]
        value: Option<usize>,
        /// Send to the whole process group PID (killpg).
        #[arg(long, conflicts_with = "value")]
        group: bool,
    },
    /// Print each signal received, with its sender and value, until
    /// interrupted (or until --count signals have arrived).
    ///
    /// Default signals: HUP USR1 USR2. Signals not watched keep their
    /// default action, so Ctrl-C ends the watch unless INT is watched (then
    /// use --count, or SIGTERM/SIGQUIT). The first output line is
    /// `watching pid <PID>: <SIGNALS>`; then one line per signal:
    /// `<SIGNAL> pid=<sender> uid=<uid> origin=<origin> [value=<n>]`.
    Watch {
        /// Signals to watch (names or numbers).
        signals: Vec<String>,
        /// Exit after this many signals.
        #[arg(long, allow_negative_numbers = true, value_parser = crate::common::whole::<usize>)]
        count: Option<usize>,
    },
}

/// Runs the subcommand; returns the process exit code.
pub fn run(command: SignalCommand) -> i32 {
    match command {
        SignalCommand::Send {
            pid,
            signal,
            value,
            group,
        } => send_command(pid, &signal, value, group),
        SignalCommand::Watch { signals, count } => watch_command(&signals, count),
    }
}

fn parse(name: &str) -> Result<Signal, i32> {
    name.parse::<Signal>().map_err(|e| {
        eprintln!("conduit: {e}");
        2
    })
}

/// The error and its sources, one after the other.
fn report(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn send_command(pid: u32, signal: &str, value: Option<usize>, group: bool) -> i32 {
    let signal = match parse(signal) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let result = if group {
        send_group(pid, signal)
    } else {
        match Process::open(pid) {
            Ok(process) => match value {
                Some(v) => process.queue(signal, v),
                None => process.send(signal),
            },
            // No pidfd (e.g. a kernel before 5.3): fall back to the number.
            Err(conduit::signal::OpenError::Other { .. }) => match value {
                Some(v) => queue(pid, signal, v),
                None => conduit::signal::send(pid, signal),
            },
            Err(e) => {
                eprintln!("conduit: {}", report(&e));
                return 1;
            }
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("conduit: {}", report(&e));
            1
        }
    }
}

fn origin_name(origin: Origin) -> String {
    match origin {
        Origin::User => "user".into(),
        Origin::Queue => "queue".into(),
        Origin::Timer => "timer".into(),
        Origin::Thread => "thread".into(),
        Origin::MessageQueue => "mqueue".into(),
        Origin::Kernel(code) => format!("kernel({code})"),
        Origin::Other(code) => format!("other({code})"),
    }
}

fn format_received(r: &Received) -> String {
    let mut line = format!(
        "{} pid={} uid={} origin={}",
        r.signal,
        r.sender_pid,
        r.sender_uid,
        origin_name(r.origin)
    );
    if let Some(v) = r.value {
        line.push_str(&format!(" value={v}"));
    }
    line
}

fn watch_command(names: &[String], count: Option<usize>) -> i32 {
    let mut wanted = Vec::new();
    if names.is_empty() {
        wanted.extend([Signal::HUP, Signal::USR1, Signal::USR2]);
    }
    for n in names {
        match parse(n) {
            Ok(s) => wanted.push(s),
            Err(code) => return code,
        }
    }
    // Single-threaded here, so this uses signalfd.
    let mut signals = match Signals::new(wanted.iter().copied()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("conduit: {}", report(&e));
            return 2;
        }
    };
    let list: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
    let mut out = std::io::stdout().lock();
    if writeln!(
        out,
        "watching pid {}: {}",
        std::process::id(),
        list.join(" ")
    )
    .and_then(|()| out.flush())
    .is_err()
    {
        return 1;
    }
    let mut seen = 0usize;
    while count.is_none_or(|c| seen < c) {
        match signals.next() {
            Ok(r) => {
                seen += 1;
                if writeln!(out, "{}", format_received(&r))
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    // Nobody reads our output any more.
                    return 1;
                }
            }
            Err(e) => {
                eprintln!("conduit: {}", report(&e));
                return 1;
            }
        }
    }
    0
}
