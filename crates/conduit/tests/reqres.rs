//! Request/response across real processes: round trips, streaming, two
//! servers, a server that drops a request unanswered, a killed server, a
//! killed client, wrong types and full limits.

mod common;

use std::process::Child;
use std::time::Duration;

use common::{read_line, shm_objects_containing, spawn_child, unique, watchdog};
use conduit::node::Node;
use conduit::prelude::*;
use conduit::reqres::{
    ClientCreateError, LoanError, Overflow, RequestSendError, ResponseError, ResponseSendError,
    ServerCreateError,
};
use conduit::service::ServiceError;

#[derive(ShmSafe, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct Plan {
    /// Request number, chosen by the client.
    n: u64,
    /// How many responses to stream back.
    steps: u64,
}

#[derive(ShmSafe, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct Step {
    n: u64,
    step: u64,
    /// Which server answered (its tag).
    tag: u64,
}

fn node(domain: &str, name: &str) -> Node {
    Node::builder().name(name).domain(domain).create().unwrap()
}

fn service(node: &Node, name: &str) -> ReqResService<Plan, Step> {
    node.service(name)
        .request_response::<Plan, Step>()
        .open_or_create()
        .unwrap()
}

fn kill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn assert_clean(domain: &str) {
    let _ = Node::cleanup(domain);
    let left = shm_objects_containing(&format!("conduit.{domain}."));
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

/// A flag that turns true when stdin reaches its end (the parent closed
/// it: time to stop and report).
fn stdin_closed() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let set = flag.clone();
    std::thread::spawn(move || {
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        set.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    flag
}

/// Answers `plan.steps` responses to each request (`tag` in each), then
/// ends the stream.
fn answer(active: ActiveRequest<'_, Plan, Step>, tag: u64) {
    for step in 0..active.steps {
        active
            .loan_uninit()
            .unwrap()
            .write(Step {
                n: active.n,
                step,
                tag,
            })
            .send()
            .unwrap();
    }
}

/// Receives the whole stream of `pending`.
fn collect(pending: &PendingResponse<'_, Plan, Step>) -> (Vec<Step>, ResponseError) {
    let mut got = Vec::new();
    loop {
        match pending.receive_timeout(Duration::from_secs(10)) {
            Ok(r) => got.push(*r),
            Err(e) => return (got, e),
        }
    }
}

fn dispatch(role: &str, args: &[String]) {
    let domain = &args[0];
    let svc = &args[1];
    let node = node(domain, role);
    if role == "slice-server" {
        // Serves a `[u8]` → `[u8]` service (below), not the typed one.
        return slice_server(node, svc);
    }
    if role == "header-server" {
        return header_server(node, svc);
    }
    if role == "block-server" {
        return block_server(node, svc, args[2].parse().unwrap());
    }
    if role == "slow-server" {
        return slow_server(node, svc, args[2].parse().unwrap());
    }
    let service = service(&node, svc);
    match role {
        // Serves `count` requests, tagging responses with `tag`.
        "server" => {
            let count: u64 = args[2].parse().unwrap();
            let tag: u64 = args[3].parse().unwrap();
            let server = service.server().create().unwrap();
            println!("ready");
            for _ in 0..count {
                let active = server.receive().unwrap();
                answer(active, tag);
            }
            println!("served");
        }
        // Takes one request, sends two responses, then waits to be killed
        // while it holds the request.
        "holding-server" => {
            let server = service.server().create().unwrap();
            println!("ready");
            let active = server.receive().unwrap();
            for step in 0..2 {
                active
                    .send_copy(Step {
                        n: active.n,
                        step,
                        tag: 9,
                    })
                    .unwrap();
            }
            println!("holding");
            std::thread::sleep(Duration::from_secs(60));
        }
        // Sends one request (nobody reads the responses), then waits to be
        // killed with it in flight.
        "client-in-flight" => {
            let client = service.client().create().unwrap();
            let pending = client.send_copy(Plan { n: 77, steps: 0 }).unwrap();
            println!("sent");
            std::thread::sleep(Duration::from_secs(60));
            drop(pending);
        }
        // Serves `count` requests, waiting in a WaitSet (the server's
        // wake-up descriptor) instead of a blocking receive.
        "waitset-server" => {
            use conduit::waitset::WaitSet;
            let count: u64 = args[2].parse().unwrap();
            let server = service.server().create().unwrap();
            let set = WaitSet::new().unwrap();
            let _guard = set.attach(&server).unwrap();
            println!("ready");
            let mut served = 0;
            while served < count {
                set.wait().unwrap();
                while let Some(active) = server.try_receive().unwrap() {
                    answer(active, 5);
                    served += 1;
                }
            }
            println!("served");
        }
        // Serves `count` requests with `receive_async` on a
        // current-thread tokio runtime.
        #[cfg(feature = "tokio")]
        "async-server" => {
            let count: u64 = args[2].parse().unwrap();
            let server = service.server().create().unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap();
            println!("ready");
            runtime.block_on(async {
                for _ in 0..count {
                    let active = server.receive_async().await.unwrap();
                    answer(active, 6);
                }
            });
            println!("served");
        }
        // Takes `count` requests and reports, for each, whether it wants a
        // response and what answering it gives; answers those that want one.
        // Answers every request with `steps` responses (tagged `tag`) until
        // stdin closes; a client that dies mid-stream only ends that
        // stream. Then says how many requests it served and how many
        // streams a client cut.
        "tolerant-server" => {
            let tag: u64 = args[2].parse().unwrap();
            let server = service.server().create().unwrap();
            let stop = stdin_closed();
            println!("ready");
            let (mut served, mut cut) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let active = match server.receive_timeout(Duration::from_millis(20)) {
                    Ok(active) => active,
                    Err(conduit::reqres::ReceiveError::Timeout(_)) => continue,
                    Err(e) => panic!("{e}"),
                };
                served += 1;
                for step in 0..active.steps {
                    // Streams take a while, so kills land mid-stream and
                    // dead clients hold this server's chunks.
                    std::thread::sleep(Duration::from_micros(500));
                    let step = Step {
                        n: active.n,
                        step,
                        tag,
                    };
                    match active.send_copy(step) {
                        Ok(()) => {}
                        Err(conduit::reqres::ResponseSendOrLoanError::Send(
                            ResponseSendError::Disconnected,
                        )) => {
                            cut += 1;
                            break;
                        }
                        Err(e) => panic!("request {}: {e}", active.n),
                    }
                }
            }
            println!("served {served} cut {cut}");
        }
        // Sends requests (3 responses each) and checks every response
        // until stdin closes: each belongs to its request, each server's
        // steps come in order, unduplicated, and every stream ends with
        // all of them (or ServerGone). Then says how many it checked.
        "soak-client" => {
            let client = service.client().create().unwrap();
            let stop = stdin_closed();
            println!("ready");
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let pending = loop {
                    match client.send_copy(Plan { n, steps: 3 }) {
                        Ok(p) => break p,
                        Err(conduit::reqres::SendOrLoanError::Send(
                            RequestSendError::NoServer(_),
                        )) => std::thread::sleep(Duration::from_millis(1)),
                        Err(e) => panic!("request {n}: {e}"),
                    }
                };
                let mut steps: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
                let end = loop {
                    match pending.receive_timeout(Duration::from_secs(10)) {
                        Ok(r) => {
                            assert_eq!(r.n, n, "a response filed under the wrong request");
                            steps.entry(r.tag).or_default().push(r.step);
                        }
                        Err(e) => break e,
                    }
                };
                assert_eq!(end, ResponseError::EndOfStream, "request {n}: {steps:?}");
                assert!(!steps.is_empty(), "request {n}");
                for (tag, got) in &steps {
                    assert_eq!(got, &[0, 1, 2], "request {n}, server {tag}");
                }
            }
            println!("checked {n}");
        }
        "reporting-server" => {
            let count: u64 = args[2].parse().unwrap();
            let server = service.server().create().unwrap();
            println!("ready");
            for _ in 0..count {
                let active = server.receive().unwrap();
                let n = active.n;
                let sent = active.send_copy(Step { n, step: 0, tag: 7 });
                let sent = match sent {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("{e}"),
                };
                println!(
                    "{n} wants {} connected {} send {sent}",
                    active.wants_response(),
                    active.is_connected()
                );
            }
        }
        _ => panic!("unknown role {role}"),
    }
}

