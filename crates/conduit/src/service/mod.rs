//! Services: named meeting points with a static configuration (payload
//! type, QoS) and a registry of ports, in one shared-memory segment.
//!
//! A service `robot/pose` lives in the segment
//! `/conduit.<domain>.svc.<16 hex digits>`, the hex being the FNV-1a hash
//! of the service name (names may contain `/`, segment names may not); the
//! original name is kept in the static configuration and compared on open.
//!
//! Every process that has the service open holds a shared `flock` on its
//! own descriptor of the segment. When the last [`PubSubService`] of a
//! process is dropped it tries to convert that into an exclusive lock; if
//! it succeeds nobody else uses the service and it removes it: it unlinks
//! the name and then sets the `removed` word, so that an opener that raced
//! with the removal sees it after taking its own lock and starts again (if
//! the unlink is refused, as for a group member that does not own the
//! segment, the service is left in place and unmarked). The kernel drops
//! the locks of dead processes, so a service whose users all died is
//! removed by the next [`Node::cleanup`](crate::node::Node::cleanup).
//!
//! The byte layout of the segment, with every shared word's transitions,
//! is in the module docs of the layout module (`layout.rs`) and next to its
//! structs.

mod event;
pub(crate) mod layout;

#[cfg(all(test, loom))]
mod loom_tests;

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::node::{self, Node, NodeId};
use crate::pubsub::{NoHeader, Payload};
use crate::shm::{self, Permissions, Segment, ShmSafe, TypeLayout};
use crate::sys::{self, fd::LockKind};

pub use layout::{MAX_CHUNKS, MAX_PORTS, Overflow, Qos};
use layout::{ServiceLayout, StaticConfig, TypeDesc};

/// Longest service name, in bytes.
pub const MAX_SERVICE_NAME_LEN: usize = 255;

pub(crate) const SERVICE_PREFIX: &str = "svc.";

/// Why a service could not be created or opened (the error of
/// [`PubSubBuilder::create`], [`PubSubBuilder::open`] and
/// [`PubSubBuilder::open_or_create`]).
#[derive(Debug, thiserror::Error)]
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
    /// The QoS asked for is not valid.
    #[error("invalid QoS: {0}")]
    InvalidQos(String),
    /// `create`: the service exists already.
    #[error("service {0:?} already exists")]
    AlreadyExists(String),
    /// `open`: no such service.
    #[error("service {0:?} does not exist")]
    NotFound(String),
    /// The service carries another payload or user-header type.
    #[error("service {name:?} carries {existing}; this opener asked for {requested}")]
    IncompatibleType {
        /// The service.
        name: String,
        /// The type recorded in the service.
        existing: String,
        /// The type of this opener.
        requested: String,
    },
    /// The service's QoS does not satisfy what this opener asked for.
    #[error("service {name:?} has QoS {existing}; this opener requires {requested}")]
    IncompatibleQos {
        /// The service.
        name: String,
        /// The service's QoS.
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
    /// another group or mode than this node's [`Permissions`]; `source`
    /// says which.
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

/// The segment name (inside the domain) of service `name`.
pub fn segment_name(name: &str) -> String {
    let h = shm::fingerprint::bytes(shm::fingerprint::start(), name.as_bytes());
    format!("{SERVICE_PREFIX}{h:016x}")
}

/// Starts configuring a service; made by [`Node::service`].
#[derive(Debug)]
pub struct ServiceBuilder {
    node: Node,
    name: String,
}

impl ServiceBuilder {
    pub(crate) fn new(node: Node, name: &str) -> Self {
        ServiceBuilder {
            node,
            name: name.to_owned(),
        }
    }

    /// A publish/subscribe service whose payload is `P`: a `T: ShmSafe`
    /// or a slice `[T]`.
    pub fn publish_subscribe<P: Payload + ?Sized>(self) -> PubSubBuilder<P, NoHeader> {
        PubSubBuilder {
            node: self.node,
            name: self.name,
            qos: Qos::default(),
            requested: Default::default(),
            _types: PhantomData,
        }
    }
}

/// Configures a publish/subscribe service; made by
/// [`ServiceBuilder::publish_subscribe`].
pub struct PubSubBuilder<P: Payload + ?Sized, H: ShmSafe = NoHeader> {
    node: Node,
    name: String,
    qos: Qos,
    requested: layout::QosRequested,
    _types: crate::pubsub::Types<P, H>,
}

macro_rules! qos_setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.qos.$name = value;
            self.requested.$name = true;
            self
        }
    };
}

