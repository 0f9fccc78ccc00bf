//! Events across real processes: ids never lost, blocking waits (futex and
//! descriptor), notifier lifecycle events, a notifier killed mid-notify,
//! and a WaitSet with every kind of source (listener, subscriber,
//! descriptor, interval, deadline, termination signal).

mod common;

use std::os::fd::AsFd;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{read_line, shm_objects_containing, spawn_child, unique, watchdog};
use conduit::event::{NotifyError, PortCreateError};
use conduit::node::Node;
use conduit::prelude::*;
use conduit::service::ServiceError;
use conduit::waitset::{Control, Event, Interest, WaitSet, WakeUp};

fn node(domain: &str, name: &str) -> Node {
    Node::builder().name(name).domain(domain).create().unwrap()
}

fn assert_clean(domain: &str) {
    let _ = Node::cleanup(domain);
    let left = shm_objects_containing(&format!("conduit.{domain}."));
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

/// xorshift64: a small deterministic generator for the tests.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Cycles of the ping-pong test: 60 000 by default (about 1 s in a debug
/// build); the million with `CONDUIT_EVENT_CYCLES=1000000` (about
/// 11 s in a release build on the 2-core build machine).
fn cycles() -> u64 {
    std::env::var("CONDUIT_EVENT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000)
}

fn dispatch(role: &str, args: &[String]) {
    let domain = &args[0];
    let node = node(domain, role);
    match role {
        // Ping-pong partner: notify "ping" with id i % 64, wait for "pong".
        "pinger" => {
            let cycles: u64 = args[1].parse().unwrap();
            let ping = node.service("ping").event().open_or_create().unwrap();
            let pong = node.service("pong").event().open_or_create().unwrap();
            let listener = pong.listener().spin(Spin::NONE).create().unwrap();
            let notifier = ping.notifier().create().unwrap();
            println!("ready");
            for i in 0..cycles {
                notifier.notify((i % 64) as usize).unwrap();
                let ids = listener.wait();
                assert!(
                    ids.contains(1),
                    "cycle {i}: {:?}",
                    ids.iter().collect::<Vec<_>>()
                );
            }
            // A burst: every id, many times, without waiting in between.
            for _ in 0..100 {
                for id in 0..=255 {
                    notifier.notify(id).unwrap();
                }
            }
            while !listener.wait().contains(2) {}
        }
        // Notifies in a tight loop until killed.
        "spammer" => {
            let events = node
                .service("crash")
                .event()
                .notifier_dead_event(63)
                .open_or_create()
                .unwrap();
            let notifier = events.notifier().create().unwrap();
            println!("ready");
            let mut i = 0usize;
            loop {
                notifier.notify(i % 62).unwrap();
                i += 1;
            }
        }
        // Publishes 1..=n, each after the parent's ack (event id 1).
        "sample_pinger" => {
            let n: u64 = args[1].parse().unwrap();
            let topic = node
                .service("samples")
                .publish_subscribe::<u64>()
                .open_or_create()
                .unwrap();
            let acks = node.service("acks").event().open_or_create().unwrap();
            let ack = acks.listener().spin(Spin::NONE).create().unwrap();
            let publisher = topic.publisher().create().unwrap();
            println!("ready");
            for i in 1..=n {
                publisher.send_copy(i).unwrap();
                while !ack.wait().contains(1) {}
            }
        }
        "all_kinds" => all_kinds_in_child(domain, &node),
        // Publishes one sample and notifies id 7, then waits for id 9.
        "feeder" => {
            let topic = node
                .service("topic")
                .publish_subscribe::<u64>()
                .open_or_create()
                .unwrap();
            let events = node.service("events").event().open_or_create().unwrap();
            let back = node.service("back").event().open_or_create().unwrap();
            let bye = back.listener().create().unwrap();
            let publisher = topic.publisher().create().unwrap();
            let notifier = events.notifier().create().unwrap();
            publisher.send_copy(42).unwrap();
            notifier.notify(7).unwrap();
            while !bye.wait().contains(9) {}
        }
        other => panic!("unknown role {other}"),
    }
}

child_entry!(dispatch);

#[test]
fn ports_are_send() {
    fn send<T: Send>() {}
    send::<conduit::event::Listener>();
    send::<conduit::event::Notifier>();
    send::<conduit::event::EventService>();
    send::<Subscriber<u64>>();
    send::<Publisher<u64>>();
}

#[test]
fn notify_and_wait_in_one_process() {
    let _w = watchdog(Duration::from_secs(20));
    let domain = unique("evt-basic");
    let node = node(&domain, "basic");
    let events = node
        .service("door")
        .event()
        .max_event_id(300)
        .max_listeners(2)
        .notifier_created_event(298)
        .notifier_dropped_event(299)
        .notifier_dead_event(300)
        .open_or_create()
        .unwrap();
    let listener = events.listener().spin(Spin::NONE).create().unwrap();
    assert!(listener.try_wait().is_empty());
    let notifier = events.notifier().create().unwrap();
    assert_eq!(listener.try_wait().iter().collect::<Vec<_>>(), [298]);
    for id in [0, 5, 200, 5, 0] {
        assert_eq!(notifier.notify(id).unwrap(), 1);
    }
    let ids = listener.try_wait();
    assert_eq!(ids.iter().collect::<Vec<_>>(), [0, 5, 200]);
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(200) && !ids.contains(1));
    assert!(listener.try_wait().is_empty());
    assert!(listener.wait_timeout(Duration::from_millis(5)).is_empty());
    assert!(matches!(
        notifier.notify(301),
        Err(NotifyError::InvalidId {
            id: EventId(301),
            max: EventId(300)
        })
    ));
    // No system call while nobody sleeps: the only listener is this thread,
    // which is not waiting, and the counter is this thread's.
    let before = conduit::sync::futex_wake_calls();
    for i in 0..1000 {
        notifier.notify(i % 300).unwrap();
    }
    assert_eq!(conduit::sync::futex_wake_calls() - before, 0);
    assert_eq!(listener.wait().len(), 300);
    // A sleeping listener is woken by a thread.
    let thread_notifier = events.notifier().create().unwrap();
    let _ = listener.try_wait(); // its created event
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        let before = conduit::sync::futex_wake_calls();
        thread_notifier.notify(17).unwrap();
        // One wake call if the listener was asleep by then, none if not.
        conduit::sync::futex_wake_calls() - before
    });
    assert!(listener.wait().contains(17));
    assert!(t.join().unwrap() <= 1);
    let _ = listener.try_wait(); // its dropped event
    // Limits and configuration checks.
    let second = events.listener().create().unwrap();
    assert!(matches!(
        events.listener().create(),
        Err(PortCreateError::ExceedsMaxPorts { max: 2, .. })
    ));
    drop(second);
    drop(notifier);
    assert_eq!(listener.try_wait().iter().collect::<Vec<_>>(), [299]);
    assert!(matches!(
        node.service("door").event().notifier_dead_event(1).open(),
        Err(ServiceError::IncompatibleConfig { .. })
    ));
    assert!(matches!(
        node.service("door").event().max_event_id(301).open(),
        Err(ServiceError::IncompatibleConfig { .. })
    ));
    assert!(node.service("door").event().max_event_id(10).open().is_ok());
    assert!(matches!(
        node.service("x").event().max_event_id(5000).create(),
        Err(ServiceError::InvalidConfig(_))
    ));
    assert!(matches!(
        node.service("x")
            .event()
            .max_event_id(5)
            .notifier_dead_event(6)
            .create(),
        Err(ServiceError::InvalidConfig(_))
    ));
    assert!(matches!(
        node.service("nope").event().open(),
        Err(ServiceError::NotFound(_))
    ));
    assert!(matches!(
        node.service("bad name").event().open(),
        Err(ServiceError::InvalidName { .. })
    ));
    // The wake-up descriptor in a WaitSet (same process).
    let notifier = events.notifier().create().unwrap();
    let _ = listener.try_wait();
    let set = WaitSet::new().unwrap();
    let guard = set.attach(&listener).unwrap();
    // The first report after the descriptor was created may be spurious.
    let _ = set.wait_timeout(Duration::ZERO).unwrap();
    assert!(listener.try_wait().is_empty());
    assert!(set.wait_timeout(Duration::ZERO).unwrap().is_empty());
    notifier.notify(3).unwrap();
    let ready = set.wait_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].id(), guard.id());
    assert_eq!(listener.try_wait().iter().collect::<Vec<_>>(), [3]);
    assert!(listener.try_wait().is_empty());
    drop(guard);
    drop(set);
    drop((listener, notifier, events));
    drop(node);
    assert_clean(&domain);
}

