//! The publisher: chunk pool, loans and sending.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::layout::{Conn, Overflow, PUBLISHERS, SUBSCRIBERS, ServiceView};
use super::{ChunkHeader, NoHeader, Payload, RawPayload, ServiceInner};
use crate::pool::{Book, Geometry, Pool};
use crate::queue::Producer;
use crate::service::{PortId, TypeLayoutInfo};
use crate::shm::{self, Segment, ShmSafe};

/// With [`Overflow::Fail`]: how often, at most, a send that finds a full
/// queue looks for dead subscribers (whose queues never drain).
const DEAD_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Why a publisher could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublisherCreateError {
    /// Every publisher slot of the service is taken (by live nodes).
    #[error("service {service:?} already has its maximum of {max} publishers")]
    ExceedsMaxPublishers {
        /// The service.
        service: String,
        /// Its limit.
        max: usize,
    },
    /// The maximum slice length makes chunks too large.
    #[error("a maximum slice length of {0} elements is too large")]
    SliceTooLarge(usize),
    /// The data segment could not be created.
    #[error("cannot create the publisher's data segment")]
    Segment(#[source] shm::CreateError),
}

/// Why a loan failed (shared by every port that loans chunks).
pub use crate::loan::LoanError;

/// Why a send failed (the sample was delivered to nobody).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// Overflow policy `Fail`: a subscriber's queue is full.
    #[error("a subscriber's queue is full")]
    QueueFull,
    /// Overflow policy `Block`: a subscriber's queue stayed full for the
    /// publisher's block timeout.
    #[error("a subscriber's queue stayed full for {0:?}")]
    Timeout(Duration),
}

/// Configures a [`Publisher`]; made by
/// [`PubSubService::publisher`](super::PubSubService::publisher).
pub struct PublisherBuilder<P: Payload + ?Sized, H: ShmSafe = NoHeader> {
    service: Arc<ServiceInner>,
    max_slice_len: usize,
    block_timeout: Duration,
    _types: super::Types<P, H>,
}

impl<P: Payload + ?Sized, H: ShmSafe> PublisherBuilder<P, H> {
    pub(crate) fn new(service: Arc<ServiceInner>) -> Self {
        PublisherBuilder {
            service,
            max_slice_len: 64,
            block_timeout: Duration::from_secs(1),
            _types: PhantomData,
        }
    }

    crate::service::port_setters!(max_slice_len, block_timeout);

    /// Creates the publisher: its data segment and its slot in the
    /// service. Frees slots of dead nodes if all are taken.
    pub fn create(self) -> Result<Publisher<P, H>, PublisherCreateError> {
        let svc = self.service;
        let qos = svc.config.qos;
        // A raw port's slice flag and element layout are the service's.
        let slice = P::IS_SLICE || (P::RAW && svc.config.slice);
        let max_len = if slice { self.max_slice_len } else { 1 };
        if max_len > u32::MAX as usize {
            return Err(PublisherCreateError::SliceTooLarge(max_len));
        }
        let chunks = qos.chunks_per_publisher();
        let element = super::raw::element_layout::<P>(&svc.config.payload);
        let geometry = Geometry::new(
            chunks,
            max_len,
            &element,
            &super::raw::header_layout::<P, H>(&svc.config.header),
        )
        .filter(|g| g.data_size().is_some())
        .ok_or(PublisherCreateError::SliceTooLarge(max_len))?;
        let (id, pool, slot) = svc
            .create_pool_port(PUBLISHERS, super::POOL, geometry, |_| {})
            .map_err(|e| {
                e.into_port_error(PublisherCreateError::Segment, |service, max| {
                    PublisherCreateError::ExceedsMaxPublishers { service, max }
                })
            })?;
        let Pool {
            segment,
            geometry,
            base: chunks_base,
        } = pool;
        let publisher = Publisher {
            state: RefCell::new(PubState {
                book: Book::new(chunks),
                lens: vec![0; chunks],
                history: VecDeque::new(),
                conns: vec![None; qos.max_subscribers],
                sub_generation: u64::MAX,
                seq: 0,
                dropped: 0,
            }),
            slot,
            id,
            geometry,
            _segment: segment,
            block_timeout: self.block_timeout,
            last_dead_check: std::cell::Cell::new(None),
            buffer: qos.subscriber_buffer as u64,
            chunks_base,
            // SAFETY: `service` (the same Arc) is a field of the publisher
            // and outlives every use of `view` and `row`.
            view: unsafe { svc.view_static() },
            row: Box::new([]),
            service: svc,
            _types: PhantomData,
        };
        let mut publisher = publisher;
        publisher.row = (0..qos.max_subscribers)
            .map(|s| publisher.view.conn(slot, s))
            .collect();
        publisher.update_connections();
        Ok(publisher)
    }
}

