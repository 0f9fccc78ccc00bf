//! Blackboard: shared state by key. One [`Writer`] updates entries in
//! place; any number of [`Reader`]s, in other processes, read the latest
//! complete value of an entry without a lock: a read never sees a torn
//! value, never blocks the writer, and a writer killed in the middle of
//! an update leaves the entry's previous value readable.
//!
//! ```no_run
//! # use conduit::prelude::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! #[derive(ShmSafe, Clone, Copy, Debug)]
//! #[repr(C)]
//! struct Pose { x: f64, y: f64, heading: f64 }
//!
//! let node = Node::builder().create()?;
//! let board = node.service("robot/state").blackboard::<u32, Pose>()
//!     .entry(0, Pose { x: 0.0, y: 0.0, heading: 0.0 })   // key, initial value
//!     .entry(1, Pose { x: 5.0, y: 0.0, heading: 0.0 })
//!     .open_or_create()?;
//! let writer = board.writer()?;                 // at most one live writer
//! writer.entry(&0)?.update(Pose { x: 1.0, y: 2.0, heading: 0.5 });
//!
//! let reader = board.reader()?;                 // usually in another process
//! let pose = reader.entry(&0)?;                 // keep the handle
//! let (now, version) = pose.get_with_version()?;
//! if pose.changed_since(version) { /* read again */ }
//! # let _ = now; Ok(()) }
//! ```
//!
//! # Types and keys
//!
//! `K: ShmSafe + Eq` and `V: ShmSafe + Copy`, both padding-free
//! ([`ShmSafe::PADDING_FREE`](crate::shm::ShmSafe::PADDING_FREE), checked
//! at compile time; `#[derive(ShmSafe)]` computes it): values travel word
//! by word through atomics, and **keys are compared byte by byte** (not
//! by `PartialEq`). The key set and the initial values are fixed at
//! creation ([`BlackboardBuilder::entry`], [`BlackboardBuilder::entries`]);
//! openers need no entries, and the key and value types' fingerprints are
//! checked on open ([`ServiceError::IncompatibleType`](crate::service::ServiceError::IncompatibleType)).
//! Limits: [`MAX_ENTRIES`] entries, keys up to [`MAX_KEY_SIZE`] bytes,
//! values up to [`MAX_VALUE_SIZE`] bytes, [`MAX_READERS_LIMIT`] readers.
//!
//! # The protocol: two copies per entry
//!
//! Each entry has two copies of its value, each with a sequence word
//! (odd while being written), and a `current` word naming the published
//! copy and its version. The writer always writes the copy readers are
//! *not* sent to, then publishes it by storing `current`. A reader loads
//! `current`, checks the copy's sequence word, copies the words with
//! atomic loads, and checks the sequence word again; if a write
//! disturbed it (only a writer that updates the same entry twice during
//! one read can), it retries, at most [`READ_ATTEMPTS`] times, then
//! reports [`ReadError::Contended`]. Every step, the byte layout and every
//! shared word's state table: `layout.rs`. The loom model
//! `loom_tests.rs` runs those steps.
//!
//! Versions: 0 is the initial value; each update publishes a greater
//! one, and no version is ever published twice. [`ReaderEntry::version`]
//! and [`ReaderEntry::changed_since`] are one load each, and so is a
//! [`get`](ReaderEntry::get) of an entry that did not change since the
//! handle last read it: the handle keeps that value and its version, and
//! a read whose `current` shows the same version returns it (about 2 ns,
//! 1.2x a plain shared-memory load: `conduit bench --only blackboard`).
//! Keep the `ReaderEntry` handles. An 8-byte entry is one cache line.
//!
//! # Waiting for changes
//!
//! Create the blackboard with
//! [`notify_changes(true)`](BlackboardBuilder::notify_changes) and the
//! writer wakes the readers that wait after every update, through the
//! same machinery as event listeners: each reader sleeps on the
//! [`EventWord`](crate::sync::EventWord) of its own slot
//! ([`ReaderEntry::wait_changed_since`]: bounded spin, then futex), or
//! arms its wake-up descriptor ([`Reader::wake_fd`], which makes a reader
//! [`Attachable`](crate::waitset::Attachable) to a WaitSet or any epoll
//! loop; [`ReaderEntry::poll_changed_since`] checks and re-arms). The
//! writer bumps each reader's epoch (one atomic add per reader and
//! update) and makes a system call only for a reader asleep. Any update
//! wakes a waiting reader, which checks its entry's version and waits
//! again if that did not change.
//!
//! No wake-up is lost: the reader snapshots its epoch, then loads
//! `current` (Acquire); the writer stores `current` (Release), then bumps
//! the epoch, so a reader whose check missed the update registers at an
//! epoch that has moved, or is seen as a sleeper (the `EventWord`
//! argument, `event` module docs). A reader that joins while the writer
//! updates is covered by two SeqCst fences: the reader's after its slot
//! claim, the writer's before it looks for readers. Either the writer
//! finds the new reader, or the reader's first look sees the update
//! (loom model `loom_blackboard_waiting_reader_is_woken`).
//!
//! # Waiting through an event id
//!
//! To wait for a change next to other events (one `Listener` for many
//! sources, in a WaitSet, or async with feature `tokio` through
//! [`Listener::wait_async`](crate::event::Listener::wait_async)), bind
//! the entry to an event id at creation
//! ([`BlackboardBuilder::bind_event`]) and give the writer a notifier of
//! an event service ([`Writer::notify_through`]): after each update of a
//! bound entry the writer notifies its id. Readers learn the id from
//! [`ReaderEntry::event_id`] and listen on the same event service (by
//! convention the one with the blackboard's name):
//!
//! ```no_run
//! # use conduit::prelude::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let node = Node::builder().create()?;
//! let board = node.service("robot/state").blackboard::<u32, u64>()
//!     .entry(0, 0).bind_event(0, 7)
//!     .open_or_create()?;
//! let events = node.service("robot/state").event().open_or_create()?;
//! let mut writer = board.writer()?;
//! writer.notify_through(events.notifier().create()?)?;
//!
//! let reader = board.reader()?;                 // in another process
//! let listener = events.listener().create()?;
//! let entry = reader.entry(&0)?;
//! let mut seen = entry.version();
//! loop {
//!     let ids = listener.wait();                // or a WaitSet, or wait_async
//!     if ids.contains(entry.event_id().unwrap()) {
//!         if let Some(now) = entry.poll_changed_since(seen) {
//!             seen = now;                       // then get() the value
//!         }
//!     }
//! #   break;
//! }
//! # Ok(()) }
//! ```
//!
//! The binding is static configuration (an event table after the key
//! table, `layout.rs`); an opener that binds must bind the same id. The
//! notification follows the publication, so a listener that takes the
//! id sees the new version; an id is a level, so one notification may
//! stand for several updates. The blackboard does not import the event
//! pattern: the writer notifies through the service core's
//! [`EventSink`] trait, which
//! [`Notifier`](crate::event::Notifier) implements. A writer killed
//! between an update and its notification leaves the update published
//! but unannounced (the event service's `notifier_dead_event` tells the
//! listeners that its notifier died).
//!
//! # Crashes
//!
//! * **Writer killed** at any instruction: it was writing only the copy
//!   that is not published, so readers keep reading the last complete
//!   value of every entry (the copy it left half written is never
//!   published). Its slot is freed when a dead-port cleanup runs (the
//!   next [`Blackboard::writer`] call does one when the slot is taken),
//!   and the new writer continues without repair, with versions above
//!   every version the dead one wrote.
//! * **Reader killed**: readers store nothing in the entries; its slot is
//!   freed by the same cleanup.
//! * **Garbage**: a reader takes only the low bit of `current` as an
//!   index, the configuration and key table are validated at open, and a
//!   read is bounded: bad words give a wrong value or `Contended`, never a
//!   crash or a hang.
//!
//! A reader killed while asleep leaves its slot's sleeper count raised
//! until the slot is reused: the writer then makes one useless
//! `FUTEX_WAKE` per update for that slot (correct, slower), as for event
//! listeners.
//!
//! # Not (yet) here
//!
//! * Async waiting on the reader's own wake-up descriptor (without an
//!   event service): use [`Reader::wake_fd`] with `AsyncFd`, or bind an
//!   event id and `Listener::wait_async`.
//! * The loan ([`WriterEntry::loan_uninit`]) builds the value in the
//!   writer's memory, not in the segment: see its docs for why.
//!
//! # Files
//!
//! `service.rs` (builder, service, what it tells the service core),
//! `writer.rs`, `reader.rs`, `layout.rs` (layout, configuration, the
//! entry protocol).

