//! A slice topic with a user header between two processes: the parent
//! publishes variable-length frames (bytes) with a header carrying the
//! frame number and a checksum; a child process checks every frame.
//!
//! `cargo run --example pubsub_slice`

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use conduit::prelude::*;

#[derive(ShmSafe, Clone, Copy, Default, Debug)]
#[repr(C)]
struct FrameHeader {
    frame: u64,
    checksum: u64,
}

const ROLE: &str = "CONDUIT_EXAMPLE_CHILD";
const FRAMES: u64 = 50;

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x1b3)
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let domain = format!("example-slice-{}", std::process::id());
    if let Ok(domain) = std::env::var(ROLE) {
        return subscriber(&domain);
    }
    let node = Node::builder().name("camera").domain(&domain).create()?;
    let topic = node
        .service("camera/frames")
        .publish_subscribe::<[u8]>()
        .user_header::<FrameHeader>()
        .overflow(Overflow::Block)
        .open_or_create()?;
    let publisher = topic.publisher().max_slice_len(64 * 1024).create()?;

    let mut child = Command::new(std::env::current_exe()?)
        .env(ROLE, &domain)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    assert_eq!(lines.next().transpose()?.as_deref(), Some("subscribed"));

    for frame in 0..FRAMES {
        let len = 1024 * (frame as usize % 64 + 1);
        let mut sample = publisher
            .loan_slice_uninit(len)?
            .write_from_fn(|i| (i as u64 ^ frame) as u8);
        let sum = checksum(&sample);
        *sample.header_mut() = FrameHeader {
            frame,
            checksum: sum,
        };
        sample.send()?;
    }
    let report = lines.next().transpose()?.unwrap_or_default();
    println!("camera sent {FRAMES} frames; viewer says: {report}");
    child.stdin.take().expect("piped").write_all(b"bye\n")?;
    child.wait()?;
    Ok(())
}

fn subscriber(domain: &str) -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::builder().name("viewer").domain(domain).create()?;
    let topic = node
        .service("camera/frames")
        .publish_subscribe::<[u8]>()
        .user_header::<FrameHeader>()
        .open()?;
    let subscriber = topic.subscriber().create()?;
    println!("subscribed");
    std::io::stdout().flush()?;
    let mut bytes = 0;
    for expected in 0..FRAMES {
        let sample = subscriber.receive_timeout(Duration::from_secs(5))?;
        assert_eq!(sample.header().frame, expected);
        assert_eq!(
            sample.header().checksum,
            checksum(&sample),
            "frame {expected}"
        );
        bytes += sample.len();
    }
    println!("{FRAMES} frames, {bytes} bytes, all checksums match");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(())
}
