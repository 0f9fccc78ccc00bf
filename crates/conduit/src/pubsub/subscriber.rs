//! The subscriber: taking samples, blocking receive, returning chunks.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::layout::{Conn, Overflow, PUBLISHERS, SUBSCRIBERS, ServiceView};
use super::{ChunkHeader, NoHeader, Payload, RawPayload, ServiceInner, queue};
use crate::pool::Pool;
use crate::service::PortId;
use crate::shm::ShmSafe;
use crate::sync::Spin;

/// Default spin budget of a blocking receive before it sleeps.
pub use crate::service::DEFAULT_SPIN;

/// Why a subscriber could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriberCreateError {
    /// Every subscriber slot of the service is taken (by live nodes).
    #[error("service {service:?} already has its maximum of {max} subscribers")]
    ExceedsMaxSubscribers {
        /// The service.
        service: String,
        /// Its limit.
        max: usize,
    },
}

/// Why a receive failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The subscriber holds `max_borrowed` samples already: drop one.
    #[error("the subscriber holds its maximum of {0} samples")]
    ExceedsMaxBorrowed(usize),
    /// `receive_timeout`: nothing arrived in time.
    #[error("no sample within {0:?}")]
    Timeout(Duration),
    /// Shared state written by a publisher is inconsistent (a bug or a
    /// hostile process); the connection to it was dropped.
    #[error("corrupted shared state from publisher {publisher}: {reason}")]
    Corrupted {
        /// The publisher's id.
        publisher: PortId,
        /// What is wrong.
        reason: String,
    },
}

/// Configures a [`Subscriber`].
pub struct SubscriberBuilder<P: Payload + ?Sized, H: ShmSafe = NoHeader> {
    service: Arc<ServiceInner>,
    spin: Spin,
    _types: super::Types<P, H>,
}

impl<P: Payload + ?Sized, H: ShmSafe> SubscriberBuilder<P, H> {
    pub(crate) fn new(service: Arc<ServiceInner>) -> Self {
        SubscriberBuilder {
            service,
            spin: Spin::duration(DEFAULT_SPIN),
            _types: PhantomData,
        }
    }

    crate::service::port_setters!(spin);

    /// Creates the subscriber and registers it in the service.
    pub fn create(self) -> Result<Subscriber<P, H>, SubscriberCreateError> {
        let svc = self.service;
        let id = PortId::unique().0;
        let slot = svc.claim_slot(SUBSCRIBERS, id, |_| {}).map_err(|full| {
            SubscriberCreateError::ExceedsMaxSubscribers {
                service: full.service,
                max: full.max,
            }
        })?;
        let max_pub = svc.config.qos.max_publishers;
        Ok(Subscriber {
            state: RefCell::new(SubState {
                conns: (0..max_pub).map(|_| None).collect(),
                pub_generation: u64::MAX,
                next: 0,
                pending: false,
                retired: Vec::new(),
                corrupted: None,
            }),
            borrowed: Cell::new(0),
            deferred: RefCell::new(Vec::with_capacity(svc.config.qos.max_borrowed)),
            max_borrowed: svc.config.qos.max_borrowed,
            returns: (0..max_pub).map(|_| Cell::new((0, 0))).collect(),
            slot,
            id,
            spin: self.spin,
            // SAFETY: `service` (the same Arc) is a field of the subscriber
            // and outlives every use of `view` and `column`.
            view: unsafe { svc.view_static() },
            column: Box::new([]),
            service: svc,
            fd_wake: Default::default(),
            _types: PhantomData,
        })
        .map(|mut sub| {
            sub.column = (0..max_pub).map(|p| sub.view.conn(p, slot)).collect();
            sub
        })
    }
}

#[derive(Debug)]
struct SubConn {
    pub_id: u64,
    generation: u64,
    head: u64,
    /// The publisher left (its slot changed): read what is queued, then
    /// disconnect.
    draining: bool,
    /// First chunk of the publisher's data segment in our mapping.
    chunks_base: NonNull<u8>,
    data: Arc<Pool>,
}

