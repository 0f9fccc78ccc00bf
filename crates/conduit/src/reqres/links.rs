//! A port's two queues with each peer slot, the same for clients and
//! servers: the queue it produces into (a client's requests, a server's
//! responses; [`Producer`]) and the one the peer produces into for it
//! ([`Inbound`], taken up once the peer connected it). The rescan that
//! follows the peers' slot table joining and leaving lives here once.

use std::sync::Arc;

use super::service::ServiceInner as CoreInner;
use crate::pool::Pool;
use crate::queue::{Conn, Producer};
use crate::shm::TypeLayout;

/// A queue a peer connected to us, taken up: we consume it, reading the
/// chunks from the peer's pool (mapped read-only).
#[derive(Debug)]
pub(super) struct Inbound {
    /// The producing peer's port id.
    pub(super) peer: u64,
    pub(super) generation: u64,
    pub(super) head: u64,
    /// Returns pushed so far.
    pub(super) ret_tail: u64,
    pub(super) pool: Arc<Pool>,
}

/// What a peer's pool must look like: its chunk count, element type and
/// whether it holds slices.
#[derive(Debug, Clone, Copy)]
pub(super) struct PeerPool<'a> {
    pub(super) chunks: usize,
    pub(super) element: &'a TypeLayout,
    /// The user header type.
    pub(super) header: &'a TypeLayout,
    pub(super) slice: bool,
}

impl Inbound {
    /// Takes up `conn`, which peer `peer` (its pool as `pool` says)
    /// connected to port `own` ([`Conn::take_up`]).
    pub(super) fn take_up(
        conn: Conn<'_>,
        own: u64,
        peer: u64,
        core: &CoreInner,
        pool: PeerPool<'_>,
    ) -> Option<Inbound> {
        let (linked, pool) = conn.take_up(own, peer, || {
            let permissions = core.node.permissions();
            let PeerPool {
                chunks,
                element,
                header,
                slice,
            } = pool;
            super::open_pool(
                &core.domain,
                permissions,
                peer,
                chunks,
                element,
                header,
                slice,
            )
            .ok()
        })?;
        Some(Inbound {
            peer,
            generation: linked.generation,
            head: linked.head,
            ret_tail: linked.ret_tail,
            pool: Arc::new(pool),
        })
    }

    /// Returns `chunk` of the peer's pool to it through `conn` (our queue
    /// from it).
    pub(super) fn push_return(&mut self, conn: Conn<'_>, chunk: u32) {
        conn.push_return(self.ret_tail, self.generation, chunk);
        // Read from shared memory when we took the queue up: wrap.
        self.ret_tail = self.ret_tail.wrapping_add(1);
    }
}

/// A port's queues with every slot of the other side.
#[derive(Debug)]
pub(super) struct Links {
    /// Per peer slot: the queue we produce into.
    pub(super) out: Vec<Option<Producer>>,
    /// Per peer slot: the queue we consume.
    pub(super) inb: Vec<Option<Inbound>>,
    /// The peers' slot-table generation last scanned.
    generation: u64,
    /// Some peer slot is taken but its queue to us is not taken up yet.
    pub(super) pending: bool,
}

impl Links {
    /// No peer known yet (the first [`stale`](Self::stale) is true).
    pub(super) fn new(peers: usize) -> Links {
        Links {
            out: vec![None; peers],
            inb: (0..peers).map(|_| None).collect(),
            generation: u64::MAX,
            pending: false,
        }
    }

    /// Whether a rescan is due: the peers' slot table changed
    /// (`generation`) or a queue to us is still to be taken up.
    #[inline]
    pub(super) fn stale(&self, generation: u64) -> bool {
        generation != self.generation || self.pending
    }

    /// Starts a rescan of slot-table `generation`.
    pub(super) fn begin(&mut self, generation: u64) {
        self.generation = generation;
        self.pending = false;
    }

    /// Slot `s` now holds `peer` (0: none). If the peer we had there
    /// left, forgets our queue to it and returns its id (the caller then
    /// settles what it had with it; our queue *from* it stays until
    /// [`join`](Self::join), to be drained).
    pub(super) fn departed(&mut self, s: usize, peer: u64) -> Option<u64> {
        match self.out[s] {
            Some(o) if o.peer != peer => {
                self.out[s] = None;
                Some(o.peer)
            }
            _ => None,
        }
    }

    /// Slot `s` holds `peer` (0: none): connects our queue to it
    /// (`connect`) and takes up its queue to us (`take_up`) where not
    /// done yet; a queue from a former peer of the slot is dropped.
    pub(super) fn join(
        &mut self,
        s: usize,
        peer: u64,
        connect: impl FnOnce() -> Producer,
        take_up: impl FnOnce() -> Option<Inbound>,
    ) {
        if peer != 0 && self.out[s].is_none() {
            self.out[s] = Some(connect());
        }
        if self.inb[s].as_ref().is_some_and(|i| i.peer != peer) {
            self.inb[s] = None;
        }
        if peer != 0 && self.inb[s].is_none() {
            self.inb[s] = take_up();
            self.pending |= self.inb[s].is_none();
        }
    }
}
