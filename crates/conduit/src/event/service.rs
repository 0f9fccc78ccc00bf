//! The event service: its builder, the open service (the factory of
//! notifiers and listeners), what it tells the service core about itself,
//! delivery to listeners, and its listing for tools.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::layout::{
    EVENT_FINGERPRINT, EventConfig, EventLayout, EventView, LISTENERS, ListenerSlot, NOTIFIERS,
};
use super::{DEFAULT_SPIN, EventId, ListenerBuilder, NotifierBuilder};
use crate::domain::{Domain, ServiceKind};
use crate::node::NodeId;
use crate::service::core::{self, Mode, Pattern, ServiceCore, ServiceRef};
use crate::service::registry::PortSlot;
use crate::service::{PortId, Requested, ServiceBuilder, ServiceError};
use crate::sync::Spin;

/// The event pattern, as the service core sees it.
#[derive(Debug)]
pub(crate) struct Events;

impl Pattern for Events {
    const KIND: ServiceKind = ServiceKind::Event;
    const FINGERPRINT: u64 = EVENT_FINGERPRINT;
    const PORT_KINDS: &'static [&'static str] = &["notifiers", "listeners"];

    type Config = EventConfig;
    type Layout = EventLayout;

    /// A dead notifier: notify the configured dead-notifier event.
    fn port_reclaimed(service: &ServiceRef<'_, Self>, kind: usize, _slot: &PortSlot) {
        if kind == NOTIFIERS {
            if let Some(e) = service.config.dead_event {
                let view = EventView::new(service.segment, service.layout).expect("checked");
                notify_all(service.domain, view, e);
            }
        }
    }
}

/// An open event service, shared by its ports.
pub(crate) type EventInner = ServiceCore<Events>;

impl ServiceCore<Events> {
    pub(crate) fn events(&self) -> EventView<'_> {
        EventView::new(&self.segment, &self.layout).expect("validated on open")
    }
}

/// Sets `id` pending in `slot` and wakes its listener. Returns false if the
/// slot is free.
#[inline]
pub(crate) fn deliver(domain: &Domain, slot: ListenerSlot<'_>, id: EventId) -> bool {
    if slot.head.id.load(Ordering::Acquire) == 0 {
        return false;
    }
    let id = id.0;
    // Release: what the notifier wrote before is visible to the listener
    // that takes the bit (Acquire swap).
    slot.pending[id / 64].fetch_or(1 << (id % 64), Ordering::Release);
    crate::sync::fdwake::wake(
        &slot.head.event,
        &slot.head.fd_armed,
        domain.wake_prefix(),
        || slot.head.id.load(Ordering::Acquire),
    );
    true
}

fn notify_all(domain: &Domain, view: EventView<'_>, id: EventId) {
    for slot in view.listeners() {
        deliver(domain, slot, id);
    }
}

impl ServiceBuilder {
    /// An event service: [`Notifier`](super::Notifier)s notify event ids,
    /// [`Listener`](super::Listener)s learn every id notified since they
    /// last looked. Event services live in their own segment
    /// (`evt.<hash>`): a pub/sub service and an event service may share a
    /// name.
    pub fn event(self) -> EventBuilder {
        EventBuilder {
            config: EventConfig {
                name: self.name.clone(),
                max_event_id: EventId(255),
                max_notifiers: 16,
                max_listeners: 16,
                created_event: None,
                dropped_event: None,
                dead_event: None,
            },
            builder: self,
            requested: Requested::default(),
        }
    }
}

/// Configures an event service; made by [`ServiceBuilder::event`].
#[derive(Debug)]
pub struct EventBuilder {
    builder: ServiceBuilder,
    config: EventConfig,
    requested: Requested,
}

impl EventBuilder {
    /// Largest event id (0..=4095; default 255). When opening: at least this.
    pub fn max_event_id(mut self, id: impl Into<EventId>) -> Self {
        self.config.max_event_id = id.into();
        self.requested.insert("max_event_id");
        self
    }

