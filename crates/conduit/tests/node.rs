//! Node cleanup across real processes: what a node killed at any point of
//! its life leaves behind must go.

mod common;

use std::time::Duration;

use conduit::node::Node;
use conduit::shm::{OpenError, Segment};

fn dispatch(role: &str, args: &[String]) {
    let (domain, name) = (&args[0], &args[1]);
    match role {
        // Creates a segment under a node's name and hangs in the
        // initialiser until killed: what a process killed inside
        // `NodeBuilder::create` leaves.
        "hang_in_node_init" => {
            let _ = Segment::builder(name)
                .domain(domain)
                .size(256)
                .init(|_| {
                    println!("initializing");
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                })
                .create();
        }
        other => panic!("unknown role {other}"),
    }
}

child_entry!(dispatch);

#[test]
fn cleanup_removes_node_segment_abandoned_during_creation() {
    let _w = common::watchdog(Duration::from_secs(30));
    let d = common::unique("node");
    let name = "node.00000000deadbeef";
    let mut child = common::spawn_child("hang_in_node_init", &[&d, name]);
    assert_eq!(common::read_line(&mut child), "initializing");
    // While its creator lives, cleanup must leave it alone.
    Node::cleanup(&d).unwrap();
    assert!(matches!(
        Segment::builder(name)
            .domain(&d)
            .open_timeout(Duration::ZERO)
            .open(),
        Err(OpenError::CreationTimedOut { .. })
    ));
    child.kill().unwrap();
    child.wait().unwrap();
    Node::cleanup(&d).unwrap();
    let left = common::shm_objects_containing(&format!("conduit.{d}."));
    assert!(left.is_empty(), "left behind in /dev/shm: {left:?}");
}