impl<P: Payload + ?Sized, H: ShmSafe> PubSubBuilder<P, H> {
    /// Adds a user header of type `H2` to every sample.
    pub fn user_header<H2: ShmSafe>(self) -> PubSubBuilder<P, H2> {
        PubSubBuilder {
            node: self.node,
            name: self.name,
            qos: self.qos,
            requested: self.requested,
            _types: PhantomData,
        }
    }

    qos_setter!(
        /// Most publishers at once (1..=64; default 2). When opening: at least this many.
        max_publishers: usize
    );
    qos_setter!(
        /// Most subscribers at once (1..=64; default 8). When opening: at least this many.
        max_subscribers: usize
    );
    qos_setter!(
        /// Samples a subscriber's queue holds per publisher (default 4).
        subscriber_buffer: usize
    );
    qos_setter!(
        /// Samples a publisher keeps for late joiners (≤ buffer; default 0).
        history: usize
    );
    qos_setter!(
        /// Samples a publisher may have loaned at once (default 2).
        max_loans: usize
    );
    qos_setter!(
        /// Samples a subscriber may hold at once (default 2).
        max_borrowed: usize
    );
    qos_setter!(
        /// What `send` does when a subscriber's queue is full (default
        /// [`Overflow::DropOldest`]). When opening: must be equal.
        overflow: Overflow
    );

    fn config(&self) -> StaticConfig {
        StaticConfig {
            name: self.name.clone(),
            slice: P::IS_SLICE,
            payload: TypeDesc::of(&<P::Element as ShmSafe>::LAYOUT),
            header: TypeDesc::of(&H::LAYOUT),
            qos: self.qos,
        }
    }

    /// Creates the service; [`ServiceError::AlreadyExists`] if it exists.
    pub fn create(self) -> Result<PubSubService<P, H>, ServiceError> {
        self.build(Mode::Create)
    }

    /// Opens the existing service, checking type and QoS.
    pub fn open(self) -> Result<PubSubService<P, H>, ServiceError> {
        self.build(Mode::Open)
    }

    /// Opens the service, creating it if it does not exist. Race-free
    /// between processes.
    pub fn open_or_create(self) -> Result<PubSubService<P, H>, ServiceError> {
        self.build(Mode::OpenOrCreate)
    }

    fn build(self, mode: Mode) -> Result<PubSubService<P, H>, ServiceError> {
        validate_service_name(&self.name)?;
        let config = self.config();
        config.qos.validate().map_err(ServiceError::InvalidQos)?;
        let inner = open_service(&self.node, &config, &self.requested, mode)?;
        Ok(PubSubService {
            inner: Arc::new(inner),
            _types: PhantomData,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    Open,
    OpenOrCreate,
}

/// An open publish/subscribe service: the factory of publishers and
/// subscribers.
pub struct PubSubService<P: Payload + ?Sized, H: ShmSafe = NoHeader> {
    pub(crate) inner: Arc<ServiceInner>,
    _types: crate::pubsub::Types<P, H>,
}

impl<P: Payload + ?Sized, H: ShmSafe> std::fmt::Debug for PubSubService<P, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubService")
            .field("name", &self.inner.config.name)
            .finish()
    }
}

impl<P: Payload + ?Sized, H: ShmSafe> PubSubService<P, H> {
    /// The service name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The QoS in force.
    pub fn qos(&self) -> Qos {
        self.inner.config.qos
    }

