//! A tokio program waits, with `Listener::wait_async`, for the changes of
//! a blackboard entry bound to an event id, while a writer in another
//! process updates it.
//!
//! Needs the feature: `cargo test -p conduit --features tokio --test blackboard_tokio`.
#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use common::{read_line, shm_objects_containing, spawn_child, unique, watchdog};
use conduit::prelude::*;

const BOARD: &str = "robot/async";
const EVENT: usize = 3;
const ROUNDS: u64 = 200;

fn open(node: &Node) -> (Blackboard<u32, u64>, EventService) {
    let board = node
        .service(BOARD)
        .blackboard::<u32, u64>()
        .entry(0, 0)
        .entry(1, 0)
        .bind_event(0, EVENT)
        .open_or_create()
        .unwrap();
    let events = node.service(BOARD).event().open_or_create().unwrap();
    (board, events)
}

fn dispatch(role: &str, args: &[String]) {
    assert_eq!(role, "writer");
    let node = Node::builder().domain(&args[0]).create().unwrap();
    let (board, events) = open(&node);
    let mut writer = board.writer().unwrap();
    writer
        .notify_through(events.notifier().create().unwrap())
        .unwrap();
    let entry = writer.entry(&0).unwrap();
    let other = writer.entry(&1).unwrap();
    println!("writing");
    for round in 1..=ROUNDS {
        entry.update(round * 10);
        other.update(round);
        // Now and then a pause, so that the waiter falls asleep.
        if round % 7 == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
}

child_entry!(dispatch);

#[test]
fn an_async_reader_waits_for_changes_through_a_bound_event() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("bb-tokio");
    let node = Node::builder().domain(&domain).create().unwrap();
    let (board, events) = open(&node);
    let reader = board.reader().unwrap();
    let entry = reader.entry(&0).unwrap();
    let id = entry.event_id().expect("bound");
    let listener = events.listener().create().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let mut writer = spawn_child("writer", &[&domain]);
    assert_eq!(read_line(&mut writer), "writing");
    let wakeups = runtime.block_on(async {
        let mut seen = 0;
        let mut wakeups = 0u64;
        while seen < ROUNDS {
            let ids = listener.wait_async().await.unwrap();
            assert!(ids.iter().all(|i| i == id), "only entry 0 is bound");
            wakeups += 1;
            if entry.poll_changed_since(seen).is_some() {
                let (value, version) = entry.get_with_version().unwrap();
                assert_eq!(value, version * 10);
                assert!(version > seen);
                seen = version;
            }
        }
        wakeups
    });
    eprintln!("{wakeups} wake-ups");
    assert!(writer.wait().unwrap().success());
    drop((reader, listener, events, board, node, runtime));
    let _ = Node::cleanup(&domain);
    let left = shm_objects_containing(&format!("conduit.{domain}."));
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}
