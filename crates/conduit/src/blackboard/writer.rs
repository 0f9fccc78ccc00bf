//! The writer: updates entries in place, one at a time, never waiting.
//! [`RawWriter`] does the work on words and bytes (for tools that learn
//! the types at run time); [`Writer`] adds the types.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::Arc;

use super::layout::{self, EntryWords, READERS, WRITERS, published};
use super::service::{BlackboardInner, key_words};
use super::{EntryError, NotifyThroughError, PortCreateError, UpdateError};
use crate::service::{EventSink, PortId};
use crate::shm::ShmSafe;
use crate::sync::atomic::{Ordering, fence};

/// The one writer of a blackboard. `Send`, not `Sync`: one thread updates
/// at a time, as the entry protocol requires.
pub struct Writer<K, V> {
    raw: RawWriter,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for Writer<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

impl<K: ShmSafe + Eq, V: ShmSafe + Copy> Writer<K, V> {
    pub(super) fn create(service: Arc<BlackboardInner>) -> Result<Writer<K, V>, PortCreateError> {
        Ok(Writer {
            raw: RawWriter::create(service)?,
            types: PhantomData,
        })
    }

    /// From now on, after each update of an entry bound to an event
    /// ([`BlackboardBuilder::bind_event`](super::BlackboardBuilder::bind_event)),
    /// notifies that event through `sink`: usually a
    /// [`Notifier`](crate::event::Notifier) of the event service whose
    /// [`Listener`](crate::event::Listener)s the readers wait on. Replaces
    /// the previous sink. [`NotifyThroughError::EventIdTooLarge`] (and no
    /// change) if an entry is bound to an id above the sink's
    /// `max_event_id`.
    ///
    /// The notification follows the update's publication (the listener
    /// that takes the id sees the new version), and costs what a
    /// [`Notifier::notify`](crate::event::Notifier::notify) costs: no
    /// system call unless a listener sleeps. A writer killed between the
    /// two leaves the update published but unannounced: give the event
    /// service a
    /// [`notifier_dead_event`](crate::event::EventBuilder::notifier_dead_event)
    /// to learn of it.
    pub fn notify_through(
        &mut self,
        sink: impl EventSink + 'static,
    ) -> Result<(), NotifyThroughError> {
        self.raw.notify_through(sink)
    }

    /// This writer's id.
    pub fn id(&self) -> PortId {
        self.raw.id
    }

    /// The entry of `key` ([`EntryError::UnknownKey`] if the blackboard has
    /// no such key). Finding it scans the key table: keep the handle.
    pub fn entry(&self, key: &K) -> Result<WriterEntry<'_, K, V>, EntryError> {
        let index = self.raw.find(&key_words(key))?;
        Ok(WriterEntry {
            writer: self,
            index,
        })
    }
}

/// A writer that knows the blackboard's key and value types only by
/// their sizes: keys and values are bytes (for tools such as
/// `conduit set`; made by [`RawBlackboard::writer`](super::RawBlackboard::writer)).
/// The same writer as [`Writer`] (it takes the one writer slot), with the
/// same guarantees; `Send`, not `Sync`.
pub struct RawWriter {
    service: Arc<BlackboardInner>,
    slot: usize,
    id: PortId,
    /// With `notify_changes`: (reader generation seen, reader slots in use
    /// then). A `RefCell`, so the writer is not `Sync`.
    readers: RefCell<(u64, Vec<usize>)>,
    /// Where the events bound to entries go ([`Writer::notify_through`]).
    sink: Option<Box<dyn EventSink>>,
}

impl std::fmt::Debug for RawWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("service", &self.service.config.name)
            .field("id", &self.id)
            .finish()
    }
}

impl RawWriter {
    pub(super) fn create(service: Arc<BlackboardInner>) -> Result<RawWriter, PortCreateError> {
        let id = PortId::unique();
        let slot = service.claim_slot(WRITERS, id.0, |_| {}).map_err(|_| {
            PortCreateError::WriterExists {
                service: service.config.name.clone(),
            }
        })?;
        Ok(RawWriter {
            service,
            slot,
            id,
            readers: RefCell::new((u64::MAX, Vec::new())),
            sink: None,
        })
    }