#[test]
fn no_lost_wakeups_across_processes() {
    let _w = watchdog(Duration::from_secs(120));
    let domain = unique("evt-pingpong");
    let node = node(&domain, "ponger");
    let ping = node.service("ping").event().open_or_create().unwrap();
    let pong = node.service("pong").event().open_or_create().unwrap();
    let listener = ping.listener().spin(Spin::NONE).create().unwrap();
    let notifier = pong.notifier().create().unwrap();
    let set = WaitSet::new().unwrap();
    let _guard = set.attach(&listener).unwrap();
    let cycles = cycles();
    let mut child = spawn_child("pinger", &[&domain, &cycles.to_string()]);
    assert_eq!(read_line(&mut child), "ready");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut sink = 0u64;
    for i in 0..cycles {
        let r = rng.next();
        // Busy for a random while: the notification often arrives now.
        if r & 1 == 0 {
            for k in 0..(r >> 8) % 2000 {
                sink = sink.wrapping_add(k * k);
            }
        }
        let ids = match (r >> 1) % 4 {
            // Asleep on the futex (or not, if it already came).
            0 | 1 => listener.wait(),
            // Polling.
            2 => loop {
                let ids = listener.try_wait();
                if !ids.is_empty() {
                    break ids;
                }
                std::hint::spin_loop();
            },
            // Asleep in epoll on the descriptor.
            _ => loop {
                let ids = listener.try_wait();
                if !ids.is_empty() {
                    break ids;
                }
                set.wait().unwrap();
            },
        };
        assert_eq!(
            ids.iter().collect::<Vec<_>>(),
            [(i % 64) as usize],
            "cycle {i}"
        );
        notifier.notify(1).unwrap();
    }
    // The burst: 100 × every id, received as one set or a few.
    let mut all = conduit::event::EventSet::default();
    while all.len() < 256 {
        all.merge(&listener.wait());
    }
    notifier.notify(2).unwrap();
    assert!(child.wait().unwrap().success());
    std::hint::black_box(sink);
    drop(_guard);
    drop(set);
    drop(listener);
    drop((notifier, ping, pong, node));
    assert_clean(&domain);
}

