//! The publish/subscribe readers of the service segment over corrupted
//! memory: a service with a connected publisher and subscriber and samples
//! in flight has its segment patched (header, static configuration,
//! registry slots, connection links, queue heads and entries, return
//! rings), then is used: sends, receives, ports joining and leaving,
//! dead-port cleanup, reopening and listing the service.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use conduit::node::Node;
use conduit::pubsub::Qos;
use conduit_fuzz::Patch;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Send(u64),
    Receive,
    ReceiveTimeout,
    HoldAndReceive,
    NewSubscriber,
    NewPublisher,
    DropExtra,
    Update,
    Cleanup,
    Reopen,
    Details,
}

#[derive(Arbitrary, Debug)]
struct Input {
    sent: u8,
    received: u8,
    /// Patches anywhere in the segment (header included).
    patches: Vec<Patch>,
    /// Patches in the registry and connections (past the configuration).
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
        let qos = Qos {
            max_publishers: 2,
            max_subscribers: 2,
            subscriber_buffer: 4,
            history: 1,
            max_loans: 2,
            max_borrowed: 2,
            ..Qos::default()
        };
        let topic = node
            .service("q")
            .publish_subscribe::<u64>()
            .max_publishers(qos.max_publishers)
            .max_subscribers(qos.max_subscribers)
            .subscriber_buffer(qos.subscriber_buffer)
            .history(qos.history)
            .max_loans(qos.max_loans)
            .max_borrowed(qos.max_borrowed)
            .create()
            .expect("service");
        let publisher = topic.publisher().create().expect("publisher");
        let subscriber = topic.subscriber().create().expect("subscriber");
        for i in 0..input.sent % 8 {
            publisher.send_copy(u64::from(i)).expect("send");
        }
        for _ in 0..input.received % 4 {
            let _ = subscriber.try_receive().expect("receive");
        }
        conduit_fuzz::patch_service(
            &domain,
            conduit::ServiceKind::PublishSubscribe,
            "q",
            80,
            &input.patches,
            &input.queue_patches,
        );

        let mut extra_subs = Vec::new();
        let mut extra_pubs = Vec::new();
        for op in input.ops.iter().take(24) {
            match *op {
                Op::Send(v) => drop(publisher.send_copy(v)),
                Op::Receive => {
                    if let Ok(Some(s)) = subscriber.try_receive() {
                        std::hint::black_box((*s, s.sequence(), s.publisher_id()));
                    }
                }
                Op::ReceiveTimeout => {
                    let _ = subscriber.receive_timeout(Duration::ZERO).map(|s| *s);
                }
                Op::HoldAndReceive => {
                    let a = subscriber.try_receive();
                    let b = subscriber.try_receive();
                    let c = subscriber.try_receive();
                    drop((a, b, c));
                }
                Op::NewSubscriber => {
                    if let Ok(s) = topic.subscriber().create() {
                        let _ = s.try_receive().map(|s| s.map(|s| *s));
                        extra_subs.push(s);
                    }
                }
                Op::NewPublisher => {
                    if let Ok(p) = topic.publisher().create() {
                        let _ = p.send_copy(9);
                        extra_pubs.push(p);
                    }
                }
                Op::DropExtra => {
                    extra_subs.pop();
                    extra_pubs.pop();
                }
                Op::Update => {
                    publisher.update_connections();
                    std::hint::black_box(subscriber.publishers());
                }
                Op::Cleanup => topic.cleanup_dead_ports(),
                Op::Reopen => {
                    let _ = node.service("q").publish_subscribe::<u64>().open();
                }
                Op::Details => {
                    let _ = conduit::pubsub::details(&conduit::Domain::new(&domain).unwrap(), "q");
                    let _ = conduit::pubsub::list(&conduit::Domain::new(&domain).unwrap());
                }
            }
        }
    }
    conduit_fuzz::remove_domain(&domain);
});
