//! One WaitSet over a subscriber, an event listener and an interval, fed
//! by a publisher/notifier in another process (this program started again
//! with `--child`). No event service is needed to wait on the subscriber.
//!
//! `cargo run --example event_waitset`

use std::process::Command;
use std::time::Duration;

use conduit::prelude::*;
use conduit::waitset::{Control, Event, WaitSet};

const SAMPLES: u64 = 5;
const DONE: usize = 1;
const BYE: usize = 2;

fn child(domain: &str) -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::builder().name("feeder").domain(domain).create()?;
    let topic = node
        .service("example/values")
        .publish_subscribe::<u64>()
        .subscriber_buffer(8)
        .open_or_create()?;
    let events = node.service("example/events").event().open_or_create()?;
    let publisher = topic.publisher().create()?;
    let notifier = events.notifier().create()?;
    let bye = events.listener().create()?;
    for i in 1..=SAMPLES {
        publisher.send_copy(i * 10)?;
        std::thread::sleep(Duration::from_millis(5));
    }
    notifier.notify(DONE)?;
    while !bye.wait().contains(BYE) {}
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(&args[2]);
    }
    let domain = format!("event-example-{}", std::process::id());
    let node = Node::builder().name("main").domain(&domain).create()?;
    let topic = node
        .service("example/values")
        .publish_subscribe::<u64>()
        .subscriber_buffer(8)
        .open_or_create()?;
    let events = node.service("example/events").event().open_or_create()?;
    // Sources the WaitSet borrows are declared before it.
    let subscriber = topic.subscriber().create()?;
    let listener = events.listener().create()?;
    let bye = events.notifier().create()?;
    let set = WaitSet::new()?;
    let samples = set.attach(&subscriber)?;
    let control = set.attach(&listener)?;
    let tick = set.attach_interval(Duration::from_millis(20))?;

    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child", &domain])
        .spawn()?;
    let (mut received, mut done, mut ticks) = (Vec::new(), false, 0);
    set.run(|event| {
        match event {
            // Drain until empty: the empty call re-arms the descriptor.
            Event::Ready { id, .. } if id == samples.id() => {
                while let Ok(Some(sample)) = subscriber.try_receive() {
                    println!("sample {}", *sample);
                    received.push(*sample);
                }
            }
            Event::Ready { id, .. } if id == control.id() => {
                let ids = listener.try_wait();
                // Our own BYE would land here too; DONE is the child's.
                done |= ids.contains(DONE);
            }
            Event::Interval { id, count } if id == tick.id() => ticks += count,
            _ => {}
        }
        if done && received.len() as u64 == SAMPLES {
            Control::Stop
        } else {
            Control::Continue
        }
    })?;
    bye.notify(BYE)?;
    child.wait()?;
    println!("received {received:?}, {ticks} ticks meanwhile");
    Ok(())
}
