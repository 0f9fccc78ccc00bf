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
//! servers): see `layout.rs`, "Every shared word".
//!
//! Waiting: [`Server::receive`] and [`PendingResponse::receive`] poll for
//! a spin budget, then sleep on the futex word in their port's slot; the
//! other side's send wakes it with no system call when nobody sleeps.
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
//! ```text
//! 0      PortHeader line: id | node_id | chunks | chunk_size | chunks_offset | payload_offset | payload_size | payload_align
//! C      chunk × chunks (chunk_size each; C places the first chunk at an absolute multiple of the chunk alignment)
//! chunk: +0 ChunkHeader (request_id: u64, request slot: u64) | payload at payload_offset (the type's alignment, ≥ 16)
//! ```
//!
//! The header is written once, before the segment is ready; a reader
//! recomputes the geometry from `chunks` and the service's type and
//! requires every field to match and the segment to hold it
//! (`Geometry::read`). The chunk header is written by the owner before
//! the chunk's index is pushed (Release) and read by the other side after
//! its Acquire take: a request's carries its request id and request slot
//! (bounds-checked by the server), a response's its request id (checked
//! by the client against the request it is filed under).
//!
//! # Files
//!
//! `service.rs` (builder, service, what it tells the service core,
//! listing), `layout.rs` (QoS, static configuration, segment layout, every
//! shared word), `client.rs` (client, request loans, pending responses),
//! `server.rs` (server, active requests, response loans), this file (the
//! port data segment).
//!
//! # Not yet
//!
//! Slice payloads and user headers, addressing one server, fire-and-forget
//! requests, overflow policies for requests and responses (today a full
//! response buffer is `BufferFull`, and a request queue cannot fill), the
//! WaitSet and tokio, `conduit info`/`top`/`call`/`serve`: see issue 13.

mod client;
pub(crate) mod layout;
#[cfg(all(test, loom))]
mod loom_tests;
mod server;
pub(crate) mod service;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::shm::{Region, Segment, TypeLayout};

pub use client::{
    Client, ClientBuilder, ClientCreateError, LoanError, PendingResponse, RequestMut,
    RequestSendError, RequestUninit, Response, ResponseError, SendOrLoanError,
};
pub use layout::{MAX_PORTS, MAX_REQUESTS, Qos};
pub use server::{
    ActiveRequest, ReceiveError, ResponseMut, ResponseSendError, ResponseSendOrLoanError,
    ResponseUninit, Server, ServerBuilder, ServerCreateError,
};
pub(crate) use service::cleanup_domain;
pub use service::{ReqResBuilder, ReqResService, ServiceInfo, list};

/// Default spin budget of a blocking receive before it sleeps.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// How often a blocked receive looks for dead peers (a server waiting for
/// requests does not need to; a client waiting for responses does).
pub const LIVENESS_CHECK: Duration = Duration::from_millis(50);

/// Header line of a client's or server's data segment (written once
/// before the segment is ready).
#[repr(C, align(64))]
pub(crate) struct PortHeader {
    pub(crate) id: AtomicU64,
    pub(crate) node_id: AtomicU64,
    pub(crate) chunks: AtomicU64,
    pub(crate) chunk_size: AtomicU64,
    pub(crate) chunks_offset: AtomicU64,
    pub(crate) payload_offset: AtomicU64,
    pub(crate) payload_size: AtomicU64,
    pub(crate) payload_align: AtomicU64,
}

/// First 16 bytes of every chunk (see the module docs).
#[repr(C)]
pub(crate) struct ChunkHeader {
    /// The request id (client-assigned, 1, 2, …).
    pub(crate) request_id: AtomicU64,
    /// Requests: the client's request slot. Responses: 0.
    pub(crate) slot: AtomicU64,
}

/// Fingerprint of the data segment format.
pub(crate) const DATA_FINGERPRINT: u64 = 0x5252_4441_5441_0001;

/// Where the chunks of a pool are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) chunks: usize,
    pub(crate) chunk_size: usize,
    pub(crate) chunks_offset: usize,
    pub(crate) payload_offset: usize,
    pub(crate) payload_size: usize,
    pub(crate) payload_align: usize,
}

fn round_up(n: usize, align: usize) -> Option<usize> {
    Some(n.checked_add(align - 1)? / align * align)
}

