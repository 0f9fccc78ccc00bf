//! Pipes, FIFOs and the framed channel, with real child processes.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use conduit::ShmSafe;
use conduit::pipe::bulk::{BulkConfig, BulkReader, BulkWriter};
use conduit::pipe::framed::{
    self, FrameReader, FrameWriter, Receiver, RecvError, SendError, Sender,
};
use conduit::pipe::{self, Fifo};
use conduit::shm::TypeLayout;

child_entry!(dispatch);

const PIPE_ENV: &str = "CONDUIT_TEST_PIPE_FD";

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    seq: u64,
    value: f32,
    flags: u8,
    // 3 bytes of padding: sent as raw bytes, never read as u8 in Rust.
}

// SAFETY: repr(C), only integers and floats (valid for every bit
// pattern), no pointers; LAYOUT states the true size and alignment.
unsafe impl ShmSafe for Sample {
    const LAYOUT: TypeLayout =
        TypeLayout::leaf("Sample", size_of::<Sample>(), align_of::<Sample>());
}

fn dispatch(role: &str, args: &[String]) {
    match role {
        "send_samples" => {
            let w = pipe::Writer::from_env(PIPE_ENV).unwrap();
            let n: u64 = args[0].parse().unwrap();
            let mut tx = Sender::<Sample>::new(w);
            for seq in 0..n {
                tx.send(&Sample {
                    seq,
                    value: seq as f32 * 0.5,
                    flags: (seq % 256) as u8,
                })
                .unwrap();
            }
        }
        "send_big" => {
            let w = pipe::Writer::from_env(PIPE_ENV).unwrap();
            let mut tx = Sender::<[u8; 65536]>::new(w);
            let mut frame = Box::new([0u8; 65536]);
            for i in 0..8u8 {
                frame.fill(i);
                tx.send(&frame).unwrap();
            }
        }
        "half_frame" => {
            // A header announcing 1000 bytes, then only 10, then wait to
            // be killed.
            let mut w = pipe::Writer::from_env(PIPE_ENV).unwrap();
            let mut header = 1000u32.to_le_bytes().to_vec();
            header.extend_from_slice(&framed::BYTES_TAG.to_le_bytes());
            w.write_all(&header).unwrap();
            w.write_all(&[7u8; 10]).unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        "fifo_writer" => {
            let mut w = pipe::open_fifo_writer(&args[0]).unwrap();
            w.write_all(b"through the fifo").unwrap();
        }
        "bulk_writer" => {
            let w = pipe::Writer::from_env(PIPE_ENV).unwrap();
            let config = bulk_config(&args[0]);
            let mut tx = BulkWriter::new(w, config).unwrap();
            let mut offset = 0u64;
            for i in 0..BULK_CHUNKS {
                let len = bulk_chunk_len(i, tx.chunk_len());
                let buf = tx.buffer();
                for (k, b) in buf[..len].iter_mut().enumerate() {
                    *b = pattern(offset + k as u64);
                }
                tx.commit(len).unwrap();
                offset += len as u64;
            }
        }
        "sigpipe_default" => {
            // What a C host program or `#[unix_sigpipe = "sig_dfl"]` would
            // have: SIGPIPE kills by default.
            // SAFETY: restoring the default disposition runs no code in
            // signal context.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let (r, mut w) = pipe::pipe().unwrap();
            drop(r);
            let err = w.write(b"x").unwrap_err();
            println!("write error {:?}", err.kind());
        }
        "exit_now" => {}
        _ => panic!("unknown role {role}"),
    }
}

/// Reads the child's stdout until a line equal to `expected` (the test
/// harness prints its own lines first); panics at end of file.
fn wait_for_line(child: &mut std::process::Child, expected: &str) {
    loop {
        let line = common::read_line(child);
        if line.ends_with(expected) {
            return;
        }
        assert!(
            !line.is_empty() || !child_stdout_at_eof(child),
            "child ended before printing {expected:?}"
        );
    }
}

fn child_stdout_at_eof(child: &mut std::process::Child) -> bool {
    matches!(child.try_wait(), Ok(Some(_)))
}

const BULK_CHUNKS: usize = 40;

fn bulk_config(spec: &str) -> BulkConfig {
    BulkConfig {
        capacity: 64 * 1024,
        vmsplice: spec.contains("vmsplice"),
        huge_pages: spec.contains("huge"),
        busy: spec.contains("busy"),
    }
}

/// Full chunks with short ones in between (short chunks are the case
/// where the writer must check the pipe before reusing a half).
fn bulk_chunk_len(i: usize, chunk: usize) -> usize {
    if i % 3 == 1 { 1000 + i } else { chunk }
}

fn pattern(offset: u64) -> u8 {
    (offset.wrapping_mul(7) ^ (offset >> 12)) as u8
}

fn bulk_total(chunk: usize) -> u64 {
    (0..BULK_CHUNKS)
        .map(|i| bulk_chunk_len(i, chunk) as u64)
        .sum()
}

fn spawn_with_pipe_end(
    role: &str,
    args: &[&str],
    end: &impl std::os::fd::AsFd,
) -> std::process::Child {
    let mut cmd = common::child_command(role, args);
    cmd.stdout(std::process::Stdio::piped());
    let guard = pipe::pass_to_child(end, &mut cmd, PIPE_ENV).unwrap();
    let child = cmd.spawn().unwrap();
    drop(guard);
    child
}

#[test]
fn typed_frames_from_a_child() {
    let _w = common::watchdog(Duration::from_secs(30));
    let (r, w) = pipe::pipe().unwrap();
    let mut child = spawn_with_pipe_end("send_samples", &["1000"], &w);
    drop(w);
    let mut rx = Receiver::<Sample>::new(r);
    for seq in 0..1000u64 {
        let s = rx.recv().unwrap();
        assert_eq!(
            s,
            Sample {
                seq,
                value: seq as f32 * 0.5,
                flags: (seq % 256) as u8
            }
        );
    }
    assert!(matches!(rx.recv(), Err(RecvError::Closed)));
    assert!(child.wait().unwrap().success());
}

#[test]
fn frames_larger_than_the_pipe_arrive_whole() {
    let _w = common::watchdog(Duration::from_secs(30));
    let (r, w) = pipe::pipe().unwrap();
    // A 16 KiB pipe forces many partial writes and reads per frame.
    r.set_capacity(16 * 1024).unwrap();
    let mut child = spawn_with_pipe_end("send_big", &[], &w);
    drop(w);
    let mut rx = Receiver::<[u8; 65536]>::new(r);
    let mut frame = Box::new([0u8; 65536]);
    for i in 0..8u8 {
        rx.recv_into(&mut frame).unwrap();
        assert!(frame.iter().all(|&b| b == i), "frame {i} corrupted");
    }
    assert!(matches!(rx.recv_into(&mut frame), Err(RecvError::Closed)));
    assert!(child.wait().unwrap().success());
}

#[test]
fn writer_killed_mid_frame_is_a_truncated_frame() {
    let _w = common::watchdog(Duration::from_secs(30));
    let (r, w) = pipe::pipe().unwrap();
    let mut child = spawn_with_pipe_end("half_frame", &[], &w);
    drop(w);
    wait_for_line(&mut child, "ready");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut rx = FrameReader::new(r, 4096);
    let mut buf = Vec::new();
    match rx.recv(&mut buf) {
        Err(RecvError::Truncated { expected, got }) => {
            assert_eq!((expected, got), (1000, 10));
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    assert!(matches!(rx.recv(&mut buf), Err(RecvError::Broken)));
}

#[test]
fn frame_limit_on_both_sides_keeps_the_stream_usable() {
    let _w = common::watchdog(Duration::from_secs(30));
    let (r, w) = pipe::pipe().unwrap();
    let mut tx = FrameWriter::new(w, 1000);
    let mut rx = FrameReader::new(r, 100);
    // The sender refuses above its own limit without writing anything.
    assert!(matches!(
        tx.send(&[1u8; 2000]),
        Err(SendError::FrameTooLarge {
            len: 2000,
            limit: 1000
        })
    ));
    // Above the receiver's limit: discarded, reported, stream in step.
    tx.send(&[2u8; 500]).unwrap();
    tx.send(&[3u8; 50]).unwrap();
    tx.send(&[]).unwrap();
    let mut buf = Vec::new();
    assert!(matches!(
        rx.recv(&mut buf),
        Err(RecvError::FrameTooLarge {
            len: 500,
            limit: 100
        })
    ));
    assert_eq!(rx.recv(&mut buf).unwrap(), 50);
    assert!(buf.iter().all(|&b| b == 3));
    assert_eq!(rx.recv(&mut buf).unwrap(), 0);
    drop(tx);
    assert!(matches!(rx.recv(&mut buf), Err(RecvError::Closed)));
}

#[test]
fn wrong_type_is_detected() {
    let (r, w) = pipe::pipe().unwrap();
    let mut tx = Sender::<u32>::new(w);
    let mut rx = Receiver::<i32>::new(r);
    tx.send(&5).unwrap();
    assert!(matches!(rx.recv(), Err(RecvError::WrongType { .. })));
    assert!(matches!(rx.recv(), Err(RecvError::Broken)));
}

#[test]
fn closed_reader_is_an_error_not_sigpipe() {
    let _w = common::watchdog(Duration::from_secs(30));
    let (r, w) = pipe::pipe().unwrap();
    // The reader lives in a child that exits at once.
    let mut child = spawn_with_pipe_end("exit_now", &[], &r);
    drop(r);
    assert!(child.wait().unwrap().success());
    let mut tx = Sender::<u64>::new(w);
    assert!(matches!(tx.send(&1), Err(SendError::PeerGone(_))));
    let (r, mut w) = pipe::pipe().unwrap();
    drop(r);
    let err = w.write(b"x").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
}

#[test]
fn fifo_with_mode_between_processes_and_removed_after() {
    let _w = common::watchdog(Duration::from_secs(30));
    let path = std::env::temp_dir().join(common::unique("conduit-fifo"));
    let fifo = Fifo::create(&path, 0o640).unwrap();
    {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_fifo());
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    }
    assert!(matches!(
        Fifo::create(&path, 0o600),
        Err(pipe::FifoError::AlreadyExists { .. })
    ));
    let mut child = common::spawn_child("fifo_writer", &[path.to_str().unwrap()]);
    let mut r = fifo.open_reader().unwrap();
    let mut text = String::new();
    r.read_to_string(&mut text).unwrap();
    assert_eq!(text, "through the fifo");
    assert!(child.wait().unwrap().success());
    drop(fifo);
    assert!(!path.exists());
}

#[test]
fn pipe_capacity() {
    let (r, _w) = pipe::pipe().unwrap();
    let got = r.set_capacity(1 << 20).unwrap();
    assert!(got >= 1 << 20);
    assert_eq!(r.capacity().unwrap(), got);
    let limit = pipe::max_capacity().unwrap();
    // Refused unless the caller has CAP_SYS_RESOURCE (not the same as
    // being root: containers usually drop it).
    match r.set_capacity(limit * 2) {
        Err(pipe::SetCapacityError::AboveLimit { limit: l, .. }) => assert_eq!(l, limit),
        Ok(_) => eprintln!("CAP_SYS_RESOURCE: pipe-max-size does not apply"),
        Err(other) => panic!("expected AboveLimit, got {other:?}"),
    }
}

#[test]
fn spawn_helpers_connect_stdin_and_stdout() {
    let _w = common::watchdog(Duration::from_secs(30));
    let mut cmd = std::process::Command::new("cat");
    let (mut child, mut to_cat) = pipe::spawn_with_stdin(&mut cmd).unwrap();
    drop(child.stdout.take());
    to_cat.write_all(b"").unwrap();
    drop(to_cat);
    assert!(child.wait().unwrap().success());

    let mut cmd = std::process::Command::new("echo");
    cmd.arg("hello from echo");
    let (mut child, mut from_echo) = pipe::spawn_with_stdout(&mut cmd).unwrap();
    let mut text = String::new();
    from_echo.read_to_string(&mut text).unwrap();
    assert_eq!(text, "hello from echo\n");
    assert!(child.wait().unwrap().success());
}

#[cfg(feature = "serde")]
#[test]
fn serde_frames() {
    use conduit::pipe::framed::{SerdeReceiver, SerdeSender};
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Order {
        id: u64,
        symbol: String,
        quantities: Vec<i32>,
    }
    let (r, w) = pipe::pipe().unwrap();
    let mut tx = SerdeSender::<Order>::new(w, 64);
    let mut rx = SerdeReceiver::<Order>::new(r, 64);
    let order = Order {
        id: 7,
        symbol: "ACME".into(),
        quantities: vec![1, -2, 300],
    };
    tx.send(&order).unwrap();
    assert_eq!(rx.recv().unwrap(), order);
    let huge = Order {
        id: 8,
        symbol: "X".repeat(100),
        quantities: vec![],
    };
    assert!(matches!(
        tx.send(&huge),
        Err(SendError::FrameTooLarge { .. })
    ));
    tx.send(&order).unwrap();
    assert_eq!(rx.recv().unwrap(), order);
}

/// A slow reader (verifying every byte) behind a fast vmsplice writer:
/// any reuse of a buffer still referenced by the pipe would corrupt the
/// stream.
fn bulk_stream_arrives_intact(spec: &str) {
    let _w = common::watchdog(Duration::from_secs(60));
    let (r, w) = pipe::pipe().unwrap();
    let mut child = spawn_with_pipe_end("bulk_writer", &[spec], &w);
    drop(w);
    let mut rx = BulkReader::new(r, bulk_config(spec)).unwrap();
    let mut buf = vec![0u8; 10_000];
    let mut offset = 0u64;
    loop {
        let n = rx.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(
                b,
                pattern(offset + k as u64),
                "byte {} corrupted",
                offset + k as u64
            );
        }
        offset += n as u64;
    }
    assert_eq!(offset, bulk_total(64 * 1024));
    assert!(child.wait().unwrap().success());
}

#[test]
fn bulk_stream_copy() {
    bulk_stream_arrives_intact("copy");
}

#[test]
fn bulk_stream_vmsplice() {
    bulk_stream_arrives_intact("vmsplice");
}

#[test]
fn bulk_stream_vmsplice_huge_busy() {
    bulk_stream_arrives_intact("vmsplice huge busy");
}

#[test]
fn bulk_splice_to_file_and_dev_null() {
    let _w = common::watchdog(Duration::from_secs(60));
    let config = BulkConfig {
        capacity: 64 * 1024,
        ..BulkConfig::default()
    };
    let (mut rx, mut tx) = pipe::bulk::bulk_pipe(config).unwrap();
    let data: Vec<u8> = (0..50_000u64).map(pattern).collect();
    tx.write_all(&data).unwrap();
    let path = std::env::temp_dir().join(common::unique("conduit-splice"));
    let file = std::fs::File::create(&path).unwrap();
    let mut moved = 0;
    while moved < data.len() {
        moved += rx.splice_to(&file, data.len() - moved).unwrap();
    }
    drop(file);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    std::fs::remove_file(&path).unwrap();
    // Into another pipe: copied, not spliced (see the page-lifetime docs).
    let (mut out_r, out_w) = pipe::pipe().unwrap();
    tx.write_all(b"to a pipe").unwrap();
    assert_eq!(rx.splice_to(&out_w, 100).unwrap(), 9);
    let mut got = [0u8; 9];
    out_r.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"to a pipe");
    tx.write_all(&data).unwrap();
    let mut gone = 0;
    while gone < data.len() {
        gone += rx.discard(data.len() - gone).unwrap();
    }
    drop(tx);
    assert_eq!(rx.discard(10).unwrap(), 0);
}

