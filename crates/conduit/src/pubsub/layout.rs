//! Byte layout of a publish/subscribe service segment (data area): the
//! QoS, the static configuration, the offsets of the port slots and of
//! every connection, and every shared word of the segment.
//!
//! ```text
//! 0      ServiceHeader line (service core): removed | generation[PUBLISHERS] | generation[SUBSCRIBERS]
//! 64     config: 80 × u64 (CONFIG_WORDS; static configuration, written before READY, never changed;
//!        words 0..34 are the core's)
//! 704    PortSlot × max_publishers   (64 B each)
//! S      PortSlot × max_subscribers  (64 B each), S = 704 + 64 × max_publishers
//! C      Connection × (max_publishers × max_subscribers), row-major by publisher slot
//!        (connection (p, s) at C + (p × max_subscribers + s) × connection size)
//! ```
//!
//! A connection (publisher slot p, subscriber slot s):
//!
//! ```text
//! +0     link line (publisher writes at connect): link, pub_id, generation, dropped,
//!        kept, kept_gen (the hold of a departed publisher: see below)
//! +64    ret_tail line (subscriber writes)
//! +128   head line (subscriber CAS to claim; publisher CAS to drop the oldest)
//! +192   entries: [Entry; buffer rounded up to a power of two] (16 B each), rounded up to 64 B
//! +…     returns: [AtomicU32; chunks rounded up to a power of two], rounded up to 64 B
//! ```
//!
//! Rings are powers of two so that a position maps to its slot with a mask
//! (a division cost more than the rest of `send`); a queue still holds at
//! most `subscriber_buffer` entries. The return ring has
//! [`Qos::chunks_per_publisher`] (rounded up) slots, so it cannot
//! overflow. A default service (`u64`, default QoS) has a data area of
//! 9536 bytes: with the segment header, 12 KiB.
//!
//! A port slot is one line whose first 24 bytes are the core's
//! `PortSlot` (`service::registry`: node id, port id, event word,
//! `fd_armed`). The subscriber slot's event word is what it sleeps on in
//! `receive`; the publisher slot's is what it sleeps on when a full queue
//! blocks it (`Overflow::Block`). `fd_armed` is used by subscriber slots
//! only (`sync::fdwake`).
//!
//! # Static configuration words
//!
//! Words `0..34` (format, name length, name) are the core's
//! (`service::config`); the format word is `0x5053_0001`.
//!
//! | words | content |
//! |---|---|
//! | 34 | kind: 0 typed, 1 slice |
//! | 35..55 | payload element type: name length, 16 words of name, size, align, fingerprint |
//! | 55..67 | user-header type: name length, 8 words of name, size, align, fingerprint |
//! | 67..74 | QoS: max_publishers, max_subscribers, subscriber_buffer, history, max_loans, max_borrowed, overflow (0 DropOldest / 1 Block / 2 Fail) |
//! | 74..80 | unused (zero) |
//!
//! Decoding (`StaticConfig`'s `PatternConfig::read`) validates the format,
//! the QoS ranges (`Qos::validate`: ports 1..=64, buffer, loans
//! and borrows 1..=65 536, history ≤ buffer, fewer than 2^24 chunks per
//! publisher), the overflow code and the type alignments (powers of two ≤
//! 4096), and clamps name lengths. The service core then requires the
//! segment to be at least as large as the layout computed from the decoded
//! QoS. All later indexing uses that locally computed layout, so a scribble
//! on the configuration afterwards changes nothing.
//!
//! # Every shared word
//!
//! The header's `removed` word, the generation words' transitions and the
//! slot words `node_id` and `id` are the service core's
//! (`service::registry`). What they mean here, and the words of this
//! pattern:
//!
//! | word | writer(s) | transitions / meaning |
//! |---|---|---|
//! | `generation[PUBLISHERS]` | the core, after every publisher slot claim, release or reclamation | subscribers rescan the publisher slots when it moved |
//! | `generation[SUBSCRIBERS]` | the core, after every subscriber slot claim, release or reclamation | publishers rescan the subscriber slots (connect, disconnect) when it moved |
//! | `PortSlot.event` (subscriber slot) | publishers after each delivery; the subscriber registers to sleep | `EventWord`: one epoch bump per delivery, `FUTEX_WAKE` only if a sleeper registered |
//! | `PortSlot.event` (publisher slot) | subscribers after each take (`Block` policy only), leaving subscribers, cleanup | the publisher sleeps on it while a queue is full |
//! | `PortSlot.fd_armed` (subscriber slot) | the subscriber arms (0 → 1); a publisher that saw a registered sleeper swaps it to 0 | 1 = "send me a wake byte"; exactly one waker sees 1 per arming (`sync::fdwake`) |
//! | `ConnLink.link` | publisher (`Conn::connect`) | → 0 (Relaxed) + Release fence, reset, → subscriber id (Release); the subscriber uses the connection only while `link` is its id |
//! | `ConnLink.pub_id` | publisher (`Conn::connect`) | set after the reset and before `link`, with Release (see `crate::queue`, "Connecting") |
//! | `ConnLink.generation` | publisher | at connect: `g % 127 + 1` (1..=127, never 0); every entry and return carries it; a mismatch means "another connection": entries → the subscriber drops the connection, returns → ignored |
//! | `ConnLink.dropped` | publisher | 0 at connect, `+1` (Relaxed) per sample it replaced unread under `DropOldest`; read by tools only (`details`), never trusted for anything else |
//! | `ConnLink.kept` | departing publisher or the cleaner of its dead slot (0 → its id, SeqCst); whoever ends the hold (id → 0, `CAS` SeqCst): the subscriber once the held entries are read or it leaves, the cleaner of a dead subscriber, a publisher resetting the connection, the domain sweep | 0 = no hold; else the id of a departed publisher whose entries are still queued here and whose data segment `pub.<id>` is kept for them. Never reset by `connect`. Read: an id whose segment does not exist ends the hold; the name is removed only if no publisher slot names it and no connection holds it (`departed.rs`) |
//! | `ConnLink.kept_gen` | as `kept`, written (Relaxed) before it | the connection generation of the held entries, 1..=127; any other value with `kept ≠ 0` is `ReceiveError::Corrupted` (and ends the hold) |
//! | `RetTail.ret_tail` | subscriber (the publisher resets it to 0 at connect) | count of returns pushed, Release after writing the return entry |
//! | `Head.head` | subscriber (claim), publisher (drop oldest; reset to 0 at connect) | count of consumed positions; every change but the reset is `CAS(h, h + 1)` (AcqRel) |
//! | `Entry.word` | publisher only | the entry word (`crate::queue`, "The entry word") |
//! | `Entry.len` | publisher only | `seq << 32 \| length`, written (Relaxed) before `word` |
//! | return entry (`u32`) | subscriber | `generation << 24 \| chunk` |

