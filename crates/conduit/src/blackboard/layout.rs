//! The blackboard service segment's byte layout (data area), its static
//! configuration, and the entry protocol (every step of an update and of
//! a read, as the loom model runs them).
//!
//! ```text
//! 0      ServiceHeader line (service core): removed | generation[WRITERS] | generation[READERS]
//! 64     config: 80 × u64 (written before READY, never changed)
//! 704    writer slot × 1 (64 B: the core's PortSlot, the rest unused)
//! 768    reader slots × max_readers (64 B each, likewise)
//! K      key table: entries × kw words (kw = ceil(size_of K / 8), bytes of
//!        the key, zero-padded), rounded up to a line; K = 768 + 64 × max_readers
//! B      event table: entries words, 0 (no event bound) or bound id + 1,
//!        rounded up to a line
//! E      entries × stride, each line-aligned (stride = round_up(8 × (3 + 2n), 64),
//!        n = ceil(size_of V / 8)):
//!          +0  current: version << 1 | index of the published copy
//!          +8  seq[0]   +16 seq[1]
//!          +24 copy[0]: n words   +24 + 8n copy[1]: n words
//! ```
//!
//! Config words: `0..34` the core's (format, name; `service::config`),
//! `34..54` key type (`TypeDesc` with 16 name words), `54..74` value type
//! (likewise), `74` entries, `75` max_readers, `76` notify (0 or 1: the
//! writer wakes waiting readers after each update), `77..80` zero.
//!
//! Decoding (`BlackboardConfig`'s `PatternConfig::read`) checks the format,
//! the type descriptors (alignment a power of two ≤ 4096, key size ≤
//! [`MAX_KEY_SIZE`], value size ≤ [`MAX_VALUE_SIZE`]), `entries` in
//! 1..=[`MAX_ENTRIES`], `max_readers` in 1..=[`MAX_READERS_LIMIT`], and
//! that the key table lies inside the segment; keys are compared byte by
//! byte (both types are padding-free, [`ShmSafe::PADDING_FREE`]), and
//! that every event table word is at most `EVENT_ID_LIMIT + 1`.
//! An 8-byte value makes a 40-byte entry: one cache line holds everything
//! a read touches.
//!
//! [`ShmSafe::PADDING_FREE`]: crate::shm::ShmSafe::PADDING_FREE
//!
//! # Every shared word
//!
//! The header's `removed` word, the generation words and the slot words
//! `node_id` and `id` are the service core's (`service::registry`): a
//! writer or reader claims a slot of its kind, frees it on drop, and a
//! cleaner frees the slot of a dead node. What is the blackboard's:
//!
//! | word | writers | states / transitions |
//! |---|---|---|
//! | key table, event table, config | the creator, before the segment is ready | never change |
//! | `current` | the writer, last step of an update (Release) | `v << 1 \| i`: version `v` is published and lives in copy `i`. Starts at `0` (version 0, the initial value, in copy 0). Only ever moves to a version greater than it held |
//! | `seq[i]` | the writer, first step (Relaxed store, then a Release fence) and third step (Release) of an update into copy `i` | `2v + 1` (odd) while version `v` is being written into copy `i`, `2v` once it is complete. Each write into either copy uses a version greater than every version in `current`, `seq[0]` and `seq[1]` (the writer takes the maximum of the three plus one), so a value of `seq[i]` never repeats |
//! | `copy[i]` words | the writer, second step (Relaxed stores) | the value's bytes, zero-padded; rewritten only while `seq[i]` is odd |
//! | reader slot `event` | with notify: the writer bumps the epoch of every reader slot whose `id` is not 0 after each update; the reader registers to sleep | `sync::EventWord`: `FUTEX_WAKE` / wake byte only if a sleeper registered |
//! | reader slot `fd_armed` | the reader arms (0 → 1); the writer, having seen a registered sleeper, swaps it to 0; a new reader zeroes it in its claim's `prepare` step | `sync::fdwake` |
//! | writer slot `event`, `fd_armed` | nobody | unused |
//!
//! # Update (one writer)
//!
//! 1. `c = current` (Acquire: a writer that took over sees the dead
//!    one's words), `i = c & 1`, `o = 1 - i` (the copy readers are *not*
//!    being sent to), `v = max(c >> 1, seq[0] >> 1, seq[1] >> 1) + 1`;
//!    `seq[o] = 2v + 1` (Relaxed), fence (Release): the odd value is
//!    visible before any word of the copy changes;
//! 2. the value's words into `copy[o]` (Relaxed);
//! 3. `seq[o] = 2v` (Release): the copy is complete;
//! 4. `current = v << 1 | o` (Release): publish it.
//!
//! # Read (any number of readers, no store)
//!
//! 1. `c = current` (Acquire), `i = c & 1`, `s1 = seq[i]` (Acquire); if
//!    `s1 != 2 × (c >> 1)` the copy no longer holds the published version
//!    (rewritten since, or being rewritten): retry;
//! 2. copy `copy[i]` with Relaxed loads;
//! 3. fence (Acquire), `s2 = seq[i]` (Relaxed); `s1 == s2`: no write into
//!    the copy began before the loads of step 2 ended (a write makes
//!    `seq[i]` odd, Release-fenced before its first store, and ends at a
//!    value that never repeats), so the words are the complete value of
//!    version `c >> 1`. Else retry.
//!
//! A read retries at most [`READ_ATTEMPTS`](super::READ_ATTEMPTS) times,
//! then fails with [`ReadError::Contended`](super::ReadError::Contended);
//! with two copies a reader is disturbed only by a writer that updates the
//! entry twice during one read.
//!
//! # A writer killed at any step
//!
//! Steps 1–3 touch only the copy `current` does not point to: readers keep
//! reading the published copy, untouched. Killed between 3 and 4, the
//! complete new copy is simply never published. Killed after 4, the update
//! is done. A new writer (it gets the slot once the dead one's is
//! reclaimed) needs no repair: it starts from `current`, overwrites the
//! unpublished copy whatever state it is in (odd `seq`, half-written
//! words), and its versions are above every version the dead one wrote.
//! Entries are independent: every other entry is intact. Readers store
//! nothing, so a killed reader changes nothing.
//!
//! The new writer's loads of the dead one's words are ordered after all
//! of its stores by the death itself: the new writer gets the slot only
//! after a cleaner saw the dead node's `flock` released by the kernel
//! (process exit, then the cleaner's `flock` system call), and its claim
//! of the slot is an atomic read-modify-write after that cleanup.
//!
//! Versions are 63 bits (`current` keeps one bit for the index); they
//! would wrap after 2^63 updates of one entry, which no program reaches.

