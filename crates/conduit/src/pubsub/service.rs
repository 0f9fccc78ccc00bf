//! The publish/subscribe service: its builder, the open service (the
//! factory of publishers and subscribers), what it tells the service core
//! about itself, and its listing for tools.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::layout::{PUBLISHERS, SERVICE_FINGERPRINT, SUBSCRIBERS, ServiceLayout, StaticConfig};
use super::{NoHeader, Payload, Qos};
use crate::domain::{Domain, ServiceKind};
use crate::service::core::{self, Mode, Pattern, ServiceCore, ServiceRef};
use crate::service::registry::PortSlot;
use crate::service::{PortId, Requested, ServiceBuilder, ServiceError, TypeDesc, TypeLayoutInfo};
use crate::shm::ShmSafe;

/// The publish/subscribe pattern, as the service core sees it.
#[derive(Debug)]
pub(crate) struct PubSub;

impl Pattern for PubSub {
    const KIND: ServiceKind = ServiceKind::PublishSubscribe;
    const FINGERPRINT: u64 = SERVICE_FINGERPRINT;
    const PORT_KINDS: &'static [&'static str] = &["publishers", "subscribers"];

    type Config = StaticConfig;
    type Layout = ServiceLayout;

    /// A dead publisher: wake whoever sleeps on its slot. A dead
    /// subscriber: wake the publishers blocked on its full queue, and end
    /// the holds on departed publishers' data segments in its column
    /// (`departed`).
    fn port_reclaimed(service: &ServiceRef<'_, Self>, kind: usize, slot: &PortSlot) {
        if kind == PUBLISHERS {
            slot.event.wake_all();
        } else {
            for p in service.slots(PUBLISHERS).iter() {
                p.event.wake_all();
            }
            let subs = service.slots(SUBSCRIBERS);
            if let Some(s) = subs.iter().position(|x| std::ptr::eq(x, slot)) {
                super::departed::release_column(&service.port_view(), service.domain, s, None);
            }
        }
    }

    const POOLS: Option<(crate::pool::PoolKind, &'static [usize])> =
        Some((super::POOL, &[PUBLISHERS]));

    /// A dead publisher's data segment stays while its queues hold samples
    /// for live subscribers (`departed`).
    fn keep_pool(service: &ServiceRef<'_, Self>, kind: usize, slot: usize, port: u64) -> bool {
        kind == PUBLISHERS && super::departed::hold_queued(&service.port_view(), slot, port) > 0
    }

    fn pool_kept(service: &ServiceRef<'_, Self>, _kind: usize, port: u64) {
        super::departed::unlink_unless_held(&service.port_view(), service.domain, port);
    }

    fn kept_pools(service: &ServiceRef<'_, Self>, prune: bool) -> Vec<u64> {
        super::departed::held_pools(&service.port_view(), service.domain, prune)
    }
}

/// An open publish/subscribe service, shared by its ports.
pub(crate) type ServiceInner = ServiceCore<PubSub>;

impl ServiceBuilder {
    /// A publish/subscribe service whose payload is `P`: a `T: ShmSafe`
    /// or a slice `[T]`.
    pub fn publish_subscribe<P: Payload + ?Sized>(self) -> PubSubBuilder<P, NoHeader> {
        PubSubBuilder {
            builder: self,
            qos: Qos::default(),
            requested: Requested::default(),
            payload: TypeDesc::of(&<P::Element as ShmSafe>::LAYOUT),
            slice: P::IS_SLICE,
            invalid: None,
            raw_header: None,
            _types: PhantomData,
        }
    }
}

/// Configures a publish/subscribe service; made by
/// [`ServiceBuilder::publish_subscribe`].
pub struct PubSubBuilder<P: Payload + ?Sized, H: ShmSafe = NoHeader> {
    pub(super) builder: ServiceBuilder,
    pub(super) qos: Qos,
    pub(super) requested: Requested,
    /// The payload (element) type: `P::Element`'s layout, or the run-time
    /// type of a raw service (`raw.rs`).
    pub(super) payload: TypeDesc,
    /// Whether samples are slices: `P::IS_SLICE`, or chosen by the raw
    /// builder.
    pub(super) slice: bool,
    /// Why the run-time payload type is invalid (raw services only).
    pub(super) invalid: Option<String>,
    /// The user header type given at run time
    /// ([`PubSubBuilder::user_header_raw`]); `None`: `H::LAYOUT`.
    pub(super) raw_header: Option<TypeDesc>,
    pub(super) _types: super::Types<P, H>,
}

macro_rules! qos_setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.qos.$name = value;
            self.requested.insert(stringify!($name));
            self
        }
    };
}

impl<P: Payload + ?Sized, H: ShmSafe> PubSubBuilder<P, H> {
    /// Adds a user header of type `H2` to every sample.
    pub fn user_header<H2: ShmSafe>(self) -> PubSubBuilder<P, H2> {
        PubSubBuilder {
            builder: self.builder,
            qos: self.qos,
            requested: self.requested,
            payload: self.payload,
            slice: self.slice,
            invalid: self.invalid,
            raw_header: None,
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
        /// [`Overflow::DropOldest`](super::Overflow::DropOldest)). When
        /// opening: must be equal.
        overflow: super::Overflow
    );

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
        if let Some(reason) = self.invalid {
            return Err(ServiceError::InvalidConfig(reason));
        }
        let config = StaticConfig {
            name: self.builder.name,
            slice: self.slice,
            payload: self.payload,
            header: self.raw_header.unwrap_or_else(|| TypeDesc::of(&H::LAYOUT)),
            qos: self.qos,
        };
        let inner = core::open::<PubSub>(&self.builder.node, &config, &self.requested, mode)?;
        Ok(PubSubService {
            inner: Arc::new(inner),
            _types: PhantomData,
        })
    }
}

