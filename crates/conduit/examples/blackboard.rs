//! A blackboard between three processes: the parent writes the robot's
//! state (a pose and a battery level, by key); two child processes read
//! it: one takes snapshots of every entry, the other sleeps until an entry
//! changes: the pose and the battery are bound to event ids, the writer
//! notifies them through an event service of the same name, and the
//! reader waits with a `Listener` (which a WaitSet or tokio could hold next
//! to other sources). (`notify_changes(true)` would let a reader wait on
//! the entry itself instead: `ReaderEntry::wait_changed_since`.)
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
/// The event ids the entries are bound to.
const POSE_CHANGED: usize = 1;
const BATTERY_CHANGED: usize = 2;
const ROLE: &str = "CONDUIT_EXAMPLE_CHILD";

fn open(
    node: &Node,
) -> Result<(Blackboard<u32, State>, EventService), conduit::service::ServiceError> {
    let zero = State {
        x: 0.0,
        y: 0.0,
        value: 0.0,
        step: 0,
    };
    let board = node
        .service("robot/state")
        .blackboard::<u32, State>()
        .entry(POSE, zero)
        .entry(BATTERY, State { value: 1.0, ..zero })
        .bind_event(POSE, POSE_CHANGED)
        .bind_event(BATTERY, BATTERY_CHANGED)
        .open_or_create()?;
    let events = node.service("robot/state").event().open_or_create()?;
    Ok((board, events))
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
    let (board, events) = open(&node)?;
    let mut writer = board.writer()?;
    // Each update of a bound entry notifies its event.
    writer.notify_through(events.notifier().create()?)?;

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
    let (board, _) = open(&node)?;
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

/// Sleeps until the pose or the battery changes (the listener spins
/// briefly, then sleeps on its futex), reads what changed.
fn watch(domain: &str) -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::builder().name("logger").domain(domain).create()?;
    let (board, events) = open(&node)?;
    let reader = board.reader()?;
    let listener = events.listener().create()?;
    let (pose, battery) = (reader.entry(&POSE)?, reader.entry(&BATTERY)?);
    let pose_id = pose.event_id().expect("bound at creation");
    println!("ready");
    std::io::stdout().flush()?;
    let (mut seen, mut wakeups, mut battery_news) = (pose.version(), 0, 0);
    loop {
        let ids = listener.wait_timeout(Duration::from_secs(10));
        if ids.is_empty() {
            return Err("no change for 10 s".into());
        }
        wakeups += 1;
        if battery.event_id().is_some_and(|id| ids.contains(id)) {
            battery_news += 1;
        }
        // One id may stand for several updates: read the latest.
        if ids.contains(pose_id) && pose.changed_since(seen) {
            let (p, version) = pose.get_with_version()?;
            seen = version;
            if p.step == STEPS {
                println!(
                    "{wakeups} wake-ups for {STEPS} steps ({battery_news} with battery news); last pose version {version}"
                );
                return Ok(());
            }
        }
    }
}
