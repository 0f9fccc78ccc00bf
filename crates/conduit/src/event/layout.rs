//! The event service segment's byte layout (data area):
//!
//! ```text
//! 0      ServiceHeader line (service core): removed | generation[NOTIFIERS] | generation[LISTENERS]
//! 64     config: 40 × u64 (written before READY, never changed)
//! 384    notifier slots × max_notifiers (64 B each; the core's PortSlot: node_id | id, the rest unused)
//! L      listener slots × max_listeners (slot_size each), L = 384 + 64 × max_notifiers:
//!          +0  PortSlot: node_id u64 | +8 id u64 | +16 EventWord u32 | +20 fd_armed u32
//!          +24 pending: [u64; words], words = ceil((max_event_id + 1) / 64)
//!          slot_size = round_up(24 + 8 × words, 64)
//! ```
//!
//! Config words: `0..34` the core's (format, name length, name;
//! `service::config`), `34` max_event_id, `35` max_notifiers, `36`
//! max_listeners, `37` created event, `38` dropped event, `39` dead event
//! (`u64::MAX` = none).
//!
//! Decoding (`EventConfig`'s `PatternConfig::read`) checks the format,
//! every count word ≤ 2^20, `max_event_id` ≤ 4095 ([`MAX_EVENT_ID_LIMIT`]),
//! `max_notifiers` and `max_listeners` in 1..=256 ([`MAX_PORTS_LIMIT`]),
//! and that the created / dropped / dead events are ≤ `max_event_id`. With
//! the default `max_event_id = 255` a listener slot is one 64-byte line:
//! everything a notifier touches for one listener (id, event word, armed
//! flag, pending words) is in one line. Default service (16 notifiers, 16
//! listeners): 384 + 16 × 64 + 16 × 64 = 2432 bytes of data area, one page
//! with the segment header.
//!
//! # Every shared word
//!
//! The header's `removed` word, the generation words' transitions and the
//! slot words `node_id` and `id` are the service core's
//! (`service::registry`). What they mean here, and the words of this
//! pattern:
//!
//! | word | writers | states / transitions |
//! |---|---|---|
//! | `generation[NOTIFIERS]` | the core, after each notifier slot claim, release or reclamation | nothing reads it (kept like every port kind's) |
//! | `generation[LISTENERS]` | the core, after each listener slot claim, release or reclamation | notifiers rescan their cached list of listener slots when it moved |
//! | notifier slot `node_id`, `id` | the creating notifier, its drop, cleaners | the `sync::slot` protocol; the rest of the line is unused |
//! | listener slot `node_id`, `id` | the same for listeners | a new listener zeroes `pending` and `fd_armed` in `try_claim`'s `prepare` step, after claiming `node_id` and before storing `id` (Release; loom model `loom_service_listener_claim_publishes_reset`); a notifier sets bits only in slots whose `id` (Acquire) is not 0 |
//! | `pending[w]` bit b | notifiers: `fetch_or(1 << (id % 64), Release)` on word `id / 64`; the listener: `swap(0, Acquire)` (only words whose Relaxed load is non-zero) | 0 → 1 when id `64w + b` is notified, → 0 when the listener takes it; many notifies of one id between two looks are one bit (a level, not a count) |
//! | `event` | notifiers bump the epoch after each `fetch_or`; the listener registers to sleep (futex) or to be woken through its descriptor | `sync::EventWord`: `FUTEX_WAKE` / wake byte only if a sleeper registered |
//! | `fd_armed` | the listener arms (0 → 1); a notifier that saw a registered sleeper swaps it to 0 | `sync::fdwake` |
//!
//! Ids are never lost: a bit once set stays set until the listener takes
//! it, whatever the number of notifications meanwhile (the argument that
//! no wake-up is lost either is in the `event` module docs).

use std::sync::atomic::AtomicU64;

