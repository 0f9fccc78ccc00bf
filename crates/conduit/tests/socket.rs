//! Unix domain sockets: names, credentials, fd passing, memfd sharing —
//! with real child processes.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use conduit::pipe::framed::{Receiver, Sender};
use conduit::socket::{
    AcceptError, RecvError, RecvMemfdError, SendError, SendMemfdError, SeqpacketListener,
    SharedMemfd, SocketName, StreamListener, UnixDatagram, UnixSeqpacket, UnixStream,
};

child_entry!(dispatch);

const SOCK_ENV: &str = "CONDUIT_TEST_SOCKET_FD";

fn name_from(arg: &str) -> SocketName {
    match arg.strip_prefix('@') {
        Some(abstract_name) => SocketName::abstract_name(abstract_name),
        None => SocketName::path(arg),
    }
}

/// Whether `fd` has close-on-exec, from /proc/self/fdinfo.
fn is_cloexec(fd: BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
        .unwrap();
    flags & 0o2000000 != 0
}

fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn inherited_socket<T>(wrap: fn(OwnedFd) -> T) -> T {
    wrap(conduit::pipe::take_inherited_fd(SOCK_ENV).unwrap())
}

fn dispatch(role: &str, args: &[String]) {
    match role {
        // Accepts one connection and reports the peer's pid as seen from
        // here (run in a new PID namespace: the peer is invisible).
        "report_peer_pid" => {
            let listener = StreamListener::bind(&name_from(&args[0])).unwrap();
            println!("ready");
            let (_conn, creds) = listener.accept().unwrap();
            println!("peer pid {}", creds.pid);
        }
        "stream_client" => {
            let s = UnixStream::connect(&name_from(&args[0])).unwrap();
            let mut tx = Sender::<u64>::new(s);
            for i in 0..100u64 {
                tx.send(&(i * 3)).unwrap();
            }
        }
        "seqpacket_client" => {
            let s = UnixSeqpacket::connect(&name_from(&args[0])).unwrap();
            s.send(b"short").unwrap();
            s.send(&[9u8; 100]).unwrap();
            s.send(b"after").unwrap();
        }
        "datagram_client" => {
            let s = UnixDatagram::unbound().unwrap();
            s.send_to(b"datagram one", &name_from(&args[0])).unwrap();
            s.send_to(b"two", &name_from(&args[0])).unwrap();
        }
        "refused_client" => {
            let mut s = UnixStream::connect(&name_from(&args[0])).unwrap();
            let mut buf = [0u8; 4];
            // The server closes us: end of stream (or reset).
            let n = s.read(&mut buf).unwrap_or(0);
            println!("eof {n}");
        }
        "recv_many_fds" => {
            let s = inherited_socket(UnixStream::from_fd);
            let fds = s.recv_fds().unwrap();
            let sizes_ok = fds.iter().enumerate().all(|(i, fd)| {
                let file = std::fs::File::from(fd.try_clone().unwrap());
                file.metadata().unwrap().len() == i as u64 + 1
            });
            let all_cloexec = fds.iter().all(|fd| is_cloexec(fd.as_fd()));
            println!(
                "received {} sizes_ok {sizes_ok} cloexec {all_cloexec}",
                fds.len()
            );
        }
        "leak_check" => {
            let (a, b) = UnixSeqpacket::pair().unwrap();
            let (pr, pw) = conduit::pipe::pipe().unwrap();
            let before = open_fd_count();
            for i in 0..1000 {
                a.send_fds(&[pr.as_fd(), pw.as_fd(), pr.as_fd()]).unwrap();
                let got = b.recv_fds().unwrap();
                assert_eq!(got.len(), 3);
                // Every other time, drop a whole message unread by
                // receiving it with a too-small buffer (truncated).
                if i % 2 == 0 {
                    a.send_with_fds(&[1u8; 16], &[pw.as_fd()]).unwrap();
                    let mut small = [0u8; 4];
                    assert!(matches!(
                        b.recv_with_fds(&mut small),
                        Err(RecvError::Truncated { .. })
                    ));
                }
            }
            let after = open_fd_count();
            println!("fds before {before} after {after}");
        }
        "recv_memfd" => {
            let s = inherited_socket(UnixStream::from_fd);
            let memfd = s.recv_memfd(true).unwrap();
            // SAFETY: the parent waits for our reply before touching the
            // segment again.
            let bytes = unsafe { memfd.as_mut_slice() };
            let ok = bytes.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8);
            bytes[0] = 0xAA;
            println!("memfd len {} pattern_ok {ok}", memfd.len());
        }
        "half_frame" => {
            let mut s = inherited_socket(UnixStream::from_fd);
            let mut header = 64u32.to_le_bytes().to_vec();
            header.extend_from_slice(&conduit::pipe::framed::BYTES_TAG.to_le_bytes());
            s.write_all(&header).unwrap();
            s.write_all(&[1u8; 20]).unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        _ => panic!("unknown role {role}"),
    }
}