// Plain std atomics for the config and key table (written once before the
// segment is ready); the entry words go through the loom shim.
use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering as StdOrdering};

use crate::service::core::{PatternConfig, PatternLayout};
use crate::service::registry::{LINE, PortArray, SegmentView, ServiceHeader};
use crate::service::{
    CONFIG_OFFSET, Compat, EVENT_ID_LIMIT, Requested, ServiceError, TypeDesc, W_PATTERN,
    config_words, read_head, write_head,
};
use crate::shm::{Region, Segment};
use crate::sync::atomic::{AtomicU64, Ordering, fence};

pub(crate) const BLACKBOARD_FINGERPRINT: u64 = 0x4242_4f41_5244_0001;
/// 2: the event table (entries bound to event ids) after the key table.
pub(crate) const FORMAT: u64 = 2;
pub(crate) const CONFIG_WORDS: usize = 80;
/// Port kind of the writer (index of its generation word and slot).
pub(crate) const WRITERS: usize = 0;
/// Port kind of readers.
pub(crate) const READERS: usize = 1;
const W_KEY: usize = W_PATTERN;
const W_VALUE: usize = W_KEY + TypeDesc::words(16);
const W_ENTRIES: usize = W_VALUE + TypeDesc::words(16);
const W_MAX_READERS: usize = W_ENTRIES + 1;
const W_NOTIFY: usize = W_MAX_READERS + 1;
const _: () = assert!(W_NOTIFY < CONFIG_WORDS);

/// Largest key, in bytes.
pub const MAX_KEY_SIZE: usize = 256;
/// Largest value, in bytes.
pub const MAX_VALUE_SIZE: usize = 4096;
/// Most entries of one blackboard.
pub const MAX_ENTRIES: usize = 4096;
/// Most readers of one blackboard.
pub const MAX_READERS_LIMIT: usize = 256;

