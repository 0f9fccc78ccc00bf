//! A blackboard between three processes: the parent writes the robot's
//! state (a pose and a battery level, by key); two child processes read
//! it: one takes snapshots of every entry, the other sleeps until the pose
//! changes (`notify_changes`: the writer wakes waiting readers).
//!
//! `cargo run --example blackboard`

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use conduit::prelude::*;

/// Every value of this blackboard: 32 bytes, no padding.
#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct State {
    x: f64,
    y: f64,
    value: f64,
    step: u64,
}

const POSE: u32 = 0;
const BATTERY: u32 = 1;
const STEPS: u64 = 200;
const ROLE: &str = "CONDUIT_EXAMPLE_CHILD";

fn open(node: &Node) -> Result<Blackboard<u32, State>, conduit::service::ServiceError> {
    let zero = State {
        x: 0.0,
        y: 0.0,
        value: 0.0,
        step: 0,
    };
    node.service("robot/state")
        .blackboard::<u32, State>()
        .entry(POSE, zero)
        .entry(BATTERY, State { value: 1.0, ..zero })
        .notify_changes(true)
        .open_or_create()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A domain of our own, so that the example never meets other programs.
    let domain = format!("example-blackboard-{}", std::process::id());
    if let Ok(role) = std::env::var(ROLE) {
        let domain = std::env::args().nth(1).expect("domain argument");
        return if role == "snapshot" {
            snapshots(&domain)
        } else {
            watch(&domain)
        };
    }
    let node = Node::builder().name("robot").domain(&domain).create()?;
    let board = open(&node)?;
    let writer = board.writer()?;

    let mut children = Vec::new();
    for role in ["snapshot", "watch"] {
        let mut child = Command::new(std::env::current_exe()?)
            .arg(&domain)
            .env(ROLE, role)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        assert_eq!(lines.next().transpose()?.as_deref(), Some("ready"));
        children.push((role, child, lines));
    }

    let pose = writer.entry(&POSE)?;
    let battery = writer.entry(&BATTERY)?;
    for step in 1..=STEPS {
        let t = step as f64 / 10.0;
        pose.update(State {
            x: t.cos(),
            y: t.sin(),
            value: t,
            step,
        });
        // The loan form: build the value, then publish it.
        let mut level = battery.loan_uninit().write(State {
            x: 0.0,
            y: 0.0,
            value: 0.0,
            step,
        });
        level.value = 1.0 - step as f64 / 1000.0;
        level.update();
        std::thread::sleep(Duration::from_millis(1));
    }
    for (role, mut child, mut lines) in children {
        let report = lines.next().transpose()?.unwrap_or_default();
        println!("{role} reader: {report}");
        child.wait()?;
    }
    Ok(())
}

/// Reads both entries every 20 ms until the last step arrives.
fn snapshots(domain: &str) -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::builder().name("display").domain(domain).create()?;
    let board = open(&node)?;
    let reader = board.reader()?;
    let (pose, battery) = (reader.entry(&POSE)?, reader.entry(&BATTERY)?);
    println!("ready");
    std::io::stdout().flush()?;
    let mut snapshots = 0;
    loop {
        let (p, b) = (pose.get()?, battery.get()?);
        snapshots += 1;
        if p.step == STEPS && b.step == STEPS {
            println!(
                "{snapshots} snapshots; last pose ({:.2}, {:.2}), battery {:.2}",
                p.x, p.y, b.value
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sleeps until the pose changes (spins briefly, then the futex).
fn watch(domain: &str) -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::builder().name("logger").domain(domain).create()?;
    let board = open(&node)?;
    let reader = board.reader()?;
    let pose = reader.entry(&POSE)?;
    println!("ready");
    std::io::stdout().flush()?;
    let (mut seen, mut changes) = (pose.version(), 0);
    loop {
        pose.wait_changed_since(seen, Some(Duration::from_secs(10)))?;
        let (p, version) = pose.get_with_version()?;
        seen = version;
        changes += 1;
        if p.step == STEPS {
            println!("woke for {changes} of {STEPS} changes of the pose (last version {version})");
            return Ok(());
        }
    }
}
