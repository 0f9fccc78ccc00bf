//! Signals: masks, `signalfd`, `sigtimedwait`, sending (`kill`, `killpg`,
//! `sigqueue`, `pidfd_send_signal`), process groups, `waitid(P_PIDFD)`,
//! `poll`, and a self-pipe handler for processes where a signal cannot be
//! blocked in every thread.
//!
//! Signal numbers are plain `i32` here: rustix's `Signal` can only name
//! real-time signals through an `unsafe` constructor (glibc reserves the
//! first ones), so the `kill` family uses libc with a checked number instead.
//! [`is_valid`] says which numbers may be used.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use super::{Errno, Result};

/// Standard signal numbers and `si_code` values, re-exported so that code
/// above `sys` never names `libc`.
pub use libc::{
    SI_MESGQ, SI_QUEUE, SI_TIMER, SI_TKILL, SI_USER, SIGABRT, SIGALRM, SIGBUS, SIGCHLD, SIGCONT,
    SIGFPE, SIGHUP, SIGILL, SIGINT, SIGIO, SIGKILL, SIGPIPE, SIGPROF, SIGPWR, SIGQUIT, SIGSEGV,
    SIGSTKFLT, SIGSTOP, SIGSYS, SIGTERM, SIGTRAP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGUSR1,
    SIGUSR2, SIGVTALRM, SIGWINCH, SIGXCPU, SIGXFSZ,
};

/// The lowest real-time signal the C library leaves to applications
/// (`SIGRTMIN`; glibc keeps the first two or three for its threads).
#[doc(alias = "SIGRTMIN")]
pub fn rt_min() -> i32 {
    libc::SIGRTMIN()
}

/// The highest real-time signal (`SIGRTMAX`, 64 on Linux).
#[doc(alias = "SIGRTMAX")]
pub fn rt_max() -> i32 {
    libc::SIGRTMAX()
}

/// Whether `sig` may be used by applications: a standard signal (1–31) or a
/// real-time signal in `SIGRTMIN..=SIGRTMAX`. The real-time numbers below
/// `SIGRTMIN` belong to the C library and are refused.
pub fn is_valid(sig: i32) -> bool {
    (1..32).contains(&sig) || (rt_min()..=rt_max()).contains(&sig)
}

fn check(sig: i32) -> Result<()> {
    if is_valid(sig) {
        Ok(())
    } else {
        Err(Errno::INVAL)
    }
}

/// A set of signals (`sigset_t`).
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl SigSet {
    /// `sigemptyset`: the empty set.
    #[doc(alias = "sigemptyset")]
    pub fn empty() -> SigSet {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it fully.
        unsafe {
            let mut set: libc::sigset_t = core::mem::zeroed();
            libc::sigemptyset(&mut set);
            SigSet(set)
        }
    }

    /// The set holding `signals`; `EINVAL` if one of them is not
    /// [`is_valid`].
    pub fn of(signals: &[i32]) -> Result<SigSet> {
        let mut set = SigSet::empty();
        for &s in signals {
            set.add(s)?;
        }
        Ok(set)
    }

    /// `sigaddset`: adds `sig`; `EINVAL` if it is not [`is_valid`].
    #[doc(alias = "sigaddset")]
    pub fn add(&mut self, sig: i32) -> Result<()> {
        check(sig)?;
        // SAFETY: self.0 is an initialised sigset_t and sig is in range.
        unsafe { libc::sigaddset(&mut self.0, sig) };
        Ok(())
    }

    /// `sigdelset`: removes `sig` (no-op for an invalid number).
    #[cfg(test)]
    #[doc(alias = "sigdelset")]
    pub fn remove(&mut self, sig: i32) {
        if (1..=rt_max()).contains(&sig) {
            // SAFETY: self.0 is an initialised sigset_t and sig is in range.
            unsafe { libc::sigdelset(&mut self.0, sig) };
        }
    }

    /// `sigismember`: whether `sig` is in the set.
    #[doc(alias = "sigismember")]
    pub fn contains(&self, sig: i32) -> bool {
        // SAFETY: self.0 is an initialised sigset_t; out-of-range numbers
        // make sigismember return -1, which is "no".
        (1..=rt_max()).contains(&sig) && unsafe { libc::sigismember(&self.0, sig) } == 1
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The signal numbers in the set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = i32> + '_ {
        (1..=rt_max()).filter(|&s| self.contains(s))
    }

    fn as_ptr(&self) -> *const libc::sigset_t {
        &self.0
    }
}

