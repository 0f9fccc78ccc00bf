//! Byte layout of a request/response service segment (data area): the
//! QoS, the static configuration, the port slots, the request and response
//! connections, and every shared word of the segment.
//!
//! ```text
//! 0      ServiceHeader line (service core): removed | generation[CLIENTS] | generation[SERVERS]
//! 64     config: 120 × u64 (CONFIG_WORDS; written before READY, never changed; words 0..34 are
//!        the core's; 34..54 request TypeDesc, 54..74 response TypeDesc, 74..79 QoS,
//!        79 payload kinds: bit 0 request is a slice `[T]`, bit 1 response is a slice,
//!        80..100 request user header TypeDesc, 100..120 response user header TypeDesc,
//!        120 request overflow, 121 response overflow, 122..128 reserved (0))
//! 1088   client slot × max_clients: one line of PortSlot, then the pending words
//!        (active_requests × u64, rounded up to 64 B): stride 64 + round64(8 × active_requests)
//! S      server slot × max_servers (64 B each: PortSlot)
//! Q      request connection × (max_clients × max_servers), row-major by client slot:
//!        (client c → server s) at Q + (c × max_servers + s) × request connection size
//! R      response connection × (max_servers × max_clients), row-major by server slot:
//!        (server s → client c) at R + (s × max_clients + c) × response connection size
//! ```
//!
//! Every connection has the shape of `crate::queue` (the producer's side
//! is the one that connects and pushes entries):
//!
//! ```text
//! +0     link line (producer writes at connect): link, pub_id (= producer id), generation
//! +64    ret_tail line (consumer writes)
//! +128   head line (consumer CAS to claim)
//! +192   entries: [Entry; ring] (16 B each), rounded up to 64 B
//! +…     returns: [AtomicU32; return ring], rounded up to 64 B
//! ```
//!
//! | connection | producer | ring (entries) | return ring |
//! |---|---|---|---|
//! | request (c → s) | client c | `active_requests` rounded up to a power of two | the client's pool (`Qos::client_chunks`), rounded up |
//! | response (s → c) | server s | `active_requests × (response_buffer + 1)`, rounded up | the server's pool (`Qos::server_chunks`), rounded up |
//!
//! Neither queue can overflow: a client has at most `active_requests`
//! requests in flight (each one entry per server, popped by the server
//! when it takes the request); a server holds at most `active_requests ×
//! response_buffer` response chunks per client (counted until the client
//! returns them) and sends one end-of-stream entry per request, of which
//! at most `active_requests` are unread (a request stays in flight on the
//! client until it has read the end of every server it reached). The
//! producers still check their count before each push (against a cached
//! head, refreshed from the shared one only when the count reads full:
//! `queue::Producer::has_room`, so a push costs no read of the consumer's
//! head line) and treat a full queue as an error, never overwrite. Under `Overflow::DropOldest`
//! for responses a server may also claim the oldest unclaimed response of
//! a client's queue itself (`queue::Producer::take_back_oldest`: the
//! queue's drop-oldest CAS on `head`, as in `crate::queue`).
//!
//! # Static configuration words
//!
//! Words `0..34` (format, name length, name) are the core's
//! (`service::config`); the format word is `0x5252_0003` (format 3: words
//! 80..120 name the user header types, 120 and 121 the overflow policies; format 2 added the element count
//! and the no-response and dropped flags to the chunk meta word and word
//! 79's payload kinds; a process of an older format cannot open the
//! service and says so).
//!
//! | words | content |
//! |---|---|
//! | 34..54 | request type: name length, 16 words of name, size, align, fingerprint |
//! | 54..74 | response type: the same |
//! | 74..79 | QoS: max_clients, max_servers, active_requests, response_buffer, max_loans |
//! | 79 | payload kinds: bit 0 the request is a slice `[T]`, bit 1 the response is; other bits must be 0 |
//! | 80..100 | request user header type (the same encoding as 34..54; `NoHeader`, size 0, when there is none) |
//! | 100..120 | response user header type |
//! | 120 | request overflow policy (`Overflow` code: 1 Block, 2 Fail; 0 DropOldest is refused) |
//! | 121 | response overflow policy (0 DropOldest, 1 Block, 2 Fail) |
//!
//! Decoding (`StaticConfig`'s `PatternConfig::read`) validates the format,
//! the QoS ranges ([`Qos::validate`]) and the type alignments; the core
//! then requires the segment to be at least as large as the layout
//! computed from the decoded QoS, and all later indexing uses that local
//! layout.
//!
//! # Every shared word
//!
//! The header's `removed` word, the generation words' transitions and the
//! slot words `node_id` and `id` are the service core's
//! (`service::registry`); the connection words are `crate::queue`'s. What
//! they mean here, and the words of this pattern:
//!
//! | word | writer(s) | transitions / meaning |
//! |---|---|---|
//! | `generation[CLIENTS]` | the core, after every client slot claim, release or reclamation | servers rescan the client slots (connect the response queue, link the request queue, drop what a departed client held) |
//! | `generation[SERVERS]` | the core, after every server slot claim, release or reclamation | clients rescan the server slots (connect the request queue, link the response queue; a departed server ends its requests with `ServerGone`) |
//! | `PortSlot.event` (client slot) | servers after each response or end of stream; cleanup of a dead server (`port_reclaimed`) | `EventWord` a client sleeps on in `PendingResponse::receive` |
//! | `PortSlot.event` (server slot) | clients after each request; cleanup of a dead client | `EventWord` a server sleeps on in `Server::receive` |
//! | `pending[r]` (client slot, word r) | the client only | 0 (no request in request slot r, its `PendingResponse` was dropped, or it wants no response) → request id (Release, before the request is pushed) → 0 (Release, when the `PendingResponse` drops); read by tools only (`reqres::details`: responses awaited). Servers learn of a dropped pending response from the `DROPPED` bit in the request chunk's meta word (`reqres::meta`), on the line they read the request from |
//! | `ConnLink.*`, `RetTail`, `Head`, `Entry`, returns | as in `crate::queue` | producer = client for requests, server for responses |
//!
//! A request entry's chunk is an index into the client's pool, whose chunk
//! header carries the request id and the request slot; a response entry's
//! chunk is an index into the server's pool (chunk header: the request
//! id), and its `len` word's low 32 bits are the low 32 bits of the
//! request id. The end of a server's stream for one request is an entry
//! whose chunk is [`END_OF_STREAM`] (no chunk), tagged with the request id
//! in the same way.