/// An open publish/subscribe service: the factory of publishers and
/// subscribers.
pub struct PubSubService<P: Payload + ?Sized, H: ShmSafe = NoHeader> {
    pub(crate) inner: Arc<ServiceInner>,
    _types: super::Types<P, H>,
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

    /// The payload type (the element type of a slice service) as the
    /// service records it: what another program, in any language, must
    /// give to open it (for a [`RawType`](super::RawType)).
    pub fn payload_type(&self) -> TypeLayoutInfo {
        self.inner.config.payload.info()
    }

    /// Starts configuring a publisher.
    pub fn publisher(&self) -> super::PublisherBuilder<P, H> {
        super::PublisherBuilder::new(self.inner.clone())
    }

    /// Starts configuring a subscriber.
    pub fn subscriber(&self) -> super::SubscriberBuilder<P, H> {
        super::SubscriberBuilder::new(self.inner.clone())
    }

    /// Its ports and queue fill levels now, as [`details`] gives them,
    /// read through this open service (so also a service of another user
    /// shared with this node's group, which [`details`] cannot map).
    pub fn details(&self) -> ServiceDetails {
        let segment = crate::domain::ServiceKind::PublishSubscribe.segment_name(self.name());
        details_of(&segment, self.inner.view())
    }

    /// Frees the ports of dead nodes in this service now (also done
    /// automatically when the service is opened and when a publisher runs
    /// out of chunks).
    pub fn cleanup_dead_ports(&self) {
        self.inner.cleanup_dead_ports();
    }
}

/// A publish/subscribe service as seen by [`list`].
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

impl ServiceInfo {
    fn of(segment: &str, view: ServiceRef<'_, PubSub>) -> ServiceInfo {
        let config = view.config;
        let count = |kind| view.slots(kind).iter().filter(|s| s.port() != 0).count();
        ServiceInfo {
            name: config.name.clone(),
            segment: segment.to_owned(),
            kind: if config.slice { "slice" } else { "typed" },
            payload: config.payload.info(),
            header: config.header.info(),
            qos: config.qos,
            publishers: count(PUBLISHERS),
            subscribers: count(SUBSCRIBERS),
            segment_bytes: view.segment.len(),
        }
    }
}

/// Lists the publish/subscribe services of `domain`, with their details
/// (mapped read-only, whoever owns them; a snapshot).
pub fn list(domain: &Domain) -> std::io::Result<Vec<ServiceInfo>> {
    let mut out = Vec::new();
    core::for_each_service::<PubSub>(domain, |segment, view| {
        out.push(ServiceInfo::of(segment, view));
    })?;
    Ok(out)
}

/// A port registered in a service, as seen by [`details`] and the event
/// service listing (the service core's, shared by every pattern).
pub use crate::service::PortInfo;

/// One publisher → subscriber connection, as seen by [`details`].
///
/// Read from the shared queues without taking part in the protocol: the
/// figures are a snapshot that may be slightly stale, never a reason for
/// an error. Counters restart when the publisher (re)connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Publisher port id.
    pub publisher: PortId,
    /// Subscriber port id.
    pub subscriber: PortId,
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
    /// Samples the publisher replaced unread in this queue since it
    /// connected (`Overflow::DropOldest`); counted in shared memory.
    pub dropped: u64,
}

/// A service's registered ports and connection queues, for tools (`conduit
/// info`, `conduit top`), with exact per-connection counters (sent,
/// released, dropped as oldest) read from shared memory.
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
///
/// Tools map segments without a node's permissions and so read only this
/// user's services; a member of a group that shares another user's
/// service reads it through its open handle ([`PubSubService::details`]).
pub fn details(domain: &Domain, name: &str) -> Result<Option<ServiceDetails>, ServiceError> {
    core::inspect_service::<PubSub, _>(domain, name, details_of)
}

/// The details of a mapped service.
fn details_of(segment: &str, view: ServiceRef<'_, PubSub>) -> ServiceDetails {
    {
        let config = view.config;
        let ports = |kind| -> Vec<(usize, PortInfo)> {
            view.ports(kind)
                .into_iter()
                .map(|(i, id, node)| {
                    (
                        i,
                        PortInfo {
                            id: PortId(id),
                            node,
                        },
                    )
                })
                .collect()
        };
        let pubs = ports(PUBLISHERS);
        let subs = ports(SUBSCRIBERS);
        let shm = view.port_view();
        let mut connections = Vec::new();
        for (p, publisher) in &pubs {
            for (s, subscriber) in &subs {
                let conn = shm.conn(*p, *s);
                if conn.link.link.load(Ordering::Acquire) != subscriber.id.0
                    || conn.link.pub_id.load(Ordering::Acquire) != publisher.id.0
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
                    if w != 0 && super::entry_gen(w) == generation & super::GEN_MASK {
                        sent = sent.max(super::entry_seq(w));
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
                    dropped: conn.link.dropped.load(Ordering::Relaxed),
                });
            }
        }
        ServiceDetails {
            info: ServiceInfo::of(segment, view),
            publishers: pubs.into_iter().map(|(_, p)| p).collect(),
            subscribers: subs.into_iter().map(|(_, p)| p).collect(),
            connections,
        }
    }
}
