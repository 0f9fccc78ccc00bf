//! Blackboards whose types are learnt at run time: [`RawBlackboard`]
//! (keys and values as bytes, for tools such as `conduit get`/`set`/
//! `watch`), and the read-only listing for tools ([`list`], [`inspect`]).

use std::sync::Arc;

use super::layout::{self, READERS, WRITERS, published, words_of};
use super::service::{BlackboardInner, BlackboardPattern};
use super::{EntryError, PortCreateError, RawReader, RawWriter, ReadError};
use crate::domain::Domain;
use crate::node::NodeId;
use crate::service::core::{self, Mode, ServiceRef};
use crate::service::{EventId, PortId, Requested, ServiceBuilder, ServiceError, TypeLayoutInfo};

/// Word `i` of `bytes`, zero-padded (little-endian, as the typed API
/// stores a value's bytes).
pub(crate) fn word_of_bytes(bytes: &[u8], i: usize) -> u64 {
    let mut word = [0u8; 8];
    let start = (8 * i).min(bytes.len());
    let end = (8 * i + 8).min(bytes.len());
    word[..end - start].copy_from_slice(&bytes[start..end]);
    u64::from_le_bytes(word)
}

/// The first `size` bytes of `words`.
pub(crate) fn bytes_of_words(words: &[u64], size: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    bytes.truncate(size);
    bytes
}

/// The key words of the raw key `key`, which must have the key type's
/// size.
pub(crate) fn key_words_of_bytes(
    service: &BlackboardInner,
    key: &[u8],
) -> Result<Vec<u64>, EntryError> {
    let expected = service.config.key.size as usize;
    if key.len() != expected {
        return Err(EntryError::WrongKeySize {
            service: service.config.name.clone(),
            expected,
            size: key.len(),
        });
    }
    Ok((0..words_of(expected))
        .map(|i| word_of_bytes(key, i))
        .collect())
}

impl ServiceBuilder {
    /// An existing blackboard, whatever its key and value types: keys and
    /// values are bytes of the types' sizes ([`RawBlackboard`]). For tools
    /// that learn the types at run time; programs use
    /// [`blackboard`](ServiceBuilder::blackboard), whose types are checked.
    pub fn blackboard_raw(self) -> RawBlackboardBuilder {
        RawBlackboardBuilder { builder: self }
    }
}

/// Opens a blackboard of any types; made by
/// [`ServiceBuilder::blackboard_raw`].
#[derive(Debug)]
pub struct RawBlackboardBuilder {
    builder: ServiceBuilder,
}

impl RawBlackboardBuilder {
    /// Opens the existing blackboard ([`ServiceError::NotFound`] if there is
    /// none), taking its types from its configuration.
    pub fn open(self) -> Result<RawBlackboard, ServiceError> {
        let node = &self.builder.node;
        let name = &self.builder.name;
        let config =
            core::inspect_service::<BlackboardPattern, _>(node.domain_ref(), name, |_, view| {
                view.config.clone()
            })?
            .ok_or_else(|| ServiceError::NotFound(name.clone()))?;
        // The service's own configuration, so every check passes unless
        // the service was replaced since (then a named error).
        let inner =
            core::open::<BlackboardPattern>(node, &config, &Requested::default(), Mode::Open)?;
        Ok(RawBlackboard {
            inner: Arc::new(inner),
        })
    }
}

/// An open blackboard whose types are known only by their layouts:
/// the factory of [`RawWriter`]s and [`RawReader`]s. Cloning it is cheap.
#[derive(Clone)]
pub struct RawBlackboard {
    inner: Arc<BlackboardInner>,
}

impl std::fmt::Debug for RawBlackboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawBlackboard")
            .field("name", &self.inner.config.name)
            .field("entries", &self.inner.config.entry_count)
            .finish()
    }
}

impl RawBlackboard {
    /// The service name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The key type, as recorded by the creator.
    pub fn key_type(&self) -> TypeLayoutInfo {
        self.inner.config.key.info()
    }

    /// The value type, as recorded by the creator.
    pub fn value_type(&self) -> TypeLayoutInfo {
        self.inner.config.value.info()
    }

    /// Whether the writer wakes waiting readers
    /// ([`BlackboardBuilder::notify_changes`](super::BlackboardBuilder::notify_changes)).
    pub fn notify_changes(&self) -> bool {
        self.inner.config.notify
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.config.entry_count
    }

    /// Always `false`: a blackboard has at least one entry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The keys' bytes, in the segment's order (the indices of
    /// [`RawReader::entry_at`] and [`RawWriter::update_at`]).
    pub fn keys(&self) -> Vec<Vec<u8>> {
        let config = &self.inner.config;
        (0..config.entry_count)
            .map(|i| bytes_of_words(config.key(i), config.key.size as usize))
            .collect()
    }

