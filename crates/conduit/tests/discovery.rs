//! Service discovery (`Domain::watch`) across real processes: services of
//! every pattern appear when another process creates them and disappear
//! when it drops them, or when a killed process's services are cleaned
//! up; the first look reports what exists; other domains stay invisible;
//! a service segment that never becomes readable neither hangs the watch
//! nor is reported; the watch wakes a WaitSet and (feature `tokio`) an
//! async task.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{child_command, read_line, shm_objects_containing, spawn_child, unique, watchdog};
use conduit::discovery::{ServiceEvent, ServiceId, ServiceWatch};
use conduit::node::Node;
use conduit::{Domain, ServiceKind};

fn node(domain: &str, name: &str) -> Node {
    Node::builder().name(name).domain(domain).create().unwrap()
}

fn assert_clean(domain: &str) {
    let _ = Node::cleanup(domain);
    let left = shm_objects_containing(&format!("conduit.{domain}."));
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

fn id(kind: ServiceKind, name: &str) -> ServiceId {
    ServiceId {
        kind,
        name: name.to_owned(),
    }
}

/// The four services a child makes: one of each pattern.
fn four() -> Vec<ServiceId> {
    vec![
        id(ServiceKind::PublishSubscribe, "disc/topic"),
        id(ServiceKind::Event, "disc/events"),
        id(ServiceKind::RequestResponse, "disc/rpc"),
        id(ServiceKind::Blackboard, "disc/board"),
    ]
}

/// Collects events until `want` has been seen (in any order) or 10 s pass.
fn collect(watch: &ServiceWatch, want: &[ServiceEvent]) -> Vec<ServiceEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while !want.iter().all(|w| seen.contains(w)) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "waited 10 s for {want:?}; saw {seen:?}");
        seen.extend(watch.wait(Some(left)).unwrap());
    }
    seen
}

fn appeared(ids: &[ServiceId]) -> Vec<ServiceEvent> {
    ids.iter().cloned().map(ServiceEvent::Appeared).collect()
}

fn disappeared(ids: &[ServiceId]) -> Vec<ServiceEvent> {
    ids.iter().cloned().map(ServiceEvent::Disappeared).collect()
}

fn dispatch(role: &str, args: &[String]) {
    let domain = &args[0];
    match role {
        // Creates one service of each pattern, says so, and keeps them
        // until stdin closes... or until killed.
        "creator" => {
            let n = node(domain, "creator");
            let _p = n
                .service("disc/topic")
                .publish_subscribe::<u64>()
                .create()
                .unwrap();
            let _e = n.service("disc/events").event().create().unwrap();
            let _r = n
                .service("disc/rpc")
                .request_response::<u64, u64>()
                .create()
                .unwrap();
            let _b = n
                .service("disc/board")
                .blackboard::<u32, u64>()
                .entry(1, 1)
                .create()
                .unwrap();
            println!("ready");
            if args.get(1).map(String::as_str) == Some("linger") {
                std::thread::sleep(Duration::from_secs(60));
            } else {
                // Keep the services until the parent closes stdin, so
                // that it sees all four appear before they go.
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
            }
        }
        other => panic!("unknown role {other}"),
    }
}

child_entry!(dispatch);

#[test]
fn services_of_another_process_appear_then_disappear_when_it_leaves() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("disc-leave");
    let watch = Domain::new(&domain).unwrap().watch().unwrap();
    assert_eq!(watch.try_events().unwrap(), [], "an empty domain");
    let mut child: Child = child_command("creator", &[&domain])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(read_line(&mut child), "ready");
    let seen = collect(&watch, &appeared(&four()));
    assert_eq!(seen.len(), 4, "each service once: {seen:?}");
    // Closing stdin lets the child drop its services and exit.
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    // The child dropped its services on exit: their segments are removed.
    collect(&watch, &disappeared(&four()));
    assert_eq!(watch.services().len(), 0);
    assert_clean(&domain);
}

