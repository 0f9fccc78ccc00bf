//! Every container's read and write paths over corrupted offsets, lengths
//! and capacities: ShmVec, ShmString, ShmList, ShmHashMap and ShmBox with
//! elements, in a heap, patched (container headers, storage, heap), then
//! read and changed.
#![no_main]

use arbitrary::Arbitrary;
use conduit::shm::{
    Context, HeapState, Region, ShmBox, ShmHashMap, ShmList, ShmString, ShmVec, View,
};
use conduit_fuzz::{Buffer, Patch, apply};
use libfuzzer_sys::fuzz_target;

const LEN: usize = 32 << 10;

#[repr(C)]
struct Root {
    vec: ShmVec<u64>,
    text: ShmString,
    list: ShmList<u64>,
    map: ShmHashMap<u32, u64>,
    boxed: ShmBox<[u64; 3]>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    VecPush(u64),
    VecPop,
    VecRead(u16),
    VecReserve(u16),
    VecExtend(u8),
    StrPush(u8),
    StrRead,
    ListPushBack(u64),
    ListPushFront(u64),
    ListPopFront,
    ListPopBack,
    ListRead,
    ListRemove(u64),
    MapInsert(u32, u64),
    MapRemove(u32),
    MapRead(u32),
    BoxRead,
    BoxReplace(u64),
    BoxTake,
    Free(u8),
    Verify,
}

#[derive(Arbitrary, Debug)]
struct Input {
    elements: u8,
    patches: Vec<Patch>,
    /// Patches to the container headers only (denser there).
    root_patches: Vec<Patch>,
    ops: Vec<Op>,
}

/// The heap state and the root, disjoint parts of the buffer.
///
/// # Safety
///
/// Nothing else may reference the state or the root while the results
/// live.
unsafe fn parts<'a>(region: &Region, root_off: usize) -> (&'a mut HeapState, &'a mut Root) {
    let state = region.resolve::<HeapState>(0).expect("state inside");
    let root = region.resolve::<Root>(root_off).expect("root inside");
    // SAFETY: disjoint, in bounds, aligned; both types are valid for
    // any bytes (integers and offsets, validated on use); exclusive by
    // the caller's promise.
    unsafe { (&mut *state.as_ptr(), &mut *root.as_ptr()) }
}

fuzz_target!(|input: Input| {
    let mut buf = Buffer::new(LEN);
    let region = buf.region();
    let root_off = size_of::<HeapState>().next_multiple_of(64);
    let heap_off = (root_off + size_of::<Root>()).next_multiple_of(64);
    {
        // SAFETY: no other reference exists.
        let (heap, root) = unsafe { parts(&region, root_off) };
        heap.init(&region, heap_off, LEN - heap_off)
            .expect("heap fits");
        // Zeroed memory is not an empty list, map or box (their null is
        // u64::MAX).
        // SAFETY: `root` points at a Root-sized, aligned area.
        unsafe {
            std::ptr::write(
                root,
                Root {
                    vec: ShmVec::new(),
                    text: ShmString::new(),
                    list: ShmList::new(),
                    map: ShmHashMap::new(),
                    boxed: ShmBox::empty(),
                },
            )
        };
        let mut ctx = Context::new(region, heap);
        for i in 0..u64::from(input.elements % 24) {
            root.vec.push(&mut ctx, i).expect("room");
            root.text.push_str(&mut ctx, "ab").expect("room");
            root.list.push_back(&mut ctx, i).expect("room");
            root.map.insert(&mut ctx, i as u32, i).expect("room");
        }
        root.boxed = ShmBox::new(&mut ctx, [1, 2, 3]).expect("room");
    }
    apply(
        &region,
        root_off,
        size_of::<Root>(),
        0..0,
        &input.root_patches,
    );
    apply(&region, 0, LEN, 0..0, &input.patches);

    // SAFETY: the patches above are done; nothing else references them.
    let (heap, root) = unsafe { parts(&region, root_off) };
    let mut ctx = Context::new(region, heap);
    for op in input.ops.iter().take(64) {
        let view: View = ctx.view();
        match *op {
            Op::VecPush(v) => drop(root.vec.push(&mut ctx, v)),
            Op::VecPop => drop(root.vec.pop(view)),
            Op::VecRead(i) => {
                if let Ok(s) = root.vec.as_slice(view) {
                    std::hint::black_box(s.iter().fold(0u64, |a, &x| a.wrapping_add(x)));
                }
                let _ = root.vec.get(view, usize::from(i));
                if let Ok(it) = root.vec.iter(view) {
                    std::hint::black_box(it.count());
                }
            }
            Op::VecReserve(n) => drop(root.vec.reserve(&mut ctx, usize::from(n))),
            Op::VecExtend(n) => {
                let more: Vec<u64> = (0..u64::from(n % 32)).collect();
                let _ = root.vec.extend_from_slice(&mut ctx, &more);
            }
            Op::StrPush(n) => drop(
                root.text
                    .push_str(&mut ctx, &"x".repeat(usize::from(n % 40))),
            ),
            Op::StrRead => {
                let _ = root.text.as_bytes(view);
                let _ = root.text.as_str(view);
            }
            Op::ListPushBack(v) => drop(root.list.push_back(&mut ctx, v)),
            Op::ListPushFront(v) => drop(root.list.push_front(&mut ctx, v)),
            Op::ListPopFront => drop(root.list.pop_front(&mut ctx)),
            Op::ListPopBack => drop(root.list.pop_back(&mut ctx)),
            Op::ListRead => {
                std::hint::black_box(root.list.iter(view).count());
                std::hint::black_box(root.list.iter_rev(view).count());
            }
            Op::ListRemove(v) => {
                if let Ok(Some(id)) = root.list.find(view, |&x| x == v) {
                    let _ = root.list.remove(&mut ctx, id);
                }
            }
            Op::MapInsert(k, v) => drop(root.map.insert(&mut ctx, k, v)),
            Op::MapRemove(k) => drop(root.map.remove(&mut ctx, &k)),
            Op::MapRead(k) => {
                let _ = root.map.get(view, &k);
                let _ = root.map.contains_key(view, &k);
                if let Ok(it) = root.map.iter(view) {
                    std::hint::black_box(it.count());
                }
            }
            Op::BoxRead => drop(root.boxed.get(view)),
            Op::BoxReplace(v) => {
                let _ = root.boxed.free(&mut ctx);
                if let Ok(b) = ShmBox::new(&mut ctx, [v; 3]) {
                    root.boxed = b;
                }
            }
            Op::BoxTake => drop(root.boxed.take(&mut ctx)),
            Op::Free(which) => drop(match which % 5 {
                0 => root.vec.free(&mut ctx),
                1 => root.text.free(&mut ctx),
                2 => root.list.free(&mut ctx),
                3 => root.map.free(&mut ctx),
                _ => root.boxed.free(&mut ctx),
            }),
            Op::Verify => drop(ctx.heap.verify(&ctx.region)),
        }
    }
});
