//! Message-passing scenarios: throughput and 8-byte ping-pong latency of
//! pipes, FIFOs, the framed channel, the fast (bulk) pipe ladder, Unix
//! sockets, POSIX queues and TCP loopback, all measured in one run.
//!
//! Every scenario runs between this process (pinned to CPU 0) and a child
//! process (the same binary re-executed with `--child`, pinned to CPU 1).
//! Throughput is measured by the reader from its first byte to its last;
//! latency as round trips of an 8-byte message with [`harness::measure`]
//! (the statistic of every row: one-way = RTT/2, per-round-trip samples;
//! children are [`harness`] roles that report their CPU time).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conduit::mq::MessageQueue;
use conduit::pipe::bulk::{BulkConfig, BulkReader, BulkWriter};
use conduit::pipe::framed::{Receiver, Sender};
use conduit::pipe::{self, Fifo};
use conduit::socket::{UnixDatagram, UnixSeqpacket, UnixStream};
use rustix::io::Errno;

use crate::harness::{self, Measurement, Mode as HarnessMode, Peer, Plan};
use crate::raw;

/// Environment variables carrying inherited descriptors to the child.
pub const FD_ENV: [&str; 2] = ["CONDUIT_BENCH_FD0", "CONDUIT_BENCH_FD1"];

/// Size of the chunks plain loops read and write (and of framed frames).
pub const CHUNK: usize = 64 * 1024;
/// Capacity of "big" pipes and of the fast pipe.
pub const BIG_PIPE: usize = 1 << 20;

pub use crate::harness::{cpus, pin_to_cpu};

/// One measured throughput.
#[derive(Debug, Clone)]
pub struct Throughput {
    /// Scenario name.
    pub name: String,
    /// Bytes moved.
    pub bytes: u64,
    /// Time from first to last byte at the reader.
    pub elapsed: Duration,
}

impl Throughput {
    /// GiB per second.
    pub fn gib_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / (1u64 << 30) as f64
    }
}

pub use crate::harness::cpu_time;

fn spawn_child(role: &str, args: &[String], fds: &[&dyn AsFd]) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.arg("--child").arg(role).args(args).stdin(Stdio::null());
    let guards: Vec<_> = fds
        .iter()
        .zip(FD_ENV)
        .map(|(fd, env)| pipe::pass_to_child(fd, &mut cmd, env).expect("pass fd"))
        .collect();
    let child = cmd.spawn().expect("spawn child");
    drop(guards);
    child
}

fn inherited(i: usize) -> OwnedFd {
    pipe::take_inherited_fd(FD_ENV[i]).expect("inherited fd")
}

fn finish(mut child: Child) {
    let status = child.wait().expect("wait child");
    assert!(status.success(), "child failed: {status}");
}

/// Reads until `total` bytes arrived; returns the time from the first byte.
fn read_count(mut read: impl FnMut(&mut [u8]) -> usize, total: u64, buf: &mut [u8]) -> Duration {
    let mut got = read(buf) as u64;
    let start = Instant::now();
    while got < total {
        let n = read(buf);
        assert!(n > 0, "stream ended early at {got} of {total} bytes");
        got += n as u64;
    }
    start.elapsed()
}

/// Throughput scenarios, in report order.
pub const THROUGHPUT: &[&str] = &[
    "pipe",
    "big-pipe",
    "framed-pipe",
    "fifo",
    "fast-vmsplice",
    "fast-splice",
    "fast-huge",
    "fast-busy",
    "raw-vmsplice-splice-huge-busy",
    "unix-stream",
    "unix-datagram",
    "unix-seqpacket",
    "posix-mq",
    "tcp-loopback",
];

fn fast_config(name: &str) -> BulkConfig {
    BulkConfig {
        capacity: BIG_PIPE,
        vmsplice: true,
        huge_pages: matches!(name, "fast-huge" | "fast-busy"),
        busy: name == "fast-busy",
    }
}

fn mq_message_size() -> usize {
    MessageQueue::limits().map_or(8192, |l| l.msgsize_max.min(CHUNK))
}

