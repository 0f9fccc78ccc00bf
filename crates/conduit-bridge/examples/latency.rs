//! One-way latency of a sample through two bridges on loopback: a
//! publisher in domain A, a subscriber in domain B, two bridges (two Zenoh
//! sessions, TCP on 127.0.0.1) in this process. The payload carries the
//! send time; the subscriber (another thread, same clock) takes the
//! difference.
//!
//! `cargo run --release -p conduit-bridge --example latency [samples]`

use std::time::{Duration, Instant};

use conduit::node::Node;
use conduit_bridge::Bridge;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let samples: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let pid = std::process::id();
    let (a, b) = (format!("lat-a-{pid}"), format!("lat-b-{pid}"));
    let prefix = format!("conduit-latency/{pid}");
    let (pa, pb) = (free_port(), free_port());
    let bridge_a = Bridge::builder()
        .domain(&a)
        .key_prefix(&prefix)
        .listen(&format!("tcp/127.0.0.1:{pa}"))
        .multicast_scouting(false)
        .announce_period(Duration::from_millis(100))
        .start()?;
    let bridge_b = Bridge::builder()
        .domain(&b)
        .key_prefix(&prefix)
        .listen(&format!("tcp/127.0.0.1:{pb}"))
        .connect(&format!("tcp/127.0.0.1:{pa}"))
        .multicast_scouting(false)
        .announce_period(Duration::from_millis(100))
        .start()?;
    let epoch = Instant::now();

    let b_name = b.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || -> Vec<u64> {
        let node = Node::builder().domain(&b_name).create().expect("node B");
        let service = node
            .service("latency")
            .publish_subscribe::<u64>()
            .subscriber_buffer(64)
            .open_or_create()
            .expect("service B");
        let subscriber = service.subscriber().create().expect("subscriber B");
        ready_tx.send(()).expect("main thread");
        let mut out = Vec::new();
        while out.len() < samples {
            match subscriber.receive_timeout(Duration::from_secs(10)) {
                Ok(sample) => {
                    let now = epoch.elapsed().as_nanos() as u64;
                    out.push(now.saturating_sub(*sample));
                }
                Err(_) => break,
            }
        }
        out
    });
    ready_rx.recv()?;
    let node = Node::builder().domain(&a).create()?;
    let service = node
        .service("latency")
        .publish_subscribe::<u64>()
        .subscriber_buffer(64)
        .open_or_create()?;
    let publisher = service.publisher().create()?;
    // Wait (bounded) for the path: bridge B's publisher in B.
    let domain_b = conduit::Domain::new(&b)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while conduit::pubsub::list(&domain_b)?
        .iter()
        .all(|s| s.name != "latency" || s.publishers == 0)
    {
        if Instant::now() > deadline {
            return Err("the bridges did not connect".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..samples {
        publisher.send_copy(epoch.elapsed().as_nanos() as u64)?;
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut latencies = receiver.join().map_err(|_| "receiver panicked")?;
    latencies.sort_unstable();
    if latencies.is_empty() {
        return Err("no sample arrived".into());
    }
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!(
        "{} of {samples} samples A→B through two bridges (loopback TCP): \
         min {:.1} µs, median {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        latencies.len(),
        at(0.0),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    drop(publisher);
    drop(service);
    drop(node);
    bridge_b.stop()?;
    bridge_a.stop()?;
    Ok(())
}
