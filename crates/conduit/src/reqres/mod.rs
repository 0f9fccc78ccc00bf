//! Request/response between processes: clients send typed requests to
//! every connected server, servers answer each with any number of
//! responses (a stream) and end it by dropping the active request;
//! zero-copy both ways, crash-safe.
//!
//! ```no_run
//! # use conduit::prelude::*;
//! # #[derive(ShmSafe, Clone, Copy)] #[repr(C)] struct Plan { goal: u64 }
//! # #[derive(ShmSafe, Clone, Copy)] #[repr(C)] struct Step { n: u64 }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::builder().name("planner").create()?;
//! let svc = node.service("planner/plan").request_response::<Plan, Step>().open_or_create()?;
//!
//! // In the server's process:
//! let server = svc.server().create()?;
//! let active = server.receive()?;                     // blocks: spin, then futex
//! for n in 0..active.goal {
//!     active.loan_uninit()?.write(Step { n }).send()?; // a stream of responses
//! }
//! drop(active);                                       // ends the stream
//!
//! // In the client's process:
//! let client = svc.client().create()?;
//! let pending = client.loan_uninit()?.write(Plan { goal: 3 }).send()?;
//! while let Ok(step) = pending.receive() {            // each response, zero-copy
//!     println!("step {}", step.n);
//! }                                                   // then ResponseError::EndOfStream
//! # Ok(()) }
//! ```
//!
//! # Design
//!
//! Built from the publish/subscribe parts, each side owning its memory:
//!
//! * a **client** owns a chunk pool in its own data segment `rrp.<id>`
//!   (servers map it read-only); a request is written into a chunk and its
//!   index pushed into one queue per connected server (client slot c →
//!   server slot s). The chunk comes back through that queue's return ring
//!   when the server drops the active request.
//! * a **server** owns a response pool (`rrp.<id>`, clients map it
//!   read-only); each response's index travels back through one queue per
//!   (server, client) pair, tagged with the request id, and returns when
//!   the client drops the [`Response`].
//! * the end of a stream is one more entry in that response queue (no
//!   chunk), pushed when the server drops the [`ActiveRequest`]; so it
//!   arrives after every response of the request.
//!
//! The queues are `crate::queue`'s single-producer connections, the same
//! code (and loom models) as publish/subscribe's; this module adds no new
//! lock-free step. The only new shared words are the client's `pending`
//! words (one per request slot, written by the client alone, read by
//! tools) and the chunk header's meta word (slot, length, the
//! no-response and dropped flags: `reqres::meta`): see `layout.rs`, "Every
//! shared word".
//!
//! Waiting: [`Server::receive`] and [`PendingResponse::receive`] poll for
//! a spin budget, then sleep on the futex word in their port's slot; the
//! other side's send wakes it with no system call when nobody sleeps.
//! Event loops wait on a descriptor instead: [`Server::wake_fd`] and
//! [`Client::wake_fd`] (one for all of a client's pending responses) are
//! readable when something may have arrived, a server and a pending
//! response attach to a [`WaitSet`](crate::waitset::WaitSet), and with
//! feature `tokio` `server.receive_async()` and
//! `pending.receive_async()` await (cancel-safe; the latter looks for dead
//! servers every [`LIVENESS_CHECK`] as the blocking receive does). The
//! sender pays a system call only while the other side is armed, idle on
//! its descriptor (`sync::fdwake`, `attach.rs`).
//!
//! # What a crash does
//!
//! * A server that drops an [`ActiveRequest`] without answering ends the
//!   stream: the client gets [`ResponseError::Unanswered`].
//! * A server killed while it holds requests: a client waiting for one
//!   keeps the responses that arrived, then gets
//!   [`ResponseError::ServerGone`]. A blocked client looks for dead servers
//!   every [`LIVENESS_CHECK`] while it sleeps (the service core's
//!   dead-port cleanup, which frees the slot and wakes every client), so
//!   no client hangs. A new server takes the freed slot.
//! * A client killed with requests in flight: servers see
//!   [`ActiveRequest::is_connected`] turn false and their responses fail
//!   with [`ResponseSendError::Disconnected`]; what the client held of each
//!   server's pool comes back when the server notices the departure (it
//!   rescans the client slots when their generation moves); the dead
//!   client's data segment is removed by the cleaner that frees its slot.
//!
//! # Data segment of a client or server `rrp.<id>` (data area)
//!
//! The chunk pool format of `crate::pool` (shared with publish/subscribe;
//! its module docs have the byte layout), with the user header of the
//! port's side (requests for a client's pool, responses for a server's;
//! [`NoHeader`](crate::service::NoHeader), zero-sized, when the service
//! has none) and this chunk header:
//!
//! ```text
//! 0      PoolHeader (128 B): id | chunks | chunk_size | chunks_offset | header_offset
//!                            | payload_offset | max_len (1, or the port's max_slice_len) | element_size | node_id
//! C      chunk × chunks (chunk_size each; C places the first chunk at an absolute multiple of the chunk alignment)
//! chunk: +0 ChunkHeader (request_id: u64, meta word: u64, see `meta`)
//!        +header_offset  user header H (header_offset = round_up(16, align H); zeroed at each loan)
//!        +payload_offset payload (payload_offset = round_up(header_offset + size H, max(align, 8)))
//! ```
//!
//! The header is written once, before the segment is ready; a reader
//! recomputes the geometry from `chunks` and the service's type and
//! requires every field to match, the chunk count to be the one the
//! service's QoS gives, and the segment to hold it
//! (`pool::Geometry::read_region`, then `open_pool`). The chunk header
//! is written by the owner before the chunk's index is pushed (Release)
//! and read by the other side after its Acquire take: a request's carries its request id and request slot
//! (bounds-checked by the server), a response's its request id (checked
//! by the client against the request it is filed under).
//!
//! # Files
//!
//! `service.rs` (builder, service, what it tells the service core,
//! listing), `layout.rs` (QoS, static configuration, segment layout, every
//! shared word), `client.rs` (client, request loans, pending responses),
//! `server.rs` (server, active requests, response loans), `links.rs` (a
//! port's queues with each peer), `attach.rs` (wake-up descriptors,
//! WaitSet), this file (the port data segment).
//!
//! # When a buffer is full ([`Overflow`])
//!
//! Neither queue can overflow (`layout.rs`); what fills is a client's
//! quota of requests in flight and a server's quota of responses at one
//! client. [`Qos::request_overflow`]: `Fail` (the default) fails the loan
//! with `ExceedsActiveRequests`; `Block` waits for a stream to end (the
//! client sleeps on its slot's event word, which servers bump after every
//! response and end of stream). [`Qos::response_overflow`]: `Fail` (the
//! default) is `BufferFull`; `Block` waits for the client to give
//! responses back (under this policy a client bumps the server slot's
//! event word after each return: one atomic add, a system call only if
//! the server sleeps); `DropOldest` takes back the oldest response the
//! client has not taken from its queue with the queue's own drop-oldest
//! CAS (`queue::Producer::take_back_oldest`, the protocol of
//! publish/subscribe's `DropOldest` and its loom models), never an end of
//! stream. Both waits look for dead peers every [`LIVENESS_CHECK`] and end
//! after the port's `block_timeout`.
//!
//! # Not yet
//!
//! A server's (client's) last words: what it sent is
//! lost when it exits before its peer mapped its pool (wait for
//! [`Server::undelivered`] / [`Client::in_flight`] to reach 0 first, as
//! `conduit serve` and `conduit call --no-response` do): see issues 13
//! and 19.

