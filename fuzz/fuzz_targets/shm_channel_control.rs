//! The socket channel's control segment over corrupted memory: a
//! `ShmChannel` between a publisher and a subscriber (both in this
//! process, over a socket pair), with samples queued and held, has its
//! control segment patched (header, capacity, the forward and return
//! queues' positions and slots, the event words), then is used: loans,
//! sends, receives, samples held and dropped. Either side must return data
//! or a named error (`Corrupted`, `Disconnected`, a timeout), never panic,
//! hang or touch memory outside its segments.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use conduit::socket::{ShmChannel, UnixStream};
use conduit_fuzz::{Patch, apply};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Send(u64),
    Loan,
    Receive,
    ReceiveZero,
    Hold,
    Release,
    Free,
}

#[derive(Arbitrary, Debug)]
struct Input {
    sent: u8,
    held: u8,
    /// Patches anywhere in the control segment (header included).
    patches: Vec<Patch>,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let (ours, theirs) = UnixStream::pair().expect("socket pair");
    let (mut publisher, offer) = ShmChannel::<u64>::create(4).expect("channel");
    offer.send_over(&ours).expect("offer");
    let subscriber = ShmChannel::<u64>::accept_from(&theirs).expect("accept");
    for i in 0..input.sent % 5 {
        let _ = publisher.send_copy(u64::from(i));
    }
    let mut held = Vec::new();
    for _ in 0..input.held % 3 {
        if let Ok(Some(s)) = subscriber.try_receive() {
            held.push(s);
        }
    }
    let control = publisher.control_segment();
    apply(&control.whole(), 0, control.len(), 0..0, &input.patches);

    for op in input.ops.iter().take(32) {
        match *op {
            Op::Send(v) => {
                let _ = publisher.send_copy(v);
            }
            Op::Loan => {
                if let Ok(loan) = publisher.loan_timeout(Some(Duration::ZERO)) {
                    drop(loan.write(7));
                }
            }
            Op::Receive => {
                if let Ok(Some(s)) = subscriber.try_receive() {
                    std::hint::black_box((*s, s.chunk_index()));
                }
            }
            Op::ReceiveZero => {
                let _ = subscriber
                    .receive_timeout(Some(Duration::ZERO))
                    .map(|s| s.map(|s| *s));
            }
            Op::Hold => {
                if let Ok(Some(s)) = subscriber.try_receive() {
                    held.push(s);
                }
            }
            Op::Release => {
                held.pop();
            }
            Op::Free => {
                std::hint::black_box((publisher.free_chunks(), publisher.is_disconnected()));
            }
        }
    }
    drop(held);
});
