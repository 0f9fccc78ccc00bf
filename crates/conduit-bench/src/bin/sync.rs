//! Benchmarks of `conduit::sync`, with their baselines in the same run.
//!
//! `cargo run --release -p conduit-bench --bin sync [-- --quick]`
//!
//! 1. Uncontended `RobustMutex` lock + unlock vs `std::sync::Mutex` and
//!    glibc's robust process-shared pthread mutex (the same kernel
//!    mechanism).
//! 2. `EventWord::wake_one` with nobody asleep vs a bare `fetch_add`.
//! 3. Ping-pong between two processes pinned to CPU 0 and CPU 1 over two
//!    event words in a memfd, for several spin budgets, vs two processes
//!    spinning on plain shared atomics. Reports one-way latency (round
//!    trip / 2; each round trip includes one clock read) at p50/p99, and
//!    the CPU time both processes burn per round trip.

use std::hint::black_box;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conduit::sync::{EventWord, RobustMutex, Spin};
use conduit_bench::raw::{self, Mapping};

const ROLE_ENV: &str = "CONDUIT_BENCH_SYNC_ROLE";
const LEN: usize = 4096;

/// Shared between the two processes; each written word on its own line.
#[repr(C, align(64))]
struct Line<T>(T);

#[repr(C)]
struct Shared {
    ping_seq: Line<AtomicU64>,
    ping: Line<EventWord>,
    pong_seq: Line<AtomicU64>,
    pong: Line<EventWord>,
    child_cpu_ns: Line<AtomicU64>,
    child_ready: Line<AtomicU64>,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Plain atomics, busy polling: the floor.
    RawSpin,
    /// Event words with this spin budget before sleeping.
    Event(Spin),
}

fn modes() -> Vec<(&'static str, Mode)> {
    vec![
        ("baseline: raw atomics, busy poll", Mode::RawSpin),
        (
            "EventWord, spin forever",
            Mode::Event(Spin::iterations(u32::MAX)),
        ),
        (
            "EventWord, spin 50 us then sleep",
            Mode::Event(Spin::duration(Duration::from_micros(50))),
        ),
        (
            "EventWord, spin 5 us then sleep",
            Mode::Event(Spin::duration(Duration::from_micros(5))),
        ),
        ("EventWord, sleep at once", Mode::Event(Spin::NONE)),
    ]
}

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        let args: Vec<String> = std::env::args().collect();
        child(
            &role,
            &args[1],
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
        );
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    pin(0);
    micro(quick);
    println!();
    println!("ping-pong between two processes (CPU 0 <-> CPU 1), one-way latency");
    println!(
        "{:<36} {:>10} {:>10} {:>14}",
        "scenario", "p50", "p99", "CPU/round trip"
    );
    for (index, (name, mode)) in modes().into_iter().enumerate() {
        let rounds = match (mode, quick) {
            (Mode::Event(s), _) if s == Spin::NONE => {
                if quick {
                    500
                } else {
                    5_000
                }
            }
            (_, true) => 5_000,
            (_, false) => 100_000,
        };
        ping_pong(name, index, mode, rounds);
    }
}

// glibc exports it; the libc crate has no binding for it on Linux.
unsafe extern "C" {
    fn pthread_mutexattr_setrobust(
        attr: *mut libc::pthread_mutexattr_t,
        robustness: libc::c_int,
    ) -> libc::c_int;
}

/// Uncontended lock + unlock of glibc's robust, process-shared pthread
/// mutex (the same kernel robust-list mechanism as `RobustMutex`), in ns.
fn pthread_robust_shared(n: u64) -> f64 {
    const PTHREAD_MUTEX_ROBUST: libc::c_int = 1;
    let mut m: Box<libc::pthread_mutex_t> = Box::new(libc::PTHREAD_MUTEX_INITIALIZER);
    // SAFETY: `attr` is initialised by pthread_mutexattr_init before use
    // and destroyed after the mutex is initialised; `m` is a live, boxed
    // (so unmoving) mutex that is initialised before it is locked, only
    // locked and unlocked by this thread, and destroyed unlocked.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = core::mem::zeroed();
        assert_eq!(libc::pthread_mutexattr_init(&mut attr), 0);
        assert_eq!(
            pthread_mutexattr_setrobust(&mut attr, PTHREAD_MUTEX_ROBUST),
            0
        );
        assert_eq!(
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
            0
        );
        assert_eq!(libc::pthread_mutex_init(&mut *m, &attr), 0);
        libc::pthread_mutexattr_destroy(&mut attr);
        let t = Instant::now();
        for _ in 0..n {
            assert_eq!(libc::pthread_mutex_lock(black_box(&mut *m)), 0);
            assert_eq!(libc::pthread_mutex_unlock(black_box(&mut *m)), 0);
        }
        let ns = per_op(t.elapsed(), n);
        libc::pthread_mutex_destroy(&mut *m);
        ns
    }
}