#[derive(Debug)]
struct PubState {
    /// Chunks loaned, held by subscribers (one bit per subscriber slot)
    /// or kept for history.
    book: Book,
    /// Length of the sample last sent in each chunk (for history).
    lens: Vec<u64>,
    history: VecDeque<u32>,
    conns: Vec<Option<Producer>>,
    sub_generation: u64,
    seq: u64,
    dropped: u64,
}

/// Sends samples of a publish/subscribe service. Not `Sync`: use one
/// publisher per thread.
pub struct Publisher<P: Payload + ?Sized, H: ShmSafe = NoHeader> {
    state: RefCell<PubState>,
    slot: usize,
    id: u64,
    geometry: Geometry,
    /// Our mapping of the data segment (its name is removed on drop, or
    /// later by the subscribers it holds samples for: `departed`).
    _segment: Segment,
    /// First chunk in our own mapping (chunk i is `i * chunk_size` further).
    chunks_base: NonNull<u8>,
    block_timeout: Duration,
    /// With [`Overflow::Fail`]: when a full queue last made us look for
    /// dead subscribers (see `wait_for_room`).
    last_dead_check: std::cell::Cell<Option<Instant>>,
    /// `subscriber_buffer`: most entries in one queue.
    buffer: u64,
    /// The service segment, lifetime erased: valid while `service` lives.
    view: ServiceView<'static>,
    /// Our row of connections (one per subscriber slot).
    row: Box<[Conn<'static>]>,
    service: Arc<ServiceInner>,
    _types: super::Types<P, H>,
}

impl<P: Payload + ?Sized, H: ShmSafe> std::fmt::Debug for Publisher<P, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("service", &self.service.config.name)
            .field("id", &format_args!("{:016x}", self.id))
            .finish()
    }
}

// SAFETY: the raw pointers (`chunks_base`, the erased-lifetime views)
// point into mappings owned by this publisher (its segment, its Arc of the
// service) that move with it; every shared word is atomic, and the
// process-local state is behind a RefCell, which is Send. Not Sync.
unsafe impl<P: Payload + ?Sized, H: ShmSafe> Send for Publisher<P, H> {}

impl<P: Payload + ?Sized, H: ShmSafe> Drop for Publisher<P, H> {
    fn drop(&mut self) {
        // Last words (`departed`): queues with unread samples hold the data
        // segment; it is removed now only if none does.
        let view = self.view;
        let domain = &self.service.domain;
        super::departed::hold_queued(&view, self.slot, self.id);
        self.service.release_slot(PUBLISHERS, self.slot);
        super::departed::unlink_unless_held(&view, domain, self.id);
    }
}

impl<P: Payload + ?Sized, H: ShmSafe> Publisher<P, H> {
    /// This publisher's id (its data segment is `pub.<id in hex>`).
    pub fn id(&self) -> PortId {
        PortId(self.id)
    }

    /// Samples replaced by newer ones under [`Overflow::DropOldest`]
    /// before their subscriber read them, so far.
    pub fn dropped(&self) -> u64 {
        self.state.borrow().dropped
    }

