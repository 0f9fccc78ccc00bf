//! Events: [`Notifier::notify`]`(id)` wakes every [`Listener`] of a
//! service, and a listener learns **every** id notified since it last
//! looked, however many notifications arrived meanwhile.
//!
//! ```no_run
//! # use conduit::prelude::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::builder().create()?;
//! let events = node.service("door").event()
//!     .max_event_id(63).notifier_dead_event(63)   // optional
//!     .open_or_create()?;
//! let listener = events.listener().create()?;
//! let notifier = events.notifier().create()?;
//! notifier.notify(7)?;
//! let ids = listener.wait();                      // or try_wait / wait_timeout
//! assert!(ids.contains(7));
//! # Ok(()) }
//! ```
//!
//! Each listener has, in the service segment, a bitset of pending ids
//! (notifiers `fetch_or`, the listener `swap`s to 0), an [`EventWord`](crate::sync::EventWord) it
//! sleeps on (bounded spin, then futex) and an `fd_armed` word for its
//! optional wake-up descriptor ([`Listener::wake_fd`], used by the WaitSet
//! and async runtimes). A notifier makes no system call when no listener
//! sleeps. Layout and protocol: `ARCHITECTURE.md`.

mod fdwake;
pub(crate) mod layout;
#[cfg(all(test, loom))]
mod loom_tests;

use std::cell::RefCell;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::node::{self, Node, NodeId};
use crate::shm::{self, Segment};
use crate::sync::{Spin, slot};
use crate::sys::{self, Errno, fd::LockKind};

pub(crate) use fdwake::{FdWake, wake as fd_wake};
use layout::{EventConfig, EventLayout, EventView};
pub use layout::{MAX_EVENT_ID_LIMIT, MAX_PORTS_LIMIT};

/// Default spin budget of a blocking wait before it sleeps.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

pub(crate) const EVENT_PREFIX: &str = "evt.";

/// An event id: `0..=max_event_id` of the service.
pub type EventId = usize;

/// Why an event service could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum EventServiceError {
    /// Invalid service name.
    #[error(transparent)]
    InvalidName(crate::service::ServiceError),
    /// The configuration asked for is not valid.
    #[error("invalid event service configuration: {0}")]
    InvalidConfig(String),
    /// `create`: the service exists already.
    #[error("event service {0:?} already exists")]
    AlreadyExists(String),
    /// `open`: no such service.
    #[error("event service {0:?} does not exist")]
    NotFound(String),
    /// The existing service does not satisfy what this opener asked for.
    #[error("event service {name:?} is incompatible: {reason}")]
    Incompatible {
        /// The service.
        name: String,
        /// What differs.
        reason: String,
    },
    /// The segment's contents are invalid (or another name hashes to it).
    #[error("event service {name:?} is corrupted: {reason}")]
    Corrupted {
        /// The service.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The service's segment belongs to another user, or is shared with
    /// another group or mode than this node's permissions.
    #[error(
        "permission denied for event service {name:?}: its segment belongs to another user or group (to share a service, create every node with NodeBuilder::permissions(Permissions::group(gid)))"
    )]
    PermissionDenied {
        /// The service.
        name: String,
        /// The segment error: `PermissionDenied`, `OwnerMismatch`,
        /// `GroupMismatch` or `ModeMismatch`.
        #[source]
        source: shm::OpenError,
    },
    /// Creating or opening the segment failed.
    #[error("cannot create or open the segment of event service {name:?}: {reason}")]
    Segment {
        /// The service.
        name: String,
        /// The segment error.
        reason: String,
    },
    /// Taking the usage lock failed.
    #[error("cannot lock the segment of event service {name:?}")]
    Lock {
        /// The service.
        name: String,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

/// Why a notifier or listener could not be created.
#[derive(Debug, thiserror::Error)]
pub enum PortCreateError {
    /// Every slot of that kind is taken by live nodes.
    #[error("event service {service:?} already has its maximum of {max} {kind}")]
    ExceedsMaxPorts {
        /// The service.
        service: String,
        /// "notifiers" or "listeners".
        kind: &'static str,
        /// The limit.
        max: usize,
    },
}

/// Why a notification failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The id is larger than the service's `max_event_id`.
    #[error("event id {id} exceeds the service's max_event_id {max}")]
    InvalidId {
        /// The id.
        id: EventId,
        /// The service's limit.
        max: EventId,
    },
}

