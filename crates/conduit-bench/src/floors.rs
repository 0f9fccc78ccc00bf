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
//!
//! # The shared page (one memfd, inherited by the child)
//!
//! | offset | word | written by | states |
//! |---|---|---|---|
//! | 0 | `ping: AtomicU64` | parent | 0 (none yet) → 1 → 2 → …: `i + 1` once message `i` is published (Release) |
//! | 64 | `pong: AtomicU64` | child | follows `ping`: `i + 1` after the child saw `ping == i + 1` (Acquire) and, in payload mode, read the ping buffer and wrote the pong buffer |
//! | 128 | `ping_futex: AtomicU32` | parent | `(i + 1) as u32`, then `FUTEX_WAKE`; wrapping is harmless (only equality with the awaited value matters) |
//! | 192 | `pong_futex: AtomicU32` | child | the same, the other way |
//! | 4096 | ping buffer (payload mode) | parent | written only while the child is not reading it: after `pong == i` (the child is done with message `i - 1`) and before `ping := i + 1` |
//! | 4096 + stride | pong buffer | child | symmetric |

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::harness::{self, ChildSpec, Measurement, Mode, Plan};
use crate::raw::{self, Mapping};

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

/// A memfd holding the [`Shared`] page, then (for payload scenarios) two
/// message buffers of `payload` bytes each, page-aligned: `ping` written
/// by the measuring process, `pong` by the child. A fresh memfd reads as
/// zeros.
struct SharedPage {
    memfd: OwnedFd,
    map: Mapping,
    /// Bytes per buffer, rounded up to whole pages (0 without payload).
    buffer_stride: usize,
}

/// Which message buffer of a [`SharedPage`].
#[derive(Clone, Copy)]
enum Direction {
    Ping,
    Pong,
}

impl SharedPage {
    fn len_for(payload: usize) -> (usize, usize) {
        let stride = payload.div_ceil(SHARED_LEN) * SHARED_LEN;
        (SHARED_LEN + 2 * stride, stride)
    }

    fn create(payload: usize) -> SharedPage {
        let (len, buffer_stride) = Self::len_for(payload);
        let memfd = raw::memfd("conduit-bench-floors");
        raw::truncate(&memfd, len as u64);
        let map = Mapping::shared(&memfd, len).expect("mmap");
        SharedPage {
            memfd,
            map,
            buffer_stride,
        }
    }

    fn inherit(i: usize, payload: usize) -> SharedPage {
        let (len, buffer_stride) = Self::len_for(payload);
        let memfd = harness::inherited_fd(i);
        let map = Mapping::shared(&memfd, len).expect("mmap");
        SharedPage {
            memfd,
            map,
            buffer_stride,
        }
    }

    fn shared(&self) -> &Shared {
        const { assert!(size_of::<Shared>() <= SHARED_LEN) };
        // SAFETY: the mapping is page-aligned, at least SHARED_LEN long
        // (checked above to hold a Shared) and lives as long as the
        // returned reference; every field is an atomic, valid for any bit
        // pattern (the memfd starts zeroed), and all cross-process access
        // goes through those atomics.
        unsafe { &*self.map.as_ptr().cast::<Shared>() }
    }

    /// Start of a message buffer (`buffer_stride` bytes inside the mapping).
    fn buffer(&self, direction: Direction) -> *mut u8 {
        let offset = SHARED_LEN
            + match direction {
                Direction::Ping => 0,
                Direction::Pong => self.buffer_stride,
            };
        self.map.as_ptr().wrapping_add(offset)
    }
}

use crate::harness::fill_byte;

/// Writes every byte of the `len`-byte buffer at `buf` for message `seq`
/// ([`harness::fill_payload`], the bulk write of every system).
///
/// # Safety
///
/// `buf..buf + len` lies in a live mapping, and no other process reads or
/// writes it until this process publishes the message (Release store of
/// the sequence number the reader Acquire-loads).
unsafe fn write_payload(buf: *mut u8, len: usize, seq: u64) {
    // SAFETY: the caller guarantees the range is mapped and exclusively
    // ours until published; MaybeUninit<u8> has u8's layout.
    let bytes = unsafe { core::slice::from_raw_parts_mut(buf.cast(), len) };
    harness::fill_payload(bytes, fill_byte(seq));
}

/// Reads every byte of message `seq` and checks their sum
/// ([`harness::check_payload`], the summing read of every system).
///
/// # Safety
///
/// `buf..buf + len` lies in a live mapping, the writer published it (this
/// process Acquire-loaded its sequence number) and does not write it again
/// until this process answers.
unsafe fn read_payload(buf: *const u8, len: usize, seq: u64) {
    // SAFETY: per the caller, the bytes are initialised (the memfd starts
    // zeroed, then the writer filled them) and nobody writes them while
    // this slice lives.
    let bytes = unsafe { core::slice::from_raw_parts(buf, len) };
    harness::check_payload(bytes, fill_byte(seq));
}

/// Waits with a plain spin until `word` holds `value`.
#[inline(always)]
fn spin_until(word: &AtomicU64, value: u64) {
    while word.load(Ordering::Acquire) != value {
        core::hint::spin_loop();
    }
}

/// The default plan for busy-polling scenarios (batch phase of
/// [`harness::BATCH`] round trips per clock read); `quick` keeps a run well under a second.
pub fn busy_plan(quick: bool) -> Plan {
    if quick {
        Plan::busy(20_000, 200_000, harness::BATCH)
    } else {
        Plan::busy(200_000, 2_000_000, harness::BATCH)
    }
}