    /// Connects subscribers that joined (delivering history to them) and
    /// forgets those that left. `send` does this by itself; call it when a
    /// late joiner should get the history before the next send.
    #[inline]
    pub fn update_connections(&self) {
        let view = self.view;
        let generation = view.header().generation[SUBSCRIBERS].load(Ordering::Acquire);
        let mut st = self.state.borrow_mut();
        if generation == st.sub_generation {
            return;
        }
        self.update_connections_slow(&mut st, generation);
    }

    #[cold]
    fn update_connections_slow(&self, st: &mut PubState, generation: u64) {
        let view = self.view;
        st.sub_generation = generation;
        for (s, slot) in view.sub_slots().iter().enumerate() {
            let sid = slot.id.load(Ordering::Acquire);
            if matches!(st.conns[s], Some(c) if c.peer == sid) {
                continue;
            }
            if st.conns[s].take().is_some() {
                // The subscriber left: everything it held comes back.
                st.book.release_peer(s);
            }
            if sid == 0 {
                continue;
            }
            let conn = self.row[s];
            let mut c = match conn.hold() {
                // A departed publisher's samples are still queued for this
                // subscriber: continue after them (`departed`).
                Ok(Some(held))
                    if held.pub_id != self.id && conn.link.link.load(Ordering::Acquire) == sid =>
                {
                    conn.take_over(self.id, sid, held, self.buffer)
                }
                hold => {
                    let c = Producer::connect(conn, self.id, sid);
                    match hold {
                        // Stale (its subscriber left): the reset ends it.
                        Ok(Some(held)) => super::departed::release(
                            &view,
                            &self.service.domain,
                            self.slot,
                            s,
                            held.pub_id,
                        ),
                        Ok(None) => {}
                        // Not a valid hold: nothing to keep.
                        Err(_) => conn.link.kept.store(0, Ordering::SeqCst),
                    }
                    c
                }
            };
            // History, as much as fits after entries taken over.
            let queued = c.tail.wrapping_sub(c.head).min(self.buffer);
            let room = (self.buffer - queued) as usize;
            let skip = st.history.len().saturating_sub(room);
            let history: Vec<u32> = st.history.iter().skip(skip).copied().collect();
            for chunk in history {
                c.push(conn, chunk, st.lens[chunk as usize]);
                st.book.add_holder(chunk, s);
            }
            st.conns[s] = Some(c);
            super::attach::wake(&self.service, slot); // events: attach.rs
        }
    }

    /// Collects every returned chunk from every subscriber.
    fn collect_returns(&self, st: &mut PubState) {
        for s in 0..st.conns.len() {
            let Some(mut c) = st.conns[s] else { continue };
            c.collect_returns(self.row[s], |chunk| {
                st.book.release_holder(chunk, s);
            });
            st.conns[s] = Some(c);
        }
    }

    fn take_chunk(&self) -> Result<u32, LoanError> {
        crate::pool::take_chunk(
            &self.state,
            |st| &mut st.book,
            self.service.config.qos.max_loans,
            |st| self.collect_returns(st),
            || {
                self.service.cleanup_dead_ports();
                self.update_connections();
            },
        )
        .map_err(LoanError::from)
    }

    fn give_back(&self, chunk: u32) {
        self.state.borrow_mut().book.end_loan(chunk);
    }

    #[inline]
    fn chunk_ptr(&self, chunk: u32) -> NonNull<u8> {
        assert!((chunk as usize) < self.geometry.chunks);
        // SAFETY: chunk < chunks, so the offset stays inside the chunk area
        // of our mapping (checked at creation).
        unsafe {
            self.chunks_base
                .add(chunk as usize * self.geometry.chunk_size)
        }
    }

