//! Unix domain sockets: stream, datagram and seqpacket; path and abstract
//! names; peer credentials with an accept/refuse hook; file-descriptor
//! passing; sealed memfd segments shared through a socket
//! ([`SharedMemfd`]); and a zero-copy typed publish/subscribe channel whose
//! memory is two anonymous memfds offered through a socket
//! ([`channel`], [`ShmChannel`]).
//!
//! # Edges
//!
//! * Every send uses `MSG_NOSIGNAL`: a closed peer is
//!   [`SendError::PeerGone`], never `SIGPIPE`. `EINTR` is retried.
//! * Received descriptors arrive close-on-exec (`MSG_CMSG_CLOEXEC`) and
//!   owned ([`OwnedFd`]): dropping a received message closes them, so none
//!   leak. If the control buffer overflowed, the kernel already closed the
//!   excess and the call reports [`RecvError::FdsTruncated`].
//! * One `sendmsg` carries at most 253 descriptors (`SCM_MAX_FD`).
//!   [`UnixStream::send_fds`] and friends split longer lists into several
//!   messages and [`UnixStream::recv_fds`] reassembles them.
//! * A path-bound listener or datagram socket removes its socket file when
//!   dropped. If a process dies, the file stays: binding again fails with
//!   [`BindError::AddressInUse`]; an abstract name has no file and vanishes
//!   with the socket, which is why it is the better choice on Linux.
//! * Peer credentials are those of the process at `connect` (or
//!   `socketpair`) time; a pid may be reused after that process exits.

pub mod channel;
mod fds;
mod memfd;
mod ring;

#[cfg(all(test, loom))]
mod loom_tests;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

pub use channel::ShmChannel;
pub use memfd::{MemfdError, RecvMemfdError, SendMemfdError, SharedMemfd};

use crate::sys;
use crate::sys::Errno;
pub use crate::sys::socket::{Credentials, MAX_FDS_PER_MESSAGE};
use crate::sys::socket::{Kind, UnixName};

/// Name of a Unix socket: a path or an abstract name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SocketName(UnixName);

impl SocketName {
    /// A socket file at `path` (at most 107 bytes).
    pub fn path(path: impl Into<PathBuf>) -> SocketName {
        SocketName(UnixName::Path(path.into()))
    }

    /// A name in Linux's abstract namespace: no file, removed with the last
    /// socket, at most 107 bytes (without the leading NUL).
    pub fn abstract_name(name: impl AsRef<[u8]>) -> SocketName {
        SocketName(UnixName::Abstract(name.as_ref().to_vec()))
    }

    fn file(&self) -> Option<&Path> {
        match &self.0 {
            UnixName::Path(p) => Some(p),
            UnixName::Abstract(_) => None,
        }
    }
}

impl std::fmt::Display for SocketName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            UnixName::Path(p) => write!(f, "{}", p.display()),
            UnixName::Abstract(n) => write!(f, "@{}", String::from_utf8_lossy(n)),
        }
    }
}

