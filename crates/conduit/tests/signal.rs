//! Signals with real processes: queued values in order, coalescing,
//! uncatchable signals, pending-until-unblocked, the termination pattern,
//! forwarding to a process group, pidfd sends to exited processes.
//!
//! The test harness runs tests on several threads, so no test here relies
//! on a signal reaching the harness process: every receiver is a child
//! process. Children that use signalfd are started with the signals already
//! blocked (`pre_exec`), so every thread of the child, including libtest's,
//! inherits the block.

mod common;

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use conduit::signal::{
    ExitState, Mode, Process, SendError, Signal, Signals, SubscribeError, Supervised, Termination,
    queue, send, send_group,
};

child_entry!(dispatch);

// ---------------------------------------------------------------------------
// Raw signal masks and polling, to set the stage and to check conduit from
// the outside. Masks go through libc: rustix has no API for them.

/// The set of `signals` (`sigemptyset` + `sigaddset`).
fn sigset(signals: &[Signal]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it fully and
    // sigaddset adds valid signal numbers (`Signal` holds only those).
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            assert_eq!(libc::sigaddset(&mut set, s.as_raw()), 0);
        }
        set
    }
}

/// Whether `sig` is in `set` (`sigismember`).
fn contains(set: &libc::sigset_t, sig: Signal) -> bool {
    // SAFETY: `set` is an initialised sigset_t and `sig` a valid number.
    unsafe { libc::sigismember(set, sig.as_raw()) == 1 }
}

/// The signal numbers in `set`, in increasing order.
fn members(set: &libc::sigset_t) -> Vec<i32> {
    (1..=libc::SIGRTMAX())
        // SAFETY: `set` is an initialised sigset_t; every number in
        // 1..=SIGRTMAX is in range.
        .filter(|&s| unsafe { libc::sigismember(set, s) } == 1)
        .collect()
}

/// `pthread_sigmask(how, set, &old)`: changes the calling thread's mask and
/// returns the previous one. Async-signal-safe (no allocation): usable in
/// `pre_exec`.
fn thread_mask(how: libc::c_int, set: Option<&libc::sigset_t>) -> std::io::Result<libc::sigset_t> {
    let mut old = sigset(&[]);
    let set = set.map_or(core::ptr::null(), |s| s as *const libc::sigset_t);
    // SAFETY: `set` is null (query only) or a valid sigset_t; `old` is a
    // valid sigset_t to write into.
    match unsafe { libc::pthread_sigmask(how, set, &mut old) } {
        0 => Ok(old),
        rc => Err(std::io::Error::from_raw_os_error(rc)),
    }
}

/// The calling thread's blocked signals.
fn current_thread_mask() -> libc::sigset_t {
    thread_mask(libc::SIG_BLOCK, None).unwrap()
}

/// `sigpending`: signals raised while blocked and not yet taken.
fn pending() -> libc::sigset_t {
    let mut set = sigset(&[]);
    // SAFETY: `set` is a valid sigset_t to write into.
    assert_eq!(unsafe { libc::sigpending(&mut set) }, 0, "sigpending");
    set
}

/// `poll({fd, POLLIN}, timeout)`: whether `fd` is readable (or hung up /
/// in error) within `timeout` (`None`: wait forever).
fn poll_readable(fd: impl AsFd, timeout: Option<Duration>) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let timeout = timeout.map(|d| Timespec::try_from(d).unwrap());
    rustix::event::poll(&mut fds, timeout.as_ref()).unwrap();
    fds[0]
        .revents()
        .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
}

/// The owner of `/proc/<pid>` (the process's effective uid), or `None` if
/// there is no such process.
fn process_owner_uid(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

fn dispatch(role: &str, args: &[String]) {
    match role {
        "receive" => child_receive(args),
        "coalesce" => child_coalesce(),
        "pending" => child_pending(),
        "terminate" => child_terminate(args),
        "supervisor" => child_supervisor(),
        "member" => child_member(args),
        "exit" => {}
        "idle" => {
            // Wait for stdin to close.
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        }
        "nobody-send" => child_nobody_send(args),
        other => panic!("unknown role {other}"),
    }
}

fn rt(n: u32) -> Signal {
    Signal::realtime(n).expect("real-time signal")
}

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", line.as_ref()).unwrap();
    out.flush().unwrap();
}

