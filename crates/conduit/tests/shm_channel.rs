//! The socket channel (`conduit::socket::channel`): two processes that
//! share nothing but a socket pair inherited by the child exchange typed
//! messages through sealed memfds; read-only data mapping enforced by the
//! kernel; nothing in /dev/shm; peer death on both sides (SIGKILL);
//! corrupted control words.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{read_line, watchdog};
use conduit::ShmSafe;
use conduit::shm::{OpenError, Segment};
use conduit::socket::channel::{
    AcceptError, LoanError, ReceiveError, SendCopyError, SendError, Subscriber,
};
use conduit::socket::{ShmChannel, UnixStream};

const SOCK_ENV: &str = "CONDUIT_TEST_CHANNEL_SOCKET_FD";
const MESSAGES: u64 = 10_000;

#[derive(ShmSafe, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct Reading {
    seq: u64,
    value: u64,
    check: u64,
}

fn reading(seq: u64) -> Reading {
    Reading {
        seq,
        value: seq.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        check: !seq,
    }
}

fn inherited_socket() -> UnixStream {
    UnixStream::from_fd(conduit::pipe::take_inherited_fd(SOCK_ENV).unwrap())
}

/// Spawns a child in `role` holding `end`; our copy of `end` is closed, so
/// the child's death closes its end of the pair.
fn spawn_with_socket(role: &str, end: UnixStream) -> Child {
    let mut cmd = common::child_command(role, &[]);
    cmd.stdout(std::process::Stdio::piped());
    let guard = conduit::pipe::pass_to_child(&end, &mut cmd, SOCK_ENV).unwrap();
    let child = cmd.spawn().unwrap();
    drop(guard);
    drop(end);
    child
}