/// Error creating a socket or socket pair.
#[derive(Debug, thiserror::Error)]
#[error("cannot create a Unix socket{}", create_hint(self.0))]
pub struct CreateError(#[source] pub Errno);

fn create_hint(e: Errno) -> String {
    match e {
        Errno::MFILE | Errno::NFILE => format!(
            ": {}",
            crate::shm::descriptor_hint(e, sys::process::descriptor_limit())
        ),
        _ => String::new(),
    }
}

/// Error binding a socket to a name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The name is taken: another socket, or a socket file left behind by
    /// a process that died (remove it, or use an abstract name).
    #[error("socket name {name} is already in use")]
    AddressInUse {
        /// The name.
        name: SocketName,
        /// `EADDRINUSE`.
        #[source]
        source: Errno,
    },
    /// Longer than the 107 bytes `sockaddr_un` can hold.
    #[error("socket name {name} is too long (at most 107 bytes)")]
    NameTooLong {
        /// The name.
        name: SocketName,
        /// `ENAMETOOLONG`/`EINVAL`.
        #[source]
        source: Errno,
    },
    /// The directory does not allow creating the socket file.
    #[error("permission denied binding {name}")]
    PermissionDenied {
        /// The name.
        name: SocketName,
        /// `EACCES`.
        #[source]
        source: Errno,
    },
    /// The process (or the system) has no file descriptor left.
    #[error("cannot bind {name}: {}", crate::shm::descriptor_hint(*.source, *.limit))]
    TooManyOpenFiles {
        /// The name.
        name: SocketName,
        /// This process's descriptor limit (`RLIMIT_NOFILE`), if limited.
        limit: Option<u64>,
        /// `EMFILE` or `ENFILE`.
        #[source]
        source: Errno,
    },
    /// [`Listener::bind_with`] on an abstract name, which has no file to
    /// carry permissions.
    #[error("socket name {name} is abstract: it has no file to carry permissions")]
    NoPermissionsForAbstract {
        /// The name.
        name: SocketName,
    },
    /// Any other failure (creating the socket, a missing directory...).
    #[error("cannot bind {name}")]
    Other {
        /// The name.
        name: SocketName,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

fn bind_error(name: &SocketName, source: Errno) -> BindError {
    let name = name.clone();
    match source {
        Errno::ADDRINUSE => BindError::AddressInUse { name, source },
        Errno::NAMETOOLONG | Errno::INVAL => BindError::NameTooLong { name, source },
        Errno::ACCESS | Errno::PERM => BindError::PermissionDenied { name, source },
        Errno::MFILE | Errno::NFILE => BindError::TooManyOpenFiles {
            name,
            limit: sys::process::descriptor_limit(),
            source,
        },
        source => BindError::Other { name, source },
    }
}

/// Error connecting to a named socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Nobody listens on that name.
    #[error("nobody listens on {name}")]
    NoListener {
        /// The name.
        name: SocketName,
        /// `ENOENT`/`ECONNREFUSED`.
        #[source]
        source: Errno,
    },
    /// The socket file's permissions forbid connecting.
    #[error("permission denied connecting to {name}")]
    PermissionDenied {
        /// The name.
        name: SocketName,
        /// `EACCES`.
        #[source]
        source: Errno,
    },
    /// The listener's credentials were refused by the caller's check
    /// ([`UnixStream::connect_verified`]); the connection was closed.
    #[error("server on {name} refused by the credentials check: pid {} uid {} gid {}", credentials.pid, credentials.uid, credentials.gid)]
    PeerRefused {
        /// The name.
        name: SocketName,
        /// Who listens there (as of its `listen`).
        credentials: Credentials,
    },
    /// The listener's backlog is full (non-blocking connect).
    #[error("the listener on {name} has a full backlog")]
    WouldBlock {
        /// The name.
        name: SocketName,
        /// `EAGAIN`.
        #[source]
        source: Errno,
    },
    /// The process (or the system) has no file descriptor left.
    #[error("cannot connect to {name}: {}", crate::shm::descriptor_hint(*.source, *.limit))]
    TooManyOpenFiles {
        /// The name.
        name: SocketName,
        /// This process's descriptor limit (`RLIMIT_NOFILE`), if limited.
        limit: Option<u64>,
        /// `EMFILE` or `ENFILE`.
        #[source]
        source: Errno,
    },
    /// Any other failure.
    #[error("cannot connect to {name}")]
    Other {
        /// The name.
        name: SocketName,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

fn connect_error(name: &SocketName, source: Errno) -> ConnectError {
    let name = name.clone();
    match source {
        Errno::NOENT | Errno::CONNREFUSED => ConnectError::NoListener { name, source },
        Errno::ACCESS | Errno::PERM => ConnectError::PermissionDenied { name, source },
        Errno::AGAIN => ConnectError::WouldBlock { name, source },
        Errno::MFILE | Errno::NFILE => ConnectError::TooManyOpenFiles {
            name,
            limit: sys::process::descriptor_limit(),
            source,
        },
        source => ConnectError::Other { name, source },
    }
}

/// Error accepting a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The peer filter refused this peer; its connection was closed.
    #[error("peer refused by the credentials filter: pid {} uid {} gid {}", credentials.pid, credentials.uid, credentials.gid)]
    Refused {
        /// Who tried to connect.
        credentials: Credentials,
    },
    /// Non-blocking listener and no pending connection.
    #[error("no pending connection (non-blocking)")]
    WouldBlock,
    /// The process (or the system) has no file descriptor left.
    #[error("accept failed: {}", crate::shm::descriptor_hint(*.source, *.limit))]
    TooManyOpenFiles {
        /// This process's descriptor limit (`RLIMIT_NOFILE`), if limited.
        limit: Option<u64>,
        /// `EMFILE` or `ENFILE`.
        #[source]
        source: Errno,
    },
    /// Any other failure.
    #[error("accept failed")]
    Other(#[source] Errno),
}

/// Error sending.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The peer closed its socket or died.
    #[error("the peer is gone")]
    PeerGone(#[source] Errno),
    /// Non-blocking socket and the peer's buffer is full.
    #[error("the socket buffer is full (non-blocking)")]
    WouldBlock,
    /// A datagram or packet larger than the socket buffer allows.
    #[error("message of {len} bytes is too large for the socket buffer")]
    MessageTooLarge {
        /// Bytes given.
        len: usize,
        /// `EMSGSIZE`.
        #[source]
        source: Errno,
    },
    /// More than [`MAX_FDS_PER_MESSAGE`] descriptors for one message (use
    /// `send_fds`, which splits).
    #[error("{count} descriptors exceed the kernel limit of 253 per message")]
    TooManyFds {
        /// Descriptors given.
        count: usize,
    },
    /// A stream message carrying descriptors needs at least one byte.
    #[error("descriptors need at least one byte of data to ride on")]
    EmptyWithFds,
    /// The receiver's queue of in-flight descriptors is full
    /// (`ETOOMANYREFS`, `RLIMIT_NOFILE` of the sender) or another error.
    #[error("send failed")]
    Other(#[source] Errno),
}

fn send_error(len: usize, e: Errno) -> SendError {
    match e {
        Errno::PIPE | Errno::CONNRESET | Errno::NOTCONN | Errno::CONNREFUSED => {
            SendError::PeerGone(e)
        }
        Errno::AGAIN => SendError::WouldBlock,
        Errno::MSGSIZE => SendError::MessageTooLarge { len, source: e },
        e => SendError::Other(e),
    }
}

/// Error receiving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The peer closed the connection (end of stream).
    #[error("the peer closed the connection")]
    Closed,
    /// Non-blocking socket and nothing to receive.
    #[error("nothing to receive (non-blocking)")]
    WouldBlock,
    /// A datagram or packet was larger than the buffer: the first
    /// `capacity` bytes were stored, the rest is lost. Descriptors that
    /// came with it were received and closed.
    #[error("message of {len} bytes truncated to the buffer of {capacity} bytes")]
    Truncated {
        /// Size of the message.
        len: usize,
        /// Size of the buffer.
        capacity: usize,
    },
    /// More descriptors were sent than fit; the kernel closed the excess
    /// (or the receiver hit `RLIMIT_NOFILE`). The ones received were
    /// closed too.
    #[error("descriptors were lost: the control buffer or the descriptor limit overflowed")]
    FdsTruncated,
    /// The fd-passing protocol of `recv_fds` was violated (the peer sent
    /// something else).
    #[error("unexpected message in the descriptor-passing protocol: {0}")]
    Protocol(&'static str),
    /// Any other failure.
    #[error("receive failed")]
    Other(#[source] Errno),
}

fn recv_error(e: Errno) -> RecvError {
    match e {
        Errno::AGAIN => RecvError::WouldBlock,
        Errno::CONNRESET => RecvError::Closed,
        e => RecvError::Other(e),
    }
}

/// A filter deciding from a peer's credentials whether to accept it.
pub type PeerFilter = dyn Fn(&Credentials) -> bool + Send + Sync;

/// Credentials of this process, for comparing with a peer's.
pub fn own_credentials() -> Credentials {
    sys::socket::own_credentials()
}

macro_rules! socket_common {
    ($t:ident) => {
        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.fd.as_fd()
            }
        }
        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.fd.as_raw_fd()
            }
        }
        impl From<$t> for OwnedFd {
            fn from(s: $t) -> OwnedFd {
                s.into_fd()
            }
        }

        impl $t {
            /// Credentials of the peer (`SO_PEERCRED`), as of connection
            /// time.
            pub fn peer_credentials(&self) -> io::Result<Credentials> {
                sys::socket::peer_credentials(&self.fd).map_err(io::Error::from)
            }

            /// Switches `O_NONBLOCK` on or off.
            pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
                sys::socket::set_nonblocking(&self.fd, nonblocking).map_err(io::Error::from)
            }

            /// Sets the send and receive buffer sizes (`SO_SNDBUF`,
            /// `SO_RCVBUF`; the kernel doubles and caps them).
            pub fn set_buffer_sizes(&self, bytes: usize) -> io::Result<()> {
                sys::socket::set_buffer_sizes(&self.fd, bytes).map_err(io::Error::from)
            }

            /// Sends `data` with up to [`MAX_FDS_PER_MESSAGE`] descriptors
            /// in one message (`SCM_RIGHTS`). The descriptors are
            /// duplicated into the receiver; ours stay open. On a stream
            /// socket, `data` may be sent partially (the count is returned)
            /// and must not be empty when descriptors are given.
            pub fn send_with_fds(
                &self,
                data: &[u8],
                fds: &[BorrowedFd<'_>],
            ) -> Result<usize, SendError> {
                fds::send_with_fds(self.fd.as_fd(), data, fds)
            }

            /// Receives one message into `buf` with the descriptors that
            /// came with it, owned and close-on-exec.
            pub fn recv_with_fds(
                &self,
                buf: &mut [u8],
            ) -> Result<(usize, Vec<OwnedFd>), RecvError> {
                fds::recv_with_fds(self.fd.as_fd(), buf, Self::KIND)
            }

            /// Sends any number of descriptors, split into messages of at
            /// most [`MAX_FDS_PER_MESSAGE`]; receive them with `recv_fds`.
            pub fn send_fds(&self, fds: &[BorrowedFd<'_>]) -> Result<(), SendError> {
                fds::send_fds(self.fd.as_fd(), fds)
            }

            /// Receives a list of descriptors sent by `send_fds`, in order,
            /// owned and close-on-exec.
            pub fn recv_fds(&self) -> Result<Vec<OwnedFd>, RecvError> {
                fds::recv_fds(self.fd.as_fd(), Self::KIND)
            }

            /// Sends a sealed [`SharedMemfd`] to the peer.
            pub fn send_memfd(&self, memfd: &SharedMemfd) -> Result<(), SendMemfdError> {
                memfd::send(self.fd.as_fd(), memfd)
            }

            /// Receives a memfd sent by `send_memfd`, checks that it is
            /// sealed against shrinking and growing, and maps it
            /// (read-only with `writable == false`).
            pub fn recv_memfd(&self, writable: bool) -> Result<SharedMemfd, RecvMemfdError> {
                memfd::recv(self.fd.as_fd(), Self::KIND, writable)
            }
        }
    };
}

/// A connected Unix stream socket: a reliable byte stream, like a
/// bidirectional pipe. Implements `Read`/`Write`, and converts into an
/// [`OwnedFd`] for the framed channel ([`crate::pipe::framed`]).
#[derive(Debug)]
pub struct UnixStream {
    fd: OwnedFd,
}

/// A connected Unix seqpacket socket: reliable, ordered messages with
/// boundaries over a connection.
#[derive(Debug)]
pub struct UnixSeqpacket {
    fd: OwnedFd,
}

/// A Unix datagram socket: reliable (Unix datagrams are never dropped;
/// a sender blocks when the receiver's queue is full), ordered messages.
#[derive(Debug)]
pub struct UnixDatagram {
    fd: OwnedFd,
    unlink: UnlinkOnDrop,
}

socket_common!(UnixStream);
socket_common!(UnixSeqpacket);
socket_common!(UnixDatagram);

/// A connection-oriented socket kind a [`Listener`] can accept.
pub trait Connection: AsFd + Sized + sealed::Sealed {
    /// The kernel socket type.
    #[doc(hidden)]
    const KIND: Kind;
    /// Wraps a connected descriptor.
    #[doc(hidden)]
    fn from_connected(fd: OwnedFd) -> Self;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::UnixStream {}
    impl Sealed for super::UnixSeqpacket {}
}

macro_rules! connection {
    ($t:ident, $kind:expr) => {
        impl $t {
            const KIND: Kind = $kind;

            /// Connects to a listener bound to `name`.
            pub fn connect(name: &SocketName) -> Result<$t, ConnectError> {
                let fd = sys::socket::unix_socket(Self::KIND)
                    .map_err(|source| connect_error(name, source))?;
                sys::socket::connect(&fd, &name.0).map_err(|e| connect_error(name, e))?;
                Ok($t { fd })
            }

            /// Connects to `name`, then checks the credentials of the
            /// process that listens there (`SO_PEERCRED`, as of its
            /// `listen`) with `accept_peer`; refused → the connection is
            /// closed and [`ConnectError::PeerRefused`] returned. Use it
            /// to make sure a well-known name is served by the expected
            /// user.
            pub fn connect_verified(
                name: &SocketName,
                accept_peer: impl FnOnce(&Credentials) -> bool,
            ) -> Result<$t, ConnectError> {
                let s = Self::connect(name)?;
                let credentials =
                    sys::socket::peer_credentials(&s.fd).map_err(|source| ConnectError::Other {
                        name: name.clone(),
                        source,
                    })?;
                if !accept_peer(&credentials) {
                    return Err(ConnectError::PeerRefused {
                        name: name.clone(),
                        credentials,
                    });
                }
                Ok(s)
            }

            /// Two connected sockets (`socketpair`), e.g. to hand one to a
            /// child process.
            pub fn pair() -> Result<($t, $t), CreateError> {
                let (a, b) = sys::socket::pair(Self::KIND).map_err(CreateError)?;
                Ok(($t { fd: a }, $t { fd: b }))
            }

            /// Wraps a descriptor known to be a connected socket of this
            /// kind (e.g. inherited from a parent).
            pub fn from_fd(fd: OwnedFd) -> $t {
                $t { fd }
            }

            fn into_fd(self) -> OwnedFd {
                self.fd
            }
        }
        impl Connection for $t {
            const KIND: Kind = $kind;
            fn from_connected(fd: OwnedFd) -> Self {
                $t { fd }
            }
        }
    };
}

connection!(UnixStream, Kind::Stream);
connection!(UnixSeqpacket, Kind::SeqPacket);

impl UnixStream {
    /// Sends bytes; returns how many were taken (possibly fewer).
    pub fn send(&self, data: &[u8]) -> Result<usize, SendError> {
        sys::socket::send(&self.fd, data, false).map_err(|e| send_error(data.len(), e))
    }

    /// Receives bytes; `Ok(0)` is end of stream.
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        sys::socket::recv(&self.fd, buf, false)
            .map(|r| r.len)
            .map_err(recv_error)
    }
}

impl io::Read for UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::socket::recv(&self.fd, buf, false)
            .map(|r| r.len)
            .map_err(io::Error::from)
    }
}