/// Echoes `[u8]` requests reversed as `[u8]` responses (two responses
/// each: the reversed bytes, then their length as 8 bytes), until an
/// empty request.
fn slice_server(node: Node, name: &str) {
    let svc = node
        .service(name)
        .request_response::<[u8], [u8]>()
        .open_or_create()
        .unwrap();
    let server = svc.server().max_slice_len(4096).create().unwrap();
    println!("ready");
    loop {
        let active = server.receive().unwrap();
        if active.is_empty() {
            break;
        }
        let reversed: Vec<u8> = active.iter().rev().copied().collect();
        active.send_slice_copy(&reversed).unwrap();
        let len = (active.len() as u64).to_le_bytes();
        active
            .loan_slice_uninit(8)
            .unwrap()
            .write_from_fn(|i| len[i])
            .send()
            .unwrap();
    }
    println!("done");
}

/// The user header of a request in `headers_travel_both_ways_between_processes`.
#[derive(ShmSafe, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct Trace {
    seq: u64,
    /// Sum of the payload's bytes, as the client computed it.
    sum: u32,
    flags: u16,
    kind: u8,
}

/// The user header of a response there.
#[derive(ShmSafe, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C, align(16))]
struct Stamp {
    /// The request's `Trace::seq`, echoed.
    seq: u64,
    /// The sum of the request's bytes, as the server computed it.
    sum: u64,
}

/// A `[u8]` → `u64` service with a user header on both sides.
fn header_service(node: &Node, name: &str) -> ReqResService<[u8], u64, Trace, Stamp> {
    node.service(name)
        .request_response::<[u8], u64>()
        .request_header::<Trace>()
        .response_header::<Stamp>()
        .open_or_create()
        .unwrap()
}

/// Answers each request with two responses whose headers echo the
/// request's header (seq, the byte sum it computed) and whose payloads
/// are the request's `flags` and `kind`; stops at a request of seq 0.
fn header_server(node: Node, name: &str) {
    let svc = header_service(&node, name);
    let server = svc.server().create().unwrap();
    println!("ready");
    loop {
        let active = server.receive().unwrap();
        let trace = *active.header();
        if trace.seq == 0 {
            break;
        }
        let sum: u64 = active.iter().map(|&b| u64::from(b)).sum();
        for value in [u64::from(trace.flags), u64::from(trace.kind)] {
            let mut loan = active.loan_uninit().unwrap();
            assert_eq!(*loan.header_mut(), Stamp::default(), "zeroed at loan");
            *loan.header_mut() = Stamp {
                seq: trace.seq,
                sum,
            };
            loan.write(value).send().unwrap();
        }
    }
    println!("done");
}

/// A `u64` → `u64` service whose response buffer is 2 per client
/// (`active_requests` 1) under `policy`, and whose clients may have one
/// request in flight, blocking for the next.
fn overflow_service(node: &Node, name: &str, policy: Overflow) -> ReqResService<u64, u64> {
    node.service(name)
        .request_response::<u64, u64>()
        .active_requests(1)
        .response_buffer(2)
        .request_overflow(Overflow::Block)
        .response_overflow(policy)
        .open_or_create()
        .unwrap()
}

/// Takes one request and streams `count` responses 0, 1, … under
/// `Overflow::Block` (each send waits for the client to make room).
fn block_server(node: Node, name: &str, count: u64) {
    let svc = overflow_service(&node, name, Overflow::Block);
    let server = svc
        .server()
        .block_timeout(Duration::from_secs(20))
        .create()
        .unwrap();
    println!("ready");
    let active = server.receive().unwrap();
    for i in 0..count {
        active.send_copy(i).unwrap();
    }
    drop(active);
    println!("sent");
    while server.undelivered() > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Takes `count` requests, holding each 20 ms before ending it, and says
/// which it got.
fn slow_server(node: Node, name: &str, count: u64) {
    let svc = overflow_service(&node, name, Overflow::Block);
    let server = svc.server().create().unwrap();
    println!("ready");
    let mut got = Vec::new();
    for _ in 0..count {
        let active = server.receive().unwrap();
        got.push(*active);
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("{got:?}");
}

child_entry!(dispatch);

#[test]
fn round_trip_streaming_and_end_in_one_process() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("rr");
    {
        let node = node(&domain, "solo");
        let svc = service(&node, "planner/plan");
        let server = svc.server().create().unwrap();
        let client = svc.client().create().unwrap();
        // Tools see the service, its types and its ports.
        let listed = conduit::reqres::list(&conduit::Domain::new(&domain).unwrap()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "planner/plan");
        assert_eq!((listed[0].clients, listed[0].servers), (1, 1));
        assert!(listed[0].request.name.contains("Plan"));
        assert!(listed[0].response.name.contains("Step"));
        assert!(server.try_receive().unwrap().is_none());
        let pending = client
            .loan_uninit()
            .unwrap()
            .write(Plan { n: 1, steps: 3 })
            .send()
            .unwrap();
        assert_eq!(pending.request_id(), 1);
        assert!(pending.try_receive().unwrap().is_none());
        let active = server.receive_timeout(Duration::from_secs(1)).unwrap();
        assert_eq!(*active, Plan { n: 1, steps: 3 });
        assert_eq!(active.client_id(), client.id());
        assert!(active.is_connected());
        answer(active, 5);
        for step in 0..3 {
            let r = pending.receive_timeout(Duration::from_secs(1)).unwrap();
            assert_eq!(*r, Step { n: 1, step, tag: 5 });
            assert_eq!(r.server_id(), server.id());
        }
        assert_eq!(
            pending.receive_timeout(Duration::from_secs(1)).unwrap_err(),
            ResponseError::EndOfStream
        );
        // The end is sticky.
        assert_eq!(
            pending.try_receive().unwrap_err(),
            ResponseError::EndOfStream
        );
        drop(pending);
        assert_eq!(client.in_flight(), 0);

        // Dropped without an answer: the client hears it.
        let pending = client.send_copy(Plan { n: 2, steps: 0 }).unwrap();
        drop(server.receive_timeout(Duration::from_secs(1)).unwrap());
        assert_eq!(
            pending.receive_timeout(Duration::from_secs(1)).unwrap_err(),
            ResponseError::Unanswered
        );
        drop(pending);

        // A client that drops its pending response disconnects the request.
        let pending = client.send_copy(Plan { n: 3, steps: 1 }).unwrap();
        let active = server.receive_timeout(Duration::from_secs(1)).unwrap();
        assert!(active.is_connected());
        drop(pending);
        assert!(!active.is_connected());
        assert_eq!(
            active.send_copy(Step::default()).unwrap_err().to_string(),
            ResponseSendError::Disconnected.to_string()
        );
        drop(active);

        // Many round trips recycle both pools (default QoS: a handful of
        // chunks each).
        for n in 0..200 {
            let pending = client.send_copy(Plan { n, steps: 2 }).unwrap();
            answer(server.receive_timeout(Duration::from_secs(1)).unwrap(), 1);
            let (got, end) = collect(&pending);
            assert_eq!(got.len(), 2);
            assert!(got.iter().all(|s| s.n == n));
            assert_eq!(end, ResponseError::EndOfStream);
        }
    }
    assert_clean(&domain);
}

#[test]
fn wrong_types_and_configuration_are_named() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("rr");
    {
        let node = node(&domain, "types");
        let _svc = service(&node, "typed");
        let err = node
            .service("typed")
            .request_response::<Plan, u64>()
            .open()
            .unwrap_err();
        match &err {
            ServiceError::IncompatibleType {
                existing,
                requested,
                ..
            } => {
                assert!(
                    existing.contains("Plan") && existing.contains("Step"),
                    "{err}"
                );
                assert!(
                    requested.contains("Plan") && requested.contains("u64"),
                    "{err}"
                );
            }
            other => panic!("expected IncompatibleType, got {other:?}"),
        }
        let err = node
            .service("typed")
            .request_response::<Step, Step>()
            .open()
            .unwrap_err();
        assert!(
            matches!(err, ServiceError::IncompatibleType { .. }),
            "{err}"
        );
        // A pub/sub service of the same name is another service.
        assert!(matches!(
            node.service("typed")
                .request_response::<Plan, Step>()
                .max_clients(64)
                .open()
                .unwrap_err(),
            ServiceError::IncompatibleConfig { .. }
        ));
        for bad in [
            node.service("bad")
                .request_response::<Plan, Step>()
                .max_clients(0),
            node.service("bad")
                .request_response::<Plan, Step>()
                .max_servers(65),
            node.service("bad")
                .request_response::<Plan, Step>()
                .active_requests(0),
            node.service("bad")
                .request_response::<Plan, Step>()
                .response_buffer(5000),
            node.service("bad")
                .request_response::<Plan, Step>()
                .max_loans(0),
        ] {
            let err = bad.open_or_create().unwrap_err();
            assert!(matches!(err, ServiceError::InvalidConfig(_)), "{err}");
        }
        assert!(matches!(
            node.service("missing")
                .request_response::<Plan, Step>()
                .open()
                .unwrap_err(),
            ServiceError::NotFound(_)
        ));
    }
    assert_clean(&domain);
}