#[test]
fn subscriber_descriptor_loses_no_sample() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("evt-subfd");
    let node = node(&domain, "sub");
    let topic = node
        .service("samples")
        .publish_subscribe::<u64>()
        .open_or_create()
        .unwrap();
    let acks = node.service("acks").event().open_or_create().unwrap();
    let subscriber = topic.subscriber().spin(Spin::NONE).create().unwrap();
    let ack = acks.notifier().create().unwrap();
    let set = WaitSet::new().unwrap();
    let guard = set.attach(&subscriber).unwrap();
    const N: u64 = 5_000;
    let mut child = spawn_child("sample_pinger", &[&domain, &N.to_string()]);
    assert_eq!(read_line(&mut child), "ready");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for i in 1..=N {
        let value = match rng.next() % 3 {
            // Asleep in epoll on the subscriber's descriptor.
            0 | 1 => loop {
                if let Some(s) = subscriber.try_receive().unwrap() {
                    break *s;
                }
                for e in set.wait().unwrap() {
                    assert_eq!(e.id(), guard.id());
                }
            },
            // Asleep on the futex.
            _ => *subscriber.receive().unwrap(),
        };
        assert_eq!(value, i);
        ack.notify(1).unwrap();
    }
    assert!(child.wait().unwrap().success());
    drop(guard);
    drop(set);
    drop((subscriber, ack, acks, topic, node));
    assert_clean(&domain);
}

fn kill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn notifier_killed_mid_notify() {
    let _w = watchdog(Duration::from_secs(60));
    let domain = unique("evt-crash");
    let node = node(&domain, "survivor");
    let events = node
        .service("crash")
        .event()
        .max_notifiers(2)
        .notifier_dead_event(63)
        .open_or_create()
        .unwrap();
    let listener = events.listener().create().unwrap();
    for round in 0..8 {
        let mut child = spawn_child("spammer", &[&domain]);
        assert_eq!(read_line(&mut child), "ready");
        // It is notifying: wait for something, then kill it mid-loop.
        assert!(!listener.wait().is_empty());
        kill(&mut child);
        // Round 0 and odd rounds: found by an explicit cleanup; even
        // rounds: by the next notifier that finds both slots taken (only
        // one is, so the cleanup on open or Node::cleanup does it).
        let dead = if round % 2 == 1 || round == 0 {
            events.cleanup_dead_ports()
        } else {
            Node::cleanup(&domain).unwrap();
            1
        };
        assert_eq!(dead, 1, "round {round}");
        let mut seen = conduit::event::EventSet::default();
        while !seen.contains(63) {
            seen.merge(&listener.wait());
        }
        // The listener and the service keep working.
        let local = events.notifier().create().unwrap();
        local.notify(5).unwrap();
        let mut seen = listener.wait();
        while !seen.contains(5) {
            seen.merge(&listener.wait());
        }
    }
    drop((listener, events, node));
    assert_clean(&domain);
}

