//! Zero-copy publish/subscribe between processes.
//!
//! ```no_run
//! use conduit::prelude::*;
//! use std::time::Duration;
//!
//! #[derive(ShmSafe, Clone, Copy, Default, Debug)]
//! #[repr(C)]
//! struct Pose { x: f64, y: f64 }
//!
//! let node = Node::builder().name("planner").create()?;
//! let topic = node.service("robot/pose").publish_subscribe::<Pose>().open_or_create()?;
//! let publisher = topic.publisher().create()?;
//! let subscriber = topic.subscriber().create()?;
//! publisher.loan_uninit()?.write(Pose { x: 1.0, y: 2.0 }).send()?;
//! let sample = subscriber.receive_timeout(Duration::from_millis(5))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How a sample travels
//!
//! Each publisher owns a pool of chunks in its own data segment
//! `/conduit.<domain>.pub.<id>`, which subscribers map **read-only**. A
//! send writes the chunk's index into one small queue per subscriber (in
//! the service segment), tagged with a sequence number so the subscriber
//! discovers a new sample (index and length) by polling a single line; it
//! claims the sample with one compare-and-swap on its own `head` word (the
//! publisher uses the same CAS to drop the oldest sample of a full queue)
//! and, after it drops the sample (at its next empty poll, or earlier if
//! it holds too many), writes the index into a return queue that the
//! publisher drains when its pool runs low. The shared-memory steps are in
//! `crate::queue` (`src/queue.rs`, below the patterns). The publisher's own bookkeeping (which
//! subscriber holds which chunk) is process-local. Every shared word and
//! its transitions: the docs of `layout.rs` (service segment) and of
//! `crate::queue` (entry word, queue protocol); the publisher data segment is
//! below.
//!
//! # Files
//!
//! `service.rs` (builder, service, what it tells the service core,
//! listing), `layout.rs` (QoS, static configuration, service segment
//! layout), `crate::queue` (delivery and return queues, shared with request/response), `publisher.rs`,
//! `subscriber.rs`, `attach.rs` (wake-up descriptor, WaitSet), `raw.rs`
//! (payload types given at run time, for the C and Python bindings),
//! `departed.rs` (a publisher's last words: holds on a departed
//! publisher's data segment), this file (payload kinds, entry word
//! encoding, publisher data segment).
//!
//! # Publisher data segment `pub.<id>` (data area)
//!
//! The chunk pool format of `crate::pool` (shared with request/response),
//! with pub/sub's chunk header:
//!
//! ```text
//! 0        PoolHeader (128 B): id | chunks | chunk_size | chunks_offset | header_offset
//!                              | payload_offset | max_len | element_size | node_id
//! chunks_offset = round_up(128 + 128, align) − 128 (the first chunk at a multiple of
//!                 align from the start of the page-aligned mapping):
//!          chunk[i] at chunks_offset + i × chunk_size:
//!            +0              ChunkHeader: len (u64) | seq (u64)
//!            +header_offset  user header H, header_offset = round_up(16, align H)
//!            +payload_offset payload (T, or max_len × T), aligned to max(align T, 8)
//!          chunk_size = round_up(payload_offset + max_len × size T, align)
//!          align = max(64, align T, align H)
//! ```
//!
//! Written once before the segment is ready; mapped read-write by the
//! publisher, **read-only** by subscribers. A subscriber checks the
//! segment's fingerprint and the publisher id, re-derives the whole
//! geometry from `(chunks, max_len)` and the service's types, and refuses
//! a segment whose header differs or whose size is smaller
//! (`pool::Geometry::read_region`); chunk count `1..=2^24` ([`MAX_CHUNKS`]). `node_id`
//! lets cleanup remove a data segment whose publisher died before it
//! claimed a service slot. A default publisher's data segment (`u64`,
//! default QoS: 51 chunks of 64 bytes) takes 4 KiB.
//!
//! **Pool size** (per publisher) = `max_loans + history + max_subscribers ×
//! (subscriber_buffer + max_borrowed) + 1` ([`Qos::chunks_per_publisher`]):
//! a chunk is in use only while loaned, in the history, or held by a
//! subscriber (queued, borrowed, or returned but not yet collected), so a
//! publisher within its loan limit never runs out while subscribers keep
//! within theirs.
//!
//! # The hot path (one-way, small message)
//!
//! * Publisher: a load of the header's `generation[SUBSCRIBERS]` (a
//!   read-mostly line), a loan from a process-local free list, payload and
//!   chunk header written (its own chunk line), `Entry.len` and entry
//!   stores (the entry line: the only line that must move to the other
//!   CPU), then the wake of the subscriber's slot (`attach::wake` →
//!   `sync::fdwake::wake`: one `fetch_add` on the event word, a line that
//!   stays in the publisher's cache while the subscriber does not sleep).
//!   No system call, allocation or lock.
//! * Subscriber: a load of `generation[PUBLISHERS]`, then polls the entry
//!   word; on a hit reads `len` from the same line, then claims with a CAS
//!   on its own head line. The chunk is not read until the user reads the
//!   sample.
//! * Bookkeeping (which subscriber holds which chunk: a 64-bit mask per
//!   chunk, hence at most 64 subscribers; history; free list) is
//!   process-local. Under `DropOldest` the publisher reads a subscriber's
//!   head line only when its cached head says "full" (under `Block` and
//!   `Fail` it reads every head before each send), and it collects returns
//!   right after a send once more than half its pool is in use.
//! * The subscriber does not write a return when a sample drops: it keeps
//!   it in a small local list and writes it when it polls an empty queue
//!   (it is waiting anyway), or earlier if `borrowed + deferred` would
//!   exceed `max_borrowed` (the pool size counts deferred returns as
//!   borrowed). Between receiving and replying a subscriber stores to no
//!   shared line but its own head (and, under `Block`, the publisher
//!   slot's event word).
//! * Ports cache their row or column of connections and the chunk area
//!   (lifetime-erased views next to the `Arc` that keeps the mapping).
//!
//! # Waiting
//!
//! [`Subscriber::receive_timeout`] and [`Subscriber::receive`] are
//! `EventWord::wait_until(spin, timeout, try_receive)` on the subscriber
//! slot's event word: poll for the spin budget ([`DEFAULT_SPIN`] = 50 µs,
//! [`SubscriberBuilder::spin`]), then sleep on the futex. Under
//! [`Overflow::Block`] the publisher sleeps on its own slot's event word
//! until every connected queue has room, up to its block timeout
//! ([`PublisherBuilder::block_timeout`]; then one dead-port cleanup and
//! one more look, then [`SendError::Timeout`]); subscribers bump it after
//! each take (only under this policy), and when they leave.
//!
//! # Lifecycle
//!
//! * **Publisher**: creates its data segment, then claims a slot (all
//!   taken: cleans dead ports and retries once). Drop puts a *hold* on
//!   every connection whose queue still has unread samples, frees the
//!   slot, and unlinks the data segment only if nothing holds it; else the
//!   subscriber that ends the last hold (after reading or dropping those
//!   samples) unlinks it (`departed.rs`: "A publisher's last words"). A
//!   killed publisher gets the same from the cleaner that reclaims its
//!   slot. A subscriber that has mapped it keeps the mapping (an `Arc`
//!   held by its connection, then by its list of retired mappings until it
//!   holds no sample).
//! * **Subscriber**: claims a slot; the publisher connects it on its next
//!   send (or [`Publisher::update_connections`]) and pushes the history.
//!   Drop frees the slot, ends the holds in its column (removing departed
//!   publishers' data segments that nothing else holds) and wakes every
//!   publisher slot's event word; the publisher then takes back every
//!   chunk whose mask has that subscriber's bit. A dead subscriber's holds
//!   are ended by the cleaner that reclaims its slot.
//! * **Out of chunks**: the publisher collects returns; if still empty it
//!   cleans dead ports, reconnects and collects again.
//! * **A full queue of a dead subscriber never drains**: `Block` cleans
//!   dead ports once after its block timeout; `Fail` looks for dead
//!   subscribers at the first `QueueFull` and then at most every 100 ms
//!   (`DEAD_CHECK_INTERVAL`), so retrying against a slow live subscriber
//!   stays cheap.
//!
//! # Limits and edges
//!
//! * Every index, offset and length read from shared memory is checked;
//!   inconsistent shared state is a [`ReceiveError::Corrupted`], never a
//!   crash or an endless loop.
//! * **Typed samples trust the publisher**: a `T: ShmSafe` is valid for
//!   every bit pattern, so reading a sample is never UB; a buggy publisher
//!   that rewrites a chunk still held shows torn data (it cannot crash the
//!   reader). Subscribers cannot write publisher data (read-only mapping);
//!   scribbling on their own connection queues hurts only themselves (the
//!   publisher bounds- and generation-checks every return).
//! * Connections are made by the publisher, when it sends (or on
//!   [`Publisher::update_connections`]): a late joiner gets the history at
//!   the publisher's next send.
//! * Generations have 7 bits: a stale subscriber could confuse a
//!   connection only after exactly 127 reconnects of the same slot pair
//!   during one of its operations.
//! * A publisher that dies between creating its data segment and claiming
//!   a slot leaves the segment; the domain cleanup removes data segments
//!   that no slot names and whose node is dead, and those abandoned before
//!   they were ready (`cleanup_domain` in `service.rs`).
//! * **A publisher that leaves** (dropped or killed): samples it queued
//!   stay readable by every subscriber it was connected to, also one that
//!   never polled before it left: the connection's hold keeps the data
//!   segment's name until the subscriber has read or dropped them (then
//!   the name is removed), and a new publisher of the slot continues the
//!   queue after them instead of resetting it (`departed.rs`). One
//!   departed publisher is kept per connection: if the successor leaves
//!   too before the subscriber read the first one's samples, the
//!   successor's samples for that subscriber are lost. A subscriber
//!   releases its mappings of departed publishers at its first receive
//!   while it holds no sample.
//! * Known race, not observed: a subscriber draining the connection of a
//!   dead publisher at logical position 0 can, in a window of a few
//!   instructions, claim position 0 of the new publisher's reset
//!   connection with its CAS on the shared `head`; the new connection then
//!   starts at 1 (one sample lost, its chunk held until that subscriber
//!   disconnects). A connection with unread samples is continued, not
//!   reset (its hold), so this remains only where the connection already
//!   held another departed publisher's samples.
//! * [`Publisher`] and [`Subscriber`] are `Send`, not `Sync`. Connecting to
//!   a new publisher opens its data segment (system calls) on the first
//!   receive after it appeared; apart from that, and the descriptor drain
//!   once a wake-up descriptor exists ([`Subscriber::wake_fd`]), a
//!   non-blocking receive makes none.

