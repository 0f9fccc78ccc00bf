//! The service core: what every messaging pattern shares.
//!
//! A service is a named meeting point with a static configuration (its
//! types and limits) and a registry of ports, in one shared-memory
//! segment per service (`Domain` names it: `svc.<hash>` for
//! publish/subscribe, `evt.<hash>` for events). This module is written
//! once for every pattern:
//!
//! * naming: [`validate_service_name`], [`ServiceKind::segment_name`];
//! * open, create and open-or-create, race-free between processes, with
//!   the static configuration checked against what the opener asked for
//!   (`core.rs`), and removal by the last user;
//! * the registry: the header's generation words and the port slots, their
//!   claiming, release and reclamation from dead nodes (`registry.rs`);
//! * the static configuration's common words and type descriptors
//!   (`config.rs`);
//! * listing and details for tools, and the domain-wide sweep.
//!
//! A pattern ([`pubsub`](crate::pubsub), [`event`](crate::event)) plugs in
//! by implementing the crate-internal `Pattern` trait: its kind, its
//! configuration codec, its layout and where its port slot arrays are,
//! plus hooks for what a dead or removed port owned outside the segment.
//! The pattern adds its builder method to [`ServiceBuilder`] in its own
//! module (`node.service("x").publish_subscribe::<T>()`,
//! `.event()`), so this module imports no pattern.

mod config;
pub(crate) mod core;
mod notify;
pub(crate) mod registry;

#[cfg(all(test, loom))]
mod loom_tests;

use crate::node::Node;
use crate::shm;
use crate::sys;

pub use crate::domain::ServiceKind;
pub use config::TypeLayoutInfo;
pub(crate) use config::{
    CONFIG_OFFSET, Compat, ConfigReader, ConfigWriter, Requested, TypeDesc, W_PATTERN,
    config_words, read_head, write_head,
};
pub(crate) use notify::EVENT_ID_LIMIT;
pub use notify::{EventId, EventSink};

/// Longest service name, in bytes.
pub const MAX_SERVICE_NAME_LEN: usize = 255;

/// Why a service could not be created or opened (the error of every
/// pattern's `create`, `open` and `open_or_create`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The service name is empty, too long or has a character outside
    /// `[A-Za-z0-9_.-/]`.
    #[error("invalid service name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration asked for (QoS, limits) is not valid.
    #[error("invalid service configuration: {0}")]
    InvalidConfig(String),
    /// `create`: the service exists already.
    #[error("service {0:?} already exists")]
    AlreadyExists(String),
    /// `open`: no such service.
    #[error("service {0:?} does not exist")]
    NotFound(String),
    /// The service carries other types (payload, user header).
    #[error("service {name:?} carries {existing}; this opener asked for {requested}")]
    IncompatibleType {
        /// The service.
        name: String,
        /// The types recorded in the service.
        existing: String,
        /// The types of this opener.
        requested: String,
    },
    /// The service's configuration (QoS, limits) does not satisfy what this
    /// opener asked for.
    #[error("service {name:?} has {existing}; this opener requires {requested}")]
    IncompatibleConfig {
        /// The service.
        name: String,
        /// The service's configuration.
        existing: String,
        /// What the opener requires.
        requested: String,
    },
    /// Another service name hashes to the same segment.
    #[error("service {name:?} collides with existing service {existing:?}")]
    NameCollision {
        /// The requested name.
        name: String,
        /// The name stored in the segment.
        existing: String,
    },
    /// The service segment's contents are invalid.
    #[error("service {name:?} is corrupted: {reason}")]
    Corrupted {
        /// The service.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Creating the segment failed.
    #[error("cannot create the segment of service {name:?}")]
    Create {
        /// The service.
        name: String,
        /// The segment error.
        #[source]
        source: shm::CreateError,
    },
    /// Opening the segment failed.
    #[error("cannot open the segment of service {name:?}")]
    Open {
        /// The service.
        name: String,
        /// The segment error.
        #[source]
        source: shm::OpenError,
    },
    /// The service's segment belongs to another user, or is shared with
    /// another group or mode than this node's
    /// [`Permissions`](crate::shm::Permissions); `source` says which.
    #[error(
        "permission denied for service {name:?}: its segment belongs to another user or group (to share a service, create every node with NodeBuilder::permissions(Permissions::group(gid)))"
    )]
    PermissionDenied {
        /// The service.
        name: String,
        /// The segment error: `PermissionDenied`, `OwnerMismatch`,
        /// `GroupMismatch` or `ModeMismatch`.
        #[source]
        source: shm::OpenError,
    },
    /// Taking the usage lock failed.
    #[error("cannot lock the segment of service {name:?}")]
    Lock {
        /// The service.
        name: String,
        /// The OS error.
        #[source]
        source: sys::Errno,
    },
}

