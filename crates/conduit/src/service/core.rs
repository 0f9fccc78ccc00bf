//! The pattern-neutral life of a service: open, create or open-or-create
//! (race-free between processes), the type and configuration check,
//! removal by the last user, dead-port reclamation and slot claiming, and
//! the domain-wide sweep. Written once; a pattern plugs in through
//! [`Pattern`].
//!
//! # Who may remove a service
//!
//! Every process that has the service open holds a shared `flock` on its
//! own descriptor of the segment. When the last [`ServiceCore`] of a
//! process is dropped it tries to convert that into an exclusive lock; if
//! it succeeds nobody else uses the service and it removes it: it unlinks
//! the name and then sets the header's `removed` word, so that an opener
//! that raced with the removal sees it after taking its own lock and
//! starts again. If the unlink is refused (a group member that does not
//! own the segment: `/dev/shm` is sticky), the service is left in place
//! and unmarked, usable for its owner's cleanup. Openers check `removed`
//! only after taking their shared lock, which waits for the exclusive
//! one, so setting it after the unlink is as good as before. The kernel
//! drops the locks of dead processes, so a service whose users all died
//! is removed by the next domain cleanup.
//!
//! # Dead-port reclamation
//!
//! [`ServiceRef::cleanup_ports`] looks at every slot of every port kind:
//! `sync::slot::reclaim_if_dead` frees a slot whose node is dead, having
//! removed the dead port's chunk pool first if its kind owns one
//! ([`Pattern::POOLS`]), unless the pattern keeps it for now
//! ([`Pattern::keep_pool`]: pub/sub keeps a departed publisher's pool
//! while its queues hold samples for live subscribers, and removes it
//! when they are read; kept pools are left by the domain sweep and
//! removed with the service, [`Pattern::kept_pools`]). The cleaner whose CAS freed the slot bumps
//! the kind's generation word and calls [`Pattern::port_reclaimed`], which
//! wakes or tells whoever must know (pub/sub: for a freed subscriber slot
//! every publisher's event word, to release a publisher blocked on its
//! full queue; events: the dead-notifier event). Liveness answers are
//! cached per cleanup ([`Liveness`]); the caller's own node counts as
//! alive. It runs when a service is opened, when [`ServiceCore::claim_slot`]
//! finds every slot of a kind taken (then it tries once more), on a
//! pattern's own triggers (a publisher out of chunks or facing a full
//! queue), on request (the services' `cleanup_dead_ports`) and in the
//! domain sweep ([`cleanup_domain`]).
//!
//! # Abandoned segments are confirmed before removal
//!
//! A live creator between `shm_open(O_EXCL)` and its `flock` looks
//! abandoned (not ready, unlocked) for those microseconds, so a sweep that
//! removed what one look calls abandoned could unlink a segment being
//! created. [`remove_if_abandoned`] first looks with a zero open timeout
//! and only if that says "abandoned" opens again with [`open_listed`],
//! whose open waits for `ABANDON_GRACE` of "not ready and unlocked" before
//! it reports the segment abandoned and removes it. The domain sweep
//! opens service segments with [`open_listed`] too.
//!
//! # Sticky `/dev/shm`
//!
//! In a group-shared service a dead member's ports can be cleared from the
//! slots by any member, but only their owner (or root) can remove the
//! segments' names: removal and the sweep leave such segments in place.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::ServiceError;
use super::registry::{MAX_PORT_KINDS, PortArray, PortSlot, SegmentView, ServiceHeader, SlotArray};
use crate::domain::{Domain, ServiceKind};
use crate::node::{self, Node, NodeId};
use crate::pool::{Geometry, Pool, PoolKind};
use crate::shm::{self, Permissions, Region, Segment};
use crate::sync::atomic::Ordering;
use crate::sys::{self, fd::LockKind};

