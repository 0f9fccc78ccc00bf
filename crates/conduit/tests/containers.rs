//! Relocatable containers in real shared memory: why pointers fail and
//! offsets work, across two mappings in one process and across processes.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use common::os::{self, Mapping};
use conduit::shm::{
    ContainerError, Context, HeapState, Region, ShmHashMap, ShmList, ShmString, ShmVec,
};

child_entry!(dispatch);

const SIZE: usize = 1 << 20;
const ROOT: usize = 8192;
const HEAP_START: usize = 16384;
const LIST_LEN: u64 = 100;
const VEC_LEN: u32 = 1000;
const MAP_LEN: u64 = 200;

/// The well-known object at a fixed offset: the roots of every container.
#[repr(C)]
struct Root {
    list: ShmList<u64>,
    vec: ShmVec<u32>,
    string: ShmString,
    map: ShmHashMap<u64, u64>,
    /// The *address* of the first list node in the creator's mapping: what
    /// a naive pointer-based container would have stored.
    raw_address: u64,
}

fn region_of(mapping: &Mapping) -> Region {
    // SAFETY: the mapping stays mapped for as long as the caller keeps it,
    // and every test drops regions before their mapping.
    unsafe {
        Region::new(
            core::ptr::NonNull::new(mapping.as_ptr()).unwrap(),
            mapping.len(),
        )
    }
}

/// The heap state and the root, as disjoint references into `region`.
fn parts<'a>(region: Region) -> (&'a mut HeapState, &'a mut Root) {
    let heap = region.resolve::<HeapState>(0).unwrap().as_ptr();
    let root = region.resolve::<Root>(ROOT).unwrap().as_ptr();
    assert!(size_of::<HeapState>() <= ROOT && ROOT + size_of::<Root>() <= HEAP_START);
    // SAFETY: both lie in the mapping, do not overlap each other or the
    // heap range, are valid for every bit pattern (zeroed or written by
    // `build`), and the test holds no other reference to them.
    unsafe { (&mut *heap, &mut *root) }
}

fn build(region: &Region) {
    let (heap, root) = parts(*region);
    heap.init(region, HEAP_START, region.len() - HEAP_START)
        .unwrap();
    let mut ctx = Context::new(*region, heap);
    root.list = ShmList::new();
    root.vec = ShmVec::new();
    root.string = ShmString::new();
    root.map = ShmHashMap::new();
    let first = root.list.push_back(&mut ctx, 0).unwrap();
    for i in 1..LIST_LEN {
        root.list.push_back(&mut ctx, i * i).unwrap();
    }
    for i in 0..VEC_LEN {
        root.vec.push(&mut ctx, i ^ 0x5a5a).unwrap();
    }
    root.string
        .push_str(&mut ctx, "hello from mapping A")
        .unwrap();
    for i in 0..MAP_LEN {
        root.map.insert(&mut ctx, i, i * 7).unwrap();
    }
    root.raw_address = region.base().as_ptr() as u64 + first.raw();
}

/// Walks every container through `region` and checks its contents.
fn check(region: &Region) -> Result<String, ContainerError> {
    let (_, root) = parts(*region);
    let fwd: Vec<u64> = root
        .list
        .iter(region)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .copied()
        .collect();
    assert_eq!(fwd, (0..LIST_LEN).map(|i| i * i).collect::<Vec<_>>());
    let back: Vec<u64> = root
        .list
        .iter_rev(region)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .copied()
        .collect();
    assert!(back.iter().rev().eq(fwd.iter()));
    let v = root.vec.as_slice(region)?;
    assert!(v.iter().copied().eq((0..VEC_LEN).map(|i| i ^ 0x5a5a)));
    for i in 0..MAP_LEN {
        assert_eq!(root.map.get(region, &i)?, Some(&(i * 7)));
    }
    assert_eq!(root.map.iter(region)?.count() as u64, MAP_LEN);
    Ok(format!(
        "list={} vec={} map={} string={}",
        fwd.len(),
        v.len(),
        root.map.len(),
        root.string.as_str(region)?
    ))
}

fn new_memfd() -> OwnedFd {
    let fd = os::memfd("conduit-test-containers");
    os::allocate(&fd, SIZE as u64);
    fd
}

#[test]
fn offsets_survive_a_second_mapping_where_pointers_do_not() {
    let _w = common::watchdog(Duration::from_secs(30));
    let fd = new_memfd();
    let a = Mapping::shared(&fd, SIZE).unwrap();
    let b = Mapping::shared(&fd, SIZE).unwrap();
    assert_ne!(a.as_ptr(), b.as_ptr(), "two mappings, two base addresses");
    let (ra, rb) = (region_of(&a), region_of(&b));
    build(&ra);
    let expect = check(&ra).unwrap();
    assert_eq!(
        check(&rb).unwrap(),
        expect,
        "offsets resolve in the other mapping"
    );

    // The address stored by mapping A means nothing in mapping B: it is not
    // even inside B (dereferencing it there would read A's memory, or, in
    // another process, unmapped memory or anything else).
    let (_, root) = parts(rb);
    let raw = root.raw_address as *const u8;
    assert!(ra.offset_of(raw).is_ok());
    assert!(rb.offset_of(raw).is_err());

    // Changes through B are seen through A; A can go away entirely.
    {
        let (heap, root) = parts(rb);
        let mut ctx = Context::new(rb, heap);
        root.string.push_str(&mut ctx, ", edited in B").unwrap();
        root.list.push_front(&mut ctx, 77).unwrap();
    }
    let (_, root_a) = parts(ra);
    assert_eq!(
        root_a.string.as_str(&ra).unwrap(),
        "hello from mapping A, edited in B"
    );
    assert_eq!(root_a.list.iter(&ra).next().unwrap().unwrap(), &77);
    drop(a);
    let (heap, root) = parts(rb);
    let mut ctx = Context::new(rb, heap);
    assert_eq!(root.list.pop_front(&mut ctx).unwrap(), Some(77));
    let stats = ctx.heap.verify(&rb).unwrap();
    assert!(stats.allocations > 0);
    assert!(stats.used_bytes + stats.free_bytes == stats.capacity);
}

