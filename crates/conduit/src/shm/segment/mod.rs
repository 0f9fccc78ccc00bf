//! Shared-memory segments: named POSIX objects and anonymous memfds, each
//! starting with a validated header.
//!
//! # Life of a named segment
//!
//! 1. The creator makes the object with `O_CREAT | O_EXCL`, takes an
//!    exclusive `flock` on it, gives it to a group if asked
//!    ([`SegmentBuilder::group`], `fchown`) and sets its mode (0600 unless
//!    asked otherwise, with `fchmod` so the umask cannot widen or narrow
//!    it). See [`Permissions`](crate::shm::Permissions).
//! 2. It reserves the memory with `posix_fallocate`, so that a full
//!    `/dev/shm` is a [`CreateError::Exhausted`]
//!    ([`Resource::SharedMemorySpace`]) now instead of a `SIGBUS` at some
//!    later first touch.
//! 3. It maps the object, writes the header and lets the caller initialise
//!    the data area, then publishes the header's state word as
//!    [`STATE_READY`] with `Release` ordering and drops the `flock`.
//! 4. An opener checks the owner (any owner for a group-shared segment),
//!    waits (bounded) for the state to become ready, then checks magic,
//!    version, size and fingerprint, and finally group and mode (set by the
//!    creator before it marked the segment ready), each mismatch with its
//!    own [`OpenError`] variant.
//!
//! If the creator dies between 1 and 3, its `flock` disappears with it. An
//! opener that finds the segment not ready *and* unlocked for longer than
//! [`ABANDON_GRACE`] reports [`OpenError::Abandoned`];
//! [`SegmentBuilder::open_or_create`] then removes the corpse (see
//! [`SegmentBuilder::remove_abandoned`]) and creates a fresh segment.
//!
//! # Names
//!
//! Every segment lives in a **domain** (the builder's
//! [`domain`](SegmentBuilder::domain), else `$CONDUIT_DOMAIN`
//! ([`DOMAIN_ENV`]), else `default`) so that tests and unrelated
//! deployments never collide. Its POSIX name is `/conduit.<domain>.<name>`:
//! the domain is `[A-Za-z0-9_-]{1,64}`, the name `[A-Za-z0-9_.-]{1,180}`
//! and does not start with `.`. Anything else is a [`NameError`].
//!
//! # Header (128 bytes, then the data area; whole pages in all)
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | 8 | `magic` | [`SEGMENT_MAGIC`], `"CONDUIT\0"` little-endian |
//! | 8 | 4 | `version` | [`FORMAT_VERSION`] |
//! | 12 | 4 | `state` | below |
//! | 16 | 8 | `size` | total bytes of the object, header included |
//! | 24 | 8 | `fingerprint` | layout fingerprint of the data area's contents (0 = unchecked) |
//! | 32 | 8 | `data_offset` | [`HEADER_SIZE`] |
//! | 40 | 4 | `creator_pid` | the creator's pid, in the creator's PID namespace (diagnostic only) |
//! | 44 | 4 | `flags` | bit 0: anonymous (memfd) |
//! | 48 | 8 | `creator_start` | the creator's start time (clock ticks since boot; diagnostic only) |
//! | 56 | 72 | reserved | zero |
//!
//! Every field is an atomic: another process may write the memory at any
//! time, so readers load each one (Relaxed, after the Acquire load of
//! `state`) and validate it. The mapping's length comes from `fstat`,
//! never from the header.
//!
//! | `state` | meaning | transition |
//! |---|---|---|
//! | 0 [`STATE_INITIALIZING`] | the creator is writing the header and the data area; openers wait | → 1 by the creator, once, with `Release`, after the header and the caller's `init` ran |
//! | 1 [`STATE_READY`] | usable | final |
//! | anything else | corrupted (no creator writes it) | openers fail at once with [`OpenError::Corrupted`] (not `Abandoned`: the header was overwritten, not left half-made) |
//!
//! # Creating
//!
//! `shm_open(O_CREAT | O_EXCL | O_RDWR)` → exclusive `flock` (held until
//! ready: it is how openers tell a live creator from a dead one) →
//! `fchown` to the group if asked (`EPERM`, the creator is not a member and
//! lacks `CAP_CHOWN`: [`CreateError::PermissionDenied`]) → `fchmod` →
//! refuse at once if `statvfs` of `/dev/shm` shows too little space →
//! `posix_fallocate` (tmpfs reserves every page now; `ENOSPC` is
//! [`CreateError::Exhausted`] with [`Resource::SharedMemorySpace`], the
//! free space and a `--shm-size` hint for Docker, never a later `SIGBUS`)
//! → `mmap` → header → `init` → `state = READY` → unlock. Any failure after
//! `shm_open` unlinks the object. `EMFILE`/`ENFILE` is
//! [`Resource::FileDescriptors`], `ENOMEM` from `mmap`
//! [`Resource::Mappings`] (both in a [`ResourceExhausted`]), each naming
//! the limit to raise.
//!
//! # Opening
//!
//! `shm_open` → owner check (at once: the owner never changes; skipped for
//! a group-shared opener, which accepts any owner) → wait for `READY`
//! (Acquire): while not ready, try a non-blocking *shared* `flock`; if it
//! succeeds the creator holds no lock, and after [`ABANDON_GRACE`] of that
//! the segment is [`OpenError::Abandoned`]; if the lock stays held past the
//! open timeout ([`DEFAULT_OPEN_TIMEOUT`]) it is
//! [`OpenError::CreationTimedOut`] → magic, version, header size against
//! object size, data offset, fingerprint → group and mode (both skipped
//! with [`SegmentBuilder::any_permissions`], which tools use). Group and
//! mode are checked only once the segment is ready because the creator sets
//! them after `O_CREAT`: an earlier look could see the umask-narrowed mode
//! of a segment in creation and report a spurious
//! [`OpenError::ModeMismatch`].
//!
//! # `open_or_create` and abandoned segments
//!
//! [`SegmentBuilder::open_or_create`] loops: try to create; on
//! `AlreadyExists` open; on `NotFound` (removed meanwhile) start again; on
//! `Abandoned` call [`SegmentBuilder::remove_abandoned`] and start again.
//! The initialiser runs in whichever round actually creates.
//! `remove_abandoned` takes the *exclusive* lock without waiting (a live
//! creator holds it: [`RemoveError::InUse`]), checks that the state is not
//! ready, re-opens the name and unlinks it only if it still refers to the
//! same inode (device, inode number). Because every remover checks and
//! unlinks under the same object's exclusive lock, two removers cannot
//! delete a segment that a third process has just created under the same
//! name.
//!
//! # Other ways to map
//!
//! * [`SegmentBuilder::read_only`] opens `O_RDONLY` and maps `PROT_READ`:
//!   a write faults (`SIGSEGV`).
//! * [`Segment::map_again`] maps the same object a second time (own
//!   descriptor, new address); data built through one mapping reads the
//!   same through the other.
//! * [`SegmentBuilder::create_anonymous`] makes a memfd with the same header,
//!   sealed with `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL` (optionally
//!   also `F_SEAL_FUTURE_WRITE` after the creator mapped it,
//!   [`SegmentBuilder::seal_future_write`]); it has no name anywhere and can
//!   be passed over a Unix socket. [`Segment::from_fd`] refuses a memfd
//!   without the shrink seal ([`OpenError::NotSealed`]): a peer could
//!   otherwise truncate it and make the receiver `SIGBUS`.
//!
//! # Removal follows the kernel
//!
//! [`Segment::unlink`] removes the name at once: nobody can open it any
//! more, and a new segment may be created under the same name. The memory
//! itself lives on until the last mapping and descriptor of it are gone, so
//! processes that have it mapped keep working undisturbed.
//!
//! # What a hostile peer can still do
//!
//! Any process allowed to open a named segment read-write can `ftruncate`
//! it; touching the lost pages then raises `SIGBUS`. Segments shared with
//! untrusted processes should be memfds sealed against shrinking
//! ([`SegmentBuilder::create_anonymous`] seals them; [`Segment::from_fd`]
//! checks the seal).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::shm::relptr::Region;
use crate::sys::{self, Errno, fd::LockKind, mman::Mapping, mman::Protection};