/// Configures an event service; made by
/// [`ServiceBuilder::event`](crate::service::ServiceBuilder::event).
#[derive(Debug)]
pub struct EventBuilder {
    node: Node,
    config: EventConfig,
    requested: [bool; 6],
}

impl EventBuilder {
    pub(crate) fn new(node: Node, name: &str) -> Self {
        EventBuilder {
            node,
            config: EventConfig {
                name: name.to_owned(),
                max_event_id: 255,
                max_notifiers: 16,
                max_listeners: 16,
                created_event: None,
                dropped_event: None,
                dead_event: None,
            },
            requested: [false; 6],
        }
    }

    /// Largest event id (0..=4095; default 255). When opening: at least this.
    pub fn max_event_id(mut self, id: EventId) -> Self {
        self.config.max_event_id = id;
        self.requested[0] = true;
        self
    }

    /// Most notifiers at once (1..=256; default 16). When opening: at least this.
    pub fn max_notifiers(mut self, n: usize) -> Self {
        self.config.max_notifiers = n;
        self.requested[1] = true;
        self
    }

    /// Most listeners at once (1..=256; default 16). When opening: at least this.
    pub fn max_listeners(mut self, n: usize) -> Self {
        self.config.max_listeners = n;
        self.requested[2] = true;
        self
    }

    /// Event notified (by the new notifier) when a notifier is created.
    /// When opening: must be equal.
    pub fn notifier_created_event(mut self, id: EventId) -> Self {
        self.config.created_event = Some(id);
        self.requested[3] = true;
        self
    }

    /// Event notified when a notifier is dropped. When opening: must be equal.
    pub fn notifier_dropped_event(mut self, id: EventId) -> Self {
        self.config.dropped_event = Some(id);
        self.requested[4] = true;
        self
    }

    /// Event notified when a dead notifier is cleaned up (its process died;
    /// found when the service is opened, by [`Node::cleanup`], or by
    /// [`EventService::cleanup_dead_ports`]). When opening: must be equal.
    pub fn notifier_dead_event(mut self, id: EventId) -> Self {
        self.config.dead_event = Some(id);
        self.requested[5] = true;
        self
    }

    /// Creates the service; [`EventServiceError::AlreadyExists`] if it exists.
    pub fn create(self) -> Result<EventService, EventServiceError> {
        self.build(Mode::Create)
    }

    /// Opens the existing service, checking its configuration.
    pub fn open(self) -> Result<EventService, EventServiceError> {
        self.build(Mode::Open)
    }

    /// Opens the service, creating it if it does not exist.
    pub fn open_or_create(self) -> Result<EventService, EventServiceError> {
        self.build(Mode::OpenOrCreate)
    }

