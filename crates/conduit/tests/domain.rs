//! `Domain` across real processes: a domain lists every object its
//! processes made, by kind; `Domain::cleanup` frees exactly what a
//! SIGKILLed process left (its node, its publisher's data segment, its
//! ports in services others still use) and nothing of the living.

mod common;

use std::time::Duration;

use conduit::prelude::*;
use conduit::shm::{Permissions, Segment};
use conduit::{DomainObject, ObjectKind, ServiceKind};

/// The two services both processes use: topic `t` and event service `e`.
fn services(node: &Node) -> (PubSubService<u64>, EventService) {
    let topic = node
        .service("t")
        .publish_subscribe::<u64>()
        .open_or_create()
        .unwrap();
    let events = node.service("e").event().open_or_create().unwrap();
    (topic, events)
}

fn dispatch(role: &str, args: &[String]) {
    let domain = &args[0];
    match role {
        // Holds a publisher, a subscriber and a notifier until killed.
        "ports" => {
            let node = Node::builder()
                .name("victim")
                .domain(domain)
                .create()
                .unwrap();
            let (topic, events) = services(&node);
            let _publisher = topic.publisher().create().unwrap();
            let _subscriber = topic.subscriber().create().unwrap();
            let _notifier = events.notifier().create().unwrap();
            println!("ready {}", node.id());
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        // Runs with $CONDUIT_DOMAIN set by the parent: reports what each
        // way of reading it makes of the value, one line each.
        "env_domain" => {
            println!(
                "try_default_domain {:?}",
                conduit::shm::try_default_domain()
            );
            println!("default_domain {:?}", conduit::shm::default_domain());
            println!(
                "from_env {:?}",
                Domain::from_env().map(|d| d.name().to_owned())
            );
            println!(
                "node {:?}",
                Node::builder()
                    .name("env")
                    .create()
                    .map(|n| n.domain().to_owned())
                    .map_err(|e| e.to_string())
            );
        }
        other => panic!("unknown role {other}"),
    }
}

child_entry!(dispatch);

fn kinds(domain: &Domain) -> Vec<ObjectKind> {
    let mut k: Vec<ObjectKind> = domain.objects().unwrap().iter().map(|o| o.kind).collect();
    k.sort_by_key(|k| format!("{k:?}"));
    k
}

#[test]
fn cleanup_frees_what_a_killed_process_left_and_nothing_else() {
    let _w = common::watchdog(Duration::from_secs(30));
    let name = common::unique("domain");
    let domain = Domain::new(&name).unwrap();
    let mut child = common::spawn_child("ports", &[&name]);
    let line = common::read_line(&mut child);
    let victim = line.strip_prefix("ready ").expect("ready line").to_owned();

    // The survivor uses both services.
    let node = Node::builder()
        .name("survivor")
        .domain(&name)
        .create()
        .unwrap();
    let (topic, events) = services(&node);
    let subscriber = topic.subscriber().create().unwrap();
    let listener = events.listener().create().unwrap();
    assert_eq!(
        kinds(&domain),
        vec![
            ObjectKind::Node,
            ObjectKind::Node,
            ObjectKind::PublisherData,
            ObjectKind::Service(ServiceKind::Event),
            ObjectKind::Service(ServiceKind::PublishSubscribe),
        ]
    );
    let services = conduit::pubsub::list(&domain).unwrap();
    assert_eq!((services[0].publishers, services[0].subscribers), (1, 2));
    // The publisher's data segment names its owner, the victim's node.
    let data = domain
        .objects()
        .unwrap()
        .into_iter()
        .find(|o| o.kind == ObjectKind::PublisherData)
        .unwrap();
    let owner = domain.data_segment_owner(&data, Permissions::owner_only());
    assert_eq!(owner.map(|id| id.to_string()), Some(victim.clone()));
    let missing = conduit::DomainObject {
        name: "pub.none".into(),
        ..data.clone()
    };
    assert_eq!(
        domain.data_segment_owner(&missing, Permissions::owner_only()),
        None
    );
    // Not a data segment: no owner.
    let not_data = conduit::DomainObject {
        kind: ObjectKind::Node,
        ..data.clone()
    };
    assert_eq!(
        domain.data_segment_owner(&not_data, Permissions::owner_only()),
        None
    );

    // Alive: nothing to clean.
    assert!(
        domain
            .cleanup(Permissions::owner_only())
            .unwrap()
            .is_empty()
    );
    assert_eq!(domain.objects().unwrap().len(), 5);

    child.kill().unwrap();
    child.wait().unwrap();
    let removed = domain.cleanup(Permissions::owner_only()).unwrap();
    assert_eq!(
        removed.iter().map(|id| id.to_string()).collect::<Vec<_>>(),
        vec![victim]
    );
    // The dead node and its publisher's data are gone; the services and
    // the survivor's node stay, with only the survivor's ports.
    assert_eq!(
        kinds(&domain),
        vec![
            ObjectKind::Node,
            ObjectKind::Service(ServiceKind::Event),
            ObjectKind::Service(ServiceKind::PublishSubscribe),
        ]
    );
    let details = conduit::pubsub::details(&domain, "t").unwrap().unwrap();
    assert!(details.publishers.is_empty());
    assert_eq!(details.subscribers.len(), 1);
    assert_eq!(details.subscribers[0].id, subscriber.id());
    let events_info = conduit::event::list(&domain).unwrap();
    assert_eq!(events_info[0].notifiers, 0);
    assert_eq!(events_info[0].listeners[0].0, listener.id());

    drop((subscriber, listener, topic, events, node));
    assert!(
        domain.objects().unwrap().is_empty(),
        "{:?}",
        domain.objects()
    );
}

#[test]
fn objects_of_other_kinds_are_listed_and_removable() {
    let name = common::unique("domain");
    let domain = Domain::new(&name).unwrap();
    let segment = Segment::builder("mine.1")
        .domain(&name)
        .size(64)
        .create()
        .unwrap();
    let objects = domain.objects().unwrap();
    assert_eq!(objects.len(), 1);
    let object: &DomainObject = &objects[0];
    assert_eq!(
        (object.name.as_str(), object.kind),
        ("mine.1", ObjectKind::Segment)
    );
    assert_eq!(object.file_name(), format!("conduit.{name}.mine.1"));
    assert!(object.bytes >= 64);
    assert!(Domain::all_objects().unwrap().iter().any(|o| o == object));
    domain.remove_object(object).unwrap();
    assert!(domain.objects().unwrap().is_empty());
    // A second removal is a named error, not a crash.
    assert!(matches!(
        domain.remove_object(object),
        Err(conduit::shm::RemoveError::NotFound { .. })
    ));
    drop(segment);
}

#[test]
fn invalid_domain_names_are_errors() {
    for bad in ["", "a.b", "a/b", "with space", "ü", &"x".repeat(65)] {
        assert!(Domain::new(bad).is_err(), "{bad:?} accepted");
    }
    assert!(Domain::new("ok_1-2").is_ok());
}

/// `$CONDUIT_DOMAIN` as the library reads it: `default` when unset or
/// empty, the value when valid, and an error (never a silent `default`)
/// when it is not UTF-8 (`default_domain` alone keeps ignoring it).
#[test]
fn domain_from_the_environment() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let _w = common::watchdog(Duration::from_secs(30));
    let report = |value: Option<&OsStr>| {
        let mut cmd = common::child_command("env_domain", &["unused"]);
        match value {
            Some(v) => cmd.env("CONDUIT_DOMAIN", v),
            None => cmd.env_remove("CONDUIT_DOMAIN"),
        };
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };

    let bad = report(Some(OsStr::from_bytes(b"a\xff")));
    assert!(
        bad.contains(
            r#"try_default_domain Err(NotUtf8 { what: "$CONDUIT_DOMAIN", value: "a\xFF" })"#
        ),
        "{bad}"
    );
    assert!(bad.contains("default_domain \"default\""), "{bad}");
    assert!(bad.contains("from_env Err(NotUtf8"), "{bad}");
    assert!(
        bad.contains(r#"node Err("$CONDUIT_DOMAIN \"a\\xFF\" is not valid UTF-8")"#),
        "{bad}"
    );

    let unset = report(None);
    assert!(
        unset.contains("try_default_domain Ok(\"default\")"),
        "{unset}"
    );
    assert!(unset.contains("from_env Ok(\"default\")"), "{unset}");
    let empty = report(Some(OsStr::new("")));
    assert!(
        empty.contains("try_default_domain Ok(\"default\")"),
        "{empty}"
    );

    // A valid value is used (the node would create objects: not created
    // here, only the name is read).
    let name = common::unique("envdom");
    let set = report(Some(OsStr::new(&name)));
    assert!(
        set.contains(&format!("try_default_domain Ok({name:?})")),
        "{set}"
    );
    assert!(set.contains(&format!("from_env Ok({name:?})")), "{set}");
    assert!(set.contains(&format!("node Ok({name:?})")), "{set}");
    let _ = Node::cleanup(&name);
    assert!(Domain::new(&name).unwrap().objects().unwrap().is_empty());
}

/// An open service reports the same details as a tool's read of it.
#[test]
fn open_service_reports_its_details() {
    let name = common::unique("details");
    let node = Node::builder().name("d").domain(&name).create().unwrap();
    let (topic, _events) = services(&node);
    let publisher = topic.publisher().create().unwrap();
    let subscriber = topic.subscriber().create().unwrap();
    publisher.send_copy(7).unwrap();
    let own = topic.details();
    assert_eq!(own.connections.len(), 1);
    assert_eq!(own.connections[0].queued, 1);
    assert_eq!(own.connections[0].publisher, publisher.id());
    assert_eq!(own.connections[0].subscriber, subscriber.id());
    let read = conduit::pubsub::details(&Domain::new(&name).unwrap(), "t")
        .unwrap()
        .unwrap();
    assert_eq!(own.connections, read.connections);
    assert_eq!(own.info.segment, read.info.segment);
    assert_eq!(own.publishers, read.publishers);
    drop((publisher, subscriber, topic, _events, node));
    assert!(Domain::new(&name).unwrap().objects().unwrap().is_empty());
}