/// Runs throughput scenario `name` moving `total` bytes.
pub fn throughput(name: &str, total: u64) -> Throughput {
    let args = vec![total.to_string()];
    let elapsed = match name {
        "pipe" | "big-pipe" | "framed-pipe" => {
            let (mut r, w) = pipe::pipe().expect("pipe");
            let cap = if name == "big-pipe" { BIG_PIPE } else { CHUNK };
            r.set_capacity(cap).expect("pipe size");
            let child = spawn_child(&format!("write-{name}"), &args, &[&w]);
            drop(w);
            let t = if name == "framed-pipe" {
                let mut rx = Receiver::<[u8; CHUNK]>::new(r);
                let mut frame = Box::new([0u8; CHUNK]);
                read_count(
                    |_| {
                        rx.recv_into(&mut frame).expect("frame");
                        CHUNK
                    },
                    total,
                    &mut [],
                )
            } else {
                let mut buf = vec![
                    0u8;
                    if name == "big-pipe" {
                        256 * 1024
                    } else {
                        CHUNK
                    }
                ];
                read_count(|b| r.read(b).expect("read"), total, &mut buf)
            };
            finish(child);
            t
        }
        "fifo" => {
            let path =
                std::env::temp_dir().join(format!("conduit-bench-fifo-{}", std::process::id()));
            let fifo = Fifo::create(&path, 0o600).expect("mkfifo");
            let mut a = args.clone();
            a.push(path.to_string_lossy().into_owned());
            let child = spawn_child("write-fifo", &a, &[]);
            let mut r = fifo.open_reader().expect("open fifo");
            let mut buf = vec![0u8; CHUNK];
            let t = read_count(|b| r.read(b).expect("read"), total, &mut buf);
            finish(child);
            t
        }
        n if n.starts_with("fast-") => {
            let (r, w) = pipe::pipe().expect("pipe");
            let child = spawn_child(&format!("write-{name}"), &args, &[&w]);
            drop(w);
            let mut rx = BulkReader::new(r, fast_config(name)).expect("bulk reader");
            let t = if name == "fast-vmsplice" {
                let mut buf = vec![0u8; BIG_PIPE];
                read_count(|b| rx.read(b).expect("read"), total, &mut buf)
            } else {
                read_count(|_| rx.discard(BIG_PIPE).expect("splice"), total, &mut [])
            };
            finish(child);
            t
        }
        "raw-vmsplice-splice-huge-busy" => {
            let (r, w) = pipe::pipe().expect("pipe");
            r.set_capacity(BIG_PIPE).expect("pipe size");
            r.set_nonblocking(true).expect("nonblock");
            let child = spawn_child("write-raw", &args, &[&w]);
            drop(w);
            let null = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .expect("null");
            let t = read_count(
                |_| loop {
                    match splice_nonblocking(&r, &null, BIG_PIPE) {
                        Ok(n) => return n,
                        Err(Errno::AGAIN) => core::hint::spin_loop(),
                        Err(e) => panic!("splice: {e}"),
                    }
                },
                total,
                &mut [],
            );
            finish(child);
            t
        }
        "unix-stream" => {
            let (a, b) = UnixStream::pair().expect("socketpair");
            let child = spawn_child("write-unix-stream", &args, &[&b]);
            drop(b);
            let mut buf = vec![0u8; CHUNK];
            let t = read_count(|buf| a.recv(buf).expect("recv"), total, &mut buf);
            finish(child);
            t
        }
        "unix-datagram" => {
            let (a, b) = UnixDatagram::pair().expect("socketpair");
            let child = spawn_child("write-unix-datagram", &args, &[&b]);
            drop(b);
            let mut buf = vec![0u8; CHUNK];
            let t = read_count(|buf| a.recv(buf).expect("recv"), total, &mut buf);
            finish(child);
            t
        }
        "unix-seqpacket" => {
            let (a, b) = UnixSeqpacket::pair().expect("socketpair");
            let child = spawn_child("write-unix-seqpacket", &args, &[&b]);
            drop(b);
            let mut buf = vec![0u8; CHUNK];
            let t = read_count(|buf| a.recv(buf).expect("recv"), total, &mut buf);
            finish(child);
            t
        }
        "posix-mq" => {
            let qname = format!("/conduit-bench-{}", std::process::id());
            let size = mq_message_size();
            let q = MessageQueue::builder(&qname)
                .capacity(10)
                .message_size(size)
                .create()
                .expect("mq");
            let mut a = args.clone();
            a.push(qname.clone());
            let child = spawn_child("write-posix-mq", &a, &[]);
            let mut buf = vec![0u8; size];
            let t = read_count(
                |buf| q.receive(buf).expect("mq receive").len,
                total,
                &mut buf,
            );
            finish(child);
            t
        }
        "tcp-loopback" => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let mut a = args.clone();
            a.push(port.to_string());
            let child = spawn_child("write-tcp-loopback", &a, &[]);
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = vec![0u8; CHUNK];
            let t = read_count(|b| s.read(b).expect("read"), total, &mut buf);
            finish(child);
            t
        }
        other => panic!("unknown scenario {other}"),
    };
    Throughput {
        name: name.to_owned(),
        bytes: total,
        elapsed,
    }
}