impl ServiceError {
    /// `PermissionDenied` for the open errors that are about who may open
    /// the segment, `Open` for the others.
    pub(crate) fn open(name: &str, source: shm::OpenError) -> ServiceError {
        match source {
            shm::OpenError::PermissionDenied { .. }
            | shm::OpenError::OwnerMismatch { .. }
            | shm::OpenError::GroupMismatch { .. }
            | shm::OpenError::ModeMismatch { .. } => ServiceError::PermissionDenied {
                name: name.to_owned(),
                source,
            },
            source => ServiceError::Open {
                name: name.to_owned(),
                source,
            },
        }
    }
}

/// Checks a service name: 1 to 255 bytes of `[A-Za-z0-9_.-/]`.
pub fn validate_service_name(name: &str) -> Result<(), ServiceError> {
    let bad = |reason: String| ServiceError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if name.len() > MAX_SERVICE_NAME_LEN {
        return Err(bad(format!(
            "it is {} bytes long; the limit is {MAX_SERVICE_NAME_LEN}",
            name.len()
        )));
    }
    if let Some((i, c)) = name
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')))
    {
        return Err(bad(format!(
            "character {c:?} at byte {i} is not one of [A-Za-z0-9_.-/]"
        )));
    }
    Ok(())
}

/// The id of a port (publisher, subscriber, notifier, listener): unique
/// among the live objects of a domain. A publisher's id also names its
/// data segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u64);

/// Default spin budget of a blocking receive or wait before it sleeps on
/// the futex (every pattern's ports).
pub const DEFAULT_SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// The setters of the options that ports of several patterns share, for a
/// builder with fields of the same names: `spin` (ports that block to
/// receive), `max_slice_len` and `block_timeout` (ports that send). One
/// definition and one set of docs for every pattern's builders.
macro_rules! port_setters {
    ($($option:ident),+ $(,)?) => {
        $( $crate::service::port_setters!(@ $option); )+
    };
    (@ spin) => {
        /// How long a blocking receive or wait polls before it sleeps on
        /// the futex (default
        /// [`DEFAULT_SPIN`](crate::service::DEFAULT_SPIN);
        /// [`Spin::NONE`](crate::sync::Spin::NONE) sleeps at once).
        pub fn spin(mut self, spin: crate::sync::Spin) -> Self {
            self.spin = spin;
            self
        }
    };
    (@ max_slice_len) => {
        /// For slice payloads (`[T]`): the longest slice this port sends,
        /// in elements (default 64). Ignored for typed payloads.
        pub fn max_slice_len(mut self, len: usize) -> Self {
            self.max_slice_len = len;
            self
        }
    };
    (@ block_timeout) => {
        /// Under [`Overflow::Block`](crate::service::Overflow::Block): how
        /// long this port waits for room before a send (a client's loan:
        /// for a request slot) fails (default 1 s).
        pub fn block_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.block_timeout = timeout;
            self
        }
    };
}
pub(crate) use port_setters;

