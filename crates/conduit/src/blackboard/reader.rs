//! The reader: copies an entry's latest complete value, storing nothing.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::Arc;

use super::layout::{self, EntryWords, READERS, published};
use super::service::{BlackboardInner, key_words};
use super::{EntryError, PortCreateError, READ_ATTEMPTS, ReadError};
use crate::service::PortId;
use crate::shm::ShmSafe;
use crate::sync::atomic::Ordering;

/// A reader of a blackboard. `Send` and `Sync`: reads store nothing.
pub struct Reader<K, V> {
    service: Arc<BlackboardInner>,
    slot: usize,
    id: PortId,
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
        let slot = service.claim_slot(READERS, id.0, |_| {}).map_err(|full| {
            PortCreateError::ExceedsMaxReaders {
                service: full.service,
                max: full.max,
            }
        })?;
        Ok(Reader {
            service,
            slot,
            id,
            types: PhantomData,
        })
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
        self.service.release_slot(READERS, self.slot);
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
}
