//! Domains: the namespace of every object conduit creates, and the one
//! place that knows how those objects are named.
//!
//! Every POSIX shared-memory object of domain `d` is named
//! `/conduit.<d>.<kind prefix><rest>` (see [`shm::object_name`] for the
//! `conduit.<d>.` part, which the segment layer applies), and every
//! wake-up socket `conduit.<d>.wake.<port id>` in the abstract socket
//! namespace. The kind prefixes:
//!
//! | object | name inside the domain | made by |
//! |---|---|---|
//! | node | `node.<node id, 16 hex>` | [`Node`](crate::node::Node) |
//! | publish/subscribe service | `svc.<FNV-1a of the service name, 16 hex>` | [`pubsub`](crate::pubsub) |
//! | event service | `evt.<FNV-1a of the service name, 16 hex>` | [`event`](crate::event) |
//! | blackboard service | `bb.<FNV-1a of the service name, 16 hex>` | [`blackboard`](crate::blackboard) |
//! | request/response service | `req.<FNV-1a of the service name, 16 hex>` | [`reqres`](crate::reqres) |
//! | publisher data | `pub.<publisher port id, 16 hex>` | [`Publisher`](crate::pubsub::Publisher) |
//! | client or server chunk pool | `rrp.<port id, 16 hex>` | [`Client`](crate::reqres::Client), [`Server`](crate::reqres::Server) |
//! | wake-up socket (abstract, no file) | `wake.<port id, 16 hex>` | subscribers and listeners with a wake-up descriptor |
//!
//! Service names may contain `/`, segment names may not, hence the hash;
//! the service's real name is kept in its static configuration and
//! compared on open (a different name with the same hash is a named
//! error, never a silent mix-up).
//!
//! A [`Domain`] lists its objects ([`Domain::objects`]) and removes them
//! ([`Domain::remove_object`]); `Domain::cleanup` (in the maintenance
//! layer, which knows every pattern) frees what dead processes left.

use crate::shm::{self, NameError, Segment};
use crate::sys;

/// The kind prefix of node segments.
const NODE_PREFIX: &str = "node.";
/// The kind prefix of publisher data segments.
const PUBLISHER_DATA_PREFIX: &str = "pub.";
/// The kind prefix of request/response port data segments (chunk pools of
/// clients and servers).
const PORT_DATA_PREFIX: &str = "rrp.";
/// The kind prefix of wake-up sockets.
const WAKE_PREFIX: &str = "wake.";

/// A messaging pattern, as far as naming and tools are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServiceKind {
    /// Publish/subscribe ([`crate::pubsub`]).
    PublishSubscribe,
    /// Events ([`crate::event`]).
    Event,
    /// Blackboards ([`crate::blackboard`]).
    Blackboard,
    /// Request/response ([`crate::reqres`]).
    RequestResponse,
}

impl ServiceKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ServiceKind; 4] = [
        ServiceKind::PublishSubscribe,
        ServiceKind::Event,
        ServiceKind::Blackboard,
        ServiceKind::RequestResponse,
    ];

    /// The prefix of this kind's segments inside a domain.
    pub(crate) const fn prefix(self) -> &'static str {
        match self {
            ServiceKind::PublishSubscribe => "svc.",
            ServiceKind::Event => "evt.",
            ServiceKind::Blackboard => "bb.",
            ServiceKind::RequestResponse => "req.",
        }
    }

    /// The segment name (inside the domain) of service `name` of this
    /// kind: the prefix and the FNV-1a hash of the name in hex.
    pub fn segment_name(self, name: &str) -> String {
        let h = shm::fingerprint::bytes(shm::fingerprint::start(), name.as_bytes());
        format!("{}{h:016x}", self.prefix())
    }
}

impl std::fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            ServiceKind::PublishSubscribe => "publish/subscribe service",
            ServiceKind::Event => "event service",
            ServiceKind::Blackboard => "blackboard service",
            ServiceKind::RequestResponse => "request/response service",
        })
    }
}

/// What an object of a domain is, judged by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ObjectKind {
    /// A node's liveness segment.
    Node,
    /// A service segment.
    Service(ServiceKind),
    /// A publisher's data segment (its chunk pool).
    PublisherData,
    /// A request/response client's or server's data segment (its chunk
    /// pool).
    PortData,
    /// Any other segment of the domain (for example one made with
    /// [`Segment::builder`] directly, or a managed segment).
    Segment,
}

impl ObjectKind {
    /// The name prefix of a chunk-pool data segment kind; `None` for the
    /// other kinds.
    pub(crate) const fn pool_prefix(self) -> Option<&'static str> {
        match self {
            ObjectKind::PublisherData => Some(PUBLISHER_DATA_PREFIX),
            ObjectKind::PortData => Some(PORT_DATA_PREFIX),
            _ => None,
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            ObjectKind::Node => "node",
            ObjectKind::Service(ServiceKind::PublishSubscribe) => "service",
            ObjectKind::Service(ServiceKind::Event) => "event service",
            ObjectKind::Service(ServiceKind::Blackboard) => "blackboard service",
            ObjectKind::Service(ServiceKind::RequestResponse) => "request/response service",
            ObjectKind::PublisherData => "publisher data",
            ObjectKind::PortData => "client/server data",
            ObjectKind::Segment => "segment",
        })
    }
}

