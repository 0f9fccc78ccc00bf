//! A managed segment's directory and objects over corrupted memory: a
//! managed segment with named containers is patched (magic, heap state,
//! directory map, blocks, containers), then reopened, locked, searched
//! and used.
//!
//! The robust lock word is left alone: garbage there that names a live
//! task makes `lock` wait for a second before it takes the lock over (see
//! `RobustMutex`), which would only slow the fuzzer down;
//! `tests/corruption.rs` scribbles on it.
#![no_main]

use arbitrary::Arbitrary;
use conduit::shm::{ManagedSegment, Segment, ShmHashMap, ShmList, ShmString, ShmVec};
use conduit_fuzz::{Patch, apply};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Find(u8),
    Construct(u8),
    Destroy(u8),
    Names,
    Stats,
    UseVec(u64),
    UseText,
    UseList(u64),
    UseMap(u64),
    Reopen,
}

#[derive(Arbitrary, Debug)]
struct Input {
    patches: Vec<Patch>,
    ops: Vec<Op>,
}

const NAMES: [&str; 5] = ["vec", "text", "list", "map", "other"];

fuzz_target!(|input: Input| {
    let domain = conduit_fuzz::domain();
    let managed =
        ManagedSegment::create_with(Segment::builder("managed").domain(&domain).size(16 << 10))
            .expect("create managed segment");
    let _ = managed.segment().unlink();
    {
        let mut m = managed.lock().expect("fresh lock");
        let v = m.find_or_construct("vec", ShmVec::<u64>::new).unwrap();
        let (vec, mut ctx) = m.get(v).unwrap();
        vec.extend_from_slice(&mut ctx, &[1, 2, 3, 4, 5]).unwrap();
        let s = m.find_or_construct("text", ShmString::new).unwrap();
        let (text, mut ctx) = m.get(s).unwrap();
        text.push_str(&mut ctx, "managed").unwrap();
        let l = m.find_or_construct("list", ShmList::<u64>::new).unwrap();
        let (list, mut ctx) = m.get(l).unwrap();
        list.push_back(&mut ctx, 7).unwrap();
        list.push_back(&mut ctx, 8).unwrap();
        let h = m
            .find_or_construct("map", ShmHashMap::<u64, u64>::new)
            .unwrap();
        let (map, mut ctx) = m.get(h).unwrap();
        map.insert(&mut ctx, 1, 10).unwrap();
    }
    // Data area: magic at 0, the lock word and owner record at 64..80.
    apply(
        &managed.segment().data(),
        0,
        16 << 10,
        64..80,
        &input.patches,
    );

    for op in input.ops.iter().take(32) {
        if let Op::Reopen = op {
            if let Ok(again) = managed.segment().map_again()
                && let Ok(m2) = ManagedSegment::from_segment(again)
                && let Ok(g) = m2.lock()
            {
                let _ = g.names();
            }
            continue;
        }
        let Ok(mut m) = managed.lock() else { continue };
        match *op {
            Op::Find(i) => {
                let name = NAMES[usize::from(i) % NAMES.len()];
                let _ = m.find::<ShmVec<u64>>(name);
                let _ = m.find::<u64>(name);
            }
            Op::Construct(i) => {
                let _ = m.find_or_construct(NAMES[usize::from(i) % NAMES.len()], || 5u64);
            }
            Op::Destroy(i) => drop(m.destroy(NAMES[usize::from(i) % NAMES.len()])),
            Op::Names => drop(m.names()),
            Op::Stats => drop(m.stats()),
            Op::UseVec(x) => {
                if let Ok(Some(v)) = m.find::<ShmVec<u64>>("vec")
                    && let Ok((vec, mut ctx)) = m.get(v)
                {
                    let _ = vec.as_slice(ctx.view());
                    let _ = vec.push(&mut ctx, x);
                }
            }
            Op::UseText => {
                if let Ok(Some(s)) = m.find::<ShmString>("text")
                    && let Ok((text, mut ctx)) = m.get(s)
                {
                    let _ = text.as_str(ctx.view());
                    let _ = text.push_str(&mut ctx, "!");
                }
            }
            Op::UseList(x) => {
                if let Ok(Some(l)) = m.find::<ShmList<u64>>("list")
                    && let Ok((list, mut ctx)) = m.get(l)
                {
                    std::hint::black_box(list.iter(ctx.view()).count());
                    let _ = list.push_front(&mut ctx, x);
                    let _ = list.pop_back(&mut ctx);
                }
            }
            Op::UseMap(x) => {
                if let Ok(Some(h)) = m.find::<ShmHashMap<u64, u64>>("map")
                    && let Ok((map, mut ctx)) = m.get(h)
                {
                    let _ = map.get(ctx.view(), &x);
                    let _ = map.insert(&mut ctx, x, x);
                    let _ = map.remove(&mut ctx, &(x / 2));
                }
            }
            Op::Reopen => {}
        }
    }
});