// Every word that ports race on uses the `sync::atomic` shim, so the
// loom models run the real protocol steps.

use super::service::PubSub;
use crate::service::core::{PatternConfig, PatternLayout, PortView};
use crate::service::registry::{LINE, PortArray, SlotArray};
use crate::service::{
    Compat, ConfigReader, ConfigWriter, Requested, ServiceError, TypeDesc, W_PATTERN,
};
use crate::shm::Region;

/// Port kind of publishers (index of their generation word and slot array).
pub(crate) const PUBLISHERS: usize = 0;
/// Port kind of subscribers.
pub(crate) const SUBSCRIBERS: usize = 1;

/// Fingerprint of the service segment format (checked by the segment
/// header on open).
pub(crate) const SERVICE_FINGERPRINT: u64 = 0x5345_5256_5053_0001;
const FORMAT: u64 = 0x5053_0001;
const CONFIG_WORDS: usize = 80;
/// Most publishers or subscribers per service (the publisher tracks chunk
/// holders as a 64-bit mask).
pub const MAX_PORTS: usize = 64;
// A publisher's (client's, server's) `pool::Book` keeps one bit per peer.
const _: () = assert!(MAX_PORTS <= crate::pool::Book::MAX_PEERS);
/// Most chunks per publisher (entries carry a 24-bit chunk index).
pub const MAX_CHUNKS: usize = crate::pool::MAX_CHUNKS;

