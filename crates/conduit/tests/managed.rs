//! Managed segments across processes: named objects, containers traversed
//! through other mappings and from other processes, a holder killed with
//! the lock.

mod common;

use std::time::Duration;

use conduit::shm::{ManagedError, ManagedSegment, Segment, ShmList, ShmString, ShmVec};

fn open(domain: &str) -> ManagedSegment {
    ManagedSegment::open_with(Segment::builder("m").domain(domain)).unwrap()
}

fn dispatch(role: &str, args: &[String]) {
    let domain = &args[0];
    match role {
        // Reads the list (through its own mapping), appends, reports.
        "append" => {
            let managed = open(domain);
            let mut m = managed.lock().unwrap();
            let list = m.find::<ShmList<u64>>("list").unwrap().unwrap();
            let (list, mut ctx) = m.get(list).unwrap();
            let seen: Vec<u64> = list.iter(ctx.view()).map(|r| *r.unwrap()).collect();
            list.push_back(&mut ctx, 100).unwrap();
            println!("{seen:?}");
        }
        // Takes the lock, half-updates, then waits to be killed.
        "hold" => {
            let managed = open(domain);
            let mut m = managed.lock().unwrap();
            let v = m.find_or_construct("vec", ShmVec::<u32>::new).unwrap();
            let (v, mut ctx) = m.get(v).unwrap();
            v.push(&mut ctx, 7).unwrap();
            println!("holding");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

child_entry!(dispatch);

fn assert_clean(domain: &str) {
    let left = common::shm_objects_containing(&format!("conduit.{domain}."));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn named_objects_find_construct_destroy() {
    let d = common::unique("t");
    let managed =
        ManagedSegment::create_with(Segment::builder("m").domain(&d).size(1 << 16)).unwrap();
    let mut m = managed.lock().unwrap();
    assert!(!m.recovered());
    let a = m.find_or_construct("answer", || 42u64).unwrap();
    let again = m.find_or_construct("answer", || 0u64).unwrap();
    assert_eq!(a, again, "second call finds the first object");
    assert_eq!(*m.get(a).unwrap().0, 42);
    assert!(matches!(
        m.find::<u32>("answer"),
        Err(ManagedError::TypeMismatch { .. })
    ));
    assert!(matches!(
        m.find::<u64>(""),
        Err(ManagedError::InvalidName { .. })
    ));
    assert!(matches!(
        m.find::<u64>(&"n".repeat(64)),
        Err(ManagedError::InvalidName { .. })
    ));
    let s = m.find_or_construct("greeting", ShmString::new).unwrap();
    {
        let (s, mut ctx) = m.get(s).unwrap();
        s.push_str(&mut ctx, "hello").unwrap();
    }
    assert_eq!(m.names().unwrap(), vec!["answer", "greeting"]);
    let used = m.stats().unwrap().used_bytes;
    assert!(m.destroy("answer").unwrap());
    assert!(!m.destroy("answer").unwrap());
    assert!(m.find::<u64>("answer").unwrap().is_none());
    assert!(m.stats().unwrap().used_bytes < used);
    // A forged offset is refused.
    assert!(matches!(
        m.get(conduit::shm::Offset::<u64>::new(8)),
        Err(ManagedError::NotAnObject { .. })
    ));
    drop(m);
    managed.segment().unlink().unwrap();
    assert_clean(&d);
}

#[test]
fn list_survives_another_mapping_and_another_process() {
    let _w = common::watchdog(Duration::from_secs(30));
    let d = common::unique("t");
    let managed =
        ManagedSegment::create_with(Segment::builder("m").domain(&d).size(1 << 16)).unwrap();
    {
        let mut m = managed.lock().unwrap();
        let list = m.find_or_construct("list", ShmList::<u64>::new).unwrap();
        let (list, mut ctx) = m.get(list).unwrap();
        for i in 1..=5 {
            list.push_back(&mut ctx, i).unwrap();
        }
    }
    // Same process, second mapping at another address.
    let second = open(&d);
    assert_ne!(
        second.segment().data().base(),
        managed.segment().data().base()
    );
    {
        let mut m = second.lock().unwrap();
        let list = m.find::<ShmList<u64>>("list").unwrap().unwrap();
        let (list, ctx) = m.get(list).unwrap();
        let back: Vec<u64> = list.iter_rev(ctx.view()).map(|r| *r.unwrap()).collect();
        assert_eq!(back, vec![5, 4, 3, 2, 1]);
    }
    // Another process.
    let mut child = common::spawn_child("append", &[&d]);
    assert_eq!(common::read_line(&mut child), "[1, 2, 3, 4, 5]");
    assert!(child.wait().unwrap().success());
    let mut m = managed.lock().unwrap();
    let list = m.find::<ShmList<u64>>("list").unwrap().unwrap();
    let (list, ctx) = m.get(list).unwrap();
    let all: Vec<u64> = list.iter(ctx.view()).map(|r| *r.unwrap()).collect();
    assert_eq!(all, vec![1, 2, 3, 4, 5, 100]);
    drop(m);
    managed.segment().unlink().unwrap();
    assert_clean(&d);
}

#[test]
fn holder_killed_with_the_lock_is_recovered() {
    let _w = common::watchdog(Duration::from_secs(30));
    let d = common::unique("t");
    let managed =
        ManagedSegment::create_with(Segment::builder("m").domain(&d).size(1 << 16)).unwrap();
    let mut child = common::spawn_child("hold", &[&d]);
    assert_eq!(common::read_line(&mut child), "holding");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut m = managed.lock().unwrap();
    assert!(m.recovered(), "the next locker is told the holder died");
    let v = m.find::<ShmVec<u32>>("vec").unwrap().unwrap();
    let (v, ctx) = m.get(v).unwrap();
    assert_eq!(v.as_slice(ctx.view()).unwrap(), &[7]);
    drop(m);
    // Back to normal afterwards.
    assert!(!managed.lock().unwrap().recovered());
    managed.segment().unlink().unwrap();
    assert_clean(&d);
}

#[test]
fn plain_segment_is_not_managed() {
    let d = common::unique("t");
    let seg = Segment::builder("plain")
        .domain(&d)
        .size(1 << 12)
        .create()
        .unwrap();
    let again = Segment::builder("plain").domain(&d).open().unwrap();
    assert!(matches!(
        ManagedSegment::from_segment(again),
        Err(ManagedError::NotManaged { .. })
    ));
    // Opening with the managed fingerprint fails on the header already.
    assert!(matches!(
        ManagedSegment::open_with(Segment::builder("plain").domain(&d)),
        Err(ManagedError::Open(
            conduit::shm::OpenError::FingerprintMismatch { .. }
        ))
    ));
    seg.unlink().unwrap();
    assert_clean(&d);
}
