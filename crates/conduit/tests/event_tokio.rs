//! The tokio example (`examples/tokio_subscriber.rs`) as a test: a tokio
//! program receives samples and events from a publisher process, racing
//! `receive_async` and `wait_async` in `tokio::select!`.
//!
//! Needs the feature: `cargo test -p conduit --features tokio --test event_tokio`.
#![cfg(feature = "tokio")]

mod common;

#[allow(dead_code)]
#[path = "../examples/tokio_subscriber.rs"]
mod example;

use std::time::Duration;

use common::{shm_objects_containing, unique, watchdog};

fn dispatch(role: &str, args: &[String]) {
    match role {
        "publisher" => example::publisher(&args[0]).unwrap(),
        "async_signals" => async_signals_child(),
        other => panic!("unknown role {other}"),
    }
}

child_entry!(dispatch);

#[test]
fn tokio_example_receives_from_another_process() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("evt-tokio");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let received = runtime
        .block_on(example::subscribe(&domain, || {
            common::child_command("publisher", &[&domain])
                .stdout(std::process::Stdio::null())
                .spawn()
        }))
        .unwrap();
    assert_eq!(received, (1..=example::SAMPLES).collect::<Vec<_>>());
    drop(runtime);
    let _ = conduit::node::Node::cleanup(&domain);
    let left = shm_objects_containing(&format!("conduit.{domain}."));
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

#[test]
fn async_waits_are_cancel_safe() {
    use conduit::prelude::*;
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("evt-tokio-cancel");
    let node = Node::builder().domain(&domain).create().unwrap();
    let events = node.service("e").event().open_or_create().unwrap();
    let listener = events.listener().create().unwrap();
    let notifier = events.notifier().create().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    runtime.block_on(async {
        // A wait that is abandoned loses nothing.
        for round in 0..50 {
            tokio::select! {
                biased;
                _ = listener.wait_async() => panic!("nothing was notified"),
                _ = std::future::ready(()) => {}
            }
            notifier.notify(round % 8).unwrap();
            let ids = listener.wait_async().await.unwrap();
            assert!(ids.contains(round % 8));
        }
    });
    drop(runtime);
    drop((listener, notifier, events, node));
    let _ = Node::cleanup(&domain);
    assert!(shm_objects_containing(&format!("conduit.{domain}.")).is_empty());
}

/// Receives three queued real-time signals through `AsyncSignals` and
/// prints their values.
fn async_signals_child() {
    use conduit::signal::{Signal, Signals};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    runtime.block_on(async {
        let rt = Signal::realtime(1).unwrap();
        let signals = Signals::new([rt]).unwrap();
        let mut stream = conduit::tokio::AsyncSignals::new(signals).unwrap();
        println!("ready");
        let mut values = Vec::new();
        for _ in 0..3 {
            let received = stream.next().await.unwrap();
            assert_eq!(received.signal, rt);
            values.push(received.value.unwrap());
        }
        // The child runs in a libtest thread, so `Signals` uses the
        // self-pipe back end: handlers running at once on two threads may
        // write their records in either order (see the signal module's
        // pitfalls). The values, not their order, are what this checks.
        values.sort_unstable();
        println!("{values:?}");
    });
}

#[test]
fn signals_arrive_as_an_async_stream() {
    use conduit::signal::{Signal, queue};
    let _w = watchdog(Duration::from_secs(30));
    let mut child = common::spawn_child("async_signals", &[]);
    assert_eq!(common::read_line(&mut child), "ready");
    let rt = Signal::realtime(1).unwrap();
    for value in [7usize, 8, 9] {
        queue(child.id(), rt, value).unwrap();
    }
    assert_eq!(common::read_line(&mut child), "[7, 8, 9]");
    assert!(child.wait().unwrap().success());
}
