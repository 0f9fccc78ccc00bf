//! Wake-up latency through `conduit::waitset`, with its baselines in the
//! same run.
//!
//! `cargo run --release -p conduit-bench --bin waitset [-- --quick]`
//!
//! Two processes pinned to CPU 0 (parent) and CPU 1 (child) ping-pong
//! over two eventfds: each writes the other's eventfd, then waits for its
//! own. Every waiter in a scenario uses the same mechanism:
//!
//! 1. baseline: blocking `read` on the eventfd (no epoll at all);
//! 2. baseline: a raw `epoll_wait` loop on the eventfd, then `read`;
//! 3. `WaitSet::run` with the eventfd attached as a `WakeUp`;
//! 4. `WaitSet::wait` (one `Vec` of events per wake-up).
//!
//! Reports the one-way latency (round trip / 2, each round trip including
//! one clock read) at p50 and p99, and its ratio to the raw epoll loop.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conduit::waitset::{Control, WaitSet, WakeUp};
use conduit_bench::raw;
use rustix::event::epoll;
use rustix::io::Errno;

const ROLE_ENV: &str = "CONDUIT_BENCH_WAITSET_ROLE";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    BlockingRead,
    RawEpoll,
    WaitSetRun,
    WaitSetWait,
}

const MODES: [(&str, Mode); 4] = [
    ("baseline: blocking read(eventfd)", Mode::BlockingRead),
    ("baseline: raw epoll_wait + read", Mode::RawEpoll),
    ("WaitSet::run", Mode::WaitSetRun),
    ("WaitSet::wait", Mode::WaitSetWait),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if std::env::var_os(ROLE_ENV).is_some() {
        let fd = |i: usize| {
            let raw: i32 = args[i].parse().unwrap();
            // SAFETY: the parent handed these descriptors to this process
            // (inherited, not close-on-exec); nothing else owns them.
            unsafe { OwnedFd::from_raw_fd(raw) }
        };
        let mode = MODES[args[1].parse::<usize>().unwrap()].1;
        let rounds = args[2].parse().unwrap();
        pin(1);
        // The child waits on "ping" and writes "pong".
        let (ping, pong) = (fd(3), fd(4));
        serve(mode, rounds, ping, pong);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let rounds: u64 = if quick { 2_000 } else { 50_000 };
    pin(0);
    println!("wake-up through an eventfd, CPU 0 <-> CPU 1, one-way latency ({rounds} round trips)");
    println!(
        "{:<36} {:>10} {:>10} {:>14}",
        "scenario", "p50", "p99", "p50 vs epoll"
    );
    let mut epoll_p50 = None;
    for (index, (name, mode)) in MODES.into_iter().enumerate() {
        let (p50, p99) = ping_pong(index, mode, rounds);
        if mode == Mode::RawEpoll {
            epoll_p50 = Some(p50);
        }
        let ratio = epoll_p50
            .map(|b| format!("{:.2}x", p50.as_nanos() as f64 / b.as_nanos() as f64))
            .unwrap_or_else(|| "-".into());
        println!("{name:<36} {:>10} {:>10} {ratio:>14}", fmt(p50), fmt(p99));
    }
}

/// Non-blocking eventfds, except for the blocking-read mode.
fn new_eventfd(mode: Mode) -> OwnedFd {
    use rustix::event::{EventfdFlags, eventfd};
    if mode == Mode::BlockingRead {
        eventfd(0, EventfdFlags::CLOEXEC).unwrap()
    } else {
        eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).unwrap()
    }
}

/// `write(fd, &1u64)`: adds one to the eventfd's counter and wakes its
/// reader. `EINTR` retried.
fn send(fd: &OwnedFd) {
    let n = raw::write(fd, &1u64.to_ne_bytes()).expect("eventfd write");
    assert_eq!(n, 8, "short eventfd write");
}

/// `read(fd, &mut u64)` on a non-blocking eventfd: takes the counter
/// (`EAGAIN`, a counter at zero, is not an error). `EINTR` retried.
fn take(fd: &OwnedFd) {
    let mut buf = [0u8; 8];
    match raw::read(fd, &mut buf) {
        Ok(8) | Err(Errno::AGAIN) => {}
        Ok(n) => panic!("short eventfd read: {n}"),
        Err(e) => panic!("eventfd read: {e}"),
    }
}

/// A copy of `fd` without close-on-exec, for the child to inherit.
fn inheritable(fd: &OwnedFd) -> OwnedFd {
    rustix::io::dup(fd).unwrap()
}

