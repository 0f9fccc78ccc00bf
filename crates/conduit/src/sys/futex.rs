//! Shared (inter-process) futex wait and wake on a 32-bit word.
//!
//! These use the non-private futex operations, so the word may live in
//! memory mapped by several processes at different addresses: the kernel
//! keys the wait queue on the underlying page, not the virtual address.

use core::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;

use super::{Errno, Result};

/// Why [`wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Woken by [`wake`], or spuriously (the caller re-checks the word).
    Woken,
    /// The word did not hold `expected` when the kernel looked (`EAGAIN`).
    ValueChanged,
    /// The timeout elapsed (`ETIMEDOUT`).
    TimedOut,
    /// A signal interrupted the wait (`EINTR`).
    Interrupted,
}

/// `futex(word, FUTEX_WAIT, expected, timeout)`: sleeps while `*word ==
/// expected`, at most `timeout` (a relative duration measured on
/// `CLOCK_MONOTONIC`), or forever with `None`.
///
/// The outcome is advisory: spurious wake-ups happen, so callers loop on
/// their own condition.
#[doc(alias = "futex")]
#[doc(alias = "FUTEX_WAIT")]
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<WaitOutcome> {
    let ts = timeout.map(|d| futex::Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    });
    match futex_wait(word, expected, ts.as_ref()) {
        Ok(()) => Ok(WaitOutcome::Woken),
        Err(Errno::AGAIN) => Ok(WaitOutcome::ValueChanged),
        Err(Errno::TIMEDOUT) => Ok(WaitOutcome::TimedOut),
        Err(Errno::INTR) => Ok(WaitOutcome::Interrupted),
        Err(e) => Err(e),
    }
}

/// `futex(word, FUTEX_WAKE, count)`: wakes at most `count` waiters on
/// `word`; returns how many were woken.
#[doc(alias = "futex")]
#[doc(alias = "FUTEX_WAKE")]
pub fn wake(word: &AtomicU32, count: u32) -> Result<usize> {
    futex_wake(word, count)
}

#[cfg(not(miri))]
#[inline]
fn futex_wait(word: &AtomicU32, expected: u32, ts: Option<&futex::Timespec>) -> Result<()> {
    futex::wait(word, futex::Flags::empty(), expected, ts)
}

#[cfg(not(miri))]
#[inline]
fn futex_wake(word: &AtomicU32, count: u32) -> Result<usize> {
    futex::wake(word, futex::Flags::empty(), count)
}

// Under Miri, rustix takes its libc backend and passes the word to the
// variadic `syscall` as `*const AtomicU32`; recent Miri checks variadic
// argument types against its futex shim (`*mut u32`, `c_int`, `u32`,
// `*const timespec`) and stops with "incorrect c-variadic argument type".
// These two call `syscall` with exactly those types; the kernel ABI is
// the same, so the behaviour is identical.
#[cfg(miri)]
fn futex_wait(word: &AtomicU32, expected: u32, ts: Option<&futex::Timespec>) -> Result<()> {
    let ts = ts.map(|t| libc::timespec {
        tv_sec: t.tv_sec as libc::time_t,
        tv_nsec: t.tv_nsec as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32; `ts_ptr` is null or points to
    // a timespec that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
        )
    };
    if r == -1 {
        Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ))
    } else {
        Ok(())
    }
}

#[cfg(miri)]
fn futex_wake(word: &AtomicU32, count: u32) -> Result<usize> {
    // SAFETY: `word` is a live, aligned u32.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count) };
    if r == -1 {
        Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ))
    } else {
        Ok(r as usize)
    }
}

/// The kernel's `struct robust_list_head`: the per-thread list of held
/// robust futexes that the kernel walks when the thread exits or dies,
/// setting `FUTEX_OWNER_DIED` on each word that still names the thread.
///
/// `list` points at the first entry's `next` field (or at `list` itself
/// when empty); an entry's futex word is at `entry + futex_offset`;
/// `list_op_pending` names an entry being locked or unlocked right now.
#[repr(C)]
#[derive(Debug)]
#[cfg_attr(any(loom, miri), allow(dead_code))]
pub struct RobustListHead {
    /// First entry (`&entry.next`), or the address of this field when empty.
    pub list: usize,
    /// Offset of the futex word from each entry.
    pub futex_offset: isize,
    /// The entry being locked or unlocked, 0 if none.
    pub list_op_pending: usize,
}

/// `get_robust_list(0, &head, &len)`: the robust-list head the calling
/// thread registered (glibc registers one for every thread it starts),
/// null if none. `ENOSYS` where the kernel has no robust futexes.
#[doc(alias = "get_robust_list")]
#[cfg(not(miri))]
#[cfg_attr(loom, allow(dead_code))]
pub fn robust_list() -> Result<*mut RobustListHead> {
    let mut head: *mut RobustListHead = core::ptr::null_mut();
    let mut len: libc::size_t = 0;
    // SAFETY: pid 0 asks for the calling thread; both out-pointers point
    // at live locals of the right size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut head as *mut *mut RobustListHead,
            &mut len as *mut libc::size_t,
        )
    };
    if rc != 0 {
        return Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    Ok(head)
}

/// `set_robust_list(head, sizeof *head)`: registers `head` as the calling
/// thread's robust-futex list (replacing any earlier one).
///
/// # Safety
///
/// `head` must stay valid, and form a well-formed list, until the thread
/// exits or registers another head: the kernel reads it at thread exit.
#[cfg(not(miri))]
#[cfg_attr(loom, allow(dead_code))]
pub unsafe fn set_robust_list(head: *mut RobustListHead) -> Result<()> {
    // SAFETY: the kernel only records the pointer; the caller keeps it valid.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_set_robust_list,
            head,
            core::mem::size_of::<RobustListHead>(),
        )
    };
    if rc != 0 {
        return Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    Ok(())
}