/// What a messaging pattern tells the service core about itself.
///
/// The core calls only these; a pattern never re-implements opening,
/// removal, cleanup or slot claiming.
pub(crate) trait Pattern: Sized + 'static {
    /// Its kind (naming, messages, tools).
    const KIND: ServiceKind;
    /// Fingerprint of its segment format (checked by the segment header).
    const FINGERPRINT: u64;
    /// Its port kinds, plural ("publishers", "subscribers"), in the order
    /// of the header's generation words and of `PatternLayout::port_array`.
    const PORT_KINDS: &'static [&'static str];

    /// The static configuration, decoded.
    type Config: PatternConfig;
    /// Offsets computed from the configuration.
    type Layout: PatternLayout<Self::Config>;

    /// Cleanup freed `slot` (kind `kind`) and bumped the generation: wake
    /// or tell whoever must know.
    fn port_reclaimed(_service: &ServiceRef<'_, Self>, _kind: usize, _slot: &PortSlot) {}

    /// The chunk pools its ports own, if any: their kind, and the port
    /// kinds that own one each. The core removes a pool with its port
    /// (a dead port's at reclamation, every port's when the service is
    /// removed, and in the domain sweep those of ports that died before
    /// they claimed a slot); peers that still map it keep reading it.
    const POOLS: Option<(PoolKind, &'static [usize])> = None;

    /// A dead port `port` of kind `kind` in slot `slot` owns a pool: called
    /// before its slot is freed. True if the pattern keeps the pool for now
    /// (pub/sub: samples still queued for subscribers); the core then
    /// does not remove it, and calls [`pool_kept`](Self::pool_kept) once
    /// the slot is freed.
    fn keep_pool(_service: &ServiceRef<'_, Self>, _kind: usize, _slot: usize, _port: u64) -> bool {
        false
    }

    /// The slot of a port whose pool [`keep_pool`](Self::keep_pool) kept
    /// was freed: the pattern removes the pool once nothing needs it.
    fn pool_kept(_service: &ServiceRef<'_, Self>, _kind: usize, _port: u64) {}

    /// The ids of pools kept for ports that left (in the pool kind of
    /// [`POOLS`](Self::POOLS)): the domain sweep leaves them, the removal
    /// of the service removes them. With `prune`, the pattern first lets go
    /// of those nobody needs any more.
    fn kept_pools(_service: &ServiceRef<'_, Self>, _prune: bool) -> Vec<u64> {
        Vec::new()
    }
}

/// Removes the pool of port `port` of kind `kind`, if that kind owns one.
fn remove_pool<P: Pattern>(domain: &Domain, kind: usize, port: u64) {
    if let Some((pool, owners)) = P::POOLS {
        if owners.contains(&kind) {
            let _ = Segment::remove(domain.name(), &pool.segment(port));
        }
    }
}

/// A pattern's static configuration: its codec (the words after the
/// core's, see `service::config`) and its checks.
pub(crate) trait PatternConfig: Clone + std::fmt::Debug + Send + Sync + Sized {
    /// The service name.
    fn name(&self) -> &str;
    /// Whether an opener that asked for `wanted` may use a service whose
    /// configuration is this one (names are compared by the core).
    fn check_compatible(
        &self,
        wanted: &Self,
        requested: &super::Requested,
    ) -> Result<(), ServiceError>;
    /// Checks the values (a builder's request, or what was read).
    fn validate(&self) -> Result<(), String>;
    /// Writes the configuration into a new segment's data area (before it
    /// is ready; the rest of the area is zero).
    fn write(&self, region: &Region) -> Result<(), String>;
    /// Reads and validates the configuration of a segment's data area
    /// (another process may have written anything).
    fn read(region: &Region) -> Result<Self, String>;
}

/// A pattern's segment layout, computed from its configuration.
pub(crate) trait PatternLayout<C>: std::fmt::Debug + Send + Sync {
    /// The layout of a segment with configuration `config`.
    fn of(config: &C) -> Self;
    /// Bytes of the data area it needs.
    fn size(&self) -> usize;
    /// Where the slots of port kind `kind` are.
    fn port_array(&self, kind: usize) -> PortArray;
}

/// How a builder wants the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Create,
    Open,
    OpenOrCreate,
}

/// A checked view of a mapped service segment of pattern `P`.
pub(crate) struct ServiceRef<'a, P: Pattern> {
    pub(crate) domain: &'a Domain,
    pub(crate) segment: &'a Segment,
    pub(crate) config: &'a P::Config,
    pub(crate) layout: &'a P::Layout,
}

