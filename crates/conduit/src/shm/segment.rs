//! Shared-memory segments: named POSIX objects and anonymous memfds, each
//! starting with a validated header.
//!
//! # Life of a named segment
//!
//! 1. The creator makes the object with `O_CREAT | O_EXCL`, takes an
//!    exclusive `flock` on it, gives it to a group if asked
//!    ([`SegmentBuilder::group`], `fchown`) and sets its mode (0600 unless
//!    asked otherwise, with `fchmod` so the umask cannot widen or narrow
//!    it). See [`Permissions`].
//! 2. It reserves the memory with `posix_fallocate`, so that a full
//!    `/dev/shm` is an [`CreateError::InsufficientSpace`] now instead of a
//!    `SIGBUS` at some later first touch.
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
//! | 40 | 4 | `creator_pid` | the creator's pid |
//! | 44 | 4 | `flags` | bit 0: anonymous (memfd) |
//! | 48 | 8 | `creator_start` | the creator's start time (clock ticks since boot) |
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
//! | anything else | corrupted | openers treat it as never ready (→ [`OpenError::Abandoned`] once the creator's lock is gone) |
//!
//! # Creating
//!
//! `shm_open(O_CREAT | O_EXCL | O_RDWR)` → exclusive `flock` (held until
//! ready: it is how openers tell a live creator from a dead one) →
//! `fchown` to the group if asked (`EPERM`, the creator is not a member and
//! lacks `CAP_CHOWN`: [`CreateError::PermissionDenied`]) → `fchmod` →
//! refuse at once if `statvfs` of `/dev/shm` shows too little space →
//! `posix_fallocate` (tmpfs reserves every page now; `ENOSPC` is
//! [`CreateError::InsufficientSpace`] with the free space and a
//! `--shm-size` hint for Docker, never a later `SIGBUS`) → `mmap` → header
//! → `init` → `state = READY` → unlock. Any failure after `shm_open`
//! unlinks the object. `EMFILE`/`ENFILE` is [`CreateError::TooManyOpenFiles`],
//! `ENOMEM` from `mmap` [`CreateError::OutOfMappings`], each naming the
//! limit to raise.
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

use crate::sys::{self, Errno, fd::LockKind, mman::Mapping, mman::Protection};

use super::Permissions;
use super::relptr::Region;

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
/// Environment variable that overrides the default domain.
pub const DOMAIN_ENV: &str = "CONDUIT_DOMAIN";
/// Maximum length of a domain.
pub const MAX_DOMAIN_LEN: usize = 64;
/// Maximum length of a segment name inside a domain.
pub const MAX_NAME_LEN: usize = 180;

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
/// | 40 | `creator_pid` | process id of the creator |
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

/// An invalid domain or segment name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("{what} is empty")]
    Empty {
        /// "domain" or "segment name".
        what: &'static str,
    },
    /// The name is too long.
    #[error("{what} {name:?} is {len} bytes long; the limit is {max}")]
    TooLong {
        /// "domain" or "segment name".
        what: &'static str,
        /// The offending name.
        name: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name contains a character outside the allowed set.
    #[error(
        "{what} {name:?} contains {bad:?}; allowed are ASCII letters, digits, '_' and '-'{dot}",
        dot = if *what == "domain" { "" } else { " and '.' (not first)" }
    )]
    InvalidCharacter {
        /// "domain" or "segment name".
        what: &'static str,
        /// The offending name.
        name: String,
        /// The first bad character.
        bad: char,
    },
}

/// Checks a domain: 1 to 64 bytes of `[A-Za-z0-9_-]`.
pub fn validate_domain(domain: &str) -> Result<(), NameError> {
    validate("domain", domain, MAX_DOMAIN_LEN, false)
}

/// Checks a segment name: 1 to 180 bytes of `[A-Za-z0-9_.-]`, not
/// starting with `.`.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    validate("segment name", name, MAX_NAME_LEN, true)
}

fn validate(what: &'static str, s: &str, max: usize, dots: bool) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { what });
    }
    if s.len() > max {
        return Err(NameError::TooLong {
            what,
            name: s.to_owned(),
            len: s.len(),
            max,
        });
    }
    for (i, c) in s.chars().enumerate() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dots && c == '.' && i > 0);
        if !ok {
            return Err(NameError::InvalidCharacter {
                what,
                name: s.to_owned(),
                bad: c,
            });
        }
    }
    Ok(())
}