/// In a child whose signals are blocked before exec: a listener and a
/// subscriber fed by a grandchild process, a pipe, an interval, a deadline
/// that is missed, and SIGTERM, all in one WaitSet.
fn all_kinds_in_child(domain: &str, node: &Node) {
    let topic = node
        .service("topic")
        .publish_subscribe::<u64>()
        .open_or_create()
        .unwrap();
    let events = node.service("events").event().open_or_create().unwrap();
    let back = node.service("back").event().open_or_create().unwrap();
    let subscriber = topic.subscriber().create().unwrap();
    let listener = events.listener().create().unwrap();
    let bye = back.notifier().create().unwrap();
    let silent = WakeUp::new().unwrap();
    // A plain descriptor (an eventfd attached with attach_fd: nobody
    // resets it but us).
    let plain = WakeUp::new().unwrap();
    let set = WaitSet::new().unwrap();
    let term = set.attach_termination().unwrap();
    let _watchdog = watchdog(Duration::from_secs(20));
    let sub_guard = set.attach(&subscriber).unwrap();
    let lst_guard = set.attach(&listener).unwrap();
    let pipe_guard = set.attach_fd(plain.as_fd(), Interest::READABLE).unwrap();
    let missed = set
        .attach_deadline(&silent, Duration::from_millis(20))
        .unwrap();
    let interval = set.attach_interval(Duration::from_millis(5)).unwrap();
    let mut feeder = spawn_child("feeder", &[domain]);
    plain.wake().unwrap();

    let (mut sample, mut event, mut piped, mut ticks, mut misses, mut signal) =
        (None, false, false, 0, 0, None);
    set.run(|ev| {
        match ev {
            Event::Ready { id, .. } if id == sub_guard.id() => {
                while let Some(s) = subscriber.try_receive().unwrap() {
                    sample = Some(*s);
                }
            }
            Event::Ready { id, .. } if id == lst_guard.id() => {
                event |= listener.try_wait().contains(7);
            }
            Event::Ready { id, .. } if id == pipe_guard.id() => {
                assert!(plain.take().unwrap() > 0);
                piped = true;
                // Once the pipe was seen, raise SIGTERM.
                // SAFETY: kill(getpid(), SIGTERM): blocked in every
                // thread, so it is queued for the signalfd.
                unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            }
            Event::DeadlineMissed { id, count } if id == missed.id() => misses += count,
            Event::Interval { id, count } if id == interval.id() => ticks += count,
            Event::Termination { id, signal: s } if id == term.id() => signal = Some(s),
            other => panic!("unexpected event {other:?}"),
        }
        let done = sample.is_some() && event && piped && ticks >= 3 && misses >= 1;
        if done && signal.is_some() {
            Control::Stop
        } else {
            Control::Continue
        }
    })
    .unwrap();
    bye.notify(9).unwrap();
    assert!(feeder.wait().unwrap().success());
    assert_eq!(sample, Some(42));
    assert_eq!(signal, Some(conduit::signal::Signal::TERM));
    println!("all kinds ok");
}

#[test]
fn waitset_with_every_kind_of_source() {
    use std::os::unix::process::CommandExt;
    let _w = watchdog(Duration::from_secs(30));
    let domain = unique("evt-waitset");
    let mut command = common::child_command("all_kinds", &[&domain]);
    command.stdout(Stdio::piped());
    // SAFETY: the closure only calls sigemptyset, sigaddset and
    // sigprocmask, which are async-signal-safe, on a local set.
    unsafe {
        command.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    assert_eq!(read_line(&mut child), "all kinds ok");
    assert!(child.wait().unwrap().success());
    assert_clean(&domain);
}