mod attach;
mod client;
pub(crate) mod layout;
mod links;
#[cfg(all(test, loom))]
mod loom_tests;
mod server;
pub(crate) mod service;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::pool::{Geometry, Pool};
use crate::shm::TypeLayout;

/// What a full response buffer, or a client with every request in
/// flight, does ([`Qos::response_overflow`], [`Qos::request_overflow`]):
/// the service core's policy type, shared with publish/subscribe.
pub use crate::service::Overflow;
pub use crate::service::PortInfo;
pub use client::{
    Client, ClientBuilder, ClientCreateError, LoanError, PendingResponse, RequestMut,
    RequestSendError, RequestUninit, Response, ResponseError, SendOrLoanError,
};
pub use layout::{MAX_PORTS, MAX_REQUESTS, Qos};
pub use server::{
    ActiveRequest, ReceiveError, ResponseMut, ResponseSendError, ResponseSendOrLoanError,
    ResponseUninit, Server, ServerBuilder, ServerCreateError,
};
pub(crate) use service::ReqRes;
pub use service::{
    ClientInfo, ReqResBuilder, ReqResService, ServiceDetails, ServiceInfo, details, list,
};

/// Default spin budget of a blocking receive before it sleeps.
pub use crate::service::DEFAULT_SPIN;