impl Geometry {
    /// The geometry of `chunks` chunks of `payload`; `None` on overflow.
    pub(crate) fn new(chunks: usize, payload: &TypeLayout) -> Option<Geometry> {
        if !payload.align.is_power_of_two() || payload.align > 4096 {
            return None;
        }
        let payload_offset = round_up(size_of::<ChunkHeader>(), payload.align.max(16))?;
        let align = 64.max(payload.align);
        let chunk_size = round_up(payload_offset.checked_add(payload.size)?, align)?;
        let hs = crate::shm::HEADER_SIZE;
        let chunks_offset = round_up(hs + size_of::<PortHeader>(), align)? - hs;
        let g = Geometry {
            chunks,
            chunk_size,
            chunks_offset,
            payload_offset,
            payload_size: payload.size,
            payload_align: payload.align,
        };
        g.data_size()?;
        Some(g)
    }

    pub(crate) fn data_size(&self) -> Option<usize> {
        self.chunks_offset
            .checked_add(self.chunk_size.checked_mul(self.chunks)?)
    }

    fn write(&self, h: &PortHeader, id: u64, node_id: u64) {
        for (w, v) in [
            (&h.id, id),
            (&h.node_id, node_id),
            (&h.chunks, self.chunks as u64),
            (&h.chunk_size, self.chunk_size as u64),
            (&h.chunks_offset, self.chunks_offset as u64),
            (&h.payload_offset, self.payload_offset as u64),
            (&h.payload_size, self.payload_size as u64),
            (&h.payload_align, self.payload_align as u64),
        ] {
            w.store(v, Ordering::Relaxed);
        }
    }

    /// Reads a port's geometry from its data area and checks it against
    /// the region, the port id, the expected chunk count and the type.
    pub(crate) fn read(
        region: &Region,
        id: u64,
        chunks: usize,
        payload: &TypeLayout,
    ) -> Result<Geometry, String> {
        let h = region
            .resolve::<PortHeader>(0)
            .map_err(|e| format!("data segment too small: {e}"))?;
        // SAFETY: bounds and alignment checked; atomics only; the reference
        // does not outlive this function.
        let h = unsafe { h.as_ref() };
        let n = |w: &AtomicU64| usize::try_from(w.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        if h.id.load(Ordering::Relaxed) != id {
            return Err("data segment belongs to another port".into());
        }
        let found = Geometry {
            chunks: n(&h.chunks),
            chunk_size: n(&h.chunk_size),
            chunks_offset: n(&h.chunks_offset),
            payload_offset: n(&h.payload_offset),
            payload_size: n(&h.payload_size),
            payload_align: n(&h.payload_align),
        };
        let expected = Geometry::new(chunks, payload).ok_or("geometry overflows")?;
        if found != expected {
            return Err(format!(
                "data segment geometry {found:?} differs from the expected {expected:?}"
            ));
        }
        let size = found.data_size().ok_or("geometry overflows")?;
        if size > region.len() {
            return Err(format!(
                "data segment holds {} bytes, its geometry needs {size}",
                region.len()
            ));
        }
        Ok(found)
    }
}

/// A pool: the data segment and where its chunks are in our mapping.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) segment: Segment,
    pub(crate) geometry: Geometry,
    base: std::ptr::NonNull<u8>,
}

// SAFETY: `base` points into `segment`'s mapping, which moves with the
// pool and lives as long as it; every access through it is either to the
// owner's own chunks (the owner is not Sync) or read-only.
unsafe impl Send for Pool {}
// SAFETY: shared access only reads the pointer; see Send.
unsafe impl Sync for Pool {}

impl Pool {
    /// Creates the data segment of port `id` of node `node_id`.
    pub(crate) fn create(
        domain: &crate::domain::Domain,
        permissions: crate::shm::Permissions,
        id: u64,
        node_id: u64,
        geometry: Geometry,
    ) -> Result<Pool, crate::shm::CreateError> {
        let segment = Segment::builder(&crate::domain::Domain::port_data_segment(id))
            .domain(domain.name())
            .permissions(permissions)
            .size(geometry.data_size().expect("checked by Geometry::new"))
            .fingerprint(DATA_FINGERPRINT)
            .init(|region| {
                let h = region
                    .resolve::<PortHeader>(0)
                    .map_err(|e| format!("data segment too small: {e}"))?;
                // SAFETY: checked bounds/alignment; atomics only; the
                // reference does not outlive the init call.
                geometry.write(unsafe { h.as_ref() }, id, node_id);
                Ok(())
            })
            .create()?;
        Ok(Pool::with(segment, geometry))
    }

