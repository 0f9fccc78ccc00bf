//! Entry points for the coverage-guided fuzz targets in `fuzz/` (cargo
//! feature `fuzzing`, off by default; not a stable API).
//!
//! Each `decode_*` function runs one of the crate-internal readers of
//! shared memory over arbitrary bytes, through the same `Region`-checked
//! code a process runs on a mapped segment. The bytes stand for a data
//! area (what follows the 128-byte segment header); they are copied into
//! an 8-byte-aligned buffer first, as a mapping would be. A reader must
//! return `Ok` or `Err` and never panic, whatever the bytes.
//!
//! Each `valid_*` function returns the bytes of a valid data area, for the
//! targets to mutate (random bytes rarely get past a magic word).
//!
//! The blackboard's entry reads run here too ([`decode_blackboard`]): a
//! reader of garbage entry words must fail or return a wrong value, never
//! panic or hang.
//!
//! Public readers (segment headers, the heap, containers, managed
//! segments, publish/subscribe queues) need no entry point here: the
//! targets drive them through the public API.

use std::ptr::NonNull;

use crate::blackboard::layout::{self as bb, BlackboardConfig, BlackboardLayout};
use crate::event::EventId;
use crate::event::layout::EventConfig;
use crate::pool::{Geometry, PoolHeader};
use crate::pubsub::layout::StaticConfig;
use crate::pubsub::{NoHeader, Overflow, Qos};
use crate::service::Requested;
use crate::service::TypeDesc;
use crate::service::core::{Pattern, PatternConfig, PatternLayout};
use crate::shm::{Region, ShmSafe};

/// An 8-byte-aligned copy of `bytes`, at least `min` bytes long (zero
/// padded).
fn aligned(bytes: &[u8], min: usize) -> Vec<u64> {
    let len = bytes.len().max(min);
    let mut words = vec![0u64; len.div_ceil(8).max(1)];
    for (i, b) in bytes.iter().enumerate() {
        words[i / 8] |= u64::from(*b) << (8 * (i % 8));
    }
    words
}

fn region_of(words: &mut [u64]) -> Region {
    let len = words.len() * 8;
    // SAFETY: the buffer is `len` bytes, exclusively borrowed by the
    // caller for as long as the region is used.
    unsafe {
        Region::new(
            NonNull::new(words.as_mut_ptr().cast()).expect("non-null"),
            len,
        )
    }
}

fn bytes_of(words: &[u64], len: usize) -> Vec<u8> {
    words
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .take(len)
        .collect()
}

fn service_config() -> StaticConfig {
    StaticConfig {
        name: "fuzz/service".into(),
        slice: false,
        payload: TypeDesc::of(&u64::LAYOUT),
        header: TypeDesc::of(&NoHeader::LAYOUT),
        qos: Qos {
            history: 1,
            overflow: Overflow::Block,
            ..Qos::default()
        },
    }
}

/// The configuration part of the data area of a new segment of pattern
/// `P` with configuration `config` (the registry and queues are zero).
fn valid_config<P: Pattern>(config: &P::Config, config_words: usize) -> Vec<u8> {
    let size = P::Layout::of(config).size();
    let mut words = vec![0u64; size.div_ceil(8)];
    let region = region_of(&mut words);
    config.write(&region).expect("valid configuration");
    // Only the configuration is interesting to the decoder.
    bytes_of(&words, crate::service::CONFIG_OFFSET + config_words * 8)
}

/// Decodes the configuration of a pattern `P` segment from `bytes`, as an
/// opener does; if it is valid, computes the layout it implies and checks
/// it against `wanted` (everything requested) and against itself.
fn decode_config<P: Pattern>(bytes: &[u8], wanted: &P::Config, all: &Requested) {
    let mut words = aligned(bytes, 0);
    let region = region_of(&mut words);
    let Ok(config) = P::Config::read(&region) else {
        return;
    };
    assert!(P::Layout::of(&config).size() > 0);
    let _ = config.check_compatible(wanted, all);
    let _ = config
        .check_compatible(&config, all)
        .map_err(|e| e.to_string());
}

/// The data area of a service segment with a valid static configuration
/// (the configuration part only: the registry and queues are zero).
pub fn valid_service_config() -> Vec<u8> {
    valid_config::<crate::pubsub::service::PubSub>(&service_config(), 80)
}

/// Decodes a service's static configuration from `bytes`; if it is valid,
/// computes the segment layout it implies and checks it against the
/// configuration a typical opener asks for.
pub fn decode_service_config(bytes: &[u8]) {
    decode_config::<crate::pubsub::service::PubSub>(bytes, &service_config(), &Requested::all());
}