/// Words of `bytes` bytes.
pub(crate) const fn words_of(bytes: usize) -> usize {
    bytes.div_ceil(8)
}

/// The static configuration of a blackboard: its types, its keys (in the
/// segment's order) and, when creating, their initial values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlackboardConfig {
    pub(crate) name: String,
    pub(crate) key: TypeDesc,
    pub(crate) value: TypeDesc,
    pub(crate) max_readers: usize,
    /// Whether the writer wakes waiting readers after each update.
    pub(crate) notify: bool,
    /// `entries × key_words` words: each key's bytes, zero-padded.
    pub(crate) keys: Vec<u64>,
    /// One word per entry: 0, or the id of the event bound to it + 1
    /// (empty: no entry is bound).
    pub(crate) events: Vec<u64>,
    /// `entries × value_words` words (creation only; empty when read).
    pub(crate) initial: Vec<u64>,
    /// Number of entries.
    pub(crate) entry_count: usize,
}

impl BlackboardConfig {
    pub(crate) fn key_words(&self) -> usize {
        words_of(self.key.size as usize)
    }

    pub(crate) fn value_words(&self) -> usize {
        words_of(self.value.size as usize)
    }

    /// The key words of entry `i`.
    pub(crate) fn key(&self, i: usize) -> &[u64] {
        let kw = self.key_words();
        &self.keys[i * kw..(i + 1) * kw]
    }

    /// The event bound to entry `i`, if any.
    pub(crate) fn event(&self, i: usize) -> Option<crate::service::EventId> {
        match self.events.get(i).copied().unwrap_or(0) {
            0 => None,
            id => Some(crate::service::EventId(id as usize - 1)),
        }
    }

    /// The index of the entry whose key words are `key`.
    pub(crate) fn find(&self, key: &[u64]) -> Option<usize> {
        (0..self.entry_count).find(|&i| self.key(i) == key)
    }
}

impl PatternConfig for BlackboardConfig {
    fn check_compatible(
        &self,
        wanted: &BlackboardConfig,
        requested: &Requested,
    ) -> Result<(), ServiceError> {
        let same = self.key == wanted.key && self.value == wanted.value;
        let mut c = Compat::types(&self.name, requested, same, || {
            let kind = |c: &BlackboardConfig| format!("keys {} and values {}", c.key, c.value);
            (kind(self), kind(wanted))
        })?;
        c.at_least("max_readers", self.max_readers, wanted.max_readers);
        c.equal("notify_changes", self.notify, wanted.notify);
        if requested.has("bind_event") {
            for i in (0..wanted.entry_count).filter(|&i| wanted.event(i).is_some()) {
                let have = self.find(wanted.key(i)).and_then(|j| self.event(j));
                if have != wanted.event(i) {
                    let show = |e: Option<crate::service::EventId>| {
                        e.map_or("no event".to_owned(), |e| format!("event {e}"))
                    };
                    c.mismatch(
                        format!("{} bound to entry {i}", show(have)),
                        format!("{} bound to it", show(wanted.event(i))),
                    );
                }
            }
        }
        if requested.has("entry") {
            let missing = (0..wanted.entry_count)
                .filter(|&i| self.find(wanted.key(i)).is_none())
                .count();
            if missing > 0 {
                c.mismatch(
                    format!("{} entries", self.entry_count),
                    format!("{missing} more keys"),
                );
            }
        }
        c.finish()
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self) -> Result<(), String> {
        if self.key.size as usize > MAX_KEY_SIZE {
            return Err(format!(
                "key type {} exceeds {MAX_KEY_SIZE} bytes",
                self.key
            ));
        }
        if self.value.size as usize > MAX_VALUE_SIZE {
            return Err(format!(
                "value type {} exceeds {MAX_VALUE_SIZE} bytes",
                self.value
            ));
        }
        if self.max_readers == 0 || self.max_readers > MAX_READERS_LIMIT {
            return Err(format!(
                "max_readers {} is not in 1..={MAX_READERS_LIMIT}",
                self.max_readers
            ));
        }
        let n = self.entry_count;
        if n == 0 || n > MAX_ENTRIES {
            return Err(format!(
                "a blackboard has 1..={MAX_ENTRIES} entries; this one has {n}"
            ));
        }
        if self.keys.len() != n * self.key_words() {
            return Err("key table of the wrong length".into());
        }
        if !self.events.is_empty() && self.events.len() != n {
            return Err("event table of the wrong length".into());
        }
        if let Some(i) = self
            .events
            .iter()
            .position(|e| *e > EVENT_ID_LIMIT as u64 + 1)
        {
            return Err(format!(
                "entry {i} is bound to an event id above {EVENT_ID_LIMIT}"
            ));
        }
        if !self.initial.is_empty() {
            if self.initial.len() != n * self.value_words() {
                return Err("initial values of the wrong length".into());
            }
            for i in 1..n {
                if (0..i).any(|j| self.key(j) == self.key(i)) {
                    return Err(format!("entry {i} repeats the key of an earlier entry"));
                }
            }
        }
        Ok(())
    }