// Plain std atomics for the configuration: written once before the
// segment is ready, read after.
use std::sync::atomic::AtomicU64;

use super::service::ReqRes;
use crate::queue::{CHUNK_MASK, Conn, ConnShape};
use crate::service::core::{PatternConfig, PatternLayout, PortView};
use crate::service::registry::{LINE, PortArray, SlotArray};
use crate::service::{
    Compat, ConfigReader, ConfigWriter, Overflow, Requested, ServiceError, TypeDesc, W_PATTERN,
};
use crate::shm::Region;

/// Index of the client port kind (generation word, slot array).
pub(crate) const CLIENTS: usize = 0;
/// Index of the server port kind.
pub(crate) const SERVERS: usize = 1;

/// Format word of the static configuration.
pub(crate) const FORMAT: u64 = 0x5252_0003;
/// Fingerprint of the service segment format.
pub(crate) const SERVICE_FINGERPRINT: u64 = 0x5252_5356_4300_0001;
/// Words of the static configuration.
pub(crate) const CONFIG_WORDS: usize = 128;

/// Most clients, and most servers, of one service (chunk holders are a
/// 64-bit mask per port).
pub const MAX_PORTS: usize = 64;
// A publisher's (client's, server's) `pool::Book` keeps one bit per peer.
const _: () = assert!(MAX_PORTS <= crate::pool::Book::MAX_PEERS);
/// Largest `active_requests` and `response_buffer`.
pub const MAX_REQUESTS: usize = 1024;
/// The entry chunk index that marks the end of a server's stream for one
/// request (no chunk travels with it). Pools are smaller.
pub(crate) const END_OF_STREAM: u32 = CHUNK_MASK as u32;
/// Largest service segment data area the QoS may ask for.
const MAX_SEGMENT_BYTES: usize = 1 << 30;