fn event_config() -> EventConfig {
    EventConfig {
        name: "fuzz/event".into(),
        max_event_id: EventId(63),
        max_notifiers: 4,
        max_listeners: 4,
        created_event: Some(EventId(1)),
        dropped_event: None,
        dead_event: Some(EventId(63)),
    }
}

/// The data area of an event service segment with a valid configuration
/// (configuration part only).
pub fn valid_event_config() -> Vec<u8> {
    valid_config::<crate::event::service::Events>(&event_config(), 40)
}

/// Decodes an event service's configuration from `bytes`; if valid,
/// computes the layout it implies and checks it against a typical
/// opener's.
pub fn decode_event_config(bytes: &[u8]) {
    decode_config::<crate::event::service::Events>(bytes, &event_config(), &Requested::all());
}

const FUZZ_PUBLISHER: u64 = 0x0123_4567_89ab_cdef;

/// The data area of a publisher's data segment (`u64` payload, 8 chunks)
/// with a valid geometry header; the chunks are zero.
pub fn valid_publisher_data() -> Vec<u8> {
    let g = Geometry::new(8, 1, &u64::LAYOUT, &NoHeader::LAYOUT).expect("small geometry");
    let size = g.data_size().expect("small geometry");
    let mut words = vec![0u64; size.div_ceil(8)];
    let region = region_of(&mut words);
    let h = region
        .resolve::<PoolHeader>(0)
        .expect("header inside the buffer");
    // SAFETY: in bounds and aligned (resolve); atomics; the buffer lives
    // until the end of this function.
    g.write(unsafe { h.as_ref() }, FUZZ_PUBLISHER, 1);
    bytes_of(&words, size)
}

/// Reads a publisher's geometry from `bytes` as a subscriber does before
/// it maps the chunks (for a `u64` and a `[u32]` payload); if it is valid,
/// checks that every chunk lies inside the bytes.
pub fn decode_publisher_geometry(bytes: &[u8]) {
    let mut words = aligned(bytes, 0);
    let region = region_of(&mut words);
    for element in [u64::LAYOUT, u32::LAYOUT] {
        if let Ok(g) = Geometry::read_region(&region, FUZZ_PUBLISHER, &element, &NoHeader::LAYOUT) {
            let chunks = region
                .sub(g.chunks_offset, g.chunk_size * g.chunks)
                .expect("a valid geometry lies inside the segment");
            assert!(g.payload_offset + g.max_len * g.element_size <= g.chunk_size);
            assert!(chunks.len() <= region.len());
        }
    }
}

type BlackboardValue = [u64; 3];

fn blackboard_config() -> BlackboardConfig {
    let keys = [3u32, 1, 4];
    BlackboardConfig {
        name: "fuzz/blackboard".into(),
        key: TypeDesc::of(&u32::LAYOUT),
        value: TypeDesc::of(&BlackboardValue::LAYOUT),
        max_readers: 2,
        notify: true,
        keys: keys.iter().map(|k| bb::word_of(k, 0)).collect(),
        // Entry 1 bound to event 9: the event table is covered too.
        events: vec![0, 10, 0],
        initial: keys
            .iter()
            .flat_map(|k| (0..3).map(move |i| bb::word_of(&[u64::from(*k); 3], i)))
            .collect(),
        entry_count: keys.len(),
    }
}

/// The whole data area of a blackboard segment with a valid
/// configuration, key table and entries (three `u32` keys, `[u64; 3]`
/// values, one update of entry 1 applied).
pub fn valid_blackboard() -> Vec<u8> {
    let config = blackboard_config();
    let layout = BlackboardLayout::of(&config);
    let mut words = vec![0u64; layout.size.div_ceil(8)];
    let region = region_of(&mut words);
    config.write(&region).expect("valid configuration");
    if let Some(entry) = blackboard_entry(&region, &layout, 1) {
        bb::update(entry, |i| 7 + i as u64);
    }
    bytes_of(&words, layout.size)
}

