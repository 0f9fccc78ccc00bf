//! Unix domain sockets: `socket`, `socketpair`, `bind`, `listen`,
//! `accept4`, `connect`, `send`/`recv` (always `MSG_NOSIGNAL`), `sendmsg`
//! / `recvmsg` with `SCM_RIGHTS` (always `MSG_CMSG_CLOEXEC`), and
//! `SO_PEERCRED`.

use core::mem::MaybeUninit;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

use super::{Errno, Result};

/// The kernel's limit of descriptors in one `SCM_RIGHTS` message
/// (`SCM_MAX_FD` in `include/net/scm.h`).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

fn retry<T>(mut op: impl FnMut() -> Result<T>) -> Result<T> {
    loop {
        match op() {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// Kind of Unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `SOCK_STREAM`: a reliable byte stream.
    Stream,
    /// `SOCK_DGRAM`: reliable (on Unix sockets), ordered datagrams
    /// with boundaries.
    Datagram,
    /// `SOCK_SEQPACKET`: connection-oriented, ordered, with boundaries.
    SeqPacket,
}

impl Kind {
    fn socket_type(self) -> SocketType {
        match self {
            Kind::Stream => SocketType::STREAM,
            Kind::Datagram => SocketType::DGRAM,
            Kind::SeqPacket => SocketType::SEQPACKET,
        }
    }
}

/// Name of a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UnixName {
    /// A path in the file system (at most 107 bytes). The socket file
    /// stays until unlinked.
    Path(PathBuf),
    /// A name in the abstract namespace (Linux): no file, vanishes with the
    /// last socket, at most 107 bytes, scoped to the network namespace.
    /// Given without the leading NUL byte.
    Abstract(Vec<u8>),
}

impl UnixName {
    fn to_addr(&self) -> Result<SocketAddrUnix> {
        match self {
            UnixName::Path(p) => SocketAddrUnix::new(p.as_path()),
            UnixName::Abstract(n) => SocketAddrUnix::new_abstract_name(n),
        }
    }
}

/// `socket(AF_UNIX, kind, SOCK_CLOEXEC)`.
#[doc(alias = "socket")]
pub fn unix_socket(kind: Kind) -> Result<OwnedFd> {
    rustix::net::socket_with(
        AddressFamily::UNIX,
        kind.socket_type(),
        SocketFlags::CLOEXEC,
        None,
    )
}

/// `socketpair(AF_UNIX, kind, SOCK_CLOEXEC)`: two connected sockets.
#[doc(alias = "socketpair")]
pub fn pair(kind: Kind) -> Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        kind.socket_type(),
        SocketFlags::CLOEXEC,
        None,
    )
}

/// `bind(fd, name)`. `EADDRINUSE` when the name is taken (a path socket
/// file left behind counts), `ENAMETOOLONG`/`EINVAL` for a long name.
#[doc(alias = "bind(2)")]
pub fn bind(fd: impl AsFd, name: &UnixName) -> Result<()> {
    rustix::net::bind(fd, &name.to_addr()?)
}

/// `listen(fd, backlog)`.
#[doc(alias = "listen(2)")]
pub fn listen(fd: impl AsFd, backlog: i32) -> Result<()> {
    rustix::net::listen(fd, backlog)
}

/// `accept4(fd, SOCK_CLOEXEC)`, retried on `EINTR`.
#[doc(alias = "accept4")]
pub fn accept(fd: impl AsFd) -> Result<OwnedFd> {
    let fd = fd.as_fd();
    retry(|| rustix::net::accept_with(fd, SocketFlags::CLOEXEC))
}

/// `connect(fd, name)`. `ENOENT`/`ECONNREFUSED` when nobody listens.
#[doc(alias = "connect(2)")]
pub fn connect(fd: impl AsFd, name: &UnixName) -> Result<()> {
    rustix::net::connect(fd, &name.to_addr()?)
}