/// The limits of a request/response service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qos {
    /// Most clients at once (1..=64; default 4).
    pub max_clients: usize,
    /// Most servers at once (1..=64; default 2).
    pub max_servers: usize,
    /// Requests one client may have in flight (1..=1024; default 4). A
    /// request is in flight from `send` until every server it reached has
    /// ended its stream (or gone).
    pub active_requests: usize,
    /// Responses a server may have sent to one client and not yet had
    /// back, per active request (1..=1024; default 4): a server may hold
    /// `active_requests × response_buffer` chunks at one client.
    pub response_buffer: usize,
    /// Requests a client, or responses a server, may have loaned at once
    /// (1..=65 536; default 2).
    pub max_loans: usize,
    /// What a client's loan does when `active_requests` requests are in
    /// flight (default [`Overflow::Fail`]: `LoanError::ExceedsActiveRequests`).
    /// [`Overflow::Block`] waits, up to the client's block timeout, for a
    /// stream to end (servers wake the client). [`Overflow::DropOldest`]
    /// is refused: a request in flight is being answered, and withdrawing
    /// it would cut a stream that servers are writing.
    pub request_overflow: Overflow,
    /// What a server's send does when the client holds
    /// `active_requests × response_buffer` of its responses (default
    /// [`Overflow::Fail`]: `ResponseSendError::BufferFull`).
    /// [`Overflow::Block`] waits, up to the server's block timeout, for the
    /// client to drop responses (it then wakes the server).
    /// [`Overflow::DropOldest`] takes back the oldest response the client
    /// has not received yet (of any of its requests; counted in
    /// `Server::dropped_responses`) and sends the new one; if the oldest
    /// unread entry is an end of stream, or the client has received every
    /// response it holds, the send fails with `BufferFull`.
    pub response_overflow: Overflow,
}

impl Default for Qos {
    fn default() -> Qos {
        Qos {
            max_clients: 4,
            max_servers: 2,
            active_requests: 4,
            response_buffer: 4,
            max_loans: 2,
            request_overflow: Overflow::Fail,
            response_overflow: Overflow::Fail,
        }
    }
}

impl std::fmt::Display for Qos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "max_clients {}, max_servers {}, active_requests {}, response_buffer {}, max_loans {}, request_overflow {:?}, response_overflow {:?}",
            self.max_clients,
            self.max_servers,
            self.active_requests,
            self.response_buffer,
            self.max_loans,
            self.request_overflow,
            self.response_overflow
        )
    }
}

impl Qos {
    /// Chunks in a client's pool: its loans and its requests in flight
    /// (each held by the servers it reached until they return it), plus
    /// one.
    pub fn client_chunks(&self) -> usize {
        self.max_loans + self.active_requests + 1
    }

    /// Chunks in a server's pool: its loans and what every client may
    /// hold, plus one.
    pub fn server_chunks(&self) -> usize {
        self.max_loans + self.max_clients * self.active_requests * self.response_buffer + 1
    }

    /// Checks the limits (a builder's request, or a configuration read
    /// from shared memory).
    pub fn validate(&self) -> Result<(), String> {
        let range = |what: &str, v: usize, lo: usize, hi: usize| {
            if v < lo || v > hi {
                Err(format!("{what} is {v}; it must be in {lo}..={hi}"))
            } else {
                Ok(())
            }
        };
        range("max_clients", self.max_clients, 1, MAX_PORTS)?;
        range("max_servers", self.max_servers, 1, MAX_PORTS)?;
        range("active_requests", self.active_requests, 1, MAX_REQUESTS)?;
        range("response_buffer", self.response_buffer, 1, MAX_REQUESTS)?;
        range("max_loans", self.max_loans, 1, 1 << 16)?;
        if self.request_overflow == Overflow::DropOldest {
            return Err("request_overflow DropOldest is not supported: a request in flight is being answered (use Block or Fail)".into());
        }
        if self.server_chunks() >= END_OF_STREAM as usize {
            return Err(format!(
                "{} chunks per server (max_loans + max_clients × active_requests × response_buffer + 1); the limit is {}",
                self.server_chunks(),
                END_OF_STREAM - 1
            ));
        }
        let size = ServiceLayout::new(self).size;
        if size > MAX_SEGMENT_BYTES {
            return Err(format!(
                "the service segment would need {size} bytes; the limit is {MAX_SEGMENT_BYTES} (lower max_clients, max_servers, active_requests or response_buffer)"
            ));
        }
        Ok(())
    }
}