fn dev_shm() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// What /proc says a descriptor is.
fn fd_target(fd: impl AsFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn subscriber_or_die(s: &UnixStream) -> Subscriber<Reading> {
    ShmChannel::<Reading>::accept_from(s).unwrap()
}

fn dispatch(role: &str, _args: &[String]) {
    match role {
        "subscriber_in_order" => {
            let s = inherited_socket();
            let sub = subscriber_or_die(&s);
            let target = fd_target(sub.data_segment().fd());
            println!("attached {target}");
            let mut next = 0u64;
            let mut bad = 0u64;
            loop {
                match sub.receive() {
                    Ok(sample) => {
                        if *sample != reading(next) {
                            bad += 1;
                        }
                        next += 1;
                    }
                    Err(ReceiveError::Disconnected) => break,
                    Err(e) => panic!("receive: {e}"),
                }
            }
            println!("received {next} bad {bad} then disconnected");
        }
        "write_probe" => {
            let s = inherited_socket();
            let sub = subscriber_or_die(&s);
            println!("sealed {}", sub.is_write_sealed());
            let fd = sub.data_segment().fd().try_clone_to_owned().unwrap();
            match Segment::from_fd(fd, None, false) {
                Err(OpenError::Os { op, source, .. }) => {
                    println!("writable map: {op} errno {}", source.raw_os_error())
                }
                Ok(_) => println!("writable map: succeeded"),
                Err(e) => println!("writable map: {e}"),
            }
            let fd = sub.data_segment().fd().try_clone_to_owned().unwrap();
            match std::fs::File::from(fd).write(&[1]) {
                Err(e) => println!("write(2): {}", e.raw_os_error().unwrap_or(0)),
                Ok(n) => println!("write(2): wrote {n}"),
            }
            let page = sub.data_segment().whole().base().as_ptr();
            // SAFETY: mprotect on the first page of our own live mapping;
            // if it wrongly succeeded the page would just become writable.
            let rc = unsafe {
                libc::mprotect(
                    page.cast(),
                    rustix::param::page_size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            println!("mprotect: {}", if rc == 0 { 0 } else { errno });
            println!("storing");
            let base = sub.data_segment().data().base().as_ptr();
            // SAFETY: none: this store must fault (SIGSEGV) on the read-only
            // mapping; the parent checks that the child dies of it.
            unsafe { base.write_volatile(1) };
            println!("store succeeded");
        }
        "publisher_then_hang" => {
            let s = inherited_socket();
            let (mut publisher, offer) = ShmChannel::<Reading>::create(64).unwrap();
            offer.send_over(&s).unwrap();
            for i in 0..40 {
                publisher.send_copy(reading(i)).unwrap();
            }
            println!("sent 40");
            loop {
                std::thread::park();
            }
        }
        "subscriber_holding" => {
            let s = inherited_socket();
            let sub = subscriber_or_die(&s);
            let held: Vec<_> = (0..3).map(|_| sub.receive().unwrap()).collect();
            println!("holding {}", held.len());
            loop {
                std::thread::park();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

child_entry!(dispatch);

#[test]
fn ten_thousand_messages_in_order_with_nothing_in_dev_shm() {
    let _w = watchdog(Duration::from_secs(60));
    let before = dev_shm();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (mut publisher, offer) = ShmChannel::<Reading>::create(16).unwrap();
    // Both segments are memfds: /proc calls them "/memfd:... (deleted)".
    assert!(fd_target(publisher.data_segment().fd()).starts_with("/memfd:"));
    assert!(fd_target(publisher.control_segment().fd()).starts_with("/memfd:"));
    let mut child = spawn_with_socket("subscriber_in_order", theirs);
    offer.send_over(&ours).unwrap();
    let attached = read_line(&mut child);
    assert!(attached.starts_with("attached /memfd:"), "{attached}");
    // The channel is open in both processes: /dev/shm has nothing of it.
    let during = dev_shm();
    let new: Vec<_> = during.difference(&before).collect();
    assert!(
        new.iter().all(|n| !n.contains("socket-channel")),
        "new in /dev/shm: {new:?}"
    );
    for i in 0..MESSAGES {
        publisher
            .loan_timeout(Some(Duration::from_secs(20)))
            .unwrap()
            .write(reading(i))
            .send()
            .unwrap();
    }
    drop(publisher);
    drop(ours);
    assert_eq!(
        read_line(&mut child),
        format!("received {MESSAGES} bad 0 then disconnected")
    );
    assert!(child.wait().unwrap().success());
    let after = dev_shm();
    assert!(
        after.iter().all(|n| !n.contains("socket-channel")),
        "{after:?}"
    );
}

#[test]
fn subscriber_cannot_write_the_data_segment() {
    let _w = watchdog(Duration::from_secs(30));
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (mut publisher, offer) = ShmChannel::<Reading>::create(4).unwrap();
    let mut child = spawn_with_socket("write_probe", theirs);
    offer.send_over(&ours).unwrap();
    assert_eq!(read_line(&mut child), "sealed true");
    // F_SEAL_FUTURE_WRITE: a new writable shared mapping is refused.
    const EPERM: i32 = 1;
    assert_eq!(
        read_line(&mut child),
        format!("writable map: mmap errno {EPERM}")
    );
    // ...and so is write(2) through the descriptor.
    assert_eq!(read_line(&mut child), format!("write(2): {EPERM}"));
    // ...and mprotect cannot make the read-only mapping writable (EACCES).
    assert_eq!(read_line(&mut child), format!("mprotect: {}", libc::EACCES));
    assert_eq!(read_line(&mut child), "storing");
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(11), "{status:?}"); // SIGSEGV
    // The publisher's own mapping stays writable.
    publisher.send_copy(reading(1)).ok();
    publisher.loan().unwrap().write(reading(2));
}

#[test]
fn publisher_killed_subscriber_drains_then_disconnected() {
    let _w = watchdog(Duration::from_secs(30));
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = spawn_with_socket("publisher_then_hang", theirs);
    let sub = ShmChannel::<Reading>::accept_from(&ours).unwrap();
    assert_eq!(read_line(&mut child), "sent 40");
    for i in 0..20 {
        assert_eq!(*sub.receive().unwrap(), reading(i));
    }
    // Kill it while we may be blocked in receive: either order must end
    // in Disconnected, never a hang.
    let killer = std::thread::spawn(move || {
        child.kill().unwrap();
        child.wait().unwrap()
    });
    for i in 20..40 {
        assert_eq!(*sub.receive().unwrap(), reading(i));
    }
    assert!(matches!(sub.receive(), Err(ReceiveError::Disconnected)));
    assert!(matches!(sub.try_receive(), Err(ReceiveError::Disconnected)));
    assert_eq!(killer.join().unwrap().signal(), Some(9));
}

#[test]
fn subscriber_killed_holding_samples_publisher_reclaims() {
    let _w = watchdog(Duration::from_secs(30));
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (mut publisher, offer) = ShmChannel::<Reading>::create(8).unwrap();
    let mut child = spawn_with_socket("subscriber_holding", theirs);
    offer.send_over(&ours).unwrap();
    for i in 0..5 {
        publisher.send_copy(reading(i)).unwrap();
    }
    assert_eq!(read_line(&mut child), "holding 3");
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    // 3 held + 2 queued by the dead subscriber, 3 free: the publisher
    // notices at the latest when it runs out.
    // `Exhausted` means the peer still looked alive: a child that another
    // test forks at this moment holds a copy of the subscriber's socket
    // end until it execs. Look again (the watchdog bounds this).
    let mut outcome = None;
    for i in 5u64.. {
        match publisher.send_copy(reading(i)) {
            Ok(()) => continue,
            Err(SendCopyError::Loan(LoanError::Exhausted)) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => {
                outcome = Some(e);
                break;
            }
        }
    }
    assert!(
        matches!(
            outcome,
            Some(SendCopyError::Loan(LoanError::Disconnected))
                | Some(SendCopyError::Send(SendError::Disconnected))
        ),
        "{outcome:?}"
    );
    assert!(publisher.is_disconnected());
    assert_eq!(publisher.free_chunks(), publisher.capacity());
    assert!(matches!(
        publisher.send_copy(reading(0)),
        Err(SendCopyError::Loan(LoanError::Disconnected))
    ));
}

#[test]
fn publisher_blocked_for_a_chunk_wakes_when_the_subscriber_dies() {
    let _w = watchdog(Duration::from_secs(30));
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (mut publisher, offer) = ShmChannel::<Reading>::create(3).unwrap();
    let mut child = spawn_with_socket("subscriber_holding", theirs);
    offer.send_over(&ours).unwrap();
    for i in 0..3 {
        publisher.send_copy(reading(i)).unwrap();
    }
    assert_eq!(read_line(&mut child), "holding 3");
    // Every chunk is held: a loan waits. Whether the kill lands before or
    // during the wait, the loan must end with Disconnected.
    let killer = std::thread::spawn(move || {
        child.kill().unwrap();
        child.wait().unwrap()
    });
    assert!(matches!(
        publisher.loan_timeout(None),
        Err(LoanError::Disconnected)
    ));
    assert_eq!(killer.join().unwrap().signal(), Some(9));
    assert_eq!(publisher.free_chunks(), 3);
}

/// The control words, by their documented offsets in the control data
/// area (`socket/channel.rs` module docs, "Control segment").
fn control_word(segment: &Segment, line: usize) -> &AtomicU32 {
    let p = segment.data().resolve::<AtomicU32>(line * 64).unwrap();
    // SAFETY: resolved inside the mapping, aligned; only used atomically
    // while the segment lives.
    unsafe { p.as_ref() }
}

const FORWARD_TAIL: usize = 1;
const FORWARD_HEAD: usize = 2;
const RETURN_TAIL: usize = 3;
const FIRST_SLOT: usize = 7;

#[test]
fn corrupted_control_words_are_errors() {
    let (a, b) = UnixStream::pair().unwrap();
    let (mut publisher, offer) = ShmChannel::<Reading>::create(4).unwrap();
    offer.send_over(&a).unwrap();
    let sub = ShmChannel::<Reading>::accept_from(&b).unwrap();
    let control = publisher.control_segment().map_again().unwrap();

    // Subscriber side: a tail far ahead, then a chunk index out of range.
    control_word(&control, FORWARD_TAIL).store(1000, Ordering::Release);
    assert!(matches!(sub.try_receive(), Err(ReceiveError::Corrupted(_))));
    control_word(&control, FIRST_SLOT).store(99, Ordering::Relaxed);
    control_word(&control, FORWARD_TAIL).store(1, Ordering::Release);
    assert!(matches!(sub.receive(), Err(ReceiveError::Corrupted(_))));
    control_word(&control, FORWARD_TAIL).store(0, Ordering::Release);

    // Publisher side: a head that ran past the tail.
    control_word(&control, FORWARD_HEAD).store(77, Ordering::Release);
    assert!(matches!(
        publisher.send_copy(reading(0)),
        Err(SendCopyError::Send(SendError::Corrupted(_)))
    ));
    control_word(&control, FORWARD_HEAD).store(0, Ordering::Release);

    // Fill the channel; the subscriber takes one message and gives its
    // chunk back (a legitimate return), then a forged second return of
    // the same chunk follows it.
    for i in 0..4 {
        publisher.send_copy(reading(i)).unwrap();
    }
    let index = {
        let sample = sub.try_receive().unwrap().unwrap();
        assert_eq!(*sample, reading(0));
        sample.chunk_index()
    };
    control_word(&control, FIRST_SLOT + 4 + 1).store(index, Ordering::Relaxed);
    control_word(&control, RETURN_TAIL).store(2, Ordering::Release);
    assert!(matches!(publisher.loan(), Err(LoanError::Corrupted(_))));
    // The good return before the forged one was kept.
    publisher.send_copy(reading(9)).unwrap();
    // A return count beyond the capacity.
    control_word(&control, RETURN_TAIL).store(500, Ordering::Release);
    assert!(matches!(publisher.loan(), Err(LoanError::Corrupted(_))));
}

#[test]
fn another_type_is_refused() {
    let (a, b) = UnixStream::pair().unwrap();
    let (_publisher, offer) = ShmChannel::<Reading>::create(2).unwrap();
    offer.send_over(&a).unwrap();
    match ShmChannel::<u64>::accept_from(&b) {
        Err(AcceptError::IncompatibleType { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unsealed_offer_is_refused() {
    // A hand-made offer whose descriptors are plain (unsealed) memfds: the
    // peer could shrink them under our mapping, so they are refused.
    let (a, b) = UnixStream::pair().unwrap();
    let mut message = Vec::new();
    message.extend_from_slice(b"CDTCHAN1");
    message.extend_from_slice(&2u32.to_le_bytes());
    message.extend_from_slice(&64u32.to_le_bytes());
    message.extend_from_slice(&Reading::LAYOUT.fingerprint.to_le_bytes());
    let data = common::os::memfd("unsealed-data");
    let control = common::os::memfd("unsealed-control");
    common::os::truncate(&data, 8192);
    common::os::truncate(&control, 8192);
    a.send_with_fds(&message, &[data.as_fd(), control.as_fd()])
        .unwrap();
    match ShmChannel::<Reading>::accept_from(&b) {
        Err(AcceptError::NotSealed { segment: "data" }) => {}
        other => panic!("{other:?}"),
    }
}