/// `send(fd, buf, MSG_NOSIGNAL [| MSG_DONTWAIT])`, retried on `EINTR`: a
/// closed peer is `EPIPE`, never `SIGPIPE`.
#[doc(alias = "send(2)")]
pub fn send(fd: impl AsFd, buf: &[u8], nonblocking: bool) -> Result<usize> {
    let fd = fd.as_fd();
    let mut flags = SendFlags::NOSIGNAL;
    if nonblocking {
        flags |= SendFlags::DONTWAIT;
    }
    retry(|| rustix::net::send(fd, buf, flags))
}

/// `sendto(fd, buf, MSG_NOSIGNAL, name)`, retried on `EINTR`.
#[doc(alias = "sendto")]
pub fn send_to(fd: impl AsFd, buf: &[u8], name: &UnixName) -> Result<usize> {
    let fd = fd.as_fd();
    let addr = name.to_addr()?;
    retry(|| rustix::net::sendto(fd, buf, SendFlags::NOSIGNAL, &addr))
}

/// `sendto(fd, buf, MSG_NOSIGNAL | MSG_DONTWAIT, name)`, retried on
/// `EINTR`: `EAGAIN` when the receiver's buffer is full,
/// `ECONNREFUSED`/`ENOENT` when nobody is bound to `name`.
#[doc(alias = "sendto")]
pub fn send_to_nonblocking(fd: impl AsFd, buf: &[u8], name: &UnixName) -> Result<usize> {
    let fd = fd.as_fd();
    let addr = name.to_addr()?;
    retry(|| rustix::net::sendto(fd, buf, SendFlags::NOSIGNAL | SendFlags::DONTWAIT, &addr))
}

/// What [`recv`] and [`recv_with_fds`] report.
#[derive(Debug)]
pub struct Received {
    /// Bytes stored in the buffer.
    pub len: usize,
    /// Length of the whole datagram or packet (larger than `len` when
    /// `truncated`; equal on streams).
    pub message_len: usize,
    /// `MSG_TRUNC`: a datagram or packet was longer than the buffer; the
    /// rest is lost.
    pub truncated: bool,
    /// `MSG_CTRUNC`: descriptors did not fit the control buffer (or the
    /// receiver's descriptor limit); the kernel closed the extra ones.
    pub fds_truncated: bool,
    /// Received descriptors, owned and close-on-exec.
    pub fds: Vec<OwnedFd>,
}

/// `recv(fd, buf, [MSG_DONTWAIT])`, retried on `EINTR`. On a datagram or
/// seqpacket socket, `truncated` says the message did not fit.
#[doc(alias = "recv(2)")]
pub fn recv(fd: impl AsFd, buf: &mut [u8], nonblocking: bool) -> Result<Received> {
    let fd = fd.as_fd();
    let mut flags = RecvFlags::TRUNC;
    if nonblocking {
        flags |= RecvFlags::DONTWAIT;
    }
    let cap = buf.len();
    let (_, n) = retry(|| rustix::net::recv(fd, &mut *buf, flags))?;
    Ok(Received {
        len: n.min(cap),
        message_len: n,
        truncated: n > cap,
        fds_truncated: false,
        fds: Vec::new(),
    })
}

/// `sendmsg(fd, {buf, SCM_RIGHTS fds}, MSG_NOSIGNAL)`, retried on
/// `EINTR`. At most [`MAX_FDS_PER_MESSAGE`] descriptors (`EINVAL`
/// otherwise, before any system call); on a stream socket `buf` must not
/// be empty (the descriptors ride on its first byte).
#[doc(alias = "sendmsg")]
#[doc(alias = "SCM_RIGHTS")]
pub fn send_with_fds(fd: impl AsFd, buf: &[u8], fds: &[BorrowedFd<'_>]) -> Result<usize> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(Errno::INVAL);
    }
    let fd = fd.as_fd();
    let mut space =
        [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let iov = [IoSlice::new(buf)];
    retry(|| {
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(Errno::INVAL);
        }
        rustix::net::sendmsg(fd, &iov, &mut control, SendFlags::NOSIGNAL)
    })
}

