//! Joining the calling thread's kernel robust-futex list, so that the
//! kernel reports the death of a lock owner (see
//! [`RobustMutex`](super::RobustMutex)).
//!
//! # What the kernel does
//!
//! When a thread exits or dies (or calls `execve`), the kernel walks the
//! list it registered with `set_robust_list` and, for every entry whose
//! futex word (at `entry + futex_offset`) still holds the thread's id in
//! bits 0–29, sets `FUTEX_OWNER_DIED` (bit 30), clears the id, keeps
//! `FUTEX_WAITERS` (bit 31) and, if that bit is set, wakes one waiter (a
//! shared futex wake, so it reaches sleepers in every process). The entry
//! named by `list_op_pending` is handled the same way, and if its word is
//! 0 (the thread died between releasing a lock and waking a waiter) one
//! waiter is woken. The id compared is the thread's id **in its own PID
//! namespace**, the one it wrote into the word, so the verdict is right
//! whatever PID namespaces the other processes are in: nobody ever looks
//! an id up.
//!
//! # Why join glibc's list
//!
//! The kernel keeps one list head per thread, and glibc registers one for
//! every thread it starts (for robust pthread mutexes) and owns it; a
//! second `set_robust_list` would replace glibc's and break its robust
//! mutexes. So conduit **joins** glibc's list: its entries have exactly the
//! layout of glibc's (`__pthread_list_t { prev, next }`, the list pointing
//! at `next`, the futex word 32 bytes before `next`), and they are linked
//! and unlinked exactly as glibc's `ENQUEUE_MUTEX_BOTH` / `DEQUEUE_MUTEX`
//! do it (at the head, doubly linked, `list_op_pending` set around each
//! change), so glibc's own robust mutexes and conduit's coexist in one
//! list. Only the owning thread changes its list (and the kernel reads it
//! when that thread dies), so plain volatile accesses with compiler fences
//! suffice, as in glibc.
//!
//! A per-owner file lock (what nodes use) was the alternative: the kernel
//! drops an `flock` when its last holder dies, in any namespace. It needs
//! a file per thread and a look-up on every contended lock, where the
//! robust list costs a few stores on the fast path and wakes the waiters
//! itself.
//!
//! # Limits
//!
//! * 64-bit glibc only. A thread whose registered list has another
//!   `futex_offset` (another C library), a 32-bit target, and builds
//!   without system calls (loom, Miri) get no list ([`thread_head`]
//!   returns 0): locks still work, but the death of their holder is never
//!   reported. A thread with no list at all (a C library that registers
//!   lazily) gets a head of conduit's own (32 bytes, leaked); should that
//!   library register its own list later (musl does on a thread's first
//!   robust pthread mutex), it replaces conduit's, and the death of that
//!   thread's conduit locks goes unreported.
//! * The kernel walks at most 2048 entries (`ROBUST_LIST_LIMIT`): a thread
//!   that dies holding more robust locks than that (glibc's and conduit's
//!   together) leaves the rest locked.
//! * The links run through shared memory, where another process may write
//!   garbage. Linking reads only the head (private memory). Unlinking
//!   follows a link only after proving that the slot it will rewrite
//!   names the entry (directly for the head and the entries this thread
//!   holds, through `process_vm_readv` otherwise), so garbage never makes
//!   a thread write outside its list; a list found broken is cut back to
//!   empty, and the thread's other held robust locks lose death reporting
//!   until they are released. Garbage can still make the kernel, when the
//!   thread dies, follow a link to another mapped address and mark a word
//!   there that holds the thread's id.
//! * An entry stays linked while its guard lives, and the list runs
//!   through the shared segment. A guard that is forgotten
//!   (`mem::forget`) leaves its entry linked: if the segment is then
//!   unmapped while the thread lives on, the thread's next robust lock
//!   operation (conduit's or glibc's) writes into the unmapped entry, as
//!   with a pthread robust mutex that is unmapped while locked.

use core::cell::UnsafeCell;

/// Offset of the futex word from a list entry: glibc's
/// `offsetof(__lock) - offsetof(__list.__next)` on 64-bit targets.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const FUTEX_OFFSET: isize = -32;

