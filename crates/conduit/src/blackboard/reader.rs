//! The reader: copies an entry's latest complete value, storing nothing.
//! [`RawReader`] does the work on words and bytes (for tools that learn
//! the types at run time); [`Reader`] adds the types.

use std::cell::Cell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use super::layout::{self, EntryWords, READERS, published};
use super::service::{BlackboardInner, key_words};
use super::{DEFAULT_SPIN, EntryError, PortCreateError, READ_ATTEMPTS, ReadError, WaitError};
use crate::service::registry::PortSlot;
use crate::service::{EventId, PortId};
use crate::shm::ShmSafe;
use crate::sync::Spin;
use crate::sync::atomic::{Ordering, fence};
use crate::sync::fdwake::FdWake;

/// A reader of a blackboard. `Send`, not `Sync` (its wake-up
/// descriptor's state is its own); reads store nothing in the entries.
///
/// With [`notify_changes`](super::BlackboardBuilder::notify_changes), a
/// reader can wait for a change
/// ([`ReaderEntry::wait_changed_since`]), or be attached to a
/// [`WaitSet`](crate::waitset::WaitSet) (it is
/// [`Attachable`](crate::waitset::Attachable)) or any event loop through
/// [`wake_fd`](Reader::wake_fd): when the descriptor is readable, call
/// [`ReaderEntry::poll_changed_since`] for the entries you follow (a poll
/// that finds no change re-arms it). The first report after the
/// descriptor was created may be spurious.
pub struct Reader<K, V> {
    raw: RawReader,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for Reader<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

impl<K: ShmSafe + Eq, V: ShmSafe + Copy> Reader<K, V> {
    pub(super) fn create(service: Arc<BlackboardInner>) -> Result<Reader<K, V>, PortCreateError> {
        Ok(Reader {
            raw: RawReader::create(service)?,
            types: PhantomData,
        })
    }

    /// How long [`ReaderEntry::wait_changed_since`] polls before it sleeps
    /// on the futex (default [`DEFAULT_SPIN`]; [`Spin::NONE`] sleeps at
    /// once).
    pub fn set_spin(&mut self, spin: Spin) {
        self.raw.set_spin(spin);
    }

    /// The wake-up descriptor (created on first call): readable when an
    /// entry may have changed (needs `notify_changes`). After it was
    /// reported readable, call [`ReaderEntry::poll_changed_since`]; one
    /// that finds no change re-arms it. Costs the writer a system call only
    /// while the reader is armed.
    pub fn wake_fd(&self) -> Result<BorrowedFd<'_>, crate::Errno> {
        self.raw.wake_fd()
    }

    /// This reader's id.
    pub fn id(&self) -> PortId {
        self.raw.id
    }

    /// The entry of `key` ([`EntryError::UnknownKey`] if the blackboard has
    /// no such key). Finding it scans the key table: keep the handle.
    pub fn entry(&self, key: &K) -> Result<ReaderEntry<'_, K, V>, EntryError> {
        let index = self.raw.find(&key_words(key))?;
        let raw = self.raw.entry_handle(index);
        // Layouts come from a validated configuration whose value type
        // equals `V` (checked on open), so the copies cover every byte.
        assert_eq!(raw.words.copies[0].len(), layout::words_of(size_of::<V>()));
        Ok(ReaderEntry {
            raw,
            last: Cell::new(None),
            key: PhantomData,
        })
    }
}

impl<K: ShmSafe + Eq, V: ShmSafe + Copy> crate::waitset::Attachable for Reader<K, V> {
    /// # Panics
    ///
    /// If the wake-up descriptor cannot be created (out of descriptors);
    /// call [`Reader::wake_fd`] first to handle that as an error.
    fn fd(&self) -> BorrowedFd<'_> {
        crate::waitset::Attachable::fd(&self.raw)
    }
}