    fn loan_raw(&self, len: usize) -> Result<SampleUninit<'_, P, H>, LoanError> {
        if len > self.geometry.max_len {
            return Err(LoanError::SliceTooLong {
                len,
                max: self.geometry.max_len,
            });
        }
        let chunk = self.take_chunk()?;
        let base = self.chunk_ptr(chunk);
        // SAFETY: the chunk is `chunk_size` bytes inside our writable
        // mapping; the offsets come from our own geometry and are in range.
        let (header, payload) = unsafe {
            (
                base.add(self.geometry.header_offset).cast::<H>(),
                base.add(self.geometry.payload_offset),
            )
        };
        // SAFETY: `header` is aligned for H (geometry) and the chunk is ours
        // alone while loaned (no subscriber holds it).
        unsafe { header.as_ptr().write_bytes(0, 1) };
        if P::RAW {
            // SAFETY: a raw port's header is the service's recorded type,
            // `config.header.size` bytes at `header_offset` inside the
            // chunk (the geometry was made from that layout); ours alone.
            unsafe {
                header
                    .cast::<u8>()
                    .as_ptr()
                    .write_bytes(0, self.service.config.header.size as usize)
            };
        }
        Ok(SampleUninit {
            publisher: self,
            chunk: Some(chunk),
            base,
            header,
            payload,
            len,
            _types: PhantomData,
        })
    }

    /// Delivers `chunk` (holding `len` elements) to every connected
    /// subscriber, following the overflow policy.
    fn deliver(&self, chunk: u32, len: usize) -> Result<usize, SendError> {
        self.update_connections();
        let view = self.view;
        let overflow = self.service.config.qos.overflow;
        if overflow != Overflow::DropOldest {
            self.wait_for_room(overflow)?;
        }
        let mut st = self.state.borrow_mut();
        st.seq += 1;
        st.lens[chunk as usize] = len as u64;
        let seq = st.seq;
        let base = self.chunk_ptr(chunk);
        // SAFETY: the chunk header is the first 16 bytes of our chunk,
        // aligned to 64; it is atomics only.
        let header = unsafe { base.cast::<ChunkHeader>().as_ref() };
        header.len.store(len as u64, Ordering::Relaxed);
        header.seq.store(seq, Ordering::Relaxed);
        let subs = view.sub_slots();
        let mut reached = 0;
        #[allow(clippy::needless_range_loop)] // `st` is mutated inside.
        for s in 0..st.conns.len() {
            let Some(mut c) = st.conns[s] else { continue };
            let conn = self.row[s];
            // Only DropOldest can find the queue full here (the other
            // policies waited for room above).
            if let Some(old) = conn.make_room(c.tail, &mut c.head, self.buffer, c.generation) {
                st.dropped += 1;
                // For tools (`details`): rare, off the common path.
                conn.link.dropped.fetch_add(1, Ordering::Relaxed);
                st.book.release_holder(old, s);
            }
            c.push(conn, chunk, len as u64);
            st.book.add_holder(chunk, s);
            st.conns[s] = Some(c);
            // events: also wakes the subscriber's descriptor if armed (attach.rs).
            super::attach::wake(&self.service, &subs[s]);
            reached += 1;
        }
        let history = self.service.config.qos.history;
        if history > 0 {
            st.book.keep(chunk, true);
            st.history.push_back(chunk);
            if st.history.len() > history {
                let old = st.history.pop_front().expect("non-empty");
                st.book.keep(old, false);
            }
        }
        st.book.end_loan(chunk);
        if st.book.free_count() * 2 < st.book.len() {
            // Collect returns now, after the sample is out (its reader is
            // busy with it), rather than in the next loan's critical path.
            self.collect_returns(&mut st);
        }
        Ok(reached)
    }

    /// True if subscriber slot `s`'s queue has no room for one more entry.
    fn is_full(&self, st: &PubState, s: usize) -> bool {
        let Some(c) = st.conns[s] else { return false };
        let conn = self.row[s];
        let cap = self.buffer;
        let head = conn.head.load(Ordering::Acquire);
        c.tail.wrapping_sub(head) >= cap && c.tail >= head
    }

    fn any_full(&self) -> bool {
        let st = self.state.borrow();
        (0..st.conns.len()).any(|s| self.is_full(&st, s))
    }

    #[cold]
    fn wait_for_room(&self, overflow: Overflow) -> Result<(), SendError> {
        if !self.any_full() {
            return Ok(());
        }
        if overflow == Overflow::Fail {
            // A full queue of a dead subscriber never drains: look for dead
            // subscribers (system calls) at the first failure and then at
            // most every DEAD_CHECK_INTERVAL, so a publisher that retries
            // against a slow but live subscriber stays cheap.
            let now = Instant::now();
            let due = self
                .last_dead_check
                .get()
                .is_none_or(|t| now.duration_since(t) >= DEAD_CHECK_INTERVAL);
            if due {
                self.last_dead_check.set(Some(now));
                self.service.cleanup_dead_ports();
                self.update_connections();
                if !self.any_full() {
                    return Ok(());
                }
            }
            return Err(SendError::QueueFull);
        }
        let deadline = Instant::now() + self.block_timeout;
        let mut cleaned = false;
        loop {
            let event = &self.view.pub_slots()[self.slot].event;
            let epoch = event.epoch();
            self.update_connections();
            if !self.any_full() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                if !cleaned {
                    // A full queue of a dead subscriber never drains.
                    cleaned = true;
                    self.service.cleanup_dead_ports();
                    continue;
                }
                return Err(SendError::Timeout(self.block_timeout));
            }
            event.wait(epoch, Some(deadline - now));
        }
    }
}