#[test]
fn full_limits_are_named_errors() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("rr");
    {
        let node = node(&domain, "limits");
        let svc = node
            .service("limits")
            .request_response::<Plan, Step>()
            .max_clients(1)
            .max_servers(1)
            .active_requests(2)
            .response_buffer(1)
            .max_loans(1)
            .create()
            .unwrap();
        let client = svc.client().create().unwrap();
        // No server yet: nobody would answer.
        assert!(matches!(
            client.send_copy(Plan::default()).unwrap_err(),
            conduit::reqres::SendOrLoanError::Send(RequestSendError::NoServer(_))
        ));
        assert!(matches!(
            svc.client().create().unwrap_err(),
            ClientCreateError::ExceedsMaxClients { max: 1, .. }
        ));
        let server = svc.server().create().unwrap();
        assert!(matches!(
            svc.server().create().unwrap_err(),
            ServerCreateError::ExceedsMaxServers { max: 1, .. }
        ));
        let loan = client.loan_uninit().unwrap();
        assert!(matches!(
            client.loan_uninit().unwrap_err(),
            LoanError::ExceedsMaxLoans(1)
        ));
        let first = loan.write(Plan { n: 1, steps: 0 }).send().unwrap();
        let second = client.send_copy(Plan { n: 2, steps: 0 }).unwrap();
        assert!(matches!(
            client.loan_uninit().unwrap_err(),
            LoanError::ExceedsActiveRequests(2)
        ));
        let a1 = server.receive_timeout(Duration::from_secs(1)).unwrap();
        let a2 = server.receive_timeout(Duration::from_secs(1)).unwrap();
        // response_buffer 1 × active_requests 2: two responses fit at the
        // client, the third waits for the client to drop one.
        a1.send_copy(Step {
            n: 1,
            step: 0,
            tag: 0,
        })
        .unwrap();
        a2.send_copy(Step {
            n: 2,
            step: 0,
            tag: 0,
        })
        .unwrap();
        let full = a1.loan_uninit().unwrap().write(Step::default()).send();
        assert_eq!(full.unwrap_err(), ResponseSendError::BufferFull);
        let r = first.receive_timeout(Duration::from_secs(1)).unwrap();
        assert_eq!(r.n, 1);
        drop(r);
        a1.send_copy(Step {
            n: 1,
            step: 1,
            tag: 0,
        })
        .unwrap();
        drop(a1);
        drop(a2);
        let (got, end) = collect(&first);
        assert_eq!(got.len(), 1);
        assert_eq!(end, ResponseError::EndOfStream);
        let (got, end) = collect(&second);
        assert_eq!(got.len(), 1);
        assert_eq!(end, ResponseError::EndOfStream);
        drop(first);
        drop(second);
        assert_eq!(client.in_flight(), 0);
        assert!(client.loan_uninit().is_ok());
    }
    assert_clean(&domain);
}

/// A loan dropped unsent (written or not), on either side, gives its
/// chunk back: with `max_loans(1)` the next loan succeeds, and the pools
/// do not run dry after many rounds.
#[test]
fn loans_dropped_unsent_give_their_chunks_back() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("rr");
    {
        let node = node(&domain, "unsent");
        let svc = node
            .service("unsent")
            .request_response::<Plan, Step>()
            .active_requests(1)
            .response_buffer(1)
            .max_loans(1)
            .create()
            .unwrap();
        let client = svc.client().create().unwrap();
        let server = svc.server().create().unwrap();
        for round in 0..100u64 {
            drop(client.loan_uninit().unwrap());
            let mut written = client.loan_uninit().unwrap().write(Plan::default());
            written.n = round;
            assert_eq!(written.n, round);
            drop(written);
            let pending = client.send_copy(Plan { n: round, steps: 1 }).unwrap();
            let active = server.receive_timeout(Duration::from_secs(1)).unwrap();
            assert_eq!(active.n, round);
            drop(active.loan_uninit().unwrap());
            drop(active.loan_uninit().unwrap().write(Step::default()));
            active
                .send_copy(Step {
                    n: round,
                    step: 0,
                    tag: 0,
                })
                .unwrap();
            drop(active);
            let (got, end) = collect(&pending);
            assert_eq!(got.len(), 1);
            assert_eq!(end, ResponseError::EndOfStream);
        }
    }
    assert_clean(&domain);
}

#[test]
fn round_trips_between_two_processes() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("rr");
    {
        let node = node(&domain, "client");
        let svc = service(&node, "planner/plan");
        let client = svc.client().create().unwrap();
        let mut server = spawn_child("server", &[&domain, "planner/plan", "50", "3"]);
        assert_eq!(read_line(&mut server), "ready");
        for n in 0..50 {
            let pending = loop {
                match client.send_copy(Plan { n, steps: n % 4 }) {
                    Ok(p) => break p,
                    // The server's slot is taken but we may not see it yet.
                    Err(conduit::reqres::SendOrLoanError::Send(RequestSendError::NoServer(_))) => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => panic!("{e}"),
                }
            };
            let (got, end) = collect(&pending);
            let want: Vec<Step> = (0..n % 4).map(|step| Step { n, step, tag: 3 }).collect();
            assert_eq!(got, want);
            let expected = if n % 4 == 0 {
                ResponseError::Unanswered
            } else {
                ResponseError::EndOfStream
            };
            assert_eq!(end, expected);
        }
        assert_eq!(read_line(&mut server), "served");
        assert!(server.wait().unwrap().success());
    }
    assert_clean(&domain);
}

