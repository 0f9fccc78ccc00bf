//! Identity and liveness of processes and threads.

use super::{Errno, Result};

/// `getpid()`: this process's id, in the caller's PID namespace (another
/// namespace knows the process under another id, or not at all).
#[doc(alias = "getpid")]
pub fn process_id() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// `gettid()`: the calling thread's id (equal to the process id on the
/// main thread), in the caller's PID namespace. This is the id the kernel
/// compares with a robust futex word when the thread dies.
#[doc(alias = "gettid")]
pub fn thread_id() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

/// Start time of task `tid` (a process or thread id), in clock ticks since
/// boot: field 22 of `/proc/<tid>/stat`. Together with the id it names a
/// task uniquely across id reuse. `ESRCH` when no such task exists.
///
/// `tid` is looked up in the `/proc` of the caller (normally its PID
/// namespace): an id recorded by a process of another PID namespace names
/// another task or none here. Never use this to judge whether a process
/// that shares memory with this one, but may live in another container,
/// is alive; the kernel's robust list (`sync::RobustMutex`) and `flock`
/// (nodes, segment creation) answer that in any namespace.
#[doc(alias = "proc_pid_stat")]
pub fn start_time(tid: u32) -> Result<u64> {
    let text = match std::fs::read_to_string(format!("/proc/{tid}/stat")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Errno::SRCH),
        Err(e) => return Err(Errno::from_io_error(&e).unwrap_or(Errno::IO)),
    };
    // The command name (field 2) is in parentheses and may contain spaces
    // or parentheses: parse after the last ')'.
    let rest = text.rsplit_once(')').map(|(_, r)| r).ok_or(Errno::INVAL)?;
    // rest starts with " S ..." : field 3 is the first token after ')'.
    rest.split_whitespace()
        .nth(22 - 3)
        .and_then(|s| s.parse().ok())
        .ok_or(Errno::INVAL)
}

/// Whether the task `tid` that started at `start_time` (see [`start_time`])
/// still runs. A zombie counts as dead. A reused id with another start time
/// is reported as dead. Meaningful only for a task of the caller's PID
/// namespace (see [`start_time`]).
pub fn is_alive(tid: u32, start_time_ticks: u64) -> bool {
    if tid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{tid}/stat")) {
        Ok(text) => {
            let Some((_, rest)) = text.rsplit_once(')') else {
                return true;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            if state == Some("Z") || state == Some("X") {
                return false;
            }
            // state was consumed: starttime is field 22, we are at field 4.
            match fields.nth(22 - 4).and_then(|s| s.parse::<u64>().ok()) {
                Some(t) => t == start_time_ticks,
                None => true,
            }
        }
        Err(_) => false,
    }
}

/// `process_vm_readv(getpid(), ...)`: reads the aligned word at address
/// `at` of this process's own memory, or fails (`EFAULT`) where nothing
/// is mapped, instead of faulting. For checking an address that came from
/// memory another process may have written before following it. (rustix
/// has no `process_vm_readv`.)
#[doc(alias = "process_vm_readv")]
#[cfg(not(miri))]
#[cfg_attr(loom, allow(dead_code))]
pub fn read_own_word(at: usize) -> Result<usize> {
    if at % core::mem::align_of::<usize>() != 0 {
        return Err(Errno::INVAL);
    }
    let mut value: usize = 0;
    let local = libc::iovec {
        iov_base: (&mut value as *mut usize).cast(),
        iov_len: core::mem::size_of::<usize>(),
    };
    let remote = libc::iovec {
        iov_base: at as *mut libc::c_void,
        iov_len: core::mem::size_of::<usize>(),
    };
    // SAFETY: the kernel writes at most `local.iov_len` bytes into
    // `value`, a live local; the remote address is only read by the
    // kernel, which reports an unmapped one as EFAULT.
    let n =
        unsafe { libc::process_vm_readv(process_id() as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n == core::mem::size_of::<usize>() as isize {
        Ok(value)
    } else if n < 0 {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
    } else {
        Err(Errno::FAULT)
    }
}

/// `pthread_atfork(NULL, NULL, child)`: registers `child` to run in the
/// child process right after every `fork()`, on the one thread that
/// survives the fork (for example to forget a cached thread id).
///
/// The handler runs in an async-signal context: it may only touch atomics.
/// Handlers cannot be unregistered.
#[doc(alias = "pthread_atfork")]
pub fn on_fork_in_child(child: extern "C" fn()) -> Result<()> {
    // SAFETY: pthread_atfork only records the function pointers; `child`
    // is a valid `extern "C" fn()` for the life of the program (fn items
    // are never freed), and the null prepare/parent handlers are allowed.
    let rc = unsafe { libc::pthread_atfork(None, None, Some(child)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(rc))
    }
}

/// `getrlimit(RLIMIT_NOFILE)`: how many file descriptors this process may
/// hold (soft limit; `None` if unlimited).
#[doc(alias = "getrlimit")]
#[doc(alias = "RLIMIT_NOFILE")]
pub fn descriptor_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// `getrlimit(RLIMIT_AS)`: how many bytes of address space this process
/// may map (soft limit; `None` if unlimited).
#[doc(alias = "getrlimit")]
#[doc(alias = "RLIMIT_AS")]
pub fn address_space_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::As).current
}

/// `/proc/sys/vm/max_map_count`: how many memory mappings one process may
/// have (`None` if unreadable). Reading it needs a free descriptor.
#[doc(alias = "vm.max_map_count")]
pub fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Whether this process could open one more file descriptor now: probes
/// with `open("/", O_PATH | O_CLOEXEC)` and closes the result at once.
/// Tells an `EMFILE` caused by the descriptor limit from one that means
/// something else (`mq_open` reports `RLIMIT_MSGQUEUE` as `EMFILE`).
#[doc(alias = "open")]
pub fn can_open_descriptor() -> bool {
    use rustix::fs::{Mode, OFlags};
    !matches!(
        rustix::fs::open("/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()),
        Err(Errno::MFILE | Errno::NFILE)
    )
}
