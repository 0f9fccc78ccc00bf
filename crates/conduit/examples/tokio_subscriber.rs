//! A tokio program that receives samples and events from a publisher in
//! another process, racing `Subscriber::receive_async` and
//! `Listener::wait_async` with `tokio::select!` (no WaitSet).
//!
//! `cargo run --example tokio_subscriber --features tokio`: the program
//! starts itself again as the publisher child.

use std::process::{Child, Command};

use conduit::prelude::*;

/// Samples the child publishes.
pub const SAMPLES: u64 = 16;
/// Event: the publisher sent everything.
pub const DONE: usize = 1;
/// Event: the subscriber got everything, the publisher may exit.
pub const ACK: usize = 2;

fn node(domain: &str, name: &str) -> Result<Node, Box<dyn std::error::Error>> {
    Ok(Node::builder().name(name).domain(domain).create()?)
}

/// The child: publishes `SAMPLES` counters, notifies `DONE`, waits for `ACK`.
pub fn publisher(domain: &str) -> Result<(), Box<dyn std::error::Error>> {
    let node = node(domain, "publisher")?;
    let topic = node
        .service("example/counter")
        .publish_subscribe::<u64>()
        .subscriber_buffer(SAMPLES as usize)
        .open_or_create()?;
    let events = node.service("example/control").event().open_or_create()?;
    let done = events.notifier().create()?;
    let ack = events.listener().create()?;
    let publisher = topic.publisher().create()?;
    for i in 1..=SAMPLES {
        publisher.send_copy(i)?;
    }
    done.notify(DONE)?;
    while !ack.wait().contains(ACK) {}
    Ok(())
}

/// The parent: subscribes, starts the publisher with `spawn`, and receives
/// asynchronously. Returns the samples received.
pub async fn subscribe(
    domain: &str,
    spawn: impl FnOnce() -> std::io::Result<Child>,
) -> Result<Vec<u64>, Box<dyn std::error::Error>> {
    let node = node(domain, "subscriber")?;
    let topic = node
        .service("example/counter")
        .publish_subscribe::<u64>()
        .subscriber_buffer(SAMPLES as usize)
        .open_or_create()?;
    let events = node.service("example/control").event().open_or_create()?;
    let subscriber = topic.subscriber().create()?;
    let listener = events.listener().create()?;
    let ack = events.notifier().create()?;
    let mut child = spawn()?;
    let mut received = Vec::new();
    let mut done = false;
    while !(done && received.len() as u64 == SAMPLES) {
        tokio::select! {
            sample = subscriber.receive_async() => received.push(*sample?),
            ids = listener.wait_async() => done |= ids?.contains(DONE),
        }
    }
    ack.notify(ACK)?;
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("publisher failed: {status}").into());
    }
    Ok(received)
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--publisher") {
        return publisher(&args[2]);
    }
    let domain = format!("tokio-example-{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let received = runtime.block_on(subscribe(&domain, || {
        Command::new(std::env::current_exe()?)
            .args(["--publisher", &domain])
            .spawn()
    }))?;
    println!("received {received:?} from the publisher process");
    Node::cleanup(&domain)?;
    Ok(())
}