/// The words of entry `i` of a blackboard data area, if they lie inside it.
fn blackboard_entry<'a>(
    region: &'a Region,
    layout: &BlackboardLayout,
    i: usize,
) -> Option<bb::EntryWords<'a>> {
    use crate::sync::atomic::AtomicU64;
    let base = layout.entry_offset(i);
    let n = layout.value_words;
    let words = region.resolve_slice::<AtomicU64>(base, 3 + 2 * n).ok()?;
    // SAFETY: in bounds and aligned (resolve_slice); atomics; the buffer
    // behind the region outlives the borrow of the region.
    let words: &'a [AtomicU64] = unsafe { std::slice::from_raw_parts(words.as_ptr(), 3 + 2 * n) };
    Some(bb::EntryWords {
        current: &words[0],
        seq: [&words[1], &words[2]],
        copies: [&words[3..3 + n], &words[3 + n..3 + 2 * n]],
    })
}

/// Decodes a blackboard's configuration and key table from `bytes` as an
/// opener does; if valid, checks it against a typical opener's, looks up
/// every key, and reads every entry (at most 64) that lies inside the
/// bytes, as a reader does: a read of garbage may fail or give a wrong
/// value, never panic or hang.
pub fn decode_blackboard(bytes: &[u8]) {
    let mut words = aligned(bytes, 0);
    let region = region_of(&mut words);
    let Ok(config) = BlackboardConfig::read(&region) else {
        return;
    };
    let all = Requested::all();
    let _ = config.check_compatible(&blackboard_config(), &all);
    let _ = config.check_compatible(&config, &all);
    for i in 0..config.entry_count {
        assert_eq!(config.find(config.key(i)).map(|j| j <= i), Some(true));
    }
    let layout = BlackboardLayout::of(&config);
    let mut out = vec![0u64; layout.value_words];
    for i in 0..layout.entries.min(64) {
        if let Some(entry) = blackboard_entry(&region, &layout, i) {
            let _ = bb::try_read(entry, |i, w| out[i] = w);
        }
    }
}

fn reqres_config() -> crate::reqres::layout::StaticConfig {
    crate::reqres::layout::StaticConfig {
        name: "fuzz/reqres".into(),
        request: TypeDesc::of(&u64::LAYOUT),
        request_slice: false,
        response: TypeDesc::of(&<[u32; 3]>::LAYOUT),
        response_slice: true,
        request_header: TypeDesc::of(&u32::LAYOUT),
        response_header: TypeDesc::of(&crate::pool::NO_HEADER),
        qos: crate::reqres::Qos {
            max_clients: 3,
            active_requests: 5,
            ..crate::reqres::Qos::default()
        },
    }
}

/// The data area of a request/response service segment with a valid
/// configuration (configuration part only).
pub fn valid_reqres_config() -> Vec<u8> {
    valid_config::<crate::reqres::service::ReqRes>(
        &reqres_config(),
        crate::reqres::layout::CONFIG_WORDS,
    )
}

/// Decodes a request/response service's configuration from `bytes`; if
/// valid, computes the layout it implies and checks it against a typical
/// opener's.
pub fn decode_reqres_config(bytes: &[u8]) {
    decode_config::<crate::reqres::service::ReqRes>(bytes, &reqres_config(), &Requested::all());
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn blackboard_decoder_survives_every_single_word_patch() {
        let valid = valid_blackboard();
        let mut words = aligned(&valid, 0);
        let config = BlackboardConfig::read(&region_of(&mut words)).expect("valid");
        assert_eq!(
            config,
            BlackboardConfig {
                initial: Vec::new(),
                ..blackboard_config()
            }
        );
        decode_blackboard(&valid);
        decode_blackboard(&[]);
        let step = if cfg!(miri) { 97 } else { 8 };
        for at in (0..valid.len()).step_by(step) {
            for patch in [u64::MAX, 0, 1, 1 << 40, 4096] {
                let mut bytes = valid.clone();
                let end = (at + 8).min(bytes.len());
                bytes[at..end].copy_from_slice(&patch.to_le_bytes()[..end - at]);
                decode_blackboard(&bytes);
                decode_blackboard(&bytes[..at]);
            }
        }
    }

    #[test]
    fn reqres_config_round_trips_and_survives_patches() {
        let valid = super::valid_reqres_config();
        super::decode_reqres_config(&valid);
        let mut words = super::aligned(&valid, 0);
        let region = super::region_of(&mut words);
        use crate::service::core::PatternConfig;
        let config = crate::reqres::layout::StaticConfig::read(&region).unwrap();
        assert_eq!(config.qos.max_clients, 3);
        for i in 0..valid.len() {
            for b in [0u8, 1, 0x7f, 0xff] {
                let mut patched = valid.clone();
                patched[i] = b;
                super::decode_reqres_config(&patched);
            }
        }
        super::decode_reqres_config(&[]);
    }
}
