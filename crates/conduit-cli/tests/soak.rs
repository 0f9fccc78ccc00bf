//! `conduit soak` end to end: a short soak with random SIGKILLs must pass
//! with real traffic and real kills, and faults injected into a publisher
//! must make it fail, naming them (so the soak cannot pass vacuously).
//! The runs are serialised: they share two CPUs with everything else.

mod common;

use common::{shm_names, stderr};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const CONDUIT: &str = env!("CARGO_BIN_EXE_conduit");

static SERIAL: Mutex<()> = Mutex::new(());

fn domain() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "soaktest-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `conduit soak --json ARGS` in a fresh domain; returns the output,
/// the parsed summary, and checks that the domain left nothing behind.
fn soak(args: &[&str]) -> (Output, serde_json::Value) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A hung soak ends the test run instead of blocking CI.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        eprintln!("watchdog: soak test hung");
        std::process::abort();
    });
    let d = domain();
    let out = Command::new(CONDUIT)
        .args(["--domain", &d, "soak", "--json"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "{text:?}: {e}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let left = shm_names(&format!("conduit.{d}."));
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
    (out, summary)
}

fn count(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn short_soak_with_kills_passes() {
    let (out, s) = soak(&[
        "--publishers",
        "2",
        "--subscribers",
        "2",
        "--duration",
        "3s",
        "--kill-interval",
        "300ms",
        "--seed",
        "1",
    ]);
    assert!(out.status.success(), "{s}\nstderr: {}", stderr(&out));
    assert_eq!(s["passed"], true, "{s}");
    assert_eq!(count(&s, "seed"), 1);
    assert!(count(&s, "moved") > 0, "{s}");
    assert!(count(&s, "sent") > 0, "{s}");
    let kills = &s["kills"];
    assert!(kills["total"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(
        kills["total"].as_u64(),
        Some(kills["publishers"].as_u64().unwrap() + kills["subscribers"].as_u64().unwrap())
    );
    assert_eq!(count(&s, "restarts"), kills["total"].as_u64().unwrap());
    assert_eq!(count(&s, "corrupt"), 0, "{s}");
    assert_eq!(count(&s, "duplicates"), 0, "{s}");
    assert_eq!(count(&s, "lost"), 0, "{s}");
    assert_eq!(s["leftovers"].as_array().map(Vec::len), Some(0), "{s}");
    assert_eq!(s["hangs"].as_array().map(Vec::len), Some(0), "{s}");
    assert_eq!(s["unconnected"].as_array().map(Vec::len), Some(0), "{s}");
    assert_eq!(s["failures"].as_array().map(Vec::len), Some(0), "{s}");
    assert_eq!(s["violations"].as_array().map(Vec::len), Some(0), "{s}");
}

/// Injects `fault` into publisher 0 (no kills, so the faulty incarnation
/// surely runs) and expects the soak to fail naming `expected`.
fn fault_is_caught(fault: &str, key: &str, expected: &str) {
    let (out, s) = soak(&[
        "--publishers",
        "1",
        "--subscribers",
        "2",
        "--duration",
        "500ms",
        "--kill-interval",
        "0",
        "--seed",
        "2",
        "--inject-fault",
        fault,
    ]);
    assert_eq!(out.status.code(), Some(1), "{s}\nstderr: {}", stderr(&out));
    assert_eq!(s["passed"], false, "{s}");
    // Every subscriber saw the one faulty sample, and only that.
    assert_eq!(count(&s, key), 2, "{s}");
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.starts_with("conduit: soak failed: ") && l.contains(expected)),
        "{err}"
    );
    let violations = s["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 2, "{s}");
    assert!(
        violations.iter().all(|v| v
            .as_str()
            .unwrap()
            .contains(&format!(": {fault} publisher 0 "))),
        "{s}"
    );
}

#[test]
fn corrupt_payload_is_caught() {
    fault_is_caught("corrupt", "corrupt", "2 corrupt sample(s)");
}

#[test]
fn duplicate_is_caught() {
    fault_is_caught("duplicate", "duplicates", "2 duplicate(s)");
}

#[test]
fn gap_is_caught() {
    fault_is_caught("gap", "lost", "2 lost sample(s)");
}

#[test]
fn bad_options_are_usage_errors() {
    for args in [
        &["soak", "--duration", "ten"][..],
        &["soak", "--publishers", "0"],
        &["soak", "--kill-interval", "5parsecs"],
    ] {
        let out = Command::new(CONDUIT)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("conduit: "), "{}", stderr(&out));
    }
}

#[test]
fn stalled_subscriber_is_a_hang() {
    let (out, s) = soak(&[
        "--duration",
        "1500ms",
        "--kill-interval",
        "0",
        "--stall-timeout",
        "500ms",
        "--seed",
        "3",
        "--inject-fault",
        "stall",
    ]);
    assert_eq!(out.status.code(), Some(1), "{s}\nstderr: {}", stderr(&out));
    assert_eq!(s["passed"], false, "{s}");
    let hangs = s["hangs"].as_array().unwrap();
    assert!(
        hangs.iter().any(|h| h
            .as_str()
            .unwrap()
            .starts_with("subscriber 0 (incarnation 0) made no progress")),
        "{s}"
    );
    // Everything sent was still delivered once the subscriber drained.
    assert_eq!(count(&s, "lost"), 0, "{s}");
    assert!(stderr(&out).contains("hang(s)"), "{}", stderr(&out));
}

/// `--kill-interval 0` means no kills, and the header says so.
#[test]
fn kill_interval_zero_says_no_kills() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = domain();
    let out = Command::new(CONDUIT)
        .args([
            "--domain",
            &d,
            "soak",
            "--publishers",
            "1",
            "--subscribers",
            "1",
        ])
        .args(["--duration", "200ms", "--kill-interval", "0", "--seed", "3"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text.lines().next().unwrap();
    assert!(header.contains(", no kills, seed 3"), "{header}");
    assert!(!header.contains("kill every"), "{header}");
    let left = shm_names(&format!("conduit.{d}."));
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}
