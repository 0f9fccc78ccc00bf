//! The subscriber: taking samples, blocking receive, returning chunks.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{
    CHUNK_MASK, ChunkHeader, GEN_SHIFT, NoHeader, Payload, PubData, TAKEN, entry_gen, entry_seq,
};
use crate::service::ServiceInner;
use crate::service::layout::Overflow;
use crate::shm::ShmSafe;
use crate::sync::Spin;

/// Default spin budget of a blocking receive before it sleeps.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// Why a subscriber could not be created.
#[derive(Debug, thiserror::Error)]
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
pub enum ReceiveError {
    /// The subscriber holds `max_borrowed` samples already: drop one.
    #[error("the subscriber holds its maximum of {0} samples")]
    ExceedsMaxBorrowed(usize),
    /// `receive_timeout`: nothing arrived in time.
    #[error("no sample within {0:?}")]
    Timeout(Duration),
    /// Shared state written by a publisher is inconsistent (a bug or a
    /// hostile process); the connection to it was dropped.
    #[error("corrupted shared state from publisher {publisher:016x}: {reason}")]
    Corrupted {
        /// The publisher's id.
        publisher: u64,
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

    /// How long a blocking receive polls before it sleeps on the futex
    /// (default [`DEFAULT_SPIN`]; [`Spin::NONE`] sleeps at once).
    pub fn spin(mut self, spin: Spin) -> Self {
        self.spin = spin;
        self
    }

    /// Creates the subscriber and registers it in the service.
    pub fn create(self) -> Result<Subscriber<P, H>, SubscriberCreateError> {
        let svc = self.service;
        let id = crate::node::unique_id();
        let slot = super::publisher::claim_slot(&svc, false, id).ok_or_else(|| {
            SubscriberCreateError::ExceedsMaxSubscribers {
                service: svc.config.name.clone(),
                max: svc.config.qos.max_subscribers,
            }
        })?;
        let max_pub = svc.config.qos.max_publishers;
        Ok(Subscriber {
            state: RefCell::new(SubState {
                conns: vec![None; max_pub],
                pub_generation: u64::MAX,
                next: 0,
            }),
            borrowed: Cell::new(0),
            returns: (0..max_pub).map(|_| Cell::new((0, 0))).collect(),
            slot,
            id,
            spin: self.spin,
            service: svc,
            fd_wake: Default::default(),
            _types: PhantomData,
        })
    }
}

#[derive(Debug, Clone)]
struct SubConn {
    pub_id: u64,
    generation: u64,
    head: u64,
    data: Arc<PubData>,
}

#[derive(Debug)]
struct SubState {
    /// Per publisher slot: the connection we read from.
    conns: Vec<Option<SubConn>>,
    pub_generation: u64,
    next: usize,
}

/// Receives samples of a publish/subscribe service. Not `Sync`.
pub struct Subscriber<P: Payload + ?Sized, H: ShmSafe = NoHeader> {
    state: RefCell<SubState>,
    borrowed: Cell<usize>,
    /// Per publisher slot: (connection generation, returns pushed).
    returns: Vec<Cell<(u64, u64)>>,
    pub(super) slot: usize,
    id: u64,
    spin: Spin,
    pub(super) service: Arc<ServiceInner>,
    /// Wake-up descriptor state (events: pubsub/attach.rs).
    pub(super) fd_wake: crate::event::FdWake,
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

impl<P: Payload + ?Sized, H: ShmSafe> Drop for Subscriber<P, H> {
    fn drop(&mut self) {
        let view = self.service.shm();
        let slot = &view.sub_slots()[self.slot];
        self.fd_wake.release(&slot.event, &slot.fd_armed); // events: attach.rs
        slot.id.store(0, Ordering::Release);
        slot.node_id.store(0, Ordering::Release);
        view.header().sub_generation.fetch_add(1, Ordering::AcqRel);
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
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Number of publishers this subscriber is connected to now.
    pub fn publishers(&self) -> usize {
        let mut st = self.state.borrow_mut();
        self.update(&mut st);
        st.conns.iter().filter(|c| c.is_some()).count()
    }

    /// Rescans the publisher slots when they changed, and completes
    /// pending connections.
    fn update(&self, st: &mut SubState) {
        let view = self.service.shm();
        let generation = view.header().pub_generation.load(Ordering::Acquire);
        let changed = generation != st.pub_generation;
        st.pub_generation = generation;
        for (p, slot) in view.pub_slots().iter().enumerate() {
            if !changed && st.conns[p].is_some() {
                continue;
            }
            let pid = slot.id.load(Ordering::Acquire);
            if matches!(&st.conns[p], Some(c) if c.pub_id == pid) {
                continue;
            }
            st.conns[p] = None;
            if pid == 0 {
                continue;
            }
            let conn = view.conn(p, self.slot);
            if conn.link.link.load(Ordering::Acquire) != self.id
                || conn.link.pub_id.load(Ordering::Relaxed) != pid
            {
                continue; // The publisher connects us on its next send.
            }
            let cfg = &self.service.config;
            let element = P::Element::LAYOUT;
            if cfg.payload.size != element.size as u64 {
                continue;
            }
            let Ok(data) = PubData::open(&self.service.domain, pid, &element, &H::LAYOUT) else {
                continue;
            };
            st.conns[p] = Some(SubConn {
                pub_id: pid,
                generation: conn.link.generation.load(Ordering::Relaxed),
                head: 0,
                data: Arc::new(data),
            });
            let generation = conn.link.generation.load(Ordering::Relaxed);
            self.returns[p].set((generation, conn.ret_tail.load(Ordering::Acquire)));
        }
    }

    fn pop(&self, p: usize, c: &mut SubConn) -> Pop {
        let conn = self.service.shm().conn(p, self.slot);
        let cap = conn.entries.len() as u64;
        for _ in 0..(2 * cap + 4) {
            let e = &conn.entries[(c.head % cap) as usize];
            let v = e.word.load(Ordering::Acquire);
            let d = entry_seq(v).wrapping_sub((c.head + 1) as u32) as i32;
            if d < 0 {
                return Pop::Empty;
            }
            if entry_gen(v) != c.generation {
                return Pop::Gone;
            }
            if d > 0 {
                // Lapped: entries up to head + d - cap were overwritten.
                let newest = c.head + d as u64;
                c.head = (newest + 1).saturating_sub(cap).max(c.head + 1);
                continue;
            }
            if v & TAKEN != 0 {
                c.head += 1;
                continue;
            }
            // Written before the entry's Release store: visible after our
            // Acquire load, unless the publisher already moved on to a
            // later lap (then its sequence differs and we look again).
            let len = e.len.load(Ordering::Relaxed);
            if (len >> 32) as u32 != entry_seq(v) {
                continue;
            }
            // Acquire: see the chunk the publisher wrote before its Release.
            if e.word
                .compare_exchange(v, v | TAKEN, Ordering::Acquire, Ordering::Acquire)
                .is_ok()
            {
                c.head += 1;
                let chunk = (v & CHUNK_MASK) as u32;
                if chunk as usize >= c.data.geometry.chunks {
                    return Pop::Corrupted(format!(
                        "chunk index {chunk} ≥ {}",
                        c.data.geometry.chunks
                    ));
                }
                return Pop::Chunk(chunk, (len & 0xffff_ffff) as usize);
            }
        }
        Pop::Corrupted("the delivery queue does not settle".into())
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
        let max = self.service.config.qos.max_borrowed;
        if self.borrowed.get() >= max {
            return Err(ReceiveError::ExceedsMaxBorrowed(max));
        }
        let mut st = self.state.borrow_mut();
        self.update(&mut st);
        let n = st.conns.len();
        for k in 0..n {
            let p = (st.next + k) % n;
            let Some(mut c) = st.conns[p].take() else {
                continue;
            };
            match self.pop(p, &mut c) {
                Pop::Empty => st.conns[p] = Some(c),
                Pop::Gone => {}
                Pop::Corrupted(reason) => {
                    return Err(ReceiveError::Corrupted {
                        publisher: c.pub_id,
                        reason,
                    });
                }
                Pop::Chunk(chunk, len) => {
                    if self.service.config.qos.overflow == Overflow::Block {
                        self.service.shm().pub_slots()[p].event.wake_all();
                    }
                    let sample = self.sample(p, &c, chunk, len);
                    st.conns[p] = Some(c);
                    st.next = (p + 1) % n;
                    return match sample {
                        Ok(s) => Ok(Some(s)),
                        Err(reason) => Err(ReceiveError::Corrupted {
                            publisher: st.conns[p].as_ref().map_or(0, |c| c.pub_id),
                            reason,
                        }),
                    };
                }
            }
        }
        Ok(None)
    }

    fn sample(
        &self,
        p: usize,
        c: &SubConn,
        chunk: u32,
        len: usize,
    ) -> Result<Sample<'_, P, H>, String> {
        let g = &c.data.geometry;
        let giveback = || self.return_chunk(p, c.generation, chunk);
        let ok_len = if P::IS_SLICE {
            len <= g.max_len
        } else {
            len == 1
        };
        if !ok_len {
            giveback();
            return Err(format!("sample length {len} (maximum {})", g.max_len));
        }
        // Pointer arithmetic only (checked): the chunk itself is not read
        // until the user reads the sample.
        let region = match g.chunk(&c.data.segment.data(), chunk as usize) {
            Some(r) => r,
            None => {
                giveback();
                return Err("chunk out of range".into());
            }
        };
        let payload = region
            .resolve_slice::<P::Element>(g.payload_offset, len)
            .map_err(|e| e.to_string());
        let user = region
            .resolve::<H>(g.header_offset)
            .map_err(|e| e.to_string());
        let (payload, user) = match (payload, user) {
            (Ok(p), Ok(u)) => (p, u),
            (Err(e), _) | (_, Err(e)) => {
                giveback();
                return Err(e);
            }
        };
        self.borrowed.set(self.borrowed.get() + 1);
        Ok(Sample {
            subscriber: self,
            data: c.data.clone(),
            publisher_slot: p,
            generation: c.generation,
            chunk,
            chunk_header: region.base().cast::<ChunkHeader>(),
            header: user,
            payload,
            len,
            _types: PhantomData,
        })
    }

