//! Zero-copy publish/subscribe between two processes that share nothing
//! but a socket: the parent creates a channel (two anonymous, sealed
//! memfds: no name in /dev/shm), offers it over a socket pair inherited by
//! the child, and publishes typed samples; the child receives them
//! through a read-only mapping until the parent goes away.
//!
//! `cargo run --example socket_channel`

use std::os::fd::AsFd;
use std::time::Duration;

use conduit::ShmSafe;
use conduit::socket::channel::ReceiveError;
use conduit::socket::{ShmChannel, UnixStream};

const ROLE: &str = "CONDUIT_EXAMPLE_CHILD";
const FD: &str = "CONDUIT_EXAMPLE_FD";
const COUNT: u64 = 100_000;

#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Tick {
    seq: u64,
    price: f64,
    volume: u32,
    venue: [u8; 4],
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os(ROLE).is_some() {
        return subscriber();
    }
    let (ours, theirs) = UnixStream::pair()?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.env(ROLE, "1");
    let guard = conduit::pipe::pass_to_child(theirs.as_fd(), &mut cmd, FD)?;
    let mut child = cmd.spawn()?;
    // Our copy of the child's end must go, or its death would go unnoticed.
    drop((guard, theirs));

    let (mut publisher, offer) = ShmChannel::<Tick>::create(64)?;
    offer.send_over(&ours)?;
    for seq in 0..COUNT {
        // Waits (bounded) while the subscriber still holds every chunk.
        let loan = publisher.loan_timeout(Some(Duration::from_secs(10)))?;
        loan.write(Tick {
            seq,
            price: 100.0 + (seq % 100) as f64 / 100.0,
            volume: (seq % 1000) as u32,
            venue: *b"XPAR",
        })
        .send()?;
    }
    println!("publisher: sent {COUNT} ticks");
    // Closing our end of the socket is how the subscriber learns we are done.
    drop(publisher);
    drop(ours);
    assert!(child.wait()?.success());
    Ok(())
}

fn subscriber() -> Result<(), Box<dyn std::error::Error>> {
    let socket = UnixStream::from_fd(conduit::pipe::take_inherited_fd(FD)?);
    let ticks = ShmChannel::<Tick>::accept_from(&socket)?;
    println!(
        "subscriber: attached; data segment is {} bytes, kernel-enforced read-only: {}",
        ticks.data_segment().len(),
        ticks.is_write_sealed()
    );
    let (mut received, mut volume) = (0u64, 0u64);
    loop {
        match ticks.receive() {
            Ok(tick) => {
                assert_eq!(tick.seq, received, "in order");
                volume += u64::from(tick.volume);
                received += 1;
            }
            Err(ReceiveError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("subscriber: {received} ticks, total volume {volume}; publisher gone");
    assert_eq!(received, COUNT);
    Ok(())
}