mod attach;
mod departed;
pub(crate) mod layout;
mod publisher;
pub(crate) use crate::queue;
mod raw;
pub(crate) mod service;
mod subscriber;

#[cfg(all(test, loom))]
mod loom_tests;

use std::sync::atomic::AtomicU64;

pub use publisher::{
    LoanError, Publisher, PublisherBuilder, PublisherCreateError, SampleMut, SampleUninit,
    SendError, SendOrLoanError,
};
pub use subscriber::{
    DEFAULT_SPIN, ReceiveError, Sample, Subscriber, SubscriberBuilder, SubscriberCreateError,
};

pub use layout::{MAX_CHUNKS, MAX_PORTS, Overflow, Qos};
pub use raw::{MAX_TYPE_ALIGN, MAX_TYPE_NAME_LEN, RawPayload, RawType, leaf_fingerprint};
pub(crate) use service::PubSub;
pub(crate) use service::ServiceInner;
pub use service::{
    ConnectionInfo, PortInfo, PubSubBuilder, PubSubService, ServiceDetails, ServiceInfo, details,
    list,
};

/// What a service carries (the service core's, shared by every pattern).
pub use crate::service::Payload;

/// The user header of services that have none (the service core's,
/// shared by every pattern).
pub use crate::service::NoHeader;

