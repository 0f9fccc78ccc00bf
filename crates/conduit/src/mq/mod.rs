//! POSIX message queues: kernel-held queues of whole messages with
//! priorities, named in their own namespace (`/name`, visible under
//! `/dev/mqueue` when that is mounted).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use conduit::mq::MessageQueue;
//! let q = MessageQueue::builder("/orders").capacity(8).message_size(256).create()?;
//! q.send(b"buy", 5)?;
//! let mut buf = vec![0; q.message_size()];
//! let msg = q.receive(&mut buf)?;
//! assert_eq!((&buf[..msg.len], msg.priority), (&b"buy"[..], 5));
//! # Ok(()) }
//! ```
//!
//! # Edges
//!
//! * Receiving returns the oldest message of the highest priority
//!   (0..=32767).
//! * The receive buffer must be at least [`MessageQueue::message_size`]
//!   bytes, or the kernel refuses even a short message; that is checked
//!   before the call ([`RecvError::BufferTooSmall`]).
//! * Limits: `/proc/sys/fs/mqueue/msg_max` and `msgsize_max` cap the
//!   attributes of unprivileged processes (privileged ones up to 65536
//!   messages and 16 MiB), `queues_max` caps the number of queues, and
//!   `RLIMIT_MSGQUEUE` the bytes per user. Each is reported by name.
//! * The queue created by [`QueueBuilder::create`] removes its name when
//!   dropped (open descriptors elsewhere keep working), unless
//!   [`MessageQueue::keep_name`] was called. A creator killed with
//!   SIGKILL leaves the name: use `open_or_create`, or remove it with
//!   [`MessageQueue::unlink`].
//! * A queue descriptor is a file descriptor ([`AsFd`]): readable when a
//!   message waits, writable when there is room, so it can join epoll or
//!   a wait set.
//! * Queues are listed ([`list`]) through the `mqueue` filesystem, usually
//!   mounted at `/dev/mqueue`; where it is not mounted, queues work but
//!   cannot be listed ([`ListError::NotMounted`]).
//! * Any POSIX client (C's `mq_open`, Python's `posix_ipc`) opens the same
//!   queue by the same name. A [`Domain`](crate::Domain)'s queues are
//!   named `/conduit.<domain>.<name>` ([`Domain::queue_name`](crate::Domain::queue_name)).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::shm::Permissions;
use crate::sys;
use crate::sys::Errno;
use crate::sys::mq::OpenOptions;
pub use crate::sys::mq::{Attributes, Limits};

/// Largest priority plus one (`MQ_PRIO_MAX` on Linux).
pub const PRIORITY_LIMIT: u32 = 32768;
/// Largest `max_messages` even a privileged process may ask for
/// (`HARD_MSGMAX`).
pub const HARD_MAX_MESSAGES: usize = 65536;
/// Largest `message_size` even a privileged process may ask for
/// (`HARD_MSGSIZEMAX`).
pub const HARD_MAX_MESSAGE_SIZE: usize = 16 << 20;

