//! Multi-process tests of `conduit::sync`: a robust mutex and event words
//! in a memfd mapped by the parent and by real child processes (which open
//! the parent's memfd through `/proc/<parent>/fd/<n>`, so each maps it at
//! its own address).

mod common;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::os::{self, Mapping};
use conduit::sync::{EventWord, LockError, RobustMutex, Spin, TryLockError, futex_wake_calls};

child_entry!(dispatch);

/// What the processes share. Zeroed memory is its initial state.
#[repr(C)]
struct Shared {
    mutex: RobustMutex<u64>,
    ping: EventWord,
    pong: EventWord,
    ping_seq: AtomicU64,
    pong_seq: AtomicU64,
}

const LEN: usize = 4096;

/// A zeroed shared memfd and its mapping, plus the path a child opens.
struct Region {
    _fd: OwnedFd,
    map: Mapping,
    path: String,
}

impl Region {
    fn new() -> Region {
        let fd = os::memfd("conduit-sync-test");
        os::truncate(&fd, LEN as u64);
        os::allocate(&fd, LEN as u64);
        let map = Mapping::shared(&fd, LEN).expect("mmap");
        let path = format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd());
        Region { _fd: fd, map, path }
    }

    fn open(path: &str) -> Mapping {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open parent's memfd");
        Mapping::shared(&file, LEN).expect("mmap")
    }
}

fn shared(map: &Mapping) -> &Shared {
    assert!(map.len() >= core::mem::size_of::<Shared>());
    // SAFETY: the mapping is page aligned, large enough, lives as long as
    // the returned reference, and every field of Shared is valid for any
    // bit pattern (zeroed at creation); all access goes through atomics,
    // the event words and the robust mutex.
    unsafe { &*(map.as_ptr() as *const Shared) }
}

