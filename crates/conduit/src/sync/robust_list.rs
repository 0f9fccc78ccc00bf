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
//!   garbage. Linking and unlinking rewrite a neighbour's slot only after
//!   proving that it holds the link it must (the head, for the first
//!   entry's `prev`; the entry being unlinked, for its neighbours):
//!   directly for the head and the protected entries this thread holds,
//!   through `process_vm_readv` otherwise, so garbage never makes
//!   a thread write outside its list; a list found broken is cut back to
//!   empty, and the thread's other held robust locks lose death reporting
//!   until they are released. Garbage can still make the kernel, when the
//!   thread dies, follow a link to another mapped address and mark a word
//!   there that holds the thread's id.
//! * An entry stays linked while its guard lives. A guard that is
//!   forgotten (`mem::forget`, `ManuallyDrop`, an `Rc` cycle) leaves its
//!   entry linked for good, and its memory may then go away while the
//!   thread lives on; see "Forgotten guards" below.
//! * Unprotected entries (below) that were forgotten and whose memory was
//!   then freed and reused stay in the list until the thread exits: when
//!   it does, the kernel follows them and sets `FUTEX_OWNER_DIED` in a
//!   word 32 bytes before one of them if that word holds the thread's id,
//!   as it does for garbage another process wrote into a link.
//! * The registries below take a `std` mutex on the slow paths (mapping,
//!   unmapping, a thread's first lock). A child forked from a process
//!   whose other thread held one at that instant blocks there; looking a
//!   range up ([`link`]) only tries the lock and falls back to
//!   *unprotected*.
//!
//! # Forgotten guards
//!
//! `mem::forget` is safe, so no memory unsafety may follow from it: the
//! thread's list must never make the thread (or the kernel, for conduit's
//! own mappings) write into memory that is gone. Each linked entry is
//! recorded in a per-thread record (private memory, readable by other
//! threads), as *protected* or *unprotected*:
//!
//! * **Protected**: the whole mutex lies in a live conduit mapping
//!   (`sys::mman::Mapping`, which every segment uses). When a `Mapping`
//!   is dropped it asks [`unmapping`], which scans every thread's record:
//!   an entry inside the range can only be a forgotten one (no guard can
//!   borrow a mapping that is being dropped), and then the mapping is
//!   **leaked** instead of unmapped, exactly as a forgotten `std` guard
//!   leaks. So a protected entry is mapped for as long as it is recorded,
//!   and [`link`] and [`unlink`] read and write it directly: the fast
//!   path makes no system call.
//! * **Unprotected**: anything else: a mutex on the heap or a stack, or in
//!   memory the caller mapped itself. Such memory can go away without
//!   conduit seeing it (a freed `Box`, a `ManuallyDrop`, a mutex moved to
//!   another place after its guard was forgotten), so nothing is ever
//!   written into an unprotected entry other than the caller's own
//!   (borrowed) one without first reading, through `process_vm_readv`
//!   (which fails instead of faulting), that the slot holds the very link
//!   it must hold (the head, for the first entry's `prev`; the entry being
//!   unlinked, for its neighbours). A slot that does not is not a link of
//!   this list any more, and the list is cut back to empty: death
//!   reporting of the thread's other held locks is lost, memory safety
//!   never. The check costs a system call only when such an entry is a
//!   neighbour (another unprotected or a glibc robust lock is held). It
//!   is a proof by value, the standard the checks against garbage use:
//!   private memory that took the freed place and holds, at that very
//!   offset, exactly this thread's head address or the entry's address
//!   would pass it.
//!
//!   **The hole that remains (unprotected entries only):** a freed block
//!   that still holds its old bytes, because nobody reused it yet, passes
//!   the proof, and the next link or unlink writes one word into freed
//!   memory. That is undefined behaviour, and AddressSanitizer reports it
//!   (its quarantine keeps freed bytes intact; `.ci/sanitizers` skips that
//!   one test and says why). Under glibc's malloc the block is reused, its
//!   bytes change, and the proof fails. So a forgotten guard of a
//!   `RobustMutex` in a conduit segment is sound, and one on the heap, on
//!   a stack or in self-mapped memory is not yet: do not forget such
//!   guards. Closing it needs its own design, for example never linking
//!   entries outside conduit mappings, at the price of their death
//!   reporting.
//!
//! Whether a range is a live conduit mapping is cached per thread (four
//! ranges, and the last address found outside them all) with the
//! process-wide generation they were read at; every removal of a mapping
//! bumps the generation before the `munmap`, so a stale range is never
//! trusted (a stale miss only costs speed). A range can only be reused by an `mmap`
//! that the kernel orders after that `munmap`, and a mutex placed there
//! reaches another thread only through synchronisation, which carries
//! the new generation with it. Falling back to *unprotected* is always
//! safe, only slower.

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
            if offset == FUTEX_OFFSET { head as usize } else { 0 }
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
    use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, compiler_fence};
    use std::sync::{Mutex, MutexGuard};

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
    /// `head` is the calling thread's registered head, whose first member
    /// may be written (the head, a protected entry, or proven by [`link`]);
    /// `entry` is a [`ListEntry`](super::ListEntry) address, is not linked
    /// yet, and stays mapped until [`unlink`]ed.
    #[inline(always)]
    unsafe fn link_raw(head: usize, entry: usize) {
        // SAFETY: the first member's `prev` slot may be written and the
        // entry is mapped (contract); every linked entry and the head are
        // preceded by a `prev` slot (glibc's `robust_prev` for the head).
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

    /// How many linked entries a thread records without a lock; more go to
    /// its record's `spill` list (slower, and rare: that many robust locks
    /// held at once, or forgotten).
    const HELD_SLOTS: usize = 8;

    /// How many mapping ranges a thread remembers as live.
    const CACHE_SLOTS: usize = 4;

    /// The entries one thread has linked and not unlinked yet (0: free
    /// slot). Written only by that thread; read by any thread that unmaps
    /// a mapping (see [`unmapping`]). Leaked, and reused by a later thread
    /// once its thread has exited with every slot free.
    ///
    /// A recorded value is the entry's address, with bit 0 set for an
    /// unprotected entry (see the module docs).
    struct Record {
        held: [AtomicUsize; HELD_SLOTS],
        /// Recorded entries beyond `held`.
        spill: Mutex<Vec<usize>>,
        /// Whether `spill` may be non-empty; set and cleared by the owning
        /// thread only, so that it looks there only then.
        spilled: AtomicBool,
        /// Claimed by no thread.
        free: AtomicBool,
    }

    impl Record {
        /// Records `value`.
        #[inline(always)]
        fn insert(&self, value: usize) {
            match self.held.iter().find(|s| s.load(Ordering::Relaxed) == 0) {
                Some(slot) => slot.store(value, Ordering::Relaxed),
                None => self.insert_spill(value),
            }
        }

        #[cold]
        fn insert_spill(&self, value: usize) {
            lock(&self.spill).push(value);
            self.spilled.store(true, Ordering::Relaxed);
        }

        /// Forgets `entry` (either form); whether it was recorded.
        #[inline(always)]
        fn remove(&self, entry: usize) -> bool {
            match self.held.iter().find(|s| s.load(Ordering::Relaxed) & !1 == entry) {
                Some(slot) => {
                    slot.store(0, Ordering::Relaxed);
                    true
                }
                None => self.spilled.load(Ordering::Relaxed) && self.remove_spill(entry),
            }
        }

        #[cold]
        fn remove_spill(&self, entry: usize) -> bool {
            let mut spill = lock(&self.spill);
            let found = spill.iter().position(|&v| v & !1 == entry);
            if let Some(i) = found {
                spill.swap_remove(i);
            }
            if spill.is_empty() {
                self.spilled.store(false, Ordering::Relaxed);
            }
            found.is_some()
        }

        /// Whether `entry` is recorded as protected.
        #[inline(always)]
        fn contains_protected(&self, entry: usize) -> bool {
            self.held.iter().any(|s| s.load(Ordering::Relaxed) == entry)
                || (self.spilled.load(Ordering::Relaxed) && lock(&self.spill).contains(&entry))
        }

        /// Whether any recorded entry lies in `[start, end)`.
        fn any_in(&self, start: usize, end: usize) -> bool {
            let inside = |v: usize| (start..end).contains(&(v & !1));
            self.held.iter().any(|s| inside(s.load(Ordering::Relaxed)))
                || lock(&self.spill).iter().any(|&v| inside(v))
        }

        /// Whether nothing is recorded.
        fn is_empty(&self) -> bool {
            self.held.iter().all(|s| s.load(Ordering::Relaxed) == 0) && lock(&self.spill).is_empty()
        }

        /// Forgets everything.
        fn clear(&self) {
            self.held.iter().for_each(|s| s.store(0, Ordering::Relaxed));
            lock(&self.spill).clear();
            self.spilled.store(false, Ordering::Relaxed);
        }
    }

    /// Every [`Record`] ever made.
    static RECORDS: Mutex<Vec<&'static Record>> = Mutex::new(Vec::new());

    /// The live conduit mappings, as `[start, end)`.
    static MAPPINGS: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

    /// Bumped (under the `MAPPINGS` lock) whenever a mapping is removed
    /// from `MAPPINGS`: a thread's cached ranges are valid only while it
    /// has not changed. Starts at 1; a thread's cache starts at 0 (empty).
    static GENERATION: AtomicU64 = AtomicU64::new(1);

    /// Bumped (under the `MAPPINGS` lock) whenever a mapping is added: a
    /// thread's cached miss is valid only while it has not changed (a
    /// stale miss would only be slower, never unsafe).
    static ADDED: AtomicU64 = AtomicU64::new(1);

    /// Locks a registry, ignoring poisoning (every critical section leaves
    /// its vector consistent).
    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a thread knows privately.
    struct Local {
        /// This thread's record, made on its first link.
        record: Cell<Option<&'static Record>>,
        /// The `GENERATION` the cached ranges were read at.
        generation: Cell<u64>,
        /// Ranges of live conduit mappings, `(start, end)`; (0, 0): empty.
        ranges: [Cell<(usize, usize)>; CACHE_SLOTS],
        /// The range slot to overwrite next.
        victim: Cell<usize>,
        /// The last entry found outside every mapping (0: none).
        miss: Cell<usize>,
        /// The `ADDED` count `miss` was found at.
        miss_added: Cell<u64>,
    }

    /// Frees the thread's record at thread exit if it holds no entry; a
    /// record that does (a guard that was forgotten) stays claimed for
    /// good, so the mappings of its entries are never unmapped.
    struct ExitHook;

    impl Drop for ExitHook {
        fn drop(&mut self) {
            let _ = LOCAL.try_with(|local| {
                if let Some(record) = local.record.get() {
                    if record.is_empty() {
                        local.record.set(None);
                        record.free.store(true, Ordering::Release);
                    }
                }
            });
        }
    }

    std::thread_local! {
        static LOCAL: Local = const {
            Local {
                record: Cell::new(None),
                generation: Cell::new(0),
                ranges: [const { Cell::new((0, 0)) }; CACHE_SLOTS],
                victim: Cell::new(0),
                miss: Cell::new(0),
                miss_added: Cell::new(0),
            }
        };
        static EXIT: ExitHook = const { ExitHook };
    }

    /// The calling thread's record, claiming or making one.
    #[cold]
    fn claim_record(local: &Local) -> &'static Record {
        let mut records = lock(&RECORDS);
        let record = match records.iter().find(|r| {
            r.free
                .compare_exchange(true, false, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        }) {
            Some(r) => *r,
            None => {
                let r: &'static Record = Box::leak(Box::new(Record {
                    held: [const { AtomicUsize::new(0) }; HELD_SLOTS],
                    spill: Mutex::new(Vec::new()),
                    spilled: AtomicBool::new(false),
                    free: AtomicBool::new(false),
                }));
                records.push(r);
                r
            }
        };
        drop(records);
        local.record.set(Some(record));
        // Registers the exit hook; after the thread's destructors began
        // it may be gone, and the record then simply stays claimed.
        let _ = EXIT.try_with(|_| ());
        record
    }

    /// Whether `[lo, hi)` lies inside one live conduit mapping.
    #[inline(always)]
    fn in_mapping(local: &Local, lo: usize, hi: usize) -> bool {
        if local.generation.get() == GENERATION.load(Ordering::Acquire) {
            for range in &local.ranges {
                let (start, end) = range.get();
                if start <= lo && hi <= end {
                    return true;
                }
            }
            if local.miss.get() == lo && local.miss_added.get() == ADDED.load(Ordering::Relaxed) {
                return false;
            }
        }
        in_mapping_slow(local, lo, hi)
    }

    /// Looks `[lo, hi)` up in the registry, caching the range found. Only
    /// tries the lock (see the module docs on `fork`): "no" is always safe.
    #[cold]
    fn in_mapping_slow(local: &Local, lo: usize, hi: usize) -> bool {
        let mappings = match MAPPINGS.try_lock() {
            Ok(m) => m,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        let generation = GENERATION.load(Ordering::Relaxed);
        if local.generation.get() != generation {
            local.ranges.iter().for_each(|r| r.set((0, 0)));
            local.miss.set(0);
            local.generation.set(generation);
        }
        match mappings.iter().find(|&&(start, end)| start <= lo && hi <= end) {
            Some(&range) => {
                let victim = local.victim.get();
                local.ranges[victim].set(range);
                local.victim.set((victim + 1) % CACHE_SLOTS);
                true
            }
            None => {
                local.miss.set(lo);
                local.miss_added.set(ADDED.load(Ordering::Relaxed));
                false
            }
        }
    }

    /// Records `[start, start + len)` as a live conduit mapping (called by
    /// `sys::mman::Mapping` right after `mmap`).
    pub(crate) fn mapped(start: usize, len: usize) {
        let mut mappings = lock(&MAPPINGS);
        mappings.push((start, start.saturating_add(len)));
        // Cached misses may lie in the new range.
        ADDED.fetch_add(1, Ordering::Relaxed);
    }

    /// Called by `sys::mman::Mapping` before it unmaps
    /// `[start, start + len)`: forgets the mapping and says whether it may
    /// be unmapped. It may not while any thread's record holds an entry in
    /// it: that entry is still in the thread's robust list (its guard was
    /// forgotten, as no guard can borrow a mapping being dropped), so the
    /// mapping is leaked instead, as a forgotten `std` guard leaks.
    pub(crate) fn unmapping(start: usize, len: usize) -> bool {
        let end = start.saturating_add(len);
        {
            let mut mappings = lock(&MAPPINGS);
            if let Some(i) = mappings.iter().position(|&r| r == (start, end)) {
                mappings.swap_remove(i);
            }
            GENERATION.fetch_add(1, Ordering::SeqCst);
        }
        // Relaxed loads suffice: a thread's link into this mapping happened
        // before the mapping's owner could drop it (whatever ended the
        // borrow synchronised), and nobody links into it any more.
        !lock(&RECORDS).iter().any(|r| r.any_in(start, end))
    }

    /// Forgets every recorded entry (see [`super::thread_head`]).
    pub(super) fn held_clear() {
        let _ = LOCAL.try_with(|local| {
            if let Some(record) = local.record.get() {
                record.clear();
            }
        });
    }

    /// Whether `entry` is recorded as linked by this thread and protected
    /// (so mapped: it is in a conduit mapping, which is not unmapped while
    /// the entry is recorded).
    #[inline(always)]
    fn held_contains(entry: usize) -> bool {
        entry != 0
            && LOCAL
                .try_with(|local| {
                    local.record.get().is_some_and(|record| record.contains_protected(entry))
                })
                .unwrap_or(false)
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
            // thread; a protected entry's mapping is never unmapped while
            // it is recorded (see `unmapping`).
            unsafe { get(slot) == entry }
        } else {
            crate::sys::process::read_own_word(slot) == Ok(entry)
        }
    }

    /// Links `entry` (see [`link_raw`]) and records it as held.
    ///
    /// An entry in a live conduit mapping is recorded as is: *protected*,
    /// its mapping is not unmapped while it is recorded, so [`names`] and
    /// this function trust it. Any other entry (the heap, a stack, memory
    /// the caller mapped itself) is recorded with bit 0 set: *unprotected*,
    /// its memory may be freed without notice (a forgotten guard, a mutex
    /// moved or in `ManuallyDrop`), so nothing is ever written into it
    /// without a proof read through `process_vm_readv` first.
    ///
    /// # Safety
    /// `head` is 0 or the calling thread's registered head; `entry` is a
    /// [`ListEntry`](super::ListEntry) address of a mutex this thread
    /// just locked (so not linked yet) and borrows.
    #[inline(always)]
    pub(crate) unsafe fn link(head: usize, entry: usize) {
        if head == 0 {
            return;
        }
        let _ = LOCAL.try_with(|local| {
            let record = match local.record.get() {
                Some(r) => r,
                None => claim_record(local),
            };
            // The whole mutex header: the lock word is 32 bytes before
            // `next`, `next` ends 8 bytes after it.
            let lo = entry.wrapping_add_signed(super::FUTEX_OFFSET);
            let protected = in_mapping(local, lo, entry + 8);
            record.insert(entry | usize::from(!protected));
            // SAFETY: the head is ours (contract); read only.
            let first = unsafe { get(head) } & !1;
            // SAFETY: `first`'s `prev` slot is written only once proven:
            // it is the head's (lives as long as the thread), a protected
            // entry's (mapped while recorded), or names the head, as the
            // first entry's `prev` does (read without faulting).
            unsafe {
                if first != head
                    && !held_contains(first)
                    && crate::sys::process::read_own_word(first.wrapping_sub(PREV_FROM_NEXT))
                        != Ok(head)
                {
                    // Not provably a live entry (a forgotten one whose
                    // memory is gone): cut the list back to empty.
                    put(head - PREV_FROM_NEXT, head);
                    compiler_fence(Ordering::SeqCst);
                    put(head, head);
                }
                link_raw(head, entry);
            }
        });
    }

    /// Forgets `entry`; whether it was recorded (linked).
    #[inline(always)]
    fn held_remove(entry: usize) -> bool {
        LOCAL
            .try_with(|local| {
                let Some(record) = local.record.get() else {
                    return false;
                };
                record.remove(entry)
            })
            .unwrap_or(false)
    }

    /// Unlinks `entry` (glibc's `DEQUEUE_MUTEX`) if [`link`] linked it.
    /// No-op for head 0.
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
    /// `entry` was passed to [`link`] on this thread and is still
    /// borrowed (mapped).
    #[inline(always)]
    pub(crate) unsafe fn unlink(head: usize, entry: usize) {
        if head == 0 || !held_remove(entry) {
            return;
        }
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
    /// Nothing to record without a robust list.
    #[cfg_attr(any(loom, miri), allow(dead_code))]
    pub(crate) fn mapped(_start: usize, _len: usize) {}
    /// Any mapping may be unmapped: nothing is ever linked.
    #[cfg_attr(any(loom, miri), allow(dead_code))]
    pub(crate) fn unmapping(_start: usize, _len: usize) -> bool {
        true
    }
}

pub(crate) use imp::{link, mapped, pending, unlink, unmapping};

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