/// Error opening or creating a queue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The name must be `/` followed by 1..=255 characters without `/`.
    #[error(
        "invalid queue name {name:?}: it must be '/' followed by up to 255 characters without '/'"
    )]
    InvalidName {
        /// The name.
        name: String,
    },
    /// `create` found an existing queue.
    #[error("message queue {name} already exists")]
    AlreadyExists {
        /// The name.
        name: String,
        /// `EEXIST`.
        #[source]
        source: Errno,
    },
    /// `open` found no queue.
    #[error("message queue {name} does not exist")]
    NotFound {
        /// The name.
        name: String,
        /// `ENOENT`.
        #[source]
        source: Errno,
    },
    /// The queue's mode forbids this access.
    #[error("permission denied for message queue {name}")]
    PermissionDenied {
        /// The name.
        name: String,
        /// `EACCES`.
        #[source]
        source: Errno,
    },
    /// Capacity above the limit.
    #[error(
        "capacity of {requested} messages refused: the limit is {limit} (/proc/sys/fs/mqueue/msg_max for unprivileged processes, {HARD_MAX_MESSAGES} for privileged ones)"
    )]
    CapacityAboveLimit {
        /// Messages asked for.
        requested: usize,
        /// `msg_max` (or the hard limit when privileged).
        limit: usize,
        /// `EINVAL`.
        #[source]
        source: Errno,
    },
    /// Message size above the limit.
    #[error(
        "message size of {requested} bytes refused: the limit is {limit} (/proc/sys/fs/mqueue/msgsize_max for unprivileged processes, {HARD_MAX_MESSAGE_SIZE} for privileged ones)"
    )]
    MessageSizeAboveLimit {
        /// Bytes asked for.
        requested: usize,
        /// `msgsize_max` (or the hard limit when privileged).
        limit: usize,
        /// `EINVAL`.
        #[source]
        source: Errno,
    },
    /// Capacity or message size of zero.
    #[error("capacity and message size must be at least 1")]
    ZeroAttribute,
    /// The system-wide number of queues is exhausted.
    #[error("too many message queues on the system (/proc/sys/fs/mqueue/queues_max = {limit})")]
    TooManyQueues {
        /// `queues_max` (0 if unreadable).
        limit: usize,
        /// `ENOSPC`.
        #[source]
        source: Errno,
    },
    /// The user's `RLIMIT_MSGQUEUE` bytes would be exceeded (the kernel
    /// reports it as `EMFILE`; a real lack of descriptors is
    /// [`OpenError::TooManyOpenFiles`]).
    #[error(
        "queue of about {bytes} bytes refused: the queues of this user would exceed RLIMIT_MSGQUEUE ({}); remove unused queues, ask for a smaller capacity or message size, or raise the limit (`ulimit -q`, LimitMSGQUEUE= in a systemd unit)",
        rlimit.map_or_else(|| "unlimited".to_owned(), |n| format!("{n} bytes"))
    )]
    ResourceLimit {
        /// Approximate bytes the queue needs (capacity × message size).
        bytes: usize,
        /// `RLIMIT_MSGQUEUE` soft limit.
        rlimit: Option<u64>,
        /// `EMFILE`.
        #[source]
        source: Errno,
    },
    /// The process (or the system) has no file descriptor left.
    #[error("cannot open message queue {name}: {}", crate::shm::descriptor_hint(*.source, *.limit))]
    TooManyOpenFiles {
        /// The name.
        name: String,
        /// This process's descriptor limit (`RLIMIT_NOFILE`), if limited.
        limit: Option<u64>,
        /// `EMFILE` or `ENFILE`.
        #[source]
        source: Errno,
    },
    /// The new queue could not be given the [`QueueBuilder::permissions`]
    /// asked for (`fchown` to the group: the creator must be a member of
    /// it, or have `CAP_CHOWN`; then `fchmod`). The queue was removed
    /// again.
    #[error(
        "cannot give message queue {name} mode {mode:o}{}",
        gid.map_or_else(String::new, |gid| format!(" and group {gid} (the creator must be a member of the group)"))
    )]
    PermissionsRefused {
        /// The name.
        name: String,
        /// The mode asked for.
        mode: u32,
        /// The group asked for.
        gid: Option<u32>,
        /// `EPERM` usually.
        #[source]
        source: Errno,
    },
    /// Any other failure.
    #[error("cannot open message queue {name}")]
    Other {
        /// The name.
        name: String,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

/// Error sending a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The message is longer than the queue's message size.
    #[error("message of {len} bytes exceeds the queue's message size of {max} bytes")]
    MessageTooLarge {
        /// Bytes given.
        len: usize,
        /// The queue's message size.
        max: usize,
    },
    /// The queue is full (non-blocking send).
    #[error("the queue is full ({capacity} messages)")]
    Full {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The queue stayed full until the timeout.
    #[error("the queue stayed full for {0:?}")]
    Timeout(Duration),
    /// Priority not below [`PRIORITY_LIMIT`].
    #[error("priority {0} is not below {PRIORITY_LIMIT}")]
    InvalidPriority(u32),
    /// The queue was opened without write access.
    #[error("the queue is not open for sending")]
    NotWritable(#[source] Errno),
    /// Any other failure.
    #[error("mq_send failed")]
    Other(#[source] Errno),
}

/// Error receiving a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The buffer is smaller than the queue's message size.
    #[error(
        "receive buffer of {len} bytes is smaller than the queue's message size of {message_size} bytes"
    )]
    BufferTooSmall {
        /// Bytes given.
        len: usize,
        /// The queue's message size.
        message_size: usize,
    },
    /// The queue is empty (non-blocking receive).
    #[error("the queue is empty")]
    Empty,
    /// The queue stayed empty until the timeout.
    #[error("the queue stayed empty for {0:?}")]
    Timeout(Duration),
    /// The queue was opened without read access.
    #[error("the queue is not open for receiving")]
    NotReadable(#[source] Errno),
    /// Any other failure.
    #[error("mq_receive failed")]
    Other(#[source] Errno),
}

/// Error listing queues ([`list`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// No `mqueue` filesystem is mounted, so queues cannot be listed
    /// (they still work).
    #[error(
        "the mqueue filesystem is not mounted, so queues cannot be listed (mount it: mount -t mqueue none /dev/mqueue)"
    )]
    NotMounted,
    /// Reading the mount failed.
    #[error("cannot read the mqueue filesystem at {mount}")]
    Read {
        /// The mount point.
        mount: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The queues whose names (after the leading `/`) start with `prefix`
/// (`""` for all), sorted, each with its leading `/`. Read from the
/// `mqueue` filesystem (`/dev/mqueue`, or wherever it is mounted); lists
/// every user's queues (listing needs no permission).
pub fn list(prefix: &str) -> Result<Vec<String>, ListError> {
    let mount = sys::mq::mount_point().ok_or(ListError::NotMounted)?;
    sys::mq::list(&mount, prefix).map_err(|source| ListError::Read { mount, source })
}

/// A received message's length and priority; the bytes are in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// Bytes stored at the start of the buffer.
    pub len: usize,
    /// The message's priority.
    pub priority: u32,
}

