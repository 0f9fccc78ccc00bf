//! Shared helpers for conduit-bridge's integration tests, copied from
//! conduit's `tests/common`: child processes, a watchdog, unique names, a
//! /dev/shm leak check.
//!
//! Child processes re-run the current test binary: the parent calls
//! [`spawn_child`] with a role; the child runs the `#[test] fn child_entry`
//! of the same test file (which every multi-process test file defines as
//! `child_entry!(dispatch)` (the macro is exported at the test crate root)), reads its role from the environment
//! and calls the file's `dispatch(role, args)`.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Environment variable carrying the child role.
pub const ROLE_ENV: &str = "CONDUIT_TEST_CHILD_ROLE";
/// Environment variable carrying the child's arguments (tab separated).
pub const ARGS_ENV: &str = "CONDUIT_TEST_CHILD_ARGS";

/// Defines `#[test] fn child_entry()` which, in a child process, runs
/// `$dispatch(role: &str, args: &[String])` and exits; in the normal test
/// run it does nothing.
#[macro_export]
macro_rules! child_entry {
    ($dispatch:path) => {
        #[test]
        fn child_entry() {
            if let Ok(role) = std::env::var($crate::common::ROLE_ENV) {
                let args: Vec<String> = std::env::var($crate::common::ARGS_ENV)
                    .map(|a| {
                        if a.is_empty() {
                            Vec::new()
                        } else {
                            a.split('\t').map(str::to_owned).collect()
                        }
                    })
                    .unwrap_or_default();
                $dispatch(&role, &args);
                std::process::exit(0);
            }
        }
    };
}

/// Starts this test binary again as a child process in role `role`.
/// stdin is null; stdout is piped (children report to the parent by
/// printing lines); stderr is inherited.
pub fn spawn_child(role: &str, args: &[&str]) -> Child {
    child_command(role, args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child test process")
}

/// The command [`spawn_child`] runs, to customise before spawning.
pub fn child_command(role: &str, args: &[&str]) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .env(ARGS_ENV, args.join("\t"))
        .stdin(Stdio::null());
    cmd
}

/// Why processes in new PID namespaces cannot be started here (`unshare
/// --pid --fork --mount-proc` needs root, or user namespaces), or `None`.
/// A name unique to this test process and call: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Aborts the whole test process if the returned guard is not dropped
/// within `limit`: a hung test fails instead of hanging CI.
pub fn watchdog(limit: Duration) -> Watchdog {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("watchdog: test {name} exceeded {limit:?}; aborting");
            std::process::abort();
        }
    });
    Watchdog { _tx: tx }
}

/// Guard returned by [`watchdog`].
pub struct Watchdog {
    _tx: std::sync::mpsc::Sender<()>,
}

/// Names in /dev/shm that contain `fragment`.
pub fn shm_objects_containing(fragment: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.contains(fragment))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads one line from a child's stdout (byte by byte, so nothing past
/// the newline is consumed), skipping the test harness's own output (empty
/// lines and `running 1 test`). Returns "" at end of file.
pub fn read_line(child: &mut Child) -> String {
    loop {
        match read_raw_line(child) {
            None => return String::new(),
            Some(l) if l.is_empty() || l.starts_with("running ") => continue,
            Some(l) => {
                // With --nocapture the harness prints "test child_entry ... "
                // without a newline before the child's first line.
                return l
                    .strip_prefix("test child_entry ... ")
                    .map(str::to_owned)
                    .unwrap_or(l);
            }
        }
    }
}

fn read_raw_line(child: &mut Child) -> Option<String> {
    use std::io::Read;
    let out = child.stdout.as_mut().expect("child stdout is piped");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match out.read(&mut byte) {
            Ok(0) if line.is_empty() => return None,
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read child stdout: {e}"),
        }
    }
    Some(String::from_utf8_lossy(&line).into_owned())
}