/// What a send does when the receiver's buffer is full: a publisher
/// whose subscriber's queue is full
/// ([`pubsub::Qos::overflow`](crate::pubsub::Qos::overflow)), a server
/// whose client holds its whole response buffer, a client with all its
/// requests in flight
/// ([`reqres::Qos`](crate::reqres::Qos)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Replace the oldest unread sample or response (it is counted as
    /// dropped). The publish/subscribe default.
    #[default]
    DropOldest,
    /// Wait until the receiver makes room (bounded by the sending port's
    /// block timeout), then fail with a timeout.
    Block,
    /// Fail the send at once, delivering to nobody. A full queue whose
    /// receiver died is freed by the send that finds it (the check for
    /// dead ports runs at most every 100 ms), so a dead receiver does not
    /// stop the sender for good.
    Fail,
}

impl Overflow {
    /// Its code in a static configuration word.
    pub(crate) fn code(self) -> u64 {
        match self {
            Overflow::DropOldest => 0,
            Overflow::Block => 1,
            Overflow::Fail => 2,
        }
    }

    /// The policy of configuration word `c` (`None`: unknown).
    pub(crate) fn from_code(c: u64) -> Option<Overflow> {
        Some(match c {
            0 => Overflow::DropOldest,
            1 => Overflow::Block,
            2 => Overflow::Fail,
            _ => return None,
        })
    }
}

/// The user header of services that have none (zero-sized): the default
/// header type of publish/subscribe samples and of request/response
/// requests and responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct NoHeader;

// SAFETY: zero-sized, no pointers, every (empty) bit pattern is valid.
unsafe impl crate::shm::ShmSafe for NoHeader {
    const LAYOUT: crate::shm::TypeLayout = crate::pool::NO_HEADER;
}

/// What a service carries: a `T: ShmSafe`, or a slice `[T]` whose
/// maximum length each sending port (publisher, client, server) chooses;
/// for publish/subscribe also
/// [`RawPayload`](crate::pubsub::RawPayload), a type described at run
/// time.
pub trait Payload: 'static {
    /// The element type (`T` for both `T` and `[T]`).
    type Element: crate::shm::ShmSafe;
    /// Whether this is a slice payload.
    const IS_SLICE: bool;
    /// Whether the element type is the service's run-time type
    /// ([`RawPayload`](crate::pubsub::RawPayload)) rather than `Element`.
    /// Known at compile time, so typed ports pay nothing for it.
    #[doc(hidden)]
    const RAW: bool = false;
}

impl<T: crate::shm::ShmSafe> Payload for T {
    type Element = T;
    const IS_SLICE: bool = false;
}

impl<T: crate::shm::ShmSafe> Payload for [T] {
    type Element = T;
    const IS_SLICE: bool = true;
}

/// A port registered in a service, as tools see it (`details` of each
/// pattern, the event service listing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    /// The port's id (a publisher's, client's or server's id also names
    /// its data segment).
    pub id: PortId,
    /// The node that registered it.
    pub node: crate::node::NodeId,
}

impl PortId {
    /// A new id no other live port of the domain has.
    pub(crate) fn unique() -> PortId {
        PortId(crate::node::unique_id())
    }
}

impl std::fmt::Display for PortId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::fmt::LowerHex for PortId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::LowerHex::fmt(&self.0, f)
    }
}

/// Starts configuring a service; made by [`Node::service`]. The pattern
/// modules add the methods that choose the pattern
/// ([`publish_subscribe`](ServiceBuilder::publish_subscribe),
/// [`event`](ServiceBuilder::event)).
#[derive(Debug)]
pub struct ServiceBuilder {
    pub(crate) node: Node,
    pub(crate) name: String,
}

impl Node {
    /// Starts configuring the service `name` (see [`crate::service`]).
    pub fn service(&self, name: &str) -> ServiceBuilder {
        ServiceBuilder {
            node: self.clone(),
            name: name.to_owned(),
        }
    }
}
