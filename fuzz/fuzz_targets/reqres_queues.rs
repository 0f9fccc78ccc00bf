//! The request/response readers of the service segment over corrupted
//! memory: a service with a client and a server, requests in flight and
//! responses queued, has its segment patched (header, static
//! configuration, port slots with the clients' pending words, request and
//! response queues and their return rings), then is used: requests sent
//! and received, responses sent (under DropOldest, so the take-back path
//! runs too) and received, ports joining and leaving, dead-port cleanup,
//! reopening, listing and details. Every step must return (data or a
//! named error), never panic, hang or touch memory outside the segment.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use conduit::node::Node;
use conduit::reqres::Overflow;
use conduit_fuzz::Patch;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Request(u64),
    Serve(u8),
    Receive(u8),
    DropPending,
    NewClient,
    NewServer,
    DropExtra,
    Cleanup,
    Reopen,
    Details,
}

#[derive(Arbitrary, Debug)]
struct Input {
    requests: u8,
    responses: u8,
    /// Patches anywhere in the segment (header included).
    patches: Vec<Patch>,
    /// Patches in the slots and queues (past the configuration).
    queue_patches: Vec<Patch>,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let domain = conduit_fuzz::domain();
    {
        let node = Node::builder()
            .name("fuzz")
            .domain(&domain)
            .create()
            .expect("node");
        let svc = node
            .service("r")
            .request_response::<u64, u64>()
            .max_clients(2)
            .max_servers(2)
            .active_requests(3)
            .response_buffer(2)
            .response_overflow(Overflow::DropOldest)
            .create()
            .expect("service");
        let client = svc.client().create().expect("client");
        let server = svc.server().create().expect("server");
        let mut pending = Vec::new();
        for i in 0..input.requests % 4 {
            if let Ok(p) = client.send_copy(u64::from(i)) {
                pending.push(p);
            }
        }
        let mut active = Vec::new();
        if let Ok(Some(a)) = server.try_receive() {
            for k in 0..input.responses % 5 {
                let _ = a.send_copy(u64::from(k));
            }
            active.push(a);
        }
        conduit_fuzz::patch_service(
            &domain,
            conduit::ServiceKind::RequestResponse,
            "r",
            128,
            &input.patches,
            &input.queue_patches,
        );

        let mut extra_clients = Vec::new();
        let mut extra_servers = Vec::new();
        for op in input.ops.iter().take(24) {
            match *op {
                Op::Request(v) => {
                    if let Ok(p) = client.send_copy(v) {
                        pending.push(p);
                    }
                }
                Op::Serve(n) => {
                    if let Ok(Some(a)) = server.try_receive() {
                        std::hint::black_box((*a, a.header(), a.is_connected()));
                        for k in 0..n % 4 {
                            let _ = a.send_copy(u64::from(k));
                        }
                        active.push(a);
                    } else {
                        active.pop();
                    }
                }
                Op::Receive(i) => {
                    if !pending.is_empty() {
                        let p = &pending[i as usize % pending.len()];
                        match p.receive_timeout(Duration::ZERO) {
                            Ok(r) => {
                                std::hint::black_box((*r, r.server_id()));
                            }
                            Err(e) => {
                                std::hint::black_box(e);
                            }
                        }
                    }
                }
                Op::DropPending => {
                    pending.pop();
                }
                Op::NewClient => {
                    if let Ok(c) = svc.client().create() {
                        let _ = c.send_copy_no_response(9);
                        extra_clients.push(c);
                    }
                }
                Op::NewServer => {
                    if let Ok(s) = svc.server().create() {
                        if let Ok(Some(a)) = s.try_receive() {
                            let _ = a.send_copy(1);
                        }
                        extra_servers.push(s);
                    }
                }
                Op::DropExtra => {
                    extra_clients.pop();
                    extra_servers.pop();
                }
                Op::Cleanup => svc.cleanup_dead_ports(),
                Op::Reopen => {
                    let _ = node.service("r").request_response::<u64, u64>().open();
                }
                Op::Details => {
                    let d = conduit::Domain::new(&domain).unwrap();
                    let _ = conduit::reqres::details(&d, "r");
                    let _ = conduit::reqres::list(&d);
                    std::hint::black_box(client.in_flight());
                    std::hint::black_box(server.undelivered());
                }
            }
        }
        drop(active);
        drop(pending);
    }
    conduit_fuzz::remove_domain(&domain);
});