impl core::fmt::Debug for SigSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// How [`thread_mask`] changes the mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskHow {
    /// `SIG_BLOCK`: add the set to the blocked signals.
    Block,
    /// `SIG_UNBLOCK`: remove the set from the blocked signals.
    Unblock,
    /// `SIG_SETMASK`: the set becomes the blocked signals.
    Set,
}

/// `pthread_sigmask(how, set, &old)`: changes the calling thread's blocked
/// signals and returns the previous mask.
///
/// The mask is per thread, inherited by threads this thread creates, by
/// `fork` and across `exec`. Async-signal-safe (usable in `pre_exec`).
#[doc(alias = "pthread_sigmask")]
#[doc(alias = "sigprocmask")]
pub fn thread_mask(how: MaskHow, set: &SigSet) -> Result<SigSet> {
    let how = match how {
        MaskHow::Block => libc::SIG_BLOCK,
        MaskHow::Unblock => libc::SIG_UNBLOCK,
        MaskHow::Set => libc::SIG_SETMASK,
    };
    let mut old = SigSet::empty();
    // SAFETY: both pointers refer to valid, initialised sigset_t values.
    let rc = unsafe { libc::pthread_sigmask(how, set.as_ptr(), &mut old.0) };
    if rc == 0 {
        Ok(old)
    } else {
        Err(Errno::from_raw_os_error(rc))
    }
}

