//! Helpers shared by the fuzz targets: patches that turn a valid shared
//! layout into a corrupted one.
//!
//! Random bytes rarely get past a magic word, so most targets build a
//! valid layout first (a heap with allocations, containers with elements,
//! a service with connected ports) and let the fuzzer choose a list of
//! [`Patch`]es to write over it: that keeps the corpus small and the
//! coverage deep.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use arbitrary::Arbitrary;
use conduit::shm::Region;

/// What a patch writes.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Value {
    /// One byte.
    Byte(u8),
    /// A whole (aligned) word.
    Word(u64),
    /// A small number: a plausible length, index or count.
    Small(u8),
    /// An extreme value: `u64::MAX - n`, `1 << 63`, `u32::MAX`…
    Extreme(u8),
    /// The word flipped at one bit.
    Flip(u8),
    /// The word plus or minus a little: an off-by-some offset.
    Nudge(i8),
    /// A copy of another word of the same area: a plausible offset.
    CopyFrom(u16),
}

/// One write at `offset` (scaled into the patched range).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Patch {
    /// Where, modulo the range (in words for word values, in bytes for
    /// [`Value::Byte`]).
    pub offset: u16,
    /// What.
    pub value: Value,
}

fn word(region: &Region, off: usize) -> &AtomicU64 {
    let p = region
        .resolve::<AtomicU64>(off)
        .expect("patch inside the region");
    // SAFETY: in bounds and aligned (resolve); atomics tolerate any other
    // access, including the library's own references to the same words.
    unsafe { p.as_ref() }
}

/// Applies `patches` to `region[start..start + len]` (8-byte aligned
/// `start`), with atomic stores so that the library may hold references
/// into the area meanwhile. `skip` is a range left alone.
pub fn apply(
    region: &Region,
    start: usize,
    len: usize,
    skip: std::ops::Range<usize>,
    patches: &[Patch],
) {
    let len = len.min(region.len().saturating_sub(start));
    let words = len / 8;
    if words == 0 {
        return;
    }
    for p in patches {
        let w_off = start + (p.offset as usize % words) * 8;
        if skip.contains(&w_off) {
            continue;
        }
        let w = word(region, w_off);
        let old = w.load(Ordering::Relaxed);
        let new = match p.value {
            Value::Byte(b) => {
                let off = start + p.offset as usize % len;
                if skip.contains(&(off & !7)) {
                    continue;
                }
                let q = region.resolve::<AtomicU8>(off).expect("inside");
                // SAFETY: in bounds (resolve); an atomic byte.
                unsafe { q.as_ref() }.store(b, Ordering::Relaxed);
                continue;
            }
            Value::Word(v) => v,
            Value::Small(v) => u64::from(v),
            Value::Extreme(n) => match n % 6 {
                0 => u64::MAX,
                1 => u64::MAX - u64::from(n),
                2 => 1 << 63,
                3 => u64::from(u32::MAX),
                4 => i64::MAX as u64,
                _ => (1 << 32) + u64::from(n),
            },
            Value::Flip(bit) => old ^ (1 << (bit % 64)),
            Value::Nudge(d) => old.wrapping_add(d as i64 as u64),
            Value::CopyFrom(from) => {
                word(region, start + (from as usize % words) * 8).load(Ordering::Relaxed)
            }
        };
        w.store(new, Ordering::Relaxed);
    }
}

/// A zeroed, 4096-byte-aligned buffer standing for a mapping.
pub struct Buffer {
    words: Vec<u64>,
    offset: usize,
}

impl Buffer {
    /// `len` bytes (a multiple of 8), page aligned like a mapping.
    pub fn new(len: usize) -> Buffer {
        let words = vec![0u64; (len + 4096) / 8];
        let offset = (4096 - (words.as_ptr() as usize % 4096)) % 4096 / 8;
        Buffer { words, offset }
    }

    /// The region over the buffer.
    pub fn region(&mut self) -> Region {
        let len = (self.words.len() - 512) * 8;
        let p = self.words[self.offset..].as_mut_ptr().cast::<u8>();
        // SAFETY: `len` bytes from `p` lie inside the vector, which lives
        // as long as `self`; callers use the region only while the buffer
        // lives.
        unsafe { Region::new(std::ptr::NonNull::new(p).expect("non-null"), len) }
    }
}

/// A unique domain for this fuzzing process; its objects are removed by
/// [`remove_domain`].
pub fn domain() -> String {
    format!("fuzz-{}", std::process::id())
}

/// Removes every object left in `/dev/shm` under `domain`.
pub fn remove_domain(domain: &str) {
    if let Ok(domain) = conduit::Domain::new(domain) {
        for object in domain.objects().unwrap_or_default() {
            let _ = domain.remove_object(&object);
        }
    }
}

/// The input of a decoder target: patches over a valid encoding, or raw
/// bytes.
#[derive(Arbitrary, Debug)]
pub enum DecoderInput {
    /// Patches written over `valid()`.
    Patched(Vec<Patch>),
    /// Arbitrary bytes.
    Raw(Vec<u8>),
}

/// Runs `decode` over `input`: raw bytes as they are, patches over a copy
/// of `valid()` (the encoding a live service writes).
pub fn run_decoder(input: DecoderInput, valid: fn() -> Vec<u8>, decode: fn(&[u8])) {
    match input {
        DecoderInput::Patched(patches) => {
            let mut bytes = valid();
            let mut buf = Buffer::new(bytes.len().next_multiple_of(8));
            let region = buf.region();
            // SAFETY: the buffer is at least bytes.len() long and is not
            // the vector's memory.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), region.base().as_ptr(), bytes.len())
            };
            apply(&region, 0, bytes.len(), 0..0, &patches);
            // SAFETY: as above.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    region.base().as_ptr(),
                    bytes.as_mut_ptr(),
                    bytes.len(),
                )
            };
            decode(&bytes);
        }
        DecoderInput::Raw(bytes) => decode(&bytes),
    }
}

/// Patches the live service segment `name` of `kind` in `domain`:
/// `patches` anywhere in the segment (header included, except the
/// header's state word, bytes 12..16: a segment that is never ready makes
/// every opener wait out the abandon grace of 100 ms, which only slows the
/// fuzzer; the `segment_header` target and `tests/corruption.rs` cover
/// it), `slot_patches` past the static configuration of `config_words`
/// words (the registry, the pattern's slots, queues and words).
pub fn patch_service(
    domain: &str,
    kind: conduit::ServiceKind,
    name: &str,
    config_words: usize,
    patches: &[Patch],
    slot_patches: &[Patch],
) {
    let raw = conduit::shm::Segment::builder(&kind.segment_name(name))
        .domain(domain)
        .open()
        .expect("raw service segment");
    // The data area's configuration ends after the header line and the
    // configuration words.
    let config_end = 64 + config_words * 8;
    let data = raw.data();
    apply(&raw.whole(), 0, raw.len(), 8..16, patches);
    apply(
        &data,
        config_end,
        data.len().saturating_sub(config_end),
        0..0,
        slot_patches,
    );
}