#[test]
fn bulk_writer_sees_a_closed_reader() {
    let (rx, mut tx) = pipe::bulk::bulk_pipe(BulkConfig {
        capacity: 64 * 1024,
        ..BulkConfig::default()
    })
    .unwrap();
    drop(rx);
    // More than the pipe holds: a child that another test forks at this
    // moment holds a copy of the read end until it execs (O_CLOEXEC closes
    // it only then), so a small write could still succeed; a write larger
    // than the pipe waits for that and then sees the closed reader.
    let err = tx.write_all(&vec![1u8; 256 * 1024]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    // A read end is refused as a writer.
    let (r, _w) = pipe::pipe().unwrap();
    let fake = pipe::Writer::from_fd(r.into());
    assert!(matches!(
        BulkWriter::new(fake, BulkConfig::default()),
        Err(pipe::bulk::BulkError::NotWritable)
    ));
}

#[test]
fn sigpipe_default_disposition_does_not_kill() {
    let _w = common::watchdog(Duration::from_secs(30));
    let mut child = common::spawn_child("sigpipe_default", &[]);
    wait_for_line(&mut child, "write error BrokenPipe");
    let status = child.wait().unwrap();
    assert!(status.success(), "child died: {status}");
}

#[test]
fn typed_value_cut_short_is_truncated() {
    use std::os::fd::OwnedFd;
    let (r, w) = pipe::pipe().unwrap();
    let w: OwnedFd = w.into();
    let mut raw = pipe::Writer::from_fd(w.try_clone().unwrap());
    let mut tx = Sender::<u64>::new(w);
    let mut rx = Receiver::<u64>::new(r);
    tx.send(&1).unwrap();
    drop(tx);
    raw.write_all(&[1, 2, 3]).unwrap();
    drop(raw);
    assert_eq!(rx.recv().unwrap(), 1);
    assert!(matches!(
        rx.recv(),
        Err(RecvError::Truncated {
            expected: 8,
            got: 3
        })
    ));
    assert!(matches!(rx.recv(), Err(RecvError::Broken)));
    // A stream that does not start with a typed header is refused.
    let (r, mut w) = pipe::pipe().unwrap();
    w.write_all(&[0u8; 32]).unwrap();
    let mut rx = Receiver::<u64>::new(r);
    assert!(matches!(rx.recv(), Err(RecvError::WrongType { .. })));
}

#[test]
fn bulk_falls_back_to_copying_on_a_socket() {
    use conduit::socket::UnixStream;
    let _w = common::watchdog(Duration::from_secs(30));
    let (a, b) = UnixStream::pair().unwrap();
    let config = BulkConfig {
        capacity: 64 * 1024,
        ..BulkConfig::default()
    };
    let mut tx = BulkWriter::new(pipe::Writer::from_fd(a.into()), config).unwrap();
    let mut rx = BulkReader::new(pipe::Reader::from_fd(b.into()), config).unwrap();
    let data: Vec<u8> = (0..100_000u64).map(pattern).collect();
    let writer = std::thread::spawn(move || {
        tx.write_all(&data).unwrap();
        tx.write_all(&[9u8; 1000]).unwrap();
    });
    let mut got = vec![0u8; 100_000];
    let mut n = 0;
    while n < got.len() {
        n += rx.read(&mut got[n..]).unwrap();
    }
    assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i as u64)));
    let mut gone = 0;
    while gone < 1000 {
        gone += rx.discard(1000 - gone).unwrap();
    }
    writer.join().unwrap();
}
