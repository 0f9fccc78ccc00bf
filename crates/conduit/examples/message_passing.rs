//! Two processes that share nothing but a socket: the parent sends a
//! sealed memfd segment and a stream of typed frames; the child maps the
//! segment, reads the frames and answers with a checksum.
//!
//! `cargo run --example message_passing`

use std::os::fd::AsFd;

use conduit::pipe::framed::{Receiver, Sender};
use conduit::socket::{SharedMemfd, UnixStream};

const ROLE: &str = "CONDUIT_EXAMPLE_CHILD";
const FD: &str = "CONDUIT_EXAMPLE_FD";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os(ROLE).is_some() {
        return child();
    }
    let (ours, theirs) = UnixStream::pair()?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.env(ROLE, "1");
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
    Ok(())
}