fn last_os_error() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Whether every thread of this process has all of `set` blocked, read from
/// the `SigBlk` lines of `/proc/self/task/*/status`.
///
/// Threads created later inherit their creator's mask, so once this is true
/// it stays true unless some thread unblocks a signal of `set` itself.
///
/// glibc's `pthread_create` blocks *every* signal in a new thread until the
/// thread has started and installed its creator's mask. A thread seen with
/// every signal blocked may be such a newborn, so the scan is repeated
/// (sleeping 1 ms, for up to 50 ms) until no thread shows a full mask; a
/// thread that still does is taken at its word.
#[doc(alias = "proc_pid_status")]
pub fn blocked_in_all_threads(set: &SigSet) -> Result<bool> {
    let mut want = 0u64;
    for s in set.iter() {
        want |= 1u64 << (s - 1);
    }
    for attempt in 0..50 {
        let masks = thread_masks()?;
        // SIGKILL and SIGSTOP can never be blocked: a "full" mask lacks them.
        let unblockable = (1u64 << (SIGKILL - 1)) | (1u64 << (SIGSTOP - 1));
        let newborn = masks.iter().any(|&m| m | unblockable == u64::MAX);
        let all = masks.iter().all(|&m| m & want == want);
        if !all || !newborn || attempt == 49 {
            return Ok(all);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(false)
}

fn thread_masks() -> Result<Vec<u64>> {
    let tasks = std::fs::read_dir("/proc/self/task").map_err(|e| io_errno(&e))?;
    let mut masks = Vec::new();
    for task in tasks {
        let task = task.map_err(|e| io_errno(&e))?;
        let status = match std::fs::read_to_string(task.path().join("status")) {
            Ok(s) => s,
            // The thread exited between readdir and open.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_errno(&e)),
        };
        let Some(line) = status.lines().find(|l| l.starts_with("SigBlk:")) else {
            return Err(Errno::INVAL);
        };
        let hex = line["SigBlk:".len()..].trim();
        masks.push(u64::from_str_radix(hex, 16).map_err(|_| Errno::INVAL)?);
    }
    Ok(masks)
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_io_error(e).unwrap_or(Errno::IO)
}

/// What the kernel reports about one delivered signal (from
/// `signalfd_siginfo` or `siginfo_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigInfo {
    /// Signal number.
    pub signo: i32,
    /// `si_code`: `SI_USER` (0, `kill`), `SI_QUEUE` (-1, `sigqueue`),
    /// `SI_TIMER` (-2), `SI_TKILL` (-6), `SI_KERNEL` (0x80) or a positive
    /// signal-specific kernel code (e.g. `CLD_EXITED` for `SIGCHLD`).
    pub code: i32,
    /// Sender's process id (for `SIGCHLD`: the child's).
    pub pid: u32,
    /// Sender's real user id.
    pub uid: u32,
    /// `si_value` as a pointer-sized integer (meaningful for `SI_QUEUE`,
    /// `SI_TIMER` and `SI_MESGQ`); the `int` member is its low 32 bits.
    pub value: u64,
    /// For `SIGCHLD`: exit status or signal of the child.
    pub status: i32,
}

/// `signalfd(-1, set, SFD_CLOEXEC | SFD_NONBLOCK)`: a file descriptor that
/// becomes readable when a signal of `set` is pending for the process or the
/// calling thread.
///
/// The signals must be blocked (in every thread, for process-directed
/// signals), otherwise they are delivered the normal way and never reach
/// the descriptor.
#[doc(alias = "signalfd")]
pub fn open_signalfd(set: &SigSet) -> Result<OwnedFd> {
    // SAFETY: `set` points to a valid sigset_t; -1 asks for a new fd.
    let fd = unsafe { libc::signalfd(-1, set.as_ptr(), libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(Errno::from_raw_os_error(last_os_error()));
    }
    // SAFETY: signalfd returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `read(signalfd, &signalfd_siginfo)`: takes one pending signal, or
/// `None` when none is pending (`EAGAIN`). `EINTR` is retried.
#[doc(alias = "signalfd_siginfo")]
pub fn read_signalfd(fd: impl AsFd) -> Result<Option<SigInfo>> {
    let mut buf = [0u8; core::mem::size_of::<libc::signalfd_siginfo>()];
    loop {
        match rustix::io::read(fd.as_fd(), &mut buf) {
            Ok(n) if n == buf.len() => break,
            Ok(_) => return Err(Errno::IO),
            Err(Errno::AGAIN) => return Ok(None),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
    // SAFETY: the buffer holds exactly one signalfd_siginfo written by the
    // kernel; the struct is plain integers, read unaligned.
    let si: libc::signalfd_siginfo = unsafe { core::ptr::read_unaligned(buf.as_ptr().cast()) };
    Ok(Some(SigInfo {
        signo: si.ssi_signo as i32,
        code: si.ssi_code,
        pid: si.ssi_pid,
        uid: si.ssi_uid,
        value: si.ssi_ptr,
        status: si.ssi_status,
    }))
}

fn siginfo_from(info: &libc::siginfo_t) -> SigInfo {
    // SAFETY: the accessors read the union members at their kernel offsets;
    // every member is an integer, so any bit pattern is a valid value (the
    // fields that do not apply to this si_code are merely meaningless).
    unsafe {
        SigInfo {
            signo: info.si_signo,
            code: info.si_code,
            pid: info.si_pid() as u32,
            uid: info.si_uid(),
            value: info.si_value().sival_ptr as usize as u64,
            status: if info.si_signo == libc::SIGCHLD {
                info.si_status()
            } else {
                0
            },
        }
    }
}

/// `kill(pid, sig)`: sends `sig` to process `pid` (`SI_USER`). `sig == 0`
/// only checks that the process exists and may be signalled.
///
/// `ESRCH`: no such process; `EPERM`: not allowed; `EINVAL`: bad signal.
#[doc(alias = "kill")]
pub fn send(pid: u32, sig: i32) -> Result<()> {
    if sig != 0 {
        check(sig)?;
    }
    let pid = positive_pid(pid)?;
    // SAFETY: plain syscall with checked integers.
    cvt(unsafe { libc::kill(pid, sig) })
}

/// `killpg(pgid, sig)`: sends `sig` to every process of group `pgid`.
#[doc(alias = "killpg")]
#[doc(alias = "kill")]
pub fn send_group(pgid: u32, sig: i32) -> Result<()> {
    if sig != 0 {
        check(sig)?;
    }
    let pgid = positive_pid(pgid)?;
    // SAFETY: plain syscall with checked integers.
    cvt(unsafe { libc::killpg(pgid, sig) })
}

/// `sigqueue(pid, sig, value)`: sends `sig` with `value` (`SI_QUEUE`).
/// Real-time signals queue (up to `RLIMIT_SIGPENDING`, else `EAGAIN`) and
/// are delivered in order with their values; a standard signal that is
/// already pending is dropped along with its value.
#[doc(alias = "sigqueue")]
#[doc(alias = "rt_sigqueueinfo")]
pub fn queue(pid: u32, sig: i32, value: usize) -> Result<()> {
    check(sig)?;
    let pid = positive_pid(pid)?;
    let value = libc::sigval {
        sival_ptr: value as *mut libc::c_void,
    };
    // SAFETY: plain syscall; the pointer member is only carried as a value
    // and never dereferenced by the kernel.
    cvt(unsafe { libc::sigqueue(pid, sig, value) })
}

fn positive_pid(pid: u32) -> Result<i32> {
    match i32::try_from(pid) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(Errno::SRCH),
    }
}

fn cvt(rc: i32) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(last_os_error()))
    }
}

/// `pidfd_open(pid, 0)`: a file descriptor that refers to process `pid`
/// itself, not to its number: signals sent through it never reach a later
/// process that reuses the number, and it becomes readable when the process
/// exits. `ESRCH` if there is no such process.
#[doc(alias = "pidfd_open")]
pub fn open_pidfd(pid: u32) -> Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(positive_pid(pid)?).ok_or(Errno::SRCH)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
}