use super::EventId;
use crate::service::core::{PatternConfig, PatternLayout};
use crate::service::registry::{LINE, PortArray, PortSlot, SegmentView, ServiceHeader};
use crate::service::{
    CONFIG_OFFSET, Compat, ConfigReader, ConfigWriter, Requested, ServiceError, W_PATTERN,
};
use crate::shm::{Region, Segment};

pub(crate) const EVENT_FINGERPRINT: u64 = 0x4556_4e54_5356_0001;
pub(crate) const FORMAT: u64 = 1;
pub(crate) const CONFIG_WORDS: usize = 40;
pub(crate) const NONE: u64 = u64::MAX;
/// Port kind of notifiers (index of their generation word and slots).
pub(crate) const NOTIFIERS: usize = 0;
/// Port kind of listeners.
pub(crate) const LISTENERS: usize = 1;
const W_MAX_EVENT_ID: usize = W_PATTERN;
const _: () = assert!(W_MAX_EVENT_ID == 34);
/// Largest allowed `max_event_id`.
pub const MAX_EVENT_ID_LIMIT: usize = crate::service::EVENT_ID_LIMIT;
/// Largest allowed number of notifiers or listeners.
pub const MAX_PORTS_LIMIT: usize = 256;

/// The static configuration of an event service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventConfig {
    pub(crate) name: String,
    pub(crate) max_event_id: EventId,
    pub(crate) max_notifiers: usize,
    pub(crate) max_listeners: usize,
    pub(crate) created_event: Option<EventId>,
    pub(crate) dropped_event: Option<EventId>,
    pub(crate) dead_event: Option<EventId>,
}

fn opt(v: Option<EventId>) -> u64 {
    v.map_or(NONE, |v| v.0 as u64)
}

impl PatternConfig for EventConfig {
    fn check_compatible(
        &self,
        wanted: &EventConfig,
        requested: &Requested,
    ) -> Result<(), ServiceError> {
        let (e, w) = (self, wanted);
        let mut c = Compat::new(&self.name, requested);
        c.at_least("max_event_id", e.max_event_id.0, w.max_event_id.0);
        c.at_least("max_notifiers", e.max_notifiers, w.max_notifiers);
        c.at_least("max_listeners", e.max_listeners, w.max_listeners);
        c.equal("notifier_created_event", e.created_event, w.created_event);
        c.equal("notifier_dropped_event", e.dropped_event, w.dropped_event);
        c.equal("notifier_dead_event", e.dead_event, w.dead_event);
        c.finish()
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_event_id.0 > MAX_EVENT_ID_LIMIT {
            return Err(format!(
                "max_event_id {} exceeds {MAX_EVENT_ID_LIMIT}",
                self.max_event_id
            ));
        }
        for (what, n) in [
            ("max_notifiers", self.max_notifiers),
            ("max_listeners", self.max_listeners),
        ] {
            if n == 0 || n > MAX_PORTS_LIMIT {
                return Err(format!("{what} {n} is not in 1..={MAX_PORTS_LIMIT}"));
            }
        }
        for (what, e) in [
            ("notifier_created_event", self.created_event),
            ("notifier_dropped_event", self.dropped_event),
            ("notifier_dead_event", self.dead_event),
        ] {
            if let Some(e) = e {
                if e > self.max_event_id {
                    return Err(format!(
                        "{what} {e} exceeds max_event_id {}",
                        self.max_event_id
                    ));
                }
            }
        }
        Ok(())
    }

    fn write(&self, region: &Region) -> Result<(), String> {
        let mut c = ConfigWriter::new(region, CONFIG_WORDS, FORMAT, &self.name)?;
        c.count(self.max_event_id.0)
            .count(self.max_notifiers)
            .count(self.max_listeners)
            .word(opt(self.created_event))
            .word(opt(self.dropped_event))
            .word(opt(self.dead_event));
        debug_assert_eq!(c.position(), W_MAX_EVENT_ID + 6);
        Ok(())
    }