    fn write(&self, region: &Region) -> Result<(), String> {
        let layout = BlackboardLayout::of(self);
        if region.len() < layout.size || self.initial.len() != self.entry_count * layout.value_words
        {
            return Err("segment too small, or no initial values".into());
        }
        let words = config_words(region, CONFIG_WORDS).ok_or("segment too small")?;
        write_head(words, FORMAT, &self.name);
        self.key.write(&words[W_KEY..W_VALUE], 16);
        self.value.write(&words[W_VALUE..W_ENTRIES], 16);
        words[W_ENTRIES].store(self.entry_count as u64, StdOrdering::Relaxed);
        words[W_MAX_READERS].store(self.max_readers as u64, StdOrdering::Relaxed);
        words[W_NOTIFY].store(u64::from(self.notify), StdOrdering::Relaxed);
        let keys = std_words(region, layout.keys, self.keys.len()).ok_or("key table")?;
        for (w, k) in keys.iter().zip(&self.keys) {
            w.store(*k, StdOrdering::Relaxed);
        }
        let events = std_words(region, layout.events, self.entry_count).ok_or("event table")?;
        for (w, e) in events.iter().zip(&self.events) {
            w.store(*e, StdOrdering::Relaxed);
        }
        // Entries: version 0 in copy 0 (the rest of the area is zero).
        for i in 0..self.entry_count {
            let at = layout.entry_offset(i) + 24;
            let copy = std_words(region, at, layout.value_words).ok_or("entry")?;
            let value = &self.initial[i * layout.value_words..(i + 1) * layout.value_words];
            for (w, v) in copy.iter().zip(value) {
                w.store(*v, StdOrdering::Relaxed);
            }
        }
        Ok(())
    }

    fn read(region: &Region) -> Result<BlackboardConfig, String> {
        let words = config_words(region, CONFIG_WORDS).ok_or("segment too small for its config")?;
        let name = read_head(words, FORMAT)?;
        let get = |i: usize| words[i].load(StdOrdering::Relaxed);
        let small = |i: usize, max: usize| -> Result<usize, String> {
            let v = get(i);
            usize::try_from(v)
                .ok()
                .filter(|v| *v <= max)
                .ok_or(format!("config word {i} out of range: {v}"))
        };
        let key = TypeDesc::read(&words[W_KEY..W_VALUE], 16, "key")?;
        let value = TypeDesc::read(&words[W_VALUE..W_ENTRIES], 16, "value")?;
        if key.size > MAX_KEY_SIZE as u64 || value.size > MAX_VALUE_SIZE as u64 {
            return Err(format!("key type {key} or value type {value} too large"));
        }
        let entries = small(W_ENTRIES, MAX_ENTRIES)?;
        let mut config = BlackboardConfig {
            name,
            key,
            value,
            max_readers: small(W_MAX_READERS, MAX_READERS_LIMIT)?,
            notify: small(W_NOTIFY, 1)? == 1,
            keys: Vec::new(),
            events: Vec::new(),
            initial: Vec::new(),
            entry_count: entries,
        };
        let layout = BlackboardLayout::of(&config);
        let n = entries * config.key_words();
        let keys = std_words(region, layout.keys, n).ok_or("key table outside the segment")?;
        config.keys = keys.iter().map(|w| w.load(StdOrdering::Relaxed)).collect();
        let events = std_words(region, layout.events, entries).ok_or("event table outside")?;
        config.events = events
            .iter()
            .map(|w| w.load(StdOrdering::Relaxed))
            .collect();
        if config.events.iter().all(|e| *e == 0) {
            config.events.clear();
        }
        config.validate()?;
        Ok(config)
    }
}

