//! loom model of a [`ShmChannel`](super::ShmChannel)'s two rings (forward
//! and return), running the real ring steps (`socket::ring::Ring`) on loom
//! atomics.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p conduit --release --lib loom_socket`.
//! The publisher's and subscriber's bookkeeping (free list, counts) is
//! re-written here as in `channel.rs`; the chunk payloads are loom
//! `UnsafeCell`s, so a read before publication or a rewrite before the
//! return is a race that loom reports.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::AtomicU32;
use loom::thread;

use super::ring::Ring;

const CAPACITY: u32 = 2;

struct Words {
    head: AtomicU32,
    tail: AtomicU32,
    slots: Vec<AtomicU32>,
}

impl Words {
    fn new() -> Words {
        Words {
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            slots: (0..CAPACITY).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn ring<'a>(&'a self) -> Ring<'a, impl Fn(u32) -> &'a AtomicU32 + 'a> {
        Ring {
            head: &self.head,
            tail: &self.tail,
            slot: move |p| &self.slots[(p % CAPACITY) as usize],
        }
    }
}

struct Channel {
    forward: Words,
    returns: Words,
    chunks: Vec<UnsafeCell<u32>>,
}

#[test]
fn loom_socket_channel_rings() {
    // Capacity 2 (two chunks), three messages: the third send needs the
    // first chunk back through the return ring. Messages arrive in order
    // with their contents; the publisher rewrites a chunk only after the
    // subscriber gave it back; neither ring ever overflows.
    crate::sync::loom_model(|| {
        let channel = Arc::new(Channel {
            forward: Words::new(),
            returns: Words::new(),
            chunks: (0..CAPACITY).map(|_| UnsafeCell::new(0)).collect(),
        });
        let publisher = {
            let channel = channel.clone();
            thread::spawn(move || {
                let (forward, returns) = (channel.forward.ring(), channel.returns.ring());
                let mut free = vec![1u32, 0];
                let (mut forward_tail, mut return_head) = (0u32, 0u32);
                for message in 0..3u32 {
                    // `Publisher::loan`: a free chunk, else collect returns.
                    let index = loop {
                        if let Some(i) = free.pop() {
                            break i;
                        }
                        // `collect_returns`.
                        let tail = returns.producer_tail();
                        let count = tail.wrapping_sub(return_head);
                        assert!(count <= CAPACITY, "return queue length {count}");
                        let first = return_head;
                        for position in (0..count).map(|i| first.wrapping_add(i)) {
                            free.push(returns.read(position));
                            return_head = position.wrapping_add(1);
                        }
                        returns.consumed(return_head);
                        if free.is_empty() {
                            thread::yield_now();
                        }
                    };
                    // SAFETY: the chunk is the publisher's (free).
                    channel.chunks[index as usize].with_mut(|p| unsafe { *p = 100 + message });
                    // `publish`.
                    let queued = forward_tail.wrapping_sub(forward.consumer_head());
                    assert!(queued < CAPACITY, "forward queue head");
                    forward_tail = forward.push(forward_tail, index);
                }
            })
        };
        let (forward, returns) = (channel.forward.ring(), channel.returns.ring());
        let (mut forward_head, mut return_tail) = (0u32, 0u32);
        let mut got = Vec::new();
        while got.len() < 3 {
            // `Subscriber::pop`.
            let tail = forward.producer_tail();
            let available = tail.wrapping_sub(forward_head);
            assert!(available <= CAPACITY, "forward queue tail");
            if available == 0 {
                thread::yield_now();
                continue;
            }
            let index = forward.read(forward_head);
            forward_head = forward_head.wrapping_add(1);
            forward.consumed(forward_head);
            // SAFETY: published by the Release of the tail we loaded.
            got.push(channel.chunks[index as usize].with(|p| unsafe { *p }));
            // `give_back`.
            let queued = return_tail.wrapping_sub(returns.consumer_head());
            assert!(queued < CAPACITY, "return queue full");
            return_tail = returns.push(return_tail, index);
        }
        publisher.join().unwrap();
        assert_eq!(got, vec![100, 101, 102]);
    });
}