fn ping_pong(index: usize, mode: Mode, rounds: u64) -> (Duration, Duration) {
    let (ping, pong) = (new_eventfd(mode), new_eventfd(mode));
    let (child_ping, child_pong) = (inheritable(&ping), inheritable(&pong));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            index.to_string(),
            rounds.to_string(),
            child_ping.as_raw_fd().to_string(),
            child_pong.as_raw_fd().to_string(),
        ])
        .env(ROLE_ENV, "pong")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn child");
    drop((child_ping, child_pong));

    let mut samples = Vec::with_capacity(rounds as usize);
    let mut last = Instant::now();
    let record = |samples: &mut Vec<Duration>, last: &mut Instant| {
        let now = Instant::now();
        samples.push(now - *last);
        *last = now;
    };
    match mode {
        Mode::BlockingRead | Mode::RawEpoll => {
            let mut waiter = RawWaiter::new(mode, &pong);
            for _ in 0..rounds {
                send(&ping);
                waiter.wait(&pong);
                record(&mut samples, &mut last);
            }
        }
        Mode::WaitSetRun => {
            let pong = WakeUp::from_fd(pong);
            let set = WaitSet::new().unwrap();
            let _guard = set.attach(&pong).unwrap();
            send(&ping);
            let mut done = 0;
            set.run(|_| {
                record(&mut samples, &mut last);
                done += 1;
                if done == rounds {
                    return Control::Stop;
                }
                send(&ping);
                Control::Continue
            })
            .unwrap();
        }
        Mode::WaitSetWait => {
            let pong = WakeUp::from_fd(pong);
            let set = WaitSet::new().unwrap();
            let _guard = set.attach(&pong).unwrap();
            for _ in 0..rounds {
                send(&ping);
                let events = set.wait().unwrap();
                debug_assert_eq!(events.len(), 1);
                record(&mut samples, &mut last);
            }
        }
    }
    assert!(child.wait().unwrap().success());
    // Drop the first rounds (child start-up, page faults).
    let warm = &mut samples[(rounds as usize / 10)..];
    warm.sort_unstable();
    let pct = |p: f64| warm[((warm.len() - 1) as f64 * p) as usize] / 2;
    (pct(0.5), pct(0.99))
}

/// The baselines' waiter: a blocking read, or epoll_wait then read, made
/// with rustix directly.
struct RawWaiter {
    epoll: Option<OwnedFd>,
    events: Vec<epoll::Event>,
}

impl RawWaiter {
    fn new(mode: Mode, fd: &OwnedFd) -> Self {
        let epoll = (mode == Mode::RawEpoll).then(|| {
            let e = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
            epoll::add(&e, fd, epoll::EventData::new_u64(0), epoll::EventFlags::IN).unwrap();
            e
        });
        let empty = epoll::Event {
            flags: epoll::EventFlags::empty(),
            data: epoll::EventData::new_u64(0),
        };
        Self {
            epoll,
            events: vec![empty; 8],
        }
    }

    fn wait(&mut self, fd: &OwnedFd) {
        match &self.epoll {
            None => {
                let mut buf = [0u8; 8];
                raw::read(fd, &mut buf).unwrap();
            }
            Some(e) => loop {
                match epoll::wait(e, &mut self.events, None) {
                    Ok(n) if n > 0 => {
                        take(fd);
                        return;
                    }
                    Ok(_) | Err(Errno::INTR) => continue,
                    Err(err) => panic!("epoll_wait: {err}"),
                }
            },
        }
    }
}

fn serve(mode: Mode, rounds: u64, ping: OwnedFd, pong: OwnedFd) {
    match mode {
        Mode::BlockingRead | Mode::RawEpoll => {
            let mut waiter = RawWaiter::new(mode, &ping);
            for _ in 0..rounds {
                waiter.wait(&ping);
                send(&pong);
            }
        }
        Mode::WaitSetRun => {
            let ping = WakeUp::from_fd(ping);
            let set = WaitSet::new().unwrap();
            let _guard = set.attach(&ping).unwrap();
            let mut done = 0;
            set.run(|_| {
                send(&pong);
                done += 1;
                if done == rounds {
                    Control::Stop
                } else {
                    Control::Continue
                }
            })
            .unwrap();
        }
        Mode::WaitSetWait => {
            let ping = WakeUp::from_fd(ping);
            let set = WaitSet::new().unwrap();
            let _guard = set.attach(&ping).unwrap();
            for _ in 0..rounds {
                set.wait().unwrap();
                send(&pong);
            }
        }
    }
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else {
        format!("{:.1} us", ns as f64 / 1000.0)
    }
}

/// Pins the calling thread to one CPU (`sched_setaffinity`); ignored if
/// the CPU is not available.
fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it;
    // sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let _ = libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