    /// [`Writer::notify_through`].
    pub fn notify_through(
        &mut self,
        sink: impl EventSink + 'static,
    ) -> Result<(), NotifyThroughError> {
        let config = &self.service.config;
        let max = sink.max_event_id();
        if let Some(id) = (0..config.entry_count)
            .filter_map(|i| config.event(i))
            .find(|id| *id > max)
        {
            return Err(NotifyThroughError::EventIdTooLarge { id, max });
        }
        self.sink = Some(Box::new(sink));
        Ok(())
    }

    /// This writer's id.
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

    /// Publishes the bytes `value` as the new value of the entry whose key
    /// has the bytes `key`; returns its version ([`WriterEntry::update`]).
    /// `key` and `value` must have exactly the sizes of the key and value
    /// types ([`UpdateError::WrongKeySize`],
    /// [`UpdateError::WrongValueSize`]); [`UpdateError::UnknownKey`] if
    /// the blackboard has no such key. Every byte pattern of the right
    /// size is accepted: the types' invariants are the caller's business.
    pub fn update(&self, key: &[u8], value: &[u8]) -> Result<u64, UpdateError> {
        let words = super::raw::key_words_of_bytes(&self.service, key)?;
        let index = self.find(&words)?;
        self.update_at(index, value)
    }

    /// [`update`](Self::update) of the entry at `index` (`0..len()`, the
    /// order of [`RawBlackboard::keys`](super::RawBlackboard::keys));
    /// [`UpdateError::UnknownKey`] if out of range.
    pub fn update_at(&self, index: usize, value: &[u8]) -> Result<u64, UpdateError> {
        let config = &self.service.config;
        if index >= config.entry_count {
            return Err(UpdateError::UnknownKey {
                service: config.name.clone(),
            });
        }
        let expected = config.value.size as usize;
        if value.len() != expected {
            return Err(UpdateError::WrongValueSize {
                service: config.name.clone(),
                expected,
                size: value.len(),
            });
        }
        Ok(self.update_words(index, |i| super::raw::word_of_bytes(value, i)))
    }

    /// The version of the published value of the entry at `index`.
    ///
    /// # Panics
    ///
    /// If `index` is not below [`len`](Self::len).
    pub fn version_at(&self, index: usize) -> u64 {
        published(self.words(index).current.load(Ordering::Acquire)).0
    }

    fn find(&self, key: &[u64]) -> Result<usize, EntryError> {
        self.service
            .config
            .find(key)
            .ok_or_else(|| EntryError::UnknownKey {
                service: self.service.config.name.clone(),
            })
    }

    fn words(&self, index: usize) -> EntryWords<'_> {
        self.service.board().entry(index)
    }

    /// Every step of an update of entry `index`: publish, wake waiting
    /// readers, notify the bound event.
    #[inline]
    fn update_words(&self, index: usize, words: impl Fn(usize) -> u64) -> u64 {
        let version = layout::update(self.words(index), words);
        self.wake_readers();
        if let Some(sink) = &self.sink {
            if let Some(id) = self.service.config.event(index) {
                sink.notify_event(id);
            }
        }
        version
    }

    /// With `notify_changes`: wakes every reader that waits (an epoch bump
    /// per reader; a system call only for a sleeper). Runs after the
    /// update's Release store of `current`.
    #[inline]
    fn wake_readers(&self) {
        if !self.service.config.notify {
            return;
        }
        // SeqCst fence: pairs with the one a new reader makes after it
        // claimed its slot (store `id` and bump the generation, then
        // fence, then load `current`): either this writer sees the new
        // generation below, or that reader sees this update's `current`.
        fence(Ordering::SeqCst);
        let view = self.service.view();
        let generation = view.header().generation[READERS].load(Ordering::Acquire);
        let slots = view.slots(READERS);
        let mut cache = self.readers.borrow_mut();
        if cache.0 != generation {
            cache.1 = (0..self.service.layout.max_readers)
                .filter(|&i| slots.get(i).port() != 0)
                .collect();
            cache.0 = generation;
        }
        let prefix = self.service.domain.wake_prefix();
        for &i in &cache.1 {
            let slot = slots.get(i);
            crate::sync::fdwake::wake(&slot.event, &slot.fd_armed, prefix, || slot.port());
        }
    }
}