#[test]
fn two_servers_both_answer() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("rr");
    {
        let node = node(&domain, "client");
        let svc = service(&node, "both");
        let client = svc.client().create().unwrap();
        let mut a = spawn_child("server", &[&domain, "both", "2", "1"]);
        let mut b = spawn_child("server", &[&domain, "both", "1", "2"]);
        assert_eq!(read_line(&mut a), "ready");
        assert_eq!(read_line(&mut b), "ready");
        assert_eq!(client.servers(), 2);
        assert_eq!(client.server_ids().len(), 2);
        let pending = client.send_copy(Plan { n: 7, steps: 2 }).unwrap();
        let mut got = Vec::new();
        let mut a_id = None;
        let end = loop {
            match pending.receive_timeout(Duration::from_secs(10)) {
                Ok(r) => {
                    if r.tag == 1 {
                        a_id = Some(r.server_id());
                    }
                    got.push(*r);
                }
                Err(e) => break e,
            }
        };
        assert_eq!(end, ResponseError::EndOfStream);
        drop(pending);
        let mut tags: Vec<(u64, u64)> = got.iter().map(|s| (s.tag, s.step)).collect();
        tags.sort();
        assert_eq!(tags, [(1, 0), (1, 1), (2, 0), (2, 1)]);
        // Each server's responses arrive in order.
        for tag in [1, 2] {
            let steps: Vec<u64> = got
                .iter()
                .filter(|s| s.tag == tag)
                .map(|s| s.step)
                .collect();
            assert_eq!(steps, [0, 1]);
        }
        // Addressed to server a alone: only a answers.
        let a_id = a_id.expect("a response from server a");
        assert!(client.server_ids().contains(&a_id));
        assert!(b.wait().unwrap().success());
        let pending = client
            .loan_uninit()
            .unwrap()
            .write(Plan { n: 8, steps: 1 })
            .send_to(a_id)
            .unwrap();
        let r = pending.receive_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            (*r, r.server_id()),
            (
                Step {
                    n: 8,
                    step: 0,
                    tag: 1
                },
                a_id
            )
        );
        drop(r);
        assert_eq!(pending.receive().unwrap_err(), ResponseError::EndOfStream);
        drop(pending);
        assert!(a.wait().unwrap().success());
        // Nobody by that id any more: a named error, the chunk back.
        let err = client
            .loan_uninit()
            .unwrap()
            .write(Plan::default())
            .send_to(a_id);
        assert!(
            matches!(err, Err(RequestSendError::NoSuchServer(id)) if id == a_id),
            "{err:?}"
        );
        assert!(client.loan_uninit().is_ok());
    }
    assert_clean(&domain);
}

#[test]
fn killed_server_ends_the_stream_with_server_gone() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("rr");
    {
        let node = node(&domain, "client");
        let svc = node
            .service("crash")
            .request_response::<Plan, Step>()
            .max_servers(1)
            .open_or_create()
            .unwrap();
        let client = svc.client().create().unwrap();
        let mut server = spawn_child("holding-server", &[&domain, "crash"]);
        assert_eq!(read_line(&mut server), "ready");
        let pending = client.send_copy(Plan { n: 4, steps: 0 }).unwrap();
        assert_eq!(read_line(&mut server), "holding");
        let server_id = pending
            .receive_timeout(Duration::from_secs(5))
            .unwrap()
            .server_id();
        kill(&mut server);
        // The response that arrived before the crash is still received,
        // then the named error; receive does not hang (it looks for dead
        // servers while it waits).
        let r = pending.receive().unwrap();
        assert_eq!(
            *r,
            Step {
                n: 4,
                step: 1,
                tag: 9
            }
        );
        drop(r);
        assert_eq!(
            pending.receive().unwrap_err(),
            ResponseError::ServerGone { server: server_id }
        );
        drop(pending);
        assert_eq!(client.in_flight(), 0);
        // A new server takes the dead one's slot and answers.
        let mut next = spawn_child("server", &[&domain, "crash", "1", "4"]);
        assert_eq!(read_line(&mut next), "ready");
        let pending = client.send_copy(Plan { n: 5, steps: 1 }).unwrap();
        let (got, end) = collect(&pending);
        assert_eq!(
            got,
            [Step {
                n: 5,
                step: 0,
                tag: 4
            }]
        );
        assert_eq!(end, ResponseError::EndOfStream);
        assert!(next.wait().unwrap().success());
    }
    assert_clean(&domain);
}