fn dispatch(role: &str, args: &[String]) {
    // args[0]: "proc:<path>" or "shm:<name>"
    let file: OwnedFd = match args[0].split_once(':').unwrap() {
        ("proc", path) => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap()
            .into(),
        ("shm", name) => os::shm_open(name).unwrap(),
        _ => panic!("bad arg"),
    };
    let map = Mapping::shared(&file, SIZE).unwrap();
    let region = region_of(&map);
    match role {
        "check_and_append" => {
            println!("checked {}", check(&region).unwrap());
            let (heap, root) = parts(region);
            let mut ctx = Context::new(region, heap);
            root.list.push_back(&mut ctx, 4242).unwrap();
            root.string.push_str(&mut ctx, " + child").unwrap();
            root.map.insert(&mut ctx, 9999, 1).unwrap();
            root.vec.push(&mut ctx, 31337).unwrap();
            println!("appended");
        }
        "corrupt" => {
            // A hostile writer: the list's recorded length and the vector's
            // storage offset become garbage, the string gets invalid UTF-8.
            let root_off = ROOT as u64;
            let poke = |off: u64, v: u64| {
                let p = region.resolve::<u64>(off as usize).unwrap();
                // SAFETY: aligned, inside the mapping, no live reference.
                unsafe { p.as_ptr().write(v) }
            };
            let list_len_off = root_off + 16;
            let vec_data_off = root_off + size_of::<ShmList<u64>>() as u64;
            poke(list_len_off, 3);
            poke(vec_data_off, u64::MAX - 100);
            let (heap, root) = parts(region);
            let mut ctx = Context::new(region, heap);
            root.string.as_mut_vec().push(&mut ctx, 0xff).unwrap();
            println!("corrupted");
        }
        _ => panic!("unknown role {role}"),
    }
}

/// Runs a child to completion and returns its report lines (the child
/// exits when done, so reading stdout to the end is the synchronisation).
fn run_child(role: &str, arg: &str) -> Vec<String> {
    let out = common::spawn_child(role, &[arg])
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "child {role} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // The harness may print "test child_entry ... " before a report.
        .filter_map(|l| {
            ["checked ", "appended", "corrupted"]
                .iter()
                .find_map(|m| l.find(m).map(|i| l[i..].to_owned()))
        })
        .collect()
}

fn cross_process(arg: &str, map: &Mapping) {
    let region = region_of(map);
    build(&region);
    let expect = check(&region).unwrap();
    let lines = run_child("check_and_append", arg);
    assert!(lines.contains(&format!("checked {expect}")), "{lines:?}");
    assert!(lines.contains(&"appended".to_owned()));
    let (heap, root) = parts(region);
    assert_eq!(root.list.iter_rev(&region).next().unwrap().unwrap(), &4242);
    assert_eq!(root.list.len() as u64, LIST_LEN + 1);
    assert_eq!(
        root.string.as_str(&region).unwrap(),
        "hello from mapping A + child"
    );
    assert_eq!(root.map.get(&region, &9999).unwrap(), Some(&1));
    assert_eq!(root.vec.as_slice(&region).unwrap().last(), Some(&31337));
    heap.verify(&region).unwrap();

    let lines = run_child("corrupt", arg);
    assert_eq!(lines, ["corrupted"]);
    let (heap, root) = parts(region);
    let last = root.list.iter(&region).last().unwrap();
    assert!(
        matches!(last, Err(ContainerError::ListTooLong { len: 3 })),
        "{last:?}"
    );
    assert!(matches!(
        root.vec.as_slice(&region),
        Err(ContainerError::BadOffset { .. })
    ));
    assert!(matches!(
        root.string.as_str(&region),
        Err(ContainerError::InvalidUtf8(_))
    ));
    // The heap itself is intact: the corruption was in container headers.
    heap.verify(&region).unwrap();
}

#[test]
fn child_process_reads_and_extends_containers_through_proc_fd() {
    let _w = common::watchdog(Duration::from_secs(60));
    let fd = new_memfd();
    let map = Mapping::shared(&fd, SIZE).unwrap();
    let arg = format!("proc:/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd());
    cross_process(&arg, &map);
}

#[test]
fn child_process_reads_and_extends_containers_through_posix_shm() {
    let _w = common::watchdog(Duration::from_secs(60));
    let name = format!("/{}", common::unique("conduit.test.containers"));
    let fd = os::shm_create(&name, 0o600);
    struct Unlink<'a>(&'a str);
    impl Drop for Unlink<'_> {
        fn drop(&mut self) {
            let _ = os::shm_unlink(self.0);
        }
    }
    let _unlink = Unlink(&name);
    os::allocate(&fd, SIZE as u64);
    let map = Mapping::shared(&fd, SIZE).unwrap();
    cross_process(&format!("shm:{name}"), &map);
    drop(_unlink);
    assert!(common::shm_objects_containing(&name[1..]).is_empty());
}
