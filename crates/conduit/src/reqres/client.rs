//! The client: its request pool, request loans, sending to every server,
//! and the pending responses that collect each request's stream.
//!
//! Process-local bookkeeping (not shared): per request chunk a holder
//! mask of the server slots that may still hold it; per request slot the
//! request in flight (id, servers still streaming, responses received and
//! not yet taken); per server slot the request queue we connected and
//! the response queue we linked. Everything the client reads from a
//! response queue is filed under its request here, so one poll serves
//! every pending response of the client.

use crate::service::NoHeader;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Overflow;
use super::layout::{CLIENTS, END_OF_STREAM, Pending, SERVERS, ServiceView};
use super::links::{Inbound, Links, PeerPool};
use super::service::ServiceInner;
use super::{ChunkHeader, DEFAULT_SPIN, LIVENESS_CHECK};
use crate::loan::sealed::Lend;
use crate::loan::{Lender, LoanMut, LoanUninit};
use crate::pool::{Book, Pool};
use crate::queue::{self, Conn, Producer};
use crate::service::Payload;
use crate::service::PortId;
use crate::service::registry::SlotArray;
use crate::shm::{self, ShmSafe};
use crate::sync::Spin;

/// Why a client could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientCreateError {
    /// Every client slot of the service is taken (by live nodes).
    #[error("service {service:?} already has its maximum of {max} clients")]
    ExceedsMaxClients {
        /// The service.
        service: String,
        /// Its limit.
        max: usize,
    },
    /// The request type (or `max_slice_len` of them) is too large for a
    /// chunk pool.
    #[error("the request type (or max_slice_len of them) is too large for a chunk pool")]
    TypeTooLarge,
    /// The data segment could not be created.
    #[error("cannot create the client's data segment")]
    Segment(#[source] shm::CreateError),
}

/// Why a loan (of a request by a client, or of a response by a server)
/// failed (shared by every port that loans chunks).
pub use crate::loan::LoanError;

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestSendError {
    /// No server is connected: nobody would answer.
    #[error("no server of service {0:?} is connected")]
    NoServer(String),
    /// The addressed server ([`RequestMut::send_to`]) is not connected
    /// (it left, died, or never was), or its request queue is full.
    #[error("server {0} is not connected")]
    NoSuchServer(PortId),
}

/// What ends a pending response's stream, or why a receive failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseError {
    /// Every server that got the request has ended its stream (dropped
    /// the active request), and every response has been received.
    #[error("end of the response stream")]
    EndOfStream,
    /// Every server that got the request ended its stream without
    /// sending a single response.
    #[error("the server(s) dropped the request without answering")]
    Unanswered,
    /// A server that got the request left or died before it ended its
    /// stream; the responses it sent before have been received.
    #[error("server {server} left or died before it ended the response stream")]
    ServerGone {
        /// The server's id.
        server: PortId,
    },
    /// `receive_timeout`: nothing arrived in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// Shared state written by a server is inconsistent (a bug or a
    /// hostile process); the connection to it was dropped.
    #[error("corrupted shared state from server {server}: {reason}")]
    Corrupted {
        /// The server's id.
        server: PortId,
        /// What is wrong.
        reason: String,
    },
}

/// Configures a [`Client`].
pub struct ClientBuilder<
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
    for ClientBuilder<Req, Resp, ReqH, RespH>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("service", &self.service.config.name)
            .finish()
    }
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe>
    ClientBuilder<Req, Resp, ReqH, RespH>
{
    pub(crate) fn new(service: Arc<ServiceInner>) -> Self {
        ClientBuilder {
            service,
            spin: Spin::duration(DEFAULT_SPIN),
            max_slice_len: 64,
            block_timeout: super::DEFAULT_BLOCK_TIMEOUT,
            _types: PhantomData,
        }
    }

    crate::service::port_setters!(spin, max_slice_len, block_timeout);

    /// Creates the client (its request pool) and registers it.
    pub fn create(self) -> Result<Client<Req, Resp, ReqH, RespH>, ClientCreateError> {
        let svc = self.service;
        let qos = svc.config.qos;
        let chunks = qos.client_chunks();
        let max_len = if Req::IS_SLICE { self.max_slice_len } else { 1 };
        let geometry = super::geometry(chunks, max_len, &Req::Element::LAYOUT, &ReqH::LAYOUT)
            .ok_or(ClientCreateError::TypeTooLarge)?;
        // SAFETY: `service` (the same Arc) is a field of the client and
        // outlives every use of `view` and of the connections and words
        // taken from it.
        let view = unsafe { svc.view_static() };
        let prepare = |i| {
            // Nobody reads the pending words of a free slot; reset them
            // before the id is published.
            for w in view.pending(i) {
                w.store(0, Ordering::Relaxed);
            }
        };
        let (id, pool, slot) = svc
            .create_pool_port(CLIENTS, super::POOL, geometry, prepare)
            .map_err(|e| {
                e.into_port_error(ClientCreateError::Segment, |service, max| {
                    ClientCreateError::ExceedsMaxClients { service, max }
                })
            })?;
        let servers = qos.max_servers;
        Ok(Client {
            state: RefCell::new(ClientState {
                book: Book::new(chunks),
                next_id: 1,
                requests: (0..qos.active_requests).map(|_| None).collect(),
                in_flight: 0,
                links: Links::new(servers),
                corrupted: None,
                spare: (0..qos.active_requests)
                    .map(|_| InFlight {
                        id: 0,
                        chunk: 0,
                        waiting: 0,
                        servers: vec![0; servers],
                        gone: None,
                        received: 0,
                        responses: VecDeque::with_capacity(qos.response_buffer),
                        alive: false,
                    })
                    .collect(),
            }),
            slot,
            id,
            pool,
            spin: self.spin,
            block_timeout: self.block_timeout,
            requests_row: (0..servers).map(|s| view.request_conn(slot, s)).collect(),
            responses_col: (0..servers).map(|s| view.response_conn(s, slot)).collect(),
            pending_words: view.pending(slot),
            fd_wake: Default::default(),
            view,
            service: svc,
            _types: PhantomData,
        })
    }
}

