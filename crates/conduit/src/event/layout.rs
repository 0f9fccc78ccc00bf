//! The event service segment's byte layout (data area):
//!
//! ```text
//! 0      EventHeader line: removed | notifier_generation | listener_generation
//! 64     config: 40 × u64 (written before READY, never changed)
//! 384    NotifierSlot × max_notifiers (64 B each: node_id | id)
//! L      ListenerSlot × max_listeners (slot_size each):
//!          +0  node_id u64 | +8 id u64 | +16 EventWord u32 | +20 fd_armed u32
//!          +24 pending: [u64; words], words = ceil((max_event_id + 1) / 64)
//!          slot_size = round_up(24 + 8 × words, 64)
//! ```
//!
//! Config words: `0` format, `1` name length, `2..34` name, `34`
//! max_event_id, `35` max_notifiers, `36` max_listeners, `37` created event,
//! `38` dropped event, `39` dead event (`u64::MAX` = none).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::shm::{Region, Segment};
use crate::sync::EventWord;
use crate::sync::atomic::AtomicU64 as SlotWord;

pub(crate) const EVENT_FINGERPRINT: u64 = 0x4556_4e54_5356_0001;
pub(crate) const FORMAT: u64 = 1;
pub(crate) const LINE: usize = 64;
pub(crate) const CONFIG_WORDS: usize = 40;
pub(crate) const NAME_WORDS: usize = 32;
pub(crate) const NONE: u64 = u64::MAX;
/// Largest allowed `max_event_id`.
pub const MAX_EVENT_ID_LIMIT: usize = 4095;
/// Largest allowed number of notifiers or listeners.
pub const MAX_PORTS_LIMIT: usize = 256;

/// The first line.
#[repr(C)]
pub(crate) struct EventHeader {
    /// 0 → 1 once by the last user (under `LOCK_EX`), after `shm_unlink`
    /// succeeded.
    pub(crate) removed: AtomicU64,
    /// Bumped after every notifier slot change.
    pub(crate) notifier_generation: AtomicU64,
    /// Bumped after every listener slot change; notifiers rescan.
    pub(crate) listener_generation: AtomicU64,
}

/// A notifier slot. `node_id`: 0 → node (CAS claim) → 0 (drop/cleanup);
/// `id`: 0 → port id (Release, after the claim) → 0. Both change only
/// through `sync::slot` (atomics of the `sync` shim, so that the loom
/// models run that code).
#[repr(C, align(64))]
pub(crate) struct NotifierSlot {
    pub(crate) node_id: SlotWord,
    pub(crate) id: SlotWord,
}

/// The fixed head of a listener slot; the pending words follow at +24.
#[repr(C)]
pub(crate) struct ListenerHead {
    /// As in [`NotifierSlot`].
    pub(crate) node_id: SlotWord,
    /// As in [`NotifierSlot`].
    pub(crate) id: SlotWord,
    pub(crate) event: EventWord,
    pub(crate) fd_armed: AtomicU32,
}

/// The static configuration of an event service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventConfig {
    pub(crate) name: String,
    pub(crate) max_event_id: usize,
    pub(crate) max_notifiers: usize,
    pub(crate) max_listeners: usize,
    pub(crate) created_event: Option<usize>,
    pub(crate) dropped_event: Option<usize>,
    pub(crate) dead_event: Option<usize>,
}

fn opt(v: Option<usize>) -> u64 {
    v.map_or(NONE, |v| v as u64)
}

fn unopt(v: u64) -> Option<usize> {
    (v != NONE).then_some(v as usize)
}

impl EventConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.max_event_id > MAX_EVENT_ID_LIMIT {
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

    pub(crate) fn write(&self, words: &[AtomicU64]) {
        words.iter().for_each(|w| w.store(0, Ordering::Relaxed));
        words[0].store(FORMAT, Ordering::Relaxed);
        crate::node::store_str(&words[2..2 + NAME_WORDS], &words[1], &self.name);
        words[34].store(self.max_event_id as u64, Ordering::Relaxed);
        words[35].store(self.max_notifiers as u64, Ordering::Relaxed);
        words[36].store(self.max_listeners as u64, Ordering::Relaxed);
        words[37].store(opt(self.created_event), Ordering::Relaxed);
        words[38].store(opt(self.dropped_event), Ordering::Relaxed);
        words[39].store(opt(self.dead_event), Ordering::Relaxed);
    }