impl io::Write for UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::socket::send(&self.fd, buf, false).map_err(io::Error::from)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn recv_message(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    closed_on_zero: bool,
) -> Result<usize, RecvError> {
    let r = sys::socket::recv(fd, buf, false).map_err(recv_error)?;
    if r.truncated {
        return Err(RecvError::Truncated {
            len: r.message_len,
            capacity: buf.len(),
        });
    }
    if closed_on_zero && r.len == 0 {
        return Err(RecvError::Closed);
    }
    Ok(r.len)
}

impl UnixSeqpacket {
    /// Sends one packet, whole or not at all.
    pub fn send(&self, message: &[u8]) -> Result<(), SendError> {
        sys::socket::send(&self.fd, message, false)
            .map(drop)
            .map_err(|e| send_error(message.len(), e))
    }

    /// Receives one packet into `buf`. A packet longer than `buf` is
    /// [`RecvError::Truncated`] (the rest is lost). End of connection is
    /// [`RecvError::Closed`] (so an empty packet is indistinguishable from
    /// it: do not send empty packets).
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        recv_message(self.fd.as_fd(), buf, true)
    }
}

impl UnixDatagram {
    const KIND: Kind = Kind::Datagram;

    /// A datagram socket bound to `name`; a path is unlinked on drop.
    pub fn bind(name: &SocketName) -> Result<UnixDatagram, BindError> {
        let fd = sys::socket::unix_socket(Kind::Datagram).map_err(|e| bind_error(name, e))?;
        sys::socket::bind(&fd, &name.0).map_err(|e| bind_error(name, e))?;
        Ok(UnixDatagram {
            fd,
            unlink: UnlinkOnDrop(name.file().map(Path::to_owned)),
        })
    }

