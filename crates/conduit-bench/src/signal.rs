//! Signal ping-pong between two processes, against pipe and futex
//! ping-pongs measured in the same run.
//!
//! Every scenario forks one child; the parent is pinned to CPU 0 and the
//! child to CPU 1. A round trip is: parent wakes child, child wakes parent.
//! Each side *sleeps* in the kernel while waiting (no spinning), so every
//! scenario measures a cross-CPU wake-up; one-way latency = round trip / 2.
//!
//! Scenarios:
//! * `signal (sigqueue + sigwaitinfo)`: a queued real-time signal carrying
//!   the sequence number, taken with `sigtimedwait` (one syscall per side).
//! * `signal (sigqueue + conduit Signals)`: the same signal read through
//!   conduit's [`Signals`] (signalfd: read, poll when empty, read).
//! * `pipe`: one 8-byte write/read per direction over two pipes.
//! * `futex`: a sequence word in a `MAP_SHARED` anonymous mapping,
//!   raw `FUTEX_WAIT`/`FUTEX_WAKE` ([`crate::raw`]).
//!
//! The baselines make their system calls directly (rustix, or libc where
//! rustix has no API: signal masks and `sigtimedwait`).
//!
//! The clock is read once per round trip: a round trip costs tens of
//! microseconds here, so the ~20 ns of a clock read is noise.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use conduit::signal::{Signal, Signals, queue};

use crate::raw;

/// Latency figures of one scenario.
#[derive(Debug, Clone)]
pub struct Report {
    /// Scenario name.
    pub name: &'static str,
    /// Round trips measured.
    pub round_trips: usize,
    /// Median one-way latency.
    pub p50: Duration,
    /// 99th percentile one-way latency.
    pub p99: Duration,
    /// Round trips per second over the measured run.
    pub round_trips_per_sec: f64,
}

/// Per-round-trip samples, the percentile of every latency row
/// ([`crate::harness::percentile`]), one-way = round trip / 2.
fn report(name: &'static str, rtts: Vec<Duration>, total: Duration) -> Report {
    let mut ns: Vec<f64> = rtts.iter().map(|d| d.as_nanos() as f64).collect();
    ns.sort_unstable_by(f64::total_cmp);
    let pick = |q: f64| Duration::from_nanos((crate::harness::percentile(&ns, q) / 2.0) as u64);
    Report {
        name,
        round_trips: rtts.len(),
        p50: pick(0.50),
        p99: pick(0.99),
        round_trips_per_sec: rtts.len() as f64 / total.as_secs_f64(),
    }
}

/// Pins the calling process to `cpu` (ignored if that fails, e.g. on a
/// one-CPU machine: the report then measures same-CPU wake-ups).
pub fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data, initialised by CPU_ZERO/CPU_SET; the
    // call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Forks; the child pins itself to CPU 1, runs `child` and exits. The
/// parent pins itself to CPU 0 and gets the child's pid.
///
/// Must be called from a single-threaded process.
fn fork_pinned(child: impl FnOnce()) -> i32 {
    // SAFETY: the bench binary is single-threaded when it forks, so the
    // child may allocate and run arbitrary code; it leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        pin_to_cpu(1);
        child();
        // SAFETY: ends the child without running the parent's atexit
        // handlers or destructors twice.
        unsafe { libc::_exit(0) };
    }
    pin_to_cpu(0);
    pid
}

fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: {status:#x}"
    );
}

fn measure(
    warmup: usize,
    iters: usize,
    mut round_trip: impl FnMut(usize),
) -> (Vec<Duration>, Duration) {
    for i in 0..warmup {
        round_trip(i);
    }
    let mut rtts = Vec::with_capacity(iters);
    let start = Instant::now();
    let mut last = start;
    for i in warmup..warmup + iters {
        round_trip(i);
        let now = Instant::now();
        rtts.push(now - last);
        last = now;
    }
    (rtts, last - start)
}

fn rt_signal() -> Signal {
    Signal::realtime(1).expect("SIGRTMIN+1")
}

/// `pthread_sigmask(how, set, &old)`: changes the calling thread's blocked
/// signals, returns the previous mask (or the error number).
fn thread_mask(how: libc::c_int, set: &libc::sigset_t) -> Result<libc::sigset_t, i32> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it fully.
    let mut old: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: `old` is a valid sigset_t to write into.
    unsafe { libc::sigemptyset(&mut old) };
    // SAFETY: `set` and `old` are valid, initialised sigset_t values.
    match unsafe { libc::pthread_sigmask(how, set, &mut old) } {
        0 => Ok(old),
        rc => Err(rc),
    }
}

