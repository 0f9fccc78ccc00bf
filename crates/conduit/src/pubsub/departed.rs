//! A publisher's last words: the samples a publisher queued before it
//! left (dropped, or killed) stay readable until every subscriber it was
//! connected to has taken or dropped them.
//!
//! # The mechanism: a hold per connection
//!
//! A subscriber reads a publisher's chunks through its read-only mapping of
//! the publisher's data segment `pub.<id>`, which it maps only when it
//! first polls after the publisher connected it. So the *name* must
//! outlive a departed publisher for as long as a queue still holds its
//! entries for a subscriber that may not have mapped it yet. Each
//! connection's link line has two words for that ([`ConnLink`]`::kept`,
//! `kept_gen`): a **hold** = (departed publisher's id, generation of its
//! entries). The data segment's name is removed when its publisher has
//! left *and* no connection holds it any more.
//!
//! | step | who | what |
//! |---|---|---|
//! | departure | the publisher's `Drop`, or the cleaner that reclaims its dead slot (`Pattern::keep_pool`) | for every connection of its row that is still its own, linked to the subscriber now in that slot and whose entry at `head` is unread: `kept_gen ← g`, `kept ← id` (SeqCst); then re-reads the subscriber slot (SeqCst) and ends the hold itself if the subscriber left meanwhile |
//! | | | then frees the slot, and [`unlink_unless_held`] |
//! | reading | the subscriber (`update_slow`) | a connection it is not connected to that holds `(id, g)` for it: maps `pub.<id>` (`Conn::take_up_held`), reads the entries of generation `g` from the shared head, as from any draining connection |
//! | end | the subscriber, when that connection reads empty or shows an entry of another generation (the queue is drained: its successor's entries follow) | `CAS(kept, id, 0)`, then [`unlink_unless_held`] |
//! | end | the subscriber's `Drop` (its column); the cleaner of a dead subscriber (`port_reclaimed`: its column); a publisher that resets a connection whose hold is stale; the domain sweep (holds whose subscriber slot changed, or whose entries were all read) | as above |
//! | removal | [`unlink_unless_held`], by whoever ended a hold or by the departing publisher | `fence(SeqCst)`; if no publisher slot names `id` and no connection holds it: `shm_unlink(pub.<id>)` |
//!
//! A departing publisher and a subscriber that ends the last hold are a
//! Dekker pair: each first stores (the publisher its slot's release, the
//! subscriber its hold's CAS), then a SeqCst fence or SeqCst access, then
//! reads the other's word. At least one of them sees the other's store and
//! removes the name; both may (the second `shm_unlink` finds nothing: ids
//! are unique, so no other segment is ever removed). A name is never removed
//! while a hold exists: a hold is created only by the departing publisher
//! (or its cleaner) before its slot is freed, never after.
//!
//! **A subscriber that dies too**: its slot is reclaimed by the dead-port
//! cleanup, which ends every hold in its column and removes the names
//! nobody holds any more; `Node::cleanup` / `conduit clean` do this for
//! every service of the domain and also end holds whose subscriber slot
//! changed or whose entries were all read. **The service removed** (its
//! last user left): the core removes every held data segment with it
//! (`Pattern::kept_pools`). The domain sweep never removes a data segment
//! that a remaining service's connection holds.
//!
//! **Slot reuse**: a new publisher of the slot that finds a hold on a
//! connection linked to the same subscriber does not reset it
//! (`Conn::take_over`): it keeps the entries, head and return tail, picks
//! a generation that is neither the old nor the held one and appends after
//! the held entries. The subscriber reads the held entries (their
//! generation tells them from the new ones) with the old mapping, then
//! meets an entry of another generation, ends the hold and takes up the
//! new publisher's connection from the same head. Old and new samples are
//! never confused: every entry names its generation, and the held
//! generation has its own mapping. Returns of held chunks are not written
//! (nobody would collect them).
//!
//! **Limits**: one hold per connection. A second publisher of the slot
//! that leaves before the subscriber drained the first one's entries keeps
//! nothing for that subscriber (its samples there are lost, as before this
//! mechanism). A departing publisher's and a dying subscriber's races are
//! closed by the Dekker pairs above; a hold that a late cleaner sets again
//! after the subscriber ended it stays until the next domain sweep.
//!
//! [`ConnLink`]: crate::queue::ConnLink

use super::layout::{PUBLISHERS, ServiceView};
use crate::domain::Domain;
use crate::queue::Conn;
use crate::shm::Segment;
use crate::sync::atomic::{AtomicU64, Ordering, fence};