/// Reads the child's stdout until a line ending in `suffix`; returns it.
fn line_ending_with(child: &mut std::process::Child, prefix: &str) -> String {
    for _ in 0..10 {
        let line = common::read_line(child);
        if let Some(i) = line.find(prefix) {
            return line[i..].to_owned();
        }
    }
    panic!("child did not print {prefix:?}");
}

fn spawn_with_socket(role: &str, end: &impl AsFd) -> std::process::Child {
    let mut cmd = common::child_command(role, &[]);
    cmd.stdout(std::process::Stdio::piped());
    let guard = conduit::pipe::pass_to_child(end, &mut cmd, SOCK_ENV).unwrap();
    let child = cmd.spawn().unwrap();
    drop(guard);
    child
}

#[test]
fn stream_over_a_path_name_with_framed_values() {
    let _w = common::watchdog(Duration::from_secs(30));
    let path = std::env::temp_dir().join(common::unique("conduit-sock"));
    let name = SocketName::path(&path);
    let listener = StreamListener::bind(&name).unwrap();
    assert!(matches!(
        StreamListener::bind(&name),
        Err(conduit::socket::BindError::AddressInUse { .. })
    ));
    let mut child = common::spawn_child("stream_client", &[path.to_str().unwrap()]);
    let (conn, creds) = listener.accept().unwrap();
    assert_eq!(creds.pid, child.id());
    assert_eq!(creds.uid, conduit::socket::own_credentials().uid);
    let mut rx = Receiver::<u64>::new(conn);
    for i in 0..100u64 {
        assert_eq!(rx.recv().unwrap(), i * 3);
    }
    assert!(child.wait().unwrap().success());
    drop(listener);
    assert!(!path.exists(), "socket file left behind");
}

#[test]
fn seqpacket_over_an_abstract_name_keeps_boundaries() {
    let _w = common::watchdog(Duration::from_secs(30));
    let name = common::unique("conduit-seq");
    let listener = SeqpacketListener::bind(&SocketName::abstract_name(&name)).unwrap();
    let mut child = common::spawn_child("seqpacket_client", &[&format!("@{name}")]);
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(conn.recv(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"short");
    assert!(matches!(
        conn.recv(&mut buf),
        Err(RecvError::Truncated {
            len: 100,
            capacity: 64
        })
    ));
    assert_eq!(conn.recv(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"after");
    assert!(matches!(conn.recv(&mut buf), Err(RecvError::Closed)));
    assert!(child.wait().unwrap().success());
}

#[test]
fn datagrams_to_a_bound_path() {
    let _w = common::watchdog(Duration::from_secs(30));
    let path = std::env::temp_dir().join(common::unique("conduit-dgram"));
    let server = UnixDatagram::bind(&SocketName::path(&path)).unwrap();
    let mut child = common::spawn_child("datagram_client", &[path.to_str().unwrap()]);
    let mut buf = [0u8; 64];
    let n = server.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"datagram one");
    let n = server.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"two");
    assert!(child.wait().unwrap().success());
    drop(server);
    assert!(!path.exists());
}