    /// Most notifiers at once (1..=256; default 16). When opening: at least this.
    pub fn max_notifiers(mut self, n: usize) -> Self {
        self.config.max_notifiers = n;
        self.requested.insert("max_notifiers");
        self
    }

    /// Most listeners at once (1..=256; default 16). When opening: at least this.
    pub fn max_listeners(mut self, n: usize) -> Self {
        self.config.max_listeners = n;
        self.requested.insert("max_listeners");
        self
    }

    /// Event notified (by the new notifier) when a notifier is created.
    /// When opening: must be equal.
    pub fn notifier_created_event(mut self, id: impl Into<EventId>) -> Self {
        self.config.created_event = Some(id.into());
        self.requested.insert("notifier_created_event");
        self
    }

    /// Event notified when a notifier is dropped. When opening: must be equal.
    pub fn notifier_dropped_event(mut self, id: impl Into<EventId>) -> Self {
        self.config.dropped_event = Some(id.into());
        self.requested.insert("notifier_dropped_event");
        self
    }

    /// Event notified when a dead notifier is cleaned up (its process died;
    /// found when the service is opened, by domain cleanup
    /// ([`Node::cleanup`](crate::node::Node::cleanup)), or by
    /// [`EventService::cleanup_dead_ports`]). When opening: must be equal.
    pub fn notifier_dead_event(mut self, id: impl Into<EventId>) -> Self {
        self.config.dead_event = Some(id.into());
        self.requested.insert("notifier_dead_event");
        self
    }

    /// Creates the service; [`ServiceError::AlreadyExists`] if it exists.
    pub fn create(self) -> Result<EventService, ServiceError> {
        self.build(Mode::Create)
    }

    /// Opens the existing service, checking its configuration.
    pub fn open(self) -> Result<EventService, ServiceError> {
        self.build(Mode::Open)
    }

    /// Opens the service, creating it if it does not exist.
    pub fn open_or_create(self) -> Result<EventService, ServiceError> {
        self.build(Mode::OpenOrCreate)
    }

    fn build(self, mode: Mode) -> Result<EventService, ServiceError> {
        let inner = core::open::<Events>(&self.builder.node, &self.config, &self.requested, mode)?;
        Ok(EventService {
            inner: Arc::new(inner),
        })
    }
}

/// An open event service: the factory of notifiers and listeners.
#[derive(Debug, Clone)]
pub struct EventService {
    inner: Arc<EventInner>,
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
    /// domain cleanup.)
    pub fn cleanup_dead_ports(&self) -> usize {
        self.inner.cleanup_dead_ports()[NOTIFIERS]
    }

    /// Number of live listener slots (a diagnostic).
    pub fn listeners(&self) -> usize {
        self.inner.view().ports(LISTENERS).len()
    }
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
    pub listeners: Vec<(PortId, NodeId, usize)>,
}

/// Lists the event services of `domain`, mapped read-only (a snapshot:
/// ports and pending ids may change while it is read).
pub fn list(domain: &Domain) -> std::io::Result<Vec<EventServiceInfo>> {
    let mut out = Vec::new();
    core::for_each_service::<Events>(domain, |segment, view| {
        let config = view.config;
        let events = EventView::new(view.segment, view.layout).expect("checked by the core");
        let listeners = view
            .ports(LISTENERS)
            .into_iter()
            .map(|(i, id, node)| {
                let pending = events
                    .listener(i)
                    .pending
                    .iter()
                    .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
                    .sum();
                (PortId(id), node, pending)
            })
            .collect();
        out.push(EventServiceInfo {
            name: config.name.clone(),
            segment: segment.to_owned(),
            segment_bytes: view.segment.len(),
            max_event_id: config.max_event_id,
            max_notifiers: config.max_notifiers,
            max_listeners: config.max_listeners,
            notifiers: view.ports(NOTIFIERS).len(),
            listeners,
        });
    })?;
    Ok(out)
}