fn dispatch(role: &str, args: &[String]) {
    let map = Region::open(&args[0]);
    let s = shared(&map);
    match role {
        // Lock, write, report, then wait to be killed while holding it.
        "hold_and_die" => {
            let mut guard = match s.mutex.lock() {
                Ok(g) => g,
                Err(LockError::OwnerDied(mut g)) => {
                    g.mark_consistent();
                    g
                }
                Err(e) => panic!("child lock: {e}"),
            };
            *guard = args[1].parse().unwrap();
            report("locked");
            loop {
                std::thread::park();
            }
        }
        "increment" => {
            let n: u64 = args[1].parse().unwrap();
            for i in 0..n {
                let mut guard = s.mutex.lock().expect("lock");
                let v = *guard;
                if i % 64 == 0 {
                    std::thread::yield_now();
                }
                *guard = v + 1;
            }
            report("done");
        }
        "pong" => {
            let n: u64 = args[1].parse().unwrap();
            let mut rng = std::process::id() as u64 | 1;
            for i in 1..=n {
                let spin = random_spin(&mut rng);
                s.ping
                    .wait_until(spin, None, || {
                        (s.ping_seq.load(Ordering::Acquire) >= i).then_some(())
                    })
                    .expect("no timeout given");
                s.pong_seq.store(i, Ordering::Release);
                s.pong.wake_one();
            }
            report("done");
        }
        "count_wakes" => {
            // 1. Nobody sleeps on `ping`: notifying must make no system call.
            let before = futex_wake_calls();
            for _ in 0..10_000 {
                s.ping.wake_one();
                s.ping.wake_all();
            }
            let idle = futex_wake_calls() - before;
            report(&idle.to_string());
            // 2. Control: the parent sleeps on `ping` (it said so by
            // registering); one notify must now make the system call.
            while s.ping.sleepers() == 0 {
                std::thread::yield_now();
            }
            let before = futex_wake_calls();
            s.ping_seq.store(1, Ordering::Release);
            s.ping.wake_all();
            let with_sleeper = futex_wake_calls() - before;
            report(&with_sleeper.to_string());
        }
        // A thread locks and exits without unlocking; the process lives on.
        "thread_exits_holding" => {
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    let mut guard = s.mutex.lock().expect("lock");
                    *guard = 7;
                    core::mem::forget(guard);
                });
            });
            report("thread gone");
            loop {
                std::thread::park();
            }
        }
        // Holds the lock across fork(): the forked process has another
        // thread id, so it must see a lock held by a live owner (its
        // parent), not its own lock.
        "fork_while_holding" => {
            let guard = s.mutex.lock().expect("lock");
            // SAFETY: the forked child only calls try_lock (atomics, a
            // /proc read, glibc's fork-safe malloc) and then _exit.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let code = match s.mutex.try_lock() {
                    Err(TryLockError::WouldBlock) => 10,
                    Err(TryLockError::WouldDeadlock) => 11,
                    Ok(_) => 12,
                    Err(TryLockError::OwnerDied(_)) => 13,
                    Err(TryLockError::NotRecoverable) => 14,
                    Err(_) => 15,
                };
                // SAFETY: ends the forked child without running the
                // parent's atexit handlers or destructors.
                unsafe { libc::_exit(code) };
            }
            let mut status = 0;
            // SAFETY: waits for the child we just forked; `status` is a
            // valid out-pointer.
            let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
            assert_eq!(waited, pid);
            drop(guard);
            report(&libc::WEXITSTATUS(status).to_string());
        }
        // Like hold_and_die, and reports its thread id (in its own PID
        // namespace) with the lock.
        "hold_and_report_tid" => {
            let mut guard = match s.mutex.lock() {
                Ok(g) => g,
                Err(LockError::OwnerDied(mut g)) => {
                    g.mark_consistent();
                    g
                }
                Err(e) => panic!("child lock: {e}"),
            };
            *guard = args[1].parse().unwrap();
            report(&format!("locked {}", thread_id()));
            loop {
                std::thread::park();
            }
        }
        // Reports its thread id, what try_lock and a short lock_timeout
        // find, then what a blocking lock finally returns.
        "contend" => {
            report(&format!("tid {}", thread_id()));
            let outcome = match s.mutex.try_lock() {
                Ok(_) => "locked".to_owned(),
                Err(TryLockError::WouldBlock) => "would block".to_owned(),
                Err(TryLockError::WouldDeadlock) => "would deadlock".to_owned(),
                Err(TryLockError::OwnerDied(g)) => format!("owner died {}", *g),
                Err(e) => format!("{e}"),
            };
            report(&format!("try_lock {outcome}"));
            let outcome = match s.mutex.lock_timeout(Duration::from_millis(200)) {
                Ok(_) => "locked".to_owned(),
                Err(conduit::sync::LockTimeoutError::Timeout) => "timeout".to_owned(),
                Err(conduit::sync::LockTimeoutError::OwnerDied(g)) => format!("owner died {}", *g),
                Err(e) => format!("{e}"),
            };
            report(&format!("lock_timeout {outcome}"));
            let outcome = match s.mutex.lock() {
                Ok(g) => format!("locked {}", *g),
                Err(LockError::OwnerDied(mut g)) => {
                    g.mark_consistent();
                    format!("owner died {}", *g)
                }
                Err(e) => format!("{e}"),
            };
            report(&format!("lock {outcome}"));
        }
        other => panic!("unknown role {other}"),
    }
}

/// Marker in front of a child's report: libtest prints its own text
/// ("running 1 test", "test child_entry ... ") on the same stdout.
const REPORT: &str = "sync-report:";

/// Prints one report line for the parent.
fn report(message: &str) {
    println!("{REPORT}{message}");
}

/// The next report line of `child` (without the marker); "" at end of
/// file. Reads byte by byte so nothing past the line is consumed.
fn read_report(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let out = child.stdout.as_mut().expect("child stdout is piped");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match out.read(&mut byte) {
            Ok(0) => return String::new(),
            Ok(_) if byte[0] == b'\n' => {
                let text = String::from_utf8_lossy(&line).into_owned();
                if let Some((_, message)) = text.split_once(REPORT) {
                    return message.to_owned();
                }
                line.clear();
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read child stdout: {e}"),
        }
    }
}

