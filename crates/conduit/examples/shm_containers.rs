//! Relocatable containers in shared memory: build a list, a string and a
//! hash map through one mapping of an anonymous (memfd) segment, read them
//! through a second mapping at a different address, and print the heap's
//! statistics.
//!
//! `cargo run --example shm_containers`

use conduit::shm::{Context, HeapState, Region, Segment, ShmHashMap, ShmList, ShmString};

/// Size of the segment's data area.
const SIZE: usize = 1 << 20;
/// Offsets in the data area: the heap state at 0, the root, the heap.
const ROOT: usize = 8192;
const HEAP_START: usize = 16384;

/// The well-known object at a fixed offset.
#[repr(C)]
struct Root {
    names: ShmList<u64>,
    greeting: ShmString,
    squares: ShmHashMap<u64, u64>,
}

/// The heap state (offset 0) and the root (offset ROOT) of `region`.
fn parts<'a>(region: Region) -> (&'a mut HeapState, &'a mut Root) {
    let heap = region.resolve::<HeapState>(0).expect("state fits");
    let root = region.resolve::<Root>(ROOT).expect("root fits");
    // SAFETY: disjoint, inside the mapping, valid for any bytes (zeroed or
    // written below); each is used through one reference at a time.
    unsafe { (&mut *heap.as_ptr(), &mut *root.as_ptr()) }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A memfd: no name in /dev/shm, freed with its last descriptor and
    // mapping. `map_again` maps the same memory a second time.
    let first = Segment::builder("containers-example")
        .size(SIZE)
        .create_anonymous()?;
    let second = first.map_again()?;
    let (a, b) = (first.data(), second.data());
    println!("mapping A at {:p}, mapping B at {:p}", a.base(), b.base());

    // Build through A.
    let (heap, root) = parts(a);
    heap.init(&a, HEAP_START, a.len() - HEAP_START)?;
    let mut ctx = Context::new(a, heap);
    *root = Root {
        names: ShmList::new(),
        greeting: ShmString::new(),
        squares: ShmHashMap::new(),
    };
    for i in 1..=5 {
        root.names.push_back(&mut ctx, i * 100)?;
        root.squares.insert(&mut ctx, i, i * i)?;
    }
    root.greeting.push_str(&mut ctx, "hello through offsets")?;

    // Read through B: every reference is an offset, so it just works.
    let (heap, root) = parts(b);
    let ctx = Context::new(b, heap);
    let names: Vec<u64> = root
        .names
        .iter(&ctx)
        .map(|r| r.copied())
        .collect::<Result<_, _>>()?;
    let back: Vec<u64> = root
        .names
        .iter_rev(&ctx)
        .map(|r| r.copied())
        .collect::<Result<_, _>>()?;
    println!("list via B:      {names:?} (reversed {back:?})");
    println!("string via B:    {:?}", root.greeting.as_str(&ctx)?);
    println!("map via B:       3 -> {:?}", root.squares.get(&ctx, &3)?);
    let stats = ctx.heap.stats(&b)?;
    println!(
        "heap: {} allocations, {} B used, {} B free, largest free block {} B",
        stats.allocations, stats.used_bytes, stats.free_bytes, stats.largest_free
    );
    Ok(())
}
