//! End-to-end tests of `conduit signal send|watch`, with real processes.

mod common;

use common::stderr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};

const CONDUIT: &str = env!("CARGO_BIN_EXE_conduit");

/// A `conduit signal watch` process, killed when dropped.
struct Watcher {
    child: Child,
}

impl Watcher {
    fn start(args: &[&str]) -> Watcher {
        let child = Command::new(CONDUIT)
            .args(["signal", "watch"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start conduit signal watch");
        let mut w = Watcher { child };
        let header = w.line();
        assert!(
            header.starts_with(&format!("watching pid {}: ", w.child.id())),
            "{header}"
        );
        w
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn line(&mut self) -> String {
        let out = self.child.stdout.as_mut().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        String::from_utf8(line).unwrap()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `conduit signal send ARGS`, returning its output and its pid.
fn send(args: &[&str], customise: impl FnOnce(&mut Command)) -> (Output, u32) {
    let mut cmd = Command::new(CONDUIT);
    cmd.args(["signal", "send"]).args(args).stdin(Stdio::null());
    customise(&mut cmd);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    (child.wait_with_output().unwrap(), pid)
}

/// This process's effective user id (`geteuid`).
fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The owner of `/proc/<pid>` (the process's effective uid), or `None` if
/// there is no such process.
fn process_owner_uid(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

#[test]
fn watch_prints_sender_and_values_of_sent_signals() {
    let mut w = Watcher::start(&["USR1", "SIGRTMIN+1", "--count", "3"]);
    let uid = effective_uid();
    let (o, p1) = send(&[&w.pid(), "RTMIN+1", "--value", "42"], |_| {});
    assert!(o.status.success(), "{}", stderr(&o));
    let (o, p2) = send(&[&w.pid(), "usr1"], |_| {});
    assert!(o.status.success(), "{}", stderr(&o));
    let (o, p3) = send(&[&w.pid(), "SIGRTMIN+1", "--value", "7"], |_| {});
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        w.line(),
        format!("SIGRTMIN+1 pid={p1} uid={uid} origin=queue value=42")
    );
    assert_eq!(w.line(), format!("SIGUSR1 pid={p2} uid={uid} origin=user"));
    assert_eq!(
        w.line(),
        format!("SIGRTMIN+1 pid={p3} uid={uid} origin=queue value=7")
    );
    // --count 3: it exits by itself.
    assert!(w.child.wait().unwrap().success());
}

#[test]
fn send_to_a_group_reaches_the_group() {
    // The watcher leads its own process group.
    let child = Command::new(CONDUIT)
        .args(["signal", "watch", "HUP", "--count", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut w = Watcher { child };
    assert!(w.line().starts_with("watching pid"));
    let (o, _) = send(&[&w.pid(), "HUP", "--group"], |_| {});
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(w.line().starts_with("SIGHUP pid="));
    assert!(w.child.wait().unwrap().success());
}

#[test]
fn bad_signal_names_are_clear_errors() {
    for bad in ["FOO", "SIGRTMAX+1", "0", "65"] {
        let (o, _) = send(&["1", bad], |_| {});
        assert!(!o.status.success());
        assert!(stderr(&o).contains("unknown signal"), "{}", stderr(&o));
    }
    let o = Command::new(CONDUIT)
        .args(["signal", "watch", "KILL"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot be caught"), "{}", stderr(&o));
}

#[test]
fn a_process_that_does_not_exist_is_a_clear_error() {
    // Above any pid_max.
    let (o, _) = send(&["2147483647", "TERM"], |_| {});
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no process 2147483647"),
        "{}",
        stderr(&o)
    );

    // A process that has exited and been reaped.
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id().to_string();
    gone.wait().unwrap();
    let (o, _) = send(&[&pid, "TERM", "--value", "1"], |_| {});
    // Its number may in principle have been reused already; if not, the
    // error names it.
    if !o.status.success() {
        assert!(
            stderr(&o).contains(&format!("no process {pid}")),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn permission_denied_is_a_clear_error() {
    let w = Watcher::start(&["USR1"]);
    let root = effective_uid() == 0;
    // As root, drop to "nobody" for the sender and target our watcher;
    // otherwise target init, which belongs to root.
    if !root && process_owner_uid(1) == Some(effective_uid()) {
        // In a container init may be ours: never signal it.
        eprintln!("skipped: not root, and init is ours");
        return;
    }
    let target = if root { w.pid() } else { "1".to_owned() };
    let (o, _) = send(&[&target, "USR1"], |cmd| {
        if root {
            cmd.uid(65534).gid(65534);
        }
    });
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not permitted"), "{}", stderr(&o));
}