/// `sigtimedwait(set, &info, NULL)`: takes one signal of `set` (which must
/// be blocked), sleeping until one is pending; `None` when a signal outside
/// the set interrupted the wait (`EINTR`). Returns the value it carries.
fn wait_value(set: &libc::sigset_t) -> Option<u64> {
    // SAFETY: siginfo_t is plain data.
    let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` and `info` are valid; a null timeout waits forever.
    let rc = unsafe { libc::sigtimedwait(set, &mut info, core::ptr::null()) };
    if rc < 0 {
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR | libc::EAGAIN) => return None,
            _ => panic!("sigtimedwait: {}", std::io::Error::last_os_error()),
        }
    }
    // SAFETY: the kernel filled `info` for a queued signal; si_value reads
    // an integer union member, valid for any bits.
    Some(unsafe { info.si_value() }.sival_ptr as usize as u64)
}

/// The signal scenarios: `use_signals` reads through conduit's `Signals`,
/// otherwise through `sigtimedwait`.
pub fn signal_ping_pong(warmup: usize, iters: usize, use_signals: bool) -> Report {
    let sig = rt_signal();
    // SAFETY: sigset_t is plain data; sigemptyset initialises it and
    // sigaddset adds a valid real-time signal number.
    let set = unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig.as_raw());
        set
    };
    // Blocked before fork: both processes, and every thread, block it.
    let before = thread_mask(libc::SIG_BLOCK, &set).expect("block");
    let total = warmup + iters;
    let parent = std::process::id();
    let receive = move |signals: &mut Option<Signals>| -> usize {
        match signals {
            Some(s) => s.next().expect("receive").value.expect("value"),
            None => loop {
                if let Some(value) = wait_value(&set) {
                    break value as usize;
                }
            },
        }
    };
    let child = fork_pinned(move || {
        let mut signals = use_signals.then(|| Signals::new([sig]).expect("subscribe"));
        for _ in 0..total {
            let v = receive(&mut signals);
            queue(parent, sig, v + 1).expect("queue to parent");
        }
    });
    let mut signals = use_signals.then(|| Signals::new([sig]).expect("subscribe"));
    let (rtts, elapsed) = measure(warmup, iters, |i| {
        queue(child as u32, sig, 2 * i).expect("queue to child");
        let v = receive(&mut signals);
        assert_eq!(v, 2 * i + 1);
    });
    reap(child);
    drop(signals);
    let _ = thread_mask(libc::SIG_SETMASK, &before);
    let name = if use_signals {
        "signal (sigqueue + conduit Signals/signalfd)"
    } else {
        "signal (sigqueue + sigwaitinfo)"
    };
    report(name, rtts, elapsed)
}

/// Pipe ping-pong: 8 bytes each way, blocking read/write.
pub fn pipe_ping_pong(warmup: usize, iters: usize) -> Report {
    let mut to_child = [0i32; 2];
    let mut to_parent = [0i32; 2];
    // SAFETY: pipe writes two fresh descriptors into each array.
    unsafe {
        assert_eq!(libc::pipe(to_child.as_mut_ptr()), 0);
        assert_eq!(libc::pipe(to_parent.as_mut_ptr()), 0);
    }
    let total = warmup + iters;
    let read = |fd: i32| -> u64 {
        let mut buf = [0u8; 8];
        // SAFETY: reads into a local 8-byte buffer from a pipe we own.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), 8) };
        assert_eq!(n, 8);
        u64::from_ne_bytes(buf)
    };
    let write = |fd: i32, v: u64| {
        let buf = v.to_ne_bytes();
        // SAFETY: writes a local 8-byte buffer to a pipe we own.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), 8) };
        assert_eq!(n, 8);
    };
    let child = fork_pinned(move || {
        for _ in 0..total {
            let v = read(to_child[0]);
            write(to_parent[1], v + 1);
        }
    });
    let (rtts, elapsed) = measure(warmup, iters, |i| {
        write(to_child[1], 2 * i as u64);
        assert_eq!(read(to_parent[0]), 2 * i as u64 + 1);
    });
    reap(child);
    for fd in to_child.into_iter().chain(to_parent) {
        // SAFETY: closes descriptors this function opened.
        unsafe { libc::close(fd) };
    }
    report("pipe (8-byte write/read)", rtts, elapsed)
}

/// Futex ping-pong on a sequence word in shared anonymous memory.
///
/// Word states: even `2k` = the child's turn is next after the parent
/// stores `2k + 1`; the child answers with `2k + 2`. Each side sleeps with
/// `FUTEX_WAIT` while the word holds the value it last stored.
pub fn futex_ping_pong(warmup: usize, iters: usize) -> Report {
    // SAFETY: a fresh shared anonymous mapping of one page; unmapped below.
    let page = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED);
    // SAFETY: the page is zeroed, aligned and lives until munmap below;
    // AtomicU32 has the layout of u32, and both processes only access the
    // word atomically.
    let word: &AtomicU32 = unsafe { &*(page as *const AtomicU32) };
    let total = (warmup + iters) as u32;
    let wait_while = |word: &AtomicU32, value: u32| {
        while word.load(Ordering::Acquire) == value {
            raw::futex_wait(word, value);
        }
    };
    let child = fork_pinned(|| {
        for k in 0..total {
            wait_while(word, 2 * k);
            word.store(2 * k + 2, Ordering::Release);
            raw::futex_wake(word, 1);
        }
    });
    let (rtts, elapsed) = measure(warmup, iters, |i| {
        let k = i as u32;
        word.store(2 * k + 1, Ordering::Release);
        raw::futex_wake(word, 1);
        wait_while(word, 2 * k + 1);
    });
    reap(child);
    // SAFETY: unmaps the page mapped above; `word` is not used after this.
    unsafe { libc::munmap(page, 4096) };
    report("futex (shared word, wait/wake)", rtts, elapsed)
}

/// Runs every scenario with `iters` measured round trips each and returns
/// the reports in a fixed order: pipe, futex, signal/sigwaitinfo,
/// signal/Signals.
pub fn run_all(iters: usize) -> Vec<Report> {
    let warmup = (iters / 10).max(100);
    vec![
        pipe_ping_pong(warmup, iters),
        futex_ping_pong(warmup, iters),
        signal_ping_pong(warmup, iters, false),
        signal_ping_pong(warmup, iters, true),
    ]
}