use builder::Init;

// The builder (creating and opening), the errors and the name rules; the
// header, whose layout and states every opener checks, stays here.
mod builder;
mod error;
mod name;

pub use builder::{Origin, SegmentBuilder};
pub(crate) use error::descriptor_hint;
pub use error::{
    CreateError, OpenError, OpenOrCreateError, RemoveError, Resource, ResourceExhausted,
};
pub use name::{
    DOMAIN_ENV, MAX_DOMAIN_LEN, MAX_NAME_LEN, NameError, default_domain, object_name,
    try_default_domain, validate_domain, validate_name,
};

/// First eight bytes of every conduit segment: `"CONDUIT"` and a NUL.
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"CONDUIT\0");
/// Version of the header format described in the module docs ("Header").
pub const FORMAT_VERSION: u32 = 1;
/// Bytes reserved for the header; the data area starts here.
pub const HEADER_SIZE: usize = 128;
/// State word value while the creator initialises the segment.
pub const STATE_INITIALIZING: u32 = 0;
/// State word value once the segment may be used.
pub const STATE_READY: u32 = 1;
/// How long an opener must see a segment both unready and unlocked before
/// it calls it abandoned. A live creator takes its lock within
/// microseconds of creating the object.
pub const ABANDON_GRACE: Duration = Duration::from_millis(100);
/// Default time an opener waits for a creator to finish.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// The segment header, at offset 0 of every segment (128 bytes).
///
/// Every field is an atomic because other processes may write the memory at
/// any time; readers load them (after the `Acquire` load of `state`) and
/// validate each value before trusting it.
///
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `magic` | [`SEGMENT_MAGIC`] |
/// | 8 | `version` | [`FORMAT_VERSION`] |
/// | 12 | `state` | [`STATE_INITIALIZING`] → [`STATE_READY`] (once, by the creator, `Release`) |
/// | 16 | `size` | total bytes of the segment, header included |
/// | 24 | `fingerprint` | layout fingerprint of the data area's contents |
/// | 32 | `data_offset` | [`HEADER_SIZE`] |
/// | 40 | `creator_pid` | process id of the creator in its own PID namespace; shown in errors, never looked up (an abandoned creation is detected through `flock`) |
/// | 44 | `flags` | bit 0: anonymous (memfd) segment |
/// | 48 | `creator_start` | creator's start time (clock ticks since boot) |
/// | 56..128 | reserved | zero |
#[repr(C, align(64))]
struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    state: AtomicU32,
    size: AtomicU64,
    fingerprint: AtomicU64,
    data_offset: AtomicU64,
    creator_pid: AtomicU32,
    flags: AtomicU32,
    creator_start: AtomicU64,
    _reserved: [AtomicU64; 9],
}

