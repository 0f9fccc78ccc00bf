//! Strings kept in shared memory as little-endian bytes in atomic words
//! (node names, service names, type names of static configurations).
//! A reader of a corrupted length gets a truncated or lossy string, never
//! an out-of-bounds read.

use std::sync::atomic::{AtomicU64, Ordering};

/// Stores `s` into `words` (truncated to `8 × words.len()` bytes, the rest
/// zeroed) and its length into `len`.
pub(crate) fn store_str(words: &[AtomicU64], len: &AtomicU64, s: &str) {
    let bytes = s.as_bytes();
    let n = bytes.len().min(words.len() * 8);
    for (i, w) in words.iter().enumerate() {
        let mut b = [0u8; 8];
        for (j, byte) in b.iter_mut().enumerate() {
            if let Some(x) = bytes.get(i * 8 + j).filter(|_| i * 8 + j < n) {
                *byte = *x;
            }
        }
        w.store(u64::from_le_bytes(b), Ordering::Relaxed);
    }
    len.store(n as u64, Ordering::Relaxed);
}

/// Loads a string stored by [`store_str`]; a length beyond the words is
/// clamped, invalid UTF-8 replaced.
pub(crate) fn load_str(words: &[AtomicU64], len: &AtomicU64) -> String {
    let n = (len.load(Ordering::Relaxed) as usize).min(words.len() * 8);
    let mut bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
        .collect();
    bytes.truncate(n);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_and_clamp() {
        let words: Vec<AtomicU64> = (0..2).map(|_| AtomicU64::new(u64::MAX)).collect();
        let len = AtomicU64::new(0);
        store_str(&words, &len, "robot/pose");
        assert_eq!(load_str(&words, &len), "robot/pose");
        store_str(&words, &len, "a name longer than sixteen bytes");
        assert_eq!(load_str(&words, &len), "a name longer th");
        len.store(1000, Ordering::Relaxed);
        assert_eq!(load_str(&words, &len).len(), 16);
    }
}
