//! Container tests on a heap buffer (run under Miri too).

use std::collections::HashMap;

use super::*;
use crate::shm::alloc::tests::{TestRegion, heap_in};
use crate::shm::{ShmBox, ShmHashMap, ShmList, ShmString, ShmVec};

fn scale(n: usize) -> usize {
    if cfg!(miri) { n.div_ceil(20).max(4) } else { n }
}

/// Overwrites the u64 at `off` in the region, as a hostile process would.
fn poke(region: &Region, off: u64, value: u64) {
    let p = region.resolve::<u64>(off as usize).unwrap();
    // SAFETY: aligned and inside the buffer; callers hold no reference to
    // these bytes across this call.
    unsafe { p.as_ptr().write(value) }
}

fn assert_heap_empty(ctx: &Context<'_>) {
    let s = ctx.heap.verify(&ctx.region).unwrap();
    assert_eq!(s.allocations, 0, "leak: {s:?}");
    assert_eq!(s.free_blocks, 1);
}

#[test]
fn vec_operations() {
    let mut buf = TestRegion::new(256 * 1024);
    let (region, heap) = heap_in(&mut buf);
    let mut ctx = Context::new(region, heap);
    let mut header = ShmBox::new(&mut ctx, ShmVec::<u64>::new()).unwrap();
    let n = scale(1000);
    {
        let v = header.get_mut(&ctx).unwrap();
        for i in 0..n as u64 {
            v.push(&mut ctx, i * 3).unwrap();
        }
        assert_eq!(v.len(), n);
        assert_eq!(v.get(&region, 5).unwrap(), Some(&15));
        assert_eq!(v.get(&region, n).unwrap(), None);
        assert!(
            v.iter(&region)
                .unwrap()
                .copied()
                .eq((0..n as u64).map(|i| i * 3))
        );
        assert_eq!(v.pop(&region).unwrap(), Some((n as u64 - 1) * 3));
        v.as_mut_slice(&ctx).unwrap()[0] = 99;
        assert_eq!(v.as_slice(&region).unwrap()[0], 99);
        v.clear();
        assert!(v.is_empty());
        assert_eq!(v.pop(&region).unwrap(), None);
        v.reserve(&mut ctx, 5000).unwrap();
        assert!(v.capacity() >= 5000);
        v.free(&mut ctx).unwrap();
    }
    header.free(&mut ctx).unwrap();
    assert_heap_empty(&ctx);
}

#[test]
fn vec_corruption_is_an_error() {
    let mut buf = TestRegion::new(64 * 1024);
    let (region, heap) = heap_in(&mut buf);
    let mut ctx = Context::new(region, heap);
    let mut header = ShmBox::new(&mut ctx, ShmVec::<u32>::new()).unwrap();
    let h = header.offset().raw();
    for i in 0..10 {
        header.get_mut(&ctx).unwrap().push(&mut ctx, i).unwrap();
    }
    // Data offset beyond the region.
    let data = header.get(&region).unwrap().data_offset().raw();
    poke(&region, h, region.len() as u64 + 4096);
    let v = header.get(&region).unwrap();
    assert!(matches!(
        v.as_slice(&region),
        Err(ContainerError::BadOffset { .. })
    ));
    // Data offset pointing at the vector header itself.
    poke(&region, h, h);
    let v = header.get(&region).unwrap();
    assert!(matches!(
        v.as_slice(&region),
        Err(ContainerError::Overlap { .. })
    ));
    // Length larger than capacity.
    poke(&region, h, data);
    poke(&region, h + 8, 1 << 40);
    let v = header.get_mut(&ctx).unwrap();
    assert!(matches!(
        v.get(&region, 0),
        Err(ContainerError::LengthExceedsCapacity { .. })
    ));
    assert!(matches!(
        v.push(&mut ctx, 1),
        Err(ContainerError::LengthExceedsCapacity { .. })
    ));
    // Capacity so large the storage runs off the region.
    poke(&region, h + 8, 1);
    poke(&region, h + 16, u64::MAX / 2);
    let v = header.get(&region).unwrap();
    assert!(v.as_slice(&region).is_err());
    // A data offset inside the region that is no heap block: growth fails.
    poke(&region, h, data + 16);
    poke(&region, h + 16, 4);
    poke(&region, h + 8, 4);
    let v = header.get_mut(&ctx).unwrap();
    assert!(matches!(
        v.push(&mut ctx, 1),
        Err(ContainerError::Alloc(
            crate::shm::AllocError::NotABlock { .. }
        ))
    ));
}