impl<P: Pattern> Clone for ServiceRef<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: Pattern> Copy for ServiceRef<'_, P> {}

impl<'a, P: Pattern> ServiceRef<'a, P> {
    /// `None` if the segment is smaller than the layout or a port array
    /// does not fit in it.
    pub(crate) fn new(
        domain: &'a Domain,
        segment: &'a Segment,
        config: &'a P::Config,
        layout: &'a P::Layout,
    ) -> Option<ServiceRef<'a, P>> {
        let view = SegmentView::new(segment, layout.size())?;
        if P::PORT_KINDS.len() > MAX_PORT_KINDS {
            return None;
        }
        for kind in 0..P::PORT_KINDS.len() {
            view.check(layout.port_array(kind))?;
        }
        Some(ServiceRef {
            domain,
            segment,
            config,
            layout,
        })
    }

    fn shared(&self) -> SegmentView<'a> {
        SegmentView::new(self.segment, self.layout.size()).expect("checked in new()")
    }

    /// The ports' view of the same segment.
    pub(crate) fn port_view(&self) -> PortView<'a, P> {
        PortView {
            shared: self.shared(),
            layout: self.layout,
        }
    }

    /// The header line.
    pub(crate) fn header(&self) -> &'a ServiceHeader {
        self.shared().header()
    }

    /// The slots of port kind `kind`.
    pub(crate) fn slots(&self, kind: usize) -> SlotArray<'a> {
        self.shared().slots(self.layout.port_array(kind))
    }

    /// Frees the slots of dead nodes' ports; returns how many were freed,
    /// per port kind. `alive` caches node liveness across calls.
    pub(crate) fn cleanup_ports(&self, alive: &mut Liveness) -> [usize; MAX_PORT_KINDS] {
        let mut freed = [0; MAX_PORT_KINDS];
        for (kind, count) in freed.iter_mut().enumerate().take(P::PORT_KINDS.len()) {
            for (i, slot) in self.slots(kind).iter().enumerate() {
                let mut kept = None;
                let reclaimed = slot.reclaim_if_dead(
                    |node| alive.is_alive(self.domain, node),
                    |port| {
                        if P::keep_pool(self, kind, i, port) {
                            kept = Some(port);
                        } else {
                            remove_pool::<P>(self.domain, kind, port);
                        }
                    },
                );
                if let Some(port) = kept {
                    P::pool_kept(self, kind, port);
                }
                if reclaimed {
                    self.header().generation[kind].fetch_add(1, Ordering::AcqRel);
                    *count += 1;
                    P::port_reclaimed(self, kind, slot);
                }
            }
        }
        freed
    }

    /// The ports registered now, per kind: (slot, port id, node id).
    pub(crate) fn ports(&self, kind: usize) -> Vec<(usize, u64, NodeId)> {
        self.slots(kind)
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let id = s.port();
                (id != 0).then(|| (i, id, NodeId(s.node_id.load(Ordering::Relaxed))))
            })
            .collect()
    }
}

/// A pattern's service segment as its ports use it: the shared words,
/// bounds-checked once against the layout, and the layout. Each pattern
/// adds its own accessors in its layout module (`impl PortView<'_,
/// PubSub>`: connections, pending words).
pub(crate) struct PortView<'a, P: Pattern> {
    pub(crate) shared: SegmentView<'a>,
    pub(crate) layout: &'a P::Layout,
}

impl<P: Pattern> Clone for PortView<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: Pattern> Copy for PortView<'_, P> {}

impl<'a, P: Pattern> PortView<'a, P> {
    /// The header line.
    #[inline]
    pub(crate) fn header(&self) -> &'a ServiceHeader {
        self.shared.header()
    }

    /// The slots of port kind `kind`.
    #[inline]
    pub(crate) fn slots(&self, kind: usize) -> SlotArray<'a> {
        self.shared.slots(self.layout.port_array(kind))
    }
}