pub(crate) mod layout;
#[cfg(all(test, loom))]
mod loom_tests;
mod raw;
mod reader;
pub(crate) mod service;
mod writer;

pub use crate::service::{EventId, EventSink};
pub use layout::{MAX_ENTRIES, MAX_KEY_SIZE, MAX_READERS_LIMIT, MAX_VALUE_SIZE};
pub use raw::{BlackboardInfo, EntryInfo, RawBlackboard, RawBlackboardBuilder, inspect, list};
pub use reader::{RawReader, RawReaderEntry, Reader, ReaderEntry};
pub(crate) use service::cleanup_domain;
pub use service::{Blackboard, BlackboardBuilder};
pub use writer::{EntryLoan, EntryLoanUninit, RawWriter, Writer, WriterEntry};

/// Attempts of one read before it reports [`ReadError::Contended`].
pub const READ_ATTEMPTS: u32 = 64;

/// Default spin budget of [`ReaderEntry::wait_changed_since`] before it
/// sleeps.
pub use crate::service::DEFAULT_SPIN;

/// Why waiting for a change ended without one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The timeout passed with the entry unchanged.
    #[error("the entry did not change before the timeout")]
    Timeout,
    /// The blackboard was created without
    /// [`notify_changes`](BlackboardBuilder::notify_changes): its writer
    /// wakes nobody, so a wait could last for ever. Poll
    /// [`ReaderEntry::changed_since`] instead.
    #[error("blackboard {service:?} was created without notify_changes: nobody would wake a wait")]
    NotNotifying {
        /// The service.
        service: String,
    },
}