#[test]
fn string_operations_and_utf8_check() {
    let mut buf = TestRegion::new(64 * 1024);
    let (region, heap) = heap_in(&mut buf);
    let mut ctx = Context::new(region, heap);
    let mut s = ShmString::new();
    s.push_str(&mut ctx, "grüße").unwrap();
    s.push_str(&mut ctx, ", conduit").unwrap();
    assert_eq!(s.as_str(&region).unwrap(), "grüße, conduit");
    assert_eq!(s.len(), "grüße, conduit".len());
    // Another process writes a lone continuation byte.
    s.as_mut_vec().push(&mut ctx, 0x80).unwrap();
    assert!(matches!(
        s.as_str(&region),
        Err(ContainerError::InvalidUtf8(_))
    ));
    assert_eq!(s.as_bytes(&region).unwrap().last(), Some(&0x80));
    s.clear();
    assert_eq!(s.as_str(&region).unwrap(), "");
    s.free(&mut ctx).unwrap();
    assert_heap_empty(&ctx);
}

#[test]
fn box_operations() {
    let mut buf = TestRegion::new(64 * 1024);
    let (region, heap) = heap_in(&mut buf);
    let mut ctx = Context::new(region, heap);
    let mut b = ShmBox::new(&mut ctx, [1u64, 2, 3]).unwrap();
    assert_eq!(b.get(&region).unwrap(), &[1, 2, 3]);
    b.get_mut(&ctx).unwrap()[1] = 20;
    assert_eq!(b.take(&mut ctx).unwrap(), [1, 20, 3]);
    assert!(b.is_empty());
    assert_eq!(b.get(&region).unwrap_err(), ContainerError::Empty);
    // A box pointing outside the region.
    let bad = ShmBox::<u64>::from_offset(crate::shm::Offset::new(1 << 50));
    assert!(matches!(
        bad.get(&region),
        Err(ContainerError::BadOffset { .. })
    ));
    assert_heap_empty(&ctx);
}

#[test]
fn list_operations() {
    let mut buf = TestRegion::new(128 * 1024);
    let (region, heap) = heap_in(&mut buf);
    let mut ctx = Context::new(region, heap);
    let mut header = ShmBox::new(&mut ctx, ShmList::<u32>::new()).unwrap();
    let n = scale(200) as u32;
    {
        let list = header.get_mut(&ctx).unwrap();
        for i in 0..n {
            list.push_back(&mut ctx, i).unwrap();
        }
        list.push_front(&mut ctx, 1000).unwrap();
        assert_eq!(list.len(), n as usize + 1);
        let fwd: Vec<u32> = list.iter(&region).map(|r| *r.unwrap()).collect();
        let mut expect: Vec<u32> = core::iter::once(1000).chain(0..n).collect();
        assert_eq!(fwd, expect);
        let back: Vec<u32> = list.iter_rev(&region).map(|r| *r.unwrap()).collect();
        expect.reverse();
        assert_eq!(back, expect);
        // Remove from the middle.
        let id = list.find(&region, |v| *v == 2).unwrap().unwrap();
        assert_eq!(list.remove(&mut ctx, id).unwrap(), 2);
        // Removing it again is refused (not a live node any more).
        assert!(list.remove(&mut ctx, id).is_err());
        assert_eq!(list.find(&region, |v| *v == 2).unwrap(), None);
        assert_eq!(list.pop_front(&mut ctx).unwrap(), Some(1000));
        assert_eq!(list.pop_back(&mut ctx).unwrap(), Some(n - 1));
        assert_eq!(list.len(), n as usize - 2);
        list.free(&mut ctx).unwrap();
        assert_eq!(list.pop_back(&mut ctx).unwrap(), None);
    }
    header.free(&mut ctx).unwrap();
    assert_heap_empty(&ctx);
}

