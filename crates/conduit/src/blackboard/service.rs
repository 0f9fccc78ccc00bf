//! The blackboard service: its builder, the open service (the factory of
//! the writer and readers) and what it tells the service core about
//! itself.

use std::marker::PhantomData;
use std::sync::Arc;

use super::layout::{
    BLACKBOARD_FINGERPRINT, BlackboardConfig, BlackboardLayout, BlackboardView, READERS, WRITERS,
    word_of, words_of,
};
use super::{Reader, Writer};
use crate::domain::{Domain, ServiceKind};
use crate::service::core::{self, Mode, Pattern, ServiceCore};
use crate::service::{EventId, Requested, ServiceBuilder, ServiceError, TypeDesc};
use crate::shm::ShmSafe;

/// The blackboard pattern, as the service core sees it.
#[derive(Debug)]
pub(crate) struct BlackboardPattern;

impl Pattern for BlackboardPattern {
    const KIND: ServiceKind = ServiceKind::Blackboard;
    const FINGERPRINT: u64 = BLACKBOARD_FINGERPRINT;
    const PORT_KINDS: &'static [&'static str] = &["writers", "readers"];

    type Config = BlackboardConfig;
    type Layout = BlackboardLayout;
}

/// An open blackboard, shared by its ports.
pub(crate) type BlackboardInner = ServiceCore<BlackboardPattern>;

impl ServiceCore<BlackboardPattern> {
    pub(crate) fn board(&self) -> BlackboardView<'_> {
        BlackboardView::new(&self.segment, &self.layout).expect("validated on open")
    }
}

/// The key words of `key`.
pub(crate) fn key_words<K: ShmSafe>(key: &K) -> Vec<u64> {
    (0..words_of(size_of::<K>()))
        .map(|i| word_of(key, i))
        .collect()
}

impl ServiceBuilder {
    /// A blackboard: shared state by key, one [`Writer`], any number of
    /// [`Reader`]s, each read lock-free and never torn (see
    /// [`crate::blackboard`]). Give the keys and their initial values with
    /// [`entry`](BlackboardBuilder::entry) or
    /// [`entries`](BlackboardBuilder::entries) when creating. Blackboards
    /// live in their own segment (`bb.<hash>`): a blackboard may share its
    /// name with a service of another pattern.
    ///
    /// `K` and `V` must be padding-free ([`ShmSafe::PADDING_FREE`]; a
    /// compile-time error otherwise): values travel word by word through
    /// atomics, and keys are compared byte by byte.
    pub fn blackboard<K: ShmSafe + Eq, V: ShmSafe + Copy>(self) -> BlackboardBuilder<K, V> {
        const {
            assert!(
                K::PADDING_FREE && V::PADDING_FREE,
                "blackboard keys and values must be padding-free (ShmSafe::PADDING_FREE): add explicit reserved fields"
            )
        };
        BlackboardBuilder {
            config: BlackboardConfig {
                name: self.name.clone(),
                key: TypeDesc::of(&K::LAYOUT),
                value: TypeDesc::of(&V::LAYOUT),
                max_readers: 16,
                notify: false,
                keys: Vec::new(),
                events: Vec::new(),
                initial: Vec::new(),
                entry_count: 0,
            },
            builder: self,
            requested: Requested::default(),
            unknown_bound_keys: 0,
            types: PhantomData,
        }
    }
}