#[repr(C)]
struct QueueInfo {
    signo: i32,
    errno: i32,
    code: i32,
    rt: QueueInfoRt,
}

#[repr(C)]
struct QueueInfoRt {
    pid: i32,
    uid: u32,
    value: usize,
}

/// `pidfd_send_signal(pidfd, sig, info, 0)`: sends `sig` to the process
/// behind `pidfd`; with `Some(value)` as a queued signal (`SI_QUEUE`,
/// like [`queue`]), else as `kill` does (`SI_USER`).
///
/// `ESRCH`: the process has exited and been reaped (even if its number is
/// in use again). A zombie still accepts and discards the signal.
#[doc(alias = "pidfd_send_signal")]
pub fn pidfd_send(pidfd: impl AsFd, sig: i32, value: Option<usize>) -> Result<()> {
    check(sig)?;
    let Some(value) = value else {
        // SAFETY: plain syscall; a null info means "as kill(2)".
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_fd().as_raw_fd(),
                sig,
                core::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        return cvt(rc as i32);
    };
    // The kernel reads a full siginfo_t (128 bytes): lay our fields out in
    // a zeroed buffer of that size.
    let mut buf = [0u64; 16];
    const _: () = assert!(core::mem::size_of::<QueueInfo>() <= 128);
    const _: () = assert!(core::mem::size_of::<libc::siginfo_t>() == 128);
    let info = QueueInfo {
        signo: sig,
        errno: 0,
        code: libc::SI_QUEUE,
        rt: QueueInfoRt {
            pid: super::process::process_id() as i32,
            uid: rustix::process::getuid().as_raw(),
            value,
        },
    };
    // SAFETY: the buffer is 128 bytes, 8-aligned, larger than QueueInfo.
    unsafe { core::ptr::write(buf.as_mut_ptr().cast::<QueueInfo>(), info) };
    // SAFETY: buf is a valid siginfo_t-sized buffer for the call's duration.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_fd().as_raw_fd(),
            sig,
            buf.as_ptr(),
            0,
        )
    };
    cvt(rc as i32)
}

/// How a child changed state, as reported by [`wait_pidfd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildState {
    /// It called `exit` with this status.
    Exited(i32),
    /// A signal ended it.
    Killed(i32),
}

