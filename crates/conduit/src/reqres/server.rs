//! The server: taking requests from every client, its response pool,
//! streaming responses, and the end of each stream.
//!
//! Process-local bookkeeping (not shared): per response chunk the client
//! slot that may still hold it; per client slot the request queue we
//! linked, the response queue we connected, and how many of our chunks
//! that client holds (at most `active_requests × response_buffer`).

use crate::service::NoHeader;
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Overflow;
use super::layout::{CLIENTS, END_OF_STREAM, SERVERS, ServiceView};
use super::links::{Inbound, Links, PeerPool};
use super::service::ServiceInner;
use super::{ChunkHeader, DEFAULT_SPIN, LoanError};
use crate::loan::sealed::Lend;
use crate::loan::{Lender, LoanMut, LoanUninit};
use crate::pool::{Book, Pool};
use crate::queue::TakeBack;
use crate::queue::{self, Conn, Producer};
use crate::service::Payload;
use crate::service::PortId;
use crate::shm::{self, ShmSafe};
use crate::sync::{Spin, WaitResult};

/// How often, at most, a response send that finds the client's buffer
/// full looks for dead clients (whose buffers never drain).
const DEAD_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Why a server could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerCreateError {
    /// Every server slot of the service is taken (by live nodes).
    #[error("service {service:?} already has its maximum of {max} servers")]
    ExceedsMaxServers {
        /// The service.
        service: String,
        /// Its limit.
        max: usize,
    },
    /// The response type (or `max_slice_len` of them) is too large for a
    /// chunk pool.
    #[error("the response type (or max_slice_len of them) is too large for a chunk pool")]
    TypeTooLarge,
    /// The data segment could not be created.
    #[error("cannot create the server's data segment")]
    Segment(#[source] shm::CreateError),
}

/// Why a server's receive failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// `receive_timeout`: no request arrived in time.
    #[error("no request within {0:?}")]
    Timeout(Duration),
    /// Shared state written by a client is inconsistent (a bug or a
    /// hostile process); the connection to it was dropped.
    #[error("corrupted shared state from client {client}: {reason}")]
    Corrupted {
        /// The client's id.
        client: PortId,
        /// What is wrong.
        reason: String,
    },
}

/// Why a response could not be sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseSendError {
    /// The client dropped its pending response, left or died: nobody
    /// reads this stream any more.
    #[error("the client no longer waits for this request")]
    Disconnected,
    /// The client sent the request wanting no response
    /// ([`ActiveRequest::wants_response`] is false).
    #[error("the client wants no response to this request")]
    NoResponseWanted,
    /// The client holds `active_requests × response_buffer` of this
    /// server's responses already (it is slow to take or drop them). With
    /// [`Overflow::DropOldest`]: and the oldest it has not received is an
    /// end of stream, or it has received them all.
    #[error("the client's response buffer is full")]
    BufferFull,
    /// [`Overflow::Block`]: the client's response buffer stayed full for
    /// the server's block timeout.
    #[error("the client's response buffer stayed full for {0:?}")]
    Timeout(Duration),
}

/// Configures a [`Server`].
pub struct ServerBuilder<
    Req: Payload + ?Sized,
    Resp: Payload + ?Sized,
    ReqH: ShmSafe = NoHeader,
    RespH: ShmSafe = NoHeader,