/// `n` std atomic words at `offset` of `region`, if inside and aligned.
fn std_words(region: &Region, offset: usize, n: usize) -> Option<&[StdAtomicU64]> {
    let p = region.resolve_slice::<StdAtomicU64>(offset, n).ok()?;
    // SAFETY: in bounds and aligned (resolve_slice); atomics only; the
    // slice lives no longer than the caller's borrow of the region's
    // segment.
    Some(unsafe { std::slice::from_raw_parts(p.as_ptr(), n) })
}

/// Offsets computed from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct BlackboardLayout {
    pub(crate) max_readers: usize,
    pub(crate) entries: usize,
    pub(crate) value_words: usize,
    pub(crate) writer_slot: usize,
    pub(crate) reader_slots: usize,
    pub(crate) keys: usize,
    pub(crate) events: usize,
    pub(crate) first_entry: usize,
    pub(crate) stride: usize,
    pub(crate) size: usize,
}

impl BlackboardLayout {
    pub(crate) fn entry_offset(&self, i: usize) -> usize {
        self.first_entry + i * self.stride
    }
}

impl PatternLayout<BlackboardConfig> for BlackboardLayout {
    fn of(c: &BlackboardConfig) -> BlackboardLayout {
        let value_words = c.value_words();
        let writer_slot = CONFIG_OFFSET + CONFIG_WORDS * 8;
        let reader_slots = writer_slot + LINE;
        let keys = reader_slots + LINE * c.max_readers;
        let key_bytes = (c.entry_count * c.key_words() * 8).div_ceil(LINE) * LINE;
        let events = keys + key_bytes;
        let first_entry = events + (c.entry_count * 8).div_ceil(LINE) * LINE;
        let stride = (8 * (3 + 2 * value_words)).div_ceil(LINE) * LINE;
        BlackboardLayout {
            max_readers: c.max_readers,
            entries: c.entry_count,
            value_words,
            writer_slot,
            reader_slots,
            keys,
            events,
            first_entry,
            stride,
            size: first_entry + stride * c.entry_count,
        }
    }

    fn size(&self) -> usize {
        self.size
    }

    fn port_array(&self, kind: usize) -> PortArray {
        if kind == WRITERS {
            PortArray {
                offset: self.writer_slot,
                count: 1,
                stride: LINE,
            }
        } else {
            PortArray {
                offset: self.reader_slots,
                count: self.max_readers,
                stride: LINE,
            }
        }
    }
}

/// The shared words of one entry (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct EntryWords<'a> {
    pub(crate) current: &'a AtomicU64,
    pub(crate) seq: [&'a AtomicU64; 2],
    pub(crate) copies: [&'a [AtomicU64]; 2],
}

/// Checked typed access to a blackboard segment.
#[derive(Clone, Copy)]
pub(crate) struct BlackboardView<'a> {
    shared: SegmentView<'a>,
    layout: &'a BlackboardLayout,
}

impl<'a> BlackboardView<'a> {
    pub(crate) fn new(
        segment: &'a Segment,
        layout: &'a BlackboardLayout,
    ) -> Option<BlackboardView<'a>> {
        Some(BlackboardView {
            shared: SegmentView::new(segment, layout.size)?,
            layout,
        })
    }

    #[allow(dead_code)]
    pub(crate) fn header(&self) -> &'a ServiceHeader {
        self.shared.header()
    }

    /// The words of entry `i`.
    ///
    /// # Panics
    ///
    /// If `i` is not below the number of entries.
    pub(crate) fn entry(&self, i: usize) -> EntryWords<'a> {
        assert!(
            i < self.layout.entries,
            "entry {i} of {}",
            self.layout.entries
        );
        let base = self.layout.entry_offset(i);
        let n = self.layout.value_words;
        EntryWords {
            current: self.shared.at(base),
            seq: [self.shared.at(base + 8), self.shared.at(base + 16)],
            copies: [
                self.shared.slice(base + 24, n),
                self.shared.slice(base + 24 + 8 * n, n),
            ],
        }
    }
}