    /// The event bound to the entry at `index`, if any.
    pub fn event_id(&self, index: usize) -> Option<EventId> {
        self.inner.config.event(index)
    }

    /// Creates the writer ([`Blackboard::writer`](super::Blackboard::writer)).
    pub fn writer(&self) -> Result<RawWriter, PortCreateError> {
        RawWriter::create(self.inner.clone())
    }

    /// Creates a reader ([`Blackboard::reader`](super::Blackboard::reader)).
    pub fn reader(&self) -> Result<RawReader, PortCreateError> {
        RawReader::create(self.inner.clone())
    }
}

/// A blackboard as seen by [`list`] and [`inspect`] (for tools such as
/// `conduit list` and `conduit info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlackboardInfo {
    /// The service name.
    pub name: String,
    /// The segment holding it (inside the domain).
    pub segment: String,
    /// Bytes of the segment.
    pub segment_bytes: usize,
    /// The key type.
    pub key: TypeLayoutInfo,
    /// The value type.
    pub value: TypeLayoutInfo,
    /// Most readers at once.
    pub max_readers: usize,
    /// Whether the writer wakes waiting readers.
    pub notify_changes: bool,
    /// The writer registered now: (its id, its node).
    pub writer: Option<(PortId, NodeId)>,
    /// The readers registered now: (id, node) each.
    pub readers: Vec<(PortId, NodeId)>,
    /// Every entry, in the segment's order.
    pub entries: Vec<EntryInfo>,
}

/// One entry of a [`BlackboardInfo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The version of the value below.
    pub version: u64,
    /// The value's bytes; `None` if the writer rewrote the entry during
    /// every read attempt.
    pub value: Option<Vec<u8>>,
    /// The event bound to the entry, if any.
    pub event: Option<EventId>,
}

fn info_of(segment: &str, view: ServiceRef<'_, BlackboardPattern>) -> BlackboardInfo {
    let config = view.config;
    let board =
        super::layout::BlackboardView::new(view.segment, view.layout).expect("checked by the core");
    let ports = |kind| -> Vec<(PortId, NodeId)> {
        view.ports(kind)
            .into_iter()
            .map(|(_, id, node)| (PortId(id), node))
            .collect()
    };
    let size = config.value.size as usize;
    let entries = (0..config.entry_count)
        .map(|i| {
            let words = board.entry(i);
            let mut value = vec![0u64; words.copies[0].len()];
            let read = (0..super::READ_ATTEMPTS)
                .find_map(|_| layout::try_read(words, |j, w| value[j] = w))
                .ok_or(ReadError::Contended {
                    attempts: super::READ_ATTEMPTS,
                });
            EntryInfo {
                key: bytes_of_words(config.key(i), config.key.size as usize),
                version: match read {
                    Ok(version) => version,
                    Err(_) => published(words.current.load(std::sync::atomic::Ordering::Acquire)).0,
                },
                value: read.ok().map(|_| bytes_of_words(&value, size)),
                event: config.event(i),
            }
        })
        .collect();
    BlackboardInfo {
        name: config.name.clone(),
        segment: segment.to_owned(),
        segment_bytes: view.segment.len(),
        key: config.key.info(),
        value: config.value.info(),
        max_readers: config.max_readers,
        notify_changes: config.notify,
        writer: ports(WRITERS).into_iter().next(),
        readers: ports(READERS),
        entries,
    }
}

/// Lists the blackboards of `domain` with every entry's key, version and
/// value, mapped read-only (a snapshot: values may change while it is
/// read; each value read is complete).
pub fn list(domain: &Domain) -> std::io::Result<Vec<BlackboardInfo>> {
    let mut out = Vec::new();
    core::for_each_service::<BlackboardPattern>(domain, |segment, view| {
        out.push(info_of(segment, view));
    })?;
    Ok(out)
}

/// The blackboard `name` of `domain`, as [`list`] shows it; `Ok(None)` if
/// there is none.
pub fn inspect(domain: &Domain, name: &str) -> Result<Option<BlackboardInfo>, ServiceError> {
    core::inspect_service::<BlackboardPattern, _>(domain, name, info_of)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_words_agree_with_the_typed_form() {
        let key = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        let words: Vec<u64> = (0..2).map(|i| word_of_bytes(&key, i)).collect();
        let typed: Vec<u64> = (0..2).map(|i| layout::word_of(&key, i)).collect();
        assert_eq!(words, typed);
        assert_eq!(bytes_of_words(&words, key.len()), key);
        assert_eq!(word_of_bytes(&key, 5), 0, "past the end: zero");
        assert_eq!(
            word_of_bytes(&7u32.to_le_bytes(), 0),
            layout::word_of(&7u32, 0)
        );
    }
}