/// One POSIX shared-memory object of a domain, as listed by
/// [`Domain::objects`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainObject {
    /// The domain it belongs to.
    pub domain: String,
    /// Its name inside the domain (what [`Segment::builder`] takes).
    pub name: String,
    /// Its kind, from the name.
    pub kind: ObjectKind,
    /// Its size in bytes (0 if it could not be read).
    pub bytes: u64,
}

impl DomainObject {
    /// The name in `/dev/shm` (`conduit.<domain>.<name>`).
    pub fn file_name(&self) -> String {
        format!("conduit.{}.{}", self.domain, self.name)
    }

    /// The object named `file_name` in `/dev/shm`, with its size.
    fn parse(file_name: &str) -> Option<DomainObject> {
        let mut object = DomainObject::classify(file_name)?;
        object.bytes = std::fs::metadata(format!("/dev/shm/{file_name}")).map_or(0, |m| m.len());
        Some(object)
    }

    /// Domain, name and kind from a `/dev/shm` name alone (no system
    /// call; `bytes` is 0).
    fn classify(file_name: &str) -> Option<DomainObject> {
        let rest = file_name.strip_prefix("conduit.")?;
        let (domain, name) = rest.split_once('.')?;
        let kind = if name.starts_with(NODE_PREFIX) {
            ObjectKind::Node
        } else if name.starts_with(PUBLISHER_DATA_PREFIX) {
            ObjectKind::PublisherData
        } else if name.starts_with(PORT_DATA_PREFIX) {
            ObjectKind::PortData
        } else if let Some(kind) = ServiceKind::ALL
            .into_iter()
            .find(|k| name.starts_with(k.prefix()))
        {
            ObjectKind::Service(kind)
        } else {
            ObjectKind::Segment
        };
        Some(DomainObject {
            domain: domain.to_owned(),
            name: name.to_owned(),
            kind,
            bytes: 0,
        })
    }
}

/// A domain: the namespace that keeps one system's (or one test's)
/// objects apart from every other's.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let domain = conduit::Domain::new("robot")?;
/// for object in domain.objects()? {
///     println!("{} ({}, {} bytes)", object.name, object.kind, object.bytes);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Domain {
    name: String,
    /// `conduit.<name>.`: the start of every object name in `/dev/shm`.
    prefix: String,
    /// `conduit.<name>.wake.`: the start of every wake-up socket name.
    wake_prefix: String,
}

impl Domain {
    /// The domain `name`: 1 to 64 bytes of `[A-Za-z0-9_-]`.
    pub fn new(name: &str) -> Result<Domain, NameError> {
        shm::validate_domain(name)?;
        Ok(Domain {
            name: name.to_owned(),
            prefix: format!("conduit.{name}."),
            wake_prefix: format!("conduit.{name}.{WAKE_PREFIX}"),
        })
    }