/// Default of the ports' `block_timeout` (how long a send or loan waits
/// under [`Overflow::Block`]).
pub const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// How often a blocked receive looks for dead peers (a server waiting for
/// requests does not need to; a client waiting for responses does).
pub const LIVENESS_CHECK: Duration = Duration::from_millis(50);

/// First 16 bytes of every chunk (see the module docs).
#[repr(C)]
pub(crate) struct ChunkHeader {
    /// The request id (client-assigned, 1, 2, …).
    pub(crate) request_id: AtomicU64,
    /// The meta word ([`meta`]): request slot (requests), element count,
    /// no-response flag.
    pub(crate) slot: AtomicU64,
}

/// Bit 63 of a request's meta word: the client wants no response
/// ([`RequestMut::send_no_response`]); the server refuses to answer it
/// ([`ResponseSendError::NoResponseWanted`]) and ends its stream as usual.
pub(crate) const NO_RESPONSE: u64 = 1 << 63;

/// Bit 62 of a request's meta word: the client dropped the pending
/// response ([`ActiveRequest::is_connected`] turns false).
pub(crate) const DROPPED: u64 = 1 << 62;

/// The chunk header's meta word (`ChunkHeader::slot`), written by the
/// chunk's owner before it pushes the chunk (Release), read by the peer
/// after its Acquire take:
///
/// ```text
///  63   62   61  48 47                   16 15           0
/// +----+----+------+------------------------+-------------+
/// | NR | DR |  0   | elements (u32)         | request slot|
/// +----+----+------+------------------------+-------------+
/// ```
///
/// `NR` = [`NO_RESPONSE`] (requests only); `DR` = [`DROPPED`] (requests
/// only: set by the client, `fetch_or` Release, when it drops the pending
/// response while servers still hold the chunk; servers read it, Acquire,
/// in `ActiveRequest::is_connected` — the line they read the request from,
/// so a connected request costs no extra cache miss before its first
/// response); the request slot is 0 in a response; elements is 1 for a
/// typed payload. The reader checks every
/// field (slot < `active_requests`, elements ≤ the pool's `max_len`, 1
/// when typed) and reports anything else as corruption.
pub(crate) mod meta {
    /// The request slot's bits.
    pub(crate) const SLOT_MASK: u64 = 0xFFFF;
    /// Where the element count starts.
    pub(crate) const LEN_SHIFT: u32 = 16;

    /// The meta word of a chunk of `len` elements in request slot `slot`.
    pub(crate) fn pack(slot: usize, len: usize, no_response: bool) -> u64 {
        debug_assert!(slot as u64 <= SLOT_MASK && len as u64 <= u64::from(u32::MAX));
        let flag = if no_response { super::NO_RESPONSE } else { 0 };
        slot as u64 | (len as u64) << LEN_SHIFT | flag
    }

    /// (request slot, elements, no response wanted), unchecked.
    pub(crate) fn unpack(word: u64) -> (u64, u64, bool) {
        let bits = word & !(super::NO_RESPONSE | super::DROPPED);
        (
            bits & SLOT_MASK,
            bits >> LEN_SHIFT,
            word & super::NO_RESPONSE != 0,
        )
    }
}

/// Most elements of a slice request or response (the meta word's field).
pub const MAX_SLICE_LEN: usize = u32::MAX as usize;

/// Fingerprint of the data segment format.
pub(crate) const DATA_FINGERPRINT: u64 = 0x5252_4441_5441_0002;

// SAFETY: two atomics (16 bytes, align 8): fits the pool's chunk header.
unsafe impl crate::pool::ChunkHead for ChunkHeader {}
const _: () = assert!(size_of::<ChunkHeader>() == crate::pool::CHUNK_HEADER_SIZE);

/// The pool geometry of `chunks` chunks of up to `max_len` elements of
/// `element` (no user header); `None` on overflow.
pub(crate) fn geometry(
    chunks: usize,
    max_len: usize,
    element: &TypeLayout,
    header: &TypeLayout,
) -> Option<Geometry> {
    let bad = |t: &TypeLayout| !t.align.is_power_of_two() || t.align > 4096;
    if bad(element) || bad(header) || max_len > MAX_SLICE_LEN {
        return None;
    }
    Geometry::new(chunks, max_len, element, header).filter(|g| g.data_size().is_some())
}

