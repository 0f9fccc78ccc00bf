//! POSIX message queues (`mq_open`, `mq_timedsend`, `mq_timedreceive`,
//! `mq_getattr`, `mq_unlink`), through libc: rustix has no API for them.
//!
//! On Linux a queue descriptor (`mqd_t`) is a file descriptor, so it is
//! held as an [`OwnedFd`] (closing it is `mq_close`) and can be polled.

use core::ffi::{c_char, c_uint};
use core::time::Duration;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use super::pipe::last_errno;
use super::{Errno, Result};

/// Attributes of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    /// `mq_maxmsg`: how many messages the queue holds.
    pub max_messages: usize,
    /// `mq_msgsize`: the largest message in bytes.
    pub message_size: usize,
    /// `mq_curmsgs`: messages queued now.
    pub current_messages: usize,
    /// `O_NONBLOCK` in `mq_flags`.
    pub nonblocking: bool,
}

/// How [`open`] opens a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// `O_CREAT`.
    pub create: bool,
    /// `O_EXCL` (with `create`): fail if the queue exists.
    pub exclusive: bool,
    /// Open for receiving.
    pub read: bool,
    /// Open for sending.
    pub write: bool,
    /// `O_NONBLOCK`.
    pub nonblocking: bool,
    /// Permission bits for a new queue (the umask applies).
    pub mode: u32,
    /// `(max_messages, message_size)` for a new queue; `None` takes the
    /// system defaults (`/proc/sys/fs/mqueue/msg_default`,
    /// `msgsize_default`).
    pub capacity: Option<(usize, usize)>,
}

/// `mq_open(name, flags | O_CLOEXEC, mode, attr)`. `name` must start with
/// `/` and contain no other `/` (`EINVAL`/`EACCES` otherwise).
#[doc(alias = "mq_open")]
pub fn open(name: &str, options: &OpenOptions) -> Result<OwnedFd> {
    let cname = CString::new(name).map_err(|_| Errno::INVAL)?;
    let mut flags = libc::O_CLOEXEC;
    flags |= match (options.read, options.write) {
        (true, true) => libc::O_RDWR,
        (false, true) => libc::O_WRONLY,
        _ => libc::O_RDONLY,
    };
    if options.create {
        flags |= libc::O_CREAT;
    }
    if options.exclusive {
        flags |= libc::O_EXCL;
    }
    if options.nonblocking {
        flags |= libc::O_NONBLOCK;
    }
    // SAFETY: an all-zero mq_attr is a valid value.
    let mut attr: libc::mq_attr = unsafe { core::mem::zeroed() };
    let attr_ptr: *mut libc::mq_attr = match options.capacity {
        Some((max, size)) => {
            attr.mq_maxmsg = i64::try_from(max).map_err(|_| Errno::INVAL)? as _;
            attr.mq_msgsize = i64::try_from(size).map_err(|_| Errno::INVAL)? as _;
            &mut attr
        }
        None => core::ptr::null_mut(),
    };
    let mode = options.mode as libc::mode_t;
    // SAFETY: `cname` is a valid C string; the variadic arguments are the
    // mode_t and the mq_attr pointer (valid or null) that O_CREAT expects
    // and that are ignored otherwise.
    let mqd = unsafe { libc::mq_open(cname.as_ptr(), flags, mode, attr_ptr) };
    if mqd < 0 {
        return Err(last_errno());
    }
    // SAFETY: on Linux an mqd_t is a new file descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(mqd) })
}

/// `mq_unlink(name)`: removes a queue's name; open descriptors keep
/// working.
#[doc(alias = "mq_unlink")]
pub fn unlink(name: &str) -> Result<()> {
    let cname = CString::new(name).map_err(|_| Errno::INVAL)?;
    // SAFETY: `cname` is a valid C string.
    if unsafe { libc::mq_unlink(cname.as_ptr()) } != 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// `mq_getattr(fd)`.
#[doc(alias = "mq_getattr")]
pub fn attributes(fd: impl AsFd) -> Result<Attributes> {
    // SAFETY: zeroed mq_attr is valid, to be filled in.
    let mut attr: libc::mq_attr = unsafe { core::mem::zeroed() };
    // SAFETY: `attr` is a valid, writable mq_attr; the fd is borrowed live.
    if unsafe { libc::mq_getattr(fd.as_fd().as_raw_fd(), &mut attr) } != 0 {
        return Err(last_errno());
    }
    Ok(Attributes {
        max_messages: attr.mq_maxmsg as usize,
        message_size: attr.mq_msgsize as usize,
        current_messages: attr.mq_curmsgs as usize,
        nonblocking: attr.mq_flags as libc::c_int & libc::O_NONBLOCK != 0,
    })
}

/// Absolute `CLOCK_REALTIME` deadline `timeout` from now, as mq_timed*
/// expect.
fn deadline(timeout: Duration) -> libc::timespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let mut sec = now
        .tv_sec
        .saturating_add(timeout.as_secs().min(i64::MAX as u64) as i64);
    let mut nsec = now.tv_nsec + i64::from(timeout.subsec_nanos());
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    libc::timespec {
        tv_sec: sec as _,
        tv_nsec: nsec as _,
    }
}