    /// An unbound datagram socket (can send with `send_to`, or `connect`).
    pub fn unbound() -> Result<UnixDatagram, CreateError> {
        let fd = sys::socket::unix_socket(Kind::Datagram).map_err(CreateError)?;
        Ok(UnixDatagram {
            fd,
            unlink: UnlinkOnDrop(None),
        })
    }

    /// Two connected datagram sockets (`socketpair`).
    pub fn pair() -> Result<(UnixDatagram, UnixDatagram), CreateError> {
        let (a, b) = sys::socket::pair(Kind::Datagram).map_err(CreateError)?;
        Ok((
            UnixDatagram {
                fd: a,
                unlink: UnlinkOnDrop(None),
            },
            UnixDatagram {
                fd: b,
                unlink: UnlinkOnDrop(None),
            },
        ))
    }

    /// Wraps a descriptor known to be a Unix datagram socket.
    pub fn from_fd(fd: OwnedFd) -> UnixDatagram {
        UnixDatagram {
            fd,
            unlink: UnlinkOnDrop(None),
        }
    }

    /// Sets the default destination for `send`.
    pub fn connect(&self, name: &SocketName) -> Result<(), ConnectError> {
        sys::socket::connect(&self.fd, &name.0).map_err(|e| connect_error(name, e))
    }

