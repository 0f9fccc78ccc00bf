//! End-to-end tests of `conduit get|set|watch` and of blackboards in
//! `conduit list|info`: the test process creates blackboards with the
//! library, `conduit` runs as a child process, with keys and values that
//! are not UTF-8 among the arguments. Each test has its own domain and
//! leaves nothing in /dev/shm.

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{shm_names, stderr};
use conduit::node::Node;
use conduit::prelude::*;

const CONDUIT: &str = env!("CARGO_BIN_EXE_conduit");

/// A unique domain, checked empty in /dev/shm when dropped.
struct Domain(String);

impl Domain {
    fn new() -> Domain {
        static N: AtomicU32 = AtomicU32::new(0);
        // A hung child or test ends the whole run instead of blocking CI.
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(120));
            eprintln!("watchdog: test hung");
            std::process::abort();
        });
        Domain(format!(
            "clibb-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn node(&self) -> Node {
        Node::builder()
            .name("test")
            .domain(&self.0)
            .create()
            .unwrap()
    }

    fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(CONDUIT);
        c.env("CONDUIT_DOMAIN", &self.0)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.cmd(args).output().unwrap()
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = Node::cleanup(&self.0);
        let left = shm_names(&format!("conduit.{}.", self.0));
        for name in &left {
            let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
        }
        if !std::thread::panicking() {
            assert!(left.is_empty(), "left in /dev/shm: {left:?}");
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", stderr(o));
    stdout(o)
}

/// The command failed with `code` and one `conduit: ` line on stderr.
fn assert_fails(o: &Output, code: i32, contains: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("conduit: "), "{err}");
    assert!(err.contains(contains), "{err:?} lacks {contains:?}");
    assert!(!err.contains("panicked"), "{err}");
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

#[test]
fn set_and_get_take_any_bytes_and_numbers() {
    let d = Domain::new();
    let node = d.node();
    let board = node
        .service("cfg")
        .blackboard::<u32, [u8; 8]>()
        .entry(1, *b"one\0\0\0\0\0")
        .entry(2, [0; 8])
        .create()
        .unwrap();
    assert_eq!(ok(&d.run(&["get", "cfg", "1"])), "one\n");
    // Bytes that are not UTF-8, as the value (an argument cannot hold a
    // NUL byte: --hex can).
    let o = d
        .cmd(&["set", "cfg", "2"])
        .arg(os(b"a\xff\x01b"))
        .output()
        .unwrap();
    assert_eq!(ok(&o), "2 = a\\xff\\x01b (version 1)\n");
    assert_eq!(ok(&d.run(&["get", "cfg", "2"])), "a\\xff\\x01b\n");
    assert_eq!(
        ok(&d.run(&["get", "cfg", "2", "--hex"])),
        "61ff016200000000\n"
    );
    // The library sees the bytes the command wrote.
    let reader = board.reader().unwrap();
    assert_eq!(
        reader.entry(&2).unwrap().get_with_version(),
        Ok((*b"a\xff\x01b\0\0\0\0", 1))
    );
    ok(&d.run(&["set", "cfg", "1", "--hex", "0102"]));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&d.run(&["get", "cfg", "1", "--json", "--hex"]))).unwrap();
    assert_eq!(json["key"], 1);
    assert_eq!(json["version"], 1);
    assert_eq!(json["value"], "0102000000000000");
    // Keys in hex: little-endian bytes of the u32.
    assert_eq!(
        ok(&d.run(&["get", "cfg", "--key-hex", "01000000", "--hex"])),
        "0102000000000000\n"
    );
    // Bad input: named, exit 2 (3 for a key that is not there).
    assert_fails(
        &d.run(&["set", "cfg", "1", "123456789"]),
        2,
        "longer than the value type's 8",
    );
    assert_fails(&d.run(&["get", "cfg", "x"]), 2, "not a whole number");
    assert_fails(
        &d.run(&["get", "cfg", "4294967296"]),
        2,
        "does not fit in 4 bytes",
    );
    assert_fails(
        &d.run(&["get", "cfg", "9"]),
        3,
        "has no entry with this key",
    );
    assert_fails(
        &d.run(&["set", "cfg", "9", "v"]),
        3,
        "has no entry with this key",
    );
    assert_fails(
        &d.run(&["set", "cfg", "1", "--hex", "abc"]),
        2,
        "hex digits",
    );
    let o = d.cmd(&["get", "cfg"]).arg(os(b"\xff")).output().unwrap();
    assert_fails(&o, 2, "a number must be valid UTF-8");
    // The writer slot is taken while a program writes.
    let writer = board.writer().unwrap();
    assert_fails(
        &d.run(&["set", "cfg", "1", "x"]),
        1,
        "already has a live writer",
    );
    drop((writer, reader, board, node));
}