/// A list entry as glibc lays it out (`__pthread_list_t`): the owner's
/// addresses of the previous and next entries. Placed 24 bytes after the
/// lock word, so that `next` is 32 bytes after it ([`FUTEX_OFFSET`]).
///
/// Meaningful only while a thread holds the lock, and only in that
/// thread's address space; stale values of a dead or departed owner are
/// overwritten by the next owner and read by nobody else.
#[repr(C)]
pub(crate) struct ListEntry {
    prev: UnsafeCell<u64>,
    next: UnsafeCell<u64>,
}

impl ListEntry {
    /// An unlinked entry (all zero).
    pub(crate) const fn new() -> ListEntry {
        ListEntry {
            prev: UnsafeCell::new(0),
            next: UnsafeCell::new(0),
        }
    }

    /// The address the list uses for this entry: that of `next`.
    #[inline]
    pub(crate) fn addr(&self) -> usize {
        self.next.get() as usize
    }

    /// Overwrites both links, as another process writing garbage would.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn scribble(&self, prev: u64, next: u64) {
        // SAFETY: test-only; the cells are plain integers and the test
        // does not race with its own unlock.
        unsafe {
            self.prev.get().write_volatile(prev);
            self.next.get().write_volatile(next);
        }
    }
}

/// The calling thread's list head, registering one if the thread has
/// none; 0 if robust futexes are unavailable or the registered list uses
/// another futex offset. Called once per thread and once more after a
/// `fork()` (see `identity`).
#[cfg(all(not(any(loom, miri)), target_pointer_width = "64"))]
pub(crate) fn thread_head() -> usize {
    use crate::sys::futex::{RobustListHead, robust_list, set_robust_list};
    // A fork child starts with glibc's list emptied but a copy of the
    // parent's record of held entries: those are the parent's.
    imp::held_clear();
    match robust_list() {
        Ok(head) if !head.is_null() => {
            // SAFETY: the kernel returned the head this thread registered;
            // it lives as long as the thread (glibc's struct pthread).
            let offset = unsafe { core::ptr::addr_of!((*head).futex_offset).read_volatile() };
            if offset == FUTEX_OFFSET {
                head as usize
            } else {
                0
            }
        }
        Ok(_) => {
            // Laid out as glibc's: a `prev` slot right before the head,
            // written when the first entry is linked or unlinked.
            #[repr(C)]
            struct OwnHead {
                prev: usize,
                head: RobustListHead,
            }
            let own = Box::leak(Box::new(OwnHead {
                prev: 0,
                head: RobustListHead {
                    list: 0,
                    futex_offset: FUTEX_OFFSET,
                    list_op_pending: 0,
                },
            }));
            own.head.list = core::ptr::addr_of!(own.head.list) as usize;
            let head = core::ptr::addr_of_mut!(own.head);
            // SAFETY: leaked, so valid until the process ends; an empty
            // circular list is well formed.
            match unsafe { set_robust_list(head) } {
                Ok(()) => head as usize,
                Err(_) => 0,
            }
        }
        Err(_) => 0,
    }
}

/// No robust list under loom (no real thread dies), Miri (no system
/// calls) or on 32-bit targets (glibc's entries have no `prev` there).
#[cfg(not(all(not(any(loom, miri)), target_pointer_width = "64")))]
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn thread_head() -> usize {
    0
}

#[cfg(all(not(any(loom, miri)), target_pointer_width = "64"))]
mod imp {
    use core::cell::Cell;
    use core::sync::atomic::{Ordering, compiler_fence};

    use crate::sys::futex::RobustListHead;

    /// `__pthread_list_t` as glibc lays it out; entries point at `next`.
    const PREV_FROM_NEXT: usize = 8;

    /// Writes `value` at address `at`.
    ///
    /// # Safety
    /// `at` is a valid, aligned `usize` location of a list entry or head
    /// that only the calling thread writes.
    #[inline(always)]
    unsafe fn put(at: usize, value: usize) {
        // SAFETY: the caller's contract.
        unsafe { (at as *mut usize).write_volatile(value) }
    }

    /// Reads the `usize` at address `at` (same contract as [`put`]).
    #[inline(always)]
    unsafe fn get(at: usize) -> usize {
        // SAFETY: the caller's contract.
        unsafe { (at as *const usize).read_volatile() }
    }