    /// Sends one datagram to the connected peer.
    pub fn send(&self, message: &[u8]) -> Result<(), SendError> {
        sys::socket::send(&self.fd, message, false)
            .map(drop)
            .map_err(|e| send_error(message.len(), e))
    }

    /// Sends one datagram to `name`.
    pub fn send_to(&self, message: &[u8], name: &SocketName) -> Result<(), SendError> {
        sys::socket::send_to(&self.fd, message, &name.0)
            .map(drop)
            .map_err(|e| match e {
                Errno::NOENT | Errno::CONNREFUSED => SendError::PeerGone(e),
                e => send_error(message.len(), e),
            })
    }

    /// Receives one datagram into `buf` (an empty datagram is `Ok(0)`).
    /// Longer than `buf`: [`RecvError::Truncated`].
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        recv_message(self.fd.as_fd(), buf, false)
    }

    fn into_fd(self) -> OwnedFd {
        let UnixDatagram { fd, mut unlink } = self;
        unlink.0 = None;
        fd
    }
}

/// Removes a socket file when dropped.
#[derive(Debug)]
struct UnlinkOnDrop(Option<PathBuf>);

impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = sys::socket::unlink(&path);
        }
    }
}

/// A listening socket for [`UnixStream`] or [`UnixSeqpacket`]
/// connections, with an optional filter on the peer's credentials.
pub struct Listener<C: Connection> {
    fd: OwnedFd,
    name: SocketName,
    filter: Option<Box<PeerFilter>>,
    _kind: core::marker::PhantomData<fn() -> C>,
}