    fn check(&self, existing: &EventConfig) -> Result<(), EventServiceError> {
        let c = &self.config;
        let r = &self.requested;
        let mut bad = Vec::new();
        if existing.name != c.name {
            return Err(EventServiceError::Corrupted {
                name: c.name.clone(),
                reason: format!("the segment holds service {:?}", existing.name),
            });
        }
        if r[0] && existing.max_event_id < c.max_event_id {
            bad.push(format!(
                "max_event_id {} < {}",
                existing.max_event_id, c.max_event_id
            ));
        }
        if r[1] && existing.max_notifiers < c.max_notifiers {
            bad.push(format!(
                "max_notifiers {} < {}",
                existing.max_notifiers, c.max_notifiers
            ));
        }
        if r[2] && existing.max_listeners < c.max_listeners {
            bad.push(format!(
                "max_listeners {} < {}",
                existing.max_listeners, c.max_listeners
            ));
        }
        for (i, what, e, want) in [
            (3, "created", existing.created_event, c.created_event),
            (4, "dropped", existing.dropped_event, c.dropped_event),
            (5, "dead", existing.dead_event, c.dead_event),
        ] {
            if r[i] && e != want {
                bad.push(format!("notifier_{what}_event {e:?} != {want:?}"));
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(EventServiceError::Incompatible {
                name: c.name.clone(),
                reason: bad.join(", "),
            })
        }
    }

    fn build(self, mode: Mode) -> Result<EventService, EventServiceError> {
        crate::service::validate_service_name(&self.config.name)
            .map_err(EventServiceError::InvalidName)?;
        self.config
            .validate()
            .map_err(EventServiceError::InvalidConfig)?;
        let inner = open_event_service(&self, mode)?;
        Ok(EventService {
            inner: Arc::new(inner),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    Open,
    OpenOrCreate,
}

/// The segment name (inside the domain) of event service `name`.
pub fn segment_name(name: &str) -> String {
    let h = shm::fingerprint::bytes(shm::fingerprint::start(), name.as_bytes());
    format!("{EVENT_PREFIX}{h:016x}")
}

fn open_event_service(b: &EventBuilder, mode: Mode) -> Result<EventInner, EventServiceError> {
    let domain = b.node.domain().to_owned();
    let name = b.config.name.clone();
    let seg_name = segment_name(&name);
    let seg_err = |reason: String| EventServiceError::Segment {
        name: name.clone(),
        reason,
    };
    for _ in 0..100 {
        let layout = EventLayout::new(&b.config);
        let builder = Segment::builder(&seg_name)
            .domain(&domain)
            .permissions(b.node.permissions())
            .fingerprint(layout::EVENT_FINGERPRINT);
        let cfg = b.config.clone();
        let init = move |region: &shm::Region| {
            if region.len() < layout.size {
                return Err("segment smaller than the layout".to_owned());
            }
            cfg.write(layout::config_words(region).ok_or("segment too small")?);
            Ok(())
        };
        let size = EventLayout::new(&b.config).size;
        let segment = match mode {
            Mode::Create => builder
                .size(size)
                .init(init)
                .create()
                .map_err(|e| match e {
                    shm::CreateError::AlreadyExists { .. } => {
                        EventServiceError::AlreadyExists(name.clone())
                    }
                    e => seg_err(e.to_string()),
                })?,
            Mode::Open => builder.open().map_err(|e| match e {
                shm::OpenError::NotFound { .. } => EventServiceError::NotFound(name.clone()),
                e if is_permission(&e) => EventServiceError::PermissionDenied {
                    name: name.clone(),
                    source: e,
                },
                e => seg_err(e.to_string()),
            })?,
            Mode::OpenOrCreate => {
                builder
                    .size(size)
                    .init(init)
                    .open_or_create()
                    .map_err(|e| match e {
                        shm::OpenOrCreateError::Open(e) if is_permission(&e) => {
                            EventServiceError::PermissionDenied {
                                name: name.clone(),
                                source: e,
                            }
                        }
                        e => seg_err(e.to_string()),
                    })?
                    .0
            }
        };
        sys::fd::flock(segment.fd(), LockKind::Shared, true).map_err(|source| {
            EventServiceError::Lock {
                name: name.clone(),
                source,
            }
        })?;
        let existing =
            EventConfig::read(&segment).map_err(|reason| EventServiceError::Corrupted {
                name: name.clone(),
                reason,
            })?;
        let layout = EventLayout::new(&existing);
        let Some(view) = EventView::new(&segment, &layout) else {
            return Err(EventServiceError::Corrupted {
                name,
                reason: "segment smaller than its layout".into(),
            });
        };
        if view.header().removed.load(Ordering::Acquire) != 0 {
            drop(segment);
            if mode == Mode::Open {
                return Err(EventServiceError::NotFound(name));
            }
            continue;
        }
        b.check(&existing)?;
        let inner = EventInner {
            node: b.node.clone(),
            domain: domain.clone(),
            config: existing,
            layout,
            segment,
        };
        inner.cleanup_dead_ports();
        return Ok(inner);
    }
    Err(EventServiceError::Corrupted {
        name,
        reason: "removed and recreated by others 100 times in a row".into(),
    })
}

/// Whether an open error is about who may open the segment.
fn is_permission(e: &shm::OpenError) -> bool {
    matches!(
        e,
        shm::OpenError::PermissionDenied { .. }
            | shm::OpenError::OwnerMismatch { .. }
            | shm::OpenError::GroupMismatch { .. }
            | shm::OpenError::ModeMismatch { .. }
    )
}

/// An open event service: the factory of notifiers and listeners.
#[derive(Debug, Clone)]
pub struct EventService {
    inner: Arc<EventInner>,
}

#[derive(Debug)]
struct EventInner {
    node: Node,
    domain: String,
    config: EventConfig,
    layout: EventLayout,
    segment: Segment,
}

impl EventInner {
    fn view(&self) -> EventView<'_> {
        EventView::new(&self.segment, &self.layout).expect("validated on open")
    }

    fn cleanup_dead_ports(&self) -> usize {
        cleanup_ports(
            &self.domain,
            self.view(),
            &self.config,
            Some(self.node.id()),
            self.node.permissions(),
        )
    }
}

impl Drop for EventInner {
    fn drop(&mut self) {
        try_remove(&self.segment, &self.layout);
    }
}

/// Removes the event service if nobody else has it open. The name goes
/// first, for the reason given at `service::try_remove` (a group member
/// cannot unlink another member's segment).
fn try_remove(segment: &Segment, layout: &EventLayout) {
    if let Ok(true) = sys::fd::flock(segment.fd(), LockKind::Exclusive, false) {
        if let Err(sys::Errno::PERM | sys::Errno::ACCESS) = segment.unlink() {
            // Not ours to remove: leave it usable for its owner's cleanup.
            let _ = sys::fd::flock(segment.fd(), LockKind::Shared, false);
            return;
        }
        if let Some(view) = EventView::new(segment, layout) {
            view.header().removed.store(1, Ordering::Release);
        }
    }
}

/// Sets `id` pending in `slot` and wakes its listener. Returns false if the
/// slot is free.
#[inline]
fn deliver(domain: &str, slot: layout::ListenerSlot<'_>, id: EventId) -> bool {
    if slot.head.id.load(Ordering::Acquire) == 0 {
        return false;
    }
    // Release: what the notifier wrote before is visible to the listener
    // that takes the bit (Acquire swap).
    slot.pending[id / 64].fetch_or(1 << (id % 64), Ordering::Release);
    fd_wake(&slot.head.event, &slot.head.fd_armed, domain, || {
        slot.head.id.load(Ordering::Acquire)
    });
    true
}

fn notify_all(domain: &str, view: EventView<'_>, id: EventId) {
    for slot in view.listeners() {
        deliver(domain, slot, id);
    }
}

/// Frees dead nodes' slots; notifies the dead event for each dead
/// notifier. Returns the number of dead notifiers found.
fn cleanup_ports(
    domain: &str,
    view: EventView<'_>,
    config: &EventConfig,
    alive: Option<NodeId>,
    permissions: shm::Permissions,
) -> usize {
    let mut known: std::collections::HashMap<u64, bool> = Default::default();
    if let Some(id) = alive {
        known.insert(id.0, true);
    }
    let mut is_alive = |node_id: u64| {
        *known
            .entry(node_id)
            .or_insert_with(|| node::is_alive(domain, NodeId(node_id), permissions))
    };
    let mut dead = 0;
    for slot in view.notifiers() {
        if slot::reclaim_if_dead(&slot.node_id, &slot.id, &mut is_alive, |_| {}) {
            view.header()
                .notifier_generation
                .fetch_add(1, Ordering::AcqRel);
            dead += 1;
            if let Some(e) = config.dead_event {
                notify_all(domain, view, e);
            }
        }
    }
    for slot in view.listeners() {
        if slot::reclaim_if_dead(&slot.head.node_id, &slot.head.id, &mut is_alive, |_| {}) {
            view.header()
                .listener_generation
                .fetch_add(1, Ordering::AcqRel);
        }
    }
    dead
}

/// An event service as seen by [`list`] (for tools such as `conduit list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventServiceInfo {
    /// The service name.
    pub name: String,
    /// The segment holding it (inside the domain).
    pub segment: String,
    /// Bytes of the segment.
    pub segment_bytes: usize,
    /// Largest event id.
    pub max_event_id: EventId,
    /// Most notifiers at once.
    pub max_notifiers: usize,
    /// Most listeners at once.
    pub max_listeners: usize,
    /// Notifiers registered now.
    pub notifiers: usize,
    /// Per registered listener: (listener id, node id, ids pending now).
    pub listeners: Vec<(u64, NodeId, usize)>,
}

/// Lists the event services of `domain`, mapped read-only (a snapshot:
/// ports and pending ids may change while it is read).
pub fn list(domain: &str) -> std::io::Result<Vec<EventServiceInfo>> {
    let prefix = format!("conduit.{domain}.{EVENT_PREFIX}");
    let mut out = Vec::new();
    for object in sys::shm::list(&prefix)? {
        let Some(seg) = object.strip_prefix(&format!("conduit.{domain}.")) else {
            continue;
        };
        let Ok(segment) = Segment::builder(seg)
            .domain(domain)
            .open_timeout(Duration::from_millis(100))
            .read_only()
            .any_permissions()
            .open()
        else {
            continue;
        };
        let Ok(config) = EventConfig::read(&segment) else {
            continue;
        };
        let layout = EventLayout::new(&config);
        let Some(view) = EventView::new(&segment, &layout) else {
            continue;
        };
        let notifiers = view
            .notifiers()
            .iter()
            .filter(|n| n.id.load(Ordering::Relaxed) != 0)
            .count();
        let listeners = view
            .listeners()
            .filter_map(|l| {
                let id = l.head.id.load(Ordering::Acquire);
                (id != 0).then(|| {
                    let pending = l
                        .pending
                        .iter()
                        .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
                        .sum();
                    (id, NodeId(l.head.node_id.load(Ordering::Relaxed)), pending)
                })
            })
            .collect();
        out.push(EventServiceInfo {
            name: config.name.clone(),
            segment: seg.to_owned(),
            segment_bytes: segment.len(),
            max_event_id: config.max_event_id,
            max_notifiers: config.max_notifiers,
            max_listeners: config.max_listeners,
            notifiers,
            listeners,
        });
    }
    Ok(out)
}

/// Cleans every event service of `domain` (dead ports; services nobody has
/// open are removed). Called by [`Node::cleanup`].
pub(crate) fn cleanup_domain(domain: &str, permissions: shm::Permissions) {
    let prefix = format!("conduit.{domain}.{EVENT_PREFIX}");
    let Ok(names) = sys::shm::list(&prefix) else {
        return;
    };
    for object in names {
        let Some(segment) = crate::service::open_listed(domain, &object, permissions) else {
            continue;
        };
        let Ok(config) = EventConfig::read(&segment) else {
            continue;
        };
        let layout = EventLayout::new(&config);
        let Some(view) = EventView::new(&segment, &layout) else {
            continue;
        };
        cleanup_ports(domain, view, &config, None, permissions);
        try_remove(&segment, &layout);
    }
}

impl EventService {
    /// The service name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// Largest event id of the service.
    pub fn max_event_id(&self) -> EventId {
        self.inner.config.max_event_id
    }

    /// Starts configuring a notifier.
    pub fn notifier(&self) -> NotifierBuilder {
        NotifierBuilder {
            service: self.inner.clone(),
        }
    }

    /// Starts configuring a listener.
    pub fn listener(&self) -> ListenerBuilder {
        ListenerBuilder {
            service: self.inner.clone(),
            spin: Spin::duration(DEFAULT_SPIN),
        }
    }

    /// Frees the slots of dead nodes' ports now, notifying the dead-notifier
    /// event for each dead notifier if configured. Returns the number of
    /// dead notifiers found. (Also done when the service is opened and by
    /// [`Node::cleanup`].)
    pub fn cleanup_dead_ports(&self) -> usize {
        self.inner.cleanup_dead_ports()
    }

    /// Number of live listener slots (a diagnostic).
    pub fn listeners(&self) -> usize {
        self.inner
            .view()
            .listeners()
            .filter(|s| s.head.id.load(Ordering::Relaxed) != 0)
            .count()
    }
}

/// Claims a free port slot with `claim`; if every slot is taken, frees the
/// slots of dead ports and tries once more. `kind` and `max` name the
/// limit in the error.
fn claim_slot(
    svc: &EventInner,
    kind: &'static str,
    max: usize,
    claim: impl Fn(&EventInner) -> Option<usize>,
) -> Result<usize, PortCreateError> {
    if let Some(slot) = claim(svc) {
        return Ok(slot);
    }
    svc.cleanup_dead_ports();
    claim(svc).ok_or_else(|| PortCreateError::ExceedsMaxPorts {
        service: svc.config.name.clone(),
        kind,
        max,
    })
}

/// Configures a [`Notifier`].
#[derive(Debug)]
pub struct NotifierBuilder {
    service: Arc<EventInner>,
}

impl NotifierBuilder {
    /// Creates the notifier (notifies the created event if configured).
    pub fn create(self) -> Result<Notifier, PortCreateError> {
        let svc = self.service;
        let id = node::unique_id();
        let node_id = svc.node.id().0;
        let claim = |svc: &EventInner| {
            let view = svc.view();
            for (i, slot) in view.notifiers().iter().enumerate() {
                if slot::try_claim(&slot.node_id, &slot.id, node_id, id, || {}) {
                    view.header()
                        .notifier_generation
                        .fetch_add(1, Ordering::AcqRel);
                    return Some(i);
                }
            }
            None
        };
        let slot = claim_slot(&svc, "notifiers", svc.config.max_notifiers, claim)?;
        let notifier = Notifier {
            service: svc,
            slot,
            id,
            listeners: RefCell::new((u64::MAX, Vec::new())),
        };
        if let Some(e) = notifier.service.config.created_event {
            let _ = notifier.notify(e);
        }
        Ok(notifier)
    }
}

/// Notifies the listeners of an event service. `Send`, not `Sync`.
pub struct Notifier {
    service: Arc<EventInner>,
    slot: usize,
    id: u64,
    /// (listener_generation seen, listener slots in use then).
    listeners: RefCell<(u64, Vec<usize>)>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("service", &self.service.config.name)
            .field("id", &format_args!("{:016x}", self.id))
            .finish()
    }
}

impl Notifier {
    /// This notifier's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Marks `id` pending at every listener and wakes those that sleep.
    /// Returns the number of listeners reached. No system call unless a
    /// listener sleeps (on its futex or its wake-up descriptor); never
    /// blocks.
    pub fn notify(&self, id: EventId) -> Result<usize, NotifyError> {
        let max = self.service.config.max_event_id;
        if id > max {
            return Err(NotifyError::InvalidId { id, max });
        }
        let view = self.service.view();
        let generation = view.header().listener_generation.load(Ordering::Acquire);
        let mut cache = self.listeners.borrow_mut();
        if cache.0 != generation {
            cache.1 = (0..self.service.layout.max_listeners)
                .filter(|&i| view.listener(i).head.id.load(Ordering::Acquire) != 0)
                .collect();
            cache.0 = generation;
        }
        let mut reached = 0;
        for &i in &cache.1 {
            if deliver(&self.service.domain, view.listener(i), id) {
                reached += 1;
            }
        }
        Ok(reached)
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some(e) = self.service.config.dropped_event {
            let _ = self.notify(e);
        }
        let view = self.service.view();
        let slot = &view.notifiers()[self.slot];
        slot::release(&slot.node_id, &slot.id);
        view.header()
            .notifier_generation
            .fetch_add(1, Ordering::AcqRel);
    }
}

/// Configures a [`Listener`].
#[derive(Debug)]
pub struct ListenerBuilder {
    service: Arc<EventInner>,
    spin: Spin,
}

impl ListenerBuilder {
    /// How long a blocking wait polls before it sleeps on the futex
    /// (default [`DEFAULT_SPIN`]; [`Spin::NONE`] sleeps at once).
    pub fn spin(mut self, spin: Spin) -> Self {
        self.spin = spin;
        self
    }