    /// Starts configuring a publisher.
    pub fn publisher(&self) -> crate::pubsub::PublisherBuilder<P, H> {
        crate::pubsub::PublisherBuilder::new(self.inner.clone())
    }

    /// Starts configuring a subscriber.
    pub fn subscriber(&self) -> crate::pubsub::SubscriberBuilder<P, H> {
        crate::pubsub::SubscriberBuilder::new(self.inner.clone())
    }

    /// Frees the ports of dead nodes in this service now (also done
    /// automatically when the service is opened and when a publisher runs
    /// out of chunks).
    pub fn cleanup_dead_ports(&self) {
        self.inner.cleanup_dead_ports();
    }
}

/// The shared part of an open service.
#[derive(Debug)]
pub(crate) struct ServiceInner {
    pub(crate) node: Node,
    pub(crate) domain: String,
    pub(crate) config: StaticConfig,
    pub(crate) layout: ServiceLayout,
    pub(crate) segment: Segment,
}

impl ServiceInner {
    pub(crate) fn shm(&self) -> layout::ServiceView<'_> {
        layout::ServiceView::new(&self.segment, &self.layout)
            .expect("the layout was validated against this segment on open")
    }

    /// The view with its lifetime erased, for ports that cache references
    /// into the service segment next to the `Arc` that keeps it mapped.
    ///
    /// # Safety
    ///
    /// The caller must keep a clone of the `Arc<ServiceInner>` this was
    /// made from alive for as long as it uses the view or anything
    /// obtained from it.
    pub(crate) unsafe fn view_static(self: &Arc<Self>) -> layout::ServiceView<'static> {
        let view = self.shm();
        // SAFETY: the view refers to the segment mapping and layout owned by
        // the `ServiceInner` inside the Arc (a stable heap address); the
        // caller keeps that Arc alive while it uses the view.
        unsafe {
            std::mem::transmute::<layout::ServiceView<'_>, layout::ServiceView<'static>>(view)
        }
    }

    pub(crate) fn cleanup_dead_ports(&self) {
        cleanup_ports(
            &self.domain,
            self.shm(),
            Some(self.node.id()),
            self.node.permissions(),
        );
    }
}

impl Drop for ServiceInner {
    fn drop(&mut self) {
        try_remove(&self.domain, &self.segment, &self.layout);
    }
}

/// Removes the service if nobody else has it open (we hold our shared
/// lock on `segment`).
///
/// The name goes first: in a group-shared service another member's
/// segment cannot be unlinked by us (`/dev/shm` is sticky), and then it
/// must not be marked removed either, or every later opener would find a
/// removed service under a name that stays. Openers check `removed` only
/// after taking their shared lock, which waits for our exclusive one, so
/// setting it after the unlink is as good as before.
fn try_remove(domain: &str, segment: &Segment, layout: &ServiceLayout) {
    if let Ok(true) = sys::fd::flock(segment.fd(), LockKind::Exclusive, false) {
        if let Err(sys::Errno::PERM | sys::Errno::ACCESS) = segment.unlink() {
            // Not ours to remove: leave it usable for its owner's cleanup.
            let _ = sys::fd::flock(segment.fd(), LockKind::Shared, false);
            return;
        }
        if let Some(view) = layout::ServiceView::new(segment, layout) {
            view.header().removed.store(1, Ordering::Release);
            for slot in view.pub_slots() {
                let id = slot.id.load(Ordering::Acquire);
                if id != 0 {
                    let _ = Segment::remove(domain, &crate::pubsub::data_segment_name(id));
                }
            }
        }
    }
}