/// The static configuration, decoded.
#[derive(Debug, Clone)]
pub(crate) struct StaticConfig {
    pub(crate) name: String,
    pub(crate) request: TypeDesc,
    /// The request is a slice `[T]` of the request element type.
    pub(crate) request_slice: bool,
    pub(crate) response: TypeDesc,
    /// The response is a slice `[T]` of the response element type.
    pub(crate) response_slice: bool,
    /// The requests' user header ([`NoHeader`](crate::service::NoHeader)
    /// when there is none).
    pub(crate) request_header: TypeDesc,
    /// The responses' user header.
    pub(crate) response_header: TypeDesc,
    pub(crate) qos: Qos,
}

const W_REQUEST: usize = W_PATTERN; // 20 words
const W_RESPONSE: usize = W_REQUEST + TypeDesc::words(16); // 20 words
const W_QOS: usize = W_RESPONSE + TypeDesc::words(16); // 5 words
const _: () = assert!(W_REQUEST == 34 && W_RESPONSE == 54 && W_QOS == 74);
const W_KINDS: usize = W_QOS + 5; // 1 word
const W_REQUEST_HEADER: usize = W_KINDS + 1; // 20 words
const W_RESPONSE_HEADER: usize = W_REQUEST_HEADER + TypeDesc::words(16); // 20 words
const _: () = assert!(W_REQUEST_HEADER == 80 && W_RESPONSE_HEADER == 100);
const W_OVERFLOW: usize = W_RESPONSE_HEADER + TypeDesc::words(16); // 2 words
const _: () = assert!(W_OVERFLOW == 120 && W_OVERFLOW + 2 <= CONFIG_WORDS);
// The client slots after the configuration start on a cache line.
const _: () = assert!((CONFIG_WORDS * 8) % LINE == 0);

impl PatternConfig for StaticConfig {
    fn check_compatible(
        &self,
        wanted: &StaticConfig,
        requested: &Requested,
    ) -> Result<(), ServiceError> {
        let same = self.request == wanted.request
            && self.response == wanted.response
            && self.request_header == wanted.request_header
            && self.response_header == wanted.response_header
            && self.request_slice == wanted.request_slice
            && self.response_slice == wanted.response_slice;
        let mut c = Compat::types(&self.name, requested, same, || (self.kind(), wanted.kind()))?;
        let (e, w) = (&self.qos, &wanted.qos);
        c.at_least("max_clients", e.max_clients, w.max_clients);
        c.at_least("max_servers", e.max_servers, w.max_servers);
        c.at_least("active_requests", e.active_requests, w.active_requests);
        c.at_least("response_buffer", e.response_buffer, w.response_buffer);
        c.at_least("max_loans", e.max_loans, w.max_loans);
        c.equal("request_overflow", e.request_overflow, w.request_overflow);
        c.equal(
            "response_overflow",
            e.response_overflow,
            w.response_overflow,
        );
        c.finish()
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self) -> Result<(), String> {
        self.qos.validate()
    }

    fn write(&self, region: &Region) -> Result<(), String> {
        let mut c = ConfigWriter::new(region, CONFIG_WORDS, FORMAT, &self.name)?;
        c.type_desc(&self.request, 16).type_desc(&self.response, 16);
        let q = &self.qos;
        c.count(q.max_clients)
            .count(q.max_servers)
            .count(q.active_requests)
            .count(q.response_buffer)
            .count(q.max_loans);
        c.word(u64::from(self.request_slice) | u64::from(self.response_slice) << 1);
        debug_assert_eq!(c.position(), W_REQUEST_HEADER);
        c.type_desc(&self.request_header, 16)
            .type_desc(&self.response_header, 16);
        debug_assert_eq!(c.position(), W_OVERFLOW);
        c.word(q.request_overflow.code())
            .word(q.response_overflow.code());
        debug_assert_eq!(c.position(), W_OVERFLOW + 2);
        Ok(())
    }