    /// Creates the listener and registers it in the service.
    pub fn create(self) -> Result<Listener, PortCreateError> {
        let svc = self.service;
        let id = node::unique_id();
        let node_id = svc.node.id().0;
        let claim = |svc: &EventInner| {
            let view = svc.view();
            for i in 0..svc.layout.max_listeners {
                let slot = view.listener(i);
                let prepare = || {
                    for w in slot.pending {
                        w.store(0, Ordering::Relaxed);
                    }
                    slot.head.fd_armed.store(0, Ordering::Relaxed);
                };
                if slot::try_claim(&slot.head.node_id, &slot.head.id, node_id, id, prepare) {
                    view.header()
                        .listener_generation
                        .fetch_add(1, Ordering::AcqRel);
                    return Some(i);
                }
            }
            None
        };
        let slot = claim_slot(&svc, "listeners", svc.config.max_listeners, claim)?;
        Ok(Listener {
            service: svc,
            slot,
            id,
            spin: self.spin,
            fd: FdWake::default(),
        })
    }
}

/// A set of event ids, as returned by the waits of a [`Listener`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventSet {
    words: Vec<u64>,
}

impl EventSet {
    /// True if no id is in the set.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Number of ids in the set.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: EventId) -> bool {
        self.words
            .get(id / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    /// The ids, ascending.
    pub fn iter(&self) -> impl Iterator<Item = EventId> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            (0..64)
                .filter(move |b| w & (1u64 << b) != 0)
                .map(move |b| i * 64 + b)
        })
    }

    /// Adds every id of `other`.
    pub fn merge(&mut self, other: &EventSet) {
        if self.words.len() < other.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }
}