fn write_count(mut write: impl FnMut(&[u8]) -> usize, total: u64, buf: &[u8]) {
    let mut sent = 0u64;
    while sent < total {
        let n = ((total - sent) as usize).min(buf.len());
        sent += write(&buf[..n]) as u64;
    }
}

/// Child side of a throughput scenario (`role` = `write-<scenario>`).
pub fn throughput_child(role: &str, args: &[String]) {
    pin_to_cpu(1);
    let total: u64 = args[0].parse().expect("total");
    let data = vec![0x5Au8; 256 * 1024];
    match role {
        "write-pipe" | "write-big-pipe" => {
            let mut w = pipe::Writer::from_fd(inherited(0));
            let chunk = if role == "write-big-pipe" {
                256 * 1024
            } else {
                CHUNK
            };
            write_count(|b| w.write(b).expect("write"), total, &data[..chunk]);
        }
        "write-framed-pipe" => {
            let mut tx = Sender::<[u8; CHUNK]>::new(inherited(0));
            let frame = Box::new([0x5Au8; CHUNK]);
            let mut sent = 0;
            while sent < total {
                tx.send(&frame).expect("send frame");
                sent += CHUNK as u64;
            }
        }
        "write-fifo" => {
            let mut w = pipe::open_fifo_writer(&args[1]).expect("open fifo");
            write_count(|b| w.write(b).expect("write"), total, &data[..CHUNK]);
        }
        r if r.starts_with("write-fast-") => {
            let name = &r["write-".len()..];
            let w = pipe::Writer::from_fd(inherited(0));
            let mut tx = BulkWriter::new(w, fast_config(name)).expect("bulk writer");
            let mut sent = 0u64;
            while sent < total {
                let n = ((total - sent) as usize).min(tx.chunk_len());
                // The ring was filled once at creation; the payload is
                // whatever it holds (touching it would measure memset).
                let _ = tx.buffer();
                tx.commit(n).expect("commit");
                sent += n as u64;
            }
        }
        "write-raw" => raw_writer(total),
        "write-unix-stream" => {
            let s = UnixStream::from_fd(inherited(0));
            write_count(|b| s.send(b).expect("send"), total, &data[..CHUNK]);
        }
        "write-unix-datagram" => {
            let s = UnixDatagram::from_fd(inherited(0));
            s.set_buffer_sizes(4 * CHUNK).expect("buffers");
            write_count(
                |b| {
                    s.send(b).expect("send");
                    b.len()
                },
                total,
                &data[..CHUNK],
            );
        }
        "write-unix-seqpacket" => {
            let s = UnixSeqpacket::from_fd(inherited(0));
            write_count(
                |b| {
                    s.send(b).expect("send");
                    b.len()
                },
                total,
                &data[..CHUNK],
            );
        }
        "write-posix-mq" => {
            let q = MessageQueue::builder(&args[1])
                .send_only()
                .open()
                .expect("mq open");
            let size = q.message_size();
            write_count(
                |b| {
                    q.send(b, 0).expect("mq send");
                    b.len()
                },
                total,
                &data[..size],
            );
        }
        "write-tcp-loopback" => {
            let port: u16 = args[1].parse().expect("port");
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            write_count(|b| s.write(b).expect("write"), total, &data[..CHUNK]);
        }
        other => panic!("unknown child role {other}"),
    }
}