> {
    service: Arc<ServiceInner>,
    spin: Spin,
    max_slice_len: usize,
    block_timeout: Duration,
    _types: super::Types<Req, Resp, ReqH, RespH>,
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> std::fmt::Debug
    for ServerBuilder<Req, Resp, ReqH, RespH>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("service", &self.service.config.name)
            .finish()
    }
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe>
    ServerBuilder<Req, Resp, ReqH, RespH>
{
    pub(crate) fn new(service: Arc<ServiceInner>) -> Self {
        ServerBuilder {
            service,
            spin: Spin::duration(DEFAULT_SPIN),
            max_slice_len: 64,
            block_timeout: super::DEFAULT_BLOCK_TIMEOUT,
            _types: PhantomData,
        }
    }

    crate::service::port_setters!(spin, max_slice_len, block_timeout);

    /// Creates the server (its response pool) and registers it.
    pub fn create(self) -> Result<Server<Req, Resp, ReqH, RespH>, ServerCreateError> {
        let svc = self.service;
        let qos = svc.config.qos;
        let chunks = qos.server_chunks();
        let max_len = if Resp::IS_SLICE {
            self.max_slice_len
        } else {
            1
        };
        let geometry = super::geometry(chunks, max_len, &Resp::Element::LAYOUT, &RespH::LAYOUT)
            .ok_or(ServerCreateError::TypeTooLarge)?;
        let (id, pool, slot) = svc
            .create_pool_port(SERVERS, super::POOL, geometry, |_| {})
            .map_err(|e| {
                e.into_port_error(ServerCreateError::Segment, |service, max| {
                    ServerCreateError::ExceedsMaxServers { service, max }
                })
            })?;
        // SAFETY: `service` (the same Arc) is a field of the server and
        // outlives every use of `view` and the connections taken from it.
        let view = unsafe { svc.view_static() };
        let clients = qos.max_clients;
        let server = Server {
            state: RefCell::new(ServerState {
                book: Book::new(chunks),
                held: vec![0; clients],
                links: Links::new(clients),
                next: 0,
            }),
            slot,
            id,
            pool,
            spin: self.spin,
            block_timeout: self.block_timeout,
            dropped: Cell::new(0),
            held_limit: qos.active_requests * qos.response_buffer,
            last_dead_check: Cell::new(None),
            fd_wake: Default::default(),
            requests_col: (0..clients).map(|c| view.request_conn(c, slot)).collect(),
            responses_row: (0..clients).map(|c| view.response_conn(slot, c)).collect(),
            view,
            service: svc,
            _types: PhantomData,
        };
        {
            let mut st = server.state.borrow_mut();
            server.update(&mut st);
        }
        Ok(server)
    }
}

#[derive(Debug)]
struct ServerState {
    /// Response chunks loaned, or held by a client (its slot's bit).
    book: Book,
    /// Per client slot: our chunks it may hold (sent, not yet collected
    /// back), bounded by `held_limit`.
    held: Vec<usize>,
    /// Response queues to, and request queues from, each client slot.
    links: Links,
    /// Round-robin start of the next receive.
    next: usize,
}

impl ServerState {
    /// Client slot `c` returned `chunk` (a corrupted return of a chunk it
    /// does not hold changes nothing).
    fn release(&mut self, chunk: u32, c: usize) {
        if self.book.release_holder(chunk, c) {
            self.held[c] = self.held[c].saturating_sub(1);
        }
    }
}

/// Answers requests of a request/response service. Not `Sync`: use one
/// server per thread.
pub struct Server<
    Req: Payload + ?Sized,
    Resp: Payload + ?Sized,
    ReqH: ShmSafe = NoHeader,
    RespH: ShmSafe = NoHeader,