/// Node liveness, asked once per node per sweep.
pub(crate) struct Liveness {
    permissions: Permissions,
    known: HashMap<u64, bool>,
}

impl Liveness {
    /// `alive`: a node known to be alive (ours), if any; `permissions`:
    /// those of the asking node (a node of another user is visible only
    /// if it shares the same group).
    pub(crate) fn new(alive: Option<NodeId>, permissions: Permissions) -> Liveness {
        let mut known = HashMap::new();
        if let Some(id) = alive {
            known.insert(id.0, true);
        }
        Liveness { permissions, known }
    }

    fn is_alive(&mut self, domain: &Domain, node: u64) -> bool {
        let permissions = self.permissions;
        *self
            .known
            .entry(node)
            .or_insert_with(|| node::is_alive(domain, NodeId(node), permissions))
    }
}

/// An open service of pattern `P`: what every port of it shares.
#[derive(Debug)]
pub(crate) struct ServiceCore<P: Pattern> {
    pub(crate) node: Node,
    pub(crate) domain: Domain,
    pub(crate) config: P::Config,
    pub(crate) layout: P::Layout,
    pub(crate) segment: Segment,
}

impl<P: Pattern> ServiceCore<P> {
    /// The checked view (validated when the service was opened).
    pub(crate) fn view(&self) -> ServiceRef<'_, P> {
        ServiceRef::new(&self.domain, &self.segment, &self.config, &self.layout)
            .expect("the layout was validated against this segment on open")
    }

    /// The ports' view (validated when the service was opened).
    pub(crate) fn shm(&self) -> PortView<'_, P> {
        self.view().port_view()
    }

    /// The ports' view with its lifetime erased, for ports that cache
    /// references into the service segment next to the `Arc` that keeps
    /// it mapped.
    ///
    /// # Safety
    ///
    /// The caller must keep a clone of the `Arc<ServiceCore>` this was made
    /// from alive for as long as it uses the view or anything obtained
    /// from it.
    pub(crate) unsafe fn view_static(self: &std::sync::Arc<Self>) -> PortView<'static, P> {
        let view = self.shm();
        // SAFETY: the view refers to the segment mapping and layout owned by
        // the `ServiceCore` inside the Arc (a stable heap address); the
        // caller keeps that Arc alive while it uses the view.
        unsafe { std::mem::transmute::<PortView<'_, P>, PortView<'static, P>>(view) }
    }

    /// The service name.
    pub(crate) fn name(&self) -> &str {
        self.config.name()
    }

    /// Frees the slots of dead nodes' ports; how many, per port kind.
    pub(crate) fn cleanup_dead_ports(&self) -> [usize; MAX_PORT_KINDS] {
        let mut alive = Liveness::new(Some(self.node.id()), self.node.permissions());
        self.view().cleanup_ports(&mut alive)
    }

    /// Claims a free slot of port kind `kind` for port `id` (`prepare(i)`
    /// resets the pattern's words of slot `i` before the id is published)
    /// and bumps the kind's generation; if every slot is taken, frees the
    /// slots of dead ports and tries once more.
    pub(crate) fn claim_slot(
        &self,
        kind: usize,
        id: u64,
        mut prepare: impl FnMut(usize),
    ) -> Result<usize, SlotsFull> {
        for attempt in 0..2 {
            let view = self.view();
            if let Some(i) = super::registry::claim_free_slot(
                view.slots(kind),
                &view.header().generation[kind],
                self.node.id().0,
                id,
                &mut prepare,
            ) {
                return Ok(i);
            }
            if attempt == 0 {
                self.cleanup_dead_ports();
            }
        }
        Err(SlotsFull {
            service: self.name().to_owned(),
            kind: P::PORT_KINDS[kind],
            max: self.layout.port_array(kind).count,
        })
    }

    /// A new port `id` of kind `kind` that owns a chunk pool (publisher,
    /// client, server): creates its data segment (`pool`, `geometry`),
    /// then claims its slot ([`claim_slot`](Self::claim_slot), `prepare`
    /// as there). The segment comes first so that a peer that sees the
    /// slot can map it; it is removed again if every slot is taken.
    pub(crate) fn create_pool_port(
        &self,
        kind: usize,
        pool: PoolKind,
        geometry: Geometry,
        prepare: impl FnMut(usize),
    ) -> Result<(u64, Pool, usize), PoolPortError> {
        let id = crate::service::PortId::unique().0;
        let node_id = self.node.id().0;
        let permissions = self.node.permissions();
        let pool = Pool::create(&self.domain, permissions, pool, id, node_id, geometry)
            .map_err(PoolPortError::Segment)?;
        match self.claim_slot(kind, id, prepare) {
            Ok(slot) => Ok((id, pool, slot)),
            Err(full) => {
                pool.unlink();
                Err(PoolPortError::Full(full))
            }
        }
    }

    /// The owner of slot `i` of kind `kind` frees it and bumps the kind's
    /// generation.
    pub(crate) fn release_slot(&self, kind: usize, i: usize) {
        let view = self.view();
        super::registry::release_slot(view.slots(kind).get(i), &view.header().generation[kind]);
    }
}