impl<T: ShmSafe, H: ShmSafe> Publisher<T, H> {
    /// Loans an uninitialised sample (zero-copy): write it, then send it.
    pub fn loan_uninit(&self) -> Result<SampleUninit<'_, T, H>, LoanError> {
        self.loan_raw(1)
    }

    /// Loans a sample initialised with `T::default()`.
    pub fn loan(&self) -> Result<SampleMut<'_, T, H>, LoanError>
    where
        T: Default,
    {
        Ok(self.loan_uninit()?.write(T::default()))
    }

    /// Copies `value` into a chunk and sends it; returns the number of
    /// subscribers reached.
    pub fn send_copy(&self, value: T) -> Result<usize, SendOrLoanError> {
        Ok(self.loan_uninit()?.write(value).send()?)
    }
}

impl<T: ShmSafe, H: ShmSafe> Publisher<[T], H> {
    /// The longest slice this publisher can send.
    pub fn max_slice_len(&self) -> usize {
        self.geometry.max_len
    }

    /// Loans an uninitialised slice of `len` elements.
    pub fn loan_slice_uninit(&self, len: usize) -> Result<SampleUninit<'_, [T], H>, LoanError> {
        self.loan_raw(len)
    }

    /// Loans a slice of `len` elements, each `T::default()`.
    pub fn loan_slice(&self, len: usize) -> Result<SampleMut<'_, [T], H>, LoanError>
    where
        T: Default,
    {
        Ok(self.loan_slice_uninit(len)?.write_from_fn(|_| T::default()))
    }

    /// Copies `values` into a chunk and sends it.
    pub fn send_slice_copy(&self, values: &[T]) -> Result<usize, SendOrLoanError>
    where
        T: Copy,
    {
        Ok(self
            .loan_slice_uninit(values.len())?
            .write_from_slice(values)
            .send()?)
    }
}

impl<H: ShmSafe> Publisher<RawPayload, H> {
    /// The service's payload type (the element type of a slice service).
    pub fn payload_type(&self) -> TypeLayoutInfo {
        self.service.config.payload.info()
    }

    /// Whether the service carries slices of its payload type.
    pub fn is_slice(&self) -> bool {
        self.service.config.slice
    }

    /// The largest sample this publisher sends, in bytes: the type's
    /// size, or for a slice service
    /// [`max_slice_len`](PublisherBuilder::max_slice_len) times it.
    pub fn max_bytes(&self) -> usize {
        self.geometry.max_len * self.geometry.element_size
    }