fn open_service(
    node: &Node,
    config: &StaticConfig,
    requested: &layout::QosRequested,
    mode: Mode,
) -> Result<ServiceInner, ServiceError> {
    let domain = node.domain().to_owned();
    let seg_name = segment_name(&config.name);
    let name = config.name.clone();
    for _ in 0..100 {
        let layout = ServiceLayout::new(&config.qos);
        let builder = Segment::builder(&seg_name)
            .domain(&domain)
            .permissions(node.permissions())
            .fingerprint(layout::SERVICE_FINGERPRINT);
        let segment = match mode {
            Mode::Create => {
                let cfg = config.clone();
                builder
                    .size(layout.size)
                    .init(move |region| layout::init_service(region, &cfg, &layout))
                    .create()
                    .map_err(|source| match source {
                        shm::CreateError::AlreadyExists { .. } => {
                            ServiceError::AlreadyExists(name.clone())
                        }
                        source => ServiceError::Create {
                            name: name.clone(),
                            source,
                        },
                    })?
            }
            Mode::Open => builder.open().map_err(|source| match source {
                shm::OpenError::NotFound { .. } => ServiceError::NotFound(name.clone()),
                source => open_error(&name, source),
            })?,
            Mode::OpenOrCreate => {
                let cfg = config.clone();
                builder
                    .size(layout.size)
                    .init(move |region| layout::init_service(region, &cfg, &layout))
                    .open_or_create()
                    .map_err(|source| match source {
                        shm::OpenOrCreateError::Create(source) => ServiceError::Create {
                            name: name.clone(),
                            source,
                        },
                        shm::OpenOrCreateError::Open(source) => open_error(&name, source),
                        other => ServiceError::Corrupted {
                            name: name.clone(),
                            reason: other.to_string(),
                        },
                    })?
                    .0
            }
        };
        sys::fd::flock(segment.fd(), LockKind::Shared, true).map_err(|source| {
            ServiceError::Lock {
                name: name.clone(),
                source,
            }
        })?;
        let existing = StaticConfig::read(&segment).map_err(|reason| ServiceError::Corrupted {
            name: name.clone(),
            reason,
        })?;
        let layout = ServiceLayout::new(&existing.qos);
        let view =
            layout::ServiceView::new(&segment, &layout).ok_or_else(|| ServiceError::Corrupted {
                name: name.clone(),
                reason: format!(
                    "segment of {} bytes is smaller than its layout ({} bytes)",
                    segment.data().len(),
                    layout.size
                ),
            })?;
        if view.header().removed.load(Ordering::Acquire) != 0 {
            // Removed by its last user while we opened it: start again.
            drop(segment);
            if mode == Mode::Open {
                return Err(ServiceError::NotFound(name));
            }
            continue;
        }
        existing.check_compatible(config, requested)?;
        let inner = ServiceInner {
            node: node.clone(),
            domain: domain.clone(),
            config: existing,
            layout,
            segment,
        };
        inner.cleanup_dead_ports();
        return Ok(inner);
    }
    Err(ServiceError::Corrupted {
        name,
        reason: "removed and recreated by others 100 times in a row".into(),
    })
}