/// The version and copy index a `current` word announces.
#[inline]
pub(crate) fn published(current: u64) -> (u64, usize) {
    (current >> 1, (current & 1) as usize)
}

/// The writer's update of one entry to the value `words` (as many words
/// as the copies hold); returns the new version. Steps in the module docs.
#[inline]
pub(crate) fn update(entry: EntryWords<'_>, words: impl Fn(usize) -> u64) -> u64 {
    // Acquire: a writer that took over from a dead one sees its words.
    let (version, index) = published(entry.current.load(Ordering::Acquire));
    let other = index ^ 1;
    // Above every version either copy ever held, so no `seq` value repeats
    // (a dead writer may have left a complete, unpublished copy).
    let version = version
        .max(entry.seq[0].load(Ordering::Relaxed) >> 1)
        .max(entry.seq[1].load(Ordering::Relaxed) >> 1)
        .wrapping_add(1)
        & (u64::MAX >> 1);
    entry.seq[other].store(2 * version + 1, Ordering::Relaxed);
    // Release fence: a reader that sees any word stored below also sees
    // the odd `seq` (its Acquire fence before the second `seq` load).
    fence(Ordering::Release);
    for (i, w) in entry.copies[other].iter().enumerate() {
        w.store(words(i), Ordering::Relaxed);
    }
    // Release: the copy's words happen before a reader's Acquire of it.
    entry.seq[other].store(2 * version, Ordering::Release);
    // Release: a reader that sees the new `current` sees the complete copy.
    entry
        .current
        .store(version << 1 | other as u64, Ordering::Release);
    version
}

/// One attempt to read the published value of `entry`: `out(i, word)`
/// receives every word of the copy, in order; returns the version, or
/// `None` if a write disturbed the attempt (the words given are then
/// garbage). Steps in the module docs.
#[inline]
pub(crate) fn try_read(entry: EntryWords<'_>, mut out: impl FnMut(usize, u64)) -> Option<u64> {
    let (version, index) = published(entry.current.load(Ordering::Acquire));
    let seq = entry.seq[index];
    let s1 = seq.load(Ordering::Acquire);
    if s1 != version.wrapping_mul(2) {
        return None;
    }
    for (i, w) in entry.copies[index].iter().enumerate() {
        out(i, w.load(Ordering::Relaxed));
    }
    // Acquire fence: if a load above saw a store of a later write, the
    // load below sees at least that write's odd `seq`.
    fence(Ordering::Acquire);
    (seq.load(Ordering::Relaxed) == s1).then_some(version)
}

/// The bytes of a padding-free value as zero-padded words.
///
/// `T` must be padding-free (checked by the callers' const assertions on
/// `ShmSafe::PADDING_FREE`), so every byte read here is initialised.
#[inline]
pub(crate) fn word_of<T: crate::shm::ShmSafe>(value: &T, i: usize) -> u64 {
    const { assert!(T::PADDING_FREE) };
    let size = size_of::<T>();
    let start = 8 * i;
    let len = size.saturating_sub(start).min(8);
    let mut bytes = [0u8; 8];
    // SAFETY: `start + len <= size`, so the source bytes lie inside
    // `*value`; `T` is padding-free, so they are initialised; the
    // destination is a local array of 8 bytes and `len <= 8`.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (value as *const T).cast::<u8>().add(start),
            bytes.as_mut_ptr(),
            len,
        );
    }
    u64::from_le_bytes(bytes)
}

/// Stores word `i` of a value (its bytes `8i..8i + 8`, those inside the
/// value) into `value`; once every word `0..ceil(size / 8)` has been
/// put, every byte of `value` is written.
#[inline]
pub(crate) fn put_word<T>(value: &mut std::mem::MaybeUninit<T>, i: usize, word: u64) {
    let size = size_of::<T>();
    let start = 8 * i;
    let len = size.saturating_sub(start).min(8);
    // SAFETY: `start + len <= size` (len is 0 past the end): inside the
    // value; the source is a local array of 8 bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            word.to_le_bytes().as_ptr(),
            value.as_mut_ptr().cast::<u8>().add(start.min(size)),
            len,
        );
    }
}