    /// The number of elements of a `len`-byte sample, if the service's
    /// type allows that length.
    fn elements_of(&self, len: usize) -> Result<usize, LoanError> {
        let size = self.geometry.element_size;
        let slice = self.service.config.slice;
        let elements = match (slice, size) {
            (false, _) if len == size => Some(1),
            (true, 0) if len == 0 => Some(0),
            (true, size) if size > 0 && len % size == 0 => Some(len / size),
            _ => None,
        };
        elements.ok_or(LoanError::WrongLength { len, size, slice })
    }

    /// Loans an uninitialised sample of `len` bytes: exactly the type's
    /// size for a one-value service, a multiple of it up to
    /// [`max_bytes`](Self::max_bytes) for a slice service
    /// ([`LoanError::WrongLength`], [`LoanError::SliceTooLong`]
    /// otherwise). Write it, then [`assume_init`](SampleUninit::assume_init)
    /// and send it.
    pub fn loan_uninit(&self, len: usize) -> Result<SampleUninit<'_, RawPayload, H>, LoanError> {
        self.loan_raw(self.elements_of(len)?)
    }

    /// Loans a sample of `len` bytes (as [`loan_uninit`](Self::loan_uninit)),
    /// every byte zero.
    pub fn loan_zeroed(&self, len: usize) -> Result<SampleMut<'_, RawPayload, H>, LoanError> {
        let mut sample = self.loan_uninit(len)?;
        sample.payload_mut().fill(MaybeUninit::new(0));
        // SAFETY: every byte was just written.
        Ok(unsafe { sample.assume_init() })
    }

    /// Copies `bytes` (one value of the type, or a whole number of them
    /// for a slice service) into a chunk and sends it; returns the number
    /// of subscribers reached.
    pub fn send_copy(&self, bytes: &[u8]) -> Result<usize, SendOrLoanError> {
        let mut sample = self.loan_uninit(bytes.len())?;
        for (slot, b) in sample.payload_mut().iter_mut().zip(bytes) {
            slot.write(*b);
        }
        // SAFETY: the loan is `bytes.len()` bytes, all written above.
        Ok(unsafe { sample.assume_init() }.send()?)
    }
}

/// Why `send_copy` failed: the loan or the send.
pub type SendOrLoanError = crate::loan::SendOrLoanError<SendError>;
crate::loan::send_or_loan_from!(SendError);

/// A loaned chunk whose payload is not initialised yet. Dropping it gives
/// the chunk back unsent.
pub struct SampleUninit<'p, P: Payload + ?Sized, H: ShmSafe> {
    publisher: &'p Publisher<P, H>,
    chunk: Option<u32>,
    base: NonNull<u8>,
    header: NonNull<H>,
    payload: NonNull<u8>,
    len: usize,
    _types: super::Types<P, H>,
}

impl<P: Payload + ?Sized, H: ShmSafe> Drop for SampleUninit<'_, P, H> {
    fn drop(&mut self) {
        if let Some(chunk) = self.chunk {
            self.publisher.give_back(chunk);
        }
    }
}

impl<'p, P: Payload + ?Sized, H: ShmSafe> SampleUninit<'p, P, H> {
    /// The user header (zeroed at loan).
    pub fn header_mut(&mut self) -> &mut H {
        // SAFETY: aligned, in our chunk, exclusively ours while loaned;
        // zeroed at loan and H is valid for every bit pattern (ShmSafe).
        unsafe { self.header.as_mut() }
    }

    fn into_init(mut self) -> SampleMut<'p, P, H> {
        SampleMut {
            publisher: self.publisher,
            chunk: self.chunk.take(),
            base: self.base,
            header: self.header,
            payload: self.payload,
            len: self.len,
            _types: PhantomData,
        }
    }
}

