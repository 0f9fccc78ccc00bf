//! The floors: what two processes on two CPUs can do at best, measured in
//! the same run as the system under test so results are ratios.
//!
//! - [`spin_line`]: two processes spinning on shared memory, one cache line
//!   per direction. The floor of any busy-polling transport.
//! - [`futex_pingpong`]: each side sleeps on a shared futex word and the
//!   other wakes it; no spinning. The floor of any transport that lets the
//!   receiver sleep.
//! - [`pipe_pingpong`]: 8 bytes over a pair of pipes, blocking reads. The
//!   simple baseline everyone has.
//!
//! Each runs the measuring side in this process (pinned to CPU 0) and the
//! echo side in a child (CPU 1); see [`crate::harness`].

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use conduit::sys::mman::{Mapping, Protection};
use conduit::sys::{fd, futex, memfd, pipe};

use crate::harness::{self, Measurement, Mode, Plan};

/// Child role of [`spin_line`].
pub const SPIN_LINE_ROLE: &str = "floors-spin-line";
/// Child role of [`futex_pingpong`].
pub const FUTEX_ROLE: &str = "floors-futex";
/// Child role of [`pipe_pingpong`].
pub const PIPE_ROLE: &str = "floors-pipe";

/// Length of the shared mapping (one page).
const SHARED_LEN: usize = 4096;

/// One cache line holding one word; each line is written by one process
/// only.
#[repr(C, align(64))]
struct Line<T>(T);

/// The shared page of the floors.
///
/// `ping` is written only by the measuring process, `pong` only by the
/// echoing child; each holds the number of the last message (round trip
/// `i` carries `i + 1`, so 0 means "none yet"). States: `ping` goes
/// `i → i + 1` when the parent sends; `pong` follows to `i + 1` when the
/// child echoes. Release on store / Acquire on load is all the ordering
/// needed: there is no other data to publish, but it keeps the pattern the
/// same as a real transport's.
#[repr(C)]
struct Shared {
    ping: Line<AtomicU64>,
    pong: Line<AtomicU64>,
    /// Futex words for [`futex_pingpong`], same protocol truncated to 32
    /// bits (wrapping is harmless: only equality with the awaited value
    /// matters).
    ping_futex: Line<AtomicU32>,
    pong_futex: Line<AtomicU32>,
}

/// A memfd of one page, mapped, zeroed (a fresh memfd reads as zeros).
struct SharedPage {
    memfd: OwnedFd,
    map: Mapping,
}

impl SharedPage {
    fn create() -> SharedPage {
        let memfd = memfd::create("conduit-bench-floors").expect("memfd_create");
        fd::truncate(&memfd, SHARED_LEN as u64).expect("ftruncate");
        let map = Mapping::map(&memfd, SHARED_LEN, Protection::ReadWrite).expect("mmap");
        SharedPage { memfd, map }
    }

    fn inherit(i: usize) -> SharedPage {
        let memfd = harness::inherited_fd(i);
        let map = Mapping::map(&memfd, SHARED_LEN, Protection::ReadWrite).expect("mmap");
        SharedPage { memfd, map }
    }

    fn shared(&self) -> &Shared {
        const { assert!(size_of::<Shared>() <= SHARED_LEN) };
        // SAFETY: the mapping is page-aligned, SHARED_LEN long (checked
        // above to hold a Shared) and lives as long as the returned
        // reference; every field is an atomic, valid for any bit pattern
        // (the memfd starts zeroed), and all cross-process access goes
        // through those atomics.
        unsafe { &*self.map.as_ptr().cast::<Shared>() }
    }
}

/// Waits with a plain spin until `word` holds `value`.
#[inline(always)]
fn spin_until(word: &AtomicU64, value: u64) {
    while word.load(Ordering::Acquire) != value {
        core::hint::spin_loop();
    }
}

/// The default plan for busy-polling scenarios (batches of 100 round
/// trips); `quick` keeps a run well under a second.
pub fn busy_plan(quick: bool) -> Plan {
    if quick {
        Plan::busy(20_000, 200_000, 100)
    } else {
        Plan::busy(200_000, 2_000_000, 100)
    }
}

/// The default plan for sleeping scenarios (clock read per round trip).
pub fn sleeping_plan(quick: bool) -> Plan {
    if quick {
        Plan::sleeping(300, 3_000)
    } else {
        Plan::sleeping(2_000, 30_000)
    }
}

