//! WaitSet: every kind of source at once across processes, detaching
//! inside the run loop, a killed peer's pipe, timer overruns, errors.

mod common;

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use common::{read_line, spawn_child, watchdog};
use conduit::waitset::{AttachError, Control, Event, Interest, WaitError, WaitSet, WakeUp};

child_entry!(dispatch);

fn dispatch(role: &str, args: &[String]) {
    match role {
        "all_kinds" => all_kinds_in_child(),
        "peer" => {
            // args: inherited eventfd number, pid to send SIGTERM to.
            let raw: i32 = args[0].parse().unwrap();
            let parent: i32 = args[1].parse().unwrap();
            // SAFETY: the parent passed this descriptor to us open and
            // without CLOEXEC; nothing else in this process owns it.
            let wake = WakeUp::from_fd(unsafe { OwnedFd::from_raw_fd(raw) });
            wake.wake().unwrap();
            println!("data from peer");
            // SAFETY: kill has no memory-safety preconditions.
            assert_eq!(unsafe { libc::kill(parent, libc::SIGTERM) }, 0);
        }
        "eintr" => eintr_in_child(),
        "idle" => {
            println!("ready");
            loop {
                std::thread::park();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Runs in a child process (signals must be blocked before any thread
/// exists for a signalfd to see them): a pipe from a grandchild, an
/// eventfd it writes (with a deadline that is met), a silent source
/// whose deadline is missed, an interval, a one-shot timer and SIGTERM
/// sent by the grandchild, all in one WaitSet.
fn all_kinds_in_child() {
    // Sources borrowed by the WaitSet are declared before it.
    let from_peer = WakeUp::new().unwrap();
    let silent = WakeUp::new().unwrap();
    let set = WaitSet::new().unwrap();
    // Before any thread (the watchdog) is created.
    let term = set.attach_termination().unwrap();
    let _watchdog = watchdog(Duration::from_secs(20));

    // A descriptor without CLOEXEC for the grandchild to inherit.
    // SAFETY: dup of a descriptor we own; the copy is closed below.
    let inherited = unsafe { libc::dup(from_peer.as_fd().as_raw_fd()) };
    assert!(inherited >= 0);
    let pid = std::process::id().to_string();
    let mut peer = spawn_child("peer", &[&inherited.to_string(), &pid]);
    // SAFETY: `inherited` is ours and not used after this.
    unsafe { libc::close(inherited) };
    let mut pipe = peer.stdout.take().unwrap();

    let pipe_guard = set.attach_fd(&pipe, Interest::READABLE).unwrap();
    let met = set
        .attach_deadline(&from_peer, Duration::from_secs(10))
        .unwrap();
    let missed = set
        .attach_deadline(&silent, Duration::from_millis(20))
        .unwrap();
    let interval = set.attach_interval(Duration::from_millis(5)).unwrap();
    let timer = set.attach_timer(Duration::from_millis(10)).unwrap();

    let mut data = Vec::new();
    let (mut hung_up, mut woken, mut ticks, mut misses, mut fired, mut signal) =
        (false, 0, 0, 0, 0, None);
    set.run(|event| {
        match event {
            Event::Ready { id, readiness } if id == pipe_guard.id() => {
                if readiness.readable() {
                    let mut buf = [0u8; 4096];
                    let n = pipe.read(&mut buf).unwrap();
                    data.extend_from_slice(&buf[..n]);
                }
                if readiness.hang_up() {
                    assert!(!hung_up, "hang-up reported twice");
                    hung_up = true;
                }
            }
            Event::Ready { id, readiness } if id == met.id() => {
                assert!(readiness.readable());
                woken += 1;
            }
            Event::DeadlineMissed { id, count } if id == missed.id() => {
                assert!(count >= 1);
                misses += count;
            }
            Event::Interval { id, count } if id == interval.id() => ticks += count,
            Event::Timer(id) if id == timer.id() => fired += 1,
            Event::Termination { id, signal: s } if id == term.id() => signal = Some(s),
            other => panic!("unexpected event {other:?}"),
        }
        let done = hung_up && woken >= 1 && ticks >= 3 && misses >= 1 && fired >= 1;
        if done && signal.is_some() {
            Control::Stop
        } else {
            Control::Continue
        }
    })
    .unwrap();
    assert!(peer.wait().unwrap().success());
    // Read what is left until end of file.
    pipe.read_to_end(&mut data).unwrap();
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("data from peer"), "pipe carried {text:?}");
    assert_eq!(fired, 1, "a one-shot timer fires once");
    assert_eq!(woken, 1, "one wake-up, acknowledged once");
    assert_eq!(signal, Some(conduit::signal::Signal::TERM));
    // The silent source keeps missing, the one-shot stays silent.
    let later = set.wait().unwrap();
    assert!(later.iter().all(|e| e.id() != timer.id()));
    println!("all kinds ok");
}

#[test]
fn every_kind_of_source_at_once() {
    use std::os::unix::process::CommandExt;
    let _w = watchdog(Duration::from_secs(30));
    // The test harness runs tests on a thread of its own, so the child's
    // main thread would take SIGTERM the default way: block it before
    // exec, so that every thread of the child inherits the mask.
    let mut command = common::child_command("all_kinds", &[]);
    command.stdout(std::process::Stdio::piped());
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
}

#[test]
fn detach_inside_run_loop() {
    let _w = watchdog(Duration::from_secs(10));
    let a = WakeUp::new().unwrap();
    let b = WakeUp::new().unwrap();
    let stop = WakeUp::new().unwrap();
    let set = WaitSet::new().unwrap();
    let a_id = set.attach(&a).unwrap().keep();
    let guard_b = RefCell::new(Some(set.attach(&b).unwrap()));
    let b_id = guard_b.borrow().as_ref().unwrap().id();
    // Attached as a plain descriptor: nobody resets it, so it is reported
    // by every wait until we take it.
    let stop_guard = set.attach_fd(&stop, Interest::READABLE).unwrap();
    // All three ready in the same batch.
    a.wake().unwrap();
    b.wake().unwrap();
    stop.wake().unwrap();

    let handled = Cell::new(0);
    set.run(|event| {
        let id = event.id();
        if id == a_id || id == b_id {
            handled.set(handled.get() + 1);
            // Detach the source being handled and the other one, which
            // is ready in this same batch: by id and by dropping a guard.
            assert!(set.detach(a_id));
            guard_b.borrow_mut().take();
            Control::Continue
        } else if id == stop_guard.id() {
            if handled.get() > 0 {
                Control::Stop
            } else {
                Control::Continue
            }
        } else {
            panic!("unexpected event {event:?}")
        }
    })
    .unwrap();
    assert_eq!(handled.get(), 1, "a detached source was reported");
    assert!(!set.detach(a_id), "already detached");
    assert_eq!(set.len(), 1);

    // Detached sources stay silent when woken again.
    a.wake().unwrap();
    b.wake().unwrap();
    let events = set.wait().unwrap();
    assert!(
        events.iter().all(|e| e.id() == stop_guard.id()),
        "{events:?}"
    );
    assert_eq!(stop.take().unwrap(), 1);
    assert!(
        set.wait_timeout(Duration::from_millis(1))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn killed_peer_pipe_reports_hang_up_once() {
    let _w = watchdog(Duration::from_secs(10));
    let mut child = spawn_child("idle", &[]);
    assert_eq!(read_line(&mut child), "ready");
    let stdout = child.stdout.take().unwrap();
    let set = WaitSet::new().unwrap();
    let guard = set.attach_fd(&stdout, Interest::READABLE).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    let events = set.wait().unwrap();
    assert_eq!(events.len(), 1);
    match events[0] {
        Event::Ready { id, readiness } => {
            assert_eq!(id, guard.id());
            assert!(readiness.hang_up(), "{readiness:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Not reported again (no busy loop), and nothing else can ever come.
    assert!(
        set.wait_timeout(Duration::from_millis(1))
            .unwrap()
            .is_empty()
    );
    assert!(matches!(set.wait(), Err(WaitError::NothingToWaitFor)));
    assert_eq!(set.len(), 1, "still attached until detached");
    guard.detach();
    assert!(set.is_empty());
}

#[test]
fn interval_counts_overruns() {
    let _w = watchdog(Duration::from_secs(10));
    let set = WaitSet::new().unwrap();
    let interval = set.attach_interval(Duration::from_millis(2)).unwrap();
    // Let at least three periods pass without waiting.
    std::thread::sleep(Duration::from_millis(10));
    let events = set.wait().unwrap();
    assert_eq!(events.len(), 1);
    match events[0] {
        Event::Interval { id, count } => {
            assert_eq!(id, interval.id());
            assert!(count >= 3, "count {count}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn deadline_met_is_re_armed_not_missed() {
    let _w = watchdog(Duration::from_secs(10));
    let source = WakeUp::new().unwrap();
    let set = WaitSet::new().unwrap();
    let guard = set
        .attach_deadline(&source, Duration::from_secs(30))
        .unwrap();
    for _ in 0..3 {
        source.wake().unwrap();
        let events = set.wait().unwrap();
        assert_eq!(events.len(), 1);
        assert!(matches!(events[0], Event::Ready { id, .. } if id == guard.id()));
    }
}

#[test]
fn attach_errors() {
    let set = WaitSet::new().unwrap();
    assert!(matches!(set.wait(), Err(WaitError::NothingToWaitFor)));
    assert!(set.wait_timeout(Duration::ZERO).unwrap().is_empty());
    assert!(matches!(
        set.attach_interval(Duration::ZERO),
        Err(AttachError::InvalidDuration(_))
    ));
    assert!(matches!(
        set.attach_timer(Duration::ZERO),
        Err(AttachError::InvalidDuration(_))
    ));
    let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    assert!(matches!(
        set.attach_fd(&file, Interest::READABLE),
        Err(AttachError::NotPollable(_))
    ));
    let wake = WakeUp::new().unwrap();
    let _first = set.attach(&wake).unwrap();
    assert!(matches!(
        set.attach(&wake),
        Err(AttachError::AlreadyAttached(_))
    ));
    assert_eq!(set.len(), 1);
    // A timeout too large for the kernel is no error.
    wake.wake().unwrap();
    assert_eq!(set.wait_timeout(Duration::MAX).unwrap().len(), 1);
}

static HANDLED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    HANDLED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Whether thread `tid` of this process is asleep (state `S`: blocked in
/// a system call such as `epoll_wait`).
fn is_asleep(tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .ok()
        .and_then(|t| {
            t.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('S'))
        })
        .unwrap_or(false)
}

/// In a child process (it installs a signal handler): a thread interrupts
/// the waiting thread with SIGUSR1 three times while it sleeps in
/// `epoll_wait`, then wakes it; the wait must see only the wake-up.
fn eintr_in_child() {
    let _watchdog = watchdog(Duration::from_secs(10));
    // SAFETY: installs a handler that only touches an atomic; no
    // SA_RESTART, so the interrupted epoll_wait fails with EINTR.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = count_signal as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    let wake = WakeUp::new().unwrap();
    let set = WaitSet::new().unwrap();
    let guard = set.attach(&wake).unwrap();
    // SAFETY: gettid and pthread_self have no preconditions.
    let (tid, me) = unsafe { (libc::gettid(), libc::pthread_self()) };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for n in 1..=3 {
                while !is_asleep(tid) {
                    std::thread::yield_now();
                }
                // SAFETY: `me` is the waiting thread, alive until the
                // scope ends.
                assert_eq!(unsafe { libc::pthread_kill(me, libc::SIGUSR1) }, 0);
                while HANDLED.load(std::sync::atomic::Ordering::Relaxed) < n {
                    std::thread::yield_now();
                }
            }
            while !is_asleep(tid) {
                std::thread::yield_now();
            }
            wake.wake().unwrap();
        });
        let events = set.wait().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id(), guard.id());
    });
    assert_eq!(HANDLED.load(std::sync::atomic::Ordering::Relaxed), 3);
    println!("eintr ok");
}

#[test]
fn interrupted_wait_is_retried() {
    let _w = watchdog(Duration::from_secs(15));
    let mut child = spawn_child("eintr", &[]);
    assert_eq!(read_line(&mut child), "eintr ok");
    assert!(child.wait().unwrap().success());
}