#[derive(Debug)]
struct SubState {
    /// Per publisher slot: the connection we read from.
    conns: Vec<Option<SubConn>>,
    pub_generation: u64,
    next: usize,
    /// Some publisher slot is taken but not connected to us yet.
    pending: bool,
    /// Mappings of connections that ended while samples from them may
    /// still be borrowed; released when no sample is borrowed.
    retired: Vec<Arc<Pool>>,
    /// Corrupted hold words found by `update_slow`, reported by the next
    /// receive: (publisher slot's departed id, reason).
    corrupted: Option<(u64, String)>,
}

impl SubState {
    fn disconnect(&mut self, p: usize) {
        if let Some(c) = self.conns[p].take() {
            self.retired.push(c.data);
        }
    }
}

/// Receives samples of a publish/subscribe service. Not `Sync`.
pub struct Subscriber<P: Payload + ?Sized, H: ShmSafe = NoHeader> {
    state: RefCell<SubState>,
    borrowed: Cell<usize>,
    /// Returns of dropped samples not yet written to the shared return
    /// queues: (publisher slot, generation, chunk). Written when the queue
    /// is polled empty (the subscriber is waiting anyway) or before
    /// `borrowed + deferred` would exceed `max_borrowed` (which the
    /// publisher's pool size counts on).
    deferred: RefCell<Vec<(usize, u64, u32)>>,
    max_borrowed: usize,
    /// Per publisher slot: (connection generation, returns pushed).
    returns: Vec<Cell<(u64, u64)>>,
    pub(super) slot: usize,
    id: u64,
    spin: Spin,
    /// The service segment, lifetime erased: valid while `service` lives.
    view: ServiceView<'static>,
    /// Our column of connections (one per publisher slot).
    column: Box<[Conn<'static>]>,
    pub(super) service: Arc<ServiceInner>,
    /// Wake-up descriptor state (events: pubsub/attach.rs).
    pub(crate) fd_wake: crate::sync::fdwake::FdWake,
    _types: super::Types<P, H>,
}

impl<P: Payload + ?Sized, H: ShmSafe> std::fmt::Debug for Subscriber<P, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("service", &self.service.config.name)
            .field("id", &format_args!("{:016x}", self.id))
            .finish()
    }
}

// SAFETY: the raw pointers (chunk bases, erased-lifetime views) point into
// mappings owned by this subscriber (its Arcs of the publishers' data and of
// the service) that move with it; shared words are atomics; process-local
// state is in RefCell/Cell, which are Send. Not Sync.
unsafe impl<P: Payload + ?Sized, H: ShmSafe> Send for Subscriber<P, H> {}

impl<P: Payload + ?Sized, H: ShmSafe> Drop for Subscriber<P, H> {
    fn drop(&mut self) {
        let view = self.view;
        let slot = &view.sub_slots()[self.slot];
        self.fd_wake.release(&slot.event, &slot.fd_armed); // events: attach.rs
        self.service.release_slot(SUBSCRIBERS, self.slot);
        // Departed publishers' samples queued for us are dropped: end
        // their holds (`departed`), after the slot release.
        super::departed::release_column(&view, &self.service.domain, self.slot, Some(self.id));
        for p in view.pub_slots() {
            p.event.wake_all();
        }
    }
}

enum Pop {
    Empty,
    Chunk(u32, usize),
    Gone,
    Corrupted(String),
}

impl<P: Payload + ?Sized, H: ShmSafe> Subscriber<P, H> {
    /// This subscriber's id.
    pub fn id(&self) -> PortId {
        PortId(self.id)
    }

    /// Number of publishers this subscriber is connected to now.
    pub fn publishers(&self) -> usize {
        let mut st = self.state.borrow_mut();
        self.update(&mut st);
        st.conns.iter().filter(|c| c.is_some()).count()
    }

    /// Rescans the publisher slots when they changed, and completes
    /// pending connections.
    #[inline]
    fn update(&self, st: &mut SubState) {
        let generation = self.view.header().generation[PUBLISHERS].load(Ordering::Acquire);
        if generation != st.pub_generation || st.pending {
            self.update_slow(st, generation);
        }
    }