#[test]
fn killed_client_disconnects_its_requests_and_its_slot_is_reused() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("rr");
    {
        let node = node(&domain, "server");
        // Small pool: 1 loan + 1 client × 1 request × 2 responses + 1.
        let svc = node
            .service("crash")
            .request_response::<Plan, Step>()
            .max_clients(1)
            .active_requests(1)
            .response_buffer(2)
            .max_loans(1)
            .open_or_create()
            .unwrap();
        let server = svc.server().create().unwrap();
        let mut client = spawn_child("client-in-flight", &[&domain, "crash"]);
        assert_eq!(read_line(&mut client), "sent");
        let active = server.receive_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(active.n, 77);
        assert!(active.is_connected());
        // Two responses the client will never read: they fill its buffer.
        active.send_copy(Step::default()).unwrap();
        active.send_copy(Step::default()).unwrap();
        kill(&mut client);
        // The server notices when the full buffer makes it look for dead
        // clients (or whoever runs the cleanup first).
        let mut sends = 0;
        let err = loop {
            match active.send_copy(Step::default()) {
                Err(conduit::reqres::ResponseSendOrLoanError::Send(e)) => {
                    if e == ResponseSendError::Disconnected {
                        break e;
                    }
                    sends += 1;
                    assert!(sends < 10_000, "never disconnected");
                    std::thread::sleep(Duration::from_millis(1));
                }
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(err, ResponseSendError::Disconnected);
        assert!(!active.is_connected());
        drop(active);
        // A new client takes the slot; the chunks the dead one held came
        // back: many round trips with a pool of 4 chunks.
        let client = svc.client().create().unwrap();
        for n in 0..20 {
            let pending = client.send_copy(Plan { n, steps: 2 }).unwrap();
            answer(server.receive_timeout(Duration::from_secs(5)).unwrap(), 0);
            let (got, end) = collect(&pending);
            assert_eq!(got.len(), 2);
            assert_eq!(end, ResponseError::EndOfStream);
        }
    }
    assert_clean(&domain);
}

#[test]
fn scribbled_queues_give_data_or_named_errors() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("rr");
    {
        let node = node(&domain, "victim");
        let svc = service(&node, "scribbled");
        let server = svc.server().create().unwrap();
        let client = svc.client().create().unwrap();
        let raw = conduit::shm::Segment::builder(
            &conduit::ServiceKind::RequestResponse.segment_name("scribbled"),
        )
        .domain(&domain)
        .open()
        .unwrap();
        let data = raw.data();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20 {
            // A request in flight, a response queued, then garbage over
            // the connection area (the second half of the segment).
            let pending = client.send_copy(Plan { n: round, steps: 1 }).ok();
            let active = server.try_receive().ok().flatten();
            if let Some(a) = &active {
                let _ = a.send_copy(Step::default());
            }
            for off in (data.len() / 2..data.len() - 8).step_by(8) {
                let v = next();
                if v % 3 == 0 {
                    continue;
                }
                let p = data.resolve::<std::sync::atomic::AtomicU64>(off).unwrap();
                // SAFETY: in bounds and aligned (resolve); atomics tolerate
                // concurrent access.
                unsafe { p.as_ref() }.store(next(), std::sync::atomic::Ordering::Relaxed);
            }
            for _ in 0..50 {
                match server.try_receive() {
                    Ok(Some(a)) => {
                        let _ = a.send_copy(Step::default());
                    }
                    Ok(None) | Err(conduit::reqres::ReceiveError::Corrupted { .. }) => {}
                    Err(e) => panic!("unexpected {e}"),
                }
                if let Some(p) = &pending {
                    match p.try_receive() {
                        Ok(_)
                        | Err(ResponseError::Corrupted { .. })
                        | Err(ResponseError::EndOfStream)
                        | Err(ResponseError::Unanswered) => {}
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
            }
            drop(active);
            drop(pending);
            let _ = client.send_copy(Plan::default());
        }
    }
    assert_clean(&domain);
}

/// A server waiting in a WaitSet and a client waiting for its responses in
/// another WaitSet, in two processes: nothing is lost between the
/// descriptor's arming and the other side's send, over many rounds.
#[test]
fn server_and_pending_responses_wait_in_a_waitset() {
    use conduit::waitset::WaitSet;
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("rr");
    const ROUNDS: u64 = 200;
    {
        let node = node(&domain, "client");
        let svc = service(&node, "ws");
        let client = svc.client().create().unwrap();
        let mut server = spawn_child("waitset-server", &[&domain, "ws", &ROUNDS.to_string()]);
        assert_eq!(read_line(&mut server), "ready");
        for n in 0..ROUNDS {
            let pending = client.send_copy(Plan { n, steps: 2 }).unwrap();
            let set = WaitSet::new().unwrap();
            let guard = set.attach(&pending).unwrap();
            let mut got = Vec::new();
            let end = loop {
                match pending.try_receive() {
                    Ok(Some(r)) => got.push(*r),
                    Ok(None) => {
                        set.wait_timeout(Duration::from_secs(10)).unwrap();
                    }
                    Err(e) => break e,
                }
            };
            drop(guard);
            assert_eq!(end, ResponseError::EndOfStream, "round {n}");
            let want: Vec<Step> = (0..2).map(|step| Step { n, step, tag: 5 }).collect();
            assert_eq!(got, want, "round {n}");
        }
        assert_eq!(read_line(&mut server), "served");
        assert!(server.wait().unwrap().success());
    }
    assert_clean(&domain);
}

/// `receive_async` on both sides across two processes; then a server
/// killed while the client awaits its stream: the await ends with
/// `ServerGone` (the async wait looks for dead servers too).
#[cfg(feature = "tokio")]
#[test]
fn async_server_and_client_and_a_killed_server() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("rr");
    {
        let node = node(&domain, "client");
        let svc = service(&node, "async");
        let client = svc.client().create().unwrap();
        let mut server = spawn_child("async-server", &[&domain, "async", "50"]);
        assert_eq!(read_line(&mut server), "ready");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        runtime.block_on(async {
            for n in 0..50 {
                let pending = client.send_copy(Plan { n, steps: 3 }).unwrap();
                let mut got = Vec::new();
                let end = loop {
                    match pending.receive_async().await {
                        Ok(r) => got.push(*r),
                        Err(conduit::tokio::AsyncResponseError::Response(e)) => break e,
                        Err(e) => panic!("{e}"),
                    }
                };
                assert_eq!(end, ResponseError::EndOfStream, "round {n}");
                assert_eq!(got.len(), 3, "round {n}");
                assert!(got.iter().all(|s| s.n == n && s.tag == 6));
            }
        });
        assert_eq!(read_line(&mut server), "served");
        assert!(server.wait().unwrap().success());

        let mut holding = spawn_child("holding-server", &[&domain, "async"]);
        assert_eq!(read_line(&mut holding), "ready");
        let pending = client.send_copy(Plan { n: 8, steps: 0 }).unwrap();
        assert_eq!(read_line(&mut holding), "holding");
        let end = runtime.block_on(async {
            let mut responses = 0;
            loop {
                match pending.receive_async().await {
                    Ok(_) => {
                        responses += 1;
                        if responses == 2 {
                            kill(&mut holding);
                        }
                    }
                    Err(conduit::tokio::AsyncResponseError::Response(e)) => break (responses, e),
                    Err(e) => panic!("{e}"),
                }
            }
        });
        assert_eq!(end.0, 2);
        assert!(
            matches!(end.1, ResponseError::ServerGone { .. }),
            "{:?}",
            end.1
        );
    }
    assert_clean(&domain);
}

/// A request sent wanting no response reaches the server, which sees it
/// wants none and cannot answer it; the request still counts against
/// `active_requests` until the server drops it, then its slot and chunk
/// come back. A normal request after it is answered as usual.
#[test]
fn fire_and_forget_requests_reach_the_server_and_cannot_be_answered() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("rr");
    {
        let node = node(&domain, "client");
        let svc = node
            .service("ff")
            .request_response::<Plan, Step>()
            .active_requests(1)
            .max_loans(1)
            .open_or_create()
            .unwrap();
        let client = svc.client().create().unwrap();
        // No server: the same named error as a normal send, chunk back.
        assert!(matches!(
            client.send_copy_no_response(Plan::default()).unwrap_err(),
            conduit::reqres::SendOrLoanError::Send(RequestSendError::NoServer(_))
        ));
        let mut server = spawn_child("reporting-server", &[&domain, "ff", "2"]);
        assert_eq!(read_line(&mut server), "ready");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while client
            .loan_uninit()
            .unwrap()
            .write(Plan { n: 1, steps: 0 })
            .send_no_response()
            .is_err()
        {
            // The server's slot may not be visible yet.
            assert!(
                std::time::Instant::now() < deadline,
                "server never connected"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            read_line(&mut server),
            "1 wants false connected false send the client wants no response to this request"
        );
        // Its request slot (active_requests 1) comes back once the server
        // dropped it; then a normal request is answered.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let pending = loop {
            match client.send_copy(Plan { n: 2, steps: 0 }) {
                Ok(p) => break p,
                Err(conduit::reqres::SendOrLoanError::Loan(LoanError::ExceedsActiveRequests(
                    1,
                ))) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "request slot never came back"
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(
            read_line(&mut server),
            "2 wants true connected true send ok"
        );
        let (got, end) = collect(&pending);
        assert_eq!(
            got,
            [Step {
                n: 2,
                step: 0,
                tag: 7
            }]
        );
        assert_eq!(end, ResponseError::EndOfStream);
        drop(pending);
        assert_eq!(client.in_flight(), 0);
        assert!(server.wait().unwrap().success());
    }
    assert_clean(&domain);
}

/// `[u8]` requests and responses of many lengths (0 … 4096 bytes) between
/// two processes, each checked byte for byte; a loan longer than the
/// port's `max_slice_len` is a named error; a typed opener of the slice
/// service is refused with both kinds named.
#[test]
fn slice_requests_and_responses_between_processes() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("rr");
    {
        let node = node(&domain, "client");
        let svc = node
            .service("bytes")
            .request_response::<[u8], [u8]>()
            .open_or_create()
            .unwrap();
        let client = svc.client().max_slice_len(4096).create().unwrap();
        let mut server = spawn_child("slice-server", &[&domain, "bytes"]);
        assert_eq!(read_line(&mut server), "ready");
        for (k, len) in [1usize, 7, 64, 100, 1000, 4096].into_iter().enumerate() {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + k) as u8).collect();
            let pending = client.send_slice_copy(&bytes).unwrap();
            let first = pending.receive_timeout(Duration::from_secs(10)).unwrap();
            let want: Vec<u8> = bytes.iter().rev().copied().collect();
            assert_eq!(&*first, &want[..], "length {len}");
            drop(first);
            let second = pending.receive_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(second.len(), 8);
            assert_eq!(
                u64::from_le_bytes((*second).try_into().unwrap()),
                len as u64
            );
            drop(second);
            assert_eq!(pending.receive().unwrap_err(), ResponseError::EndOfStream);
        }
        assert!(matches!(
            client.loan_slice_uninit(4097).unwrap_err(),
            LoanError::SliceTooLong {
                len: 4097,
                max: 4096
            }
        ));
        let err = node
            .service("bytes")
            .request_response::<u8, [u8]>()
            .open()
            .unwrap_err()
            .to_string();
        assert!(err.contains("[u8") && err.contains("requests u8"), "{err}");
        // An empty request stops the server.
        drop(client.send_slice_copy(&[]).unwrap());
        assert_eq!(read_line(&mut server), "done");
        assert!(server.wait().unwrap().success());
    }
    assert_clean(&domain);
}