    /// Sets `list_op_pending` to `entry` (0 clears it). No-op for head 0.
    ///
    /// # Safety
    /// `head` is 0 or the calling thread's registered head.
    #[inline(always)]
    pub(crate) unsafe fn pending(head: usize, entry: usize) {
        if head == 0 {
            return;
        }
        let head = head as *mut RobustListHead;
        compiler_fence(Ordering::SeqCst);
        // SAFETY: the caller's contract: the head is live and ours.
        unsafe { core::ptr::addr_of_mut!((*head).list_op_pending).write_volatile(entry) };
        compiler_fence(Ordering::SeqCst);
    }

    /// Links `entry` (the address of an entry's `next` field, preceded by
    /// its `prev` field) at the front of the list (glibc's
    /// `ENQUEUE_MUTEX_BOTH`). Reads only the head (private memory), never
    /// a shared entry.
    ///
    /// # Safety
    /// `head` is the calling thread's registered head; `entry` is a
    /// [`ListEntry`](super::ListEntry) address, is not linked yet, and
    /// stays mapped until [`unlink`]ed.
    #[inline(always)]
    unsafe fn link_raw(head: usize, entry: usize) {
        // SAFETY: the list and entry are valid (contract); every linked
        // entry and the head are preceded by a `prev` slot (glibc's
        // `robust_prev` for the head).
        unsafe {
            let first = get(head) & !1;
            put(first - PREV_FROM_NEXT, entry);
            put(entry, get(head));
            put(entry - PREV_FROM_NEXT, head);
            // The entry must be complete before the kernel can reach it.
            compiler_fence(Ordering::SeqCst);
            put(head, entry);
        }
    }

    /// How many entries this thread holds that [`unlink`] can vouch for
    /// without a system call; more are checked with `process_vm_readv`.
    const HELD_SLOTS: usize = 4;

    std::thread_local! {
        /// Entries of this thread's list that conduit linked and has not
        /// unlinked yet (0: free slot). Private memory: what it says can
        /// be trusted, unlike the links in the shared entries.
        static HELD: [Cell<usize>; HELD_SLOTS] = const { [const { Cell::new(0) }; HELD_SLOTS] };
    }

    /// Forgets every recorded entry (see [`super::thread_head`]).
    pub(super) fn held_clear() {
        HELD.with(|held| held.iter().for_each(|slot| slot.set(0)));
    }

    /// Records `entry` as linked by this thread (if a slot is free).
    #[inline(always)]
    fn held_insert(entry: usize) {
        HELD.with(|held| {
            if let Some(slot) = held.iter().find(|s| s.get() == 0) {
                slot.set(entry);
            }
        });
    }

    /// Forgets `entry`.
    #[inline(always)]
    fn held_remove(entry: usize) {
        HELD.with(|held| {
            if let Some(slot) = held.iter().find(|s| s.get() == entry) {
                slot.set(0);
            }
        });
    }

    /// Whether `entry` is recorded as linked by this thread (so mapped:
    /// its guard lives).
    #[inline(always)]
    fn held_contains(entry: usize) -> bool {
        entry != 0 && HELD.with(|held| held.iter().any(|s| s.get() == entry))
    }

    /// Whether the word at `slot`, which belongs to list member `member`
    /// (the head, or an entry's `next`), names `entry`: the proof that
    /// `slot` is a link of this thread's list that [`unlink`] may rewrite.
    /// The head and the entries this thread holds are read directly; any
    /// other address (a glibc mutex, or garbage another process wrote into
    /// our entry) through `process_vm_readv`, which fails instead of
    /// faulting on an unmapped address.
    ///
    /// # Safety
    /// `head` is the calling thread's registered head.
    #[inline(always)]
    unsafe fn names(head: usize, member: usize, slot: usize, entry: usize) -> bool {
        if member == head || held_contains(member) {
            // SAFETY: the head (and its `prev` slot) lives as long as the
            // thread; a held entry is mapped while its guard lives.
            unsafe { get(slot) == entry }
        } else {
            crate::sys::process::read_own_word(slot) == Ok(entry)
        }
    }

