//! Scenario `heap`: allocation/free throughput of conduit's shared-memory
//! heap (`conduit::shm::HeapState`, TLSF) against the system allocator
//! (`std::alloc`) on the same operation sequence, in the same run.
//!
//! The sequence: a window of `WINDOW` live slots; each operation picks a
//! slot at random, frees what it holds (if anything) and allocates a new
//! block of a random size — 70 % 16–256 B, 25 % 256 B–4 KiB, 5 % 4–64 KiB —
//! and writes its first byte. One "op" is one allocate plus (after warm-up)
//! one free.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use conduit::shm::{HeapState, Offset, Region};

/// Live allocations kept at any time.
pub const WINDOW: usize = 256;
const REGION_SIZE: usize = 64 << 20;

/// Result of one run.
#[derive(Debug, Clone, Copy)]
pub struct HeapReport {
    /// Operations (allocate + free pairs) per run.
    pub ops: usize,
    /// conduit heap: operations per second.
    pub shm_ops_per_sec: f64,
    /// std::alloc: operations per second.
    pub std_ops_per_sec: f64,
}

impl HeapReport {
    /// conduit / std throughput ratio (> 1: the shm heap is faster).
    pub fn ratio(&self) -> f64 {
        self.shm_ops_per_sec / self.std_ops_per_sec
    }
}

/// The deterministic operation sequence: (slot, size).
fn sequence(ops: usize) -> Vec<(usize, usize)> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..ops)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let slot = (x >> 8) as usize % WINDOW;
            let r = (x >> 24) as usize;
            let size = match x % 100 {
                0..70 => 16 + r % 240,
                70..95 => 256 + r % 3840,
                _ => 4096 + r % 61440,
            };
            (slot, size)
        })
        .collect()
}

fn run_shm(seq: &[(usize, usize)]) -> Duration {
    let layout = Layout::from_size_align(REGION_SIZE, 4096).unwrap();
    // SAFETY: non-zero size.
    let base = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).expect("allocate region");
    // SAFETY: the buffer stays allocated until the end of this function,
    // after the last use of `region`.
    let region = unsafe { Region::new(base, REGION_SIZE) };
    let mut heap = Box::new(HeapState::zeroed());
    heap.init(&region, 0, REGION_SIZE).expect("init heap");
    let mut live: Vec<Option<Offset<u8>>> = vec![None; WINDOW];
    let start = Instant::now();
    for &(slot, size) in seq {
        if let Some(o) = live[slot].take() {
            heap.deallocate(&region, o).expect("free");
        }
        let o = heap.allocate(&region, size, 16).expect("allocate");
        let p = region.resolve::<u8>(o.raw() as usize).expect("resolve");
        // SAFETY: a fresh allocation of at least one byte.
        unsafe { p.as_ptr().write(1) };
        live[slot] = Some(o);
    }
    for o in live.iter_mut().filter_map(Option::take) {
        heap.deallocate(&region, o).expect("free");
    }
    let elapsed = start.elapsed();
    assert_eq!(heap.verify(&region).expect("verify").allocations, 0);
    // SAFETY: allocated above with this layout; `region` is not used again.
    unsafe { std::alloc::dealloc(base.as_ptr(), layout) };
    elapsed
}

fn run_std(seq: &[(usize, usize)]) -> Duration {
    let mut live: Vec<Option<(NonNull<u8>, Layout)>> = vec![None; WINDOW];
    let start = Instant::now();
    for &(slot, size) in seq {
        if let Some((p, l)) = live[slot].take() {
            // SAFETY: allocated below with layout `l`.
            unsafe { std::alloc::dealloc(p.as_ptr(), l) };
        }
        let l = Layout::from_size_align(size, 16).unwrap();
        // SAFETY: non-zero size.
        let p = NonNull::new(unsafe { std::alloc::alloc(l) }).expect("allocate");
        // SAFETY: a fresh allocation of at least one byte.
        unsafe { p.as_ptr().write(1) };
        live[slot] = Some((p, l));
    }
    for (p, l) in live.iter_mut().filter_map(Option::take) {
        // SAFETY: allocated above with layout `l`.
        unsafe { std::alloc::dealloc(p.as_ptr(), l) };
    }
    start.elapsed()
}

/// Runs both allocators over the same `ops`-long sequence (best of
/// `rounds`, alternating, so both see the same machine state).
pub fn run(ops: usize, rounds: usize) -> HeapReport {
    let seq = sequence(ops);
    let (mut shm, mut std) = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds.max(1) {
        shm = shm.min(run_shm(&seq));
        std = std.min(run_std(&seq));
    }
    HeapReport {
        ops,
        shm_ops_per_sec: ops as f64 / shm.as_secs_f64(),
        std_ops_per_sec: ops as f64 / std.as_secs_f64(),
    }
}