const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const FLAG_ANONYMOUS: u32 = 1;

/// A mapped shared-memory segment: a header followed by the data area.
///
/// Dropping a `Segment` unmaps it and closes its descriptor; it does not
/// remove the name (see [`Segment::unlink`]).
#[derive(Debug)]
pub struct Segment {
    name: Option<String>,
    fd: OwnedFd,
    mapping: Mapping,
    writable: bool,
}

impl Segment {
    /// Starts configuring the segment `name` (in the default domain unless
    /// [`SegmentBuilder::domain`] says otherwise).
    pub fn builder<'a>(name: &str) -> SegmentBuilder<'a> {
        SegmentBuilder::new(name)
    }

    /// Creates segment `name` in the default domain with a zeroed data area
    /// of `size` bytes.
    pub fn create(name: &str, size: usize) -> Result<Segment, CreateError> {
        Segment::builder(name).size(size).create()
    }

    /// Opens segment `name` in the default domain.
    pub fn open(name: &str) -> Result<Segment, OpenError> {
        Segment::builder(name).open()
    }

    /// Opens segment `name` in the default domain, creating it with `size`
    /// data bytes if it does not exist.
    pub fn open_or_create(name: &str, size: usize) -> Result<(Segment, Origin), OpenOrCreateError> {
        Segment::builder(name).size(size).open_or_create()
    }

    /// Adopts a segment received as a file descriptor (typically an
    /// anonymous segment passed over a Unix socket). The descriptor must
    /// be sealed against shrinking; the header is validated like
    /// [`SegmentBuilder::open`] does, with the fingerprint checked when
    /// `fingerprint` is given.
    pub fn from_fd(
        fd: OwnedFd,
        fingerprint: Option<u64>,
        read_only: bool,
    ) -> Result<Segment, OpenError> {
        let seals = sys::memfd::seals(&fd).map_err(|_| OpenError::NotSealed)?;
        if !seals.shrink {
            return Err(OpenError::NotSealed);
        }
        Segment::attach(
            fd,
            "memfd".to_owned(),
            !read_only,
            fingerprint,
            Duration::ZERO,
        )
    }