/// A value made of the bytes of `words` (at least `ceil(size / 8)`
/// words; extra bytes ignored).
#[inline]
pub(crate) fn value_of<T: crate::shm::ShmSafe>(words: &[u64]) -> T {
    assert!(
        words.len() >= words_of(size_of::<T>()),
        "too few words for the value"
    );
    let mut value = std::mem::MaybeUninit::<T>::uninit();
    for (i, w) in words.iter().enumerate() {
        put_word(&mut value, i, *w);
    }
    // SAFETY: every one of its bytes was written above (the words cover
    // them), and a `ShmSafe` type is valid for every bit pattern.
    unsafe { value.assume_init() }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ShmSafe;
    use std::ptr::NonNull;

    #[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
    #[repr(C)]
    struct Odd {
        a: [u8; 11],
        b: u8,
    }

    #[test]
    fn values_round_trip_through_words() {
        let v = Odd {
            a: *b"hello world",
            b: 7,
        };
        let words: Vec<u64> = (0..2).map(|i| word_of(&v, i)).collect();
        assert_eq!(words[1] >> 32, 0, "zero-padded");
        assert_eq!(value_of::<Odd>(&words), v);
        assert_eq!(value_of::<u64>(&[word_of(&42u64, 0)]), 42);
        let arr = [1u32, 2, 3];
        let w: Vec<u64> = (0..2).map(|i| word_of(&arr, i)).collect();
        assert_eq!(value_of::<[u32; 3]>(&w), arr);
    }

    #[test]
    fn padding_is_known() {
        #[derive(ShmSafe, Clone, Copy)]
        #[repr(C)]
        struct Padded {
            a: u8,
            b: u64,
        }
        const { assert!(!Padded::PADDING_FREE) };
        const { assert!(Odd::PADDING_FREE) };
        const { assert!(<[u16; 3]>::PADDING_FREE) };
    }

    fn entry_buffer(n: usize) -> Vec<AtomicU64> {
        (0..3 + 2 * n).map(|_| AtomicU64::new(0)).collect()
    }

    fn entry(words: &[AtomicU64], n: usize) -> EntryWords<'_> {
        EntryWords {
            current: &words[0],
            seq: [&words[1], &words[2]],
            copies: [&words[3..3 + n], &words[3 + n..3 + 2 * n]],
        }
    }

    #[test]
    fn updates_alternate_copies_and_versions_grow() {
        let buf = entry_buffer(2);
        let e = entry(&buf, 2);
        let mut out = [0u64; 2];
        assert_eq!(try_read(e, |i, w| out[i] = w), Some(0));
        assert_eq!(update(e, |i| 10 + i as u64), 1);
        assert_eq!(try_read(e, |i, w| out[i] = w), Some(1));
        assert_eq!(out, [10, 11]);
        assert_eq!(published(e.current.load(Ordering::Relaxed)), (1, 1));
        assert_eq!(update(e, |i| 20 + i as u64), 2);
        assert_eq!(published(e.current.load(Ordering::Relaxed)), (2, 0));
        assert_eq!(try_read(e, |i, w| out[i] = w), Some(2));
        assert_eq!(out, [20, 21]);
    }

    #[test]
    fn a_writer_killed_mid_update_leaves_the_published_copy_readable() {
        let buf = entry_buffer(1);
        let e = entry(&buf, 1);
        update(e, |_| 5);
        // A writer died in step 2 of the next update: copy 0 odd and half
        // written, `current` still on copy 1.
        e.seq[0].store(2 * 2 + 1, Ordering::Relaxed);
        e.copies[0][0].store(0xdead, Ordering::Relaxed);
        let mut out = [0];
        assert_eq!(try_read(e, |i, w| out[i] = w), Some(1));
        assert_eq!(out, [5]);
        // Died between steps 3 and 4: complete but unpublished.
        e.seq[0].store(2 * 2, Ordering::Relaxed);
        assert_eq!(try_read(e, |i, w| out[i] = w), Some(1));
        assert_eq!(out, [5]);
        // The new writer's version is above the dead one's.
        assert_eq!(update(e, |_| 6), 3);
        assert_eq!(try_read(e, |i, w| out[i] = w), Some(3));
        assert_eq!(out, [6]);
    }

    #[test]
    fn a_read_during_a_write_into_its_copy_fails() {
        let buf = entry_buffer(1);
        let e = entry(&buf, 1);
        // Copy 0 published (version 0) but being rewritten: odd seq.
        e.seq[0].store(7, Ordering::Relaxed);
        assert_eq!(try_read(e, |_, _| {}), None);
    }

    #[test]
    fn concurrent_reads_never_see_a_torn_value() {
        let n = 4;
        let buf = entry_buffer(n);
        let rounds = if cfg!(miri) { 30 } else { 20_000 };
        std::thread::scope(|s| {
            let e = entry(&buf, n);
            s.spawn(move || {
                for r in 1..=rounds {
                    update(e, |_| r);
                }
            });
            let mut out = vec![0; n];
            let mut last = 0;
            let mut seen = 0;
            while last < rounds && seen < 10 * rounds {
                seen += 1;
                if let Some(v) = try_read(e, |i, w| out[i] = w) {
                    assert!(out.iter().all(|w| *w == out[0]), "torn: {out:?}");
                    assert!(v >= last, "version went back");
                    assert_eq!(out[0], v, "value of another version");
                    last = v;
                }
            }
        });
    }

    fn config(keys: &[u32]) -> BlackboardConfig {
        BlackboardConfig {
            name: "bb/test".into(),
            key: TypeDesc::of(&u32::LAYOUT),
            value: TypeDesc::of(&u64::LAYOUT),
            max_readers: 4,
            notify: true,
            keys: keys.iter().map(|k| word_of(k, 0)).collect(),
            events: keys
                .iter()
                .map(|k| u64::from(*k % 2) * (u64::from(*k) + 1))
                .collect(),
            initial: keys.iter().map(|k| u64::from(*k) * 100).collect(),
            entry_count: keys.len(),
        }
    }

    #[test]
    fn the_configuration_round_trips_and_garbage_is_refused() {
        let c = config(&[3, 1, 2]);
        c.validate().unwrap();
        let layout = BlackboardLayout::of(&c);
        assert_eq!(layout.stride, 64, "an 8-byte value takes one line");
        let mut words = vec![0u64; layout.size.div_ceil(8)];
        // SAFETY: the buffer outlives the region and nothing else uses it.
        let region = unsafe {
            Region::new(
                NonNull::new(words.as_mut_ptr().cast()).unwrap(),
                words.len() * 8,
            )
        };
        c.write(&region).unwrap();
        let read = BlackboardConfig::read(&region).unwrap();
        assert_eq!(read.keys, c.keys);
        assert_eq!(read.events, c.events);
        assert_eq!(read.event(0), Some(crate::service::EventId(3)));
        assert_eq!(read.event(2), None);
        let bound = layout.events / 8;
        words[bound] = EVENT_ID_LIMIT as u64 + 2;
        assert!(
            BlackboardConfig::read(&region).is_err(),
            "event id too large"
        );
        words[bound] = 4;
        assert_eq!(read.find(&[word_of(&2u32, 0)]), Some(2));
        assert_eq!(read.find(&[word_of(&9u32, 0)]), None);
        // Initial value of entry 1 (key 1) in copy 0.
        assert_eq!(words[(layout.entry_offset(1) + 24) / 8], 100);
        // Garbage in the entry count: a named error, no panic.
        words[(CONFIG_OFFSET / 8) + W_ENTRIES] = u64::MAX;
        assert!(BlackboardConfig::read(&region).is_err());
        words[(CONFIG_OFFSET / 8) + W_ENTRIES] = 1 << 40;
        assert!(BlackboardConfig::read(&region).is_err());
        words[(CONFIG_OFFSET / 8) + W_ENTRIES] = MAX_ENTRIES as u64;
        assert!(
            BlackboardConfig::read(&region).is_err(),
            "key table outside"
        );
        words[(CONFIG_OFFSET / 8) + W_ENTRIES] = 3;
        assert!(BlackboardConfig::read(&region).unwrap().notify);
        words[(CONFIG_OFFSET / 8) + W_NOTIFY] = 2;
        assert!(BlackboardConfig::read(&region).is_err(), "notify is 0 or 1");
    }

    #[test]
    fn duplicate_keys_and_empty_boards_are_refused() {
        assert!(config(&[1, 2, 1]).validate().is_err());
        assert!(config(&[]).validate().is_err());
    }
}