/// A response received and not yet taken.
#[derive(Debug)]
struct Buffered {
    server: usize,
    server_id: u64,
    generation: u64,
    chunk: u32,
    /// Elements (1 for a typed response).
    len: usize,
    pool: Arc<Pool>,
}

/// A request in flight, in request slot r.
#[derive(Debug)]
struct InFlight {
    id: u64,
    chunk: u32,
    /// Bit s: server slot s got the request and has not ended its stream.
    waiting: u64,
    /// The id of the server each bit of `waiting` stands for.
    servers: Vec<u64>,
    /// A server that left before ending its stream.
    gone: Option<u64>,
    received: u64,
    responses: VecDeque<Buffered>,
    /// The `PendingResponse` still exists.
    alive: bool,
}

#[derive(Debug)]
struct ClientState {
    /// Request chunks loaned, or held by servers (one bit per server
    /// slot).
    book: Book,
    next_id: u64,
    requests: Vec<Option<InFlight>>,
    in_flight: usize,
    /// Request queues to, and response queues from, each server slot.
    links: Links,
    /// Corruption found while draining, reported by the next receive.
    corrupted: Option<(u64, String)>,
    /// Records of freed request slots, reused by the next requests.
    spare: Vec<InFlight>,
}

impl ClientState {
    /// Server slot `s` no longer streams request slot `r`: free the slot
    /// if its pending response is gone too.
    fn finish(&mut self, r: usize, s: usize) {
        let Some(req) = self.requests[r].as_mut() else {
            return;
        };
        req.waiting &= !(1u64 << s);
        if req.waiting == 0 && !req.alive {
            self.free_request(r);
        }
    }

    /// Request slot `r` is free again; its record is kept for reuse (no
    /// allocation per request).
    fn free_request(&mut self, r: usize) {
        if let Some(old) = self.requests[r].take() {
            self.spare.push(old);
            self.in_flight -= 1;
        }
    }
}

/// Sends requests of a request/response service and receives their
/// responses. Not `Sync`: use one client per thread.
pub struct Client<
    Req: Payload + ?Sized,
    Resp: Payload + ?Sized,
    ReqH: ShmSafe = NoHeader,
    RespH: ShmSafe = NoHeader,
> {
    state: RefCell<ClientState>,
    slot: usize,
    id: u64,
    pool: Pool,
    spin: Spin,
    /// How long a loan waits under [`Overflow::Block`].
    block_timeout: Duration,
    /// The wake-up descriptor's state ([`Client::wake_fd`]).
    pub(crate) fd_wake: crate::sync::fdwake::FdWake,
    /// Per server slot: the request queue (client → server).
    requests_row: Box<[Conn<'static>]>,
    /// Per server slot: the response queue (server → client).
    responses_col: Box<[Conn<'static>]>,
    /// Our slot's pending words.
    pending_words: &'static [Pending],
    /// The service segment, lifetime erased: valid while `service` lives.
    view: ServiceView<'static>,
    pub(super) service: Arc<ServiceInner>,
    _types: super::Types<Req, Resp, ReqH, RespH>,
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> std::fmt::Debug
    for Client<Req, Resp, ReqH, RespH>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("service", &self.service.config.name)
            .field("id", &PortId(self.id))
            .finish()
    }
}

// SAFETY: the raw pointers (the pool's base, erased-lifetime views and
// connections) point into mappings owned by this client (its pool, its Arc
// of the service, the Arcs of the servers' pools) that move with it;
// shared words are atomics; process-local state is in a RefCell, which is
// Send. Not Sync.
unsafe impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> Send
    for Client<Req, Resp, ReqH, RespH>
{
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> Drop
    for Client<Req, Resp, ReqH, RespH>
{
    fn drop(&mut self) {
        for w in self.pending_words {
            w.store(0, Ordering::Release);
        }
        let own = &self.view.client_slots()[self.slot];
        self.fd_wake.release(&own.event, &own.fd_armed);
        self.service.release_slot(CLIENTS, self.slot);
        for s in self.view.server_slots() {
            super::wake(&self.service.domain, s);
        }
        self.pool.unlink();
    }
}

/// How a client returns response chunks to their servers.
#[derive(Clone, Copy)]
struct ReturnPath<'a> {
    /// Per server slot: the response queue (its return ring).
    cols: &'a [Conn<'static>],
    /// Under [`Overflow::Block`] for responses: the service's domain and
    /// its server slots, whose servers may wait for a return
    /// (`Server::respond`) and are woken after each.
    wake: Option<(&'a crate::domain::Domain, SlotArray<'static>)>,
}