/// Waits for the events of a service. `Send`, not `Sync`.
///
/// Attach it to a [`WaitSet`](crate::waitset::WaitSet) (it is
/// [`Attachable`](crate::waitset::Attachable)) or poll
/// [`wake_fd`](Listener::wake_fd) with any event loop: when the descriptor
/// is readable, call [`try_wait`](Listener::try_wait) (which also re-arms
/// it). The first report after the descriptor was created may be spurious.
pub struct Listener {
    service: Arc<EventInner>,
    slot: usize,
    id: u64,
    spin: Spin,
    pub(crate) fd: FdWake,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("service", &self.service.config.name)
            .field("id", &format_args!("{:016x}", self.id))
            .finish()
    }
}

impl Listener {
    /// This listener's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Takes the pending ids (plain, without the descriptor protocol).
    fn take(&self) -> Option<EventSet> {
        let view = self.service.view();
        let slot = view.listener(self.slot);
        let mut words = Vec::new();
        let mut any = false;
        for (i, w) in slot.pending.iter().enumerate() {
            if w.load(Ordering::Relaxed) != 0 {
                let v = w.swap(0, Ordering::Acquire);
                if v != 0 {
                    if words.is_empty() {
                        words.resize(slot.pending.len(), 0);
                    }
                    words[i] = v;
                    any = true;
                }
            }
        }
        any.then_some(EventSet { words })
    }