#[test]
fn peer_refused_by_credentials() {
    let _w = common::watchdog(Duration::from_secs(30));
    let name = common::unique("conduit-refuse");
    let mut listener = StreamListener::bind(&SocketName::abstract_name(&name)).unwrap();
    let me = std::process::id();
    // Accept only ourselves: the child is refused by pid.
    listener.set_peer_filter(move |c| c.pid == me);
    let mut child = common::spawn_child("refused_client", &[&format!("@{name}")]);
    match listener.accept() {
        Err(AcceptError::Refused { credentials }) => assert_eq!(credentials.pid, child.id()),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(line_ending_with(&mut child, "eof"), "eof 0");
    assert!(child.wait().unwrap().success());
    // A peer the filter accepts gets through.
    let me_conn = UnixStream::connect(listener.name()).unwrap();
    let (_conn, creds) = listener.accept().unwrap();
    assert_eq!(creds.pid, me);
    drop(me_conn);
    // The client side can check the server too.
    let uid = conduit::socket::own_credentials().uid;
    match UnixStream::connect_verified(listener.name(), |c| c.uid != uid) {
        Err(conduit::socket::ConnectError::PeerRefused { credentials, .. }) => {
            assert_eq!(credentials.pid, me)
        }
        other => panic!("expected PeerRefused, got {other:?}"),
    }
    let _ok = UnixStream::connect_verified(listener.name(), |c| c.uid == uid).unwrap();
}

#[test]
fn more_fds_than_the_kernel_limit_are_split_and_arrive_cloexec() {
    let _w = common::watchdog(Duration::from_secs(30));
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = spawn_with_socket("recv_many_fds", &theirs);
    drop(theirs);
    // 600 memfds of sizes 1..=600: three messages of 253, 253, 94.
    let memfds: Vec<SharedMemfd> = (1..=600)
        .map(|len| SharedMemfd::create("conduit-test", len).unwrap())
        .collect();
    let fds: Vec<BorrowedFd<'_>> = memfds.iter().map(|m| m.as_fd()).collect();
    assert!(matches!(
        ours.send_with_fds(b"x", &fds),
        Err(SendError::TooManyFds { count: 600 })
    ));
    ours.send_fds(&fds).unwrap();
    assert_eq!(
        line_ending_with(&mut child, "received"),
        "received 600 sizes_ok true cloexec true"
    );
    assert!(child.wait().unwrap().success());
}

#[test]
fn no_fd_leak_after_a_thousand_passes() {
    let _w = common::watchdog(Duration::from_secs(60));
    // In a child, so that other tests' descriptors do not disturb the
    // count.
    let mut child = common::spawn_child("leak_check", &[]);
    let line = line_ending_with(&mut child, "fds before");
    let nums: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(nums[2], nums[4], "descriptor count changed: {line}");
    assert!(child.wait().unwrap().success());
}

#[test]
fn sealed_memfd_is_mapped_by_the_receiver() {
    let _w = common::watchdog(Duration::from_secs(30));
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = spawn_with_socket("recv_memfd", &theirs);
    drop(theirs);
    let memfd = SharedMemfd::create("conduit-test", 1 << 20).unwrap();
    {
        // SAFETY: nobody else has the segment yet.
        let bytes = unsafe { memfd.as_mut_slice() };
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
    }
    assert!(matches!(
        ours.send_memfd(&memfd),
        Err(SendMemfdError::NotSealed)
    ));
    memfd.seal().unwrap();
    ours.send_memfd(&memfd).unwrap();
    assert_eq!(
        line_ending_with(&mut child, "memfd"),
        format!("memfd len {} pattern_ok true", 1 << 20)
    );
    assert!(child.wait().unwrap().success());
    // The child's write through its own mapping is visible in ours.
    // SAFETY: the child has exited.
    assert_eq!(unsafe { memfd.as_slice() }[0], 0xAA);
}

#[test]
fn unsealed_memfd_is_refused_by_the_receiver() {
    let (a, b) = UnixSeqpacket::pair().unwrap();
    let memfd = SharedMemfd::create("conduit-test", 4096).unwrap();
    a.send_with_fds(&4096u64.to_le_bytes(), &[memfd.as_fd()])
        .unwrap();
    assert!(matches!(
        b.recv_memfd(false),
        Err(RecvMemfdError::NotSealed { .. })
    ));
}

#[test]
fn closed_peer_is_an_error_value() {
    let (a, b) = UnixStream::pair().unwrap();
    drop(b);
    assert!(matches!(a.send(b"x"), Err(SendError::PeerGone(_))));
    let (mut a, b) = UnixStream::pair().unwrap();
    drop(b);
    assert_eq!(
        a.write(b"x").unwrap_err().kind(),
        std::io::ErrorKind::BrokenPipe
    );
}

#[test]
fn socket_peer_killed_mid_frame() {
    use conduit::pipe::framed::{FrameReader, RecvError as FrameError};
    let _w = common::watchdog(Duration::from_secs(30));
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = spawn_with_socket("half_frame", &theirs);
    drop(theirs);
    assert_eq!(line_ending_with(&mut child, "ready"), "ready");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut rx = FrameReader::new(ours, 1024);
    let mut buf = Vec::new();
    assert!(matches!(
        rx.recv(&mut buf),
        Err(FrameError::Truncated {
            expected: 64,
            got: 20
        })
    ));
    assert!(matches!(rx.recv(&mut buf), Err(FrameError::Broken)));
}

#[test]
fn stream_recv_returns_the_bytes() {
    let (mut a, b) = UnixStream::pair().unwrap();
    b.send(b"hello stream").unwrap();
    let mut buf = [0u8; 5];
    assert_eq!(a.recv(&mut buf).unwrap(), 5);
    assert_eq!(&buf, b"hello");
    let mut rest = [0u8; 64];
    let n = a.read(&mut rest).unwrap();
    assert_eq!(&rest[..n], b" stream");
}

#[test]
fn fd_lists_over_datagram_and_seqpacket_pairs() {
    let (pr, _pw) = conduit::pipe::pipe().unwrap();
    let fds: Vec<BorrowedFd<'_>> = (0..300).map(|_| pr.as_fd()).collect();
    let (a, b) = UnixDatagram::pair().unwrap();
    a.send_fds(&fds).unwrap();
    let got = b.recv_fds().unwrap();
    assert_eq!(got.len(), 300);
    assert!(got.iter().all(|fd| is_cloexec(fd.as_fd())));
    let (a, b) = UnixSeqpacket::pair().unwrap();
    a.send_fds(&[]).unwrap();
    assert!(b.recv_fds().unwrap().is_empty());
    // A plain message where a list was expected is a protocol error.
    a.send(b"not a list").unwrap();
    assert!(matches!(b.recv_fds(), Err(RecvError::Protocol(_))));
}

#[test]
fn peer_in_an_invisible_pid_namespace_has_pid_zero() {
    let _w = common::watchdog(Duration::from_secs(30));
    if let Some(why) = common::pid_namespaces_unavailable() {
        println!("skipped: {why}");
        return;
    }
    // The server runs in a new PID namespace; we, its client, live in the
    // parent namespace, which it cannot see: the kernel reports pid 0.
    let path = std::env::temp_dir().join(common::unique("conduit-sock-pidns"));
    let mut server =
        common::spawn_child_in_new_pid_namespace("report_peer_pid", &[path.to_str().unwrap()]);
    assert_eq!(common::read_line(&mut server), "ready");
    let _client = UnixStream::connect(&SocketName::path(&path)).unwrap();
    assert_eq!(common::read_line(&mut server), "peer pid 0");
    assert!(server.wait().unwrap().success());
    let _ = std::fs::remove_file(&path);
}