/// Two processes spinning on shared memory, one cache line per direction:
/// the measuring side stores `i + 1` into its line and spins on the
/// child's until the child copied it there.
pub fn spin_line(plan: &Plan) -> Measurement {
    let page = SharedPage::create();
    let s = page.shared();
    harness::run_ping_pong(
        "spin_line",
        8,
        Mode::Header,
        plan,
        SPIN_LINE_ROLE,
        &[],
        &[&page.memfd],
        |i| {
            s.ping.0.store(i + 1, Ordering::Release);
            spin_until(&s.pong.0, i + 1);
        },
    )
}

/// Child side of [`spin_line`].
pub fn spin_line_child(args: &[String]) {
    let plan = Plan::from_args(args);
    let page = SharedPage::inherit(0);
    let s = page.shared();
    harness::ready();
    harness::echo_loop(&plan, |i| {
        spin_until(&s.ping.0, i + 1);
        s.pong.0.store(i + 1, Ordering::Release);
    });
}

/// Sends `value` on `out` and wakes its sleeper, then sleeps on `inp` until
/// it holds `expect`. No spinning: one check, then `FUTEX_WAIT`.
fn futex_send(out: &AtomicU32, value: u32) {
    out.store(value, Ordering::Release);
    futex::wake(out, 1).expect("futex wake");
}

fn futex_receive(inp: &AtomicU32, expect: u32) {
    loop {
        let seen = inp.load(Ordering::Acquire);
        if seen == expect {
            return;
        }
        // Returns at once if the word changed meanwhile (EAGAIN); spurious
        // and interrupted wake-ups just loop.
        futex::wait(inp, seen, None).expect("futex wait");
    }
}

/// Each side sleeps on a shared futex word; the other stores the next
/// sequence number into it and calls `FUTEX_WAKE`. Every round trip is two
/// wake-ups of a sleeping process (the sender always calls `FUTEX_WAKE`,
/// as a transport that cannot know whether the receiver sleeps would).
pub fn futex_pingpong(plan: &Plan) -> Measurement {
    let page = SharedPage::create();
    let s = page.shared();
    harness::run_ping_pong(
        "futex_pingpong",
        8,
        Mode::Header,
        plan,
        FUTEX_ROLE,
        &[],
        &[&page.memfd],
        |i| {
            let v = (i + 1) as u32;
            futex_send(&s.ping_futex.0, v);
            futex_receive(&s.pong_futex.0, v);
        },
    )
}

/// Child side of [`futex_pingpong`].
pub fn futex_pingpong_child(args: &[String]) {
    let plan = Plan::from_args(args);
    let page = SharedPage::inherit(0);
    let s = page.shared();
    harness::ready();
    harness::echo_loop(&plan, |i| {
        let v = (i + 1) as u32;
        futex_receive(&s.ping_futex.0, v);
        futex_send(&s.pong_futex.0, v);
    });
}

fn write8(w: &OwnedFd, v: u64) {
    let n = pipe::write(w, &v.to_ne_bytes()).expect("pipe write");
    assert_eq!(n, 8, "short pipe write");
}

fn read8(r: &OwnedFd) -> u64 {
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        let n = pipe::read(r, &mut b[got..]).expect("pipe read");
        assert!(n > 0, "pipe closed");
        got += n;
    }
    u64::from_ne_bytes(b)
}

/// 8 bytes over a pair of pipes with blocking reads (each read sleeps until
/// the peer's write wakes it).
pub fn pipe_pingpong(plan: &Plan) -> Measurement {
    let (to_child_r, to_child_w) = pipe::pipe().expect("pipe");
    let (from_child_r, from_child_w) = pipe::pipe().expect("pipe");
    let m = harness::run_ping_pong(
        "pipe_pingpong",
        8,
        Mode::Header,
        plan,
        PIPE_ROLE,
        &[],
        &[&to_child_r, &from_child_w],
        |i| {
            write8(&to_child_w, i);
            let back = read8(&from_child_r);
            debug_assert_eq!(back, i);
        },
    );
    drop((to_child_r, from_child_w));
    m
}

/// Child side of [`pipe_pingpong`].
pub fn pipe_pingpong_child(args: &[String]) {
    let plan = Plan::from_args(args);
    let r = harness::inherited_fd(0);
    let w = harness::inherited_fd(1);
    harness::ready();
    harness::echo_loop(&plan, |_| {
        let v = read8(&r);
        write8(&w, v);
    });
}

/// Runs the three floors with the default plans.
pub fn all(quick: bool) -> Vec<Measurement> {
    vec![
        spin_line(&busy_plan(quick)),
        futex_pingpong(&sleeping_plan(quick)),
        pipe_pingpong(&sleeping_plan(quick)),
    ]
}