#[test]
fn services_of_a_killed_process_disappear_when_cleaned_up() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("disc-kill");
    let mut child = spawn_child("creator", &[&domain, "linger"]);
    assert_eq!(read_line(&mut child), "ready");
    // The first look reports what exists.
    let watch = Domain::new(&domain).unwrap().watch().unwrap();
    let first = watch.try_events().unwrap();
    for e in appeared(&four()) {
        assert!(first.contains(&e), "{e:?} missing from {first:?}");
    }
    let mut names: Vec<String> = watch.services().into_iter().map(|s| s.name).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["disc/board", "disc/events", "disc/rpc", "disc/topic"]
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // Nothing changes by itself: the dead node's services stay until a
    // cleanup frees them.
    assert_eq!(watch.wait(Some(Duration::from_millis(100))).unwrap(), []);
    Node::cleanup(&domain).unwrap();
    collect(&watch, &disappeared(&four()));
    assert_clean(&domain);
}

#[test]
fn another_domain_is_invisible() {
    let domain = unique("disc-mine");
    let other = unique("disc-other");
    let watch = Domain::new(&domain).unwrap().watch().unwrap();
    assert_eq!(watch.try_events().unwrap(), []);
    let n = node(&other, "elsewhere");
    let svc = n.service("disc/x").event().create().unwrap();
    assert_eq!(watch.wait(Some(Duration::from_millis(100))).unwrap(), []);
    drop((svc, n));
    assert_clean(&other);
    assert_clean(&domain);
}

#[test]
fn a_service_segment_that_never_becomes_readable_is_skipped_without_hanging() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("disc-garbage");
    let watch = Domain::new(&domain).unwrap().watch().unwrap();
    assert_eq!(watch.try_events().unwrap(), []);
    // A file named like a service segment that holds garbage (as a
    // creator killed before writing the configuration leaves, or another
    // process's scribbling).
    let garbage = format!("/dev/shm/conduit.{domain}.svc.00000000deadbeef");
    std::fs::write(&garbage, [0xa5u8; 4096]).unwrap();
    let start = Instant::now();
    assert_eq!(watch.wait(Some(Duration::from_millis(300))).unwrap(), []);
    assert!(start.elapsed() < Duration::from_secs(5), "bounded");
    // Not looked at again on every later event: a real service after it
    // is reported as usual.
    let n = node(&domain, "real");
    let svc = n.service("disc/real").event().create().unwrap();
    let seen = collect(&watch, &appeared(&[id(ServiceKind::Event, "disc/real")]));
    assert_eq!(seen.len(), 1, "{seen:?}");
    std::fs::remove_file(&garbage).unwrap();
    drop((svc, n));
    collect(&watch, &disappeared(&[id(ServiceKind::Event, "disc/real")]));
    assert_clean(&domain);
}

#[test]
fn a_watch_wakes_a_waitset() {
    use conduit::waitset::WaitSet;
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("disc-waitset");
    let watch = Domain::new(&domain).unwrap().watch().unwrap();
    assert_eq!(watch.try_events().unwrap(), []);
    let n = node(&domain, "maker");
    // The node's own segment made the descriptor readable (any file of
    // /dev/shm does): a look that finds no service change drains it.
    assert_eq!(watch.try_events().unwrap(), []);
    let ws = id(ServiceKind::Event, "disc/ws");
    let set = WaitSet::new().unwrap();
    let guard = set.attach(&watch).unwrap();
    let svc = n.service("disc/ws").event().create().unwrap();
    // Other tests' files wake it too (any file of /dev/shm does); each
    // wake-up is followed by a look, until the look finds the service.
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the WaitSet never reported the new service"
        );
        if set.wait_timeout(left).unwrap().is_empty() {
            continue;
        }
        let events = watch.try_events().unwrap();
        if !events.is_empty() {
            break events;
        }
    };
    drop(guard);
    assert_eq!(seen, [ServiceEvent::Appeared(ws.clone())]);
    drop(svc);
    collect(&watch, &disappeared(&[ws]));
    drop(n);
    assert_clean(&domain);
}

#[cfg(feature = "tokio")]
#[test]
fn wait_async_reports_a_new_service() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("disc-async");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let watch = Domain::new(&domain).unwrap().watch().unwrap();
    assert_eq!(watch.try_events().unwrap(), []);
    let d2 = domain.clone();
    let maker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let n = node(&d2, "async-maker");
        let svc = n.service("disc/async").event().create().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        drop((svc, n));
    });
    let events = rt.block_on(async { watch.wait_async().await.unwrap() });
    assert_eq!(
        events,
        [ServiceEvent::Appeared(id(ServiceKind::Event, "disc/async"))]
    );
    maker.join().unwrap();
    assert_clean(&domain);
}