    #[cold]
    fn update_slow(&self, st: &mut SubState, generation: u64) {
        let changed = generation != st.pub_generation;
        st.pub_generation = generation;
        st.pending = false;
        for (p, slot) in self.view.pub_slots().iter().enumerate() {
            if !changed && st.conns[p].is_some() {
                continue;
            }
            let pid = slot.id.load(Ordering::Acquire);
            if let Some(c) = st.conns[p].as_mut() {
                if c.pub_id != pid {
                    // The publisher left: samples it queued stay readable
                    // until the queue is empty or a new publisher of this
                    // slot continues after them (`departed`).
                    c.draining = true;
                    st.pending = true;
                }
                continue;
            }
            // A departed publisher's samples queued for us come first.
            match self.column[p].hold() {
                // (A hold on a connection linked to a former subscriber
                // of our slot is not ours: the cleanup ends it.)
                Ok(Some(hold))
                    if hold.pub_id != pid
                        && self.column[p].link.link.load(Ordering::Acquire) == self.id =>
                {
                    st.pending = true;
                    if let Some(c) = self.take_up_held(p, hold) {
                        st.conns[p] = Some(c);
                        // No returns: nobody would collect them.
                        self.returns[p].set((0, 0));
                    }
                    continue;
                }
                Ok(_) => {}
                Err(reason) => {
                    let id = self.column[p].link.kept.load(Ordering::Relaxed);
                    let _ = self.column[p].release_hold(id);
                    st.corrupted = Some((id, reason));
                }
            }
            if pid == 0 {
                continue;
            }
            st.pending = true;
            // The chunks of the publisher's pool, mapped: taken up only if
            // the connection did not change meanwhile (`Conn::take_up`).
            let Some((linked, (data, chunks_base))) = self.column[p].take_up(self.id, pid, || {
                let data = Pool::open(
                    &self.service.domain,
                    self.service.node.permissions(),
                    super::POOL,
                    pid,
                    &super::raw::element_layout::<P>(&self.service.config.payload),
                    &super::raw::header_layout::<P, H>(&self.service.config.header),
                )
                .ok()?;
                let g = data.geometry;
                let chunks = data
                    .segment
                    .data()
                    .sub(g.chunks_offset, g.chunk_size * g.chunks);
                let base = chunks.ok()?.base();
                Some((data, base))
            }) else {
                // Not connected yet (the publisher connects us on its next
                // send) or changed meanwhile: looked at again on the next
                // receive.
                continue;
            };
            st.conns[p] = Some(SubConn {
                pub_id: pid,
                generation: linked.generation,
                head: linked.head,
                draining: false,
                chunks_base,
                data: Arc::new(data),
            });
            self.returns[p].set((linked.generation, linked.ret_tail));
            st.pending = st.conns.iter().enumerate().any(|(q, c)| {
                c.is_none()
                    && (self.view.pub_slots()[q].id.load(Ordering::Relaxed) != 0
                        || (self.column[q].link.kept.load(Ordering::Relaxed) != 0
                            && self.column[q].link.link.load(Ordering::Relaxed) == self.id))
            });
        }
    }

    /// Maps the data segment of the departed publisher whose samples
    /// connection `p` holds for us; `None`: not now (tried again at the
    /// next receive), or the hold was stale and is ended.
    #[cold]
    fn take_up_held(&self, p: usize, hold: queue::Hold) -> Option<SubConn> {
        let mut missing = false;
        let taken = self.column[p].take_up_held(self.id, hold, || {
            let data = match Pool::open_if_exists(
                &self.service.domain,
                self.service.node.permissions(),
                super::POOL,
                hold.pub_id,
                &P::Element::LAYOUT,
                &H::LAYOUT,
            ) {
                Ok(data) => data,
                Err(None) => {
                    missing = true;
                    return None;
                }
                Err(Some(_)) => return None,
            };
            let g = data.geometry;
            let chunks = data
                .segment
                .data()
                .sub(g.chunks_offset, g.chunk_size * g.chunks);
            let base = chunks.ok()?.base();
            Some((data, base))
        });
        if missing {
            // Its name is gone: nothing to read, end the hold.
            super::departed::release(&self.view, &self.service.domain, p, self.slot, hold.pub_id);
        }
        let (head, (data, chunks_base)) = taken?;
        Some(SubConn {
            pub_id: hold.pub_id,
            generation: hold.generation,
            head,
            draining: true,
            chunks_base,
            data: Arc::new(data),
        })
    }

