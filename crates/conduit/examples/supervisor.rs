//! A minimal process supervisor: it starts a child in its own process
//! group, forwards SIGINT/SIGTERM/SIGHUP/SIGTSTP/SIGCONT to that group, and
//! reaps the child through its pidfd.
//!
//! ```text
//! cargo run --example supervisor                 # self-contained demo
//! cargo run --example supervisor -- sleep 30     # supervise a command
//! ```
//!
//! The demo (no arguments) starts a copy of itself as the child, then plays
//! the role of the outside world by sending *itself* SIGHUP and then
//! SIGTERM; both are forwarded to the child's group, the child reloads on
//! SIGHUP and shuts down gracefully on SIGTERM, and the supervisor exits
//! with the child's status. With a command, press Ctrl-C (or `kill` the
//! supervisor) and watch the signal being forwarded.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use conduit::signal::{ExitState, Signal, Signals, Supervised, send};

const CHILD_FLAG: &str = "--demo-child";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD_FLAG) {
        demo_child();
        return;
    }

    // Subscribe first, while the process has one thread: the signals are
    // blocked in every thread and read from a signalfd.
    let mut signals = Signals::new(Supervised::FORWARDED).expect("subscribe");
    println!(
        "supervisor {}: receiving {:?} via {:?}",
        std::process::id(),
        Supervised::FORWARDED,
        signals.mode()
    );

    let demo = args.is_empty();
    let mut command = if demo {
        let mut c = Command::new(std::env::current_exe().expect("current_exe"));
        c.arg(CHILD_FLAG).stdout(Stdio::piped());
        c
    } else {
        let mut c = Command::new(&args[0]);
        c.args(&args[1..]);
        c
    };
    let mut child = match Supervised::spawn(&mut command) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("supervisor: {e}: {:?}", std::error::Error::source(&e));
            std::process::exit(127);
        }
    };
    println!(
        "supervisor: child {} runs in process group {}",
        child.pid(),
        child.process_group()
    );

    let mut relay = None;
    if demo {
        // Relay the child's output, and once it is ready act as the outside
        // world: SIGHUP, then SIGTERM, sent to the supervisor itself.
        let out = child.child_mut().stdout.take().expect("piped");
        relay = Some(std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                println!("  | {line}");
                if line == "ready" {
                    send(std::process::id(), Signal::HUP).expect("send SIGHUP");
                }
                if line.starts_with("reloaded") {
                    send(std::process::id(), Signal::TERM).expect("send SIGTERM");
                }
            }
        }));
    }

    let state = child
        .supervise_with(&mut signals, |r| {
            println!(
                "supervisor: {} from pid {}: forwarding to group {}",
                r.signal,
                r.sender_pid,
                child.process_group()
            );
        })
        .expect("supervise");
    if let Some(relay) = relay {
        // The child's stdout ends with it: print all it said.
        let _ = relay.join();
    }
    println!("supervisor: child ended: {state:?}");
    std::process::exit(match state {
        ExitState::Exited(code) => code,
        ExitState::Killed(s) => 128 + s.as_raw(),
        ExitState::KilledRaw(s) => 128 + s,
    });
}

/// The demo child: reloads on SIGHUP, shuts down cleanly on SIGTERM or
/// SIGINT.
fn demo_child() {
    let mut signals =
        Signals::new([Signal::HUP, Signal::TERM, Signal::INT]).expect("child subscribe");
    println!("ready");
    for received in signals.iter() {
        let r = received.expect("receive");
        if r.signal == Signal::HUP {
            println!("reloaded configuration (SIGHUP from {})", r.sender_pid);
        } else {
            println!(
                "{} from {}: cleaning up and exiting",
                r.signal, r.sender_pid
            );
            break;
        }
    }
}