#[test]
fn list_corruption_is_an_error() {
    let mut buf = TestRegion::new(64 * 1024);
    let (region, heap) = heap_in(&mut buf);
    let mut ctx = Context::new(region, heap);
    let mut header = ShmBox::new(&mut ctx, ShmList::<u64>::new()).unwrap();
    let h = header.offset().raw();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            header
                .get_mut(&ctx)
                .unwrap()
                .push_back(&mut ctx, i)
                .unwrap(),
        );
    }
    // A cycle: the last node's next points back at the first, whose prev
    // is rewritten to agree: the head's back link gives it away at once.
    poke(&region, ids[3].raw(), ids[0].raw());
    poke(&region, ids[0].raw() + 8, ids[3].raw());
    let list = header.get(&region).unwrap();
    let r: Vec<_> = list.iter(&region).collect();
    assert!(
        matches!(r[..], [Err(ContainerError::BrokenLink { .. })]),
        "{r:?}"
    );
    // Only the length bound catches a chain longer than recorded.
    poke(&region, ids[0].raw() + 8, u64::MAX);
    poke(&region, h + 16, 2);
    let list = header.get(&region).unwrap();
    let r: Vec<_> = list.iter(&region).collect();
    assert_eq!(r.len(), 3, "two values then one error");
    assert!(matches!(r[2], Err(ContainerError::ListTooLong { len: 2 })));
    // A cycle that skips back (back link mismatch).
    poke(&region, ids[0].raw() + 8, u64::MAX);
    poke(&region, ids[3].raw(), ids[1].raw());
    poke(&region, h + 16, 1000);
    let list = header.get(&region).unwrap();
    let last = list.iter(&region).last().unwrap();
    assert!(matches!(last, Err(ContainerError::BrokenLink { .. })));
    // A next link outside the region.
    poke(&region, ids[3].raw(), 1 << 40);
    let list = header.get(&region).unwrap();
    assert!(matches!(
        list.iter(&region).last().unwrap(),
        Err(ContainerError::BadOffset { .. })
    ));
    // Recorded length longer than the chain.
    poke(&region, ids[3].raw(), u64::MAX);
    let list = header.get(&region).unwrap();
    assert!(matches!(
        list.iter_rev(&region).last().unwrap(),
        Err(ContainerError::ListTooShort {
            len: 1000,
            found: 4
        })
    ));
    // The head points at the list header itself.
    poke(&region, h, h);
    let list = header.get_mut(&ctx).unwrap();
    assert!(matches!(
        list.pop_front(&mut ctx),
        Err(ContainerError::Overlap { .. })
    ));
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(C)]
struct Key {
    a: u32,
    b: u32,
}

// SAFETY: repr(C), two u32 fields, no padding, every bit pattern valid.
unsafe impl crate::shm::ShmSafe for Key {
    const LAYOUT: crate::shm::TypeLayout = crate::shm::TypeLayout::leaf("Key", 8, 4);
}

#[test]
fn map_against_model() {
    let mut buf = TestRegion::new(512 * 1024);
    let (region, heap) = heap_in(&mut buf);
    let mut ctx = Context::new(region, heap);
    let mut header = ShmBox::new(&mut ctx, ShmHashMap::<Key, u64>::new()).unwrap();
    let mut model = HashMap::new();
    let mut x = 0x9e37_79b9u64;
    let steps = scale(4000);
    {
        let map = header.get_mut(&ctx).unwrap();
        for step in 0..steps as u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = Key {
                a: (x % 300) as u32,
                b: 7,
            };
            if x % 4 == 0 {
                assert_eq!(map.remove(&mut ctx, &key).unwrap(), model.remove(&key));
            } else {
                assert_eq!(
                    map.insert(&mut ctx, key, step).unwrap(),
                    model.insert(key, step)
                );
            }
            assert_eq!(map.len(), model.len());
        }
        for (k, v) in &model {
            assert_eq!(map.get(&region, k).unwrap(), Some(v));
        }
        assert_eq!(map.get(&region, &Key { a: 1, b: 1 }).unwrap(), None);
        let mut seen: Vec<(Key, u64)> = map
            .iter(&region)
            .unwrap()
            .map(|r| r.map(|(k, v)| (*k, *v)).unwrap())
            .collect();
        let mut expect: Vec<(Key, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        seen.sort_by_key(|(k, _)| (k.a, k.b));
        expect.sort_by_key(|(k, _)| (k.a, k.b));
        assert_eq!(seen, expect);
        if let Some(k) = model.keys().next() {
            *map.get_mut(&ctx, k).unwrap().unwrap() = 5;
            assert_eq!(map.get(&region, k).unwrap(), Some(&5));
            assert!(map.contains_key(&region, k).unwrap());
        }
        map.free(&mut ctx).unwrap();
    }
    header.free(&mut ctx).unwrap();
    assert_heap_empty(&ctx);
}

