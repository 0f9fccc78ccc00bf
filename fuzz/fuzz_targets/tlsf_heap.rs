//! The TLSF heap over corrupted metadata: a valid heap with allocations
//! is patched (state, bitmaps, free lists, block headers), then verified
//! and used (allocate, free, reallocate, usable size).
#![no_main]

use arbitrary::Arbitrary;
use conduit::shm::{HeapState, Offset, Region};
use conduit_fuzz::{Buffer, Patch, apply};
use libfuzzer_sys::fuzz_target;

const LEN: usize = 32 << 10;

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc { size: u16, align_log: u8 },
    Free { index: u8 },
    FreeRaw { offset: u16 },
    Realloc { index: u8, size: u16 },
    Usable { index: u8 },
    Verify,
    Stats,
}

#[derive(Arbitrary, Debug)]
struct Input {
    setup: Vec<u16>,
    patches: Vec<Patch>,
    ops: Vec<Op>,
}

/// The heap state at the start of `region`.
///
/// # Safety
///
/// No other reference to the state's bytes may be used while the returned
/// one lives (the patches are written between two calls).
unsafe fn state<'a>(region: &Region) -> &'a mut HeapState {
    let p = region.resolve::<HeapState>(0).expect("state inside");
    // SAFETY: in bounds and aligned; every bit pattern is a HeapState
    // (plain integers); exclusive use is the caller's promise.
    unsafe { &mut *p.as_ptr() }
}

fuzz_target!(|input: Input| {
    let mut buf = Buffer::new(LEN);
    let region = buf.region();
    let start = size_of::<HeapState>().next_multiple_of(64);
    let mut live: Vec<Offset<u8>> = Vec::new();
    {
        // SAFETY: the only reference to the state until the block ends.
        let heap = unsafe { state(&region) };
        heap.init(&region, start, LEN - start).expect("heap fits");
        for (i, &size) in input.setup.iter().take(32).enumerate() {
            if let Ok(off) = heap.allocate(&region, usize::from(size % 2048), 16) {
                live.push(off);
            }
            if i % 3 == 2 {
                let off = live.remove(0);
                heap.deallocate(&region, off).expect("valid free");
            }
        }
        heap.verify(&region).expect("valid heap");
    }
    // State and blocks alike.
    apply(&region, 0, LEN, 0..0, &input.patches);
    // SAFETY: the first reference is gone; nothing else writes the state
    // from here on but through this one.
    let heap = unsafe { state(&region) };
    let _ = heap.verify(&region);
    for op in input.ops.iter().take(64) {
        match *op {
            Op::Alloc { size, align_log } => {
                if let Ok(off) = heap.allocate(&region, usize::from(size), 1 << (align_log % 13)) {
                    live.push(off);
                }
            }
            Op::Free { index } if !live.is_empty() => {
                let off = live.swap_remove(usize::from(index) % live.len());
                let _ = heap.deallocate(&region, off);
            }
            Op::FreeRaw { offset } => {
                let _ = heap.deallocate(&region, Offset::new(u64::from(offset)));
            }
            Op::Realloc { index, size } if !live.is_empty() => {
                let i = usize::from(index) % live.len();
                if let Ok(off) = heap.reallocate(&region, live[i], usize::from(size), 16) {
                    live[i] = off;
                }
            }
            Op::Usable { index } if !live.is_empty() => {
                let off = live[usize::from(index) % live.len()];
                if let Ok(n) = heap.usable_size(&region, off) {
                    assert!(
                        off.raw() as usize + n <= LEN,
                        "usable block past the region"
                    );
                }
            }
            Op::Verify => {
                let _ = heap.verify(&region);
            }
            Op::Stats => {
                let _ = heap.stats(&region);
            }
            _ => {}
        }
    }
});