/// Soak: one client sends request after request (each wants 3 responses)
/// while two server processes answer and a killer SIGKILLs a random
/// server every ~30 ms and starts a new one. Every response must belong
/// to its request (no response filed under the wrong request), each
/// server's responses to one request must be its steps 0, 1, … in order
/// with none duplicated, a stream ends with `EndOfStream` (every server
/// that got it answered in full) or `ServerGone` (one died mid-way), and
/// the client never hangs. Nothing is left in /dev/shm.
#[test]
fn soak_servers_killed_at_random_never_mix_up_responses() {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    let _w = watchdog(Duration::from_secs(120));
    let domain = unique("rr");
    const REQUESTS: u64 = 300;
    {
        let node = node(&domain, "client");
        let svc = service(&node, "soak");
        let client = svc.client().create().unwrap();
        let next_tag = std::sync::atomic::AtomicU64::new(100);
        let start = |tag: u64| {
            let mut c = spawn_child(
                "server",
                &[&domain, "soak", &u64::MAX.to_string(), &tag.to_string()],
            );
            assert_eq!(read_line(&mut c), "ready");
            c
        };
        let servers = Arc::new(Mutex::new(vec![
            start(next_tag.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
            start(next_tag.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        ]));
        let done = std::sync::atomic::AtomicBool::new(false);
        let killed = std::sync::atomic::AtomicU64::new(0);
        let (mut ended, mut gone, mut kills) = (0u64, 0u64, 0u64);
        std::thread::scope(|scope| {
            let killer = scope.spawn(|| {
                let mut n = 0u64;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(30));
                    n += 1;
                    let victim = servers.lock().unwrap().swap_remove((n % 2) as usize);
                    let mut victim = victim;
                    kill(&mut victim);
                    killed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let tag = next_tag.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    servers.lock().unwrap().push(start(tag));
                }
                n
            });
            // At least REQUESTS requests, and on until 15 kills happened.
            let mut n = 0;
            while n < REQUESTS || killed.load(std::sync::atomic::Ordering::Relaxed) < 15 {
                n += 1;
                let pending = loop {
                    match client.send_copy(Plan { n, steps: 3 }) {
                        Ok(p) => break p,
                        // Between a kill and the restart no server may be
                        // connected: try again.
                        Err(conduit::reqres::SendOrLoanError::Send(
                            RequestSendError::NoServer(_),
                        )) => {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(e) => panic!("request {n}: {e}"),
                    }
                };
                let mut steps: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
                let end = loop {
                    match pending.receive_timeout(Duration::from_secs(10)) {
                        Ok(r) => {
                            assert_eq!(r.n, n, "a response filed under the wrong request");
                            steps.entry(r.tag).or_default().push(r.step);
                        }
                        Err(e) => break e,
                    }
                };
                for (tag, got) in &steps {
                    let want: Vec<u64> = (0..got.len() as u64).collect();
                    assert_eq!(
                        got, &want,
                        "request {n}, server tag {tag}: steps out of order or duplicated"
                    );
                    assert!(got.len() <= 3, "request {n}: more responses than asked");
                }
                match end {
                    ResponseError::EndOfStream => {
                        assert!(
                            steps.values().all(|s| s.len() == 3),
                            "request {n}: {steps:?}"
                        );
                        ended += 1;
                    }
                    ResponseError::ServerGone { .. } => gone += 1,
                    other => panic!("request {n} ended with {other:?} ({steps:?})"),
                }
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            kills = killer.join().unwrap();
        });
        for mut s in servers.lock().unwrap().drain(..) {
            kill(&mut s);
        }
        eprintln!(
            "soak: {} requests, {ended} ended, {gone} cut by a kill, {kills} kills",
            ended + gone
        );
        assert!(ended > 0, "no request completed");
        assert_eq!(client.in_flight(), 0);
    }
    assert_clean(&domain);
}

/// Writes `meta` into the meta word (the chunk header's second word) of
/// every chunk of port `id`'s data segment, as a scribbling process would.
fn scribble_meta(domain: &str, id: conduit::service::PortId, meta: u64) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let seg = conduit::shm::Segment::builder(&format!("rrp.{:016x}", id.0))
        .domain(domain)
        .open()
        .unwrap();
    let data = seg.data();
    // PoolHeader words: id | chunks | chunk_size | chunks_offset | …
    let word = |i: usize| {
        let p = data.resolve::<AtomicU64>(8 * i).unwrap();
        // SAFETY: in bounds and aligned (resolve); atomics only.
        unsafe { p.as_ref() }.load(Ordering::Relaxed) as usize
    };
    let (chunks, chunk_size, chunks_offset) = (word(1), word(2), word(3));
    for i in 0..chunks {
        let p = data
            .resolve::<AtomicU64>(chunks_offset + i * chunk_size + 8)
            .unwrap();
        // SAFETY: in bounds and aligned (resolve); atomics tolerate
        // concurrent access.
        unsafe { p.as_ref() }.store(meta, Ordering::Relaxed);
    }
}

/// A slice request or response whose element count (in its chunk's meta
/// word) exceeds what the sender's pool holds is a named `Corrupted`
/// error on the reading side, never an out-of-bounds read; the ports keep
/// working afterwards.
#[test]
fn scribbled_slice_lengths_are_named_corruption() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("rr");
    let huge = 1_000_000u64 << 16;
    {
        let node = node(&domain, "victim");
        let svc = node
            .service("lengths")
            .request_response::<[u8], [u8]>()
            .open_or_create()
            .unwrap();
        let server = svc.server().max_slice_len(16).create().unwrap();
        let client = svc.client().max_slice_len(16).create().unwrap();
        let pending = client.send_slice_copy(b"four").unwrap();
        scribble_meta(&domain, client.id(), huge);
        match server.try_receive() {
            Err(conduit::reqres::ReceiveError::Corrupted { reason, .. }) => {
                assert!(reason.contains("1000000 elements"), "{reason}");
            }
            other => panic!("expected Corrupted, got {other:?}"),
        }
        drop(pending);
        // The response side: the server's chunk says 1000000 elements.
        let pending = client.send_slice_copy(b"ok").unwrap();
        let active = server.try_receive().unwrap().expect("the request");
        assert_eq!(&*active, b"ok");
        active.send_slice_copy(b"answer").unwrap();
        scribble_meta(&domain, server.id(), huge);
        match pending.try_receive() {
            Err(ResponseError::Corrupted { reason, .. }) => {
                assert!(reason.contains("1000000 elements"), "{reason}");
            }
            other => panic!("expected Corrupted, got {other:?}"),
        }
    }
    assert_clean(&domain);
}