> {
    state: RefCell<ServerState>,
    slot: usize,
    id: u64,
    pool: Pool,
    spin: Spin,
    /// How long a send waits under [`Overflow::Block`].
    block_timeout: Duration,
    /// Responses taken back unread under [`Overflow::DropOldest`].
    dropped: Cell<u64>,
    /// Most of our chunks one client may hold.
    held_limit: usize,
    last_dead_check: Cell<Option<Instant>>,
    /// The wake-up descriptor's state ([`Server::wake_fd`]).
    pub(crate) fd_wake: crate::sync::fdwake::FdWake,
    /// Per client slot: the request queue (client → server).
    requests_col: Box<[Conn<'static>]>,
    /// Per client slot: the response queue (server → client).
    responses_row: Box<[Conn<'static>]>,
    /// The service segment, lifetime erased: valid while `service` lives.
    view: ServiceView<'static>,
    pub(super) service: Arc<ServiceInner>,
    _types: super::Types<Req, Resp, ReqH, RespH>,
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> std::fmt::Debug
    for Server<Req, Resp, ReqH, RespH>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("service", &self.service.config.name)
            .field("id", &PortId(self.id))
            .finish()
    }
}

// SAFETY: the raw pointers (the pool's base, erased-lifetime views and
// connections) point into mappings owned by this server (its pool, its Arc
// of the service, the Arcs of the clients' pools) that move with it;
// shared words are atomics; process-local state is in RefCell/Cell, which
// are Send. Not Sync.
unsafe impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> Send
    for Server<Req, Resp, ReqH, RespH>
{
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> Drop
    for Server<Req, Resp, ReqH, RespH>
{
    fn drop(&mut self) {
        let own = &self.view.server_slots()[self.slot];
        self.fd_wake.release(&own.event, &own.fd_armed);
        self.service.release_slot(SERVERS, self.slot);
        // Clients waiting for our streams see the slot change.
        for c in self.view.client_slots() {
            super::wake(&self.service.domain, c);
        }
        self.pool.unlink();
    }
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe>
    Server<Req, Resp, ReqH, RespH>
{
    /// This server's id.
    pub fn id(&self) -> PortId {
        PortId(self.id)
    }

    /// Number of clients whose requests this server reads now.
    pub fn clients(&self) -> usize {
        let mut st = self.state.borrow_mut();
        self.update(&mut st);
        st.links.inb.iter().filter(|c| c.is_some()).count()
    }

    /// Responses this server took back unread from full client buffers
    /// under [`Overflow::DropOldest`] (their clients never see them).
    pub fn dropped_responses(&self) -> u64 {
        self.dropped.get()
    }

    /// What this server sent that its clients have not finished with:
    /// responses and stream ends not yet taken from the queues, plus
    /// responses taken but not yet given back (clients that left count
    /// for nothing). A server about to exit can wait for 0: a client that
    /// has not mapped this server's pool when the server exits loses what
    /// it has not read (its stream ends with
    /// [`ResponseError::ServerGone`](super::ResponseError::ServerGone)).
    pub fn undelivered(&self) -> usize {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        self.update(st);
        self.collect_returns(st);
        let queued: u64 = st
            .links
            .out
            .iter()
            .enumerate()
            .filter_map(|(c, o)| {
                o.map(|o| {
                    let conn = self.responses_row[c];
                    o.queued(conn).min(conn.capacity())
                })
            })
            .sum();
        queued as usize + st.held.iter().sum::<usize>()
    }

    #[inline]
    fn update(&self, st: &mut ServerState) {
        let generation = self.view.header().generation[CLIENTS].load(Ordering::Acquire);
        if st.links.stale(generation) {
            self.update_slow(st, generation);
        }
    }

    #[cold]
    fn update_slow(&self, st: &mut ServerState, generation: u64) {
        st.links.begin(generation);
        for (c, slot) in self.view.client_slots().iter().enumerate() {
            let cid = slot.id.load(Ordering::Acquire);
            if st.links.departed(c, cid).is_some() {
                // The client left: everything it held comes back.
                st.book.release_peer(c);
                st.held[c] = 0;
            }
            let core = &self.service;
            st.links.join(
                c,
                cid,
                || Producer::connect(self.responses_row[c], self.id, cid),
                || {
                    let pool = PeerPool {
                        chunks: core.config.qos.client_chunks(),
                        element: &Req::Element::LAYOUT,
                        header: &ReqH::LAYOUT,
                        slice: Req::IS_SLICE,
                    };
                    Inbound::take_up(self.requests_col[c], self.id, cid, core, pool)
                },
            );
        }
    }

    /// Takes the next request if there is one; never blocks. If the
    /// wake-up descriptor is in use ([`wake_fd`](Self::wake_fd)), a call
    /// that finds nothing also re-arms it.
    pub fn try_receive(
        &self,
    ) -> Result<Option<ActiveRequest<'_, Req, Resp, ReqH, RespH>>, ReceiveError> {
        if self.fd_wake.is_active() {
            let own = &self.view.server_slots()[self.slot];
            return self
                .fd_wake
                .poll(&own.event, &own.fd_armed, || {
                    self.try_receive_plain().transpose()
                })
                .transpose();
        }
        self.try_receive_plain()
    }

    fn try_receive_plain(
        &self,
    ) -> Result<Option<ActiveRequest<'_, Req, Resp, ReqH, RespH>>, ReceiveError> {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        self.update(st);
        let n = st.links.inb.len();
        for k in 0..n {
            let c = (st.next + k) % n;
            let Some(i) = st.links.inb[c].as_mut() else {
                continue;
            };
            match self.requests_col[c].pop(&mut i.head, i.generation) {
                queue::Pop::Empty => {}
                queue::Pop::Gone => {
                    st.links.inb[c] = None;
                    st.links.pending = true;
                }
                queue::Pop::Chunk(chunk, _) => {
                    let client = PortId(i.peer);
                    if chunk as usize >= i.pool.geometry.chunks {
                        let reason = format!("chunk index {chunk} ≥ {}", i.pool.geometry.chunks);
                        st.links.inb[c] = None;
                        return Err(ReceiveError::Corrupted { client, reason });
                    }
                    let header = i.pool.header::<ChunkHeader>(chunk);
                    let request_id = header.request_id.load(Ordering::Relaxed);
                    let meta = header.slot.load(Ordering::Relaxed);
                    let (request_slot, len, no_response) = super::meta::unpack(meta);
                    let wants_response = !no_response;
                    let active = self.service.config.qos.active_requests;
                    let max = i.pool.geometry.max_len as u64;
                    let bad = if request_slot >= active as u64 {
                        Some(format!("request slot {request_slot} ≥ {active}"))
                    } else if (Req::IS_SLICE && len > max) || (!Req::IS_SLICE && len != 1) {
                        Some(format!(
                            "request of {len} elements; this client's limit is {max}"
                        ))
                    } else {
                        None
                    };
                    if let Some(reason) = bad {
                        i.push_return(self.requests_col[c], chunk);
                        return Err(ReceiveError::Corrupted { client, reason });
                    }
                    st.next = (c + 1) % n;
                    let response = st.links.out[c]
                        .filter(|o| o.peer == i.peer)
                        .map(|o| o.generation);
                    return Ok(Some(ActiveRequest {
                        server: self,
                        client: c,
                        client_id: i.peer,
                        request_generation: i.generation,
                        response_generation: response,
                        chunk,
                        payload: i.pool.payload(chunk),
                        header: i.pool.user_header(chunk),
                        len: len as usize,
                        pool: i.pool.clone(),
                        request_id,
                        wants_response,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Waits for a request for as long as it takes.
    pub fn receive(&self) -> Result<ActiveRequest<'_, Req, Resp, ReqH, RespH>, ReceiveError> {
        loop {
            if let Some(r) = self.receive_inner(None)? {
                return Ok(r);
            }
        }
    }

    /// Waits up to `timeout` for a request: spins for the configured
    /// budget, then sleeps on the server's futex word.
    pub fn receive_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ActiveRequest<'_, Req, Resp, ReqH, RespH>, ReceiveError> {
        self.receive_inner(Some(timeout))?
            .ok_or(ReceiveError::Timeout(timeout))
    }

    fn receive_inner(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<ActiveRequest<'_, Req, Resp, ReqH, RespH>>, ReceiveError> {
        let event = &self.view.server_slots()[self.slot].event;
        event
            .wait_until(self.spin, timeout, || self.try_receive().transpose())
            .transpose()
    }

    fn take_chunk(&self) -> Result<u32, LoanError> {
        crate::pool::take_chunk(
            &self.state,
            |st| &mut st.book,
            self.service.config.qos.max_loans,
            |st| self.collect_returns(st),
            || {
                self.service.cleanup_dead_ports();
                self.update(&mut self.state.borrow_mut());
            },
        )
        .map_err(LoanError::from)
    }

    fn collect_returns(&self, st: &mut ServerState) {
        for c in 0..st.links.out.len() {
            self.collect_from(st, c);
        }
    }

    fn collect_from(&self, st: &mut ServerState, c: usize) {
        let Some(mut o) = st.links.out[c] else { return };
        o.collect_returns(self.responses_row[c], |chunk| st.release(chunk, c));
        st.links.out[c] = Some(o);
    }

    fn give_back(&self, chunk: u32) {
        self.state.borrow_mut().book.end_loan(chunk);
    }

    /// Sends loaned `chunk` as a response to `active`.
    fn respond(
        &self,
        active: &ActiveRequest<'_, Req, Resp, ReqH, RespH>,
        chunk: u32,
        len: usize,
    ) -> Result<(), ResponseSendError> {
        if !active.wants_response {
            return Err(ResponseSendError::NoResponseWanted);
        }
        if !active.is_connected() {
            return Err(ResponseSendError::Disconnected);
        }
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let c = active.client;
        let current = |st: &ServerState| {
            st.links.out[c].filter(|o| {
                o.peer == active.client_id && Some(o.generation) == active.response_generation
            })
        };
        let Some(mut o) = current(st) else {
            return Err(ResponseSendError::Disconnected);
        };
        if st.held[c] >= self.held_limit {
            self.collect_from(st, c);
            o = current(st).ok_or(ResponseSendError::Disconnected)?;
            if st.held[c] >= self.held_limit {
                o = self.make_room(st, active, &current)?;
            }
        }
        let conn = self.responses_row[c];
        // The pool and ring sizes make this impossible unless the client
        // scribbled on its head.
        if !o.has_room(conn) {
            return Err(ResponseSendError::BufferFull);
        }
        let header = self.pool.header::<ChunkHeader>(chunk);
        header
            .request_id
            .store(active.request_id, Ordering::Relaxed);
        header
            .slot
            .store(super::meta::pack(0, len, false), Ordering::Relaxed);
        o.push(conn, chunk, u64::from(active.request_id as u32));
        st.links.out[c] = Some(o);
        st.held[c] += 1;
        st.book.add_holder(chunk, c);
        st.book.end_loan(chunk);
        super::wake(&self.service.domain, &self.view.client_slots()[c]);
        Ok(())
    }

    /// Client `active.client` holds our whole buffer: what the response
    /// overflow policy says (see [`Qos::response_overflow`](super::Qos)).
    /// Returns the connection, with room, or why not.
    #[cold]
    fn make_room(
        &self,
        st: &mut ServerState,
        active: &ActiveRequest<'_, Req, Resp, ReqH, RespH>,
        current: &dyn Fn(&ServerState) -> Option<Producer>,
    ) -> Result<Producer, ResponseSendError> {
        let c = active.client;
        let gone = |st: &ServerState| !active.is_connected() || current(st).is_none();
        match self.service.config.qos.response_overflow {
            Overflow::Fail => {}
            Overflow::DropOldest => {
                let mut o = current(st).ok_or(ResponseSendError::Disconnected)?;
                // Never an end of stream: its request would never end.
                let taken =
                    o.take_back_oldest(self.responses_row[c], |chunk| chunk != END_OF_STREAM);
                st.links.out[c] = Some(o);
                if let TakeBack::Taken(chunk) = taken {
                    st.release(chunk, c);
                    self.dropped.set(self.dropped.get() + 1);
                    return Ok(o);
                }
            }
            Overflow::Block => {
                // Clients wake us after each return under this policy
                // (`client.rs`, `ReturnPath`); we also look for a dead
                // client every LIVENESS_CHECK.
                let deadline = Instant::now() + self.block_timeout;
                let event = &self.view.server_slots()[self.slot].event;
                loop {
                    let epoch = event.epoch();
                    self.collect_from(st, c);
                    if gone(st) {
                        return Err(ResponseSendError::Disconnected);
                    }
                    if st.held[c] < self.held_limit {
                        return current(st).ok_or(ResponseSendError::Disconnected);
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        self.check_dead(st);
                        return Err(if gone(st) {
                            ResponseSendError::Disconnected
                        } else {
                            ResponseSendError::Timeout(self.block_timeout)
                        });
                    }
                    let left = (deadline - now).min(super::LIVENESS_CHECK);
                    if matches!(event.wait(epoch, Some(left)), WaitResult::TimedOut) {
                        self.check_dead(st);
                    }
                }
            }
        }
        self.check_dead(st);
        Err(if gone(st) {
            ResponseSendError::Disconnected
        } else {
            ResponseSendError::BufferFull
        })
    }

    /// A full buffer that never drains may be a dead client's: look for
    /// dead ports at most every `DEAD_CHECK_INTERVAL`.
    #[cold]
    fn check_dead(&self, st: &mut ServerState) {
        let now = Instant::now();
        if self
            .last_dead_check
            .get()
            .is_some_and(|t| now.duration_since(t) < DEAD_CHECK_INTERVAL)
        {
            return;
        }
        self.last_dead_check.set(Some(now));
        self.service.cleanup_dead_ports();
        self.update(st);
    }

    /// `active` is dropped: return its request chunk, then end its
    /// stream (in this order: the client counts on the return being
    /// visible once it has read the end).
    fn end(&self, active: &ActiveRequest<'_, Req, Resp, ReqH, RespH>) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let c = active.client;
        if let Some(i) = st.links.inb[c].as_mut() {
            if i.peer == active.client_id && i.generation == active.request_generation {
                i.push_return(self.requests_col[c], active.chunk);
            }
        }
        let Some(mut o) = st.links.out[c] else { return };
        if o.peer != active.client_id || Some(o.generation) != active.response_generation {
            return;
        }
        let conn = self.responses_row[c];
        if !o.has_room(conn) {
            return; // Only a scribbled head gets here (see the layout docs).
        }
        o.push(conn, END_OF_STREAM, u64::from(active.request_id as u32));
        st.links.out[c] = Some(o);
        super::wake(&self.service.domain, &self.view.client_slots()[c]);
    }
}

/// A request taken by a server: a read-only view of the client's chunk,
/// and the stream of responses to it. Dropping it ends the stream (the
/// client sees [`ResponseError::EndOfStream`], or
/// [`ResponseError::Unanswered`] if nothing was sent) and returns the
/// request's chunk.
///
/// [`ResponseError::EndOfStream`]: super::ResponseError::EndOfStream
/// [`ResponseError::Unanswered`]: super::ResponseError::Unanswered
pub struct ActiveRequest<
    's,
    Req: Payload + ?Sized,
    Resp: Payload + ?Sized,
    ReqH: ShmSafe = NoHeader,
    RespH: ShmSafe = NoHeader,
> {
    server: &'s Server<Req, Resp, ReqH, RespH>,
    client: usize,
    client_id: u64,
    request_generation: u64,
    response_generation: Option<u64>,
    chunk: u32,
    payload: NonNull<Req::Element>,
    header: NonNull<ReqH>,
    /// Elements (1 for a typed request).
    len: usize,
    /// Keeps the client's pool mapped while we read the request.
    pool: Arc<Pool>,
    request_id: u64,
    wants_response: bool,
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> std::fmt::Debug
    for ActiveRequest<'_, Req, Resp, ReqH, RespH>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveRequest")
            .field("client", &PortId(self.client_id))
            .field("request_id", &self.request_id)
            .finish()
    }
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> Drop
    for ActiveRequest<'_, Req, Resp, ReqH, RespH>
{
    fn drop(&mut self) {
        self.server.end(self);
    }
}

impl<'s, Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe>
    ActiveRequest<'s, Req, Resp, ReqH, RespH>
{
    /// The request's user header (the service's
    /// [`request_header`](super::ReqResBuilder::request_header) type;
    /// [`NoHeader`] if it has none), as the client wrote it.
    pub fn header(&self) -> &ReqH {
        let _mapping = &self.pool;
        // SAFETY: the chunk index was bounds-checked against the client's
        // pool, whose geometry (made from the service's request header
        // type: aligned and room for ReqH) was checked when we mapped it;
        // `pool` keeps the mapping; ReqH is valid for every bit pattern
        // (ShmSafe); the mapping is read-only.
        unsafe { self.header.as_ref() }
    }

    /// The id of the client that sent it.
    pub fn client_id(&self) -> PortId {
        PortId(self.client_id)
    }

    /// The request's id (assigned by its client: 1, 2, …).
    pub fn request_id(&self) -> u64 {
        self.request_id
    }

    /// Whether the client still waits for responses: false once it
    /// dropped its pending response, or left, or died and was cleaned up
    /// (the server looks for dead clients when a client's buffer stays
    /// full; anyone may run the cleanup).
    pub fn is_connected(&self) -> bool {
        let view = self.server.view;
        // Acquire: pairs with the client's Release `fetch_or` of DROPPED in
        // the request chunk's meta word (`reqres::meta`).
        let meta = self
            .pool
            .header::<ChunkHeader>(self.chunk)
            .slot
            .load(Ordering::Acquire);
        self.wants_response
            && view.client_slots()[self.client].port() == self.client_id
            && meta & super::DROPPED == 0
    }

    /// Whether the client wants responses: false for a request sent with
    /// [`RequestMut::send_no_response`](super::RequestMut::send_no_response)
    /// (fire-and-forget), which cannot be answered.
    pub fn wants_response(&self) -> bool {
        self.wants_response
    }

    /// Loans a chunk for a response.
    fn loan_raw(
        &self,
        len: usize,
    ) -> Result<ResponseUninit<'_, 's, Req, Resp, ReqH, RespH>, LoanError> {
        let max = self.server.pool.geometry.max_len;
        if len > max {
            return Err(LoanError::SliceTooLong { len, max });
        }
        let chunk = self.server.take_chunk()?;
        // SAFETY: the payload of the server's chunk, aligned for the
        // element (geometry), room for `max_len ≥ len` elements, 1 when
        // typed; the user header before it, aligned for RespH (the
        // geometry was made from the service's response header type);
        // exclusively ours while loaned (no client holds it).
        Ok(unsafe {
            LoanUninit::new(
                self,
                chunk,
                self.server.pool.payload(chunk),
                self.server.pool.user_header(chunk),
                len,
            )
        })
    }
}

impl<'s, Req: Payload + ?Sized, Resp: ShmSafe, ReqH: ShmSafe, RespH: ShmSafe>
    ActiveRequest<'s, Req, Resp, ReqH, RespH>
{
    /// Loans a chunk for a response.
    pub fn loan_uninit(&self) -> Result<ResponseUninit<'_, 's, Req, Resp, ReqH, RespH>, LoanError> {
        self.loan_raw(1)
    }

    /// Copies `value` into a loaned chunk and sends it.
    pub fn send_copy(&self, value: Resp) -> Result<(), ResponseSendOrLoanError> {
        Ok(self.loan_uninit()?.write(value).send()?)
    }
}

impl<'s, Req: Payload + ?Sized, T: ShmSafe, ReqH: ShmSafe, RespH: ShmSafe>
    ActiveRequest<'s, Req, [T], ReqH, RespH>
{
    /// Loans a chunk for a slice response of `len` elements (at most the
    /// server's `max_slice_len`: else [`LoanError::SliceTooLong`]).
    pub fn loan_slice_uninit(
        &self,
        len: usize,
    ) -> Result<ResponseUninit<'_, 's, Req, [T], ReqH, RespH>, LoanError> {
        self.loan_raw(len)
    }

    /// Copies `values` into a loaned chunk and sends it.
    pub fn send_slice_copy(&self, values: &[T]) -> Result<(), ResponseSendOrLoanError>
    where
        T: Copy,
    {
        Ok(self
            .loan_slice_uninit(values.len())?
            .write_from_slice(values)
            .send()?)
    }
}

impl<T: ShmSafe, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> std::ops::Deref
    for ActiveRequest<'_, T, Resp, ReqH, RespH>
{
    type Target = T;
    fn deref(&self) -> &T {
        let _mapping = &self.pool;
        // SAFETY: the chunk index was bounds-checked against the client's
        // pool, whose geometry (aligned and sized for T) was checked when
        // we mapped it; `pool` keeps the mapping; T is valid for every
        // bit pattern (ShmSafe); the mapping is read-only.
        unsafe { self.payload.as_ref() }
    }
}

impl<T: ShmSafe, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> std::ops::Deref
    for ActiveRequest<'_, [T], Resp, ReqH, RespH>
{
    type Target = [T];
    fn deref(&self) -> &[T] {
        let _mapping = &self.pool;
        // SAFETY: as for a typed request; `len` was checked against the
        // client's `max_len` (the room of every chunk of its pool).
        unsafe { std::slice::from_raw_parts(self.payload.as_ptr(), self.len) }
    }
}

/// Why a response's `send_copy` failed: the loan or the send.
pub type ResponseSendOrLoanError = crate::loan::SendOrLoanError<ResponseSendError>;
crate::loan::send_or_loan_from!(ResponseSendError);

/// A loaned response chunk whose payload is not initialised yet.
/// Dropping it gives the chunk back unsent.
pub type ResponseUninit<'a, 's, Req, Resp, ReqH = NoHeader, RespH = NoHeader> =
    LoanUninit<'a, ActiveRequest<'s, Req, Resp, ReqH, RespH>, Resp>;

/// A loaned, initialised response, ready to [`send`](LoanMut::send) to the
/// request's client. On error the chunk goes back to the pool.
pub type ResponseMut<'a, 's, Req, Resp, ReqH = NoHeader, RespH = NoHeader> =
    LoanMut<'a, ActiveRequest<'s, Req, Resp, ReqH, RespH>, Resp>;

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> Lender<Resp>
    for ActiveRequest<'_, Req, Resp, ReqH, RespH>
{
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> Lend<Resp>
    for ActiveRequest<'_, Req, Resp, ReqH, RespH>
{
    type Header = RespH;
    type Sent<'a>
        = ()
    where
        Self: 'a;
    type Error = ResponseSendError;

    fn give_back(&self, chunk: u32) {
        self.server.give_back(chunk);
    }

    fn send_chunk(&self, chunk: u32, len: usize) -> Result<(), ResponseSendError> {
        self.server.respond(self, chunk, len)
    }
}