    fn attach(
        fd: OwnedFd,
        name: String,
        writable: bool,
        fingerprint: Option<u64>,
        timeout: Duration,
    ) -> Result<Segment, OpenError> {
        let os = |op: &'static str, name: &String| {
            let name = name.clone();
            move |source: Errno| OpenError::Os { op, name, source }
        };
        let prot = if writable {
            Protection::ReadWrite
        } else {
            Protection::ReadOnly
        };
        let started = Instant::now();
        let mut unlocked_since: Option<Instant> = None;
        let mut pause = Duration::from_micros(50);
        loop {
            let st = sys::fd::status(&fd).map_err(os("fstat", &name))?;
            let mut creator_pid = 0;
            if st.size >= HEADER_SIZE as u64 {
                let len = usize::try_from(st.size).map_err(|_| OpenError::Corrupted {
                    name: name.clone(),
                    reason: format!("size {} does not fit the address space", st.size),
                })?;
                let mapping = Mapping::map(&fd, len, prot)
                    .map_err(|source| OpenError::os("mmap", &name, len, source))?;
                // SAFETY: the mapping is at least HEADER_SIZE bytes and page
                // aligned; Header consists of atomics only, valid for any
                // bit pattern; the reference does not outlive `mapping`.
                let header = unsafe { &*mapping.as_ptr().cast::<Header>() };
                let state = header.state.load(Ordering::Acquire);
                if state != STATE_READY && state != STATE_INITIALIZING {
                    // Neither value a creator ever writes: the header was
                    // overwritten, not abandoned half-made.
                    return Err(OpenError::Corrupted {
                        name,
                        reason: format!(
                            "header state word is {state:#x}, neither initializing ({STATE_INITIALIZING}) nor ready ({STATE_READY})"
                        ),
                    });
                }
                if state == STATE_READY {
                    let segment = Segment {
                        name: (name != "memfd").then(|| name.clone()),
                        fd,
                        mapping,
                        writable,
                    };
                    segment.validate(st.size, fingerprint, &name)?;
                    return Ok(segment);
                }
                creator_pid = header.creator_pid.load(Ordering::Relaxed);
            }
            // Not ready. A live creator holds the exclusive lock; if we can
            // take a shared one the creator is gone (or has not locked yet,
            // a window of microseconds, hence the grace period).
            if sys::fd::flock(&fd, LockKind::Shared, false).map_err(os("flock", &name))? {
                sys::fd::funlock(&fd).map_err(os("flock", &name))?;
                let since = *unlocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= ABANDON_GRACE || timeout.is_zero() {
                    return Err(OpenError::Abandoned { name, creator_pid });
                }
            } else {
                unlocked_since = None;
            }
            if started.elapsed() >= timeout {
                return Err(OpenError::CreationTimedOut {
                    name,
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: every Segment's mapping is at least HEADER_SIZE bytes
        // (checked before construction) and page aligned; Header is all
        // atomics, so any contents are a valid value and concurrent writes
        // by other processes are not data races.
        unsafe { &*self.mapping.as_ptr().cast::<Header>() }
    }

    fn initialize(
        &self,
        fingerprint: u64,
        anonymous: bool,
        init: Option<Init<'_>>,
        name: &str,
    ) -> Result<(), CreateError> {
        let h = self.header();
        let pid = sys::process::process_id();
        h.creator_pid.store(pid, Ordering::Relaxed);
        h.creator_start.store(
            sys::process::start_time(pid).unwrap_or(0),
            Ordering::Relaxed,
        );
        h.magic.store(SEGMENT_MAGIC, Ordering::Relaxed);
        h.version.store(FORMAT_VERSION, Ordering::Relaxed);
        h.size.store(self.mapping.len() as u64, Ordering::Relaxed);
        h.fingerprint.store(fingerprint, Ordering::Relaxed);
        h.data_offset.store(HEADER_SIZE as u64, Ordering::Relaxed);
        h.flags.store(
            if anonymous { FLAG_ANONYMOUS } else { 0 },
            Ordering::Relaxed,
        );
        if let Some(init) = init {
            init(&self.data()).map_err(|reason| CreateError::InitFailed {
                name: name.to_owned(),
                reason,
            })?;
        }
        // Publishes the header and the initialised data area: an opener's
        // Acquire load of READY sees every write above.
        h.state.store(STATE_READY, Ordering::Release);
        Ok(())
    }

    fn validate(&self, actual: u64, fingerprint: Option<u64>, name: &str) -> Result<(), OpenError> {
        let h = self.header();
        let name = name.to_owned();
        let magic = h.magic.load(Ordering::Relaxed);
        if magic != SEGMENT_MAGIC {
            return Err(OpenError::BadMagic { name, found: magic });
        }
        let version = h.version.load(Ordering::Relaxed);
        if version != FORMAT_VERSION {
            return Err(OpenError::VersionMismatch {
                name,
                expected: FORMAT_VERSION,
                found: version,
            });
        }
        let size = h.size.load(Ordering::Relaxed);
        if size > actual {
            return Err(OpenError::Truncated {
                name,
                header: size,
                actual,
            });
        }
        if size != actual {
            return Err(OpenError::SizeMismatch {
                name,
                header: size,
                actual,
            });
        }
        let data_offset = h.data_offset.load(Ordering::Relaxed);
        if data_offset != HEADER_SIZE as u64 {
            return Err(OpenError::Corrupted {
                name,
                reason: format!("data offset {data_offset}, expected {HEADER_SIZE}"),
            });
        }
        let found = h.fingerprint.load(Ordering::Relaxed);
        if let Some(expected) = fingerprint {
            if found != expected {
                return Err(OpenError::FingerprintMismatch {
                    name,
                    expected,
                    found,
                });
            }
        }
        Ok(())
    }

    /// The POSIX object name (`/conduit.<domain>.<name>`), or `None` for an
    /// anonymous segment.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The segment's descriptor, e.g. to pass an anonymous segment to
    /// another process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The seals of an anonymous segment (`F_GET_SEALS`); a named
    /// segment, which cannot be sealed, reports `EINVAL`.
    pub fn seals(&self) -> Result<sys::memfd::Seals, Errno> {
        sys::memfd::seals(&self.fd)
    }

    /// Whether this mapping may be written.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Total size in bytes, header included.
    pub fn len(&self) -> usize {
        self.mapping.len()
    }

    /// Always false: a segment holds at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The layout fingerprint recorded in the header.
    pub fn fingerprint(&self) -> u64 {
        self.header().fingerprint.load(Ordering::Relaxed)
    }

    /// Process id of the creator, as recorded in the header: its id **in
    /// its own PID namespace**, so from a process of another namespace
    /// (containers sharing `/dev/shm`) it names another task or none.
    /// Informational; conduit never judges liveness by it.
    pub fn creator_pid(&self) -> u32 {
        self.header().creator_pid.load(Ordering::Relaxed)
    }

    /// The data area (everything after the header), for resolving offsets.
    /// It is writable only if [`is_writable`](Self::is_writable).
    pub fn data(&self) -> Region {
        self.whole()
            .sub(HEADER_SIZE, self.mapping.len() - HEADER_SIZE)
            .expect("a segment is larger than its header")
    }

    /// The whole mapping, header included.
    pub fn whole(&self) -> Region {
        // SAFETY: the mapping is owned by self and stays mapped as long as
        // self lives; callers that keep the Region longer are responsible
        // for that (Region::new's contract is satisfied here).
        unsafe {
            Region::new(
                core::ptr::NonNull::new(self.mapping.as_ptr()).expect("mapping is non-null"),
                self.mapping.len(),
            )
        }
    }

    /// Maps the same segment once more, at another address, with its own
    /// descriptor. Both mappings see the same memory.
    pub fn map_again(&self) -> Result<Segment, OpenError> {
        let name = self.name.clone().unwrap_or_else(|| "memfd".to_owned());
        let fd = self.fd.try_clone().map_err(|e| {
            OpenError::os(
                "dup",
                &name,
                0,
                Errno::from_io_error(&e).unwrap_or(Errno::IO),
            )
        })?;
        let prot = if self.writable {
            Protection::ReadWrite
        } else {
            Protection::ReadOnly
        };
        let mapping = Mapping::map(&fd, self.mapping.len(), prot)
            .map_err(|source| OpenError::os("mmap", &name, self.mapping.len(), source))?;
        Ok(Segment {
            name: self.name.clone(),
            fd,
            mapping,
            writable: self.writable,
        })
    }

    /// Removes the segment's name (`shm_unlink`). The memory stays valid
    /// for every process that has it mapped until the last mapping is
    /// gone; the name can be reused at once. No-op for anonymous segments.
    pub fn unlink(&self) -> Result<(), Errno> {
        match &self.name {
            Some(name) => sys::shm::unlink(name),
            None => Ok(()),
        }
    }

    /// Removes segment `name` of `domain` by name, whatever its state.
    pub fn remove(domain: &str, name: &str) -> Result<(), RemoveError> {
        let object = object_name(domain, name)?;
        sys::shm::unlink(&object).map_err(|source| match source {
            Errno::NOENT => RemoveError::NotFound { name: object },
            Errno::ACCESS | Errno::PERM => RemoveError::PermissionDenied {
                name: object,
                source,
            },
            _ => RemoveError::Os {
                op: "shm_unlink",
                name: object,
                source,
            },
        })
    }
}