/// A listener for stream connections.
pub type StreamListener = Listener<UnixStream>;
/// A listener for seqpacket connections.
pub type SeqpacketListener = Listener<UnixSeqpacket>;

impl<C: Connection> std::fmt::Debug for Listener<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("fd", &self.fd)
            .field("name", &self.name)
            .field("filter", &self.filter.is_some())
            .finish()
    }
}

impl<C: Connection> Listener<C> {
    /// Binds `name` and listens (backlog 128). A path name is unlinked
    /// when the listener drops.
    pub fn bind(name: &SocketName) -> Result<Listener<C>, BindError> {
        let fd = sys::socket::unix_socket(C::KIND).map_err(|e| bind_error(name, e))?;
        sys::socket::bind(&fd, &name.0).map_err(|e| bind_error(name, e))?;
        let listener = Listener {
            fd,
            name: name.clone(),
            filter: None,
            _kind: core::marker::PhantomData,
        };
        sys::socket::listen(&listener.fd, 128).map_err(|e| bind_error(name, e))?;
        Ok(listener)
    }

    /// Binds a path `name` whose socket file the owner only (mode 0600),
    /// or also the members of a group (mode 0660, the file given to that
    /// group: the creator must be a member or have `CAP_CHOWN`), may
    /// connect to: the same [`Permissions`](crate::shm::Permissions) as
    /// shared-memory objects (connecting needs write permission on the
    /// file). The socket's own mode is set before `bind`, so the file is
    /// created no wider than asked for (the umask can only narrow it),
    /// then set exactly. An abstract name has no file and so no
    /// permissions: [`BindError::NoPermissionsForAbstract`] (filter peers
    /// with [`set_peer_filter`](Self::set_peer_filter) instead).
    pub fn bind_with(
        name: &SocketName,
        permissions: crate::shm::Permissions,
    ) -> Result<Listener<C>, BindError> {
        let Some(path) = name.file() else {
            return Err(BindError::NoPermissionsForAbstract { name: name.clone() });
        };
        let fd = sys::socket::unix_socket(C::KIND).map_err(|e| bind_error(name, e))?;
        sys::fd::set_mode(&fd, permissions.mode()).map_err(|e| bind_error(name, e))?;
        sys::socket::bind(&fd, &name.0).map_err(|e| bind_error(name, e))?;
        let listener = Listener {
            fd,
            name: name.clone(),
            filter: None,
            _kind: core::marker::PhantomData,
        };
        // From here on, dropping `listener` removes the file.
        sys::fd::set_path_permissions(path, permissions.mode(), permissions.gid())
            .map_err(|e| bind_error(name, e))?;
        sys::socket::listen(&listener.fd, 128).map_err(|e| bind_error(name, e))?;
        Ok(listener)
    }