/// Why a writer or reader could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortCreateError {
    /// A live writer exists (a dead one's slot is reclaimed first).
    #[error("blackboard {service:?} already has a live writer")]
    WriterExists {
        /// The service.
        service: String,
    },
    /// Every reader slot is taken by live readers.
    #[error("blackboard {service:?} already has its maximum of {max} readers")]
    ExceedsMaxReaders {
        /// The service.
        service: String,
        /// The limit.
        max: usize,
    },
}

/// Why an entry could not be found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The blackboard has no entry with this key (keys are fixed at
    /// creation).
    #[error("blackboard {service:?} has no entry with this key")]
    UnknownKey {
        /// The service.
        service: String,
    },
    /// A raw key ([`RawReader::entry`]) whose length is not the key
    /// type's size.
    #[error("blackboard {service:?} has keys of {expected} bytes; this key has {size}")]
    WrongKeySize {
        /// The service.
        service: String,
        /// The key type's size.
        expected: usize,
        /// The length given.
        size: usize,
    },
}

/// Why [`RawWriter::update`] refused an update (nothing was written).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// The blackboard has no entry with this key (or index).
    #[error("blackboard {service:?} has no entry with this key")]
    UnknownKey {
        /// The service.
        service: String,
    },
    /// The key's length is not the key type's size.
    #[error("blackboard {service:?} has keys of {expected} bytes; this key has {size}")]
    WrongKeySize {
        /// The service.
        service: String,
        /// The key type's size.
        expected: usize,
        /// The length given.
        size: usize,
    },
    /// The value's length is not the value type's size.
    #[error("blackboard {service:?} has values of {expected} bytes; this value has {size}")]
    WrongValueSize {
        /// The service.
        service: String,
        /// The value type's size.
        expected: usize,
        /// The length given.
        size: usize,
    },
}

impl From<EntryError> for UpdateError {
    fn from(e: EntryError) -> UpdateError {
        match e {
            EntryError::UnknownKey { service } => UpdateError::UnknownKey { service },
            EntryError::WrongKeySize {
                service,
                expected,
                size,
            } => UpdateError::WrongKeySize {
                service,
                expected,
                size,
            },
        }
    }
}

/// Why [`Writer::notify_through`] refused a sink.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyThroughError {
    /// An entry is bound to an id the sink cannot notify.
    #[error("an entry is bound to event {id}, above the sink's max_event_id {max}")]
    EventIdTooLarge {
        /// The bound id.
        id: crate::service::EventId,
        /// The sink's largest id.
        max: crate::service::EventId,
    },
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The writer rewrote the entry during every attempt (it updates it
    /// faster than a value can be copied). Retrying later is fine.
    #[error("the entry was rewritten during each of {attempts} read attempts")]
    Contended {
        /// Attempts made.
        attempts: u32,
    },
}