/// Returns a response chunk to its server, if the connection is still the
/// one it came from (else the server took it back itself).
fn return_response(path: ReturnPath<'_>, st: &mut ClientState, b: &Buffered) {
    if let Some(c) = st.links.inb[b.server].as_mut() {
        if c.peer == b.server_id && c.generation == b.generation {
            c.push_return(path.cols[b.server], b.chunk);
            if let Some((domain, servers)) = path.wake {
                super::wake(domain, servers.get(b.server));
            }
        }
    }
}

/// What one poll of a request found.
enum Polled {
    Response(Buffered),
    Nothing,
    Ended(ResponseError),
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe>
    Client<Req, Resp, ReqH, RespH>
{
    /// This client's id.
    pub fn id(&self) -> PortId {
        PortId(self.id)
    }

    /// Number of servers this client sends requests to now.
    pub fn servers(&self) -> usize {
        let mut st = self.state.borrow_mut();
        self.update(&mut st);
        st.links.out.iter().filter(|c| c.is_some()).count()
    }

    /// The ids of the servers connected now (to address one with
    /// [`RequestMut::send_to`]).
    pub fn server_ids(&self) -> Vec<PortId> {
        let mut st = self.state.borrow_mut();
        self.update(&mut st);
        st.links
            .out
            .iter()
            .flatten()
            .map(|o| PortId(o.peer))
            .collect()
    }

    /// Requests in flight (sent, and not yet ended by every server that
    /// got them, or whose pending response still exists), after reading
    /// what arrived. A client about to exit after fire-and-forget requests
    /// can wait for 0: its requests go away with it (its pool is removed)
    /// if no server has taken them yet.
    pub fn in_flight(&self) -> usize {
        self.poll_all();
        self.state.borrow().in_flight
    }

    /// How this client returns response chunks.
    fn return_path(&self) -> ReturnPath<'_> {
        ReturnPath {
            cols: &self.responses_col,
            wake: (self.service.config.qos.response_overflow == Overflow::Block)
                .then(|| (&self.service.domain, self.view.server_slots())),
        }
    }

