//! [`ShmHashMap`]: an open-addressing hash map in shared memory.

use core::hash::{Hash, Hasher};
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use super::{
    ContainerError, Context, StableHasher, View, bad, cast, check_disjoint, generic_layout,
    to_usize,
};
use crate::shm::alloc::commit_point;
use crate::shm::relptr::Offset;
use crate::shm::shm_safe::{ShmSafe, TypeLayout};

const EMPTY: u64 = 0;
const FULL: u64 = 1;
const DELETED: u64 = 2;
const MIN_CAPACITY: usize = 8;

/// One slot of a [`ShmHashMap`].
///
/// Layout (`#[repr(C)]`): `state: u64` (0 empty, 1 full, 2 deleted; any
/// other value is corruption), `key: K`, `value: V`.
#[repr(C)]
pub struct Slot<K, V> {
    state: u64,
    key: K,
    value: V,
}

// SAFETY: repr(C): a u64 and two ShmSafe fields; padding bytes are never
// read; every bit pattern of the fields is valid (state checked on use).
unsafe impl<K: ShmSafe, V: ShmSafe> ShmSafe for Slot<K, V> {
    const LAYOUT: TypeLayout = generic_layout(
        "Slot",
        size_of::<Self>(),
        align_of::<Self>(),
        &[K::LAYOUT.fingerprint, V::LAYOUT.fingerprint],
    );
}

/// A hash map from `K` to `V` stored in the heap of a region: open
/// addressing with linear probing and tombstones, capacity a power of
/// two, grown at 3/4 load.
///
/// Keys are hashed with [`StableHasher`] (FNV-1a), which gives the same
/// slot in every process; `K`'s `Hash` impl must be deterministic (the
/// integer types, arrays and `#[derive(Hash)]` over them are).
///
/// Layout (`#[repr(C)]`, 32 bytes): `slots: Offset<Slot<K, V>>`,
/// `capacity: u64`, `len: u64`, `tombstones: u64`.
#[repr(C)]
pub struct ShmHashMap<K, V> {
    slots: Offset<Slot<K, V>>,
    capacity: u64,
    len: u64,
    tombstones: u64,
    _marker: PhantomData<(K, V)>,
}

// SAFETY: repr(C): four u64 words, all validated on use.
unsafe impl<K: ShmSafe, V: ShmSafe> ShmSafe for ShmHashMap<K, V> {
    const LAYOUT: TypeLayout = generic_layout(
        "ShmHashMap",
        size_of::<Self>(),
        align_of::<Self>(),
        &[K::LAYOUT.fingerprint, V::LAYOUT.fingerprint],
    );
}

impl<K, V> Default for ShmHashMap<K, V> {
    fn default() -> Self {
        ShmHashMap {
            slots: Offset::NULL,
            capacity: 0,
            len: 0,
            tombstones: 0,
            _marker: PhantomData,
        }
    }
}

impl<K, V> core::fmt::Debug for ShmHashMap<K, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShmHashMap")
            .field("slots", &self.slots)
            .field("capacity", &self.capacity)
            .field("len", &self.len)
            .field("tombstones", &self.tombstones)
            .finish()
    }
}

/// A slot found by a lookup: the validated slot array and the index.
type Found<K, V> = Option<(NonNull<Slot<K, V>>, usize)>;

