//! The reader: copies an entry's latest complete value, storing nothing.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use super::layout::{self, EntryWords, READERS, published};
use super::service::{BlackboardInner, key_words};
use super::{DEFAULT_SPIN, EntryError, PortCreateError, READ_ATTEMPTS, ReadError, WaitError};
use crate::service::PortId;
use crate::service::registry::PortSlot;
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
    service: Arc<BlackboardInner>,
    slot: usize,
    id: PortId,
    spin: Spin,
    fd: FdWake,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for Reader<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("service", &self.service.config.name)
            .field("id", &self.id)
            .finish()
    }
}

impl<K: ShmSafe + Eq, V: ShmSafe + Copy> Reader<K, V> {
    pub(super) fn create(service: Arc<BlackboardInner>) -> Result<Reader<K, V>, PortCreateError> {
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
        Ok(Reader {
            service,
            slot,
            id,
            spin: Spin::duration(DEFAULT_SPIN),
            fd: FdWake::default(),
            types: PhantomData,
        })
    }

    /// How long [`ReaderEntry::wait_changed_since`] polls before it sleeps
    /// on the futex (default [`DEFAULT_SPIN`]; [`Spin::NONE`] sleeps at
    /// once).
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// The wake-up descriptor (created on first call): readable when an
    /// entry may have changed (needs `notify_changes`). After it was
    /// reported readable, call [`ReaderEntry::poll_changed_since`]; one
    /// that finds no change re-arms it. Costs the writer a system call only
    /// while the reader is armed.
    pub fn wake_fd(&self) -> Result<BorrowedFd<'_>, crate::Errno> {
        self.fd.fd(self.service.domain.wake_prefix(), self.id.0)
    }

    fn port_slot(&self) -> &PortSlot {
        self.service.view().slots(READERS).get(self.slot)
    }

    /// This reader's id.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// The entry of `key` ([`EntryError::UnknownKey`] if the blackboard has
    /// no such key). Finding it scans the key table: keep the handle.
    pub fn entry(&self, key: &K) -> Result<ReaderEntry<'_, K, V>, EntryError> {
        let index =
            self.service
                .config
                .find(&key_words(key))
                .ok_or_else(|| EntryError::UnknownKey {
                    service: self.service.config.name.clone(),
                })?;
        Ok(ReaderEntry {
            reader: self,
            index,
        })
    }

    fn words(&self, index: usize) -> EntryWords<'_> {
        self.service.board().entry(index)
    }
}

impl<K, V> Drop for Reader<K, V> {
    fn drop(&mut self) {
        let slot = self.service.view().slots(READERS).get(self.slot);
        self.fd.release(&slot.event, &slot.fd_armed);
        self.service.release_slot(READERS, self.slot);
    }
}

impl<K: ShmSafe + Eq, V: ShmSafe + Copy> crate::waitset::Attachable for Reader<K, V> {
    /// # Panics
    ///
    /// If the wake-up descriptor cannot be created (out of descriptors);
    /// call [`Reader::wake_fd`] first to handle that as an error.
    fn fd(&self) -> BorrowedFd<'_> {
        self.wake_fd().expect(
            "cannot create the reader's wake-up socket (call wake_fd() first to handle this error)",
        )
    }
}

/// One entry of a blackboard, for a reader.
pub struct ReaderEntry<'r, K, V> {
    reader: &'r Reader<K, V>,
    index: usize,
}

impl<K, V> std::fmt::Debug for ReaderEntry<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderEntry")
            .field("index", &self.index)
            .finish()
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
    pub fn get_counting(&self) -> Result<(V, u64, u32), ReadError> {
        let entry = self.reader.words(self.index);
        // The words go straight into the value: no buffer, no allocation.
        let mut value = MaybeUninit::<V>::uninit();
        // Layouts come from a validated configuration whose value type
        // equals `V` (checked on open), so the copies cover every byte.
        assert_eq!(entry.copies[0].len(), layout::words_of(size_of::<V>()));
        for attempt in 0..READ_ATTEMPTS {
            if let Some(version) =
                layout::try_read(entry, |i, w| layout::put_word(&mut value, i, w))
            {
                // SAFETY: `try_read` gave every word of the copy, which
                // are `ceil(size_of V / 8)` words (the value type was
                // checked on open, its size included), so every byte of
                // `value` is written; `V: ShmSafe` is valid for any bytes.
                return Ok((unsafe { value.assume_init() }, version, attempt));
            }
            crate::sync::spin_loop();
        }
        Err(ReadError::Contended {
            attempts: READ_ATTEMPTS,
        })
    }

    /// The version of the entry's published value (one load; version 0 is
    /// the initial value, each update adds at least 1).
    #[inline]
    pub fn version(&self) -> u64 {
        published(
            self.reader
                .words(self.index)
                .current
                .load(Ordering::Acquire),
        )
        .0
    }

    /// Whether the entry's version differs from `version` (one load).
    #[inline]
    pub fn changed_since(&self, version: u64) -> bool {
        self.version() != version
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

    /// The new version if the entry changed since `version`, else `None`;
    /// never blocks. If the reader's wake-up descriptor is in use, a poll
    /// that finds no change also re-arms it.
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

    /// The event bound to this entry
    /// ([`BlackboardBuilder::bind_event`](super::BlackboardBuilder::bind_event)),
    /// if any: wait for it with a [`Listener`](crate::event::Listener) of
    /// the event service the writer notifies through, then
    /// [`poll_changed_since`](Self::poll_changed_since) or
    /// [`get_with_version`](Self::get_with_version). The id says "an
    /// entry bound to it may have changed": several entries may share it,
    /// and one notification may stand for several updates.
    pub fn event_id(&self) -> Option<crate::service::EventId> {
        self.reader.service.config.event(self.index)
    }

    fn changed(&self, version: u64) -> Option<u64> {
        let now = self.version();
        (now != version).then_some(now)
    }
}