impl<P: Pattern> Drop for ServiceCore<P> {
    fn drop(&mut self) {
        try_remove::<P>(&self.domain, &self.segment, &self.config, &self.layout);
    }
}

/// Every slot of a port kind is taken by live nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotsFull {
    pub(crate) service: String,
    pub(crate) kind: &'static str,
    pub(crate) max: usize,
}

/// Why [`ServiceCore::create_pool_port`] failed.
#[derive(Debug)]
pub(crate) enum PoolPortError {
    /// The data segment could not be created.
    Segment(shm::CreateError),
    /// Every slot of the kind is taken by live ports.
    Full(SlotsFull),
}

impl PoolPortError {
    /// The port's own error: `segment` for a data segment that could not
    /// be created, `full(service, max)` when every slot is taken.
    pub(crate) fn into_port_error<E>(
        self,
        segment: impl FnOnce(shm::CreateError) -> E,
        full: impl FnOnce(String, usize) -> E,
    ) -> E {
        match self {
            PoolPortError::Segment(e) => segment(e),
            PoolPortError::Full(f) => full(f.service, f.max),
        }
    }
}

/// Removes the service if nobody else has it open (we hold our shared
/// lock on `segment`); see the module docs.
fn try_remove<P: Pattern>(
    domain: &Domain,
    segment: &Segment,
    config: &P::Config,
    layout: &P::Layout,
) {
    if let Ok(true) = sys::fd::flock(segment.fd(), LockKind::Exclusive, false) {
        if let Err(sys::Errno::PERM | sys::Errno::ACCESS) = segment.unlink() {
            // Not ours to remove: leave it usable for its owner's cleanup.
            let _ = sys::fd::flock(segment.fd(), LockKind::Shared, false);
            return;
        }
        if let Some(view) = ServiceRef::<P>::new(domain, segment, config, layout) {
            view.header().removed.store(1, Ordering::Release);
            if let Some((pool, _)) = P::POOLS {
                for port in P::kept_pools(&view, false) {
                    let _ = Segment::remove(domain.name(), &pool.segment(port));
                }
            }
            for kind in 0..P::PORT_KINDS.len() {
                for slot in view.slots(kind).iter() {
                    let id = slot.port();
                    if id != 0 {
                        remove_pool::<P>(domain, kind, id);
                    }
                }
            }
        }
    }
}