/// One entry of a blackboard, for a reader. Keep it: it holds the
/// entry's words, resolved once, and the last value read (an unchanged
/// entry is then read with one load, [`get_counting`](Self::get_counting)).
pub struct ReaderEntry<'r, K, V> {
    raw: RawReaderEntry<'r>,
    /// The last value read and its version (the fast path).
    last: Cell<Option<(u64, V)>>,
    key: PhantomData<fn() -> K>,
}

impl<K, V> std::fmt::Debug for ReaderEntry<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

impl<K: ShmSafe + Eq, V: ShmSafe + Copy> ReaderEntry<'_, K, V> {
    /// The entry's latest complete value: never torn, never blocking the
    /// writer. [`ReadError::Contended`] if the writer rewrote the entry
    /// during each of [`READ_ATTEMPTS`] attempts.
    #[inline]
    pub fn get(&self) -> Result<V, ReadError> {
        self.get_with_version().map(|(v, _)| v)
    }

    /// [`get`](Self::get) and the value's version.
    #[inline]
    pub fn get_with_version(&self) -> Result<(V, u64), ReadError> {
        self.get_counting().map(|(v, version, _)| (v, version))
    }

    /// [`get_with_version`](Self::get_with_version) and how many attempts
    /// were disturbed by the writer before one succeeded (a diagnostic).
    ///
    /// Fast path: if the published version is the one this handle read
    /// last, the value is the one it read then (a version is never
    /// published twice, `layout.rs`), so an unchanged entry costs one
    /// load of its `current` word and no store to shared memory.
    #[inline]
    pub fn get_counting(&self) -> Result<(V, u64, u32), ReadError> {
        let (version, _) = published(self.raw.words.current.load(Ordering::Acquire));
        match self.last.get() {
            Some((last, value)) if last == version => Ok((value, version, 0)),
            _ => self.read_changed(),
        }
    }

    /// The full read ([`get_counting`](Self::get_counting) when the
    /// version moved), remembered for the fast path.
    #[inline(never)]
    fn read_changed(&self) -> Result<(V, u64, u32), ReadError> {
        // The words go straight into the value: no buffer, no allocation.
        let mut value = MaybeUninit::<V>::uninit();
        let (version, attempt) =
            read_words(self.raw.words, |i, w| layout::put_word(&mut value, i, w))?;
        // SAFETY: `read_words` succeeded, so its last attempt gave every
        // word of the copy, which are `ceil(size_of V / 8)` words (the
        // value type was checked on open, its size included, and
        // `Reader::entry` asserted it): every byte of `value` is written;
        // `V: ShmSafe` is valid for any bytes.
        let value = unsafe { value.assume_init() };
        self.last.set(Some((version, value)));
        Ok((value, version, attempt))
    }

    /// The version of the entry's published value (one load; version 0 is
    /// the initial value, each update adds at least 1).
    #[inline]
    pub fn version(&self) -> u64 {
        self.raw.version()
    }

    /// Whether the entry's version differs from `version` (one load).
    #[inline]
    pub fn changed_since(&self, version: u64) -> bool {
        self.raw.changed_since(version)
    }

    /// Waits until the entry's version differs from `version` and returns
    /// the new version (then [`get`](Self::get) the value): polls for the
    /// reader's spin budget, then sleeps on its futex until the writer's
    /// next update. `timeout` `None` waits for ever.
    /// [`WaitError::NotNotifying`] if the blackboard was created without
    /// [`notify_changes`](super::BlackboardBuilder::notify_changes) (the
    /// writer would never wake it), [`WaitError::Timeout`] on timeout.
    pub fn wait_changed_since(
        &self,
        version: u64,
        timeout: Option<Duration>,
    ) -> Result<u64, WaitError> {
        self.raw.wait_changed_since(version, timeout)
    }

    /// The new version if the entry changed since `version`, else `None`;
    /// never blocks. If the reader's wake-up descriptor is in use, a poll
    /// that finds no change also re-arms it.
    pub fn poll_changed_since(&self, version: u64) -> Option<u64> {
        self.raw.poll_changed_since(version)
    }

    /// The event bound to this entry
    /// ([`BlackboardBuilder::bind_event`](super::BlackboardBuilder::bind_event)),
    /// if any: wait for it with a [`Listener`](crate::event::Listener) of
    /// the event service the writer notifies through, then
    /// [`poll_changed_since`](Self::poll_changed_since) or
    /// [`get_with_version`](Self::get_with_version). The id says "an
    /// entry bound to it may have changed": several entries may share it,
    /// and one notification may stand for several updates.
    pub fn event_id(&self) -> Option<EventId> {
        self.raw.event_id()
    }
}