    /// Loans a chunk for a request of `len` elements (1 when typed).
    fn loan_raw(&self, len: usize) -> Result<RequestUninit<'_, Req, Resp, ReqH, RespH>, LoanError> {
        let max = self.pool.geometry.max_len;
        if len > max {
            return Err(LoanError::SliceTooLong { len, max });
        }
        let chunk = self.take_chunk()?;
        // SAFETY: the payload of our chunk, aligned for the element
        // (geometry), room for `max_len ≥ len` elements, 1 when typed; the
        // user header before it, aligned for ReqH (the geometry was made
        // from the service's request header type); exclusively ours while
        // loaned (no server holds it).
        Ok(unsafe {
            LoanUninit::new(
                self,
                chunk,
                self.pool.payload(chunk),
                self.pool.user_header(chunk),
                len,
            )
        })
    }

    #[inline]
    fn update(&self, st: &mut ClientState) {
        let generation = self.view.header().generation[SERVERS].load(Ordering::Acquire);
        if st.links.stale(generation) {
            self.update_slow(st, generation);
        }
    }

    #[cold]
    fn update_slow(&self, st: &mut ClientState, generation: u64) {
        st.links.begin(generation);
        for (s, slot) in self.view.server_slots().iter().enumerate() {
            let sid = slot.id.load(Ordering::Acquire);
            if let Some(gone) = st.links.departed(s, sid) {
                self.server_left(st, s, gone);
            }
            let core = &self.service;
            st.links.join(
                s,
                sid,
                || Producer::connect(self.requests_row[s], self.id, sid),
                || {
                    let pool = PeerPool {
                        chunks: core.config.qos.server_chunks(),
                        element: &Resp::Element::LAYOUT,
                        header: &RespH::LAYOUT,
                        slice: Resp::IS_SLICE,
                    };
                    Inbound::take_up(self.responses_col[s], self.id, sid, core, pool)
                },
            );
        }
    }

    /// Server `sid` of slot `s` left: file what it sent, then end every
    /// request it had not ended with `ServerGone`, and take back the
    /// request chunks it held.
    fn server_left(&self, st: &mut ClientState, s: usize, sid: u64) {
        if st.links.inb[s].as_ref().is_some_and(|c| c.peer == sid) {
            self.drain(st, s);
        }
        st.links.inb[s] = None;
        for r in 0..st.requests.len() {
            if let Some(req) = st.requests[r].as_mut() {
                if req.waiting & (1 << s) != 0 && req.servers[s] == sid {
                    req.gone = Some(sid);
                    st.finish(r, s);
                }
            }
        }
        st.book.release_peer(s);
    }

    /// Files every entry of server slot `s`'s response queue under its
    /// request.
    fn drain(&self, st: &mut ClientState, s: usize) {
        let conn = self.responses_col[s];
        loop {
            let Some(c) = st.links.inb[s].as_mut() else {
                return;
            };
            let (server_id, generation) = (c.peer, c.generation);
            match conn.pop(&mut c.head, generation) {
                queue::Pop::Empty => return,
                queue::Pop::Gone => {
                    st.links.inb[s] = None;
                    st.links.pending = true;
                    return;
                }
                queue::Pop::Chunk(chunk, tag) => {
                    let tag = tag as u32;
                    if chunk == END_OF_STREAM {
                        let r = st.requests.iter().position(|q| {
                            q.as_ref().is_some_and(|q| {
                                q.id as u32 == tag
                                    && q.waiting & (1 << s) != 0
                                    && q.servers[s] == server_id
                            })
                        });
                        if let Some(r) = r {
                            st.finish(r, s);
                        }
                        continue;
                    }
                    let pool = c.pool.clone();
                    if chunk as usize >= pool.geometry.chunks {
                        st.corrupted = Some((
                            server_id,
                            format!("chunk index {chunk} ≥ {}", pool.geometry.chunks),
                        ));
                        st.links.inb[s] = None;
                        return;
                    }
                    let header = pool.header::<ChunkHeader>(chunk);
                    let id = header.request_id.load(Ordering::Relaxed);
                    let (_, len, _) = super::meta::unpack(header.slot.load(Ordering::Relaxed));
                    let fits = if Resp::IS_SLICE {
                        len <= pool.geometry.max_len as u64
                    } else {
                        len == 1
                    };
                    if !fits {
                        let max = pool.geometry.max_len;
                        st.corrupted = Some((
                            server_id,
                            format!("response of {len} elements; this server's limit is {max}"),
                        ));
                        st.links.inb[s] = None;
                        return;
                    }
                    let buffered = Buffered {
                        server: s,
                        server_id,
                        generation,
                        chunk,
                        len: len as usize,
                        pool,
                    };
                    let target = st.requests.iter_mut().flatten().find(|q| {
                        q.id == id
                            && q.id as u32 == tag
                            && q.alive
                            && q.waiting & (1 << s) != 0
                            && q.servers[s] == server_id
                    });
                    match target {
                        Some(q) => {
                            q.received += 1;
                            q.responses.push_back(buffered);
                        }
                        // A response to a request whose pending response
                        // was dropped (or a stray one): give it back now.
                        None => return_response(self.return_path(), st, &buffered),
                    }
                }
            }
        }
    }

    /// Polls request slot `r` (id `id`).
    fn poll(&self, r: usize, id: u64) -> Polled {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        self.update(st);
        for s in 0..st.links.inb.len() {
            if st.links.inb[s].is_some() {
                self.drain(st, s);
            }
        }
        if let Some((server, reason)) = st.corrupted.take() {
            return Polled::Ended(ResponseError::Corrupted {
                server: PortId(server),
                reason,
            });
        }
        let Some(req) = st.requests[r].as_mut().filter(|q| q.id == id) else {
            return Polled::Ended(ResponseError::EndOfStream);
        };
        if let Some(b) = req.responses.pop_front() {
            return Polled::Response(b);
        }
        if req.waiting != 0 {
            return Polled::Nothing;
        }
        Polled::Ended(match (req.gone, req.received) {
            (Some(server), _) => ResponseError::ServerGone {
                server: PortId(server),
            },
            (None, 0) => ResponseError::Unanswered,
            (None, _) => ResponseError::EndOfStream,
        })
    }

    /// The pending response of request slot `r` is dropped.
    fn forget(&self, r: usize, id: u64) {
        // Release: servers that read 0 (Acquire) stop answering.
        self.pending_words[r].store(0, Ordering::Release);
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let Some(req) = st.requests[r].as_mut().filter(|q| q.id == id) else {
            return;
        };
        let header = self.pool.header::<ChunkHeader>(req.chunk);
        // Some server has not ended the stream: tell the servers on the
        // line they read the request from. Only while the chunk still
        // carries this request: a server may have given it back before
        // its end of stream, and the chunk may already carry a newer
        // request (only this thread writes `request_id`).
        if req.waiting != 0 && header.request_id.load(Ordering::Relaxed) == id {
            // Release: a server that reads the bit (Acquire) stops answering.
            header.slot.fetch_or(super::DROPPED, Ordering::Release);
        }
        req.alive = false;
        while let Some(b) = st.requests[r]
            .as_mut()
            .and_then(|q| q.responses.pop_front())
        {
            return_response(self.return_path(), st, &b);
        }
        if st.requests[r].as_ref().is_some_and(|q| q.waiting == 0) {
            st.free_request(r);
        }
    }

    fn take_chunk(&self) -> Result<u32, LoanError> {
        let mut st = self.state.borrow_mut();
        let qos = self.service.config.qos;
        if st.book.loans() >= qos.max_loans {
            return Err(LoanError::ExceedsMaxLoans(qos.max_loans));
        }
        if st.in_flight + st.book.loans() >= qos.active_requests {
            // Ended streams whose pending responses are gone free their
            // slots when the client next reads its queues.
            drop(st);
            self.poll_all();
            st = self.state.borrow_mut();
            if st.in_flight + st.book.loans() >= qos.active_requests {
                // Only a request in flight can end by itself (our loans
                // are the caller's to drop).
                let wait = qos.request_overflow == Overflow::Block && st.in_flight > 0;
                drop(st);
                if !wait || !self.wait_for_request_slot() {
                    return Err(LoanError::ExceedsActiveRequests(qos.active_requests));
                }
                st = self.state.borrow_mut();
            }
        }
        drop(st);
        crate::pool::take_chunk(
            &self.state,
            |st| &mut st.book,
            qos.max_loans,
            |st| self.collect_returns(st),
            || {
                self.service.cleanup_dead_ports();
                self.poll_all();
            },
        )
        .map_err(LoanError::from)
    }

    /// [`Overflow::Block`]: waits up to the block timeout for a request
    /// in flight to end (its stream ended and its pending response gone),
    /// sleeping on our slot's event word, which servers bump after each
    /// response and end of stream; looks for dead servers every
    /// [`LIVENESS_CHECK`]. Whether a request slot is free now.
    #[cold]
    fn wait_for_request_slot(&self) -> bool {
        let active = self.service.config.qos.active_requests;
        let deadline = Instant::now() + self.block_timeout;
        let event = &self.view.client_slots()[self.slot].event;
        loop {
            let epoch = event.epoch();
            self.poll_all();
            let st = self.state.borrow();
            if st.in_flight + st.book.loans() < active {
                return true;
            }
            if st.in_flight == 0 {
                return false;
            }
            drop(st);
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if matches!(
                event.wait(epoch, Some((deadline - now).min(LIVENESS_CHECK))),
                crate::sync::WaitResult::TimedOut
            ) {
                // Nothing for a while: a server we wait for may have died
                // (cleanup frees its slot and wakes us).
                self.service.cleanup_dead_ports();
            }
        }
    }

    /// Reads every response queue (and notices departed servers).
    fn poll_all(&self) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        self.update(st);
        for s in 0..st.links.inb.len() {
            if st.links.inb[s].is_some() {
                self.drain(st, s);
            }
        }
    }

    fn collect_returns(&self, st: &mut ClientState) {
        for s in 0..st.links.out.len() {
            let Some(mut o) = st.links.out[s] else {
                continue;
            };
            o.collect_returns(self.requests_row[s], |chunk| {
                st.book.release_holder(chunk, s);
            });
            st.links.out[s] = Some(o);
        }
    }

    /// Sends loaned `chunk` to every connected server.
    fn send(
        &self,
        chunk: u32,
        len: usize,
    ) -> Result<PendingResponse<'_, Req, Resp, ReqH, RespH>, RequestSendError> {
        let (slot, id) = self.send_request(chunk, len, true, None)?;
        Ok(PendingResponse {
            client: self,
            slot,
            id,
        })
    }

    /// Sends loaned `chunk` expecting no response: a request in flight
    /// until every server reached has ended it, with nobody waiting.
    fn send_no_response(&self, chunk: u32, len: usize) -> Result<(), RequestSendError> {
        let (slot, id) = self.send_request(chunk, len, false, None)?;
        self.forget(slot, id);
        Ok(())
    }

    /// Sends loaned `chunk` to server `to` only.
    fn send_to(
        &self,
        chunk: u32,
        len: usize,
        to: PortId,
    ) -> Result<PendingResponse<'_, Req, Resp, ReqH, RespH>, RequestSendError> {
        let (slot, id) = self.send_request(chunk, len, true, Some(to.0))?;
        Ok(PendingResponse {
            client: self,
            slot,
            id,
        })
    }

    /// Sends loaned `chunk` to every connected server (or to server `to`
    /// only) as request `id` in request slot `slot` (returned).
    fn send_request(
        &self,
        chunk: u32,
        len: usize,
        respond: bool,
        to: Option<u64>,
    ) -> Result<(usize, u64), RequestSendError> {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        self.update(st);
        let Some(r) = st.requests.iter().position(Option::is_none) else {
            unreachable!("loans and requests in flight never exceed active_requests");
        };
        let id = st.next_id;
        let header = self.pool.header::<ChunkHeader>(chunk);
        header.request_id.store(id, Ordering::Relaxed);
        header
            .slot
            .store(super::meta::pack(r, len, !respond), Ordering::Relaxed);
        // Before the request is visible to any server: a server that takes
        // it (Acquire on the entry) sees the request as connected (never,
        // without a response wanted).
        let pending = if respond { id } else { 0 };
        self.pending_words[r].store(pending, Ordering::Release);
        let mut req = st.spare.pop().expect("one record per request slot");
        let mut waiting = 0u64;
        for s in 0..st.links.out.len() {
            let Some(mut o) = st.links.out[s] else {
                continue;
            };
            if to.is_some_and(|to| to != o.peer) {
                continue;
            }
            let conn = self.requests_row[s];
            // Never more than `active_requests` entries: the check guards
            // against a server that scribbled on its head.
            if !o.has_room(conn) {
                continue;
            }
            o.push(conn, chunk, u64::from(id as u32));
            st.links.out[s] = Some(o);
            st.book.add_holder(chunk, s);
            waiting |= 1 << s;
            req.servers[s] = o.peer;
            super::wake(&self.service.domain, &self.view.server_slots()[s]);
        }
        if waiting == 0 {
            st.spare.push(req);
            self.pending_words[r].store(0, Ordering::Release);
            return Err(match to {
                Some(to) => RequestSendError::NoSuchServer(PortId(to)),
                None => RequestSendError::NoServer(self.service.config.name.clone()),
            });
        }
        st.next_id += 1;
        // Held by the servers reached (`waiting`), so not free yet.
        st.book.end_loan(chunk);
        st.in_flight += 1;
        req.id = id;
        req.chunk = chunk;
        req.waiting = waiting;
        req.gone = None;
        req.received = 0;
        req.responses.clear();
        req.alive = true;
        st.requests[r] = Some(req);
        Ok((r, id))
    }
}