/// Opens, creates or opens-or-creates the service `config` describes for
/// `node`, checks it against what the builder asked for, frees dead
/// ports, and returns it holding its shared usage lock.
pub(crate) fn open<P: Pattern>(
    node: &Node,
    config: &P::Config,
    requested: &super::Requested,
    mode: Mode,
) -> Result<ServiceCore<P>, ServiceError> {
    let name = config.name().to_owned();
    super::validate_service_name(&name)?;
    config.validate().map_err(ServiceError::InvalidConfig)?;
    let domain = node.domain_ref().clone();
    let seg_name = P::KIND.segment_name(&name);
    let corrupted = |reason: String| ServiceError::Corrupted {
        name: name.clone(),
        reason,
    };
    for _ in 0..100 {
        let size = P::Layout::of(config).size();
        let builder = Segment::builder(&seg_name)
            .domain(domain.name())
            .permissions(node.permissions())
            .fingerprint(P::FINGERPRINT);
        let init = |region: &Region| {
            if region.len() < size {
                return Err("segment smaller than the layout".to_owned());
            }
            config.write(region)
        };
        let segment = match mode {
            Mode::Create => {
                builder
                    .size(size)
                    .init(init)
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
                source => ServiceError::open(&name, source),
            })?,
            Mode::OpenOrCreate => {
                builder
                    .size(size)
                    .init(init)
                    .open_or_create()
                    .map_err(|source| match source {
                        shm::OpenOrCreateError::Create(source) => ServiceError::Create {
                            name: name.clone(),
                            source,
                        },
                        shm::OpenOrCreateError::Open(source) => ServiceError::open(&name, source),
                        other => corrupted(other.to_string()),
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
        let existing = P::Config::read(&segment.data()).map_err(corrupted)?;
        let layout = P::Layout::of(&existing);
        let Some(view) = ServiceRef::<P>::new(&domain, &segment, &existing, &layout) else {
            return Err(corrupted(format!(
                "segment of {} bytes is smaller than its layout ({} bytes)",
                segment.data().len(),
                layout.size()
            )));
        };
        if view.header().removed.load(Ordering::Acquire) != 0 {
            // Removed by its last user while we opened it: start again.
            drop(segment);
            if mode == Mode::Open {
                return Err(ServiceError::NotFound(name));
            }
            continue;
        }
        if existing.name() != name {
            return Err(ServiceError::NameCollision {
                name,
                existing: existing.name().to_owned(),
            });
        }
        existing.check_compatible(config, requested)?;
        let service = ServiceCore {
            node: node.clone(),
            domain: domain.clone(),
            config: existing,
            layout,
            segment,
        };
        service.cleanup_dead_ports();
        return Ok(service);
    }
    Err(corrupted(
        "removed and recreated by others 100 times in a row".into(),
    ))
}

/// Opens the segment `name` (inside `domain`) for inspection or cleanup,
/// with a short open timeout; a segment whose creator died before it
/// became ready is removed on the way. `None` for anything that cannot be
/// opened (gone, in creation, not ours).
pub(crate) fn open_listed(
    domain: &Domain,
    name: &str,
    permissions: Permissions,
) -> Option<Segment> {
    match Segment::builder(name)
        .domain(domain.name())
        .permissions(permissions)
        .open_timeout(Duration::from_millis(200))
        .open()
    {
        Ok(s) => Some(s),
        Err(shm::OpenError::Abandoned { .. }) => {
            let _ = Segment::builder(name)
                .domain(domain.name())
                .remove_abandoned();
            None
        }
        Err(_) => None,
    }
}

/// Removes segment `name` if its creator died before it became ready. A
/// live creator is also unready and unlocked for the microseconds between
/// creating the object and locking it, so a first look that says
/// "abandoned" is confirmed over the grace period ([`open_listed`])
/// before anything is removed.
pub(crate) fn remove_if_abandoned(domain: &Domain, name: &str, permissions: Permissions) {
    if matches!(
        Segment::builder(name)
            .domain(domain.name())
            .permissions(permissions)
            .open_timeout(Duration::ZERO)
            .open(),
        Err(shm::OpenError::Abandoned { .. })
    ) {
        let _ = open_listed(domain, name, permissions);
    }
}

/// Cleans every service of pattern `P` in `domain`: frees dead ports,
/// removes services nobody has open, then removes the pools of ports
/// that died before they claimed a slot (or whose service is gone): named
/// in no service, and their node is dead.
pub(crate) fn cleanup_domain<P: Pattern>(domain: &Domain, permissions: Permissions) {
    let registered = cleanup_services::<P>(domain, permissions);
    let Some((pool, _)) = P::POOLS else {
        return;
    };
    let Ok(names) = domain.pool_segments(pool.object) else {
        return;
    };
    for (name, id) in names {
        if registered.contains(&id) {
            continue;
        }
        // Died while creating it: not ready and unlocked.
        remove_if_abandoned(domain, &name, permissions);
        let dead = crate::pool::data_segment_node(domain, &name, pool, permissions)
            .is_some_and(|node_id| !node::is_alive(domain, NodeId(node_id), permissions));
        if dead {
            let _ = Segment::remove(domain.name(), &name);
        }
    }
}

/// The services part of [`cleanup_domain`]; returns the ids of the ports
/// still registered in the services that remain.
fn cleanup_services<P: Pattern>(domain: &Domain, permissions: Permissions) -> HashSet<u64> {
    let mut registered = HashSet::new();
    let Ok(names) = domain.service_segments(P::KIND) else {
        return registered;
    };
    let mut alive = Liveness::new(None, permissions);
    for name in names {
        let Some(segment) = open_listed(domain, &name, permissions) else {
            continue;
        };
        let Ok(config) = P::Config::read(&segment.data()) else {
            continue;
        };
        let layout = P::Layout::of(&config);
        let Some(view) = ServiceRef::<P>::new(domain, &segment, &config, &layout) else {
            continue;
        };
        view.cleanup_ports(&mut alive);
        for kind in 0..P::PORT_KINDS.len() {
            registered.extend(view.slots(kind).iter().map(PortSlot::port));
        }
        registered.extend(P::kept_pools(&view, true));
        try_remove::<P>(domain, &segment, &config, &layout);
    }
    registered
}

/// Calls `f` for every service of pattern `P` in `domain` that can be
/// mapped read-only and has a valid configuration (for tools: any
/// owner's services, a snapshot that may change while it is read).
pub(crate) fn for_each_service<P: Pattern>(
    domain: &Domain,
    mut f: impl FnMut(&str, ServiceRef<'_, P>),
) -> std::io::Result<()> {
    for name in domain.service_segments(P::KIND)? {
        let Ok(segment) = inspect(domain, &name) else {
            continue;
        };
        let Ok(config) = P::Config::read(&segment.data()) else {
            continue;
        };
        let layout = P::Layout::of(&config);
        if let Some(view) = ServiceRef::<P>::new(domain, &segment, &config, &layout) {
            f(&name, view);
        }
    }
    Ok(())
}

/// Opens service `name` of pattern `P` read-only for a tool and calls `f`
/// with it; `Ok(None)` if there is no such service.
pub(crate) fn inspect_service<P: Pattern, R>(
    domain: &Domain,
    name: &str,
    f: impl FnOnce(&str, ServiceRef<'_, P>) -> R,
) -> Result<Option<R>, ServiceError> {
    super::validate_service_name(name)?;
    let seg_name = P::KIND.segment_name(name);
    let segment = match inspect(domain, &seg_name) {
        Ok(s) => s,
        Err(shm::OpenError::NotFound { .. }) => return Ok(None),
        Err(source) => return Err(ServiceError::open(name, source)),
    };
    let corrupted = |reason: String| ServiceError::Corrupted {
        name: name.to_owned(),
        reason,
    };
    let config = P::Config::read(&segment.data()).map_err(corrupted)?;
    if config.name() != name {
        return Err(ServiceError::NameCollision {
            name: name.to_owned(),
            existing: config.name().to_owned(),
        });
    }
    let layout = P::Layout::of(&config);
    let view = ServiceRef::<P>::new(domain, &segment, &config, &layout)
        .ok_or_else(|| corrupted("segment smaller than its layout".into()))?;
    Ok(Some(f(&seg_name, view)))
}

/// Maps segment `name` read-only, whoever owns it, waiting briefly for
/// one in creation.
fn inspect(domain: &Domain, name: &str) -> Result<Segment, shm::OpenError> {
    Segment::builder(name)
        .domain(domain.name())
        .open_timeout(Duration::from_millis(100))
        .read_only()
        .any_permissions()
        .open()
}