impl<'p, T: ShmSafe, H: ShmSafe> SampleUninit<'p, T, H> {
    /// The payload memory.
    pub fn payload_mut(&mut self) -> &mut MaybeUninit<T> {
        // SAFETY: aligned for T (geometry), in our chunk, exclusively ours.
        unsafe { self.payload.cast::<MaybeUninit<T>>().as_mut() }
    }

    /// Writes the payload.
    pub fn write(mut self, value: T) -> SampleMut<'p, T, H> {
        self.payload_mut().write(value);
        self.into_init()
    }

    /// Declares the payload initialised (after writing it through
    /// [`payload_mut`](Self::payload_mut)).
    ///
    /// # Safety
    ///
    /// Every byte of the payload must have been written.
    pub unsafe fn assume_init(self) -> SampleMut<'p, T, H> {
        self.into_init()
    }
}

impl<'p, T: ShmSafe, H: ShmSafe> SampleUninit<'p, [T], H> {
    /// The payload memory.
    pub fn payload_mut(&mut self) -> &mut [MaybeUninit<T>] {
        // SAFETY: `len` ≤ max_len elements fit the chunk, aligned for T,
        // exclusively ours.
        unsafe {
            std::slice::from_raw_parts_mut(self.payload.cast::<MaybeUninit<T>>().as_ptr(), self.len)
        }
    }

    /// Fills element i with `f(i)`.
    pub fn write_from_fn(mut self, mut f: impl FnMut(usize) -> T) -> SampleMut<'p, [T], H> {
        for (i, slot) in self.payload_mut().iter_mut().enumerate() {
            slot.write(f(i));
        }
        self.into_init()
    }

    /// Copies `values` (exactly the loaned length) into the payload.
    ///
    /// # Panics
    ///
    /// If `values.len()` differs from the loaned length.
    pub fn write_from_slice(mut self, values: &[T]) -> SampleMut<'p, [T], H>
    where
        T: Copy,
    {
        assert_eq!(values.len(), self.len, "slice length differs from the loan");
        let payload = self.payload_mut();
        // SAFETY: `payload` is our loaned slice of exactly `values.len()`
        // elements (asserted), exclusively ours; `values` is a separate
        // borrow, so they do not overlap; T: Copy. One memcpy (the
        // library's, with its large-copy strategies) rather than an
        // element loop.
        unsafe {
            std::ptr::copy_nonoverlapping(
                values.as_ptr(),
                payload.as_mut_ptr().cast::<T>(),
                values.len(),
            );
        }
        self.into_init()
    }

    /// Declares the payload initialised.
    ///
    /// # Safety
    ///
    /// Every element must have been written.
    pub unsafe fn assume_init(self) -> SampleMut<'p, [T], H> {
        self.into_init()
    }
}

impl<'p, H: ShmSafe> SampleUninit<'p, RawPayload, H> {
    /// The user header's bytes (zeroed at loan): the service's header
    /// type, `size` bytes (empty without a header).
    pub fn header_bytes_mut(&mut self) -> &mut [u8] {
        let size = self.publisher.service.config.header.size as usize;
        // SAFETY: the geometry placed `size` header bytes at `header` in
        // our chunk, exclusively ours while loaned, zeroed at loan.
        unsafe { std::slice::from_raw_parts_mut(self.header.cast::<u8>().as_ptr(), size) }
    }

    /// The payload memory: the loaned length in bytes, aligned to the
    /// type's alignment (and to 8).
    pub fn payload_mut(&mut self) -> &mut [MaybeUninit<u8>] {
        let bytes = self.len * self.publisher.geometry.element_size;
        // SAFETY: `len` ≤ max_len elements of `element_size` bytes fit the
        // chunk (our geometry), exclusively ours while loaned.
        unsafe {
            std::slice::from_raw_parts_mut(self.payload.cast::<MaybeUninit<u8>>().as_ptr(), bytes)
        }
    }