/// The departure step on one connection: holds it for `pub_id` if it has
/// unread entries for the subscriber now in `sub_slot` (its `id` word),
/// then re-reads that word (SeqCst) and lets go again if the subscriber
/// left meanwhile (its drop releases its slot, then, after a SeqCst fence,
/// looks for holds: either it sees ours or we see its slot changed). True
/// if the hold stays. The departing publisher removes the name afterwards
/// if nothing holds it ([`is_held`]), so letting go here needs no check.
pub(crate) fn hold_one(conn: Conn<'_>, sub_slot: &AtomicU64, pub_id: u64) -> bool {
    let sid = sub_slot.load(Ordering::SeqCst);
    if !conn.keep_for(pub_id, sid) {
        return false;
    }
    // A fence, not only SeqCst accesses: the store of the hold must come
    // before the load below in the single total order (and loom models
    // SeqCst accesses as AcqRel but SeqCst fences faithfully).
    fence(Ordering::SeqCst);
    if sub_slot.load(Ordering::SeqCst) != sid {
        conn.release_hold(pub_id);
        return false;
    }
    true
}

/// Whether `pub.<pub_id>` is still needed: a publisher slot names it, or a
/// connection holds it. Starts with a SeqCst fence: it pairs with the
/// SeqCst hold CAS of whoever ended another hold, and with the departing
/// publisher's slot release (see the module docs).
pub(crate) fn is_held<'a>(
    mut pub_slots: impl Iterator<Item = &'a AtomicU64>,
    mut conns: impl Iterator<Item = Conn<'a>>,
    pub_id: u64,
) -> bool {
    fence(Ordering::SeqCst);
    pub_slots.any(|slot| slot.load(Ordering::SeqCst) == pub_id) || conns.any(|c| c.holds(pub_id))
}

/// Departure of publisher `pub_id` of slot `p` (before its slot is
/// freed): puts a hold on every connection of its row with unread
/// entries for a subscriber still there. Returns how many it holds.
pub(crate) fn hold_queued(view: &ServiceView<'_>, p: usize, pub_id: u64) -> usize {
    let subs = view.sub_slots();
    subs.iter()
        .enumerate()
        .filter(|(s, slot)| hold_one(view.conn(p, *s), &slot.id, pub_id))
        .count()
}

/// Ends the hold of departed publisher `pub_id` on connection `(p, s)`,
/// if it has it, and removes the data segment if nothing else holds it.
pub(crate) fn release(view: &ServiceView<'_>, domain: &Domain, p: usize, s: usize, pub_id: u64) {
    if view.conn(p, s).release_hold(pub_id) {
        unlink_unless_held(view, domain, pub_id);
    }
}

/// Ends every hold in subscriber slot `s`'s column whose connection is
/// linked to `sub_id` (`None`: to anyone but the subscriber now in the
/// slot). Called after the subscriber's slot was freed.
pub(crate) fn release_column(
    view: &ServiceView<'_>,
    domain: &Domain,
    s: usize,
    sub_id: Option<u64>,
) {
    // Pairs with the SeqCst re-read in `hold_queued`.
    fence(Ordering::SeqCst);
    let now = view.sub_slots()[s].id.load(Ordering::SeqCst);
    for p in 0..view.layout.max_pub {
        let conn = view.conn(p, s);
        let Ok(Some(hold)) = conn.hold() else {
            continue;
        };
        let link = conn.link.link.load(Ordering::Acquire);
        let ours = match sub_id {
            Some(id) => link == id,
            None => link != now || now == 0,
        };
        if ours {
            release(view, domain, p, s, hold.pub_id);
        }
    }
}

/// Removes `pub.<pub_id>` unless a publisher slot still names it or a
/// connection still holds it.
pub(crate) fn unlink_unless_held(view: &ServiceView<'_>, domain: &Domain, pub_id: u64) {
    let (max_pub, max_sub) = (view.layout.max_pub, view.layout.max_sub);
    let conns = (0..max_pub).flat_map(|p| (0..max_sub).map(move |s| view.conn(p, s)));
    let slots = view.slots(PUBLISHERS);
    if !is_held(slots.iter().map(|slot| &slot.id), conns, pub_id) {
        let _ = Segment::remove(domain.name(), &super::POOL.segment(pub_id));
    }
}

/// The ids of the data segments held now. With `prune`, first ends the
/// holds nobody needs: the subscriber slot changed (its subscriber left)
/// or every held entry was read.
pub(crate) fn held_pools(view: &ServiceView<'_>, domain: &Domain, prune: bool) -> Vec<u64> {
    let mut held = Vec::new();
    let subs = view.sub_slots();
    for p in 0..view.layout.max_pub {
        for s in 0..view.layout.max_sub {
            let conn = view.conn(p, s);
            let hold = match conn.hold() {
                Ok(Some(hold)) => hold,
                Ok(None) => continue,
                // Corrupted hold words: end them (nothing can be read).
                Err(_) if prune => {
                    conn.link.kept.store(0, Ordering::SeqCst);
                    continue;
                }
                Err(_) => continue,
            };
            if prune {
                let sid = subs[s].id.load(Ordering::SeqCst);
                let gone = sid == 0 || conn.link.link.load(Ordering::Acquire) != sid;
                if gone || !conn.has_unread(hold.generation) {
                    release(view, domain, p, s, hold.pub_id);
                    continue;
                }
            }
            held.push(hold.pub_id);
        }
    }
    held
}