/// Wakes the port in `slot` after a delivery or a change it must see:
/// bumps its event word (no system call when nobody sleeps) and, if the
/// port armed its wake-up descriptor, sends it a wake byte
/// (`sync::fdwake`).
#[inline]
pub(crate) fn wake(domain: &crate::domain::Domain, slot: &crate::service::registry::PortSlot) {
    crate::sync::fdwake::wake(&slot.event, &slot.fd_armed, domain.wake_prefix(), || {
        slot.id.load(std::sync::atomic::Ordering::Acquire)
    });
}

/// Maps the data segment of the peer `id` read-only and checks it against
/// the expected chunk count and element type: a typed payload holds one
/// element per chunk, a slice (`slice`) as many as the peer chose.
pub(crate) fn open_pool(
    domain: &crate::domain::Domain,
    permissions: crate::shm::Permissions,
    id: u64,
    chunks: usize,
    payload: &TypeLayout,
    header: &TypeLayout,
    slice: bool,
) -> Result<Pool, String> {
    let pool = Pool::open(domain, permissions, POOL, id, payload, header)?;
    let max_len = if slice { pool.geometry.max_len } else { 1 };
    let expected = geometry(chunks, max_len, payload, header).ok_or("geometry overflows")?;
    if pool.geometry != expected {
        return Err(format!(
            "data segment geometry {:?} differs from the expected {expected:?}",
            pool.geometry
        ));
    }
    Ok(pool)
}

/// What names and marks clients' and servers' data segments.
pub(crate) const POOL: crate::pool::PoolKind = crate::pool::PoolKind {
    object: crate::domain::ObjectKind::PortData,
    fingerprint: DATA_FINGERPRINT,
};

/// Type marker of ports and samples: covariant, `Send` whatever the types.
pub(crate) type Types<Req, Resp, ReqH, RespH> = core::marker::PhantomData<(
    fn() -> *const Req,
    fn() -> *const Resp,
    fn() -> ReqH,
    fn() -> RespH,
)>;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::shm::ShmSafe;

    #[test]
    fn geometry_aligns_payloads_and_rejects_overflow() {
        for layout in [u8::LAYOUT, u64::LAYOUT, <[u64; 9]>::LAYOUT] {
            let g = geometry(5, 1, &layout, &crate::pool::NO_HEADER).unwrap();
            assert_eq!(g.chunk_size % 64, 0);
            assert_eq!(g.payload_offset % layout.align.max(16), 0);
            assert!(g.payload_offset + layout.size <= g.chunk_size);
            assert_eq!((g.chunks_offset + crate::shm::HEADER_SIZE) % 64, 0);
        }
        assert!(geometry(usize::MAX / 64, 1, &u64::LAYOUT, &crate::pool::NO_HEADER).is_none());
        assert!(geometry(2, MAX_SLICE_LEN + 1, &u8::LAYOUT, &crate::pool::NO_HEADER).is_none());
        let g = geometry(3, 100, &u16::LAYOUT, &crate::pool::NO_HEADER).unwrap();
        assert!(g.payload_offset + 200 <= g.chunk_size);
    }

    #[test]
    fn geometry_places_the_user_header_between_chunk_header_and_payload() {
        for header in [u8::LAYOUT, u64::LAYOUT, <[u64; 5]>::LAYOUT] {
            for element in [u8::LAYOUT, <[u32; 3]>::LAYOUT] {
                let g = geometry(4, 9, &element, &header).unwrap();
                assert_eq!(g.header_offset, 16, "after the 16-byte chunk header");
                assert!(g.header_offset + header.size <= g.payload_offset);
                assert_eq!(g.payload_offset % element.align.max(8), 0);
                assert!(g.payload_offset + 9 * element.size <= g.chunk_size);
            }
        }
        let wide = crate::shm::TypeLayout::leaf("Wide", 64, 64);
        let g = geometry(2, 1, &u8::LAYOUT, &wide).unwrap();
        assert_eq!((g.header_offset, g.payload_offset), (64, 128));
        let bad = crate::shm::TypeLayout::leaf("Bad", 8, 3);
        assert!(geometry(2, 1, &u8::LAYOUT, &bad).is_none());
    }
}