/// A pending response dropped after its server gave the request chunk back
/// (but before the client read the end of the stream) must not mark the
/// chunk's next request as dropped: here the chunk is reused for request
/// B before A's pending response is dropped, and B is answered.
#[test]
fn dropping_a_pending_response_never_disconnects_a_later_request() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("rr");
    {
        let node = node(&domain, "reuse");
        // 1 loan + 2 requests in flight + 1 = 4 request chunks.
        let svc = node
            .service("reuse")
            .request_response::<Plan, Step>()
            .active_requests(2)
            .max_loans(1)
            .open_or_create()
            .unwrap();
        let client = svc.client().create().unwrap();
        let server = svc.server().create().unwrap();
        // Three finished requests whose chunks are back but not collected.
        for n in 0..3 {
            let pending = client.send_copy(Plan { n, steps: 0 }).unwrap();
            drop(server.try_receive().unwrap().unwrap());
            assert_eq!(pending.receive().unwrap_err(), ResponseError::Unanswered);
        }
        // A: the server gives its chunk back and ends the stream; the
        // client has not read the end yet.
        let a = client.send_copy(Plan { n: 10, steps: 0 }).unwrap();
        drop(server.try_receive().unwrap().unwrap());
        // B takes a loan with no chunk free: the returns are collected and
        // A's chunk (collected last) carries B.
        let b = client.send_copy(Plan { n: 11, steps: 1 }).unwrap();
        drop(a);
        let active = server.try_receive().unwrap().unwrap();
        assert_eq!(active.n, 11);
        assert!(active.is_connected(), "B was marked dropped by A's drop");
        active
            .send_copy(Step {
                n: 11,
                step: 0,
                tag: 0,
            })
            .unwrap();
        drop(active);
        let (got, end) = collect(&b);
        assert_eq!(got.len(), 1);
        assert_eq!(end, ResponseError::EndOfStream);
    }
    assert_clean(&domain);
}

#[test]
fn headers_travel_both_ways_between_processes() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("rr");
    {
        let node = node(&domain, "client");
        let svc = header_service(&node, "headers");
        let client = svc.client().max_slice_len(300).create().unwrap();
        // Every loan starts with a zeroed header, whatever the chunk held.
        for _ in 0..8 {
            let mut loan = client.loan_slice_uninit(1).unwrap();
            assert_eq!(*loan.header_mut(), Trace::default());
            loan.header_mut().seq = u64::MAX;
        }
        let mut server = spawn_child("header-server", &[&domain, "headers"]);
        assert_eq!(read_line(&mut server), "ready");
        for seq in 1..=40u64 {
            let len = (seq as usize * 7) % 300;
            let bytes: Vec<u8> = (0..len).map(|i| (i as u64 * 13 + seq) as u8).collect();
            let sum: u32 = bytes.iter().map(|&b| u32::from(b)).sum();
            let mut loan = client.loan_slice_uninit(len).unwrap();
            *loan.header_mut() = Trace {
                seq,
                sum,
                flags: seq as u16 * 3,
                kind: seq as u8 ^ 0x5a,
            };
            let loan = loan.write_from_slice(&bytes);
            assert_eq!(loan.header().seq, seq);
            let pending = loan.send().unwrap();
            for want in [u64::from(seq as u16 * 3), u64::from(seq as u8 ^ 0x5a)] {
                let response = pending.receive_timeout(Duration::from_secs(10)).unwrap();
                assert_eq!(
                    *response.header(),
                    Stamp {
                        seq,
                        sum: u64::from(sum)
                    },
                    "request {seq}"
                );
                assert_eq!(*response, want, "request {seq}");
            }
            assert_eq!(pending.receive().unwrap_err(), ResponseError::EndOfStream);
        }
        // A header type is part of the service's type: another one, or
        // none, is refused by name.
        let err = node
            .service("headers")
            .request_response::<[u8], u64>()
            .request_header::<Stamp>()
            .response_header::<Stamp>()
            .open()
            .unwrap_err();
        match &err {
            ServiceError::IncompatibleType {
                existing,
                requested,
                ..
            } => {
                assert!(existing.contains("with header Trace"), "{err}");
                assert!(requested.contains("with header Stamp"), "{err}");
            }
            other => panic!("expected IncompatibleType, got {other:?}"),
        }
        let err = node
            .service("headers")
            .request_response::<[u8], u64>()
            .open()
            .unwrap_err();
        assert!(
            matches!(err, ServiceError::IncompatibleType { .. }),
            "{err}"
        );
        let mut stop = client.loan_slice_uninit(0).unwrap();
        stop.header_mut().seq = 0;
        drop(stop.write_from_slice(&[]).send().unwrap());
        assert_eq!(read_line(&mut server), "done");
        assert!(server.wait().unwrap().success());
    }
    assert_clean(&domain);
}

#[test]
fn response_overflow_drop_oldest_keeps_the_newest() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("rr");
    {
        let node = node(&domain, "both");
        let svc = node
            .service("drop")
            .request_response::<u64, u64>()
            .active_requests(1)
            .response_buffer(3)
            .response_overflow(Overflow::DropOldest)
            .open_or_create()
            .unwrap();
        assert_eq!(svc.qos().response_overflow, Overflow::DropOldest);
        let client = svc.client().create().unwrap();
        let server = svc.server().create().unwrap();
        let pending = client.send_copy(1).unwrap();
        let active = server.receive().unwrap();
        // The client reads nothing: each send past the buffer of 3 takes
        // the oldest unread response back.
        for i in 0..8u64 {
            active.send_copy(i).unwrap();
        }
        assert_eq!(server.dropped_responses(), 5);
        drop(active);
        for want in [5, 6, 7] {
            assert_eq!(*pending.receive().unwrap(), want);
        }
        assert_eq!(pending.receive().unwrap_err(), ResponseError::EndOfStream);
    }
    assert_clean(&domain);
}

#[test]
fn response_overflow_drop_oldest_never_takes_an_end_of_stream_or_a_received_response() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("rr");
    {
        let node = node(&domain, "both");
        let svc = node
            .service("eos")
            .request_response::<u64, u64>()
            .active_requests(2)
            .response_buffer(1)
            .response_overflow(Overflow::DropOldest)
            .open_or_create()
            .unwrap();
        let client = svc.client().create().unwrap();
        let server = svc.server().create().unwrap();
        let first = client.send_copy(1).unwrap();
        let second = client.send_copy(2).unwrap();
        // The first request ends unanswered: its end of stream is the
        // oldest entry of the client's queue.
        drop(server.receive().unwrap());
        let active = server.receive().unwrap();
        active.send_copy(10).unwrap();
        active.send_copy(11).unwrap();
        assert_eq!(
            active.send_copy(12).unwrap_err().to_string(),
            ResponseSendError::BufferFull.to_string(),
            "the oldest unread entry is an end of stream"
        );
        // Reading takes everything queued: what the client holds is never
        // taken back.
        assert_eq!(first.receive().unwrap_err(), ResponseError::Unanswered);
        assert!(active.send_copy(12).is_err(), "the client holds both");
        assert_eq!(server.dropped_responses(), 0);
        assert_eq!(*second.receive().unwrap(), 10);
        // 10 was dropped by the client: room again.
        active.send_copy(12).unwrap();
        assert_eq!(*second.receive().unwrap(), 11);
        assert_eq!(*second.receive().unwrap(), 12);
        assert_eq!(server.dropped_responses(), 0);
    }
    assert_clean(&domain);
}