/// The domain used when none is given: `$CONDUIT_DOMAIN`, else `default`.
pub fn default_domain() -> String {
    std::env::var(DOMAIN_ENV)
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// The POSIX object name of segment `name` in `domain`:
/// `/conduit.<domain>.<name>`.
pub fn object_name(domain: &str, name: &str) -> Result<String, NameError> {
    validate_domain(domain)?;
    validate_name(name)?;
    Ok(format!("/conduit.{domain}.{name}"))
}

/// Why a segment could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The domain or name is invalid.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A segment with this name exists already.
    #[error("shared-memory segment {name} already exists")]
    AlreadyExists {
        /// The POSIX object name.
        name: String,
    },
    /// The file system behind `/dev/shm` cannot hold the segment.
    #[error(
        "not enough shared memory for {name}: asked for {requested} bytes, /dev/shm has {available} of {total} bytes free (in Docker, raise the limit with --shm-size, default 64 MiB)"
    )]
    InsufficientSpace {
        /// The POSIX object name (or `memfd` for anonymous segments).
        name: String,
        /// Bytes asked for.
        requested: u64,
        /// Bytes free when the request failed.
        available: u64,
        /// Size of the file system.
        total: u64,
        /// The OS error (`ENOSPC`), if the kernel refused.
        #[source]
        source: Option<Errno>,
    },
    /// The process may not create objects there.
    #[error("permission denied creating {name}")]
    PermissionDenied {
        /// The POSIX object name.
        name: String,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// The process (or the whole system) has no file descriptor left.
    #[error("cannot open {name}: {}", descriptor_hint(*.source, *.limit))]
    TooManyOpenFiles {
        /// The POSIX object name (or `conduit.<name>` for a memfd).
        name: String,
        /// This process's descriptor limit (`RLIMIT_NOFILE`), if limited.
        limit: Option<u64>,
        /// `EMFILE` (this process) or `ENFILE` (the system).
        #[source]
        source: Errno,
    },
    /// The process cannot map the segment: it has as many mappings as
    /// `vm.max_map_count` allows, or its address space (`RLIMIT_AS`) is
    /// used up.
    #[error("cannot map {name} ({len} bytes): {}", mapping_hint(*.max_map_count, *.address_space_limit))]
    OutOfMappings {
        /// The POSIX object name.
        name: String,
        /// Bytes to map.
        len: u64,
        /// `vm.max_map_count`, if readable.
        max_map_count: Option<u64>,
        /// `RLIMIT_AS` soft limit in bytes, if limited.
        address_space_limit: Option<u64>,
        /// `ENOMEM` from `mmap`.
        #[source]
        source: Errno,
    },
    /// The requested size does not fit the address space.
    #[error("segment size {requested} is too large")]
    TooLarge {
        /// Bytes asked for.
        requested: u64,
    },
    /// The caller's initialiser refused to initialise the data area.
    #[error("initialising {name} failed: {reason}")]
    InitFailed {
        /// The POSIX object name.
        name: String,
        /// What the initialiser reported.
        reason: String,
    },
    /// Another system call failed.
    #[error("{op} failed for {name}")]
    Os {
        /// The system call.
        op: &'static str,
        /// The POSIX object name.
        name: String,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

/// Why a segment could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The domain or name is invalid.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// No segment has this name.
    #[error("shared-memory segment {name} does not exist")]
    NotFound {
        /// The POSIX object name.
        name: String,
    },
    /// The process may not open it.
    #[error("permission denied opening {name}")]
    PermissionDenied {
        /// The POSIX object name.
        name: String,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// The segment belongs to another user.
    #[error("{name} is owned by uid {found}, expected uid {expected}")]
    OwnerMismatch {
        /// The POSIX object name.
        name: String,
        /// The uid the opener requires.
        expected: u32,
        /// The uid that owns the object.
        found: u32,
    },
    /// The segment is shared with another group than the opener expects
    /// (see [`Permissions::group`]).
    #[error(
        "{name} belongs to group {found}, expected group {expected} (create and open it with the same Permissions::group)"
    )]
    GroupMismatch {
        /// The POSIX object name.
        name: String,
        /// The gid the opener requires.
        expected: u32,
        /// The gid of the object.
        found: u32,
    },
    /// The segment's permission bits differ from what the opener expects.
    #[error("{name} has mode {found:o}, expected {expected:o}")]
    ModeMismatch {
        /// The POSIX object name.
        name: String,
        /// Required mode.
        expected: u32,
        /// Actual mode.
        found: u32,
    },
    /// The creator is still initialising after the open timeout.
    #[error("{name} was still being created after {waited:?}")]
    CreationTimedOut {
        /// The POSIX object name.
        name: String,
        /// How long the opener waited.
        waited: Duration,
    },
    /// The creator died before the segment became ready. The segment can
    /// be removed with [`SegmentBuilder::remove_abandoned`].
    #[error(
        "{name} was abandoned by its creator (pid {creator_pid}) before it became ready; remove it"
    )]
    Abandoned {
        /// The POSIX object name.
        name: String,
        /// Creator's pid as recorded in the header (0 if not yet written).
        creator_pid: u32,
    },
    /// The segment does not start with conduit's magic.
    #[error("{name} is not a conduit segment (magic {found:#018x})")]
    BadMagic {
        /// The POSIX object name.
        name: String,
        /// The first 8 bytes found.
        found: u64,
    },
    /// The header format version is not the one this library speaks.
    #[error("{name} has format version {found}, this library speaks {expected}")]
    VersionMismatch {
        /// The POSIX object name.
        name: String,
        /// Version this library writes.
        expected: u32,
        /// Version found.
        found: u32,
    },
    /// The object is smaller than its header claims (someone truncated it).
    #[error("{name} is truncated: header says {header} bytes, the object has {actual}")]
    Truncated {
        /// The POSIX object name.
        name: String,
        /// Size recorded in the header (or the minimum, a header).
        header: u64,
        /// Size of the object.
        actual: u64,
    },
    /// The header's size and the object's size disagree otherwise.
    #[error("{name}: header says {header} bytes, the object has {actual}")]
    SizeMismatch {
        /// The POSIX object name.
        name: String,
        /// Size recorded in the header.
        header: u64,
        /// Size of the object.
        actual: u64,
    },
    /// The data area was laid out for another type or version.
    #[error("{name} holds layout {found:#018x}, expected {expected:#018x}")]
    FingerprintMismatch {
        /// The POSIX object name.
        name: String,
        /// The fingerprint the opener requires.
        expected: u64,
        /// The fingerprint in the header.
        found: u64,
    },
    /// A header field other than the above is invalid.
    #[error("{name} has a corrupted header: {reason}")]
    Corrupted {
        /// The POSIX object name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The process (or the whole system) has no file descriptor left.
    #[error("cannot open {name}: {}", descriptor_hint(*.source, *.limit))]
    TooManyOpenFiles {
        /// The POSIX object name.
        name: String,
        /// This process's descriptor limit (`RLIMIT_NOFILE`), if limited.
        limit: Option<u64>,
        /// `EMFILE` (this process) or `ENFILE` (the system).
        #[source]
        source: Errno,
    },
    /// The process cannot map the segment: it has as many mappings as
    /// `vm.max_map_count` allows, or its address space (`RLIMIT_AS`) is
    /// used up.
    #[error("cannot map {name} ({len} bytes): {}", mapping_hint(*.max_map_count, *.address_space_limit))]
    OutOfMappings {
        /// The POSIX object name.
        name: String,
        /// Bytes to map.
        len: u64,
        /// `vm.max_map_count`, if readable.
        max_map_count: Option<u64>,
        /// `RLIMIT_AS` soft limit in bytes, if limited.
        address_space_limit: Option<u64>,
        /// `ENOMEM` from `mmap`.
        #[source]
        source: Errno,
    },
    /// A memfd handed over is not sealed against shrinking, so mapping it
    /// could `SIGBUS`.
    #[error("the memfd is not sealed against shrinking (F_SEAL_SHRINK)")]
    NotSealed,
    /// Another system call failed.
    #[error("{op} failed for {name}")]
    Os {
        /// The system call.
        op: &'static str,
        /// The POSIX object name.
        name: String,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

/// What to do about `EMFILE`/`ENFILE`, for error messages.
pub(crate) fn descriptor_hint(source: Errno, limit: Option<u64>) -> String {
    if source == Errno::NFILE {
        return "the system-wide table of open files is full (ENFILE): close files or raise `sysctl fs.file-max`".to_owned();
    }
    let limit = limit.map_or_else(|| "its".to_owned(), |n| format!("all {n}"));
    format!(
        "this process uses {limit} file descriptors allowed by RLIMIT_NOFILE (EMFILE): drop unused conduit objects or raise the limit (`ulimit -n`, LimitNOFILE= in a systemd unit; `conduit limits` shows it)"
    )
}

/// What to do about `ENOMEM` from `mmap`, for error messages.
pub(crate) fn mapping_hint(max_map_count: Option<u64>, address_space: Option<u64>) -> String {
    let maps = max_map_count.map_or_else(|| "?".to_owned(), |n| n.to_string());
    let space = address_space.map_or_else(|| "unlimited".to_owned(), |n| format!("{n} bytes"));
    format!(
        "out of memory mappings or address space (ENOMEM; vm.max_map_count = {maps} mappings per process, RLIMIT_AS = {space}): drop unused segments and ports, or raise `sysctl vm.max_map_count` / `ulimit -v` (`conduit limits` shows both)"
    )
}

impl CreateError {
    /// The error for system call `op` failing on `name` (mapping `len`
    /// bytes), with descriptor and mapping exhaustion named.
    fn os(op: &'static str, name: &str, len: usize, source: Errno) -> CreateError {
        match source {
            Errno::MFILE | Errno::NFILE => CreateError::TooManyOpenFiles {
                name: name.to_owned(),
                limit: sys::process::descriptor_limit(),
                source,
            },
            Errno::NOMEM if op == "mmap" => CreateError::OutOfMappings {
                name: name.to_owned(),
                len: len as u64,
                max_map_count: sys::process::max_map_count(),
                address_space_limit: sys::process::address_space_limit(),
                source,
            },
            source => CreateError::Os {
                op,
                name: name.to_owned(),
                source,
            },
        }
    }
}

impl OpenError {
    /// As [`CreateError::os`].
    fn os(op: &'static str, name: &str, len: usize, source: Errno) -> OpenError {
        match CreateError::os(op, name, len, source) {
            CreateError::TooManyOpenFiles {
                name,
                limit,
                source,
            } => OpenError::TooManyOpenFiles {
                name,
                limit,
                source,
            },
            CreateError::OutOfMappings {
                name,
                len,
                max_map_count,
                address_space_limit,
                source,
            } => OpenError::OutOfMappings {
                name,
                len,
                max_map_count,
                address_space_limit,
                source,
            },
            _ => OpenError::Os {
                op,
                name: name.to_owned(),
                source,
            },
        }
    }
}

/// Why [`SegmentBuilder::open_or_create`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenOrCreateError {
    /// Creating failed for a reason other than the segment existing.
    #[error(transparent)]
    Create(#[from] CreateError),
    /// Opening the existing segment failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Removing an abandoned segment failed.
    #[error(transparent)]
    Remove(#[from] RemoveError),
}

/// Why removing a segment failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// The domain or name is invalid.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// No segment has this name.
    #[error("shared-memory segment {name} does not exist")]
    NotFound {
        /// The POSIX object name.
        name: String,
    },
    /// The segment is ready or its creator is alive: it is not abandoned.
    #[error("{name} is not abandoned (it is ready or its creator still holds it)")]
    InUse {
        /// The POSIX object name.
        name: String,
    },
    /// The process may not remove it.
    #[error("permission denied removing {name}")]
    PermissionDenied {
        /// The POSIX object name.
        name: String,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// Another system call failed.
    #[error("{op} failed for {name}")]
    Os {
        /// The system call.
        op: &'static str,
        /// The POSIX object name.
        name: String,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

/// Whether [`SegmentBuilder::open_or_create`] created or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This call created the segment.
    Created,
    /// The segment existed and was opened.
    Opened,
}

type Init<'a> = Box<dyn FnOnce(&Region) -> Result<(), String> + 'a>;

/// Configures and creates or opens a [`Segment`].
///
/// ```no_run
/// use conduit::shm::Segment;
/// let seg = Segment::builder("telemetry")
///     .domain("plant-a")
///     .size(1 << 20)
///     .fingerprint(0x1234)
///     .create()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SegmentBuilder<'a> {
    name: String,
    domain: Option<String>,
    size: usize,
    mode: u32,
    fingerprint: u64,
    check_fingerprint: bool,
    read_only: bool,
    owner: Option<u32>,
    group: Option<u32>,
    any_permissions: bool,
    open_timeout: Duration,
    init: Option<Init<'a>>,
    future_write: bool,
}

impl<'a> SegmentBuilder<'a> {
    fn new(name: &str) -> Self {
        SegmentBuilder {
            name: name.to_owned(),
            domain: None,
            size: 0,
            mode: 0o600,
            fingerprint: 0,
            check_fingerprint: false,
            read_only: false,
            owner: None,
            group: None,
            any_permissions: false,
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            init: None,
            future_write: false,
        }
    }

    /// For [`create_anonymous`](Self::create_anonymous): once the creator
    /// has mapped and initialised the segment, also seal it with
    /// `F_SEAL_FUTURE_WRITE`, so that whoever receives the descriptor can
    /// only map it read-only (the creator's own mapping stays writable).
    /// On a kernel older than 5.1, which does not know the seal, the
    /// segment is created without it; [`Segment::seals`] tells. With the
    /// seal, [`Segment::map_again`] of the creator's writable segment fails
    /// (`mmap` → `EPERM`): keep the first mapping.
    pub fn seal_future_write(mut self) -> Self {
        self.future_write = true;
        self
    }

    /// The domain that namespaces the segment (default: [`default_domain`]).
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = Some(domain.to_owned());
        self
    }

    /// Size of the data area in bytes (creation only). The segment is this
    /// plus the header, rounded up to whole pages.
    pub fn size(mut self, bytes: usize) -> Self {
        self.size = bytes;
        self
    }

    /// Permission bits: set on creation, required on open (default 0600).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// Shares the segment with group `gid`: on creation the object is
    /// given to that group (`fchown`; the creator must be a member or
    /// have `CAP_CHOWN`), and on open the object must belong to that group
    /// while its owner may be any user (every member of the group is
    /// trusted). Combine with a [`mode`](Self::mode) that grants the group
    /// access, or use [`permissions`](Self::permissions), which sets both.
    pub fn group(mut self, gid: u32) -> Self {
        self.group = Some(gid);
        self
    }

    /// Sets [`mode`](Self::mode) and [`group`](Self::group) from a
    /// [`Permissions`]: 0600 for [`Permissions::owner_only`], 0660 and the
    /// group for [`Permissions::group`].
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.mode = permissions.mode();
        self.group = permissions.gid();
        self
    }

    /// For tools that inspect segments: on open, accept the segment
    /// whatever its mode and group (owner-only or shared with any group).
    /// The owner is still checked (see [`owner`](Self::owner)).
    pub fn any_permissions(mut self) -> Self {
        self.any_permissions = true;
        self
    }

    /// Layout fingerprint of the data area: written on creation, and on
    /// open the segment must carry exactly this value.
    pub fn fingerprint(mut self, fingerprint: u64) -> Self {
        self.fingerprint = fingerprint;
        self.check_fingerprint = true;
        self
    }

    /// Open read-only: the mapping is `PROT_READ`, any write faults.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// The uid the segment must belong to when opened (default: this
    /// process's effective uid, or any member of the group if a
    /// [`group`](Self::group) is set).
    pub fn owner(mut self, uid: u32) -> Self {
        self.owner = Some(uid);
        self
    }

    /// How long [`open`](Self::open) waits for a creator to mark the
    /// segment ready (default 2 s).
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// Runs `init` on the zeroed data area after it is mapped and before
    /// the segment becomes visible as ready. An `Err` aborts creation and
    /// removes the segment.
    pub fn init(mut self, init: impl FnOnce(&Region) -> Result<(), String> + 'a) -> Self {
        self.init = Some(Box::new(init));
        self
    }

    fn object_name(&self) -> Result<String, NameError> {
        let domain = self.domain.clone().unwrap_or_else(default_domain);
        object_name(&domain, &self.name)
    }

    fn total_size(&self) -> Result<usize, CreateError> {
        let page = sys::page_size();
        HEADER_SIZE
            .checked_add(self.size)
            .and_then(|n| n.checked_next_multiple_of(page))
            .filter(|n| *n <= isize::MAX as usize)
            .ok_or(CreateError::TooLarge {
                requested: self.size as u64,
            })
    }

    /// Creates the segment; fails with [`CreateError::AlreadyExists`] if
    /// the name is taken.
    pub fn create(mut self) -> Result<Segment, CreateError> {
        let mut init = self.init.take();
        self.create_inner(&mut init)
    }

    /// Creates; takes `init` out of its option only once the object
    /// exists, so a caller that gets `AlreadyExists` keeps its initialiser.
    fn create_inner(&self, init: &mut Option<Init<'a>>) -> Result<Segment, CreateError> {
        let name = self.object_name()?;
        let total = self.total_size()?;
        let fd =
            sys::shm::open(&name, sys::shm::OpenMode::CreateExclusive, self.mode).map_err(|e| {
                match e {
                    Errno::EXIST => CreateError::AlreadyExists { name: name.clone() },
                    Errno::ACCESS | Errno::PERM => CreateError::PermissionDenied {
                        name: name.clone(),
                        source: e,
                    },
                    _ => CreateError::os("shm_open", &name, total, e),
                }
            })?;
        // From here on, any failure removes the half-made object.
        let result = (|| {
            let os = |op: &'static str| {
                let name = name.clone();
                move |source: Errno| CreateError::os(op, &name, total, source)
            };
            // Openers may briefly hold a shared lock while probing; wait.
            sys::fd::flock(&fd, LockKind::Exclusive, true).map_err(os("flock"))?;
            if let Some(gid) = self.group {
                // Before fchmod: chown may clear set-id bits, never rw bits.
                sys::fd::set_group(&fd, gid).map_err(|source| match source {
                    Errno::PERM => CreateError::PermissionDenied {
                        name: name.clone(),
                        source,
                    },
                    source => CreateError::Os {
                        op: "fchown",
                        name: name.clone(),
                        source,
                    },
                })?;
            }
            sys::fd::set_mode(&fd, self.mode).map_err(os("fchmod"))?;
            reserve(&fd, total as u64, &name)?;
            let mapping = Mapping::map(&fd, total, Protection::ReadWrite).map_err(os("mmap"))?;
            let segment = Segment {
                name: Some(name.clone()),
                fd,
                mapping,
                writable: true,
            };
            segment.initialize(self.fingerprint, false, init.take(), &name)?;
            sys::fd::funlock(&segment.fd).map_err(os("flock"))?;
            Ok(segment)
        })();
        if result.is_err() {
            let _ = sys::shm::unlink(&name);
        }
        result
    }

    /// Opens an existing segment, waiting up to the open timeout for its
    /// creator to finish, and validates it.
    pub fn open(self) -> Result<Segment, OpenError> {
        let name = self.object_name()?;
        let how = if self.read_only {
            sys::shm::OpenMode::ReadOnly
        } else {
            sys::shm::OpenMode::ReadWrite
        };
        let fd = sys::shm::open(&name, how, 0).map_err(|e| match e {
            Errno::NOENT => OpenError::NotFound { name: name.clone() },
            Errno::ACCESS | Errno::PERM => OpenError::PermissionDenied {
                name: name.clone(),
                source: e,
            },
            _ => OpenError::os("shm_open", &name, 0, e),
        })?;
        let st = sys::fd::status(&fd).map_err(|source| OpenError::Os {
            op: "fstat",
            name: name.clone(),
            source,
        })?;
        // Who made this object: ourselves (or the uid asked for). For a
        // group-shared segment any member of the group may have: only
        // members and CAP_CHOWN can give a file to a group, which is
        // checked below. The owner never changes after creation, so it is
        // checked at once.
        let expected_uid = match (self.owner, self.group) {
            (Some(uid), _) => Some(uid),
            (None, None) => Some(sys::fd::effective_uid()),
            (None, Some(_)) => None,
        };
        if let Some(expected) = expected_uid.filter(|uid| *uid != st.uid) {
            return Err(OpenError::OwnerMismatch {
                name,
                expected,
                found: st.uid,
            });
        }
        let expected = self.check_fingerprint.then_some(self.fingerprint);
        // The creator sets group and mode before it marks the segment
        // ready, so they are checked once attach has seen it ready (an
        // earlier look could see the umask-narrowed mode of a segment in
        // creation).
        let segment = Segment::attach(
            fd,
            name.clone(),
            !self.read_only,
            expected,
            self.open_timeout,
        )?;
        let st = sys::fd::status(&segment.fd).map_err(|source| OpenError::Os {
            op: "fstat",
            name: name.clone(),
            source,
        })?;
        if self.any_permissions {
            return Ok(segment);
        }
        if let Some(gid) = self.group.filter(|gid| *gid != st.gid) {
            return Err(OpenError::GroupMismatch {
                name,
                expected: gid,
                found: st.gid,
            });
        }
        if st.mode != self.mode {
            return Err(OpenError::ModeMismatch {
                name,
                expected: self.mode,
                found: st.mode,
            });
        }
        Ok(segment)
    }

    /// Opens the segment if it exists, creates it otherwise. Race-free:
    /// when many processes call this at once, exactly one creates and all
    /// others open the same segment. A segment abandoned by a creator that
    /// died is removed and created anew.
    pub fn open_or_create(mut self) -> Result<(Segment, Origin), OpenOrCreateError> {
        let name = self.object_name().map_err(CreateError::from)?;
        let mut init = self.init.take();
        for _ in 0..64 {
            match self.create_inner(&mut init) {
                Ok(seg) => return Ok((seg, Origin::Created)),
                Err(CreateError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match self.clone_config().open() {
                Ok(seg) => return Ok((seg, Origin::Opened)),
                // Removed between our create and open: try again.
                Err(OpenError::NotFound { .. }) => {}
                Err(OpenError::Abandoned { .. }) => match self.clone_config().remove_abandoned() {
                    Ok(()) | Err(RemoveError::NotFound { .. } | RemoveError::InUse { .. }) => {}
                    Err(e) => return Err(e.into()),
                },
                Err(e) => return Err(e.into()),
            }
        }
        Err(OpenError::CreationTimedOut {
            name,
            waited: self.open_timeout,
        }
        .into())
    }

    fn clone_config(&self) -> SegmentBuilder<'a> {
        SegmentBuilder {
            name: self.name.clone(),
            domain: self.domain.clone(),
            size: self.size,
            mode: self.mode,
            fingerprint: self.fingerprint,
            check_fingerprint: self.check_fingerprint,
            read_only: self.read_only,
            owner: self.owner,
            group: self.group,
            any_permissions: self.any_permissions,
            open_timeout: self.open_timeout,
            init: None,
            future_write: self.future_write,
        }
    }

    /// Removes the segment if, and only if, it is abandoned: not ready and
    /// not locked by a live creator. Safe against races with other
    /// removers and creators: the check and the unlink happen under the
    /// segment's exclusive lock, and the name is unlinked only if it still
    /// refers to the very object that was checked.
    pub fn remove_abandoned(self) -> Result<(), RemoveError> {
        let name = self.object_name()?;
        let os = |op: &'static str, name: &String| {
            let name = name.clone();
            move |source: Errno| match source {
                Errno::NOENT => RemoveError::NotFound { name },
                Errno::ACCESS | Errno::PERM => RemoveError::PermissionDenied { name, source },
                _ => RemoveError::Os { op, name, source },
            }
        };
        let fd = sys::shm::open(&name, sys::shm::OpenMode::ReadWrite, 0)
            .map_err(os("shm_open", &name))?;
        if !sys::fd::flock(&fd, LockKind::Exclusive, false).map_err(os("flock", &name))? {
            return Err(RemoveError::InUse { name });
        }
        let st = sys::fd::status(&fd).map_err(os("fstat", &name))?;
        if st.size >= HEADER_SIZE as u64 {
            let map =
                Mapping::map(&fd, HEADER_SIZE, Protection::ReadOnly).map_err(os("mmap", &name))?;
            // SAFETY: the mapping is HEADER_SIZE bytes, page aligned, and
            // Header is all atomics (valid for any bit pattern).
            let header = unsafe { &*map.as_ptr().cast::<Header>() };
            if header.state.load(Ordering::Acquire) == STATE_READY {
                return Err(RemoveError::InUse { name });
            }
        }
        // Unlink only if the name still refers to the object we locked.
        let again = sys::shm::open(&name, sys::shm::OpenMode::ReadOnly, 0)
            .map_err(os("shm_open", &name))?;
        let st2 = sys::fd::status(&again).map_err(os("fstat", &name))?;
        if (st2.dev, st2.ino) != (st.dev, st.ino) {
            return Err(RemoveError::NotFound { name });
        }
        sys::shm::unlink(&name).map_err(os("shm_unlink", &name))
    }

    /// Creates an anonymous segment backed by a memfd: it has no name in
    /// `/dev/shm` at all, is freed when the last descriptor and mapping are
    /// gone, and can be handed to another process as a file descriptor
    /// ([`Segment::fd`], [`Segment::from_fd`]). It is sealed against
    /// shrinking and growing (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`)
    /// so that a receiver can trust its size.
    pub fn create_anonymous(self) -> Result<Segment, CreateError> {
        let label = format!("conduit.{}", self.name);
        let total = self.total_size()?;
        let os = |op: &'static str| {
            let name = label.clone();
            move |source: Errno| CreateError::os(op, &name, total, source)
        };
        let fd = sys::memfd::create(&label).map_err(os("memfd_create"))?;
        reserve(&fd, total as u64, &label)?;
        let future_write = self.future_write;
        sys::memfd::add_seals(
            &fd,
            sys::memfd::Seals {
                shrink: true,
                grow: true,
                seal: !future_write,
                ..Default::default()
            },
        )
        .map_err(os("fcntl(F_ADD_SEALS)"))?;
        let mapping = Mapping::map(&fd, total, Protection::ReadWrite).map_err(os("mmap"))?;
        let segment = Segment {
            name: None,
            fd,
            mapping,
            writable: true,
        };
        segment.initialize(self.fingerprint, true, self.init, &label)?;
        if future_write {
            let sealed = sys::memfd::add_seals(
                &segment.fd,
                sys::memfd::Seals {
                    future_write: true,
                    seal: true,
                    ..Default::default()
                },
            );
            if sealed == Err(Errno::INVAL) {
                // A kernel before 5.1: seal what it knows.
                sys::memfd::add_seals(
                    &segment.fd,
                    sys::memfd::Seals {
                        seal: true,
                        ..Default::default()
                    },
                )
                .map_err(os("fcntl(F_ADD_SEALS)"))?;
            } else {
                sealed.map_err(os("fcntl(F_ADD_SEALS)"))?;
            }
        }
        Ok(segment)
    }
}

/// Reserves `total` bytes, turning `ENOSPC` into `InsufficientSpace`.
fn reserve(fd: &OwnedFd, total: u64, name: &str) -> Result<(), CreateError> {
    let space = |source| {
        let (available, all) = sys::shm::space().unwrap_or((0, 0));
        CreateError::InsufficientSpace {
            name: name.to_owned(),
            requested: total,
            available,
            total: all,
            source,
        }
    };
    // Refuse up front what cannot fit, rather than letting the kernel
    // allocate pages until it runs out.
    if let Ok((available, _)) = sys::shm::space() {
        if total > available {
            return Err(space(None));
        }
    }
    sys::fd::allocate(fd, total).map_err(|e| match e {
        Errno::NOSPC | Errno::NOMEM | Errno::FBIG => space(Some(e)),
        _ => CreateError::Os {
            op: "posix_fallocate",
            name: name.to_owned(),
            source: e,
        },
    })
}

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
                if header.state.load(Ordering::Acquire) == STATE_READY {
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

    /// Process id of the creator, as recorded in the header.
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