/// `mq_send` / `mq_timedsend(fd, msg, priority, now + timeout)`. Blocks
/// while the queue is full (unless non-blocking: `EAGAIN`); `ETIMEDOUT`
/// after `timeout`; `EMSGSIZE` when `msg` exceeds the message size;
/// `EINVAL` for a priority of 32768 or more. `EINTR` is retried with the
/// same deadline.
#[doc(alias = "mq_send")]
#[doc(alias = "mq_timedsend")]
pub fn send(fd: impl AsFd, msg: &[u8], priority: u32, timeout: Option<Duration>) -> Result<()> {
    let raw = fd.as_fd().as_raw_fd();
    let abs = timeout.map(deadline);
    loop {
        // SAFETY: `msg` is readable for its length; `abs` is a valid
        // timespec or the call is untimed.
        let rc = unsafe {
            match &abs {
                Some(ts) => libc::mq_timedsend(
                    raw,
                    msg.as_ptr().cast::<c_char>(),
                    msg.len(),
                    priority as c_uint,
                    ts,
                ),
                None => libc::mq_send(
                    raw,
                    msg.as_ptr().cast::<c_char>(),
                    msg.len(),
                    priority as c_uint,
                ),
            }
        };
        if rc == 0 {
            return Ok(());
        }
        match last_errno() {
            Errno::INTR => continue,
            e => return Err(e),
        }
    }
}

/// `mq_receive` / `mq_timedreceive(fd, buf, &prio, now + timeout)`:
/// the oldest message of the highest priority, as `(length, priority)`.
/// `EMSGSIZE` when `buf` is smaller than the queue's message size;
/// `EAGAIN` when empty and non-blocking; `ETIMEDOUT` after `timeout`.
/// `EINTR` is retried with the same deadline.
#[doc(alias = "mq_receive")]
#[doc(alias = "mq_timedreceive")]
pub fn receive(fd: impl AsFd, buf: &mut [u8], timeout: Option<Duration>) -> Result<(usize, u32)> {
    let raw = fd.as_fd().as_raw_fd();
    let abs = timeout.map(deadline);
    loop {
        let mut priority: c_uint = 0;
        // SAFETY: `buf` is writable for its length, `priority` is a valid
        // out-pointer, `abs` a valid timespec or the call is untimed.
        let n = unsafe {
            match &abs {
                Some(ts) => libc::mq_timedreceive(
                    raw,
                    buf.as_mut_ptr().cast::<c_char>(),
                    buf.len(),
                    &mut priority,
                    ts,
                ),
                None => libc::mq_receive(
                    raw,
                    buf.as_mut_ptr().cast::<c_char>(),
                    buf.len(),
                    &mut priority,
                ),
            }
        };
        if n >= 0 {
            return Ok((n as usize, priority));
        }
        match last_errno() {
            Errno::INTR => continue,
            e => return Err(e),
        }
    }
}

/// System limits of message queues, from `/proc/sys/fs/mqueue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `msg_max`: the largest `max_messages` an unprivileged process may
    /// ask for.
    pub msg_max: usize,
    /// `msgsize_max`: the largest `message_size` likewise.
    pub msgsize_max: usize,
    /// `queues_max`: how many queues may exist system-wide.
    pub queues_max: usize,
    /// `msg_default`: capacity of a queue created without attributes.
    pub msg_default: usize,
    /// `msgsize_default`: message size likewise.
    pub msgsize_default: usize,
}

/// Reads [`Limits`] from `/proc/sys/fs/mqueue/*`.
#[doc(alias = "msg_max")]
pub fn limits() -> Result<Limits> {
    let read = |file: &str| -> Result<usize> {
        let text = std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{file}"))
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
        text.trim().parse().map_err(|_| Errno::INVAL)
    };
    Ok(Limits {
        msg_max: read("msg_max")?,
        msgsize_max: read("msgsize_max")?,
        queues_max: read("queues_max")?,
        msg_default: read("msg_default")?,
        msgsize_default: read("msgsize_default")?,
    })
}

/// `getrlimit(RLIMIT_MSGQUEUE)`: bytes of queues (messages plus overhead)
/// this user may allocate (soft limit).
#[doc(alias = "getrlimit")]
#[doc(alias = "RLIMIT_MSGQUEUE")]
pub fn rlimit_bytes() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Msgqueue).current
}

/// Where the `mqueue` filesystem (which shows every queue of this IPC
/// namespace as a file) is mounted: `/dev/mqueue` when it is mounted
/// there, else the first `mqueue` entry of `/proc/self/mounts`; `None`
/// when it is mounted nowhere (queues still work, they just cannot be
/// listed).
pub fn mount_point() -> Option<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let points: Vec<&str> = mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let point = fields.nth(1)?;
            (fields.next()? == "mqueue").then_some(point)
        })
        .collect();
    let point = points
        .iter()
        .find(|p| **p == "/dev/mqueue")
        .or_else(|| points.first())?;
    // /proc/self/mounts escapes spaces and the like as \ooo octal.
    Some(std::path::PathBuf::from(unescape_mount_path(point)))
}

/// Undoes the `\ooo` octal escapes of `/proc/self/mounts`.
fn unescape_mount_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], escaped) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The queues in `mount` (an `mqueue` mount point) whose names, without
/// the leading `/`, start with `prefix`; sorted, each with its `/`.
pub fn list(mount: &std::path::Path, prefix: &str) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(mount)? {
        if let Some(name) = entry?.file_name().to_str()
            && name.starts_with(prefix)
        {
            names.push(format!("/{name}"));
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(super::unescape_mount_path(r"/a\040b"), "/a b");
        assert_eq!(super::unescape_mount_path(r"/dev/mqueue"), "/dev/mqueue");
        assert_eq!(super::unescape_mount_path(r"/x\"), r"/x\");
    }
}