    /// Declares the payload initialised.
    ///
    /// # Safety
    ///
    /// Every byte of the payload must have been written (the bytes of the
    /// shared mapping are initialised memory to the kernel, but Rust reads
    /// them as `u8` only after they were written).
    pub unsafe fn assume_init(self) -> SampleMut<'p, RawPayload, H> {
        self.into_init()
    }
}

/// A loaned, initialised sample: modify it, then [`send`](Self::send).
/// Dropping it gives the chunk back unsent.
pub struct SampleMut<'p, P: Payload + ?Sized, H: ShmSafe> {
    publisher: &'p Publisher<P, H>,
    chunk: Option<u32>,
    base: NonNull<u8>,
    header: NonNull<H>,
    payload: NonNull<u8>,
    len: usize,
    _types: super::Types<P, H>,
}

impl<P: Payload + ?Sized, H: ShmSafe> Drop for SampleMut<'_, P, H> {
    fn drop(&mut self) {
        if let Some(chunk) = self.chunk {
            self.publisher.give_back(chunk);
        }
    }
}

impl<P: Payload + ?Sized, H: ShmSafe> SampleMut<'_, P, H> {
    /// The user header.
    pub fn header_mut(&mut self) -> &mut H {
        // SAFETY: as in SampleUninit::header_mut.
        unsafe { self.header.as_mut() }
    }

    /// Sends the sample to every connected subscriber; returns how many it
    /// reached. On error the chunk goes back to the pool.
    pub fn send(mut self) -> Result<usize, SendError> {
        let chunk = self
            .chunk
            .take()
            .expect("a loan holds its chunk until sent");
        let _ = self.base;
        match self.publisher.deliver(chunk, self.len) {
            Ok(n) => Ok(n),
            Err(e) => {
                self.publisher.give_back(chunk);
                Err(e)
            }
        }
    }
}

impl<T: ShmSafe, H: ShmSafe> std::ops::Deref for SampleMut<'_, T, H> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: initialised (typestate), aligned, exclusively ours.
        unsafe { self.payload.cast::<T>().as_ref() }
    }
}

impl<T: ShmSafe, H: ShmSafe> std::ops::DerefMut for SampleMut<'_, T, H> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in deref.
        unsafe { self.payload.cast::<T>().as_mut() }
    }
}

impl<T: ShmSafe, H: ShmSafe> std::ops::Deref for SampleMut<'_, [T], H> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements, aligned, exclusively ours.
        unsafe { std::slice::from_raw_parts(self.payload.cast::<T>().as_ptr(), self.len) }
    }
}

impl<T: ShmSafe, H: ShmSafe> std::ops::DerefMut for SampleMut<'_, [T], H> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref.
        unsafe { std::slice::from_raw_parts_mut(self.payload.cast::<T>().as_ptr(), self.len) }
    }
}

impl<H: ShmSafe> SampleMut<'_, RawPayload, H> {
    /// The user header's bytes: the service's header type, `size` bytes
    /// (empty without a header).
    pub fn header_bytes_mut(&mut self) -> &mut [u8] {
        let size = self.publisher.service.config.header.size as usize;
        // SAFETY: as in `SampleUninit::header_bytes_mut`; initialised
        // (zeroed at loan).
        unsafe { std::slice::from_raw_parts_mut(self.header.cast::<u8>().as_ptr(), size) }
    }
}

impl<H: ShmSafe> std::ops::Deref for SampleMut<'_, RawPayload, H> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let bytes = self.len * self.publisher.geometry.element_size;
        // SAFETY: `len` elements of `element_size` bytes, initialised
        // (typestate), in our chunk, exclusively ours.
        unsafe { std::slice::from_raw_parts(self.payload.as_ptr(), bytes) }
    }
}

impl<H: ShmSafe> std::ops::DerefMut for SampleMut<'_, RawPayload, H> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let bytes = self.len * self.publisher.geometry.element_size;
        // SAFETY: as in deref.
        unsafe { std::slice::from_raw_parts_mut(self.payload.as_ptr(), bytes) }
    }
}