    fn read(data: &Region) -> Result<StaticConfig, String> {
        let (mut c, name) = ConfigReader::new(data, CONFIG_WORDS, FORMAT)?;
        let request = c.type_desc(16, "request")?;
        let response = c.type_desc(16, "response")?;
        // Ranges: `validate` below.
        let mut qos = Qos {
            max_clients: c.count(usize::MAX)?,
            max_servers: c.count(usize::MAX)?,
            active_requests: c.count(usize::MAX)?,
            response_buffer: c.count(usize::MAX)?,
            max_loans: c.count(usize::MAX)?,
            ..Qos::default()
        };
        let kinds = c.word();
        if kinds > 3 {
            return Err(format!("unknown payload kinds {kinds:#x}"));
        }
        let request_header = c.type_desc(16, "request header")?;
        let response_header = c.type_desc(16, "response header")?;
        let overflow = |w: u64, what: &str| {
            Overflow::from_code(w).ok_or_else(|| format!("unknown {what} policy {w:#x}"))
        };
        qos.request_overflow = overflow(c.word(), "request overflow")?;
        qos.response_overflow = overflow(c.word(), "response overflow")?;
        qos.validate()?;
        Ok(StaticConfig {
            request_header,
            response_header,
            name,
            request,
            request_slice: kinds & 1 != 0,
            response,
            response_slice: kinds & 2 != 0,
            qos,
        })
    }
}

impl StaticConfig {
    fn kind(&self) -> String {
        let kind = |t: &TypeDesc, slice: bool| {
            if slice {
                format!("[{t}]")
            } else {
                t.to_string()
            }
        };
        let header = |t: &TypeDesc| {
            if *t == TypeDesc::of(&crate::pool::NO_HEADER) {
                String::new()
            } else {
                format!(" with header {t}")
            }
        };
        format!(
            "requests {}{} and responses {}{}",
            kind(&self.request, self.request_slice),
            header(&self.request_header),
            kind(&self.response, self.response_slice),
            header(&self.response_header)
        )
    }
}

/// The client slot's words after its `PortSlot` line: one per request
/// slot (see the module docs, `pending[r]`).
pub(crate) type Pending = AtomicU64;

/// Offsets of everything in a service segment, computed from the QoS.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServiceLayout {
    pub(crate) max_clients: usize,
    pub(crate) max_servers: usize,
    pub(crate) active_requests: usize,
    client_slots: usize,
    client_stride: usize,
    server_slots: usize,
    requests: usize,
    request: ConnShape,
    responses: usize,
    response: ConnShape,
    pub(crate) size: usize,
}

fn round_line(n: usize) -> usize {
    n.div_ceil(LINE) * LINE
}

impl PatternLayout<StaticConfig> for ServiceLayout {
    fn of(config: &StaticConfig) -> ServiceLayout {
        ServiceLayout::new(&config.qos)
    }

    fn size(&self) -> usize {
        self.size
    }

    fn port_array(&self, kind: usize) -> PortArray {
        if kind == CLIENTS {
            PortArray {
                offset: self.client_slots,
                count: self.max_clients,
                stride: self.client_stride,
            }
        } else {
            PortArray {
                offset: self.server_slots,
                count: self.max_servers,
                stride: LINE,
            }
        }
    }
}

impl ServiceLayout {
    /// The layout of `q` (whose ranges were validated, or are being: the
    /// arithmetic cannot overflow for values up to the validated maxima,
    /// and saturates beyond them).
    pub(crate) fn new(q: &Qos) -> ServiceLayout {
        // Clamp first so that an unvalidated QoS cannot overflow here;
        // `Qos::validate` rejects what was clamped.
        let clients = q.max_clients.clamp(1, MAX_PORTS);
        let servers = q.max_servers.clamp(1, MAX_PORTS);
        let active = q.active_requests.clamp(1, MAX_REQUESTS);
        let buffer = q.response_buffer.clamp(1, MAX_REQUESTS);
        let loans = q.max_loans.clamp(1, 1 << 16);
        let request = ConnShape::new(active, loans + active + 1);
        let response = ConnShape::new(active * (buffer + 1), loans + clients * active * buffer + 1);
        let client_slots = LINE + CONFIG_WORDS * 8;
        let client_stride = LINE + round_line(8 * active);
        let server_slots = client_slots + client_stride * clients;
        let requests = server_slots + LINE * servers;
        let responses = requests + request.size * clients * servers;
        let size = responses + response.size * servers * clients;
        ServiceLayout {
            max_clients: clients,
            max_servers: servers,
            active_requests: active,
            client_slots,
            client_stride,
            server_slots,
            requests,
            request,
            responses,
            response,
            size,
        }
    }
}