    /// Pushes `chunk` into the return queue of publisher slot `p`, if the
    /// connection is still the one it came from.
    fn return_chunk(&self, p: usize, generation: u64, chunk: u32) {
        let (current, tail) = self.returns[p].get();
        if current != generation {
            return; // The publisher reconnected or left: it reclaimed the chunk.
        }
        let conn = self.service.shm().conn(p, self.slot);
        let rcap = conn.returns.len() as u64;
        conn.returns[(tail % rcap) as usize].store(
            ((generation << GEN_SHIFT) | u64::from(chunk)) as u32,
            Ordering::Relaxed,
        );
        self.returns[p].set((generation, tail + 1));
        // Release: the entry above is visible to the publisher's Acquire.
        conn.ret_tail.store(tail + 1, Ordering::Release);
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
        let view = self.service.shm();
        let event = &view.sub_slots()[self.slot].event;
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
    data: Arc<PubData>,
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
        s.return_chunk(self.publisher_slot, self.generation, self.chunk);
    }
}

impl<P: Payload + ?Sized, H: ShmSafe> Sample<'_, P, H> {
    /// The user header.
    pub fn header(&self) -> &H {
        // SAFETY: checked in-bounds and aligned; the mapping lives as long
        // as `self.data`; H is valid for every bit pattern (ShmSafe).
        unsafe { self.header.as_ref() }
    }

    /// The publisher's sequence number of this sample (1, 2, …).
    pub fn sequence(&self) -> u64 {
        // SAFETY: the chunk region was bounds-checked and is 64-byte
        // aligned; ChunkHeader is atomics only; the mapping lives as long
        // as `self.data`.
        unsafe { self.chunk_header.as_ref() }
            .seq
            .load(Ordering::Relaxed)
    }

    /// The id of the publisher that sent it.
    pub fn publisher_id(&self) -> u64 {
        self.data
            .segment
            .data()
            .resolve::<super::PubHeader>(0)
            // SAFETY: checked; atomics only; mapping alive via self.data.
            .map(|h| unsafe { h.as_ref() }.id.load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}

impl<T: ShmSafe, H: ShmSafe> std::ops::Deref for Sample<'_, T, H> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: checked in-bounds and aligned; the read-only mapping lives
        // as long as `self.data`; T is valid for every bit pattern.
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