impl Drop for RawWriter {
    fn drop(&mut self) {
        self.service.release_slot(WRITERS, self.slot);
    }
}

/// One entry of a blackboard, for its writer.
pub struct WriterEntry<'w, K, V> {
    writer: &'w Writer<K, V>,
    index: usize,
}

impl<K, V> std::fmt::Debug for WriterEntry<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterEntry")
            .field("index", &self.index)
            .finish()
    }
}

impl<'w, K: ShmSafe + Eq, V: ShmSafe + Copy> WriterEntry<'w, K, V> {
    /// Publishes `value` as the entry's new value; returns its version.
    /// Never blocks and never fails: readers store nothing in the entries,
    /// so nothing can hold the writer up. With
    /// [`notify_changes`](super::BlackboardBuilder::notify_changes), then
    /// wakes the readers that wait, and with
    /// [`Writer::notify_through`] notifies the entry's bound event. A
    /// writer killed inside leaves the previous value readable (see
    /// [`crate::blackboard`]).
    #[inline]
    pub fn update(&self, value: V) -> u64 {
        self.writer
            .raw
            .update_words(self.index, |i| layout::word_of(&value, i))
    }

    /// The version of the entry's published value.
    pub fn version(&self) -> u64 {
        self.writer.raw.version_at(self.index)
    }

    /// A loan of an uninitialised value for the entry, to build in place
    /// and then [`update`](EntryLoan::update) with.
    ///
    /// The value is built in the writer's own memory, not in the segment:
    /// readers load the segment's value words concurrently with atomic
    /// loads, and a `&mut V` into them would be plain stores racing with
    /// those loads (undefined behaviour in Rust's memory model). `update`
    /// then stores it word by word, which for the values a blackboard
    /// carries (at most 4 KiB) is the copy a plain write would make.
    pub fn loan_uninit(&self) -> EntryLoanUninit<'_, 'w, K, V> {
        EntryLoanUninit {
            entry: self,
            value: MaybeUninit::uninit(),
        }
    }
}

/// An uninitialised value for an entry; [`write`](Self::write) it.
pub struct EntryLoanUninit<'e, 'w, K, V> {
    entry: &'e WriterEntry<'w, K, V>,
    value: MaybeUninit<V>,
}

impl<'e, 'w, K: ShmSafe + Eq, V: ShmSafe + Copy> EntryLoanUninit<'e, 'w, K, V> {
    /// Writes the value.
    pub fn write(mut self, value: V) -> EntryLoan<'e, 'w, K, V> {
        self.value.write(value);
        EntryLoan {
            entry: self.entry,
            // SAFETY: just written.
            value: unsafe { self.value.assume_init() },
        }
    }

    /// The value's memory, to initialise field by field; then call
    /// [`assume_init`](Self::assume_init).
    pub fn as_mut_ptr(&mut self) -> *mut V {
        self.value.as_mut_ptr()
    }

    /// The loan with its value written through [`as_mut_ptr`](Self::as_mut_ptr).
    ///
    /// # Safety
    ///
    /// Every byte of the value must have been written.
    pub unsafe fn assume_init(self) -> EntryLoan<'e, 'w, K, V> {
        EntryLoan {
            entry: self.entry,
            // SAFETY: the caller wrote every byte.
            value: unsafe { self.value.assume_init() },
        }
    }
}

/// A value for an entry, readable and changeable until
/// [`update`](Self::update) publishes it (dropping it publishes nothing).
pub struct EntryLoan<'e, 'w, K, V> {
    entry: &'e WriterEntry<'w, K, V>,
    value: V,
}

impl<K, V> std::ops::Deref for EntryLoan<'_, '_, K, V> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.value
    }
}

impl<K, V> std::ops::DerefMut for EntryLoan<'_, '_, K, V> {
    fn deref_mut(&mut self) -> &mut V {
        &mut self.value
    }
}

impl<K: ShmSafe + Eq, V: ShmSafe + Copy> EntryLoan<'_, '_, K, V> {
    /// Publishes the value ([`WriterEntry::update`]); returns its version.
    pub fn update(self) -> u64 {
        self.entry.update(self.value)
    }
}