/// `waitid(P_PIDFD, pidfd, &info, WEXITED [| WNOHANG])`: reaps the child
/// behind `pidfd` once it has exited. With `block == false` returns
/// `Ok(None)` while it still runs. `ECHILD`: not our child, or already
/// reaped. `EINTR` is retried.
#[doc(alias = "waitid")]
#[doc(alias = "P_PIDFD")]
pub fn wait_pidfd(pidfd: impl AsFd, block: bool) -> Result<Option<ChildState>> {
    use rustix::process::{WaitId, WaitIdOptions};
    let mut options = WaitIdOptions::EXITED;
    if !block {
        options |= WaitIdOptions::NOHANG;
    }
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), options) {
            Ok(None) => return Ok(None),
            Ok(Some(status)) => {
                if let Some(code) = status.exit_status() {
                    return Ok(Some(ChildState::Exited(code)));
                }
                if let Some(sig) = status.terminating_signal() {
                    return Ok(Some(ChildState::Killed(sig)));
                }
                // With WNOHANG and no state change, Linux leaves si_pid 0
                // and rustix reports a status with neither: still running.
                return Ok(None);
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `poll(fds, POLLIN)`: waits until at least one of `fds` is readable, at
/// most `timeout` (forever with `None`). Returns, for each fd, whether it is
/// readable (or hung up / in error, which a read will report). All `false`
/// when the time ran out; `EINTR` is returned to the caller.
#[doc(alias = "poll")]
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> Result<Vec<bool>> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut pollfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    let ts = timeout.map(|d| Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    });
    rustix::event::poll(&mut pollfds, ts.as_ref())?;
    Ok(pollfds
        .iter()
        .map(|p| {
            p.revents()
                .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
        })
        .collect())
}

/// `sigaction(sig, SIG_DFL)`: restores the default action of `sig`
/// (terminate, ignore, stop or core dump), removing any handler, including
/// one installed through [`forward_to_pipe`]. Used to let a signal take its
/// default effect, e.g. a second Ctrl-C.
#[doc(alias = "sigaction")]
#[doc(alias = "SIG_DFL")]
pub fn set_default_action(sig: i32) -> Result<()> {
    check(sig)?;
    // SAFETY: sigaction is plain data; SIG_DFL installs no code.
    let rc = unsafe {
        let mut act: libc::sigaction = core::mem::zeroed();
        act.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(sig, &act, core::ptr::null_mut())
    };
    cvt(rc)
}

/// Size of one record written by the [`forward_to_pipe`] handler: smaller
/// than `PIPE_BUF`, so each write is atomic and records never interleave.
pub const PIPE_RECORD_LEN: usize = 32;

fn encode(info: &SigInfo) -> [u8; PIPE_RECORD_LEN] {
    let mut rec = [0u8; PIPE_RECORD_LEN];
    rec[0..4].copy_from_slice(&info.signo.to_ne_bytes());
    rec[4..8].copy_from_slice(&info.code.to_ne_bytes());
    rec[8..12].copy_from_slice(&info.pid.to_ne_bytes());
    rec[12..16].copy_from_slice(&info.uid.to_ne_bytes());
    rec[16..24].copy_from_slice(&info.value.to_ne_bytes());
    rec[24..28].copy_from_slice(&info.status.to_ne_bytes());
    rec
}

fn decode(rec: &[u8; PIPE_RECORD_LEN]) -> SigInfo {
    let i32_at = |o: usize| i32::from_ne_bytes(rec[o..o + 4].try_into().unwrap_or_default());
    SigInfo {
        signo: i32_at(0),
        code: i32_at(4),
        pid: i32_at(8) as u32,
        uid: i32_at(12) as u32,
        value: u64::from_ne_bytes(rec[16..24].try_into().unwrap_or_default()),
        status: i32_at(24),
    }
}

/// Identifies a handler registered with [`forward_to_pipe`].
#[derive(Debug)]
pub struct HandlerId(signal_hook_registry::SigId);

/// Installs (through `signal-hook-registry`, so it coexists with tokio and
/// signal-hook) a `SA_SIGINFO` handler for `sig` that writes one
/// [`PIPE_RECORD_LEN`]-byte record describing each delivery to `pipe`.
///
/// The handler only copies integers out of `siginfo_t` and calls `write(2)`
/// (async-signal-safe; errno is preserved by the registry). `pipe` should be
/// non-blocking: when it is full, the record is dropped, as the kernel
/// drops a standard signal that is already pending. The handler keeps the
/// write end open until [`remove_handler`].
///
/// `EINVAL` for a signal that cannot be caught or must not be handled this
/// way (`SIGKILL`, `SIGSTOP`, `SIGILL`, `SIGFPE`, `SIGSEGV`).
#[doc(alias = "sigaction")]
#[doc(alias = "SA_SIGINFO")]
pub fn forward_to_pipe(sig: i32, pipe: Arc<OwnedFd>) -> Result<HandlerId> {
    check(sig)?;
    let action = move |info: &libc::siginfo_t| {
        let rec = encode(&siginfo_from(info));
        // rustix's raw syscall does not touch errno; a full pipe drops the
        // record (see above).
        let _ = rustix::io::write(pipe.as_fd(), &rec);
    };
    // SAFETY: the action is async-signal-safe: it reads integers from the
    // siginfo, fills a stack buffer and makes one write syscall; it neither
    // allocates, locks nor panics.
    match unsafe { signal_hook_registry::register_sigaction(sig, action) } {
        Ok(id) => Ok(HandlerId(id)),
        Err(e) => Err(e
            .raw_os_error()
            .map_or(Errno::INVAL, Errno::from_raw_os_error)),
    }
}