    fn with(segment: Segment, geometry: Geometry) -> Pool {
        let base = segment
            .data()
            .sub(
                geometry.chunks_offset,
                geometry.chunk_size * geometry.chunks,
            )
            .expect("the segment holds the geometry (created or checked)")
            .base();
        Pool {
            segment,
            geometry,
            base,
        }
    }

    /// Maps the data segment of the peer `id` read-only and checks it.
    pub(crate) fn open(
        domain: &crate::domain::Domain,
        permissions: crate::shm::Permissions,
        id: u64,
        chunks: usize,
        payload: &TypeLayout,
    ) -> Result<Pool, String> {
        let segment = Segment::builder(&crate::domain::Domain::port_data_segment(id))
            .domain(domain.name())
            .permissions(permissions)
            .fingerprint(DATA_FINGERPRINT)
            .read_only()
            .open()
            .map_err(|e| e.to_string())?;
        let geometry = Geometry::read(&segment.data(), id, chunks, payload)?;
        Ok(Pool::with(segment, geometry))
    }

    /// Chunk `i`'s start.
    ///
    /// # Panics
    ///
    /// If `i` is not a chunk of the pool (callers check indices read from
    /// shared memory first).
    #[inline]
    pub(crate) fn chunk(&self, i: u32) -> std::ptr::NonNull<u8> {
        assert!(
            (i as usize) < self.geometry.chunks,
            "chunk {i} out of range"
        );
        // SAFETY: i < chunks: the chunk lies inside the mapping (checked
        // when the pool was created or opened).
        unsafe { self.base.add(i as usize * self.geometry.chunk_size) }
    }

    /// Chunk `i`'s header.
    #[inline]
    pub(crate) fn header(&self, i: u32) -> &ChunkHeader {
        // SAFETY: in the mapping (`chunk`), 64-byte aligned; atomics only;
        // lives as long as the pool's mapping, which `&self` borrows.
        unsafe { self.chunk(i).cast::<ChunkHeader>().as_ref() }
    }

    /// Chunk `i`'s payload.
    #[inline]
    pub(crate) fn payload<T>(&self, i: u32) -> std::ptr::NonNull<T> {
        // SAFETY: payload_offset + size ≤ chunk_size (geometry), aligned
        // for the service's type, which the caller's `T` is (its layout
        // was checked against the service's type when the service opened).
        unsafe { self.chunk(i).add(self.geometry.payload_offset).cast() }
    }

    /// Removes the segment's name (the owner, on drop).
    pub(crate) fn unlink(&self) {
        let _ = self.segment.unlink();
    }
}

/// The node id recorded in port data segment `name` of `domain` (`None`
/// if it cannot be opened or read).
pub(crate) fn data_segment_node(
    domain: &crate::domain::Domain,
    name: &str,
    permissions: crate::shm::Permissions,
) -> Option<u64> {
    let segment = Segment::builder(name)
        .domain(domain.name())
        .permissions(permissions)
        .fingerprint(DATA_FINGERPRINT)
        .read_only()
        .open_timeout(Duration::from_millis(100))
        .open()
        .ok()?;
    let h = segment.data().resolve::<PortHeader>(0).ok()?;
    // SAFETY: bounds and alignment checked; atomics only; the reference
    // does not outlive `segment`.
    Some(unsafe { h.as_ref() }.node_id.load(Ordering::Relaxed))
}

/// Type marker of ports and samples: covariant, `Send` whatever the types.
pub(crate) type Types<Req, Resp> =
    core::marker::PhantomData<(fn() -> *const Req, fn() -> *const Resp)>;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::shm::ShmSafe;

    #[test]
    fn geometry_aligns_payloads_and_rejects_overflow() {
        for layout in [u8::LAYOUT, u64::LAYOUT, <[u64; 9]>::LAYOUT] {
            let g = Geometry::new(5, &layout).unwrap();
            assert_eq!(g.chunk_size % 64, 0);
            assert_eq!(g.payload_offset % layout.align.max(16), 0);
            assert!(g.payload_offset + layout.size <= g.chunk_size);
            assert_eq!((g.chunks_offset + crate::shm::HEADER_SIZE) % 64, 0);
        }
        assert!(Geometry::new(usize::MAX / 64, &u64::LAYOUT).is_none());
    }
}