/// What `send` does when a subscriber's queue is full (the service
/// core's policy type, shared with request/response).
pub use crate::service::Overflow;

/// Quality of service of a publish/subscribe service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qos {
    /// Most publishers at once.
    pub max_publishers: usize,
    /// Most subscribers at once.
    pub max_subscribers: usize,
    /// Samples a subscriber's queue holds, per publisher.
    pub subscriber_buffer: usize,
    /// Samples a publisher keeps and delivers to late joiners.
    pub history: usize,
    /// Samples a publisher may have loaned at once.
    pub max_loans: usize,
    /// Samples a subscriber may hold at once.
    pub max_borrowed: usize,
    /// What happens when a subscriber's queue is full.
    pub overflow: Overflow,
}

impl Default for Qos {
    fn default() -> Self {
        Qos {
            max_publishers: 2,
            max_subscribers: 8,
            subscriber_buffer: 4,
            history: 0,
            max_loans: 2,
            max_borrowed: 2,
            overflow: Overflow::DropOldest,
        }
    }
}

impl std::fmt::Display for Qos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{{max_publishers: {}, max_subscribers: {}, subscriber_buffer: {}, history: {}, max_loans: {}, max_borrowed: {}, overflow: {:?}}}",
            self.max_publishers,
            self.max_subscribers,
            self.subscriber_buffer,
            self.history,
            self.max_loans,
            self.max_borrowed,
            self.overflow
        )
    }
}

impl Qos {
    /// Chunks each publisher's pool holds: enough that a publisher within
    /// its loan limit never runs out while every subscriber stays within
    /// its buffer and borrow limits.
    pub fn chunks_per_publisher(&self) -> usize {
        self.max_loans
            + self.history
            + self.max_subscribers * (self.subscriber_buffer + self.max_borrowed)
            + 1
    }

    /// Checks the limits (a builder's request, or a configuration read
    /// from shared memory).
    pub(crate) fn validate(&self) -> Result<(), String> {
        let range = |what: &str, v: usize, lo: usize, hi: usize| {
            if v < lo || v > hi {
                Err(format!("{what} is {v}; it must be in {lo}..={hi}"))
            } else {
                Ok(())
            }
        };
        range("max_publishers", self.max_publishers, 1, MAX_PORTS)?;
        range("max_subscribers", self.max_subscribers, 1, MAX_PORTS)?;
        range("subscriber_buffer", self.subscriber_buffer, 1, 1 << 16)?;
        range("history", self.history, 0, self.subscriber_buffer)?;
        range("max_loans", self.max_loans, 1, 1 << 16)?;
        range("max_borrowed", self.max_borrowed, 1, 1 << 16)?;
        if self.chunks_per_publisher() >= MAX_CHUNKS {
            return Err(format!(
                "{} chunks per publisher; the limit is {MAX_CHUNKS}",
                self.chunks_per_publisher()
            ));
        }
        Ok(())
    }
}

/// The static configuration, decoded.
#[derive(Debug, Clone)]
pub(crate) struct StaticConfig {
    pub(crate) name: String,
    pub(crate) slice: bool,
    pub(crate) payload: TypeDesc,
    pub(crate) header: TypeDesc,
    pub(crate) qos: Qos,
}

// Word indices in the config area (after the core's `W_PATTERN` words).
const W_KIND: usize = W_PATTERN;
const W_TYPE: usize = W_KIND + 1; // TypeDesc with 16 name words: 20 words
const W_HEADER: usize = W_TYPE + TypeDesc::words(16); // 8 name words: 12 words
const W_QOS: usize = W_HEADER + TypeDesc::words(8); // 7 words
const _: () = assert!(W_TYPE == 35 && W_HEADER == 55 && W_QOS == 67 && W_QOS + 7 <= CONFIG_WORDS);