    /// Links `entry` (see [`link_raw`]) and records it as held.
    ///
    /// # Safety
    /// As for [`link_raw`].
    #[inline(always)]
    pub(crate) unsafe fn link(head: usize, entry: usize) {
        if head == 0 {
            return;
        }
        // SAFETY: the caller's contract.
        unsafe { link_raw(head, entry) };
        held_insert(entry);
    }

    /// Unlinks `entry` (glibc's `DEQUEUE_MUTEX`). No-op for head 0.
    ///
    /// The entry's `prev` and `next` are in shared memory, where another
    /// process may have written anything; following them blindly would
    /// let it make this thread write anywhere in its own memory. So each
    /// neighbour must prove it is one: its link slot must name `entry`
    /// (see [`names`]). If either does not, the list is beyond repair from
    /// here: it is cut back to empty (the kernel then reports no death of
    /// this thread's other held robust locks until they are locked again),
    /// and nothing is written through the untrusted links.
    ///
    /// # Safety
    /// `head` is 0 or the calling thread's registered head, and then
    /// `entry` was linked by [`link`] on this thread (and is mapped).
    #[inline(always)]
    pub(crate) unsafe fn unlink(head: usize, entry: usize) {
        if head == 0 {
            return;
        }
        held_remove(entry);
        // SAFETY: our own entry is mapped (contract); every write below
        // goes to a slot that `names` proved to be a link naming `entry`,
        // or to the head, which lives as long as the thread.
        unsafe {
            let next = get(entry);
            let prev = get(entry - PREV_FROM_NEXT);
            let next_member = next & !1;
            let prev_member = prev & !1;
            let next_prev_slot = next_member.wrapping_sub(PREV_FROM_NEXT);
            if names(head, next_member, next_prev_slot, entry)
                && names(head, prev_member, prev_member, entry)
            {
                put(next_prev_slot, prev);
                put(prev_member, next);
            } else {
                // Empty list: `list` and glibc's `robust_prev` name the
                // head itself.
                put(head - PREV_FROM_NEXT, head);
                compiler_fence(Ordering::SeqCst);
                put(head, head);
            }
            // glibc also zeroes the entry's own links; nothing reads them
            // once it is out of the list (the next owner overwrites them),
            // so conduit saves the two stores.
        }
    }
}

#[cfg(not(all(not(any(loom, miri)), target_pointer_width = "64")))]
mod imp {
    /// No-op without a robust list.
    ///
    /// # Safety
    /// None needed; unsafe to match the real function.
    #[inline(always)]
    pub(crate) unsafe fn pending(_head: usize, _entry: usize) {}
    /// No-op without a robust list.
    ///
    /// # Safety
    /// None needed; unsafe to match the real function.
    #[inline(always)]
    pub(crate) unsafe fn link(_head: usize, _entry: usize) {}
    /// No-op without a robust list.
    ///
    /// # Safety
    /// None needed; unsafe to match the real function.
    #[inline(always)]
    pub(crate) unsafe fn unlink(_head: usize, _entry: usize) {}
}

pub(crate) use imp::{link, pending, unlink};

#[cfg(all(test, not(any(loom, miri)), target_pointer_width = "64"))]
mod tests {
    use super::*;

    /// Linking and unlinking keep glibc's list well formed: the head
    /// points back at itself once every entry is gone, whatever the order.
    #[test]
    fn link_and_unlink_in_any_order_restore_the_head() {
        let head = thread_head();
        assert_ne!(head, 0, "glibc registers a robust list for every thread");
        // SAFETY: the thread's own head.
        let before = unsafe { (head as *const usize).read_volatile() };
        let entries: Vec<ListEntry> = (0..3).map(|_| ListEntry::new()).collect();
        // SAFETY: our head; the entries outlive their links (unlinked
        // below, before they drop).
        unsafe {
            for e in &entries {
                link(head, e.addr());
            }
            assert_eq!((head as *const usize).read_volatile(), entries[2].addr());
            unlink(head, entries[1].addr());
            unlink(head, entries[2].addr());
            unlink(head, entries[0].addr());
            assert_eq!((head as *const usize).read_volatile(), before);
        }
    }
}