impl<'c, Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe>
    LoanMut<'c, Client<Req, Resp, ReqH, RespH>, Req>
{
    /// Sends the request to server `server` only (one of
    /// [`Client::server_ids`]; every response comes from it). On error
    /// ([`RequestSendError::NoSuchServer`]) the chunk goes back to the
    /// pool.
    pub fn send_to(
        self,
        server: PortId,
    ) -> Result<PendingResponse<'c, Req, Resp, ReqH, RespH>, RequestSendError> {
        let (client, chunk, len) = self.into_parts();
        client
            .send_to(chunk, len, server)
            .inspect_err(|_| client.give_back(chunk))
    }

    /// Sends the request to every connected server, wanting no response
    /// (fire-and-forget): servers see [`ActiveRequest::wants_response`]
    /// false and cannot answer it. The request counts against
    /// `active_requests` until every server reached has dropped it. On
    /// error the chunk goes back to the pool.
    ///
    /// The request lives in the client's pool: a client dropped (or killed)
    /// before a server took the request withdraws it, and that server
    /// never sees it. A program that sends its last request this way and
    /// exits should first learn that it arrived (a response to a later
    /// request, or an event).
    ///
    /// [`ActiveRequest::wants_response`]: super::ActiveRequest::wants_response
    pub fn send_no_response(self) -> Result<(), RequestSendError> {
        let (client, chunk, len) = self.into_parts();
        client
            .send_no_response(chunk, len)
            .inspect_err(|_| client.give_back(chunk))
    }
}