/// Removes a handler installed by [`forward_to_pipe`]. When this returns,
/// no running handler uses it any more. The signal's disposition stays
/// "caught" (by the registry's dispatcher, which then does nothing): call
/// [`set_default_action`] to restore the default.
pub fn remove_handler(id: HandlerId) {
    signal_hook_registry::unregister(id.0);
}

/// Reads one record written by a [`forward_to_pipe`] handler, `None` when
/// the pipe is empty (`EAGAIN`). `EINTR` is retried.
pub fn read_pipe_record(pipe: impl AsFd) -> Result<Option<SigInfo>> {
    let mut rec = [0u8; PIPE_RECORD_LEN];
    loop {
        match rustix::io::read(pipe.as_fd(), &mut rec) {
            Ok(n) if n == PIPE_RECORD_LEN => return Ok(Some(decode(&rec))),
            Ok(_) => return Err(Errno::IO),
            Err(Errno::AGAIN) => return Ok(None),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `pipe2(O_CLOEXEC | O_NONBLOCK)`: a non-blocking pipe for
/// [`forward_to_pipe`]; returns (read end, write end).
#[doc(alias = "pipe2")]
pub fn nonblocking_pipe() -> Result<(OwnedFd, OwnedFd)> {
    use rustix::pipe::PipeFlags;
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
}

/// `write(fd, "\0", 1)`: writes one byte to a (non-blocking) pipe to make
/// its read end readable; a full pipe is already readable, so `EAGAIN` is
/// success. `EINTR` is retried.
#[doc(alias = "write")]
pub fn write_wake_byte(fd: impl AsFd) -> Result<()> {
    loop {
        match rustix::io::write(fd.as_fd(), &[0u8]) {
            Ok(_) | Err(Errno::AGAIN) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Makes `command` start its child with an empty signal mask: a
/// `pre_exec` hook calls `pthread_sigmask(SIG_SETMASK, {})` between `fork`
/// and `exec`.
///
/// The blocked mask is inherited across `fork` and `exec`, and
/// `std::process::Command` passes it on unchanged: a parent that blocks
/// SIGTERM for a signalfd would otherwise start children that cannot be
/// terminated by SIGTERM.
#[doc(alias = "pthread_sigmask")]
pub fn clear_mask_on_exec(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let empty = SigSet::empty();
    // SAFETY: the hook runs in the forked child before exec; it only calls
    // pthread_sigmask, which is async-signal-safe, on a set built before
    // the fork, and neither allocates nor takes locks.
    unsafe {
        command.pre_exec(move || {
            thread_mask(MaskHow::Set, &empty)
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_records_round_trip() {
        let info = SigInfo {
            signo: 35,
            code: SI_QUEUE,
            pid: 4242,
            uid: 1000,
            value: u64::MAX - 7,
            status: -3,
        };
        assert_eq!(decode(&encode(&info)), info);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "calls sigemptyset/sigaddset, which Miri does not model"
    )]
    fn sets_hold_valid_signals_only() {
        let mut set = SigSet::of(&[SIGTERM, rt_min()]).unwrap();
        assert!(set.contains(SIGTERM) && set.contains(rt_min()));
        assert_eq!(set.iter().collect::<Vec<_>>(), [SIGTERM, rt_min()]);
        assert_eq!(set.add(0), Err(Errno::INVAL));
        assert_eq!(set.add(rt_min() - 1), Err(Errno::INVAL));
        assert_eq!(set.add(rt_max() + 1), Err(Errno::INVAL));
        set.remove(SIGTERM);
        assert!(!set.contains(SIGTERM));
        assert!(SigSet::empty().is_empty());
    }
}