/// The data segment name of publisher `id` (inside the domain).
pub fn data_segment_name(id: crate::service::PortId) -> String {
    POOL.segment(id.0)
}

pub(crate) use crate::queue::entry_gen;
pub(crate) use crate::queue::{GEN_MASK, entry_seq};

/// First 16 bytes of every chunk: written by the publisher before it
/// publishes the chunk's index (Release), read by subscribers after their
/// Acquire take.
#[repr(C)]
pub(crate) struct ChunkHeader {
    /// Number of elements (1 for a typed payload).
    pub(crate) len: AtomicU64,
    /// The publisher's sequence number of the sample (1, 2, …).
    pub(crate) seq: AtomicU64,
}

// SAFETY: two atomics (16 bytes, align 8): fits the pool's chunk header.
unsafe impl crate::pool::ChunkHead for ChunkHeader {}
const _: () = assert!(size_of::<ChunkHeader>() == crate::pool::CHUNK_HEADER_SIZE);

/// What names and marks publishers' data segments.
pub(crate) const POOL: crate::pool::PoolKind = crate::pool::PoolKind {
    object: crate::domain::ObjectKind::PublisherData,
    fingerprint: DATA_FINGERPRINT,
};

pub(crate) const DATA_FINGERPRINT: u64 = 0x5055_4244_4154_0001;

/// Type marker of ports and samples: covariant, `Send` whatever `P` is.
pub(crate) type Types<P, H> = core::marker::PhantomData<(fn() -> *const P, H)>;
