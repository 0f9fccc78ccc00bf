//! A typed topic between two processes: the parent publishes robot poses,
//! a child process subscribes, blocks in `receive_timeout` and reports the
//! sum of what it saw.
//!
//! `cargo run --example pubsub_typed`

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use conduit::prelude::*;

#[derive(ShmSafe, Clone, Copy, Default, Debug)]
#[repr(C)]
struct Pose {
    x: f64,
    y: f64,
    seq: u64,
}

const ROLE: &str = "CONDUIT_EXAMPLE_CHILD";
const COUNT: u64 = 100;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A domain of our own, so that the example never meets other programs.
    let domain = format!("example-typed-{}", std::process::id());
    if let Ok(domain) = std::env::var(ROLE) {
        return subscriber(&domain);
    }
    let node = Node::builder().name("planner").domain(&domain).create()?;
    let topic = node
        .service("robot/pose")
        .publish_subscribe::<Pose>()
        .subscriber_buffer(16)
        .overflow(Overflow::Block)
        .open_or_create()?;
    let publisher = topic.publisher().create()?;

    let mut child = Command::new(std::env::current_exe()?)
        .env(ROLE, &domain)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    assert_eq!(lines.next().transpose()?.as_deref(), Some("subscribed"));

    for seq in 1..=COUNT {
        // Zero-copy: write straight into shared memory, then send.
        publisher
            .loan_uninit()?
            .write(Pose {
                x: seq as f64,
                y: 0.5,
                seq,
            })
            .send()?;
    }
    let report = lines.next().transpose()?.unwrap_or_default();
    println!("publisher sent {COUNT} poses; subscriber says: {report}");
    child.stdin.take().expect("piped").write_all(b"bye\n")?;
    child.wait()?;
    Ok(())
}

fn subscriber(domain: &str) -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::builder().name("tracker").domain(domain).create()?;
    let topic = node
        .service("robot/pose")
        .publish_subscribe::<Pose>()
        .open()?;
    let subscriber = topic.subscriber().create()?;
    println!("subscribed");
    std::io::stdout().flush()?;
    let mut sum = 0.0;
    for _ in 0..COUNT {
        let sample = subscriber.receive_timeout(Duration::from_secs(5))?;
        sum += sample.x;
    }
    println!("received {COUNT} poses, sum of x = {sum}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(())
}