/// Configures a blackboard; made by [`ServiceBuilder::blackboard`].
#[derive(Debug)]
pub struct BlackboardBuilder<K, V> {
    builder: ServiceBuilder,
    config: BlackboardConfig,
    requested: Requested,
    /// `bind_event` calls whose key no earlier `entry` gave.
    unknown_bound_keys: usize,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K: ShmSafe + Eq, V: ShmSafe + Copy> BlackboardBuilder<K, V> {
    /// Adds the entry `key` with its initial value (version 0). When
    /// opening an existing blackboard: the key must exist in it (its value
    /// is left alone). A key given twice is an
    /// [`InvalidConfig`](ServiceError::InvalidConfig) error on creation.
    pub fn entry(mut self, key: K, initial: V) -> Self {
        self.config.keys.extend(key_words(&key));
        self.config
            .initial
            .extend((0..words_of(size_of::<V>())).map(|i| word_of(&initial, i)));
        self.config.entry_count += 1;
        self.requested.insert("entry");
        self
    }

    /// Binds the entry `key` (given earlier with [`entry`](Self::entry)) to
    /// the event `id`: a writer given a notifier with
    /// [`Writer::notify_through`] notifies `id` after each update of the
    /// entry, so readers can wait for its changes with an event
    /// [`Listener`](crate::event::Listener): in a
    /// [`WaitSet`](crate::waitset::WaitSet), next to other events, or
    /// asynchronously (feature `tokio`). Readers learn the binding with
    /// [`ReaderEntry::event_id`](super::ReaderEntry::event_id). The binding
    /// is part of the static configuration; which event service carries
    /// the ids is up to the program (by convention the one with the
    /// blackboard's name: an event service and a blackboard may share a
    /// name). Several entries may share an id.
    ///
    /// A key no earlier `entry` gave, or an id above
    /// [`MAX_EVENT_ID_LIMIT`](crate::event::MAX_EVENT_ID_LIMIT), is an
    /// [`InvalidConfig`](ServiceError::InvalidConfig) error. When
    /// opening (give the key with `entry`; its value is ignored): the
    /// existing entry must be bound to the same id.
    pub fn bind_event(mut self, key: K, id: impl Into<EventId>) -> Self {
        let id = id.into();
        let words = key_words(&key);
        let index = (0..self.config.entry_count).rfind(|&i| self.config.key(i) == words);
        match index {
            Some(i) => {
                self.config.events.resize(self.config.entry_count, 0);
                self.config.events[i] = (id.0 as u64).saturating_add(1);
            }
            None => self.unknown_bound_keys += 1,
        }
        self.requested.insert("bind_event");
        self
    }

    /// Adds every `(key, initial value)` of `entries` ([`entry`](Self::entry)).
    pub fn entries(self, entries: impl IntoIterator<Item = (K, V)>) -> Self {
        entries
            .into_iter()
            .fold(self, |builder, (k, v)| builder.entry(k, v))
    }

    /// Most readers at once (1..=256; default 16). When opening: at least this.
    pub fn max_readers(mut self, n: usize) -> Self {
        self.config.max_readers = n;
        self.requested.insert("max_readers");
        self
    }

    /// Whether the writer wakes readers that wait for a change
    /// ([`ReaderEntry::wait_changed_since`](super::ReaderEntry::wait_changed_since),
    /// the WaitSet, the reader's wake-up descriptor) after each update
    /// (default `false`: readers can only poll `changed_since`). It costs
    /// the writer one atomic add per reader and a fence per update, and a
    /// system call only for a reader asleep. When opening: must be equal.
    pub fn notify_changes(mut self, on: bool) -> Self {
        self.config.notify = on;
        self.requested.insert("notify_changes");
        self
    }

    /// Creates the blackboard with the entries given;
    /// [`ServiceError::AlreadyExists`] if it exists.
    pub fn create(self) -> Result<Blackboard<K, V>, ServiceError> {
        self.build(Mode::Create)
    }

    /// Opens the existing blackboard, checking its key and value types
    /// ([`ServiceError::IncompatibleType`]) and that every entry given
    /// exists. Needs no entries.
    pub fn open(self) -> Result<Blackboard<K, V>, ServiceError> {
        self.build(Mode::Open)
    }

    /// Opens the blackboard, creating it with the entries given if it does
    /// not exist.
    pub fn open_or_create(self) -> Result<Blackboard<K, V>, ServiceError> {
        self.build(Mode::OpenOrCreate)
    }

    fn build(self, mode: Mode) -> Result<Blackboard<K, V>, ServiceError> {
        let mut config = self.config;
        if self.unknown_bound_keys > 0 {
            return Err(ServiceError::InvalidConfig(format!(
                "bind_event: {} keys not given with entry first",
                self.unknown_bound_keys
            )));
        }
        if !config.events.is_empty() {
            config.events.resize(config.entry_count, 0);
        }
        if mode == Mode::Open && config.entry_count == 0 {
            // The opener's config is only compared: give it one
            // placeholder entry so that it validates (keys not requested).
            config.keys = vec![0; words_of(size_of::<K>())];
            config.initial = vec![0; words_of(size_of::<V>())];
            config.entry_count = 1;
        }
        let inner =
            core::open::<BlackboardPattern>(&self.builder.node, &config, &self.requested, mode)?;
        Ok(Blackboard {
            inner: Arc::new(inner),
            types: PhantomData,
        })
    }
}

/// An open blackboard: the factory of its [`Writer`] and [`Reader`]s.
/// Cloning it is cheap (one shared mapping).
pub struct Blackboard<K, V> {
    inner: Arc<BlackboardInner>,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Blackboard<K, V> {
    fn clone(&self) -> Self {
        Blackboard {
            inner: self.inner.clone(),
            types: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for Blackboard<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blackboard")
            .field("name", &self.inner.config.name)
            .field("entries", &self.inner.config.entry_count)
            .finish()
    }
}

impl<K: ShmSafe + Eq, V: ShmSafe + Copy> Blackboard<K, V> {
    /// The service name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.config.entry_count
    }

    /// Always `false`: a blackboard has at least one entry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The keys, in the segment's order.
    pub fn keys(&self) -> Vec<K> {
        (0..self.len())
            .map(|i| super::layout::value_of(self.inner.config.key(i)))
            .collect()
    }

    /// Creates the writer. Fails with
    /// [`PortCreateError::WriterExists`](super::PortCreateError::WriterExists)
    /// while another live writer has the slot; the slot of a dead writer is
    /// reclaimed first, so a new writer can take over after a crash.
    pub fn writer(&self) -> Result<Writer<K, V>, super::PortCreateError> {
        Writer::create(self.inner.clone())
    }

    /// Creates a reader ([`PortCreateError::ExceedsMaxReaders`](super::PortCreateError::ExceedsMaxReaders)
    /// if `max_readers` live readers exist).
    pub fn reader(&self) -> Result<Reader<K, V>, super::PortCreateError> {
        Reader::create(self.inner.clone())
    }

    /// Frees the slots of dead nodes' ports now; returns how many (writer
    /// and readers). Also done when the service is opened, when a port
    /// finds its slots full, and by domain cleanup.
    pub fn cleanup_dead_ports(&self) -> usize {
        let freed = self.inner.cleanup_dead_ports();
        freed[WRITERS] + freed[READERS]
    }

    /// The event bound to the entry of `key`
    /// ([`BlackboardBuilder::bind_event`]); `None` if the entry is not
    /// bound or the key unknown.
    pub fn event_id(&self, key: &K) -> Option<EventId> {
        let config = &self.inner.config;
        config.find(&key_words(key)).and_then(|i| config.event(i))
    }

    /// Number of live reader slots (a diagnostic).
    pub fn readers(&self) -> usize {
        self.inner.view().ports(READERS).len()
    }
}

/// Cleans every blackboard of `domain` (dead ports; blackboards nobody has
/// open are removed).
pub(crate) fn cleanup_domain(domain: &Domain, permissions: crate::shm::Permissions) {
    core::cleanup_domain::<BlackboardPattern>(domain, permissions);
}