/// A busy plan sized for `payload` bytes that are (or are not) touched:
/// fewer round trips as the copy grows (the same batch of
/// [`harness::BATCH`] for every size), so that a
/// 1 MiB run takes seconds, not minutes.
pub fn payload_plan(payload: usize, mode: Mode, quick: bool) -> Plan {
    let touched = mode == Mode::Payload;
    let (warmup, rounds) = match payload {
        p if !touched || p <= 1 << 10 => (20_000, 500_000),
        p if p <= 64 << 10 => (2_000, 50_000),
        _ => (200, 3_000),
    };
    let scale = if quick { 10 } else { 1 };
    Plan::busy(warmup / scale, rounds / scale, harness::BATCH)
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
    spin_line_with_payload(plan, 8, Mode::Header)
}

/// [`spin_line`] carrying `payload` bytes each way: in [`Mode::Payload`]
/// the sender fills a shared buffer of `payload` bytes before storing the
/// sequence number and the receiver sums every byte after seeing it — the
/// floor for any shared-memory transport that moves (rather than lends)
/// the bytes, or whose users touch them. [`Mode::Header`] is [`spin_line`]
/// (the payload size is only a label).
pub fn spin_line_with_payload(plan: &Plan, payload: usize, mode: Mode) -> Measurement {
    let len = if mode == Mode::Payload { payload } else { 0 };
    let page = SharedPage::create(len);
    let s = page.shared();
    let (ping_buf, pong_buf) = (page.buffer(Direction::Ping), page.buffer(Direction::Pong));
    let args = [len.to_string()];
    harness::run_ping_pong(
        "spin_line",
        payload as u64,
        mode,
        plan,
        ChildSpec {
            role: SPIN_LINE_ROLE,
            args: &args,
            fds: &[&page.memfd],
        },
        |i| {
            if len > 0 {
                // SAFETY: the ping buffer is ours: the child finished
                // reading message i - 1 before it answered it.
                unsafe { write_payload(ping_buf, len, i) };
            }
            s.ping.0.store(i + 1, Ordering::Release);
            spin_until(&s.pong.0, i + 1);
            if len > 0 {
                // SAFETY: the child published pong i (Acquire above) and
                // writes that buffer again only after our next ping.
                unsafe { read_payload(pong_buf, len, i) };
            }
        },
    )
}

/// Child side of [`spin_line`] / [`spin_line_with_payload`].
pub fn spin_line_child(args: &[String]) {
    let plan = Plan::from_args(args);
    let len: usize = args[2].parse().expect("payload length");
    let page = SharedPage::inherit(0, len);
    let s = page.shared();
    let (ping_buf, pong_buf) = (page.buffer(Direction::Ping), page.buffer(Direction::Pong));
    harness::ready();
    harness::echo_loop(&plan, |i| {
        spin_until(&s.ping.0, i + 1);
        if len > 0 {
            // SAFETY: the parent published ping i (Acquire above) and
            // writes that buffer again only after our answer.
            unsafe { read_payload(ping_buf, len, i) };
            // SAFETY: the parent finished reading pong i - 1 before it
            // sent ping i.
            unsafe { write_payload(pong_buf, len, i) };
        }
        s.pong.0.store(i + 1, Ordering::Release);
    });
}

/// Sends `value` on `out` and wakes its sleeper, then sleeps on `inp` until
/// it holds `expect`. No spinning: one check, then `FUTEX_WAIT`.
fn futex_send(out: &AtomicU32, value: u32) {
    out.store(value, Ordering::Release);
    raw::futex_wake(out, 1);
}

fn futex_receive(inp: &AtomicU32, expect: u32) {
    loop {
        let seen = inp.load(Ordering::Acquire);
        if seen == expect {
            return;
        }
        // Returns at once if the word changed meanwhile (EAGAIN); spurious
        // and interrupted wake-ups just loop.
        raw::futex_wait(inp, seen);
    }
}

/// Each side sleeps on a shared futex word; the other stores the next
/// sequence number into it and calls `FUTEX_WAKE`. Every round trip is two
/// wake-ups of a sleeping process (the sender always calls `FUTEX_WAKE`,
/// as a transport that cannot know whether the receiver sleeps would).
pub fn futex_pingpong(plan: &Plan) -> Measurement {
    let page = SharedPage::create(0);
    let s = page.shared();
    harness::run_ping_pong(
        "futex_pingpong",
        8,
        Mode::Header,
        plan,
        ChildSpec {
            role: FUTEX_ROLE,
            args: &[],
            fds: &[&page.memfd],
        },
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
    let page = SharedPage::inherit(0, 0);
    let s = page.shared();
    harness::ready();
    harness::echo_loop(&plan, |i| {
        let v = (i + 1) as u32;
        futex_receive(&s.ping_futex.0, v);
        futex_send(&s.pong_futex.0, v);
    });
}

fn write8(w: &OwnedFd, v: u64) {
    let n = raw::write(w, &v.to_ne_bytes()).expect("pipe write");
    assert_eq!(n, 8, "short pipe write");
}

fn read8(r: &OwnedFd) -> u64 {
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        let n = raw::read(r, &mut b[got..]).expect("pipe read");
        assert!(n > 0, "pipe closed");
        got += n;
    }
    u64::from_ne_bytes(b)
}

/// 8 bytes over a pair of pipes with blocking reads (each read sleeps until
/// the peer's write wakes it).
pub fn pipe_pingpong(plan: &Plan) -> Measurement {
    let (to_child_r, to_child_w) = raw::pipe();
    let (from_child_r, from_child_w) = raw::pipe();
    let m = harness::run_ping_pong(
        "pipe_pingpong",
        8,
        Mode::Header,
        plan,
        ChildSpec {
            role: PIPE_ROLE,
            args: &[],
            fds: &[&to_child_r, &from_child_w],
        },
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