    /// The domain used when none is given: `$CONDUIT_DOMAIN`, else
    /// `default` ([`shm::try_default_domain`]); an error if
    /// `$CONDUIT_DOMAIN` is not valid UTF-8 or not a valid domain.
    pub fn from_env() -> Result<Domain, NameError> {
        Domain::new(&shm::try_default_domain()?)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This domain's objects in `/dev/shm`, sorted by name. Objects of
    /// other users are listed too (listing needs no permission).
    pub fn objects(&self) -> std::io::Result<Vec<DomainObject>> {
        Ok(sys::shm::list(&self.prefix)?
            .iter()
            .filter_map(|f| DomainObject::parse(f))
            .filter(|o| o.domain == self.name)
            .collect())
    }

    /// Every conduit object in `/dev/shm`, of every domain.
    pub fn all_objects() -> std::io::Result<Vec<DomainObject>> {
        Ok(sys::shm::list("conduit.")?
            .iter()
            .filter_map(|f| DomainObject::parse(f))
            .collect())
    }

    /// Removes `object`'s name from `/dev/shm` (processes that map it keep
    /// their mapping). This removes blindly, whoever uses the object: for
    /// the objects of dead processes only, use `Domain::cleanup`.
    pub fn remove_object(&self, object: &DomainObject) -> Result<(), shm::RemoveError> {
        Segment::remove(&object.domain, &object.name)
    }

    /// The POSIX name of this domain's message queue `name`:
    /// `/conduit.<domain>.<name>`, the name any POSIX client (`mq_open`)
    /// opens it by. Queues live in their own namespace, apart from
    /// `/dev/shm`; the name is checked when the queue is opened
    /// ([`mq::OpenError::InvalidName`](crate::mq::OpenError::InvalidName)).
    pub fn queue_name(&self, name: &str) -> String {
        format!("/{}{name}", self.prefix)
    }

    /// The names (inside the domain, without the `/conduit.<domain>.`
    /// of [`queue_name`](Self::queue_name)) of this domain's message
    /// queues, sorted; read from the `mqueue` filesystem
    /// ([`mq::list`](crate::mq::list)).
    pub fn queues(&self) -> Result<Vec<String>, crate::mq::ListError> {
        Ok(crate::mq::list(&self.prefix)?
            .into_iter()
            .map(|q| q[1 + self.prefix.len()..].to_owned())
            .collect())
    }

    /// The names (inside the domain) of this domain's objects that start
    /// with `prefix`, e.g. `svc.`.
    pub(crate) fn names_with_prefix(&self, prefix: &str) -> std::io::Result<Vec<String>> {
        let full = format!("{}{prefix}", self.prefix);
        Ok(sys::shm::list(&full)?
            .into_iter()
            .map(|f| f[self.prefix.len()..].to_owned())
            .collect())
    }

    /// The service segments of `kind`.
    pub(crate) fn service_segments(&self, kind: ServiceKind) -> std::io::Result<Vec<String>> {
        self.names_with_prefix(kind.prefix())
    }

    /// The node segments.
    pub(crate) fn node_segments(&self) -> std::io::Result<Vec<String>> {
        self.names_with_prefix(NODE_PREFIX)
    }

    /// The chunk-pool data segments of kind `pool` (a pool kind:
    /// [`ObjectKind::PublisherData`] or [`ObjectKind::PortData`]), with
    /// the owning port's id.
    pub(crate) fn pool_segments(&self, pool: ObjectKind) -> std::io::Result<Vec<(String, u64)>> {
        let prefix = pool.pool_prefix().expect("a pool kind");
        Ok(self
            .names_with_prefix(prefix)?
            .into_iter()
            .filter_map(|n| {
                let id = u64::from_str_radix(&n[prefix.len()..], 16).ok()?;
                Some((n, id))
            })
            .collect())
    }

    /// The name of port `id`'s chunk-pool data segment of kind `pool`.
    pub(crate) fn pool_segment(pool: ObjectKind, id: u64) -> String {
        format!("{}{id:016x}", pool.pool_prefix().expect("a pool kind"))
    }

    /// The segment name of node `id`.
    pub(crate) fn node_segment(id: u64) -> String {
        format!("{NODE_PREFIX}{id:016x}")
    }

    /// The node id in a node segment name.
    pub(crate) fn node_id_of(segment: &str) -> Option<u64> {
        u64::from_str_radix(segment.strip_prefix(NODE_PREFIX)?, 16).ok()
    }

    /// `conduit.<name>.wake.`: wake-up socket `id` is this and the id in
    /// 16 hex digits (`sync::fdwake`).
    pub(crate) fn wake_prefix(&self) -> &str {
        &self.wake_prefix
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_classified() {
        let kind = |f: &str| DomainObject::classify(f).map(|o| (o.domain, o.name, o.kind));
        assert_eq!(
            kind("conduit.d.node.00000000000000ff"),
            Some(("d".into(), "node.00000000000000ff".into(), ObjectKind::Node))
        );
        let svc = ServiceKind::PublishSubscribe.segment_name("robot/pose");
        assert!(svc.starts_with("svc.") && svc.len() == 4 + 16);
        assert_eq!(
            kind(&format!("conduit.d.{svc}")).map(|k| k.2),
            Some(ObjectKind::Service(ServiceKind::PublishSubscribe))
        );
        let evt = ServiceKind::Event.segment_name("robot/pose");
        assert_eq!(&evt[4..], &svc[4..], "same hash, other prefix");
        assert_eq!(
            kind(&format!("conduit.d.{evt}")).map(|k| k.2),
            Some(ObjectKind::Service(ServiceKind::Event))
        );
        assert_eq!(
            kind("conduit.d.pub.0000000000000001").map(|k| k.2),
            Some(ObjectKind::PublisherData)
        );
        assert_eq!(
            kind("conduit.d.mine").map(|k| k.2),
            Some(ObjectKind::Segment)
        );
        assert_eq!(kind("other.d.x"), None);
        assert_eq!(Domain::node_id_of(&Domain::node_segment(0xab)), Some(0xab));
        assert_eq!(
            Domain::pool_segment(ObjectKind::PublisherData, 1),
            "pub.0000000000000001"
        );
        assert_eq!(
            Domain::pool_segment(ObjectKind::PortData, 0xab),
            "rrp.00000000000000ab"
        );
    }

    #[test]
    fn invalid_domains_are_refused() {
        assert!(Domain::new("").is_err());
        assert!(Domain::new("a.b").is_err());
        assert!(Domain::new("a/b").is_err());
        let d = Domain::new("ok-1").unwrap();
        assert_eq!(d.wake_prefix(), "conduit.ok-1.wake.");
        assert_eq!(d.to_string(), "ok-1");
    }
}
