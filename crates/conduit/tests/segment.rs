//! Shared-memory segments across real processes: creation races, crashes
//! during creation, corrupted headers, read-only mappings, unlink
//! semantics, space exhaustion.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use conduit::shm::{
    CreateError, HEADER_SIZE, OpenError, OpenOrCreateError, Origin, Resource, ResourceExhausted,
    Segment,
};

fn dispatch(role: &str, args: &[String]) {
    let domain = &args[0];
    let name = &args[1];
    match role {
        // Waits for a line on stdin, then races open_or_create.
        "race" => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            let (seg, origin) = Segment::builder(name)
                .domain(domain)
                .size(4096)
                .init(|r| {
                    // Make the creation window wide enough to matter.
                    std::thread::sleep(Duration::from_millis(20));
                    let p = r.resolve::<AtomicU64>(0).unwrap();
                    // SAFETY: in bounds and aligned (checked by resolve).
                    unsafe { p.as_ref() }.store(0xC0FFEE, Ordering::Relaxed);
                    Ok(())
                })
                .open_or_create()
                .unwrap();
            let value = first_word(&seg).load(Ordering::Relaxed);
            println!(
                "{} {value:x}",
                if origin == Origin::Created {
                    "created"
                } else {
                    "opened"
                }
            );
        }
        // Creates and hangs inside the initialiser until killed.
        "hang_in_init" => {
            let _ = Segment::builder(name)
                .domain(domain)
                .size(4096)
                .init(|_| {
                    println!("initializing");
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                })
                .create();
        }
        // Opens, reports the first word, then reports it again on request.
        "reader" => {
            let seg = Segment::builder(name)
                .domain(domain)
                .read_only()
                .open()
                .unwrap();
            let word = first_word(&seg);
            println!("{:x}", word.load(Ordering::Acquire));
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).unwrap() > 0 {
                println!("{:x}", word.load(Ordering::Acquire));
                line.clear();
            }
        }
        // Opens read-only and writes: must die of SIGSEGV.
        "write_read_only" => {
            let seg = Segment::builder(name)
                .domain(domain)
                .read_only()
                .open()
                .unwrap();
            println!("opened");
            let p = seg.data().base().as_ptr();
            // SAFETY: deliberately writing to a PROT_READ mapping to show
            // that the kernel stops it; the process dies here.
            unsafe { core::ptr::write_volatile(p, 1u8) };
            println!("wrote");
        }
        // Drops root privileges and tries to open a 0600 root segment.
        "open_as_nobody" => {
            // SAFETY: plain setuid call in a single-threaded child.
            let rc = unsafe { libc::setuid(65534) };
            assert_eq!(rc, 0);
            match Segment::builder(name).domain(domain).owner(0).open() {
                Err(OpenError::PermissionDenied { .. }) => println!("denied"),
                other => println!("unexpected {other:?}"),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

child_entry!(dispatch);

fn first_word(seg: &Segment) -> &AtomicU64 {
    let p = seg.data().resolve::<AtomicU64>(0).unwrap();
    // SAFETY: resolve checked bounds and alignment; the mapping lives as
    // long as `seg`, and AtomicU64 is valid for any bits.
    unsafe { p.as_ref() }
}

fn domain() -> String {
    common::unique("t")
}

fn assert_clean(domain: &str) {
    let left = common::shm_objects_containing(&format!("conduit.{domain}."));
    assert!(left.is_empty(), "left behind in /dev/shm: {left:?}");
}

#[test]
fn create_open_and_share_between_mappings() {
    let _w = common::watchdog(Duration::from_secs(30));
    let d = domain();
    let a = Segment::builder("shared")
        .domain(&d)
        .size(8192)
        .create()
        .unwrap();
    assert!(a.len() >= 8192 + HEADER_SIZE);
    assert_eq!(a.name(), Some(format!("/conduit.{d}.shared").as_str()));
    let b = Segment::builder("shared").domain(&d).open().unwrap();
    let c = a.map_again().unwrap();
    assert_ne!(a.data().base(), b.data().base());
    assert_ne!(a.data().base(), c.data().base());
    first_word(&a).store(42, Ordering::Release);
    assert_eq!(first_word(&b).load(Ordering::Acquire), 42);
    assert_eq!(first_word(&c).load(Ordering::Acquire), 42);
    // Creating again fails.
    assert!(matches!(
        Segment::builder("shared").domain(&d).size(8).create(),
        Err(CreateError::AlreadyExists { .. })
    ));
    a.unlink().unwrap();
    assert_clean(&d);
}

#[test]
fn invalid_names_are_errors() {
    for bad in ["", "a/b", ".hidden", "sp ace", &"x".repeat(181), "ü"] {
        assert!(
            matches!(
                Segment::builder(bad).domain("t").size(1).create(),
                Err(CreateError::InvalidName(_))
            ),
            "{bad:?}"
        );
        assert!(matches!(
            Segment::builder(bad).domain("t").open(),
            Err(OpenError::InvalidName(_))
        ));
    }
    assert!(matches!(
        Segment::builder("ok").domain("bad.domain").open(),
        Err(OpenError::InvalidName(_))
    ));
}

#[test]
fn open_missing_is_not_found() {
    let d = domain();
    assert!(matches!(
        Segment::builder("nothing").domain(&d).open(),
        Err(OpenError::NotFound { .. })
    ));
}

#[test]
fn many_processes_open_or_create_exactly_one_creates() {
    let _w = common::watchdog(Duration::from_secs(60));
    let d = domain();
    let n = 8;
    let mut children: Vec<_> = (0..n)
        .map(|_| {
            common::child_command("race", &[&d, "race"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in &mut children {
        c.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    let mut created = 0;
    for c in &mut children {
        let line = common::read_line(c);
        let (what, value) = line.split_once(' ').expect(&line);
        // Openers only ever see the initialised segment.
        assert_eq!(value, "c0ffee", "{line}");
        if what == "created" {
            created += 1;
        } else {
            assert_eq!(what, "opened");
        }
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(created, 1);
    Segment::remove(&d, "race").unwrap();
    assert_clean(&d);
}

#[test]
fn creator_killed_during_creation_is_abandoned_and_recovered() {
    let _w = common::watchdog(Duration::from_secs(30));
    let d = domain();
    let mut child = common::spawn_child("hang_in_init", &[&d, "victim"]);
    assert_eq!(common::read_line(&mut child), "initializing");
    // Alive creator: openers time out.
    match Segment::builder("victim")
        .domain(&d)
        .open_timeout(Duration::from_millis(300))
        .open()
    {
        Err(OpenError::CreationTimedOut { .. }) => {}
        other => panic!("expected CreationTimedOut, got {other:?}"),
    }
    child.kill().unwrap();
    child.wait().unwrap();
    match Segment::builder("victim").domain(&d).open() {
        Err(OpenError::Abandoned { creator_pid, .. }) => assert_eq!(creator_pid, child.id()),
        other => panic!("expected Abandoned, got {other:?}"),
    }
    // open_or_create removes the corpse and creates afresh.
    let (seg, origin) = Segment::builder("victim")
        .domain(&d)
        .size(64)
        .open_or_create()
        .unwrap();
    assert_eq!(origin, Origin::Created);
    seg.unlink().unwrap();
    assert_clean(&d);
}

#[test]
fn explicit_remove_abandoned_refuses_live_segments() {
    let d = domain();
    let seg = Segment::builder("live")
        .domain(&d)
        .size(64)
        .create()
        .unwrap();
    assert!(matches!(
        Segment::builder("live").domain(&d).remove_abandoned(),
        Err(conduit::shm::RemoveError::InUse { .. })
    ));
    seg.unlink().unwrap();
    assert_clean(&d);
}

fn corrupt_and_open(field_offset: usize, value: u64, width: usize) -> Result<Segment, OpenError> {
    let d = domain();
    let seg = Segment::builder("corrupt")
        .domain(&d)
        .size(4096)
        .fingerprint(7)
        .create()
        .unwrap();
    let whole = seg.whole();
    let p = whole.base().as_ptr();
    // SAFETY: the offsets used are inside the 128-byte header of a mapping
    // we own; the tests write plain bytes to simulate a corrupting peer.
    unsafe {
        if width == 8 {
            core::ptr::write_volatile(p.add(field_offset).cast::<u64>(), value);
        } else {
            core::ptr::write_volatile(p.add(field_offset).cast::<u32>(), value as u32);
        }
    }
    let r = Segment::builder("corrupt").domain(&d).fingerprint(7).open();
    seg.unlink().unwrap();
    assert_clean(&d);
    r
}

#[test]
fn corrupted_headers_are_named_errors() {
    assert!(matches!(
        corrupt_and_open(0, 0xdead, 8),
        Err(OpenError::BadMagic { found: 0xdead, .. })
    ));
    assert!(matches!(
        corrupt_and_open(8, 99, 4),
        Err(OpenError::VersionMismatch { found: 99, .. })
    ));
    assert!(matches!(
        corrupt_and_open(16, 1 << 40, 8),
        Err(OpenError::Truncated { .. })
    ));
    assert!(matches!(
        corrupt_and_open(16, 4096, 8),
        Err(OpenError::SizeMismatch { .. })
    ));
    assert!(matches!(
        corrupt_and_open(24, 8, 8),
        Err(OpenError::FingerprintMismatch {
            expected: 7,
            found: 8,
            ..
        })
    ));
    assert!(matches!(
        corrupt_and_open(32, 12345, 8),
        Err(OpenError::Corrupted { .. })
    ));
    // State word garbage: a value no creator writes is a corrupted
    // header, not one abandoned half-made (that is state 0 with its
    // creator gone: creator_killed_during_creation_is_abandoned_...).
    match corrupt_and_open(12, 77, 4) {
        Err(OpenError::Corrupted { reason, .. }) => {
            assert!(reason.contains("header state word is 0x4d"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn truncated_object_is_an_error() {
    let d = domain();
    let seg = Segment::builder("trunc")
        .domain(&d)
        .size(8192)
        .create()
        .unwrap();
    common::os::truncate(seg.fd(), 4096);
    assert!(matches!(
        Segment::builder("trunc").domain(&d).open(),
        Err(OpenError::Truncated { .. })
    ));
    common::os::truncate(seg.fd(), 16);
    // Too small for a header: nobody will ever finish it.
    assert!(matches!(
        Segment::builder("trunc").domain(&d).open(),
        Err(OpenError::Abandoned { .. })
    ));
    seg.unlink().unwrap();
    assert_clean(&d);
}

#[test]
fn owner_and_mode_are_checked() {
    let d = domain();
    let seg = Segment::builder("perm")
        .domain(&d)
        .size(64)
        .mode(0o640)
        .create()
        .unwrap();
    let st = rustix::fs::fstat(seg.fd()).unwrap();
    assert_eq!(
        st.st_mode & 0o7777,
        0o640,
        "mode is exact, whatever the umask"
    );
    assert!(matches!(
        Segment::builder("perm").domain(&d).open(),
        Err(OpenError::ModeMismatch {
            expected: 0o600,
            found: 0o640,
            ..
        })
    ));
    assert!(
        Segment::builder("perm")
            .domain(&d)
            .mode(0o640)
            .open()
            .is_ok()
    );
    assert!(matches!(
        Segment::builder("perm")
            .domain(&d)
            .mode(0o640)
            .owner(st.st_uid + 1)
            .open(),
        Err(OpenError::OwnerMismatch { .. })
    ));
    seg.unlink().unwrap();
    assert_clean(&d);
}

#[test]
fn permission_denied_for_another_user() {
    if common::os::effective_uid() != 0 {
        eprintln!("skipped: needs root to switch to another uid");
        return;
    }
    let _w = common::watchdog(Duration::from_secs(30));
    let d = domain();
    let seg = Segment::builder("private")
        .domain(&d)
        .size(64)
        .create()
        .unwrap();
    let mut child = common::spawn_child("open_as_nobody", &[&d, "private"]);
    assert_eq!(common::read_line(&mut child), "denied");
    child.wait().unwrap();
    seg.unlink().unwrap();
    assert_clean(&d);
}

#[test]
fn read_only_mapping_cannot_be_written() {
    use std::os::unix::process::ExitStatusExt;
    let _w = common::watchdog(Duration::from_secs(30));
    let d = domain();
    let seg = Segment::builder("ro").domain(&d).size(64).create().unwrap();
    let mut child = common::spawn_child("write_read_only", &[&d, "ro"]);
    assert_eq!(common::read_line(&mut child), "opened");
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    assert_eq!(first_word(&seg).load(Ordering::Relaxed), 0);
    seg.unlink().unwrap();
    assert_clean(&d);
}

#[test]
fn unlink_removes_the_name_but_not_the_memory() {
    let _w = common::watchdog(Duration::from_secs(30));
    let d = domain();
    let seg = Segment::builder("u").domain(&d).size(64).create().unwrap();
    first_word(&seg).store(1, Ordering::Release);
    let mut child = common::child_command("reader", &[&d, "u"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(common::read_line(&mut child), "1");
    seg.unlink().unwrap();
    assert!(matches!(
        Segment::builder("u").domain(&d).open(),
        Err(OpenError::NotFound { .. })
    ));
    // The name is free again, for a different object.
    let fresh = Segment::builder("u").domain(&d).size(64).create().unwrap();
    first_word(&fresh).store(99, Ordering::Release);
    // The old memory is still shared between parent and child.
    first_word(&seg).store(2, Ordering::Release);
    child.stdin.as_mut().unwrap().write_all(b"again\n").unwrap();
    assert_eq!(common::read_line(&mut child), "2");
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    fresh.unlink().unwrap();
    assert_clean(&d);
}

#[test]
fn insufficient_space_is_reported_before_any_sigbus() {
    let d = domain();
    let available = conduit::limits::shared_memory_space().unwrap().free;
    let too_much = usize::try_from(available).unwrap() + (1 << 30);
    match Segment::builder("huge").domain(&d).size(too_much).create() {
        Err(
            e @ CreateError::Exhausted(ResourceExhausted {
                resource: Resource::SharedMemorySpace { .. },
                ..
            }),
        ) => {
            let text = e.to_string();
            assert!(text.contains("--shm-size"), "{text}");
        }
        other => panic!("expected Exhausted(SharedMemorySpace), got {other:?}"),
    }
    assert_clean(&d);
    // open_or_create reports it the same way.
    assert!(matches!(
        Segment::builder("huge")
            .domain(&d)
            .size(too_much)
            .open_or_create(),
        Err(OpenOrCreateError::Create(CreateError::Exhausted(
            ResourceExhausted {
                resource: Resource::SharedMemorySpace { .. },
                ..
            }
        )))
    ));
    assert_clean(&d);
}

#[test]
fn init_failure_removes_the_segment() {
    let d = domain();
    let r = Segment::builder("bad-init")
        .domain(&d)
        .size(64)
        .init(|_| Err("no".into()))
        .create();
    assert!(matches!(r, Err(CreateError::InitFailed { .. })));
    assert_clean(&d);
}

#[test]
fn anonymous_segments_pass_by_descriptor() {
    let seg = Segment::builder("anon")
        .size(4096)
        .fingerprint(5)
        .create_anonymous()
        .unwrap();
    assert_eq!(seg.name(), None);
    first_word(&seg).store(77, Ordering::Release);
    let fd = seg.fd().try_clone_to_owned().unwrap();
    let other = Segment::from_fd(fd, Some(5), false).unwrap();
    assert_eq!(first_word(&other).load(Ordering::Acquire), 77);
    let fd = seg.fd().try_clone_to_owned().unwrap();
    assert!(matches!(
        Segment::from_fd(fd, Some(6), false),
        Err(OpenError::FingerprintMismatch { .. })
    ));
    // A memfd that is not sealed is refused.
    let raw = common::os::memfd("unsealed");
    common::os::allocate(&raw, 4096);
    assert!(matches!(
        Segment::from_fd(raw, None, false),
        Err(OpenError::NotSealed)
    ));
}