/// Why a client's `send_copy` failed: the loan or the send.
pub type SendOrLoanError = crate::loan::SendOrLoanError<RequestSendError>;
crate::loan::send_or_loan_from!(RequestSendError);

/// A loaned request chunk whose payload is not initialised yet. Dropping
/// it gives the chunk back unsent.
pub type RequestUninit<'c, Req, Resp, ReqH = NoHeader, RespH = NoHeader> =
    LoanUninit<'c, Client<Req, Resp, ReqH, RespH>, Req>;

/// A loaned, initialised request, ready to [`send`](LoanMut::send) to
/// every connected server (which returns its [`PendingResponse`]). On
/// error the chunk goes back to the pool.
pub type RequestMut<'c, Req, Resp, ReqH = NoHeader, RespH = NoHeader> =
    LoanMut<'c, Client<Req, Resp, ReqH, RespH>, Req>;

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> Lender<Req>
    for Client<Req, Resp, ReqH, RespH>
{
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> Lend<Req>
    for Client<Req, Resp, ReqH, RespH>
{
    type Header = ReqH;
    type Sent<'c>
        = PendingResponse<'c, Req, Resp, ReqH, RespH>
    where
        Self: 'c;
    type Error = RequestSendError;

    fn give_back(&self, chunk: u32) {
        self.state.borrow_mut().book.end_loan(chunk);
    }

    fn send_chunk(
        &self,
        chunk: u32,
        len: usize,
    ) -> Result<PendingResponse<'_, Req, Resp, ReqH, RespH>, RequestSendError> {
        self.send(chunk, len)
    }
}