#[test]
fn byte_array_keys_signed_values_and_unsupported_types() {
    let d = Domain::new();
    let node = d.node();
    let _board = node
        .service("names")
        .blackboard::<[u8; 4], i16>()
        .entry(*b"a\xffb\0", -5)
        .create()
        .unwrap();
    let o = d
        .cmd(&["get", "names"])
        .arg(os(b"a\xffb"))
        .output()
        .unwrap();
    assert_eq!(ok(&o), "-5\n");
    let o = d
        .cmd(&["set", "names"])
        .arg(os(b"a\xffb"))
        .arg("-300")
        .output()
        .unwrap();
    assert_eq!(ok(&o), "a\\xffb = -300 (version 1)\n");
    let o = d
        .cmd(&["set", "names"])
        .arg(os(b"a\xffb"))
        .arg("40000")
        .output()
        .unwrap();
    assert_fails(&o, 2, "does not fit in 2 bytes");
    assert_fails(
        &d.run(&["get", "names", "toolong"]),
        2,
        "longer than the key type's 4",
    );

    #[derive(ShmSafe, Clone, Copy)]
    #[repr(C)]
    struct Pose {
        x: f32,
        y: f32,
    }
    let _poses = node
        .service("poses")
        .blackboard::<u8, Pose>()
        .entry(0, Pose { x: 1.0, y: 2.0 })
        .create()
        .unwrap();
    assert_fails(
        &d.run(&["get", "poses", "0"]),
        4,
        "handles byte arrays and numbers",
    );
    assert_eq!(
        ok(&d.run(&["get", "poses", "0", "--hex"])),
        "0000803f00000040\n"
    );
    // Not a blackboard, no such service.
    let _events = node.service("ev").event().open_or_create().unwrap();
    assert_fails(
        &d.run(&["get", "ev", "0"]),
        4,
        "is a service of another kind",
    );
    assert_fails(
        &d.run(&["watch", "nothing"]),
        3,
        "no blackboard \"nothing\"",
    );
    let o = d
        .cmd(&["get"])
        .arg(os(b"bad\xff"))
        .arg("0")
        .output()
        .unwrap();
    assert_fails(&o, 2, "not valid UTF-8");
}

/// `watch` prints the current values, then the changes a writer in this
/// process makes: one entry of a notifying blackboard (futex), and every
/// entry of one that does not notify (polled).
#[test]
fn watch_prints_values_then_changes() {
    let d = Domain::new();
    let node = d.node();
    let board = node
        .service("state")
        .blackboard::<u8, u64>()
        .entries([(1, 10), (2, 20)])
        .notify_changes(true)
        .create()
        .unwrap();
    let writer = board.writer().unwrap();
    for (args, entry) in [
        (&["watch", "state", "2", "--count", "2"][..], 2u8),
        (&["watch", "state", "--count", "2", "--json"], 1),
    ] {
        let mut child = d.cmd(args).spawn().unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        assert_eq!(line, "conduit: watching \"state\"\n");
        let mut next = || {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line
        };
        let json = args.contains(&"--json");
        let lines = if json { 2 } else { 1 };
        let first: Vec<String> = (0..lines).map(|_| next()).collect();
        let e = writer.entry(&entry).unwrap();
        let base = e.version();
        if json {
            let v: serde_json::Value = serde_json::from_str(&first[0]).unwrap();
            assert_eq!(
                (v["key"].as_u64(), v["value"].as_u64()),
                (Some(1), Some(10))
            );
        } else {
            assert_eq!(first, vec!["2 v0 20\n".to_owned()]);
        }
        for round in 1..=2u64 {
            e.update(1000 + round);
            let line = next();
            if json {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                assert_eq!(v["value"].as_u64(), Some(1000 + round), "{line}");
                assert_eq!(v["version"].as_u64(), Some(base + round), "{line}");
            } else {
                assert_eq!(
                    line,
                    format!("{entry} v{} {}\n", base + round, 1000 + round)
                );
            }
        }
        assert!(child.wait().unwrap().success());
    }
    drop((writer, board, node));
}

#[test]
fn list_and_info_show_blackboards_and_their_entries() {
    let d = Domain::new();
    let node = d.node();
    let board = node
        .service("robot/cfg")
        .blackboard::<u16, [u8; 6]>()
        .entry(7, *b"seven\0")
        .entry(8, *b"eight\0")
        .bind_event(8, 3)
        .create()
        .unwrap();
    let _reader = board.reader().unwrap();
    let text = ok(&d.run(&["list", "services"]));
    assert!(text.contains("robot/cfg"), "{text}");
    assert!(text.contains("u16 → [u8; 6]"), "{text}");
    let lines: Vec<serde_json::Value> = ok(&d.run(&["list", "services", "--json"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let bb = lines
        .iter()
        .find(|v| v["kind"] == "blackboard")
        .expect("a blackboard line");
    assert_eq!(bb["name"], "robot/cfg");
    assert_eq!(bb["entries"][1]["key"], 8);
    assert_eq!(bb["entries"][1]["value"], "eight");
    assert_eq!(bb["entries"][1]["event"], 3);
    assert_eq!(bb["readers"].as_array().unwrap().len(), 1);
    let info = ok(&d.run(&["info", "robot/cfg"]));
    assert!(info.contains("(blackboard)"), "{info}");
    assert!(info.contains("seven"), "{info}");
    assert!(info.contains("[u8; 6]"), "{info}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&d.run(&["info", "robot/cfg", "--json"]))).unwrap();
    assert_eq!(json["entries"][0]["value"], "seven");
    assert_eq!(json["domain"], d.0.as_str());
}