impl PatternConfig for StaticConfig {
    fn check_compatible(
        &self,
        wanted: &StaticConfig,
        requested: &Requested,
    ) -> Result<(), ServiceError> {
        let same = self.slice == wanted.slice
            && self.payload == wanted.payload
            && self.header == wanted.header;
        let mut c = Compat::types(&self.name, requested, same, || (self.kind(), wanted.kind()))?;
        let (e, w) = (&self.qos, &wanted.qos);
        c.at_least("max_publishers", e.max_publishers, w.max_publishers);
        c.at_least("max_subscribers", e.max_subscribers, w.max_subscribers);
        c.at_least(
            "subscriber_buffer",
            e.subscriber_buffer,
            w.subscriber_buffer,
        );
        c.at_least("history", e.history, w.history);
        c.at_least("max_loans", e.max_loans, w.max_loans);
        c.at_least("max_borrowed", e.max_borrowed, w.max_borrowed);
        c.equal("overflow", e.overflow, w.overflow);
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
        c.word(u64::from(self.slice))
            .type_desc(&self.payload, 16)
            .type_desc(&self.header, 8);
        let q = &self.qos;
        c.count(q.max_publishers)
            .count(q.max_subscribers)
            .count(q.subscriber_buffer)
            .count(q.history)
            .count(q.max_loans)
            .count(q.max_borrowed)
            .word(q.overflow.code());
        debug_assert_eq!(c.position(), W_QOS + 7);
        Ok(())
    }

    fn read(data: &Region) -> Result<StaticConfig, String> {
        let (mut c, name) = ConfigReader::new(data, CONFIG_WORDS, FORMAT)?;
        let slice = c.word() != 0;
        let payload = c.type_desc(16, "payload")?;
        let header = c.type_desc(8, "header")?;
        // Ranges: `validate` below.
        let qos = Qos {
            max_publishers: c.count(usize::MAX)?,
            max_subscribers: c.count(usize::MAX)?,
            subscriber_buffer: c.count(usize::MAX)?,
            history: c.count(usize::MAX)?,
            max_loans: c.count(usize::MAX)?,
            max_borrowed: c.count(usize::MAX)?,
            overflow: Overflow::from_code(c.word()).ok_or("unknown overflow policy")?,
        };
        qos.validate()?;
        Ok(StaticConfig {
            name,
            slice,
            payload,
            header,
            qos,
        })
    }
}

impl StaticConfig {
    fn kind(&self) -> String {
        let p = if self.slice {
            format!("[{}]", self.payload)
        } else {
            self.payload.to_string()
        };
        format!("payload {p} with user header {}", self.header)
    }
}

pub(crate) use crate::queue::{Conn, ConnShape};

/// Offsets of everything in a service segment, computed from the QoS.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServiceLayout {
    pub(crate) max_pub: usize,
    pub(crate) max_sub: usize,
    pub_slots: usize,
    sub_slots: usize,
    conns: usize,
    /// Every connection's shape: `subscriber_buffer` entries, and the
    /// publisher's whole pool in its return ring.
    pub(crate) conn: ConnShape,
    pub(crate) size: usize,
}

impl PatternLayout<StaticConfig> for ServiceLayout {
    fn of(config: &StaticConfig) -> ServiceLayout {
        ServiceLayout::new(&config.qos)
    }

    fn size(&self) -> usize {
        self.size
    }

    fn port_array(&self, kind: usize) -> PortArray {
        let (offset, count) = if kind == PUBLISHERS {
            (self.pub_slots, self.max_pub)
        } else {
            (self.sub_slots, self.max_sub)
        };
        PortArray {
            offset,
            count,
            stride: LINE,
        }
    }
}

impl ServiceLayout {
    pub(crate) fn new(q: &Qos) -> ServiceLayout {
        // The queue holds at most `subscriber_buffer` entries whatever the
        // ring size.
        let conn = ConnShape::new(q.subscriber_buffer, q.chunks_per_publisher());
        let pub_slots = LINE + CONFIG_WORDS * 8;
        let sub_slots = pub_slots + LINE * q.max_publishers;
        let conns = sub_slots + LINE * q.max_subscribers;
        let size = conns + conn.size * q.max_publishers * q.max_subscribers;
        ServiceLayout {
            max_pub: q.max_publishers,
            max_sub: q.max_subscribers,
            pub_slots,
            sub_slots,
            conns,
            conn,
            size,
        }
    }
}