    /// The corrupted hold `update_slow` found, as an error (once).
    #[cold]
    fn corrupted_hold(st: &mut SubState) -> ReceiveError {
        let (id, reason) = st.corrupted.take().unwrap_or_default();
        ReceiveError::Corrupted {
            publisher: PortId(id),
            reason,
        }
    }

    /// Connection `p` to a departed publisher is drained (or the next
    /// publisher's entries follow): disconnect and end its hold, if any.
    #[cold]
    fn drained(&self, st: &mut SubState, p: usize) {
        let Some(pub_id) = st.conns[p].as_ref().map(|c| c.pub_id) else {
            return;
        };
        st.disconnect(p);
        st.pending = true;
        super::departed::release(&self.view, &self.service.domain, p, self.slot, pub_id);
    }

    #[inline]
    fn pop(&self, p: usize, c: &mut SubConn) -> Pop {
        match self.column[p].pop(&mut c.head, c.generation) {
            queue::Pop::Empty => Pop::Empty,
            queue::Pop::Gone => Pop::Gone,
            queue::Pop::Chunk(chunk, _) if chunk as usize >= c.data.geometry.chunks => {
                Pop::Corrupted(format!("chunk index {chunk} ≥ {}", c.data.geometry.chunks))
            }
            queue::Pop::Chunk(chunk, len) => Pop::Chunk(chunk, len),
        }
    }

