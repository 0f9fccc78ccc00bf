//! Two processes, three kinds of message passing:
//!
//! * a Unix socket pair: the parent sends a sealed memfd segment (fd
//!   passing) and a stream of typed frames; the child maps the segment,
//!   reads the frames and answers with a checksum;
//! * a POSIX message queue: the parent queues jobs with priorities, the
//!   child takes them highest priority first. The queue has a name
//!   (`/conduit.<domain>.example-<pid>`), so any POSIX client could use it
//!   too: `conduit mq info example-<pid>` while it runs, or `mq_open` in C.
//!
//! `cargo run --example message_passing`

use std::os::fd::AsFd;
use std::time::Duration;

use conduit::mq::MessageQueue;
use conduit::pipe::framed::{Receiver, Sender};
use conduit::socket::{SharedMemfd, UnixStream};

const ROLE: &str = "CONDUIT_EXAMPLE_CHILD";
const FD: &str = "CONDUIT_EXAMPLE_FD";
const QUEUE: &str = "CONDUIT_EXAMPLE_QUEUE";

/// The jobs the parent queues, in sending order, with their priorities.
const JOBS: [(&str, u32); 3] = [("routine", 1), ("urgent", 9), ("normal", 5)];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os(ROLE).is_some() {
        return child();
    }
    // A message queue in this domain; created here, so its name is removed
    // when `queue` is dropped (the child has it open by then).
    let name = conduit::Domain::from_env()?.queue_name(&format!("example-{}", std::process::id()));
    let queue = MessageQueue::builder(name.as_str())
        .capacity(JOBS.len())
        .message_size(64)
        .create()?;
    for (job, priority) in JOBS {
        queue.send(job.as_bytes(), priority)?;
    }
    println!("parent: queued {JOBS:?} on {name}");

    let (ours, theirs) = UnixStream::pair()?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.env(ROLE, "1").env(QUEUE, &name);
    let guard = conduit::pipe::pass_to_child(theirs.as_fd(), &mut cmd, FD)?;
    let mut child = cmd.spawn()?;
    drop((guard, theirs));

    // A segment with no name anywhere, sealed so the child can trust its
    // size.
    let segment = SharedMemfd::create("example", 4096)?;
    // SAFETY: the child does not have the segment yet.
    let bytes = unsafe { segment.as_mut_slice() };
    bytes[..5].copy_from_slice(b"hello");
    segment.seal()?;
    ours.send_memfd(&segment)?;

    // Then typed frames over the same socket.
    let fd = ours.as_fd().try_clone_to_owned()?;
    let mut tx = Sender::<[u32; 4]>::new(ours);
    for i in 0..10u32 {
        tx.send(&[i, i * 2, i * 3, i * 4])?;
    }
    drop(tx);
    let mut rx = Receiver::<u64>::new(fd);
    let checksum = rx.recv()?;
    println!("parent: child's checksum {checksum}");
    assert!(child.wait()?.success());
    assert_eq!(
        queue.attributes()?.current_messages,
        0,
        "the child took every job"
    );
    Ok(())
}

fn child() -> Result<(), Box<dyn std::error::Error>> {
    let socket = UnixStream::from_fd(conduit::pipe::take_inherited_fd(FD)?);
    let segment = socket.recv_memfd(false)?;
    // SAFETY: the parent no longer writes the segment.
    let text = String::from_utf8_lossy(&unsafe { segment.as_slice() }[..5]).into_owned();
    println!("child: segment of {} bytes says {text:?}", segment.len());
    let fd = socket.as_fd().try_clone_to_owned()?;
    let mut rx = Receiver::<[u32; 4]>::new(socket);
    let mut sum = 0u64;
    for _ in 0..10 {
        let v = rx.recv()?;
        sum += v.iter().map(|&x| u64::from(x)).sum::<u64>();
    }
    Sender::<u64>::new(fd).send(&sum)?;

    // The jobs, highest priority first (oldest first within a priority),
    // whatever order they were sent in.
    let queue = MessageQueue::builder(std::env::var(QUEUE)?)
        .receive_only()
        .open()?;
    let mut buf = vec![0; queue.message_size()];
    let mut taken = Vec::new();
    for _ in JOBS {
        let message = queue.receive_timeout(&mut buf, Duration::from_secs(10))?;
        let job = String::from_utf8_lossy(&buf[..message.len]).into_owned();
        println!("child: job {job:?} (priority {})", message.priority);
        taken.push(job);
    }
    assert_eq!(taken, ["urgent", "normal", "routine"]);
    Ok(())
}