/// Reads `entry` with up to [`READ_ATTEMPTS`] attempts: `out` gets the
/// words of each attempt, the last complete; returns the version and the
/// attempts that were disturbed.
#[inline]
fn read_words(
    entry: EntryWords<'_>,
    mut out: impl FnMut(usize, u64),
) -> Result<(u64, u32), ReadError> {
    for attempt in 0..READ_ATTEMPTS {
        if let Some(version) = layout::try_read(entry, &mut out) {
            return Ok((version, attempt));
        }
        crate::sync::spin_loop();
    }
    Err(ReadError::Contended {
        attempts: READ_ATTEMPTS,
    })
}

/// A reader that knows the blackboard's key and value types only by
/// their sizes: keys and values are bytes (for tools such as
/// `conduit get`; made by [`RawBlackboard::reader`](super::RawBlackboard::reader)).
/// The same reader as [`Reader`], with the same guarantees; `Send`, not
/// `Sync`.
pub struct RawReader {
    service: Arc<BlackboardInner>,
    slot: usize,
    id: PortId,
    spin: Spin,
    fd: FdWake,
}

impl std::fmt::Debug for RawReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("service", &self.service.config.name)
            .field("id", &self.id)
            .finish()
    }
}

impl RawReader {
    pub(super) fn create(service: Arc<BlackboardInner>) -> Result<RawReader, PortCreateError> {
        let id = PortId::unique();
        let slot = {
            let view = service.view();
            service
                .claim_slot(READERS, id.0, |i| {
                    // A dead reader's arming: reset before the id is published.
                    view.slots(READERS)
                        .get(i)
                        .fd_armed
                        .store(0, Ordering::Relaxed);
                })
                .map_err(|full| PortCreateError::ExceedsMaxReaders {
                    service: full.service,
                    max: full.max,
                })?
        };
        // SeqCst fence: pairs with the writer's before it looks for
        // readers to wake (`Writer::wake_readers`): either the writer sees
        // this reader's slot, or this reader's next look at `current` sees
        // the writer's update.
        fence(Ordering::SeqCst);
        Ok(RawReader {
            service,
            slot,
            id,
            spin: Spin::duration(DEFAULT_SPIN),
            fd: FdWake::default(),
        })
    }

    /// [`Reader::set_spin`].
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// [`Reader::wake_fd`].
    pub fn wake_fd(&self) -> Result<BorrowedFd<'_>, crate::Errno> {
        self.fd.fd(self.service.domain.wake_prefix(), self.id.0)
    }

    /// This reader's id.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.service.config.entry_count
    }

    /// Always `false`: a blackboard has at least one entry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The entry whose key has the bytes `key` (exactly the key type's
    /// size: [`EntryError::WrongKeySize`]; [`EntryError::UnknownKey`] if
    /// there is no such key).
    pub fn entry(&self, key: &[u8]) -> Result<RawReaderEntry<'_>, EntryError> {
        let index = self.find(&super::raw::key_words_of_bytes(&self.service, key)?)?;
        Ok(self.entry_handle(index))
    }

    /// The handle of entry `index` (below the number of entries).
    fn entry_handle(&self, index: usize) -> RawReaderEntry<'_> {
        RawReaderEntry {
            reader: self,
            index,
            words: self.service.board().entry(index),
        }
    }

    /// The entry at `index` (`0..len()`, the segment's order, the order of
    /// [`RawBlackboard::keys`](super::RawBlackboard::keys)).
    pub fn entry_at(&self, index: usize) -> Option<RawReaderEntry<'_>> {
        (index < self.len()).then(|| self.entry_handle(index))
    }

    fn find(&self, key: &[u64]) -> Result<usize, EntryError> {
        self.service
            .config
            .find(key)
            .ok_or_else(|| EntryError::UnknownKey {
                service: self.service.config.name.clone(),
            })
    }

    fn port_slot(&self) -> &PortSlot {
        self.service.view().slots(READERS).get(self.slot)
    }
}