#[test]
fn map_corruption_is_an_error() {
    let mut buf = TestRegion::new(64 * 1024);
    let (region, heap) = heap_in(&mut buf);
    let mut ctx = Context::new(region, heap);
    let mut header = ShmBox::new(&mut ctx, ShmHashMap::<u64, u64>::new()).unwrap();
    let h = header.offset().raw();
    for i in 0..5 {
        header
            .get_mut(&ctx)
            .unwrap()
            .insert(&mut ctx, i, i)
            .unwrap();
    }
    let map = header.get(&region).unwrap();
    let slots = region.offset_of(map as *const _).unwrap() as u64;
    assert_eq!(slots, h);
    // Slot states: find the first slot and write a garbage state into it.
    let slots_off = {
        let p = region.resolve::<u64>(h as usize).unwrap();
        // SAFETY: reading a u64 of the header; no reference is live.
        unsafe { p.as_ptr().read() }
    };
    for i in 0..8u64 {
        poke(&region, slots_off + i * 24, 7);
    }
    let map = header.get(&region).unwrap();
    assert!(matches!(
        map.get(&region, &1),
        Err(ContainerError::BadSlotState { state: 7, .. })
    ));
    let r: Vec<_> = map.iter(&region).unwrap().collect();
    assert_eq!(r.len(), 1);
    assert!(r[0].is_err());
    // A capacity that is not a power of two.
    poke(&region, h + 8, 6);
    let map = header.get(&region).unwrap();
    assert!(matches!(
        map.get(&region, &1),
        Err(ContainerError::BadCapacity { capacity: 6 })
    ));
    // All slots "deleted", none empty: a lookup ends after `capacity` probes.
    poke(&region, h + 8, 8);
    poke(&region, h + 16, 0);
    poke(&region, h + 24, 8);
    for i in 0..8u64 {
        poke(&region, slots_off + i * 24, 2);
    }
    let map = header.get(&region).unwrap();
    assert_eq!(map.get(&region, &1).unwrap(), None);
}

/// Found by the `containers` fuzz target: an empty map (no slot array)
/// whose tombstone count is garbage near `u64::MAX` overflowed the
/// load-factor check of `insert`.
#[test]
fn map_insert_with_huge_counts_is_not_a_panic() {
    let mut buf = TestRegion::new(64 * 1024);
    let (region, heap) = heap_in(&mut buf);
    let mut ctx = Context::new(region, heap);
    let mut header = ShmBox::new(&mut ctx, ShmHashMap::<u64, u64>::new()).unwrap();
    let h = header.offset().raw();
    // Header: slots, capacity, len, tombstones.
    for tombstones in [u64::MAX, u64::MAX - 1, u64::MAX / 2] {
        poke(&region, h + 24, tombstones);
        // An error, or a rehash that starts the counts afresh.
        let _ = header.get_mut(&ctx).unwrap().insert(&mut ctx, 2, 2);
        let _ = header.get_mut(&ctx).unwrap().free(&mut ctx);
    }
}

#[test]
fn stable_hasher_is_stable() {
    let mut h = StableHasher::new();
    h.write(b"conduit");
    // Fixed value: the same in every process and every build.
    let a = h.finish();
    let mut h2 = StableHasher::default();
    h2.write(b"conduit");
    assert_eq!(a, h2.finish());
    let mut h3 = StableHasher::new();
    h3.write(b"conduiu");
    assert_ne!(a, h3.finish());
}

