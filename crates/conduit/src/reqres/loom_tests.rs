//! loom model of the one request/response step that composes the queue
//! protocol (`crate::queue`, whose steps `pubsub::loom_tests` models) in a
//! new way: a whole round trip over the two connections of a
//! (client, server) pair, with the request chunk's meta word.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p conduit --release --lib loom_`.
//!
//! What it checks, with the real `push`, `pop`, `push_return` and
//! `collect_returns` on loom atomics:
//!
//! * a server that takes the request reads the meta word the client
//!   wrote before it pushed the request (slot, length, and no `DROPPED`
//!   bit: `ActiveRequest::is_connected`), through the push's Release and
//!   the take's Acquire;
//! * the client reads the response payload only after the server wrote
//!   it (loom reports a data race otherwise);
//! * once the client has read the end of the stream, the request chunk's
//!   return is visible to `collect_returns` (the server pushes the return
//!   before the end entry), which the client pool's size relies on.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;

use super::layout::END_OF_STREAM;
use crate::queue::{ConnWords, Pop};

const GENERATION: u64 = 1;
const REQUEST_ID: u64 = 7;

struct Pair {
    /// Client → server.
    request: ConnWords,
    /// Server → client.
    response: ConnWords,
    /// The request chunk's meta word (`reqres::meta`).
    meta: AtomicU64,
    /// The payload of the server's response chunk 0.
    response_payload: UnsafeCell<u64>,
}

#[test]
fn loom_reqres_round_trip_end_after_return() {
    crate::sync::loom_model(|| {
        let pair = Arc::new(Pair {
            request: ConnWords::new(1, 2, 1, 2, GENERATION),
            response: ConnWords::new(2, 2, 1, 2, GENERATION),
            meta: AtomicU64::new(0),
            response_payload: UnsafeCell::new(0),
        });
        let server = {
            let pair = pair.clone();
            thread::spawn(move || {
                let mut head = 0;
                let chunk = loop {
                    match pair.request.conn().pop(&mut head, GENERATION) {
                        Pop::Chunk(chunk, tag) => {
                            assert_eq!(tag as u64, REQUEST_ID);
                            break chunk;
                        }
                        Pop::Empty => thread::yield_now(),
                        Pop::Gone => panic!("request of another generation"),
                    }
                };
                // The meta word was written before the push; is_connected
                // reads no DROPPED bit.
                let meta = pair.meta.load(Ordering::Acquire);
                assert_eq!(super::meta::unpack(meta), (0, 1, false));
                assert_eq!(meta & super::DROPPED, 0);
                // SAFETY: the chunk is the server's own until pushed.
                pair.response_payload.with_mut(|p| unsafe { *p = 42 });
                let response = pair.response.conn();
                response.push(0, GENERATION, 0, REQUEST_ID);
                // Drop of the active request: return first, then the end.
                pair.request.conn().push_return(0, GENERATION, chunk);
                response.push(1, GENERATION, END_OF_STREAM, REQUEST_ID);
            })
        };
        // The client.
        pair.meta
            .store(super::meta::pack(0, 1, false), Ordering::Relaxed);
        pair.request.conn().push(0, GENERATION, 0, REQUEST_ID);
        let mut head = 0;
        let mut responses = 0;
        loop {
            match pair.response.conn().pop(&mut head, GENERATION) {
                Pop::Chunk(END_OF_STREAM, tag) => {
                    assert_eq!(tag as u64, REQUEST_ID);
                    break;
                }
                Pop::Chunk(0, _) => {
                    // SAFETY: published by the server's Release push.
                    let v = pair.response_payload.with(|p| unsafe { *p });
                    assert_eq!(v, 42);
                    responses += 1;
                }
                Pop::Chunk(other, _) => panic!("unexpected chunk {other}"),
                Pop::Empty => thread::yield_now(),
                Pop::Gone => panic!("response of another generation"),
            }
        }
        assert_eq!(responses, 1);
        let mut ret_head = 0;
        let mut returned = Vec::new();
        pair.request
            .conn()
            .collect_returns(&mut ret_head, GENERATION, |c| returned.push(c));
        assert_eq!(returned, [0], "the return must be visible after the end");
        server.join().unwrap();
    });
}