impl<Req: ShmSafe, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe>
    Client<Req, Resp, ReqH, RespH>
{
    /// Loans a chunk for a request.
    pub fn loan_uninit(&self) -> Result<RequestUninit<'_, Req, Resp, ReqH, RespH>, LoanError> {
        self.loan_raw(1)
    }

    /// Copies `value` into a loaned chunk and sends it.
    pub fn send_copy(
        &self,
        value: Req,
    ) -> Result<PendingResponse<'_, Req, Resp, ReqH, RespH>, SendOrLoanError> {
        Ok(self.loan_uninit()?.write(value).send()?)
    }

    /// Copies `value` into a loaned chunk and sends it wanting no response
    /// ([`RequestMut::send_no_response`]).
    pub fn send_copy_no_response(&self, value: Req) -> Result<(), SendOrLoanError> {
        Ok(self.loan_uninit()?.write(value).send_no_response()?)
    }
}

impl<T: ShmSafe, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe>
    Client<[T], Resp, ReqH, RespH>
{
    /// Loans a chunk for a slice request of `len` elements (at most the
    /// client's `max_slice_len`: else [`LoanError::SliceTooLong`]).
    pub fn loan_slice_uninit(
        &self,
        len: usize,
    ) -> Result<RequestUninit<'_, [T], Resp, ReqH, RespH>, LoanError> {
        self.loan_raw(len)
    }

    /// Copies `values` into a loaned chunk and sends it.
    pub fn send_slice_copy(
        &self,
        values: &[T],
    ) -> Result<PendingResponse<'_, [T], Resp, ReqH, RespH>, SendOrLoanError>
    where
        T: Copy,
    {
        Ok(self
            .loan_slice_uninit(values.len())?
            .write_from_slice(values)
            .send()?)
    }
}

/// The responses to one request, as they arrive. Dropping it tells the
/// servers that nobody waits any more ([`ActiveRequest::is_connected`]
/// turns false) and gives back the responses not taken.
///
/// [`ActiveRequest::is_connected`]: super::ActiveRequest::is_connected
pub struct PendingResponse<
    'c,
    Req: Payload + ?Sized,
    Resp: Payload + ?Sized,
    ReqH: ShmSafe = NoHeader,
    RespH: ShmSafe = NoHeader,
> {
    client: &'c Client<Req, Resp, ReqH, RespH>,
    slot: usize,
    id: u64,
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> std::fmt::Debug
    for PendingResponse<'_, Req, Resp, ReqH, RespH>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingResponse")
            .field("request_id", &self.id)
            .finish()
    }
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> Drop
    for PendingResponse<'_, Req, Resp, ReqH, RespH>
{
    fn drop(&mut self) {
        self.client.forget(self.slot, self.id);
    }
}