fn hash_of<K: Hash>(key: &K) -> u64 {
    let mut h = StableHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl<K: ShmSafe + Eq + Hash, V: ShmSafe> ShmHashMap<K, V> {
    /// An empty map with no storage.
    pub fn new() -> ShmHashMap<K, V> {
        ShmHashMap::default()
    }

    /// Recorded number of entries (not validated).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the recorded length is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Recorded capacity in slots.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Validates the header; returns the slot array and its length.
    fn storage(&self, view: &View) -> Result<(NonNull<Slot<K, V>>, usize), ContainerError> {
        let region = view.region();
        let cap = to_usize(self.capacity)?;
        if self.slots.is_null() {
            if cap != 0 || self.len != 0 {
                return Err(ContainerError::LengthExceedsCapacity {
                    len: self.len,
                    capacity: 0,
                });
            }
            return Ok((NonNull::dangling(), 0));
        }
        if !cap.is_power_of_two() {
            return Err(ContainerError::BadCapacity {
                capacity: self.capacity,
            });
        }
        if self.len.saturating_add(self.tombstones) > self.capacity {
            return Err(ContainerError::LengthExceedsCapacity {
                len: self.len.saturating_add(self.tombstones),
                capacity: self.capacity,
            });
        }
        let off = to_usize(self.slots.raw())?;
        let p = region
            .resolve_slice::<Slot<K, V>>(off, cap)
            .map_err(bad("hash map slots"))?;
        let bytes = size_of::<Slot<K, V>>()
            .checked_mul(cap)
            .ok_or(ContainerError::CapacityOverflow)?;
        check_disjoint(region, self, self.slots.raw(), bytes, "hash map")?;
        view.check(self.slots.raw(), bytes, "hash map")?;
        Ok((p, cap))
    }

    fn state(p: NonNull<Slot<K, V>>, i: usize) -> Result<u64, ContainerError> {
        // SAFETY: callers pass `i < capacity` of a validated slot array;
        // reading the u64 state by value creates no reference.
        let s = unsafe { ptr::read(&raw const (*p.as_ptr().add(i)).state) };
        if s > DELETED {
            return Err(ContainerError::BadSlotState {
                index: i as u64,
                state: s,
            });
        }
        Ok(s)
    }

    /// Slot index holding `key`, if any. At most `capacity` probes.
    fn find(&self, view: &View, key: &K) -> Result<Found<K, V>, ContainerError> {
        let (p, cap) = self.storage(view)?;
        if cap == 0 {
            return Ok(None);
        }
        let mask = cap - 1;
        let mut i = hash_of(key) as usize & mask;
        for _ in 0..cap {
            match Self::state(p, i)? {
                EMPTY => return Ok(None),
                // SAFETY: `i < cap`; a full slot's key is a valid `K`
                // (every bit pattern is), borrowed only for the comparison.
                FULL if unsafe { &(*p.as_ptr().add(i)).key } == key => return Ok(Some((p, i))),
                _ => {}
            }
            i = (i + 1) & mask;
        }
        Ok(None)
    }

    /// The value for `key`.
    pub fn get<'a>(
        &'a self,
        view: impl Into<View>,
        key: &K,
    ) -> Result<Option<&'a V>, ContainerError> {
        Ok(self.find(&view.into(), key)?.map(|(p, i)| {
            // SAFETY: slot `i` is inside the validated array and full.
            unsafe { &(*p.as_ptr().add(i)).value }
        }))
    }

    /// The value for `key`, mutably.
    pub fn get_mut<'a>(
        &'a mut self,
        ctx: &Context<'_>,
        key: &K,
    ) -> Result<Option<&'a mut V>, ContainerError> {
        Ok(self.find(&ctx.view(), key)?.map(|(p, i)| {
            // SAFETY: as in `get`; `&mut self` makes this the only access.
            unsafe { &mut (*p.as_ptr().add(i)).value }
        }))
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, view: impl Into<View>, key: &K) -> Result<bool, ContainerError> {
        Ok(self.find(&view.into(), key)?.is_some())
    }

    /// Puts `(key, value)` into the first free or deleted slot of its probe
    /// sequence; the caller made sure one exists.
    fn place(p: NonNull<Slot<K, V>>, cap: usize, key: K, value: V) -> Result<bool, ContainerError> {
        let mask = cap - 1;
        let mut i = hash_of(&key) as usize & mask;
        for _ in 0..cap {
            let s = Self::state(p, i)?;
            if s != FULL {
                // Key and value first, then the state that publishes them:
                // a process killed in between leaves the slot as it was.
                // SAFETY: `i < cap` in a validated slot array; the fields
                // are written in place through raw pointers.
                unsafe {
                    let slot = p.as_ptr().add(i);
                    ptr::write(&raw mut (*slot).key, key);
                    ptr::write(&raw mut (*slot).value, value);
                    commit_point();
                    ptr::write(&raw mut (*slot).state, FULL);
                };
                return Ok(s == DELETED);
            }
            i = (i + 1) & mask;
        }
        Err(ContainerError::LengthExceedsCapacity {
            len: cap as u64 + 1,
            capacity: cap as u64,
        })
    }

    /// Moves every entry into a fresh slot array of `new_cap` slots.
    fn rehash(&mut self, ctx: &mut Context<'_>, new_cap: usize) -> Result<(), ContainerError> {
        let (old, cap) = self.storage(&ctx.view())?;
        let bytes = new_cap
            .checked_mul(size_of::<Slot<K, V>>())
            .ok_or(ContainerError::CapacityOverflow)?;
        let off = ctx
            .heap
            .allocate(&ctx.region, bytes, align_of::<Slot<K, V>>())?;
        let new = ctx
            .region
            .resolve_slice::<Slot<K, V>>(off.raw() as usize, new_cap)
            .map_err(bad("hash map slots"))?;
        for i in 0..new_cap {
            // SAFETY: `i < new_cap` inside the fresh allocation.
            unsafe { ptr::write(&raw mut (*new.as_ptr().add(i)).state, EMPTY) };
        }
        let mut moved = 0u64;
        for i in 0..cap {
            if Self::state(old, i)? == FULL {
                // SAFETY: slot `i` of the old array is full; its key and
                // value are moved (bitwise) into the new array, and the old
                // array is freed below.
                let Slot { key, value, .. } = unsafe { ptr::read(old.as_ptr().add(i)) };
                Self::place(new, new_cap, key, value)?;
                moved += 1;
            }
        }
        // Switch to the new array, and only then free the old one: a
        // process killed at any point leaves the map on a valid array (at
        // worst one block leaks). The array before its capacity (never
        // smaller than the old one), so a death in between is safe.
        let old_slots = self.slots;
        commit_point();
        self.slots = cast(off);
        commit_point();
        self.capacity = new_cap as u64;
        self.len = moved;
        self.tombstones = 0;
        commit_point();
        if !old_slots.is_null() {
            ctx.heap.deallocate(&ctx.region, cast(old_slots))?;
        }
        Ok(())
    }

    /// Inserts or replaces; returns the previous value for `key`.
    pub fn insert(
        &mut self,
        ctx: &mut Context<'_>,
        key: K,
        value: V,
    ) -> Result<Option<V>, ContainerError> {
        if let Some((p, i)) = self.find(&ctx.view(), &key)? {
            // SAFETY: slot `i` is full and inside the validated array.
            return Ok(Some(unsafe {
                ptr::replace(&raw mut (*p.as_ptr().add(i)).value, value)
            }));
        }
        let cap = to_usize(self.capacity)?;
        let used = to_usize(self.len.saturating_add(self.tombstones))?;
        // `len`, `tombstones` and `capacity` come from the region and may
        // be garbage: no arithmetic here may overflow (a bogus size then
        // fails in `rehash` or `storage` with an error).
        if used.saturating_add(1).saturating_mul(4) > cap.saturating_mul(3) {
            let live = to_usize(self.len)?.saturating_add(1);
            let new_cap = if live.saturating_mul(2) > cap {
                cap.saturating_mul(2)
            } else {
                cap
            };
            self.rehash(ctx, new_cap.max(MIN_CAPACITY))?;
        }
        let (p, cap) = self.storage(&ctx.view())?;
        if Self::place(p, cap, key, value)? {
            self.tombstones = self.tombstones.saturating_sub(1);
        }
        self.len = self.len.saturating_add(1);
        Ok(None)
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, ctx: &mut Context<'_>, key: &K) -> Result<Option<V>, ContainerError> {
        let Some((p, i)) = self.find(&ctx.view(), key)? else {
            return Ok(None);
        };
        // SAFETY: slot `i` is full and inside the validated array; the
        // value is moved out and the slot marked deleted.
        let value = unsafe {
            ptr::write(&raw mut (*p.as_ptr().add(i)).state, DELETED);
            ptr::read(&raw const (*p.as_ptr().add(i)).value)
        };
        self.len = self.len.saturating_sub(1);
        self.tombstones = self.tombstones.saturating_add(1);
        Ok(Some(value))
    }

    /// Iterates over the entries in slot order (validated up front;
    /// each slot's state is checked as it is reached).
    pub fn iter<'a>(&'a self, view: impl Into<View>) -> Result<MapIter<'a, K, V>, ContainerError> {
        let (slots, cap) = self.storage(&view.into())?;
        Ok(MapIter {
            slots,
            cap,
            index: 0,
            done: false,
            _map: PhantomData,
        })
    }

    /// Returns the slot array to the heap; the map becomes empty.
    pub fn free(&mut self, ctx: &mut Context<'_>) -> Result<(), ContainerError> {
        // Forget the array first (a death before the free leaks it).
        let old = self.slots;
        *self = ShmHashMap::new();
        commit_point();
        if !old.is_null() {
            ctx.heap.deallocate(&ctx.region, cast(old))?;
        }
        Ok(())
    }
}

/// Iterator over a [`ShmHashMap`]'s entries; yields `Err` once (then
/// stops) at a slot with an invalid state.
pub struct MapIter<'a, K, V> {
    slots: NonNull<Slot<K, V>>,
    cap: usize,
    index: usize,
    done: bool,
    _map: PhantomData<&'a ShmHashMap<K, V>>,
}

impl<'a, K: ShmSafe + Eq + Hash, V: ShmSafe> Iterator for MapIter<'a, K, V> {
    type Item = Result<(&'a K, &'a V), ContainerError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done && self.index < self.cap {
            let i = self.index;
            self.index += 1;
            match ShmHashMap::<K, V>::state(self.slots, i) {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(FULL) => {
                    // SAFETY: `i < cap` of the array validated by `iter`;
                    // the references live as long as the map's borrow.
                    let slot = unsafe { &*self.slots.as_ptr().add(i) };
                    return Some(Ok((&slot.key, &slot.value)));
                }
                Ok(_) => {}
            }
        }
        None
    }
}