/// `splice(fd_in, NULL, fd_out, NULL, len, SPLICE_F_MOVE |
/// SPLICE_F_NONBLOCK)`, `EINTR` retried.
fn splice_nonblocking(fd_in: &impl AsFd, fd_out: &impl AsFd, len: usize) -> Result<usize, Errno> {
    use rustix::pipe::SpliceFlags;
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    loop {
        match rustix::pipe::splice(fd_in, None, fd_out, None, len, flags) {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// `vmsplice(fd, [buf], SPLICE_F_NONBLOCK)`, `EINTR` retried: hands the
/// pages of `buf` to the pipe `fd` writes to.
fn vmsplice_nonblocking(w: &OwnedFd, buf: &[u8]) -> Result<usize, Errno> {
    use rustix::pipe::{IoSliceRaw, SpliceFlags};
    let iov = [IoSliceRaw::from_slice(buf)];
    loop {
        // SAFETY: `w` is the write end of a pipe (the only descriptor
        // `raw_writer` passes), so the kernel only reads `buf`, which is
        // borrowed for the call.
        match unsafe { rustix::pipe::vmsplice(w, &iov, SpliceFlags::NONBLOCK) } {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// The baseline of the article: vmsplice from a 2 MiB-aligned huge-page
/// buffer of twice the pipe size, both halves alternately, non-blocking in
/// a spin loop; written directly on the system calls (rustix), without
/// `BulkWriter`'s bookkeeping.
fn raw_writer(total: u64) {
    let w = inherited(0);
    let cap = rustix::pipe::fcntl_setpipe_size(&w, BIG_PIPE).expect("pipe size");
    raw::set_nonblocking(&w);
    let huge = 2 << 20;
    let map = raw::Mapping::anonymous(2 * cap + huge);
    let start = map.as_ptr().align_offset(huge);
    let _ = map.advise_huge_pages(start, 2 * cap);
    // SAFETY: [start, start + 2cap) lies in our private mapping.
    let buf = unsafe { core::slice::from_raw_parts_mut(map.as_ptr().add(start), 2 * cap) };
    buf.fill(0x5A);
    let mut sent = 0u64;
    let mut half = 0;
    while sent < total {
        let n = ((total - sent) as usize).min(cap);
        let chunk = &buf[half * cap..half * cap + n];
        let mut done = 0;
        while done < n {
            match vmsplice_nonblocking(&w, &chunk[done..]) {
                Ok(k) => done += k,
                Err(Errno::AGAIN) => core::hint::spin_loop(),
                Err(e) => panic!("vmsplice: {e}"),
            }
        }
        sent += n as u64;
        half ^= 1;
    }
}

/// Latency scenarios, in report order.
pub const LATENCY: &[&str] = &[
    "pipe",
    "framed-pipe",
    "fifo",
    "fast-busy",
    "unix-stream",
    "unix-datagram",
    "unix-seqpacket",
    "posix-mq",
    "tcp-loopback",
    "socket-shm-channel",
];

/// An 8-byte message link in one direction pair.
trait Link {
    fn send8(&mut self, v: u64);
    fn recv8(&mut self) -> u64;
}

struct FdLink {
    r: OwnedFd,
    w: OwnedFd,
    busy: bool,
}

impl Link for FdLink {
    fn send8(&mut self, v: u64) {
        let b = v.to_le_bytes();
        let mut done = 0;
        while done < 8 {
            match raw::write(&self.w, &b[done..]) {
                Ok(n) => done += n,
                Err(Errno::AGAIN) => core::hint::spin_loop(),
                Err(e) => panic!("write: {e}"),
            }
        }
    }
    fn recv8(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let mut done = 0;
        while done < 8 {
            match raw::read(&self.r, &mut b[done..]) {
                Ok(0) => panic!("peer closed"),
                Ok(n) => done += n,
                Err(Errno::AGAIN) if self.busy => core::hint::spin_loop(),
                Err(e) => panic!("read: {e}"),
            }
        }
        u64::from_le_bytes(b)
    }
}

struct FramedLink {
    tx: Sender<u64>,
    rx: Receiver<u64>,
}

impl Link for FramedLink {
    fn send8(&mut self, v: u64) {
        self.tx.send(&v).expect("send");
    }
    fn recv8(&mut self) -> u64 {
        self.rx.recv().expect("recv")
    }
}

struct MessageLink<S> {
    s: S,
    send: fn(&S, &[u8]),
    recv: fn(&S, &mut [u8]) -> usize,
}

impl<S> Link for MessageLink<S> {
    fn send8(&mut self, v: u64) {
        (self.send)(&self.s, &v.to_le_bytes());
    }
    fn recv8(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let n = (self.recv)(&self.s, &mut b);
        assert_eq!(n, 8);
        u64::from_le_bytes(b)
    }
}

struct MqLink {
    tx: MessageQueue,
    rx: MessageQueue,
    buf: Vec<u8>,
}

impl Link for MqLink {
    fn send8(&mut self, v: u64) {
        self.tx.send(&v.to_le_bytes(), 0).expect("mq send");
    }
    fn recv8(&mut self) -> u64 {
        let m = self.rx.receive(&mut self.buf).expect("mq receive");
        assert_eq!(m.len, 8);
        u64::from_le_bytes(self.buf[..8].try_into().expect("8 bytes"))
    }
}

/// Zero-copy channels over memfds offered through a socket pair
/// (`conduit::socket::channel`), one per direction.
struct ShmChannelLink {
    tx: conduit::socket::channel::Publisher<u64>,
    rx: conduit::socket::channel::Subscriber<u64>,
    _socket: UnixStream,
}

impl ShmChannelLink {
    /// The parent offers its channel first, then accepts the child's.
    fn connect(socket: UnixStream, parent: bool) -> ShmChannelLink {
        use conduit::socket::ShmChannel;
        let (tx, offer) = ShmChannel::<u64>::create(4).expect("channel");
        let rx = if parent {
            offer.send_over(&socket).expect("offer");
            ShmChannel::<u64>::accept_from(&socket).expect("accept")
        } else {
            let rx = ShmChannel::<u64>::accept_from(&socket).expect("accept");
            offer.send_over(&socket).expect("offer");
            rx
        };
        ShmChannelLink {
            tx,
            rx,
            _socket: socket,
        }
    }
}

impl Link for ShmChannelLink {
    fn send8(&mut self, v: u64) {
        self.tx
            .loan_timeout(None)
            .expect("loan")
            .write(v)
            .send()
            .expect("send");
    }
    fn recv8(&mut self) -> u64 {
        *self.rx.receive().expect("receive")
    }
}

struct TcpLink(std::net::TcpStream);

impl Link for TcpLink {
    fn send8(&mut self, v: u64) {
        self.0.write_all(&v.to_le_bytes()).expect("write");
    }
    fn recv8(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.read_exact(&mut b).expect("read");
        u64::from_le_bytes(b)
    }
}

fn pipe_pair_link(busy: bool) -> (FdLink, [OwnedFd; 2]) {
    let (r1, w1) = raw::pipe();
    let (r2, w2) = raw::pipe();
    if busy {
        raw::set_nonblocking(&r2);
    }
    (FdLink { r: r2, w: w1, busy }, [r1, w2])
}

/// Child role of every latency scenario; its third argument (after the
/// plan's two) names the scenario.
pub const ECHO_ROLE: &str = "msg-echo";

/// Runs the measuring side once the link is up (the child sets up its end
/// before it calls [`harness::ready`]).
fn measure_link(name: &str, plan: &Plan, mut peer: Peer, link: &mut dyn Link) -> Measurement {
    peer.wait_ready();
    let timed = harness::measure(plan, |i| {
        link.send8(i);
        let back = link.recv8();
        debug_assert_eq!(back, i);
    });
    let report = peer.finish();
    // The 8 bytes are the sequence number: no payload is touched.
    Measurement::new(
        name,
        8,
        HarnessMode::Header,
        timed,
        plan.timed(),
        Some(report),
    )
}

/// The plan of a latency scenario of `rounds` timed round trips (clock
/// read per round trip; `fast-busy` busy-polls and adds a batch phase).
pub fn latency_plan(name: &str, rounds: usize) -> Plan {
    let rounds = rounds.max(1) as u64;
    if name == "fast-busy" {
        Plan::busy(rounds / 10, rounds, harness::BATCH)
    } else {
        Plan::sleeping(rounds / 10, rounds)
    }
}

/// Runs latency scenario `name` under `plan` ([`latency_plan`]); the
/// row's scenario is `name`.
pub fn latency(name: &str, plan: &Plan) -> Measurement {
    let mut args = plan.to_args();
    args.push(name.to_owned());
    match name {
        "pipe" | "fast-busy" => {
            let busy = name == "fast-busy";
            let (mut link, theirs) = pipe_pair_link(busy);
            let peer = Peer::spawn(ECHO_ROLE, &args, &[&theirs[0], &theirs[1]]);
            drop(theirs);
            measure_link(name, plan, peer, &mut link)
        }
        "framed-pipe" => {
            let (link, theirs) = pipe_pair_link(false);
            let peer = Peer::spawn(ECHO_ROLE, &args, &[&theirs[0], &theirs[1]]);
            drop(theirs);
            let mut link = FramedLink {
                tx: Sender::new(link.w),
                rx: Receiver::new(link.r),
            };
            measure_link(name, plan, peer, &mut link)
        }
        "fifo" => {
            let base =
                std::env::temp_dir().join(format!("conduit-bench-lat-{}", std::process::id()));
            let there = base.with_extension("there");
            let back = base.with_extension("back");
            let f1 = Fifo::create(&there, 0o600).expect("fifo");
            let f2 = Fifo::create(&back, 0o600).expect("fifo");
            args.push(there.to_string_lossy().into_owned());
            args.push(back.to_string_lossy().into_owned());
            let peer = Peer::spawn(ECHO_ROLE, &args, &[]);
            let w = f1.open_writer().expect("open");
            let r = f2.open_reader().expect("open");
            let mut link = FdLink {
                r: r.into(),
                w: w.into(),
                busy: false,
            };
            measure_link(name, plan, peer, &mut link)
        }
        "unix-stream" => {
            let (a, b) = UnixStream::pair().expect("pair");
            let peer = Peer::spawn(ECHO_ROLE, &args, &[&b]);
            drop(b);
            let fd: OwnedFd = a.into();
            let mut link = FdLink {
                r: fd.try_clone().expect("dup"),
                w: fd,
                busy: false,
            };
            measure_link(name, plan, peer, &mut link)
        }
        "unix-datagram" => {
            let (a, b) = UnixDatagram::pair().expect("pair");
            let peer = Peer::spawn(ECHO_ROLE, &args, &[&b]);
            drop(b);
            let mut link = MessageLink {
                s: a,
                send: |s, m| s.send(m).expect("send"),
                recv: |s, b| s.recv(b).expect("recv"),
            };
            measure_link(name, plan, peer, &mut link)
        }
        "unix-seqpacket" => {
            let (a, b) = UnixSeqpacket::pair().expect("pair");
            let peer = Peer::spawn(ECHO_ROLE, &args, &[&b]);
            drop(b);
            let mut link = MessageLink {
                s: a,
                send: |s, m| s.send(m).expect("send"),
                recv: |s, b| s.recv(b).expect("recv"),
            };
            measure_link(name, plan, peer, &mut link)
        }
        "posix-mq" => {
            let base = format!("/conduit-bench-lat-{}", std::process::id());
            let there = format!("{base}-there");
            let back = format!("{base}-back");
            let tx = MessageQueue::builder(&there)
                .capacity(1)
                .message_size(8)
                .create()
                .expect("mq");
            let rx = MessageQueue::builder(&back)
                .capacity(1)
                .message_size(8)
                .create()
                .expect("mq");
            args.push(there.clone());
            args.push(back.clone());
            let peer = Peer::spawn(ECHO_ROLE, &args, &[]);
            let mut link = MqLink {
                tx,
                rx,
                buf: vec![0; 8],
            };
            measure_link(name, plan, peer, &mut link)
        }
        "tcp-loopback" => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = listener.local_addr().expect("addr").port();
            args.push(port.to_string());
            let peer = Peer::spawn(ECHO_ROLE, &args, &[]);
            let (s, _) = listener.accept().expect("accept");
            s.set_nodelay(true).expect("nodelay");
            let mut link = TcpLink(s);
            measure_link(name, plan, peer, &mut link)
        }
        "socket-shm-channel" => {
            let (a, b) = UnixStream::pair().expect("pair");
            let peer = Peer::spawn(ECHO_ROLE, &args, &[&b]);
            drop(b);
            let mut link = ShmChannelLink::connect(a, true);
            measure_link(name, plan, peer, &mut link)
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// Child side of every latency scenario (the [`ECHO_ROLE`] body):
/// `warmup timed scenario [paths or port]`; sets up its end of the link,
/// calls [`harness::ready`], echoes every round trip of the plan.
pub fn echo_child(args: &[String]) {
    let plan = Plan::from_args(args);
    let extra = &args[3..];
    let fd = harness::inherited_fd;
    let mut link: Box<dyn Link> = match args[2].as_str() {
        "pipe" | "fast-busy" => {
            let busy = args[2] == "fast-busy";
            let r = fd(0);
            let w = fd(1);
            if busy {
                raw::set_nonblocking(&r);
            }
            Box::new(FdLink { r, w, busy })
        }
        "framed-pipe" => Box::new(FramedLink {
            rx: Receiver::new(fd(0)),
            tx: Sender::new(fd(1)),
        }),
        "fifo" => {
            let r = pipe::open_fifo_reader(&extra[0]).expect("open");
            let w = pipe::open_fifo_writer(&extra[1]).expect("open");
            Box::new(FdLink {
                r: r.into(),
                w: w.into(),
                busy: false,
            })
        }
        "unix-stream" => {
            let s = fd(0);
            Box::new(FdLink {
                r: s.try_clone().expect("dup"),
                w: s,
                busy: false,
            })
        }
        "unix-datagram" => Box::new(MessageLink {
            s: UnixDatagram::from_fd(fd(0)),
            send: |s, m| s.send(m).expect("send"),
            recv: |s, b| s.recv(b).expect("recv"),
        }),
        "unix-seqpacket" => Box::new(MessageLink {
            s: UnixSeqpacket::from_fd(fd(0)),
            send: |s, m| s.send(m).expect("send"),
            recv: |s, b| s.recv(b).expect("recv"),
        }),
        "posix-mq" => {
            let rx = MessageQueue::builder(&extra[0]).open().expect("mq");
            let tx = MessageQueue::builder(&extra[1]).open().expect("mq");
            Box::new(MqLink {
                tx,
                rx,
                buf: vec![0; 8],
            })
        }
        "tcp-loopback" => {
            let port: u16 = extra[0].parse().expect("port");
            let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            Box::new(TcpLink(s))
        }
        "socket-shm-channel" => {
            let socket = UnixStream::from_fd(fd(0));
            Box::new(ShmChannelLink::connect(socket, false))
        }
        other => panic!("unknown latency scenario {other}"),
    };
    harness::ready();
    harness::echo_loop(&plan, |_| {
        let v = link.recv8();
        link.send8(v);
    });
}