    /// Takes the next sample if there is one; never blocks. If the wake-up
    /// descriptor is in use ([`wake_fd`](Self::wake_fd)), a call that finds
    /// nothing also re-arms it.
    pub fn try_receive(&self) -> Result<Option<Sample<'_, P, H>>, ReceiveError> {
        // events: with a wake-up descriptor, go through its protocol (attach.rs).
        if self.fd_wake.is_active() {
            return self.try_receive_armed();
        }
        self.try_receive_plain()
    }

    pub(super) fn try_receive_plain(&self) -> Result<Option<Sample<'_, P, H>>, ReceiveError> {
        let max = self.max_borrowed;
        if self.borrowed.get() + self.deferred.borrow().len() >= max {
            self.flush_returns();
            if self.borrowed.get() >= max {
                return Err(ReceiveError::ExceedsMaxBorrowed(max));
            }
        }
        let mut st = self.state.borrow_mut();
        if self.borrowed.get() == 0 && !st.retired.is_empty() {
            st.retired.clear();
        }
        // Twice at most: a drained connection of a publisher that left may
        // make room for its successor in the same slot.
        for _ in 0..2 {
            self.update(&mut st);
            if st.corrupted.is_some() {
                return Err(Self::corrupted_hold(&mut st));
            }
            let n = st.conns.len();
            let mut drained = false;
            for k in 0..n {
                let p = if st.next + k >= n {
                    st.next + k - n
                } else {
                    st.next + k
                };
                let Some(c) = st.conns[p].as_mut() else {
                    continue;
                };
                match self.pop(p, c) {
                    Pop::Empty => {
                        if c.draining {
                            self.drained(&mut st, p);
                            drained = true;
                        }
                    }
                    Pop::Gone => {
                        self.drained(&mut st, p);
                        drained = true;
                    }
                    Pop::Corrupted(reason) => {
                        let publisher = PortId(c.pub_id);
                        st.disconnect(p);
                        return Err(ReceiveError::Corrupted { publisher, reason });
                    }
                    Pop::Chunk(chunk, len) => {
                        if self.service.config.qos.overflow == Overflow::Block {
                            self.view.pub_slots()[p].event.wake_all();
                        }
                        let sample = self.sample(p, c, chunk, len);
                        st.next = if p + 1 == n { 0 } else { p + 1 };
                        return sample.map(Some);
                    }
                }
            }
            if !drained {
                break;
            }
        }
        drop(st);
        // Nothing to read: hand back what was dropped, off the critical path.
        self.flush_returns();
        Ok(None)
    }

    #[inline]
    fn sample(
        &self,
        p: usize,
        c: &SubConn,
        chunk: u32,
        len: usize,
    ) -> Result<Sample<'_, P, H>, ReceiveError> {
        let g = &c.data.geometry;
        // `P::RAW` is a constant: typed ports test only their own kind.
        let ok_len = if P::IS_SLICE || (P::RAW && self.service.config.slice) {
            len <= g.max_len
        } else {
            len == 1
        };
        if !ok_len {
            self.return_chunk(p, c.generation, chunk);
            return Err(ReceiveError::Corrupted {
                publisher: PortId(c.pub_id),
                reason: format!("sample length {len} (maximum {})", g.max_len),
            });
        }
        // `chunk < chunks` (checked in pop) and `len <= max_len`: the chunk
        // and its parts lie inside the mapping and are aligned, as
        // `pool::Geometry::read_region` checked when we connected.
        // SAFETY: see above; pointer arithmetic inside one mapping.
        let (base, header, payload) = unsafe {
            let base = c.chunks_base.add(chunk as usize * g.chunk_size);
            (
                base.cast::<ChunkHeader>(),
                base.add(g.header_offset).cast::<H>(),
                base.add(g.payload_offset).cast::<P::Element>(),
            )
        };
        self.borrowed.set(self.borrowed.get() + 1);
        Ok(Sample {
            subscriber: self,
            publisher: c.pub_id,
            publisher_slot: p,
            generation: c.generation,
            chunk,
            chunk_header: base,
            header,
            payload,
            len,
            _types: PhantomData,
        })
    }

    /// Writes the deferred returns to the shared return queues.
    #[inline]
    fn flush_returns(&self) {
        let mut deferred = self.deferred.borrow_mut();
        for (p, generation, chunk) in deferred.drain(..) {
            self.return_chunk(p, generation, chunk);
        }
    }

    /// Pushes `chunk` into the return queue of publisher slot `p`, if the
    /// connection is still the one it came from.
    fn return_chunk(&self, p: usize, generation: u64, chunk: u32) {
        let (current, tail) = self.returns[p].get();
        if current != generation {
            return; // The publisher reconnected or left: it reclaimed the chunk.
        }
        self.column[p].push_return(tail, generation, chunk);
        // `tail` was read from shared memory when we connected: wrap.
        self.returns[p].set((generation, tail.wrapping_add(1)));
    }

    /// Waits up to `timeout` for a sample: spins for the configured budget,
    /// then sleeps on the subscriber's futex word.
    pub fn receive_timeout(&self, timeout: Duration) -> Result<Sample<'_, P, H>, ReceiveError> {
        self.receive_inner(Some(timeout))?
            .ok_or(ReceiveError::Timeout(timeout))
    }

    /// Waits for a sample for as long as it takes.
    pub fn receive(&self) -> Result<Sample<'_, P, H>, ReceiveError> {
        loop {
            if let Some(s) = self.receive_inner(None)? {
                return Ok(s);
            }
        }
    }

    fn receive_inner(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<Sample<'_, P, H>>, ReceiveError> {
        let event = &self.view.sub_slots()[self.slot].event;
        event
            // Plain: spinning must not make the descriptor's drain syscall.
            .wait_until(self.spin, timeout, || self.try_receive_plain().transpose())
            .transpose()
    }
}