impl Drop for RawReader {
    fn drop(&mut self) {
        let slot = self.service.view().slots(READERS).get(self.slot);
        self.fd.release(&slot.event, &slot.fd_armed);
        self.service.release_slot(READERS, self.slot);
    }
}

impl crate::waitset::Attachable for RawReader {
    /// # Panics
    ///
    /// If the wake-up descriptor cannot be created (out of descriptors);
    /// call [`RawReader::wake_fd`] first to handle that as an error.
    fn fd(&self) -> BorrowedFd<'_> {
        self.wake_fd().expect(
            "cannot create the reader's wake-up socket (call wake_fd() first to handle this error)",
        )
    }
}

/// One entry of a blackboard, for a [`RawReader`]: its value as bytes.
#[derive(Clone, Copy)]
pub struct RawReaderEntry<'r> {
    reader: &'r RawReader,
    index: usize,
    /// The entry's words, resolved once.
    words: EntryWords<'r>,
}

impl std::fmt::Debug for RawReaderEntry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderEntry")
            .field("index", &self.index)
            .finish()
    }
}

impl RawReaderEntry<'_> {
    /// The entry's index (`0..len()`).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The key's bytes.
    pub fn key(&self) -> Vec<u8> {
        let config = &self.reader.service.config;
        super::raw::bytes_of_words(config.key(self.index), config.key.size as usize)
    }

    /// The value's bytes (the value type's size) and its version:
    /// [`ReaderEntry::get_with_version`].
    pub fn get_with_version(&self) -> Result<(Vec<u8>, u64), ReadError> {
        let mut words = vec![0u64; self.reader.service.layout.value_words];
        let (version, _) = read_words(self.words, |i, w| words[i] = w)?;
        let size = self.reader.service.config.value.size as usize;
        Ok((super::raw::bytes_of_words(&words, size), version))
    }

    /// [`ReaderEntry::version`].
    #[inline]
    pub fn version(&self) -> u64 {
        published(self.words.current.load(Ordering::Acquire)).0
    }

    /// [`ReaderEntry::changed_since`].
    #[inline]
    pub fn changed_since(&self, version: u64) -> bool {
        self.version() != version
    }

    /// [`ReaderEntry::wait_changed_since`].
    pub fn wait_changed_since(
        &self,
        version: u64,
        timeout: Option<Duration>,
    ) -> Result<u64, WaitError> {
        let service = &self.reader.service;
        if !service.config.notify {
            return Err(WaitError::NotNotifying {
                service: service.config.name.clone(),
            });
        }
        self.reader
            .port_slot()
            .event
            .wait_until(self.reader.spin, timeout, || self.changed(version))
            .ok_or(WaitError::Timeout)
    }

    /// [`ReaderEntry::poll_changed_since`].
    pub fn poll_changed_since(&self, version: u64) -> Option<u64> {
        let reader = self.reader;
        if reader.fd.is_active() {
            let slot = reader.port_slot();
            reader
                .fd
                .poll(&slot.event, &slot.fd_armed, || self.changed(version))
        } else {
            self.changed(version)
        }
    }

    /// [`ReaderEntry::event_id`].
    pub fn event_id(&self) -> Option<EventId> {
        self.reader.service.config.event(self.index)
    }

    fn changed(&self, version: u64) -> Option<u64> {
        let now = self.version();
        (now != version).then_some(now)
    }
}