fn micro(quick: bool) {
    let n: u64 = if quick { 1_000_000 } else { 20_000_000 };
    println!("uncontended, in one thread ({n} iterations)");
    let m = RobustMutex::new(0u64);
    let t = Instant::now();
    for _ in 0..n {
        *m.lock().unwrap() += 1;
    }
    let robust = per_op(t.elapsed(), n);
    let s = std::sync::Mutex::new(0u64);
    let t = Instant::now();
    for _ in 0..n {
        *s.lock().unwrap() += 1;
    }
    let std_mutex = per_op(t.elapsed(), n);
    let pthread_robust = pthread_robust_shared(n);
    println!(
        "  RobustMutex lock+unlock        {robust:>7.1} ns   (baseline std::sync::Mutex {std_mutex:.1} ns, glibc robust process-shared pthread mutex {pthread_robust:.1} ns)"
    );
    let e = EventWord::new();
    let t = Instant::now();
    for _ in 0..n {
        black_box(&e).wake_one();
    }
    let wake = per_op(t.elapsed(), n);
    let a = AtomicU32::new(0);
    let t = Instant::now();
    for _ in 0..n {
        black_box(&a).fetch_add(1, Ordering::Release);
    }
    let add = per_op(t.elapsed(), n);
    println!(
        "  EventWord::wake_one, no sleeper {wake:>6.1} ns   (baseline AtomicU32::fetch_add {add:.1} ns)"
    );
}

fn per_op(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n as f64
}

fn shared(map: &Mapping) -> &Shared {
    assert!(map.len() >= core::mem::size_of::<Shared>());
    // SAFETY: page-aligned mapping large enough for Shared, alive as long
    // as the reference; every field is an atomic valid for any bits
    // (zeroed at creation).
    unsafe { &*(map.as_ptr() as *const Shared) }
}

fn ping_pong(name: &str, index: usize, mode: Mode, rounds: u64) {
    let memfd: OwnedFd = raw::memfd("conduit-bench-sync");
    raw::truncate(&memfd, LEN as u64);
    raw::allocate(&memfd, LEN as u64);
    let map = Mapping::shared(&memfd, LEN).expect("mmap");
    let s = shared(&map);
    let path = format!("/proc/{}/fd/{}", std::process::id(), memfd.as_raw_fd());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([path, index.to_string(), rounds.to_string()])
        .env(ROLE_ENV, "pong")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn child");

    // Start measuring once the child has started (exec, mapping).
    while s.child_ready.0.load(Ordering::Acquire) == 0 {
        std::thread::yield_now();
    }
    let mut samples = Vec::with_capacity(rounds as usize);
    let cpu_start = cpu_time();
    let mut last = Instant::now();
    for i in 1..=rounds {
        s.ping_seq.0.store(i, Ordering::Release);
        match mode {
            Mode::RawSpin => {
                while s.pong_seq.0.load(Ordering::Acquire) < i {
                    core::hint::spin_loop();
                }
            }
            Mode::Event(spin) => {
                s.ping.0.wake_one();
                s.pong
                    .0
                    .wait_until(spin, None, || {
                        (s.pong_seq.0.load(Ordering::Acquire) >= i).then_some(())
                    })
                    .unwrap();
            }
        }
        let now = Instant::now();
        samples.push(now - last);
        last = now;
    }
    let parent_cpu = cpu_time() - cpu_start;
    assert!(child.wait().unwrap().success());
    let child_cpu = Duration::from_nanos(s.child_cpu_ns.0.load(Ordering::Acquire));
    // Drop the first rounds (child start-up, page faults).
    let warm = &mut samples[(rounds as usize / 10)..];
    warm.sort_unstable();
    let pct = |p: f64| warm[((warm.len() - 1) as f64 * p) as usize] / 2;
    let cpu_per_rt = (parent_cpu + child_cpu) / rounds as u32;
    println!(
        "{name:<36} {:>10} {:>10} {:>14}",
        fmt(pct(0.5)),
        fmt(pct(0.99)),
        fmt(cpu_per_rt)
    );
}

fn child(role: &str, path: &str, index: usize, rounds: u64) {
    assert_eq!(role, "pong");
    pin(1);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let map = Mapping::shared(&file, LEN).expect("mmap");
    let s = shared(&map);
    let mode = modes()[index].1;
    let cpu_start = cpu_time();
    s.child_ready.0.store(1, Ordering::Release);
    for i in 1..=rounds {
        match mode {
            Mode::RawSpin => {
                while s.ping_seq.0.load(Ordering::Acquire) < i {
                    core::hint::spin_loop();
                }
                s.pong_seq.0.store(i, Ordering::Release);
            }
            Mode::Event(spin) => {
                s.ping
                    .0
                    .wait_until(spin, None, || {
                        (s.ping_seq.0.load(Ordering::Acquire) >= i).then_some(())
                    })
                    .unwrap();
                s.pong_seq.0.store(i, Ordering::Release);
                s.pong.0.wake_one();
            }
        }
    }
    let used = cpu_time() - cpu_start;
    s.child_cpu_ns
        .0
        .store(used.as_nanos() as u64, Ordering::Release);
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else {
        format!("{:.1} us", ns as f64 / 1000.0)
    }
}

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    conduit_bench::harness::cpu_time(false)
}

/// Pins this process to one CPU; ignored if the CPU is not available.
fn pin(cpu: usize) {
    conduit_bench::harness::pin_to_cpu(cpu);
}