    fn read(region: &Region) -> Result<EventConfig, String> {
        let (mut c, name) = ConfigReader::new(region, CONFIG_WORDS, FORMAT)?;
        const SMALL: usize = 1 << 20;
        // An optional event id: `NONE` or a small count.
        let event = |c: &mut ConfigReader<'_>| -> Result<Option<EventId>, String> {
            let i = c.position();
            match c.word() {
                NONE => Ok(None),
                v => usize::try_from(v)
                    .ok()
                    .filter(|v| *v <= SMALL)
                    .map(|v| Some(EventId(v)))
                    .ok_or(format!("config word {i} out of range: {v}")),
            }
        };
        let max_event_id = EventId(c.count(SMALL)?);
        let max_notifiers = c.count(SMALL)?;
        let max_listeners = c.count(SMALL)?;
        let config = EventConfig {
            name,
            max_event_id,
            max_notifiers,
            max_listeners,
            created_event: event(&mut c)?,
            dropped_event: event(&mut c)?,
            dead_event: event(&mut c)?,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Offsets computed from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct EventLayout {
    pub(crate) max_notifiers: usize,
    pub(crate) max_listeners: usize,
    pub(crate) words: usize,
    pub(crate) notifier_slots: usize,
    pub(crate) listener_slots: usize,
    pub(crate) slot_size: usize,
    pub(crate) size: usize,
}

impl PatternLayout<EventConfig> for EventLayout {
    fn of(c: &EventConfig) -> EventLayout {
        let words = (c.max_event_id.0 + 1).div_ceil(64);
        let notifier_slots = CONFIG_OFFSET + CONFIG_WORDS * 8;
        let listener_slots = notifier_slots + LINE * c.max_notifiers;
        let slot_size = (24 + 8 * words).div_ceil(LINE) * LINE;
        EventLayout {
            max_notifiers: c.max_notifiers,
            max_listeners: c.max_listeners,
            words,
            notifier_slots,
            listener_slots,
            slot_size,
            size: listener_slots + slot_size * c.max_listeners,
        }
    }

    fn size(&self) -> usize {
        self.size
    }

    fn port_array(&self, kind: usize) -> PortArray {
        if kind == NOTIFIERS {
            PortArray {
                offset: self.notifier_slots,
                count: self.max_notifiers,
                stride: LINE,
            }
        } else {
            PortArray {
                offset: self.listener_slots,
                count: self.max_listeners,
                stride: self.slot_size,
            }
        }
    }
}

/// One listener slot.
#[derive(Clone, Copy)]
pub(crate) struct ListenerSlot<'a> {
    pub(crate) head: &'a PortSlot,
    pub(crate) pending: &'a [AtomicU64],
}

/// Checked typed access to an event segment.
#[derive(Clone, Copy)]
pub(crate) struct EventView<'a> {
    shared: SegmentView<'a>,
    layout: &'a EventLayout,
}

impl<'a> EventView<'a> {
    pub(crate) fn new(segment: &'a Segment, layout: &'a EventLayout) -> Option<EventView<'a>> {
        Some(EventView {
            shared: SegmentView::new(segment, layout.size)?,
            layout,
        })
    }

    pub(crate) fn header(&self) -> &'a ServiceHeader {
        self.shared.header()
    }

    pub(crate) fn listener(&self, i: usize) -> ListenerSlot<'a> {
        let base = self.layout.listener_slots + i * self.layout.slot_size;
        ListenerSlot {
            head: self.shared.slots(self.layout.port_array(LISTENERS)).get(i),
            pending: self
                .shared
                .slice(base + size_of::<PortSlot>(), self.layout.words),
        }
    }

    pub(crate) fn listeners(&self) -> impl Iterator<Item = ListenerSlot<'a>> + '_ {
        (0..self.layout.max_listeners).map(move |i| self.listener(i))
    }
}
