//! Event ping-pong between two processes pinned to CPU 0 and 1.
//!
//! The parent notifies on service `ping` and listens on `pong`; the child
//! does the reverse and echoes every notification. One-way = round trip /
//! 2, clock read per round trip (sleeping plan). Waits:
//!
//! * `event_spin`: `Listener::wait()` with the default spin budget (50 µs);
//! * `event_nospin`: `Listener::wait()` with `Spin::NONE` (a futex sleep per
//!   message: compare with `futex_pingpong`);
//! * `event_waitset`: the parent sleeps in a `WaitSet` (epoll) on the
//!   listener's wake-up descriptor (the child: no spin);
//! * `event_tokio`: the parent awaits `Listener::wait_async()` on a
//!   current-thread tokio runtime (the child: no spin).
//!
//! Plus the CPU time a listener uses while asleep for a while.

use std::time::{Duration, Instant};

use conduit::event::{EventService, Listener, Notifier};
use conduit::node::Node;
use conduit::sync::Spin;
use conduit::waitset::WaitSet;

use crate::harness::{self, ChildSpec, Measurement, Mode, Plan};

/// The child role.
pub const EVENT_ROLE: &str = "event_echo";

/// How a side waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// `wait()` with the default spin.
    Spin,
    /// `wait()` without spinning.
    NoSpin,
    /// A WaitSet on the wake-up descriptor.
    WaitSet,
    /// tokio `wait_async`.
    Tokio,
}

impl Wait {
    fn scenario(self) -> &'static str {
        match self {
            Wait::Spin => "event_spin",
            Wait::NoSpin => "event_nospin",
            Wait::WaitSet => "event_waitset",
            Wait::Tokio => "event_tokio",
        }
    }

    fn spin(self) -> Spin {
        match self {
            Wait::Spin => Spin::duration(conduit::event::DEFAULT_SPIN),
            _ => Spin::NONE,
        }
    }
}

fn services(domain: &str, name: &str) -> (Node, EventService, EventService) {
    let node = Node::builder()
        .name(name)
        .domain(domain)
        .create()
        .expect("node");
    let ping = node
        .service("ping")
        .event()
        .open_or_create()
        .expect("ping service");
    let pong = node
        .service("pong")
        .event()
        .open_or_create()
        .expect("pong service");
    (node, ping, pong)
}

/// Parent side of one scenario.
pub fn ping_pong(plan: &Plan, wait: Wait) -> Measurement {
    let domain = format!("bench-events-{}", std::process::id());
    let (_node, ping, pong) = services(&domain, "bench-ping");
    let listener = pong
        .listener()
        .spin(wait.spin())
        .create()
        .expect("listener");
    let notifier = ping.notifier().create().expect("notifier");
    // The child's side waits like us, except that it never uses an fd.
    let child_wait = if wait == Wait::Spin { "spin" } else { "nospin" };
    let args = [domain.clone(), child_wait.to_owned()];
    let spec = ChildSpec {
        role: EVENT_ROLE,
        args: &args,
        fds: &[],
    };
    let m = match wait {
        Wait::Spin | Wait::NoSpin => {
            harness::run_ping_pong(wait.scenario(), 8, Mode::Header, plan, spec, |_| {
                notifier.notify(0).expect("notify");
                while listener.wait().is_empty() {}
            })
        }
        Wait::WaitSet => {
            let set = WaitSet::new().expect("waitset");
            let _guard = set.attach(&listener).expect("attach");
            harness::run_ping_pong(wait.scenario(), 8, Mode::Header, plan, spec, |_| {
                notifier.notify(0).expect("notify");
                while listener.try_wait().is_empty() {
                    set.wait().expect("wait");
                }
            })
        }
        Wait::Tokio => tokio_ping_pong(plan, spec, &listener, &notifier),
    };
    drop((listener, notifier, ping, pong, _node));
    let _ = Node::cleanup(&domain);
    m
}

fn tokio_ping_pong(
    plan: &Plan,
    spec: ChildSpec<'_>,
    listener: &Listener,
    notifier: &Notifier,
) -> Measurement {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    let _enter = runtime.enter();
    harness::run_ping_pong(Wait::Tokio.scenario(), 8, Mode::Header, plan, spec, |_| {
        notifier.notify(0).expect("notify");
        runtime.block_on(listener.wait_async()).expect("wait_async");
    })
}

/// Child side: echoes every notification.
pub fn event_echo_child(args: &[String]) {
    let plan = Plan::from_args(args);
    let domain = &args[2];
    let spin = if args[3] == "spin" {
        Spin::duration(conduit::event::DEFAULT_SPIN)
    } else {
        Spin::NONE
    };
    let (_node, ping, pong) = services(domain, "bench-pong");
    let listener = ping.listener().spin(spin).create().expect("listener");
    let notifier = pong.notifier().create().expect("notifier");
    harness::ready();
    harness::echo_loop(&plan, |_| {
        while listener.wait().is_empty() {}
        notifier.notify(0).expect("notify");
    });
}

/// CPU time used by a thread that waits (`Listener::wait`, default spin)
/// for `asleep` until a notification ends the wait.
pub fn sleeping_listener_cpu(asleep: Duration) -> Duration {
    let domain = format!("bench-events-idle-{}", std::process::id());
    let node = Node::builder().domain(&domain).create().expect("node");
    let events = node
        .service("idle")
        .event()
        .open_or_create()
        .expect("service");
    let listener = events.listener().create().expect("listener");
    let notifier = events.notifier().create().expect("notifier");
    let cpu = std::thread::scope(|s| {
        let waiter = s.spawn(move || {
            let start = thread_cpu();
            let ids = listener.wait();
            assert!(ids.contains(1));
            thread_cpu() - start
        });
        let t = Instant::now();
        while t.elapsed() < asleep {
            std::thread::sleep(asleep / 10);
        }
        notifier.notify(1).expect("notify");
        waiter.join().expect("waiter")
    });
    drop((notifier, events, node));
    let _ = Node::cleanup(&domain);
    cpu
}

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