    pub(crate) fn read(segment: &Segment) -> Result<EventConfig, String> {
        Self::read_region(&segment.data())
    }

    /// Reads and validates the configuration in an event segment's data
    /// area `region`.
    pub(crate) fn read_region(region: &Region) -> Result<EventConfig, String> {
        let words = config_words(region).ok_or("segment too small for its config")?;
        if words[0].load(Ordering::Relaxed) != FORMAT {
            return Err(format!(
                "unknown format {}",
                words[0].load(Ordering::Relaxed)
            ));
        }
        let get = |i: usize| words[i].load(Ordering::Relaxed);
        let small = |i: usize| -> Result<usize, String> {
            let v = get(i);
            usize::try_from(v)
                .ok()
                .filter(|v| *v <= 1 << 20)
                .ok_or(format!("config word {i} out of range: {v}"))
        };
        let event = |i: usize| -> Result<Option<usize>, String> {
            match unopt(get(i)) {
                None => Ok(None),
                Some(_) => small(i).map(Some),
            }
        };
        let config = EventConfig {
            name: crate::node::load_str(&words[2..2 + NAME_WORDS], &words[1]),
            max_event_id: small(34)?,
            max_notifiers: small(35)?,
            max_listeners: small(36)?,
            created_event: event(37)?,
            dropped_event: event(38)?,
            dead_event: event(39)?,
        };
        config.validate()?;
        Ok(config)
    }
}

pub(crate) fn config_words(region: &Region) -> Option<&[AtomicU64]> {
    let p = region.resolve_slice::<AtomicU64>(LINE, CONFIG_WORDS).ok()?;
    // SAFETY: in bounds and aligned (resolve_slice); atomics only; the
    // slice lives as long as the borrow of the region's segment.
    Some(unsafe { std::slice::from_raw_parts(p.as_ptr(), CONFIG_WORDS) })
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

impl EventLayout {
    pub(crate) fn new(c: &EventConfig) -> EventLayout {
        let words = (c.max_event_id + 1).div_ceil(64);
        let notifier_slots = LINE + CONFIG_WORDS * 8;
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
}

/// One listener slot.
#[derive(Clone, Copy)]
pub(crate) struct ListenerSlot<'a> {
    pub(crate) head: &'a ListenerHead,
    pub(crate) pending: &'a [AtomicU64],
}

/// Checked typed access to an event segment.
#[derive(Clone, Copy)]
pub(crate) struct EventView<'a> {
    region: Region,
    layout: &'a EventLayout,
    _segment: &'a Segment,
}

impl<'a> EventView<'a> {
    pub(crate) fn new(segment: &'a Segment, layout: &'a EventLayout) -> Option<EventView<'a>> {
        let region = segment.data();
        (region.len() >= layout.size).then_some(EventView {
            region,
            layout,
            _segment: segment,
        })
    }

    fn slice<T>(&self, offset: usize, n: usize) -> &'a [T] {
        let p = self
            .region
            .resolve_slice::<T>(offset, n)
            .expect("inside the layout checked in new()");
        // SAFETY: in bounds and aligned (resolve_slice); the region stays
        // mapped for 'a (we borrow its segment); only atomics are read
        // through it.
        unsafe { std::slice::from_raw_parts(p.as_ptr(), n) }
    }

    pub(crate) fn header(&self) -> &'a EventHeader {
        &self.slice::<EventHeader>(0, 1)[0]
    }

    pub(crate) fn notifiers(&self) -> &'a [NotifierSlot] {
        self.slice(self.layout.notifier_slots, self.layout.max_notifiers)
    }

    pub(crate) fn listener(&self, i: usize) -> ListenerSlot<'a> {
        assert!(i < self.layout.max_listeners);
        let base = self.layout.listener_slots + i * self.layout.slot_size;
        ListenerSlot {
            head: &self.slice::<ListenerHead>(base, 1)[0],
            pending: self.slice(base + 24, self.layout.words),
        }
    }

    pub(crate) fn listeners(&self) -> impl Iterator<Item = ListenerSlot<'a>> + '_ {
        (0..self.layout.max_listeners).map(move |i| self.listener(i))
    }
}