fn stdin_line() -> String {
    let mut s = String::new();
    std::io::stdin().read_line(&mut s).unwrap();
    s.trim().to_owned()
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::SignalFd => "signalfd",
        Mode::SelfPipe => "selfpipe",
        Mode::Auto => "auto",
    }
}

/// A child process that is killed (with the process groups in `groups`)
/// if the test panics, so a failing test leaves no process behind.
struct Kid {
    child: Child,
    groups: Vec<u32>,
}

impl Kid {
    fn new(child: Child) -> Kid {
        Kid {
            child,
            groups: Vec::new(),
        }
    }
}

impl std::ops::Deref for Kid {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Kid {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for &g in &self.groups {
                let _ = send_group(g, Signal::KILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A child in `role` whose threads all start with `blocked` blocked, with
/// piped stdin and stdout.
fn spawn_blocked(role: &str, args: &[&str], blocked: &[Signal]) -> Kid {
    let set = sigset(blocked);
    let mut cmd = common::child_command(role, args);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    // SAFETY: the closure only calls pthread_sigmask (async-signal-safe)
    // on a set built before fork; it does not allocate.
    unsafe {
        cmd.pre_exec(move || thread_mask(libc::SIG_BLOCK, Some(&set)).map(drop));
    }
    Kid::new(cmd.spawn().expect("spawn child"))
}

fn tell(child: &mut Child, line: &str) {
    let stdin = child.stdin.as_mut().unwrap();
    writeln!(stdin, "{line}").unwrap();
    stdin.flush().unwrap();
}

/// The next line the child (or its descendants sharing the pipe) printed,
/// without libtest's own output ("running 1 test", "test child_entry ... "
/// which precedes the first line without a newline); "" at end of file.
fn line(child: &mut Child) -> String {
    use std::io::Read;
    let out = child.stdout.as_mut().expect("child stdout is piped");
    loop {
        let mut bytes = Vec::new();
        let mut byte = [0u8; 1];
        let eof = loop {
            match out.read(&mut byte) {
                Ok(0) => break true,
                Ok(_) if byte[0] == b'\n' => break false,
                Ok(_) => bytes.push(byte[0]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("read child stdout: {e}"),
            }
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut rest = text.as_str();
        while let Some(r) = rest.strip_prefix("test child_entry ... ") {
            rest = r;
        }
        if eof || !(rest.is_empty() || rest == "running 1 test") {
            return rest.to_owned();
        }
    }
}

// ---------------------------------------------------------------------------
// Queued real-time signals arrive in order, each with its value.

/// args: mode ("auto" | "selfpipe"), count.
fn child_receive(args: &[String]) {
    let mode = if args[0] == "selfpipe" {
        Mode::SelfPipe
    } else {
        Mode::Auto
    };
    let count: usize = args[1].parse().unwrap();
    let mut signals = Signals::with_mode([rt(1), Signal::USR1], mode).unwrap();
    assert!(signals.try_next().unwrap().is_none());
    assert!(
        signals
            .next_timeout(Duration::from_millis(1))
            .unwrap()
            .is_none()
    );
    say(format!("ready {}", mode_name(signals.mode())));
    for r in signals.iter().take(count) {
        let r = r.unwrap();
        say(format!(
            "got {} {:?} {} {}",
            r.signal,
            r.origin,
            r.sender_pid,
            r.value.map_or(-1, |v| v as i64)
        ));
    }
}

fn check_queued_in_order(mode: &str, expect_mode: &str) {
    let _w = common::watchdog(Duration::from_secs(30));
    const N: usize = 40;
    let mut child = spawn_blocked("receive", &[mode, &N.to_string()], &[rt(1), Signal::USR1]);
    assert_eq!(line(&mut child), format!("ready {expect_mode}"));
    let process = Process::from_child(&child).unwrap();
    for i in 0..N {
        // Alternate plain sigqueue and a pidfd send with a value.
        if i % 2 == 0 {
            queue(child.id(), rt(1), 1000 + i).unwrap();
        } else {
            process.queue(rt(1), 1000 + i).unwrap();
        }
    }
    let me = std::process::id();
    for i in 0..N {
        assert_eq!(
            line(&mut child),
            format!("got SIGRTMIN+1 Queue {me} {}", 1000 + i),
            "delivery {i}"
        );
    }
    assert!(child.wait().unwrap().success());
}

#[test]
fn queued_realtime_values_arrive_in_order_signalfd() {
    check_queued_in_order("auto", "signalfd");
}

#[test]
fn queued_realtime_values_arrive_in_order_self_pipe() {
    check_queued_in_order("selfpipe", "selfpipe");
}

// ---------------------------------------------------------------------------
// A blocked standard signal sent N times is delivered once; a real-time one
// N times.

fn child_coalesce() {
    let mut signals = Signals::new([Signal::USR2, rt(2)]).unwrap();
    assert_eq!(signals.mode(), Mode::SignalFd);
    say("ready");
    assert_eq!(stdin_line(), "sent");
    let all = signals.drain().unwrap();
    let usr2: Vec<_> = all.iter().filter(|r| r.signal == Signal::USR2).collect();
    let rt2: Vec<_> = all.iter().filter(|r| r.signal == rt(2)).collect();
    say(format!(
        "usr2 {} value {:?}; rt {} values {:?}",
        usr2.len(),
        usr2.first().and_then(|r| r.value),
        rt2.len(),
        rt2.iter().map(|r| r.value.unwrap()).collect::<Vec<_>>()
    ));
}

#[test]
fn standard_signals_coalesce_realtime_signals_queue() {
    let _w = common::watchdog(Duration::from_secs(30));
    let mut child = spawn_blocked("coalesce", &[], &[Signal::USR2, rt(2)]);
    assert_eq!(line(&mut child), "ready");
    for v in 1..=5 {
        // Each call returns once the signal is pending in the child (which
        // only reads after "sent").
        queue(child.id(), Signal::USR2, v).unwrap();
        queue(child.id(), rt(2), v).unwrap();
    }
    tell(&mut child, "sent");
    assert_eq!(
        line(&mut child),
        "usr2 1 value Some(1); rt 5 values [1, 2, 3, 4, 5]"
    );
    assert!(child.wait().unwrap().success());
}

// ---------------------------------------------------------------------------
// A blocked signal stays pending; a signalfd opened later still reads it;
// unblocking it delivers it (here: its default action ends the process).

fn child_pending() {
    say("ready");
    assert_eq!(stdin_line(), "sent");
    let pending = pending();
    assert!(contains(&pending, Signal::USR1));
    assert!(contains(&pending, Signal::USR2));
    // Opened after the fact, the subscription still gets the pending USR1.
    let mut signals = Signals::with_mode([Signal::USR1], Mode::SignalFd).unwrap();
    let r = signals.try_next().unwrap().expect("pending USR1");
    say(format!("read {} from {}", r.signal, r.sender_pid));
    // Unblock USR2 in this thread: it is delivered at once, and its default
    // action terminates the process before the next line.
    thread_mask(libc::SIG_UNBLOCK, Some(&sigset(&[Signal::USR2]))).unwrap();
    say("still alive");
}

#[test]
fn pending_signal_is_delivered_when_unblocked() {
    let _w = common::watchdog(Duration::from_secs(30));
    let mut child = spawn_blocked("pending", &[], &[Signal::USR1, Signal::USR2]);
    assert_eq!(line(&mut child), "ready");
    send(child.id(), Signal::USR1).unwrap();
    send(child.id(), Signal::USR2).unwrap();
    tell(&mut child, "sent");
    assert_eq!(
        line(&mut child),
        format!("read SIGUSR1 from {}", std::process::id())
    );
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(Signal::USR2.as_raw()), "{status:?}");
    assert_eq!(line(&mut child), "", "no output after the unblock");
}

// ---------------------------------------------------------------------------
// SIGKILL/SIGSTOP cannot be subscribed to, and a failed subscription leaves
// the mask alone. (Runs in the harness: nothing is blocked or delivered.)

#[test]
fn sigkill_and_sigstop_cannot_be_subscribed() {
    let before = current_thread_mask();
    for s in [Signal::KILL, Signal::STOP] {
        match Signals::new([Signal::USR1, s]) {
            Err(SubscribeError::Uncatchable(x)) => assert_eq!(x, s),
            other => panic!("expected Uncatchable, got {other:?}"),
        }
        match Signals::with_mode([s], Mode::SelfPipe) {
            Err(SubscribeError::Uncatchable(x)) => assert_eq!(x, s),
            other => panic!("expected Uncatchable, got {other:?}"),
        }
    }
    assert!(matches!(Signals::new([]), Err(SubscribeError::Empty)));
    let after = current_thread_mask();
    assert_eq!(members(&before), members(&after));
    assert!(Signal::from_raw(0).is_none());
    assert!(
        Signal::from_raw(libc::SIGRTMIN() - 1).is_none(),
        "libc-reserved"
    );
}

// ---------------------------------------------------------------------------
// Termination: the first signal asks, the second forces.

/// args: mode ("signalfd" | "selfpipe"), then "linger" or "exit".
fn child_terminate(args: &[String]) {
    if args[0] == "selfpipe" {
        // Make the process multi-threaded with a thread that does not
        // block anything, so Auto must choose the self-pipe.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            started_tx.send(()).unwrap();
            let _ = rx.recv();
        });
        started_rx.recv().unwrap();
        std::mem::forget(tx);
    }
    let termination = Termination::install().unwrap();
    say(format!("ready {}", mode_name(termination.mode())));
    // Graceful exit through the future, lingering through the blocking wait.
    let first = if args[1] == "exit" {
        block_on(termination.requested())
    } else {
        termination.wait()
    };
    assert!(termination.is_requested());
    assert_eq!(termination.signal(), Some(first));
    assert!(common_poll_readable(&termination));
    say(format!(
        "requested {} from {}",
        first.signal, first.sender_pid
    ));
    if args[1] == "linger" {
        // A slow shutdown: block until the second signal ends us.
        let _ = stdin_line();
        say("not killed");
    }
}

/// A minimal executor: polls `future` on this thread, parking in between.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn common_poll_readable(fd: &impl AsFd) -> bool {
    poll_readable(fd, Some(Duration::ZERO))
}

fn check_termination(mode: &str, blocked: &[Signal]) {
    let ready = format!("ready {mode}");
    let _w = common::watchdog(Duration::from_secs(30));
    let me = std::process::id();

    // First signal: graceful, the child exits by itself.
    let mut child = spawn_blocked("terminate", &[mode, "exit"], blocked);
    assert_eq!(line(&mut child), ready);
    send(child.id(), Signal::HUP).unwrap();
    let l = line(&mut child);
    if l.is_empty() {
        panic!("child ended: {:?}", child.wait());
    }
    assert_eq!(l, format!("requested SIGHUP from {me}"));
    assert!(child.wait().unwrap().success());

    // Second signal while it lingers: the default action ends it.
    let mut child = spawn_blocked("terminate", &[mode, "linger"], blocked);
    assert_eq!(line(&mut child), ready);
    send(child.id(), Signal::TERM).unwrap();
    assert_eq!(line(&mut child), format!("requested SIGTERM from {me}"));
    // Keep its stdin open: `Child::wait` would close it, and the child
    // would see end of file and exit by itself.
    let stdin = child.stdin.take();
    send(child.id(), Signal::INT).unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    assert_eq!(status.signal(), Some(Signal::INT.as_raw()), "{status:?}");
}

#[test]
fn termination_first_signal_graceful_second_forceful_signalfd() {
    check_termination("signalfd", &[Signal::INT, Signal::TERM, Signal::HUP]);
}

#[test]
fn termination_first_signal_graceful_second_forceful_self_pipe() {
    check_termination("selfpipe", &[]);
}

// ---------------------------------------------------------------------------
// Supervisor: child in its own group, signals forwarded to the group, child
// reaped through its pidfd.

fn child_supervisor() {
    let mut signals = Signals::new(Supervised::FORWARDED).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(common::ROLE_ENV, "member")
        .env(common::ARGS_ENV, "leader")
        .stdin(Stdio::null());
    let leader = Supervised::spawn(&mut cmd).unwrap();
    say(format!(
        "supervisor {} leader {} group {}",
        std::process::id(),
        leader.pid(),
        leader.process_group()
    ));
    let state = leader
        .supervise_with(&mut signals, |r| {
            say(format!("forwarding {}", r.signal));
        })
        .unwrap();
    say(format!("leader ended {state:?}"));
}

/// args: "leader" (starts one more member, waits for it) or "leaf".
fn child_member(args: &[String]) {
    let mut signals = Signals::new([Signal::HUP, Signal::TERM]).unwrap();
    let blocked = current_thread_mask();
    let mut leaf = None;
    if args[0] == "leader" {
        let exe = std::env::current_exe().unwrap();
        leaf = Some(
            Command::new(exe)
                .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
                .env(common::ROLE_ENV, "member")
                .env(common::ARGS_ENV, "leaf")
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    say(format!(
        "member {} {} group {} blocked-inherited {}",
        args[0],
        std::process::id(),
        rustix::process::getpgid(None).unwrap().as_raw_nonzero(),
        // The supervisor blocked INT/TERM/...: std's Command must not have
        // passed that on.
        contains(&blocked, Signal::INT)
    ));
    for r in signals.iter() {
        let r = r.unwrap();
        say(format!(
            "member {} got {} from {}",
            args[0], r.signal, r.sender_pid
        ));
        if r.signal == Signal::TERM {
            break;
        }
    }
    if let Some(mut leaf) = leaf {
        assert!(leaf.wait().unwrap().success());
    }
}

#[test]
fn supervisor_forwards_signals_to_the_child_group_and_reaps_through_pidfd() {
    let _w = common::watchdog(Duration::from_secs(30));
    let mut sup = spawn_blocked("supervisor", &[], &Supervised::FORWARDED);
    let first = line(&mut sup);
    let words: Vec<&str> = first.split(' ').collect();
    assert_eq!(words[0], "supervisor", "{first}");
    let sup_pid: u32 = words[1].parse().unwrap();
    let leader: u32 = words[3].parse().unwrap();
    sup.groups.push(leader);
    assert_eq!(words[5], words[3], "the leader heads its own group");
    let mut members = Vec::new();
    let mut member_pids = Vec::new();
    for _ in 0..2 {
        let l = line(&mut sup);
        let w: Vec<&str> = l.split(' ').collect();
        assert_eq!(w[0], "member", "{l}");
        assert_eq!(
            w[4],
            leader.to_string(),
            "every member is in the group: {l}"
        );
        assert_eq!(w[6], "false", "mask not inherited through Command: {l}");
        members.push(w[1].to_owned());
        member_pids.push(w[2].parse::<u32>().unwrap());
    }
    members.sort();
    assert_eq!(members, ["leader", "leaf"]);

    send(sup_pid, Signal::HUP).unwrap();
    let mut got = vec![line(&mut sup), line(&mut sup), line(&mut sup)];
    got.sort();
    assert_eq!(
        got,
        [
            "forwarding SIGHUP".to_owned(),
            format!("member leader got SIGHUP from {sup_pid}"),
            format!("member leaf got SIGHUP from {sup_pid}"),
        ]
    );

    // Ctrl-Z: the members do not catch SIGTSTP, so the whole group stops;
    // SIGCONT resumes it.
    send(sup_pid, Signal::TSTP).unwrap();
    assert_eq!(line(&mut sup), "forwarding SIGTSTP");
    for &pid in &member_pids {
        wait_for_state(pid, |s| s == 'T');
    }
    send(sup_pid, Signal::CONT).unwrap();
    assert_eq!(line(&mut sup), "forwarding SIGCONT");
    for &pid in &member_pids {
        wait_for_state(pid, |s| s != 'T');
    }

    send(sup_pid, Signal::TERM).unwrap();
    let mut got = vec![line(&mut sup), line(&mut sup), line(&mut sup)];
    got.sort();
    assert_eq!(
        got,
        [
            "forwarding SIGTERM".to_owned(),
            format!("member leader got SIGTERM from {sup_pid}"),
            format!("member leaf got SIGTERM from {sup_pid}"),
        ]
    );
    assert_eq!(line(&mut sup), "leader ended Exited(0)");
    assert!(sup.wait().unwrap().success());
}

/// Waits until the state letter of `pid` in /proc (R, S, T, ...) passes
/// `ok`. Polls: a stop is not reported to a non-parent any other way. The
/// test's watchdog bounds the wait.
fn wait_for_state(pid: u32, ok: impl Fn(char) -> bool) {
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let state = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .chars()
            .next()
            .unwrap();
        if ok(state) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------
// A pidfd names the process, not the PID.

#[test]
fn pidfd_send_to_an_exited_process_is_an_error() {
    let _w = common::watchdog(Duration::from_secs(30));
    let child = Kid::new(common::spawn_child("exit", &[]));
    let pid = child.id();
    let process = Process::from_child(&child).unwrap();
    // The pidfd becomes readable when the child exits (it is a zombie now).
    assert!(poll_readable(process.as_fd(), None));
    assert!(process.has_exited());
    // A zombie still holds its PID: signals to it, by number or pidfd, are
    // accepted and discarded.
    send(pid, Signal::USR1).unwrap();
    process.send(Signal::USR1).unwrap();
    assert_eq!(process.wait().unwrap(), ExitState::Exited(0));
    // Reaped: the number is free for reuse by any new process, but the
    // pidfd still refers to the dead one and refuses, with or without a value.
    assert!(matches!(
        process.send(Signal::TERM),
        Err(SendError::Exited { .. })
    ));
    assert!(matches!(
        process.queue(rt(1), 7),
        Err(SendError::Exited { .. })
    ));
    drop(child);
}

#[test]
fn send_errors_are_clear() {
    // Above pid_max: no such process.
    let pid = i32::MAX as u32;
    assert!(matches!(
        send(pid, Signal::USR1),
        Err(SendError::NoSuchProcess { .. })
    ));
    assert!(matches!(
        queue(pid, rt(1), 1),
        Err(SendError::NoSuchProcess { .. })
    ));
    assert!(matches!(
        send_group(pid, Signal::USR1),
        Err(SendError::NoSuchProcess { .. })
    ));
    assert!(Process::open(pid).is_err());
}

/// Drops to user "nobody" when root, then tries to signal `args[0]`.
fn child_nobody_send(args: &[String]) {
    let mut target: u32 = args[0].parse().unwrap();
    if common::os::effective_uid() != 0 {
        // Not root: target init, if it belongs to someone else (in a
        // container it may be ours, and must not be signalled).
        if process_owner_uid(1) == Some(common::os::effective_uid()) {
            say("skip");
            return;
        }
        target = 1;
    } else {
        // SAFETY: plain syscalls in a single-purpose child process.
        unsafe {
            assert_eq!(libc::setgid(65534), 0);
            assert_eq!(libc::setuid(65534), 0);
        }
    }
    match send(target, Signal::USR1) {
        Err(SendError::PermissionDenied { .. }) => say("EPERM"),
        other => say(format!("unexpected {other:?}")),
    }
}

#[test]
fn permission_denied_is_reported() {
    let _w = common::watchdog(Duration::from_secs(30));
    // The target is a child of ours (so a wrong success would only kill it).
    let mut target = Kid::new(
        common::child_command("idle", &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut sender = Kid::new(common::spawn_child(
        "nobody-send",
        &[&target.id().to_string()],
    ));
    let out = line(&mut sender);
    assert!(sender.wait().unwrap().success());
    drop(target.stdin.take());
    assert!(target.wait().unwrap().success(), "target survived");
    if out == "skip" {
        eprintln!("skipped: not root, and init is ours");
        return;
    }
    assert_eq!(out, "EPERM");
}