/// A received sample: a read-only view of the publisher's chunk. Dropping
/// it returns the chunk to the publisher.
pub struct Sample<'s, P: Payload + ?Sized, H: ShmSafe = NoHeader> {
    subscriber: &'s Subscriber<P, H>,
    publisher: u64,
    publisher_slot: usize,
    generation: u64,
    chunk: u32,
    chunk_header: NonNull<ChunkHeader>,
    header: NonNull<H>,
    payload: NonNull<P::Element>,
    len: usize,
    _types: super::Types<P, H>,
}

impl<P: Payload + ?Sized, H: ShmSafe> Drop for Sample<'_, P, H> {
    fn drop(&mut self) {
        let s = self.subscriber;
        s.borrowed.set(s.borrowed.get() - 1);
        let mut deferred = s.deferred.borrow_mut();
        deferred.push((self.publisher_slot, self.generation, self.chunk));
        if s.borrowed.get() + deferred.len() > s.max_borrowed {
            drop(deferred);
            s.flush_returns();
        }
    }
}

impl<P: Payload + ?Sized, H: ShmSafe> Sample<'_, P, H> {
    /// The user header.
    pub fn header(&self) -> &H {
        // SAFETY: in-bounds and aligned (checked when connecting); the
        // subscriber keeps the mapping while samples are borrowed; H is
        // valid for every bit pattern (ShmSafe).
        unsafe { self.header.as_ref() }
    }

    /// The publisher's sequence number of this sample (1, 2, …).
    pub fn sequence(&self) -> u64 {
        // SAFETY: the chunk was bounds-checked and is 64-byte aligned;
        // ChunkHeader is atomics only; the subscriber keeps the mapping
        // while samples are borrowed.
        unsafe { self.chunk_header.as_ref() }
            .seq
            .load(Ordering::Relaxed)
    }

    /// The id of the publisher that sent it.
    pub fn publisher_id(&self) -> PortId {
        PortId(self.publisher)
    }
}

impl<T: ShmSafe, H: ShmSafe> std::ops::Deref for Sample<'_, T, H> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: in-bounds and aligned (checked when connecting); the
        // subscriber keeps the read-only mapping while samples are
        // borrowed; T is valid for every bit pattern.
        unsafe { self.payload.as_ref() }
    }
}

impl<T: ShmSafe, H: ShmSafe> std::ops::Deref for Sample<'_, [T], H> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` elements checked in-bounds and aligned; as above.
        unsafe { std::slice::from_raw_parts(self.payload.as_ptr(), self.len) }
    }
}

impl<H: ShmSafe> Sample<'_, RawPayload, H> {
    /// The user header's bytes: the service's header type, `size` bytes
    /// (empty without a header).
    pub fn header_bytes(&self) -> &[u8] {
        let size = self.subscriber.service.config.header.size as usize;
        // SAFETY: the header region of the service's header layout was
        // checked in-bounds when connecting (`Pool::open` with that
        // layout); the mapping is kept while samples are borrowed; shared
        // bytes are initialised memory to this process.
        unsafe { std::slice::from_raw_parts(self.header.cast::<u8>().as_ptr(), size) }
    }

    /// Elements in the sample: 1 for a one-value service.
    pub fn elements(&self) -> usize {
        self.len
    }
}

impl<H: ShmSafe> std::ops::Deref for Sample<'_, RawPayload, H> {
    type Target = [u8];
    /// The payload's bytes: `elements × size` of the service's type.
    fn deref(&self) -> &[u8] {
        // Lossless on the 64-bit targets conduit supports; a size that
        // does not fit never maps a publisher (its geometry overflows).
        let size = self.subscriber.service.config.payload.size as usize;
        // SAFETY: `len` elements of the service's type were checked
        // in-bounds and aligned when connecting (`Geometry::read_region`
        // with this element size) and when taking the sample (`len` ≤
        // max_len); the subscriber keeps the read-only mapping while
        // samples are borrowed. The bytes of a shared mapping are
        // initialised memory to this process (written by the kernel or
        // another process), so reading them as `u8` is defined, padding
        // of a typed publisher's value included.
        unsafe { std::slice::from_raw_parts(self.payload.as_ptr(), self.len * size) }
    }
}