/// xorshift; half the rounds sleep at once, half spin a random while.
fn random_spin(state: &mut u64) -> Spin {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    match *state % 4 {
        0 | 1 => Spin::NONE,
        2 => Spin::iterations((*state >> 8) as u32 % 2000),
        _ => Spin::duration(Duration::from_micros((*state >> 8) % 50)),
    }
}

fn kill_and_reap(mut child: Kid) {
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
}

/// A child process that is killed and reaped if the test fails before it
/// ends, so no test leaves a process behind.
struct Kid(std::process::Child);

impl Kid {
    fn spawn(role: &str, args: &[&str]) -> Kid {
        Kid(common::spawn_child(role, args))
    }
}

impl std::ops::Deref for Kid {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Kid {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn owner_killed_while_holding_then_recovered_then_not_recoverable() {
    let _w = common::watchdog(Duration::from_secs(60));
    let region = Region::new();
    let s = shared(&region.map);

    // 1. A child dies holding the lock while a parent thread sleeps in
    //    lock(): the sleeper gets OwnerDied with the child's data.
    let mut child = Kid::spawn("hold_and_die", &[&region.path, "42"]);
    assert_eq!(read_report(&mut child), "locked");
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| match s.mutex.lock() {
            Err(LockError::OwnerDied(mut guard)) => {
                assert_eq!(*guard, 42);
                *guard = 43;
                guard.mark_consistent();
            }
            Ok(_) => panic!("lock succeeded although the owner never unlocked"),
            Err(e) => panic!("{e}"),
        });
        kill_and_reap(child);
        waiter.join().unwrap();
    });
    assert_eq!(*s.mutex.lock().expect("recovered mutex locks normally"), 43);

    // 2. A killed owner, not yet reaped (a zombie), also counts as dead;
    //    this time the successor drops the guard without repairing.
    let mut child = Kid::spawn("hold_and_die", &[&region.path, "44"]);
    assert_eq!(read_report(&mut child), "locked");
    assert!(matches!(s.mutex.try_lock(), Err(TryLockError::WouldBlock)));
    child.kill().unwrap();
    let guard = loop {
        // try_lock until the kernel has finished killing it.
        match s.mutex.try_lock() {
            Err(TryLockError::OwnerDied(g)) => break g,
            Err(TryLockError::WouldBlock) => std::thread::yield_now(),
            Ok(_) => panic!("lock succeeded although the owner never unlocked"),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(*guard, 44);
    drop(guard);
    child.wait().unwrap();
    assert!(matches!(s.mutex.lock(), Err(LockError::NotRecoverable)));
    assert!(matches!(
        s.mutex.try_lock(),
        Err(TryLockError::NotRecoverable)
    ));
    assert!(s.mutex.is_not_recoverable());
}

#[test]
fn two_processes_count_under_the_mutex() {
    let _w = common::watchdog(Duration::from_secs(60));
    let region = Region::new();
    let s = shared(&region.map);
    let n = 20_000u64;
    let mut children: Vec<_> = (0..2)
        .map(|_| Kid::spawn("increment", &[&region.path, &n.to_string()]))
        .collect();
    for child in &mut children {
        assert_eq!(read_report(child), "done");
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(*s.mutex.lock().unwrap(), 2 * n);
}

#[test]
fn event_ping_pong_across_processes_loses_no_wakeup() {
    let _w = common::watchdog(Duration::from_secs(60));
    let region = Region::new();
    let s = shared(&region.map);
    let n = 3_000u64;
    let mut child = Kid::spawn("pong", &[&region.path, &n.to_string()]);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for i in 1..=n {
        s.ping_seq.store(i, Ordering::Release);
        s.ping.wake_one();
        let spin = random_spin(&mut rng);
        s.pong
            .wait_until(spin, None, || {
                (s.pong_seq.load(Ordering::Acquire) >= i).then_some(())
            })
            .expect("no timeout given");
    }
    assert_eq!(read_report(&mut child), "done");
    assert!(child.wait().unwrap().success());
    assert_eq!(s.ping.sleepers(), 0);
    assert_eq!(s.pong.sleepers(), 0);
}

#[test]
fn notify_without_sleepers_makes_no_system_call() {
    let _w = common::watchdog(Duration::from_secs(60));
    let region = Region::new();
    let s = shared(&region.map);
    // The counting happens in the child, whose counter no other test
    // touches. We sleep on `ping` so the child's control notify has a
    // sleeper to wake.
    let mut child = Kid::spawn("count_wakes", &[&region.path]);
    let idle: u64 = read_report(&mut child).parse().unwrap();
    assert_eq!(idle, 0, "futex_wake calls with nobody asleep");
    s.ping
        .wait_until(Spin::NONE, None, || {
            (s.ping_seq.load(Ordering::Acquire) == 1).then_some(())
        })
        .unwrap();
    let with_sleeper: u64 = read_report(&mut child).parse().unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(with_sleeper, 1, "futex_wake calls with one sleeper");
}

#[test]
fn lock_timeout_gives_up_on_live_owner_in_other_process() {
    let _w = common::watchdog(Duration::from_secs(60));
    let region = Region::new();
    let s = shared(&region.map);
    let mut child = Kid::spawn("hold_and_die", &[&region.path, "1"]);
    assert_eq!(read_report(&mut child), "locked");
    assert!(matches!(
        s.mutex.lock_timeout(Duration::from_millis(20)),
        Err(conduit::sync::LockTimeoutError::Timeout)
    ));
    kill_and_reap(child);
    let mut g = s.mutex.lock().unwrap_err().into_owner_died().unwrap();
    g.mark_consistent();
}

#[test]
fn owner_thread_exit_in_live_process_is_owner_death() {
    let _w = common::watchdog(Duration::from_secs(60));
    let region = Region::new();
    let s = shared(&region.map);
    let mut child = Kid::spawn("thread_exits_holding", &[&region.path]);
    assert_eq!(read_report(&mut child), "thread gone");
    // The process is alive; only the owning thread is gone.
    assert!(matches!(child.try_wait(), Ok(None)));
    let mut guard = s.mutex.lock().unwrap_err().into_owner_died().unwrap();
    assert_eq!(*guard, 7);
    guard.mark_consistent();
    drop(guard);
    kill_and_reap(child);
}

#[test]
fn forked_child_does_not_inherit_lock_ownership() {
    let _w = common::watchdog(Duration::from_secs(60));
    let region = Region::new();
    let mut child = Kid::spawn("fork_while_holding", &[&region.path]);
    // 10 = WouldBlock: the forked process saw a lock held by a live
    // owner; 11 would mean it took its parent's thread id for its own.
    assert_eq!(read_report(&mut child), "10");
    assert!(child.wait().unwrap().success());
    assert!(shared(&region.map).mutex.try_lock().is_ok());
}

/// The calling thread's id in its own PID namespace.
fn thread_id() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// A zeroed POSIX shared-memory object (`/dev/shm/<name>`) and its
/// mapping: unlike the memfd of [`Region`], a process in another PID
/// namespace (which cannot see `/proc/<parent>`) can open it by path, as
/// containers that share `/dev/shm` do. Unlinked when dropped.
struct ShmRegion {
    _fd: OwnedFd,
    map: Mapping,
    name: String,
    path: String,
}

impl ShmRegion {
    fn new() -> ShmRegion {
        let name = format!("/{}", common::unique("conduit-sync-pidns"));
        let fd = os::shm_create(&name, 0o600);
        os::truncate(&fd, LEN as u64);
        os::allocate(&fd, LEN as u64);
        let map = Mapping::shared(&fd, LEN).expect("mmap");
        let path = format!("/dev/shm{name}");
        ShmRegion {
            _fd: fd,
            map,
            name,
            path,
        }
    }
}

impl Drop for ShmRegion {
    fn drop(&mut self) {
        let _ = os::shm_unlink(&self.name);
    }
}

/// Starts this test binary in role `role` in a new PID namespace (see
/// [`common::spawn_child_in_new_pid_namespace`]).
fn spawn_in_new_pid_namespace(role: &str, args: &[&str]) -> Kid {
    Kid(common::spawn_child_in_new_pid_namespace(role, args))
}

/// SIGKILLs the process `unshare` started and reaps `unshare`.
fn kill_namespace_init(unshare: &mut Kid) {
    common::kill_namespace_init(unshare);
}

#[test]
fn lock_held_in_another_pid_namespace_is_never_taken_and_recovered_when_killed() {
    let _w = common::watchdog(Duration::from_secs(60));
    if let Some(why) = common::pid_namespaces_unavailable() {
        println!("skipped: {why}");
        return;
    }
    let region = ShmRegion::new();
    let s = shared(&region.map);
    // The owner's thread id is small in its namespace (1 or 2): here it
    // names another task, or none; neither must matter.
    let mut owner = spawn_in_new_pid_namespace("hold_and_report_tid", &[&region.path, "42"]);
    let locked = read_report(&mut owner);
    assert!(locked.starts_with("locked "), "{locked:?}");
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| match s.mutex.lock() {
            Err(LockError::OwnerDied(mut guard)) => {
                assert_eq!(*guard, 42);
                guard.mark_consistent();
            }
            Ok(_) => panic!("took a lock its live owner never released"),
            Err(e) => panic!("{e}"),
        });
        assert!(matches!(s.mutex.try_lock(), Err(TryLockError::WouldBlock)));
        assert!(matches!(
            s.mutex.lock_timeout(Duration::from_millis(300)),
            Err(conduit::sync::LockTimeoutError::Timeout)
        ));
        assert!(
            !waiter.is_finished(),
            "lock() returned while the owner lives"
        );
        kill_namespace_init(&mut owner);
        waiter.join().unwrap();
    });
    assert_eq!(*s.mutex.lock().expect("recovered mutex locks normally"), 42);
}