impl<'c, Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe>
    PendingResponse<'c, Req, Resp, ReqH, RespH>
{
    /// The client that sent the request.
    pub fn client(&self) -> &'c Client<Req, Resp, ReqH, RespH> {
        self.client
    }

    /// The request's id (1, 2, … per client).
    pub fn request_id(&self) -> u64 {
        self.id
    }

    /// The next response if one has arrived (`Ok(None)` if not yet);
    /// never blocks. Once every server that got the request has ended its
    /// stream and every response was taken: `Err` with
    /// [`ResponseError::EndOfStream`], [`ResponseError::Unanswered`] or
    /// [`ResponseError::ServerGone`], again on every later call.
    pub fn try_receive(&self) -> Result<Option<Response<'c, Resp, RespH>>, ResponseError> {
        let client = self.client;
        if client.fd_wake.is_active() {
            // Through the wake-up descriptor's protocol: re-arms it when
            // nothing is there (`sync::fdwake`).
            let own = &client.view.client_slots()[client.slot];
            return client
                .fd_wake
                .poll(&own.event, &own.fd_armed, || {
                    self.try_receive_plain().transpose()
                })
                .transpose();
        }
        self.try_receive_plain()
    }

    fn try_receive_plain(&self) -> Result<Option<Response<'c, Resp, RespH>>, ResponseError> {
        match self.client.poll(self.slot, self.id) {
            Polled::Response(b) => Ok(Some(self.response(b))),
            Polled::Nothing => Ok(None),
            Polled::Ended(e) => Err(e),
        }
    }

    fn response(&self, b: Buffered) -> Response<'c, Resp, RespH> {
        Response {
            payload: b.pool.payload(b.chunk),
            header: b.pool.user_header(b.chunk),
            len: b.len,
            returns: self.client.return_path(),
            state: &self.client.state,
            buffered: Some(b),
            _types: PhantomData,
        }
    }

    /// Waits for the next response (or the end of the stream) for as long
    /// as it takes; while it sleeps it looks for dead servers every
    /// [`LIVENESS_CHECK`].
    pub fn receive(&self) -> Result<Response<'c, Resp, RespH>, ResponseError> {
        loop {
            if let Some(r) = self.receive_inner(None)? {
                return Ok(r);
            }
        }
    }

    /// As [`receive`](Self::receive), for at most `timeout`
    /// ([`ResponseError::Timeout`]).
    pub fn receive_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Response<'c, Resp, RespH>, ResponseError> {
        self.receive_inner(Some(timeout))?
            .ok_or(ResponseError::Timeout(timeout))
    }

    fn receive_inner(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<Response<'c, Resp, RespH>>, ResponseError> {
        let client = self.client;
        let event = &client.view.client_slots()[client.slot].event;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut spin = client.spin;
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let slice = left.map_or(LIVENESS_CHECK, |l| l.min(LIVENESS_CHECK));
            if let Some(r) = event.wait_until(spin, Some(slice), || self.try_receive().transpose())
            {
                return r.map(Some);
            }
            if left.is_some_and(|l| l <= slice) {
                return Ok(None);
            }
            // Nothing for a while: a server we wait for may have died.
            // Cleanup frees its slot and wakes us (`port_reclaimed`).
            spin = Spin::NONE;
            client.service.cleanup_dead_ports();
        }
    }
}

/// A received response: a read-only view of the server's chunk. Dropping
/// it returns the chunk to the server.
pub struct Response<'c, Resp: Payload + ?Sized, RespH: ShmSafe = NoHeader> {
    payload: NonNull<Resp::Element>,
    header: NonNull<RespH>,
    /// Elements (1 for a typed response).
    len: usize,
    returns: ReturnPath<'c>,
    state: &'c RefCell<ClientState>,
    buffered: Option<Buffered>,
    _types: super::Types<(), Resp, (), RespH>,
}

impl<Resp: Payload + ?Sized, RespH: ShmSafe> std::fmt::Debug for Response<'_, Resp, RespH> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("server", &self.server_id())
            .finish()
    }
}

impl<Resp: Payload + ?Sized, RespH: ShmSafe> Drop for Response<'_, Resp, RespH> {
    fn drop(&mut self) {
        if let Some(b) = self.buffered.take() {
            let mut st = self.state.borrow_mut();
            return_response(self.returns, &mut st, &b);
        }
    }
}

impl<Resp: Payload + ?Sized, RespH: ShmSafe> Response<'_, Resp, RespH> {
    /// The id of the server that sent it.
    pub fn server_id(&self) -> PortId {
        PortId(self.buffered.as_ref().map_or(0, |b| b.server_id))
    }

    /// The response's user header (the service's
    /// [`response_header`](super::ReqResBuilder::response_header) type;
    /// [`NoHeader`] if it has none), as the server wrote it.
    pub fn header(&self) -> &RespH {
        // SAFETY: the header lies in the chunk, at the pool's
        // `header_offset`, aligned for RespH (the server's geometry, made
        // from the service's response header type and checked when we
        // mapped its pool); read-only mapping held by our Arc; RespH is
        // valid for every bit pattern (ShmSafe).
        unsafe { self.header.as_ref() }
    }
}

impl<T: ShmSafe, RespH: ShmSafe> std::ops::Deref for Response<'_, T, RespH> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the chunk index was bounds-checked against the server's
        // pool, whose geometry (aligned for T, sized for it) was checked
        // when we mapped it; the pool's mapping lives in the Arc we hold;
        // T is valid for every bit pattern (ShmSafe); the mapping is
        // read-only.
        unsafe { self.payload.as_ref() }
    }
}

impl<T: ShmSafe, RespH: ShmSafe> std::ops::Deref for Response<'_, [T], RespH> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: as for a typed response; `len` was checked against the
        // server's `max_len` (the room of every chunk of its pool).
        unsafe { std::slice::from_raw_parts(self.payload.as_ptr(), self.len) }
    }
}