/// `ServiceError::PermissionDenied` for the open errors that are about
/// who may open the segment, `ServiceError::Open` for the others.
fn open_error(name: &str, source: shm::OpenError) -> ServiceError {
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

/// Frees the slots of dead nodes' ports and removes dead publishers' data
/// segments. `alive` is a node known to be alive (ours); `permissions`
/// are those of the asking node.
pub(crate) fn cleanup_ports(
    domain: &str,
    view: layout::ServiceView<'_>,
    alive: Option<NodeId>,
    permissions: Permissions,
) {
    let mut known: std::collections::HashMap<u64, bool> = Default::default();
    if let Some(id) = alive {
        known.insert(id.0, true);
    }
    let mut is_alive = |node_id: u64| {
        *known
            .entry(node_id)
            .or_insert_with(|| node::is_alive(domain, NodeId(node_id), permissions))
    };
    let header = view.header();
    for slot in view.pub_slots() {
        let remove_data = |id| {
            let _ = Segment::remove(domain, &crate::pubsub::data_segment_name(id));
        };
        if slot.reclaim_if_dead(&mut is_alive, remove_data) {
            header.pub_generation.fetch_add(1, Ordering::AcqRel);
            slot.event.wake_all();
        }
    }
    for slot in view.sub_slots() {
        if slot.reclaim_if_dead(&mut is_alive, |_| {}) {
            header.sub_generation.fetch_add(1, Ordering::AcqRel);
            // Wake publishers blocked on this subscriber's full queue.
            for p in view.pub_slots() {
                p.event.wake_all();
            }
        }
    }
}

/// Opens the segment listed in /dev/shm as `object` (`conduit.<domain>.…`)
/// for inspection or cleanup, with a short open timeout; a segment whose
/// creator died before it became ready is removed on the way. `None` for
/// anything that cannot be opened (gone, in creation, not ours).
pub(crate) fn open_listed(domain: &str, object: &str, permissions: Permissions) -> Option<Segment> {
    let seg = object.strip_prefix(&format!("conduit.{domain}."))?;
    match Segment::builder(seg)
        .domain(domain)
        .permissions(permissions)
        .open_timeout(std::time::Duration::from_millis(200))
        .open()
    {
        Ok(s) => Some(s),
        Err(shm::OpenError::Abandoned { .. }) => {
            let _ = Segment::builder(seg).domain(domain).remove_abandoned();
            None
        }
        Err(_) => None,
    }
}

/// Removes the segment listed as `object` if its creator died before it
/// became ready. A live creator is also unready and unlocked for the
/// microseconds between creating the object and locking it, so a first
/// look that says "abandoned" is confirmed over the grace period
/// ([`open_listed`]) before anything is removed.
pub(crate) fn remove_if_abandoned(domain: &str, object: &str, permissions: Permissions) {
    let Some(seg) = object.strip_prefix(&format!("conduit.{domain}.")) else {
        return;
    };
    if matches!(
        Segment::builder(seg)
            .domain(domain)
            .permissions(permissions)
            .open_timeout(std::time::Duration::ZERO)
            .open(),
        Err(shm::OpenError::Abandoned { .. })
    ) {
        let _ = open_listed(domain, object, permissions);
    }
}

/// Cleans every service of `domain`: dead ports, and services nobody has
/// open.
pub(crate) fn cleanup_domain(domain: &str, permissions: Permissions) {
    crate::event::cleanup_domain(domain, permissions);
    let prefix = format!("conduit.{domain}.{SERVICE_PREFIX}");
    let Ok(names) = sys::shm::list(&prefix) else {
        return;
    };
    // Publisher data segments named in some service slot.
    let mut referenced = std::collections::HashSet::new();
    for object in names {
        let Some(segment) = open_listed(domain, &object, permissions) else {
            continue;
        };
        let Ok(config) = StaticConfig::read(&segment) else {
            continue;
        };
        let layout = ServiceLayout::new(&config.qos);
        let Some(view) = layout::ServiceView::new(&segment, &layout) else {
            continue;
        };
        cleanup_ports(domain, view, None, permissions);
        for slot in view.pub_slots() {
            referenced.insert(slot.id.load(Ordering::Acquire));
        }
        try_remove(domain, &segment, &layout);
    }
    // Data segments of publishers that died before claiming a slot (or
    // whose service is gone): named nowhere, and their node is dead.
    let data_prefix = format!("conduit.{domain}.pub.");
    let Ok(names) = sys::shm::list(&data_prefix) else {
        return;
    };
    for object in names {
        let Some(id) = object
            .strip_prefix(&data_prefix)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        else {
            continue;
        };
        if referenced.contains(&id) {
            continue;
        }
        let name = crate::pubsub::data_segment_name(id);
        // Died while creating it: not ready and unlocked.
        remove_if_abandoned(domain, &object, permissions);
        let dead = match crate::pubsub::data_segment_node(domain, &name, permissions) {
            Some(node_id) => !node::is_alive(domain, NodeId(node_id), permissions),
            None => false,
        };
        if dead {
            let _ = Segment::remove(domain, &name);
        }
    }
}

/// A service as seen by [`list`].
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// The service name.
    pub name: String,
    /// The segment holding it (inside the domain).
    pub segment: String,
    /// "typed" or "slice".
    pub kind: &'static str,
    /// The payload (element) type: name, size, alignment, fingerprint.
    pub payload: TypeLayoutInfo,
    /// The user header type.
    pub header: TypeLayoutInfo,
    /// Its QoS.
    pub qos: Qos,
    /// Publishers registered now.
    pub publishers: usize,
    /// Subscribers registered now.
    pub subscribers: usize,
    /// Bytes of the service segment.
    pub segment_bytes: usize,
}