/// Random garbage in the region under live containers: every operation
/// returns Ok or an error; nothing panics, hangs or (under Miri) touches
/// memory it must not.
#[test]
fn random_corruption_of_containers_never_panics() {
    let seeds: u64 = if cfg!(miri) { 8 } else { 300 };
    for seed in 1..=seeds {
        let mut buf = TestRegion::new(64 * 1024);
        let (region, heap) = heap_in(&mut buf);
        let (start, end) = heap.bounds();
        let mut ctx = Context::new(region, heap);
        let mut list = ShmBox::new(&mut ctx, ShmList::<u64>::new()).unwrap();
        let mut vec = ShmBox::new(&mut ctx, ShmVec::<u32>::new()).unwrap();
        let mut map = ShmBox::new(&mut ctx, ShmHashMap::<u64, u64>::new()).unwrap();
        let mut string = ShmBox::new(&mut ctx, ShmString::new()).unwrap();
        for i in 0..12u64 {
            list.get_mut(&ctx).unwrap().push_back(&mut ctx, i).unwrap();
            vec.get_mut(&ctx).unwrap().push(&mut ctx, i as u32).unwrap();
            map.get_mut(&ctx).unwrap().insert(&mut ctx, i, i).unwrap();
            string
                .get_mut(&ctx)
                .unwrap()
                .push_str(&mut ctx, "ab")
                .unwrap();
        }
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut rng = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..(1 + seed % 6) {
            let off = start + rng() % ((end - start) / 8) * 8;
            let value = match rng() % 4 {
                0 => rng(),
                1 => rng() % end,
                2 => u64::MAX,
                _ => 0,
            };
            poke(&region, off, value);
        }
        for _ in 0..30 {
            let r = rng();
            let k = r % 20;
            match r % 12 {
                0 => {
                    if let Ok(l) = list.get(&ctx) {
                        let _ = l.iter(&ctx).count();
                        let _ = l.iter_rev(&ctx).count();
                    }
                }
                1 => {
                    if let Ok(l) = list.get_mut(&ctx) {
                        let _ = l.push_front(&mut ctx, k);
                    }
                }
                2 => {
                    if let Ok(l) = list.get_mut(&ctx) {
                        let _ = l.pop_back(&mut ctx);
                    }
                }
                3 => {
                    if let Ok(l) = list.get_mut(&ctx) {
                        if let Ok(Some(id)) = l.find(&ctx, |v| *v == k) {
                            let _ = l.remove(&mut ctx, id);
                        }
                    }
                }
                4 => {
                    if let Ok(v) = vec.get_mut(&ctx) {
                        let _ = v.push(&mut ctx, k as u32);
                        let _ = v.iter(&ctx).map(|i| i.count());
                    }
                }
                5 => {
                    if let Ok(v) = vec.get_mut(&ctx) {
                        let _ = v.pop(&ctx);
                        if let Ok(s) = v.as_mut_slice(&ctx) {
                            s.iter_mut().for_each(|e| *e = 1);
                        }
                    }
                }
                6 => {
                    if let Ok(m) = map.get_mut(&ctx) {
                        let _ = m.insert(&mut ctx, k, r);
                    }
                }
                7 => {
                    if let Ok(m) = map.get_mut(&ctx) {
                        let _ = m.remove(&mut ctx, &k);
                        let _ = m.get(&ctx, &k);
                    }
                }
                8 => {
                    if let Ok(m) = map.get(&ctx) {
                        if let Ok(it) = m.iter(&ctx) {
                            let _ = it.count();
                        }
                    }
                }
                9 => {
                    if let Ok(s) = string.get_mut(&ctx) {
                        let _ = s.push_str(&mut ctx, "é");
                        let _ = s.as_str(&ctx).map(str::len);
                    }
                }
                10 => {
                    let _ = ctx.heap.verify(&region);
                }
                _ => {
                    if let Ok(l) = list.get_mut(&ctx) {
                        let _ = l.free(&mut ctx);
                    }
                }
            }
        }
    }
}

/// Found by the `containers` fuzz target: a vector whose data offset was
/// scribbled to point at a free block grows into that very block, so the
/// old and new storage overlap. The copy must be defined for that
/// (`ptr::copy`); `copy_nonoverlapping` aborted on its precondition.
#[test]
fn vec_growing_into_its_own_scribbled_storage_is_defined() {
    let mut buf = TestRegion::new(64 * 1024);
    let (region, heap) = heap_in(&mut buf);
    let mut ctx = Context::new(region, heap);
    let mut header = ShmBox::new(&mut ctx, ShmVec::<u8>::new()).unwrap();
    header
        .get_mut(&ctx)
        .unwrap()
        .extend_from_slice(&mut ctx, &[1, 2, 3, 4])
        .unwrap();
    // A free block the next allocation will reuse.
    let free = ctx.heap.allocate(&ctx.region, 256, 8).unwrap();
    ctx.heap.deallocate(&ctx.region, free).unwrap();
    let h = header.offset().raw();
    // Header: data offset, len, capacity. Point the data at the free block.
    poke(&region, h, free.raw());
    poke(&region, h + 8, 4);
    poke(&region, h + 16, 4);
    // Growing may succeed (garbage bytes) or report corruption: never UB.
    let _ = header
        .get_mut(&ctx)
        .unwrap()
        .extend_from_slice(&mut ctx, &[5; 64]);
}