/// `recvmsg(fd, buf, MSG_CMSG_CLOEXEC [| MSG_DONTWAIT])` with room for
/// [`MAX_FDS_PER_MESSAGE`] descriptors, retried on `EINTR`. Every received
/// descriptor is returned owned and close-on-exec, so none can leak.
#[doc(alias = "recvmsg")]
#[doc(alias = "MSG_CMSG_CLOEXEC")]
pub fn recv_with_fds(fd: impl AsFd, buf: &mut [u8], nonblocking: bool) -> Result<Received> {
    let fd = fd.as_fd();
    let mut space =
        [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut flags = RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC;
    if nonblocking {
        flags |= RecvFlags::DONTWAIT;
    }
    let cap = buf.len();
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = retry(|| {
        let mut iov = [IoSliceMut::new(&mut *buf)];
        rustix::net::recvmsg(fd, &mut iov, &mut control, flags)
    })?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(iter) = message {
            fds.extend(iter);
        }
    }
    Ok(Received {
        len: msg.bytes.min(cap),
        message_len: msg.bytes,
        truncated: msg.flags.contains(ReturnFlags::TRUNC) || msg.bytes > cap,
        fds_truncated: msg.flags.contains(ReturnFlags::CTRUNC),
        fds,
    })
}

/// Credentials of a peer process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    /// Process id (at the time of `connect`/`socketpair`), as the kernel
    /// translates it into the **reader's** PID namespace: 0 when the peer
    /// lives in a PID namespace the reader cannot see (a sibling
    /// container).
    pub pid: u32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// `getsockopt(fd, SOL_SOCKET, SO_PEERCRED)`: who is at the other end of
/// a connected stream or seqpacket socket (as of `connect`).
#[doc(alias = "getsockopt")]
#[doc(alias = "SO_PEERCRED")]
pub fn peer_credentials(fd: impl AsFd) -> Result<Credentials> {
    use std::os::fd::AsRawFd;
    // libc, not rustix: rustix's `UCred::pid` is a non-zero `Pid`, but the
    // kernel reports pid 0 for a peer in a PID namespace the caller cannot
    // see, which would be an invalid value.
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = core::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are live locals; `len` holds the size of
    // `cred`, which the kernel writes at most.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO));
    }
    Ok(Credentials {
        pid: cred.pid as u32,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// Credentials of this process (`getpid`, `geteuid`, `getegid`).
#[doc(alias = "getpid")]
pub fn own_credentials() -> Credentials {
    Credentials {
        pid: rustix::process::getpid().as_raw_nonzero().get() as u32,
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
    }
}

/// `unlink(path)` of a socket file.
#[doc(alias = "unlink(2)")]
pub fn unlink(path: &std::path::Path) -> Result<()> {
    rustix::fs::unlink(path)
}

/// `setsockopt(SO_SNDBUF)`/`(SO_RCVBUF)`: sets both buffer sizes (the
/// kernel doubles the value and caps it at `wmem_max`/`rmem_max`).
#[doc(alias = "setsockopt")]
#[doc(alias = "SO_SNDBUF")]
pub fn set_buffer_sizes(fd: impl AsFd, bytes: usize) -> Result<()> {
    let fd = fd.as_fd();
    rustix::net::sockopt::set_socket_send_buffer_size(fd, bytes)?;
    rustix::net::sockopt::set_socket_recv_buffer_size(fd, bytes)
}

/// `fcntl(F_SETFL, O_NONBLOCK)` on a socket.
#[doc(alias = "fcntl")]
pub fn set_nonblocking(fd: impl AsFd, nonblocking: bool) -> Result<()> {
    super::pipe::set_nonblocking(fd, nonblocking)
}

/// `poll(fd, POLLRDHUP, 0)`: whether the peer of a connected socket has
/// closed its end or died (`POLLHUP`, `POLLRDHUP` or `POLLERR`), without
/// waiting and without consuming any data. Pending data alone does not
/// count.
#[doc(alias = "poll")]
#[doc(alias = "POLLRDHUP")]
pub fn peer_hung_up(fd: impl AsFd) -> Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&fd, PollFlags::RDHUP)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        match rustix::event::poll(&mut fds, Some(&zero)) {
            Ok(_) => {
                return Ok(fds[0]
                    .revents()
                    .intersects(PollFlags::HUP | PollFlags::RDHUP | PollFlags::ERR));
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}