/// A type's layout as recorded in a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeLayoutInfo {
    /// Its name.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Its alignment.
    pub align: u64,
    /// Its layout fingerprint.
    pub fingerprint: u64,
}

/// Lists the publish/subscribe services of `domain`, with their details.
pub fn list(domain: &str) -> std::io::Result<Vec<ServiceInfo>> {
    let prefix = format!("conduit.{domain}.{SERVICE_PREFIX}");
    let mut out = Vec::new();
    for object in sys::shm::list(&prefix)? {
        let seg = &object[format!("conduit.{domain}.").len()..];
        let Ok(segment) = Segment::builder(seg)
            .domain(domain)
            .open_timeout(std::time::Duration::from_millis(100))
            .read_only()
            .any_permissions()
            .open()
        else {
            continue;
        };
        let Ok(config) = StaticConfig::read(&segment) else {
            continue;
        };
        let layout = ServiceLayout::new(&config.qos);
        let Some(view) = layout::ServiceView::new(&segment, &layout) else {
            continue;
        };
        let count = |slots: &[layout::PortSlot]| {
            slots
                .iter()
                .filter(|s| s.id.load(Ordering::Relaxed) != 0)
                .count()
        };
        out.push(ServiceInfo {
            name: config.name.clone(),
            segment: seg.to_owned(),
            kind: if config.slice { "slice" } else { "typed" },
            payload: config.payload.info(),
            header: config.header.info(),
            qos: config.qos,
            publishers: count(view.pub_slots()),
            subscribers: count(view.sub_slots()),
            segment_bytes: segment.len(),
        });
    }
    Ok(out)
}

/// A publisher or subscriber port registered in a service, as seen by
/// [`details`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    /// The port's id (a publisher's id also names its data segment).
    pub id: u64,
    /// The node that registered it.
    pub node: NodeId,
}

/// One publisher → subscriber connection, as seen by [`details`].
///
/// Read from the shared queues without taking part in the protocol: the
/// figures are a snapshot that may be slightly stale, never a reason for
/// an error. Counters restart when the publisher (re)connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Publisher port id.
    pub publisher: u64,
    /// Subscriber port id.
    pub subscriber: u64,
    /// Samples the publisher has pushed into this queue since it connected
    /// (the sequence number of its newest entry; wraps at 2^32).
    pub sent: u64,
    /// Samples the subscriber has returned to the publisher since the
    /// connection was made (returns are written lazily, when the
    /// subscriber next finds its queue empty, so this lags).
    pub released: u64,
    /// Samples in the queue that the subscriber has not claimed yet
    /// (`tail - head`).
    pub queued: usize,
    /// Capacity of the queue (`subscriber_buffer`).
    pub capacity: usize,
}

/// A service's registered ports and connection queues, for tools (`conduit
/// info`, `conduit top`).
///
/// What it cannot show: samples dropped by `Overflow::DropOldest` are
/// counted by each publisher in its own process ([`Publisher::dropped`]),
/// not in shared memory; a tool estimates drops as `sent - released -
/// queued - borrowed` only approximately.
///
/// [`Publisher::dropped`]: crate::pubsub::Publisher::dropped
#[derive(Debug, Clone)]
pub struct ServiceDetails {
    /// What [`list`] shows.
    pub info: ServiceInfo,
    /// Publisher ports.
    pub publishers: Vec<PortInfo>,
    /// Subscriber ports.
    pub subscribers: Vec<PortInfo>,
    /// Live connections.
    pub connections: Vec<ConnectionInfo>,
}

