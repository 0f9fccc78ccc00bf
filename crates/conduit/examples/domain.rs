//! A domain's objects and services, as a tool sees them: creates a
//! publish/subscribe service and an event service, lists the domain's
//! shared-memory objects and services, then cleans up.
//!
//! ```sh
//! cargo run -p conduit --example domain
//! ```

use conduit::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("example-domain-{}", std::process::id());
    let domain = Domain::new(&name)?;
    let node = Node::builder().name("tour").domain(&name).create()?;
    let topic = node
        .service("robot/pose")
        .publish_subscribe::<u64>()
        .open_or_create()?;
    let _publisher = topic.publisher().create()?;
    let _subscriber = topic.subscriber().create()?;
    let events = node.service("robot/alarm").event().open_or_create()?;
    let _listener = events.listener().create()?;

    println!("objects of domain {domain}:");
    for object in domain.objects()? {
        println!(
            "  {:<40} {:<16} {:>8} B",
            object.name, object.kind, object.bytes
        );
    }
    for service in conduit::pubsub::list(&domain)? {
        println!(
            "publish/subscribe {:?}: {} publisher(s), {} subscriber(s), payload {}",
            service.name, service.publishers, service.subscribers, service.payload.name
        );
    }
    for service in conduit::event::list(&domain)? {
        println!(
            "event service {:?}: ids 0..={}, {} listener(s)",
            service.name,
            service.max_event_id,
            service.listeners.len()
        );
    }

    // Dropping the last ports, services and node removes their objects;
    // `Domain::cleanup` removes what dead processes left behind.
    drop((_publisher, _subscriber, _listener, topic, events, node));
    let removed = domain.cleanup(conduit::shm::Permissions::owner_only())?;
    println!("dead nodes cleaned up: {}", removed.len());
    assert!(domain.objects()?.is_empty(), "nothing left behind");
    Ok(())
}