    /// The name this listener is bound to.
    pub fn name(&self) -> &SocketName {
        &self.name
    }

    /// Installs a hook that sees each peer's credentials (`SO_PEERCRED`)
    /// and returns whether to accept it. Refused peers are disconnected
    /// and `accept` returns [`AcceptError::Refused`].
    pub fn set_peer_filter(
        &mut self,
        filter: impl Fn(&Credentials) -> bool + Send + Sync + 'static,
    ) {
        self.filter = Some(Box::new(filter));
    }

    /// Accepts one connection and returns it with the peer's credentials.
    pub fn accept(&self) -> Result<(C, Credentials), AcceptError> {
        let fd = sys::socket::accept(&self.fd).map_err(|e| match e {
            Errno::AGAIN => AcceptError::WouldBlock,
            Errno::MFILE | Errno::NFILE => AcceptError::TooManyOpenFiles {
                limit: sys::process::descriptor_limit(),
                source: e,
            },
            e => AcceptError::Other(e),
        })?;
        let credentials = sys::socket::peer_credentials(&fd).map_err(AcceptError::Other)?;
        if let Some(filter) = &self.filter {
            if !filter(&credentials) {
                drop(fd);
                return Err(AcceptError::Refused { credentials });
            }
        }
        Ok((C::from_connected(fd), credentials))
    }

    /// Switches `O_NONBLOCK` on or off (for `accept`).
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        sys::socket::set_nonblocking(&self.fd, nonblocking).map_err(io::Error::from)
    }
}

impl<C: Connection> AsFd for Listener<C> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<C: Connection> Drop for Listener<C> {
    fn drop(&mut self) {
        if let Some(path) = self.name.file() {
            let _ = sys::socket::unlink(path);
        }
    }
}