    /// Takes every id notified since the last look; empty if none. Never
    /// blocks. If the wake-up descriptor is in use, also re-arms it when
    /// nothing is pending.
    pub fn try_wait(&self) -> EventSet {
        let r = if self.fd.is_active() {
            let view = self.service.view();
            let head = view.listener(self.slot).head;
            self.fd.poll(&head.event, &head.fd_armed, || self.take())
        } else {
            self.take()
        };
        r.unwrap_or_default()
    }

    /// Waits up to `timeout` for at least one id (spins for the configured
    /// budget, then sleeps on the futex); empty on timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> EventSet {
        self.wait_inner(Some(timeout)).unwrap_or_default()
    }

    /// Waits until at least one id is pending and takes them all.
    pub fn wait(&self) -> EventSet {
        loop {
            if let Some(set) = self.wait_inner(None) {
                return set;
            }
        }
    }

    fn wait_inner(&self, timeout: Option<Duration>) -> Option<EventSet> {
        let view = self.service.view();
        let event = &view.listener(self.slot).head.event;
        event.wait_until(self.spin, timeout, || self.take())
    }

    /// The wake-up descriptor (created on first call): readable when a
    /// notification may be pending. After it was reported readable, call
    /// [`try_wait`](Self::try_wait); a `try_wait` that returns empty re-arms
    /// it. Costs notifiers a system call only while the listener is armed
    /// (after an empty `try_wait`), never on the futex path.
    pub fn wake_fd(&self) -> Result<BorrowedFd<'_>, Errno> {
        self.fd.fd(&self.service.domain, self.id)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let view = self.service.view();
        let slot = view.listener(self.slot);
        self.fd.release(&slot.head.event, &slot.head.fd_armed);
        slot::release(&slot.head.node_id, &slot.head.id);
        view.header()
            .listener_generation
            .fetch_add(1, Ordering::AcqRel);
    }
}

impl crate::waitset::Attachable for Listener {
    /// # Panics
    ///
    /// If the wake-up descriptor cannot be created (out of descriptors);
    /// call [`Listener::wake_fd`] first to handle that as an error.
    fn fd(&self) -> BorrowedFd<'_> {
        self.wake_fd()
            .expect("cannot create the listener's wake-up socket (call wake_fd() first to handle this error)")
    }
}