#[test]
fn response_overflow_block_waits_for_a_slow_client_and_loses_nothing() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("rr");
    {
        let node = node(&domain, "client");
        let svc = overflow_service(&node, "block", Overflow::Block);
        let client = svc.client().create().unwrap();
        let mut server = spawn_child("block-server", &[&domain, "block", "200"]);
        assert_eq!(read_line(&mut server), "ready");
        let pending = client.send_copy(1).unwrap();
        for want in 0..200u64 {
            if want % 16 == 0 {
                // Slow: the server's sends must wait, not fail or drop.
                std::thread::sleep(Duration::from_millis(2));
            }
            let response = pending.receive_timeout(Duration::from_secs(20)).unwrap();
            assert_eq!(*response, want);
        }
        assert_eq!(pending.receive().unwrap_err(), ResponseError::EndOfStream);
        assert_eq!(read_line(&mut server), "sent");
        assert!(server.wait().unwrap().success());
    }
    assert_clean(&domain);
}

#[test]
fn response_overflow_block_times_out_with_a_named_error() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("rr");
    {
        let node = node(&domain, "both");
        let svc = overflow_service(&node, "timeout", Overflow::Block);
        let client = svc.client().create().unwrap();
        let server = svc
            .server()
            .block_timeout(Duration::from_millis(30))
            .create()
            .unwrap();
        let pending = client.send_copy(1).unwrap();
        let active = server.receive().unwrap();
        active.send_copy(0).unwrap();
        active.send_copy(1).unwrap();
        assert_eq!(
            active.send_copy(2).unwrap_err().to_string(),
            ResponseSendError::Timeout(Duration::from_millis(30)).to_string()
        );
        assert_eq!(*pending.receive().unwrap(), 0);
        active.send_copy(2).unwrap();
        // A client that gave up: the blocked send ends at once.
        drop(pending);
        assert_eq!(
            active.send_copy(3).unwrap_err().to_string(),
            ResponseSendError::Disconnected.to_string()
        );
    }
    assert_clean(&domain);
}

#[test]
fn request_overflow_block_waits_for_a_stream_to_end() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("rr");
    {
        let node = node(&domain, "client");
        let svc = overflow_service(&node, "slow", Overflow::Block);
        assert_eq!(svc.qos().request_overflow, Overflow::Block);
        let client = svc
            .client()
            .block_timeout(Duration::from_secs(20))
            .create()
            .unwrap();
        let mut server = spawn_child("slow-server", &[&domain, "slow", "5"]);
        assert_eq!(read_line(&mut server), "ready");
        while client.servers() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // One request in flight at a time: each loan waits for the
        // server to end the previous request.
        for n in 0..5u64 {
            client.send_copy_no_response(n).unwrap();
        }
        assert_eq!(read_line(&mut server), "[0, 1, 2, 3, 4]");
        assert!(server.wait().unwrap().success());
    }
    assert_clean(&domain);
}

#[test]
fn request_overflow_fail_and_block_timeout_are_named() {
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("rr");
    {
        let node = node(&domain, "both");
        let mut services = Vec::new();
        for (name, policy) in [("fail", Overflow::Fail), ("block", Overflow::Block)] {
            let svc = node
                .service(name)
                .request_response::<u64, u64>()
                .active_requests(1)
                .request_overflow(policy)
                .open_or_create()
                .unwrap();
            let client = svc
                .client()
                .block_timeout(Duration::from_millis(30))
                .create()
                .unwrap();
            let _server = svc.server().create().unwrap();
            client.send_copy_no_response(1).unwrap();
            // The server never takes it: the next loan fails (at once, or
            // after the block timeout).
            assert_eq!(
                client.loan_uninit().unwrap_err(),
                LoanError::ExceedsActiveRequests(1),
                "{policy:?}"
            );
            services.push(svc);
        }
        // DropOldest cannot apply to requests; a policy named when opening
        // must be the service's.
        let err = node
            .service("bad")
            .request_response::<u64, u64>()
            .request_overflow(Overflow::DropOldest)
            .open_or_create()
            .unwrap_err();
        assert!(
            matches!(&err, ServiceError::InvalidConfig(m) if m.contains("request_overflow")),
            "{err}"
        );
        let err = node
            .service("fail")
            .request_response::<u64, u64>()
            .request_overflow(Overflow::Block)
            .open()
            .unwrap_err();
        assert!(
            matches!(err, ServiceError::IncompatibleConfig { .. }),
            "{err}"
        );
        let err = node
            .service("fail")
            .request_response::<u64, u64>()
            .response_overflow(Overflow::DropOldest)
            .open()
            .unwrap_err()
            .to_string();
        assert!(err.contains("response_overflow"), "{err}");
        assert!(
            node.service("fail")
                .request_response::<u64, u64>()
                .open()
                .is_ok()
        );
    }
    assert_clean(&domain);
}

/// Soak: two servers answer three client processes while a killer
/// SIGKILLs a random client every ~25 ms (mid-request, mid-stream or
/// between requests) and starts a new one. The servers must keep serving
/// (a dead client only ends its streams), new clients must take the dead
/// ones' slots, every live client must see each response under its own
/// request, in order, unduplicated and complete, and nothing may be left
/// in /dev/shm.
#[test]
fn soak_clients_killed_at_random_leave_servers_and_other_clients_working() {
    use std::process::Stdio;
    let _w = watchdog(Duration::from_secs(120));
    let domain = unique("rr");
    {
        let node = node(&domain, "owner");
        // The service outlives every process below.
        let _svc = service(&node, "csoak");
        let start = |role: &str, extra: &[&str]| {
            let mut args = vec![domain.as_str(), "csoak"];
            args.extend_from_slice(extra);
            let mut c = common::child_command(role, &args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            assert_eq!(read_line(&mut c), "ready");
            c
        };
        let mut servers = vec![
            start("tolerant-server", &["1"]),
            start("tolerant-server", &["2"]),
        ];
        let mut clients: Vec<Child> = (0..3).map(|_| start("soak-client", &[])).collect();
        let mut kills = 0;
        for round in 0..40usize {
            std::thread::sleep(Duration::from_millis(25));
            let mut victim = clients.swap_remove(round % clients.len());
            kill(&mut victim);
            kills += 1;
            clients.push(start("soak-client", &[]));
        }
        let mut checked = 0u64;
        for mut c in clients {
            drop(c.stdin.take());
            let line = read_line(&mut c);
            let n: u64 = line
                .strip_prefix("checked ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("client said {line:?}"));
            checked += n;
            assert!(c.wait().unwrap().success());
        }
        let mut cut = 0u64;
        for mut s in servers.drain(..) {
            drop(s.stdin.take());
            let line = read_line(&mut s);
            let words: Vec<&str> = line.split(' ').collect();
            assert!(
                words.len() == 4 && words[0] == "served" && words[2] == "cut",
                "server said {line:?}"
            );
            cut += words[3].parse::<u64>().unwrap();
            assert!(s.wait().unwrap().success());
        }
        eprintln!(
            "client soak: {kills} clients killed, {checked} requests checked by the last clients, {cut} streams cut by a kill"
        );
        assert!(checked > 0, "the last clients completed nothing");
    }
    assert_clean(&domain);
}