/// Builder for opening or creating a [`MessageQueue`].
#[derive(Debug, Clone)]
pub struct QueueBuilder {
    name: String,
    capacity: Option<usize>,
    message_size: Option<usize>,
    mode: u32,
    /// Set by [`QueueBuilder::permissions`]: applied exactly to a queue
    /// this builder creates.
    permissions: Option<Permissions>,
    read: bool,
    write: bool,
    nonblocking: bool,
}

impl QueueBuilder {
    /// Number of messages the queue holds (default:
    /// `/proc/sys/fs/mqueue/msg_default`). Only used when creating.
    pub fn capacity(mut self, messages: usize) -> Self {
        self.capacity = Some(messages);
        self
    }

    /// Largest message in bytes (default: `msgsize_default`). Only used
    /// when creating.
    pub fn message_size(mut self, bytes: usize) -> Self {
        self.message_size = Some(bytes);
        self
    }

    /// Permission bits of a new queue (default `0o600`; the umask applies).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Who may use a new queue, like the shared-memory objects of a node
    /// with the same [`Permissions`]: owner only (0600), or the owner and
    /// group `gid` (0660, the queue given to `gid`). Unlike
    /// [`mode`](Self::mode), the bits are set exactly (`fchmod`, no
    /// umask). Only applied to a queue this call creates; an existing
    /// queue keeps its owner, group and mode.
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.mode = permissions.mode();
        self.permissions = Some(permissions);
        self
    }

    /// Open for receiving only.
    pub fn receive_only(mut self) -> Self {
        self.read = true;
        self.write = false;
        self
    }

    /// Open for sending only.
    pub fn send_only(mut self) -> Self {
        self.read = false;
        self.write = true;
        self
    }

    /// Open in non-blocking mode: `send` and `receive` never wait.
    pub fn nonblocking(mut self, nonblocking: bool) -> Self {
        self.nonblocking = nonblocking;
        self
    }

    /// Creates a new queue; fails if the name exists. The returned queue
    /// removes the name when dropped.
    pub fn create(self) -> Result<MessageQueue, OpenError> {
        self.open_with(true, true)
    }

    /// Opens an existing queue.
    pub fn open(self) -> Result<MessageQueue, OpenError> {
        self.open_with(false, false)
    }

    /// Opens the queue, creating it if needed (the name is then not
    /// removed on drop: other users may rely on it).
    pub fn open_or_create(self) -> Result<MessageQueue, OpenError> {
        self.open_with(true, false)
    }

    fn open_with(self, create: bool, exclusive: bool) -> Result<MessageQueue, OpenError> {
        if create && !exclusive && self.permissions.is_some() {
            // Permissions apply only to a queue this call creates: try to
            // create it, else open the one that exists (a race with its
            // removal is retried).
            loop {
                match self.clone().open_with(true, true) {
                    Ok(mut queue) => {
                        queue.unlink_on_drop = false;
                        return Ok(queue);
                    }
                    Err(OpenError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
                match self.clone().open_with(false, false) {
                    Err(OpenError::NotFound { .. }) => continue,
                    result => return result,
                }
            }
        }
        let name = &self.name;
        let valid = name.len() >= 2
            && name.len() <= 256
            && name.starts_with('/')
            && !name[1..].contains('/')
            && !name.contains('\0');
        if !valid {
            return Err(OpenError::InvalidName { name: name.clone() });
        }
        let limits = sys::mq::limits().ok();
        let capacity = if create && (self.capacity.is_some() || self.message_size.is_some()) {
            let max = self
                .capacity
                .unwrap_or_else(|| limits.map_or(10, |l| l.msg_default));
            let size = self
                .message_size
                .unwrap_or_else(|| limits.map_or(8192, |l| l.msgsize_default));
            if max == 0 || size == 0 {
                return Err(OpenError::ZeroAttribute);
            }
            Some((max, size))
        } else {
            None
        };
        let options = OpenOptions {
            create,
            exclusive,
            read: self.read,
            write: self.write,
            nonblocking: self.nonblocking,
            mode: self.mode,
            capacity,
        };
        let fd = sys::mq::open(name, &options).map_err(|source| {
            let name = name.clone();
            match source {
                Errno::EXIST => OpenError::AlreadyExists { name, source },
                Errno::NOENT => OpenError::NotFound { name, source },
                Errno::ACCESS => OpenError::PermissionDenied { name, source },
                Errno::NOSPC => OpenError::TooManyQueues {
                    limit: limits.map_or(0, |l| l.queues_max),
                    source,
                },
                // The kernel says EMFILE for RLIMIT_MSGQUEUE too: probe.
                Errno::MFILE | Errno::NFILE
                    if source == Errno::NFILE || !sys::process::can_open_descriptor() =>
                {
                    OpenError::TooManyOpenFiles {
                        name,
                        limit: sys::process::descriptor_limit(),
                        source,
                    }
                }
                Errno::MFILE => OpenError::ResourceLimit {
                    bytes: capacity.map_or(0, |(m, s)| m * s),
                    rlimit: sys::mq::rlimit_bytes(),
                    source,
                },
                Errno::INVAL => invalid_attributes(capacity, limits, name, source),
                source => OpenError::Other { name, source },
            }
        })?;
        if let Some(permissions) = self.permissions.filter(|_| create && exclusive) {
            let applied = permissions
                .gid()
                .map_or(Ok(()), |gid| sys::fd::set_group(&fd, gid))
                .and_then(|()| sys::fd::set_mode(&fd, permissions.mode()));
            if let Err(source) = applied {
                let _ = sys::mq::unlink(name);
                return Err(OpenError::PermissionsRefused {
                    name: name.clone(),
                    mode: permissions.mode(),
                    gid: permissions.gid(),
                    source,
                });
            }
        }
        let attributes = sys::mq::attributes(&fd).map_err(|source| OpenError::Other {
            name: name.clone(),
            source,
        })?;
        Ok(MessageQueue {
            fd,
            name: self.name,
            attributes,
            unlink_on_drop: exclusive,
        })
    }
}

/// Tells which limit an `EINVAL` from `mq_open` hit. A request above the
/// hard limit is refused for everyone; one between the `/proc` limit and
/// the hard limit only for a caller without `CAP_SYS_RESOURCE` (which root
/// in a container often lacks, so the uid says nothing).
fn invalid_attributes(
    capacity: Option<(usize, usize)>,
    limits: Option<Limits>,
    name: String,
    source: Errno,
) -> OpenError {
    if let Some((max, size)) = capacity {
        let (msg_max, msgsize_max) =
            limits.map_or((usize::MAX, usize::MAX), |l| (l.msg_max, l.msgsize_max));
        if max > HARD_MAX_MESSAGES || max > msg_max {
            return OpenError::CapacityAboveLimit {
                requested: max,
                limit: if max > HARD_MAX_MESSAGES {
                    HARD_MAX_MESSAGES
                } else {
                    msg_max
                },
                source,
            };
        }
        if size > HARD_MAX_MESSAGE_SIZE || size > msgsize_max {
            return OpenError::MessageSizeAboveLimit {
                requested: size,
                limit: if size > HARD_MAX_MESSAGE_SIZE {
                    HARD_MAX_MESSAGE_SIZE
                } else {
                    msgsize_max
                },
                source,
            };
        }
    }
    OpenError::Other { name, source }
}

/// An open POSIX message queue.
#[derive(Debug)]
pub struct MessageQueue {
    fd: OwnedFd,
    name: String,
    attributes: Attributes,
    unlink_on_drop: bool,
}

impl MessageQueue {
    /// Starts building a queue named `name` (`/` and up to 255
    /// characters without `/`), opened for sending and receiving.
    pub fn builder(name: impl Into<String>) -> QueueBuilder {
        QueueBuilder {
            name: name.into(),
            capacity: None,
            message_size: None,
            mode: 0o600,
            permissions: None,
            read: true,
            write: true,
            nonblocking: false,
        }
    }

    /// `mq_unlink`: removes a queue's name.
    pub fn unlink(name: &str) -> Result<(), OpenError> {
        sys::mq::unlink(name).map_err(|source| match source {
            Errno::NOENT => OpenError::NotFound {
                name: name.to_owned(),
                source,
            },
            Errno::ACCESS => OpenError::PermissionDenied {
                name: name.to_owned(),
                source,
            },
            source => OpenError::Other {
                name: name.to_owned(),
                source,
            },
        })
    }

    /// The system limits (`/proc/sys/fs/mqueue`).
    pub fn limits() -> std::io::Result<Limits> {
        sys::mq::limits().map_err(std::io::Error::from)
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Keep the name when this queue is dropped.
    pub fn keep_name(&mut self) {
        self.unlink_on_drop = false;
    }

    /// The largest message in bytes.
    pub fn message_size(&self) -> usize {
        self.attributes.message_size
    }

    /// How many messages the queue holds.
    pub fn capacity(&self) -> usize {
        self.attributes.max_messages
    }

    /// Current attributes, including the number of queued messages.
    pub fn attributes(&self) -> std::io::Result<Attributes> {
        sys::mq::attributes(&self.fd).map_err(std::io::Error::from)
    }

    /// Sends `message` with `priority` (0..32768, higher first). Blocks
    /// while the queue is full, unless opened non-blocking
    /// ([`SendError::Full`]).
    pub fn send(&self, message: &[u8], priority: u32) -> Result<(), SendError> {
        self.send_inner(message, priority, None)
    }

    /// Like [`send`](Self::send), giving up after `timeout`.
    pub fn send_timeout(
        &self,
        message: &[u8],
        priority: u32,
        timeout: Duration,
    ) -> Result<(), SendError> {
        self.send_inner(message, priority, Some(timeout))
    }

    fn send_inner(
        &self,
        message: &[u8],
        priority: u32,
        timeout: Option<Duration>,
    ) -> Result<(), SendError> {
        if message.len() > self.attributes.message_size {
            return Err(SendError::MessageTooLarge {
                len: message.len(),
                max: self.attributes.message_size,
            });
        }
        if priority >= PRIORITY_LIMIT {
            return Err(SendError::InvalidPriority(priority));
        }
        sys::mq::send(&self.fd, message, priority, timeout).map_err(|e| match e {
            Errno::AGAIN => SendError::Full {
                capacity: self.attributes.max_messages,
            },
            Errno::TIMEDOUT => SendError::Timeout(timeout.unwrap_or_default()),
            Errno::MSGSIZE => SendError::MessageTooLarge {
                len: message.len(),
                max: self.attributes.message_size,
            },
            Errno::BADF => SendError::NotWritable(e),
            e => SendError::Other(e),
        })
    }

    /// Receives the oldest message of the highest priority into `buf`
    /// (at least [`message_size`](Self::message_size) bytes). Blocks while
    /// empty, unless opened non-blocking ([`RecvError::Empty`]).
    pub fn receive(&self, buf: &mut [u8]) -> Result<Message, RecvError> {
        self.receive_inner(buf, None)
    }

    /// Like [`receive`](Self::receive), giving up after `timeout`.
    pub fn receive_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<Message, RecvError> {
        self.receive_inner(buf, Some(timeout))
    }

    fn receive_inner(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<Message, RecvError> {
        if buf.len() < self.attributes.message_size {
            return Err(RecvError::BufferTooSmall {
                len: buf.len(),
                message_size: self.attributes.message_size,
            });
        }
        sys::mq::receive(&self.fd, buf, timeout)
            .map(|(len, priority)| Message { len, priority })
            .map_err(|e| match e {
                Errno::AGAIN => RecvError::Empty,
                Errno::TIMEDOUT => RecvError::Timeout(timeout.unwrap_or_default()),
                Errno::MSGSIZE => RecvError::BufferTooSmall {
                    len: buf.len(),
                    message_size: self.attributes.message_size,
                },
                Errno::BADF => RecvError::NotReadable(e),
                e => RecvError::Other(e),
            })
    }
}

impl AsFd for MessageQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for MessageQueue {
    fn drop(&mut self) {
        if self.unlink_on_drop {
            let _ = sys::mq::unlink(&self.name);
        }
    }
}