/// The ports' view of a publish/subscribe service segment.
pub(crate) type ServiceView<'a> = PortView<'a, PubSub>;

impl<'a> PortView<'a, PubSub> {
    #[inline]
    pub(crate) fn pub_slots(&self) -> SlotArray<'a> {
        self.slots(PUBLISHERS)
    }

    #[inline]
    pub(crate) fn sub_slots(&self) -> SlotArray<'a> {
        self.slots(SUBSCRIBERS)
    }

    /// The connection publisher slot `p` → subscriber slot `s`.
    pub(crate) fn conn(&self, p: usize, s: usize) -> Conn<'a> {
        let l = self.layout;
        assert!(p < l.max_pub && s < l.max_sub);
        l.conn
            .at(&self.shared, l.conns + (p * l.max_sub + s) * l.conn.size)
    }
}

/// Pure-memory tests of the layout arithmetic (also run under Miri).
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn connection_parts_are_line_aligned_and_disjoint() {
        for q in [
            Qos::default(),
            Qos {
                max_publishers: 3,
                max_subscribers: 5,
                subscriber_buffer: 5,
                history: 2,
                max_loans: 3,
                max_borrowed: 1,
                overflow: Overflow::Block,
            },
        ] {
            q.validate().unwrap();
            let l = ServiceLayout::new(&q);
            let c = l.conn;
            assert!(c.cap >= q.subscriber_buffer && c.cap.is_power_of_two());
            assert!(c.rcap >= q.chunks_per_publisher() && c.rcap.is_power_of_two());
            assert_eq!(l.pub_slots, LINE + CONFIG_WORDS * 8);
            assert_eq!(l.sub_slots, l.pub_slots + LINE * q.max_publishers);
            assert_eq!(l.conns, l.sub_slots + LINE * q.max_subscribers);
            assert!(c.returns_off >= 3 * LINE + 16 * c.cap);
            assert!(c.size >= c.returns_off + 4 * c.rcap);
            for off in [l.pub_slots, l.sub_slots, l.conns, c.returns_off, c.size] {
                assert_eq!(off % LINE, 0);
            }
            assert_eq!(
                l.size,
                l.conns + c.size * q.max_publishers * q.max_subscribers
            );
        }
        assert_eq!(size_of::<crate::service::registry::ServiceHeader>(), LINE);
        assert_eq!(size_of::<crate::queue::ConnLink>(), LINE);
        assert_eq!(size_of::<crate::queue::Entry>(), 16);
    }

    #[test]
    fn qos_limits() {
        let ok = Qos::default();
        assert!(ok.validate().is_ok());
        assert!(
            Qos {
                max_publishers: 0,
                ..ok
            }
            .validate()
            .is_err()
        );
        assert!(
            Qos {
                max_subscribers: MAX_PORTS + 1,
                ..ok
            }
            .validate()
            .is_err()
        );
        assert!(
            Qos {
                history: ok.subscriber_buffer + 1,
                ..ok
            }
            .validate()
            .is_err()
        );
        assert!(
            Qos {
                subscriber_buffer: 1 << 17,
                ..ok
            }
            .validate()
            .is_err()
        );
        // The largest QoS stays within the 24-bit chunk index.
        let big = Qos {
            max_publishers: MAX_PORTS,
            max_subscribers: MAX_PORTS,
            subscriber_buffer: 1 << 16,
            history: 1 << 16,
            max_loans: 1 << 16,
            max_borrowed: 1 << 16,
            ..ok
        };
        assert!(big.validate().is_ok());
        assert!(big.chunks_per_publisher() < MAX_CHUNKS);
        for o in [Overflow::DropOldest, Overflow::Block, Overflow::Fail] {
            assert_eq!(Overflow::from_code(o.code()), Some(o));
        }
        assert_eq!(Overflow::from_code(3), None);
    }
}
