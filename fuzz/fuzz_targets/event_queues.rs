//! The event readers of the service segment over corrupted memory: an
//! event service with a connected notifier and listener and ids pending
//! has its segment patched (header, static configuration, registry slots,
//! the listeners' pending-id bitsets and event words), then is used:
//! notifications, waits, ports joining and leaving, dead-port cleanup,
//! reopening and listing. Every step must return (data or a named error),
//! never panic, hang or touch memory outside the segment.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use conduit::node::Node;
use conduit_fuzz::Patch;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Notify(u16),
    TryWait,
    WaitZero,
    NewListener,
    NewNotifier,
    DropExtra,
    Cleanup,
    Reopen,
    List,
}

#[derive(Arbitrary, Debug)]
struct Input {
    notified: Vec<u16>,
    /// Patches anywhere in the segment (header included).
    patches: Vec<Patch>,
    /// Patches in the registry and listener words (past the configuration).
    slot_patches: Vec<Patch>,
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
        let events = node
            .service("e")
            .event()
            .max_event_id(200usize)
            .max_notifiers(2)
            .max_listeners(2)
            .notifier_dead_event(199usize)
            .create()
            .expect("service");
        let notifier = events.notifier().create().expect("notifier");
        let listener = events.listener().create().expect("listener");
        for id in input.notified.iter().take(8) {
            let _ = notifier.notify(usize::from(*id % 256));
        }
        conduit_fuzz::patch_service(
            &domain,
            conduit::ServiceKind::Event,
            "e",
            40,
            &input.patches,
            &input.slot_patches,
        );

        let mut extra_listeners = Vec::new();
        let mut extra_notifiers = Vec::new();
        for op in input.ops.iter().take(24) {
            match *op {
                Op::Notify(id) => drop(notifier.notify(usize::from(id % 256))),
                Op::TryWait => {
                    std::hint::black_box(listener.try_wait().iter().count());
                }
                Op::WaitZero => {
                    std::hint::black_box(listener.wait_timeout(Duration::ZERO).iter().count());
                }
                Op::NewListener => {
                    if let Ok(l) = events.listener().create() {
                        std::hint::black_box(l.try_wait().iter().count());
                        extra_listeners.push(l);
                    }
                }
                Op::NewNotifier => {
                    if let Ok(n) = events.notifier().create() {
                        let _ = n.notify(7usize);
                        extra_notifiers.push(n);
                    }
                }
                Op::DropExtra => {
                    extra_listeners.pop();
                    extra_notifiers.pop();
                }
                Op::Cleanup => {
                    events.cleanup_dead_ports();
                }
                Op::Reopen => {
                    let _ = node.service("e").event().open();
                }
                Op::List => {
                    let _ = conduit::event::list(&conduit::Domain::new(&domain).unwrap());
                    std::hint::black_box(events.listeners());
                }
            }
        }
    }
    conduit_fuzz::remove_domain(&domain);
});