/// The ports and queue fill levels of service `name` in `domain`, mapped
/// read-only; `Ok(None)` if there is no such service.
pub fn details(domain: &str, name: &str) -> Result<Option<ServiceDetails>, ServiceError> {
    validate_service_name(name)?;
    let seg = segment_name(name);
    let segment = match Segment::builder(&seg)
        .domain(domain)
        .open_timeout(std::time::Duration::from_millis(100))
        .read_only()
        .any_permissions()
        .open()
    {
        Ok(s) => s,
        Err(shm::OpenError::NotFound { .. }) => return Ok(None),
        Err(source) => {
            return Err(ServiceError::Open {
                name: name.to_owned(),
                source,
            });
        }
    };
    let corrupted = |reason: String| ServiceError::Corrupted {
        name: name.to_owned(),
        reason,
    };
    let config = StaticConfig::read(&segment).map_err(corrupted)?;
    if config.name != name {
        return Err(ServiceError::NameCollision {
            name: name.to_owned(),
            existing: config.name,
        });
    }
    let layout = ServiceLayout::new(&config.qos);
    let view = layout::ServiceView::new(&segment, &layout)
        .ok_or_else(|| corrupted("segment smaller than its layout".into()))?;
    let ports = |slots: &[layout::PortSlot]| -> Vec<(usize, PortInfo)> {
        slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let id = s.id.load(Ordering::Acquire);
                (id != 0).then(|| {
                    (
                        i,
                        PortInfo {
                            id,
                            node: NodeId(s.node_id.load(Ordering::Relaxed)),
                        },
                    )
                })
            })
            .collect()
    };
    let pubs = ports(view.pub_slots());
    let subs = ports(view.sub_slots());
    let mut connections = Vec::new();
    for (p, publisher) in &pubs {
        for (s, subscriber) in &subs {
            let conn = view.conn(*p, *s);
            if conn.link.link.load(Ordering::Acquire) != subscriber.id
                || conn.link.pub_id.load(Ordering::Acquire) != publisher.id
            {
                continue;
            }
            // Entries of the current generation carry `position + 1`;
            // the newest is the publisher's tail, `head` counts the
            // positions consumed (claimed or dropped as oldest).
            let generation = conn.link.generation.load(Ordering::Acquire);
            let mut sent = 0u32;
            for e in conn.entries {
                let w = e.word.load(Ordering::Acquire);
                if w != 0 && crate::pubsub::entry_gen(w) == generation & crate::pubsub::GEN_MASK {
                    sent = sent.max(crate::pubsub::entry_seq(w));
                }
            }
            let head = conn.head.load(Ordering::Acquire) as u32;
            let capacity = config.qos.subscriber_buffer;
            let queued = (sent.wrapping_sub(head) as usize).min(capacity);
            connections.push(ConnectionInfo {
                publisher: publisher.id,
                subscriber: subscriber.id,
                sent: u64::from(sent),
                released: conn.ret_tail.load(Ordering::Acquire),
                queued,
                capacity,
            });
        }
    }
    let info = ServiceInfo {
        name: config.name.clone(),
        segment: seg,
        kind: if config.slice { "slice" } else { "typed" },
        payload: config.payload.info(),
        header: config.header.info(),
        qos: config.qos,
        publishers: pubs.len(),
        subscribers: subs.len(),
        segment_bytes: segment.len(),
    };
    Ok(Some(ServiceDetails {
        info,
        publishers: pubs.into_iter().map(|(_, p)| p).collect(),
        subscribers: subs.into_iter().map(|(_, p)| p).collect(),
        connections,
    }))
}

impl TypeDesc {
    pub(crate) fn of(layout: &TypeLayout) -> TypeDesc {
        TypeDesc {
            name: layout.name.to_owned(),
            size: layout.size as u64,
            align: layout.align as u64,
            fingerprint: layout.fingerprint,
        }
    }

    fn info(&self) -> TypeLayoutInfo {
        TypeLayoutInfo {
            name: self.name.clone(),
            size: self.size,
            align: self.align,
            fingerprint: self.fingerprint,
        }
    }
}