/// The ports' view of a request/response service segment.
pub(crate) type ServiceView<'a> = PortView<'a, ReqRes>;

impl<'a> PortView<'a, ReqRes> {
    #[inline]
    pub(crate) fn client_slots(&self) -> SlotArray<'a> {
        self.slots(CLIENTS)
    }

    #[inline]
    pub(crate) fn server_slots(&self) -> SlotArray<'a> {
        self.slots(SERVERS)
    }

    /// The pending words of client slot `c` (one per request slot).
    pub(crate) fn pending(&self, c: usize) -> &'a [Pending] {
        assert!(c < self.layout.max_clients);
        self.shared.slice(
            self.layout.client_slots + c * self.layout.client_stride + LINE,
            self.layout.active_requests,
        )
    }

    /// The request connection client slot `c` → server slot `s`.
    pub(crate) fn request_conn(&self, c: usize, s: usize) -> Conn<'a> {
        let l = self.layout;
        assert!(c < l.max_clients && s < l.max_servers);
        l.request.at(
            &self.shared,
            l.requests + (c * l.max_servers + s) * l.request.size,
        )
    }

    /// The response connection server slot `s` → client slot `c`.
    pub(crate) fn response_conn(&self, s: usize, c: usize) -> Conn<'a> {
        let l = self.layout;
        assert!(c < l.max_clients && s < l.max_servers);
        l.response.at(
            &self.shared,
            l.responses + (s * l.max_clients + c) * l.response.size,
        )
    }
}

/// Pure-memory tests of the layout arithmetic (also run under Miri).
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn parts_are_line_aligned_disjoint_and_large_enough() {
        for q in [
            Qos::default(),
            Qos {
                max_clients: 3,
                max_servers: 5,
                active_requests: 9,
                response_buffer: 3,
                max_loans: 1,
                request_overflow: Overflow::Block,
                response_overflow: Overflow::DropOldest,
            },
        ] {
            q.validate().unwrap();
            let l = ServiceLayout::new(&q);
            assert!(l.request.cap >= q.active_requests);
            assert!(l.request.rcap >= q.client_chunks());
            assert!(l.response.cap >= q.active_requests * (q.response_buffer + 1));
            assert!(l.response.rcap >= q.server_chunks());
            assert!(l.client_stride >= LINE + 8 * q.active_requests);
            assert_eq!(
                l.server_slots,
                l.client_slots + l.client_stride * q.max_clients
            );
            assert_eq!(l.requests, l.server_slots + LINE * q.max_servers);
            assert_eq!(
                l.responses,
                l.requests + l.request.size * q.max_clients * q.max_servers
            );
            assert_eq!(
                l.size,
                l.responses + l.response.size * q.max_clients * q.max_servers
            );
            for off in [
                l.client_slots,
                l.client_stride,
                l.server_slots,
                l.requests,
                l.responses,
                l.request.size,
                l.response.size,
                l.request.returns_off,
                l.response.returns_off,
            ] {
                assert_eq!(off % LINE, 0);
            }
        }
    }

    #[test]
    fn qos_limits() {
        let ok = Qos::default();
        assert!(ok.validate().is_ok());
        for bad in [
            Qos {
                max_clients: 0,
                ..ok
            },
            Qos {
                max_servers: MAX_PORTS + 1,
                ..ok
            },
            Qos {
                active_requests: 0,
                ..ok
            },
            Qos {
                response_buffer: MAX_REQUESTS + 1,
                ..ok
            },
            Qos { max_loans: 0, ..ok },
            // Too many server chunks for the 24-bit index.
            Qos {
                max_clients: 64,
                active_requests: 1024,
                response_buffer: 1024,
                ..ok
            },
            // A segment larger than 1 GiB.
            Qos {
                max_clients: 64,
                max_servers: 64,
                active_requests: 64,
                response_buffer: 64,
                ..ok
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        // The end-of-stream index is never a chunk.
        assert!(ok.server_chunks() < END_OF_STREAM as usize);
    }
}