#[test]
fn same_thread_id_in_two_pid_namespaces_is_not_the_same_owner() {
    let _w = common::watchdog(Duration::from_secs(60));
    if let Some(why) = common::pid_namespaces_unavailable() {
        println!("skipped: {why}");
        return;
    }
    let region = ShmRegion::new();
    let s = shared(&region.map);
    // Both run the same code as the first process of a fresh namespace,
    // so their threads get the same ids.
    let mut owner = spawn_in_new_pid_namespace("hold_and_report_tid", &[&region.path, "7"]);
    let locked = read_report(&mut owner);
    let owner_tid = locked
        .strip_prefix("locked ")
        .expect("locked <tid>")
        .to_owned();
    let mut contender = spawn_in_new_pid_namespace("contend", &[&region.path]);
    let contender_tid = read_report(&mut contender);
    let contender_tid = contender_tid.strip_prefix("tid ").expect("tid <tid>");
    if contender_tid != owner_tid {
        println!(
            "note: thread ids differ ({owner_tid} vs {contender_tid}); the collision is not exercised"
        );
    }
    assert_eq!(read_report(&mut contender), "try_lock would block");
    assert_eq!(read_report(&mut contender), "lock_timeout timeout");
    assert!(matches!(contender.try_wait(), Ok(None)));
    kill_namespace_init(&mut owner);
    assert_eq!(read_report(&mut contender), "lock owner died 7");
    assert!(contender.wait().unwrap().success());
    assert_eq!(*s.mutex.lock().expect("unlocked by the contender"), 7);
}
