//! Why creating, opening or removing a segment failed: one error enum per
//! operation, and [`ResourceExhausted`], the one type for running out of a
//! resource that creating and opening share.

use std::fmt;
use std::time::Duration;

use crate::sys::{self, Errno};

use super::NameError;

/// What ran out, with the limits that applied when it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resource {
    /// File descriptors, on `shm_open`, `memfd_create` or `dup`: this
    /// process has as many as `RLIMIT_NOFILE` allows (`EMFILE`), or the
    /// system-wide table of open files is full (`ENFILE`).
    FileDescriptors {
        /// This process's descriptor limit (`RLIMIT_NOFILE`), if limited.
        limit: Option<u64>,
    },
    /// Memory mappings or address space (`ENOMEM` from `mmap`): the process
    /// has as many mappings as `vm.max_map_count` allows, or its address
    /// space (`RLIMIT_AS`) is used up. The kernel does not say which.
    Mappings {
        /// Bytes to map.
        len: u64,
        /// `vm.max_map_count`, if readable.
        max_map_count: Option<u64>,
        /// `RLIMIT_AS` soft limit in bytes, if limited.
        address_space_limit: Option<u64>,
    },
    /// Space on the file system behind `/dev/shm` (creation only): seen
    /// to be too small before asking the kernel, or refused by
    /// `posix_fallocate`. Nothing was left behind.
    SharedMemorySpace {
        /// Bytes asked for.
        requested: u64,
        /// Bytes free when the request failed.
        available: u64,
        /// Size of the file system.
        total: u64,
    },
}

/// A resource of this process or of the system ran out while a segment
/// was created or opened: the one error behind [`CreateError::Exhausted`]
/// and [`OpenError::Exhausted`].
///
/// Its message names the object, what ran out, the limit and what to do
/// about it ([`hint`](Self::hint)). [`source`](std::error::Error::source)
/// is the OS error, when the kernel reported one. Nothing is left behind:
/// a half-made segment is removed, so the same call may be retried once
/// the resource is back (`conduit limits` shows the limits).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceExhausted {
    /// The POSIX object name; for an anonymous segment `conduit.<name>`
    /// while creating it, `memfd` when adopting or mapping it again.
    pub name: String,
    /// What ran out, with its limits.
    pub resource: Resource,
    /// The OS error: `EMFILE` or `ENFILE` for descriptors, `ENOMEM` for
    /// mappings, `ENOSPC` (or `ENOMEM`, `EFBIG`) for space; `None` when
    /// the space was seen to be missing before asking the kernel.
    pub source: Option<Errno>,
}

impl ResourceExhausted {
    /// The exhaustion that `source`, returned by system call `op` on
    /// `name` (mapping `len` bytes), stands for, if it stands for one:
    /// `EMFILE`/`ENFILE` from any call, `ENOMEM` from `mmap`.
    pub(super) fn from_os(op: &str, name: &str, len: usize, source: Errno) -> Option<Self> {
        let resource = match source {
            Errno::MFILE | Errno::NFILE => Resource::FileDescriptors {
                limit: sys::process::descriptor_limit(),
            },
            Errno::NOMEM if op == "mmap" => Resource::Mappings {
                len: len as u64,
                max_map_count: sys::process::max_map_count(),
                address_space_limit: sys::process::address_space_limit(),
            },
            _ => return None,
        };
        Some(ResourceExhausted {
            name: name.to_owned(),
            resource,
            source: Some(source),
        })
    }

    /// What ran out and what to do about it, in words (the end of the
    /// message).
    pub fn hint(&self) -> String {
        match self.resource {
            Resource::FileDescriptors { limit } => {
                descriptor_hint(self.source.unwrap_or(Errno::MFILE), limit)
            }
            Resource::Mappings {
                max_map_count,
                address_space_limit,
                ..
            } => mapping_hint(max_map_count, address_space_limit),
            Resource::SharedMemorySpace { .. } => {
                "in Docker, raise the limit with --shm-size, default 64 MiB".to_owned()
            }
        }
    }
}

impl fmt::Display for ResourceExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, hint) = (&self.name, self.hint());
        match self.resource {
            Resource::FileDescriptors { .. } => write!(f, "cannot open {name}: {hint}"),
            Resource::Mappings { len, .. } => write!(f, "cannot map {name} ({len} bytes): {hint}"),
            Resource::SharedMemorySpace {
                requested,
                available,
                total,
            } => write!(
                f,
                "not enough shared memory for {name}: asked for {requested} bytes, /dev/shm has {available} of {total} bytes free ({hint})"
            ),
        }
    }
}

impl std::error::Error for ResourceExhausted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// What to do about `EMFILE`/`ENFILE`, for error messages (also those of
/// pipes, sockets, message queues and wait sets).
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
fn mapping_hint(max_map_count: Option<u64>, address_space: Option<u64>) -> String {
    let maps = max_map_count.map_or_else(|| "?".to_owned(), |n| n.to_string());
    let space = address_space.map_or_else(|| "unlimited".to_owned(), |n| format!("{n} bytes"));
    format!(
        "out of memory mappings or address space (ENOMEM; vm.max_map_count = {maps} mappings per process, RLIMIT_AS = {space}): drop unused segments and ports, or raise `sysctl vm.max_map_count` / `ulimit -v` (`conduit limits` shows both)"
    )
}

/// Why a segment could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The process may not create objects there.
    #[error("permission denied creating {name}")]
    PermissionDenied {
        /// The POSIX object name.
        name: String,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// A resource ran out: file descriptors, memory mappings or address
    /// space, or space in `/dev/shm`. Its message and [`source`] are those of
    /// the [`ResourceExhausted`] inside.
    ///
    /// [`source`]: std::error::Error::source
    #[error(transparent)]
    Exhausted(#[from] ResourceExhausted),
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
#[non_exhaustive]
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
    /// (see [`Permissions::group`](crate::shm::Permissions::group)).
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
    /// be removed with [`SegmentBuilder::remove_abandoned`](super::SegmentBuilder::remove_abandoned).
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
    /// A resource ran out: file descriptors, or memory mappings or address
    /// space. Its message and [`source`] are those of the
    /// [`ResourceExhausted`] inside.
    ///
    /// [`source`]: std::error::Error::source
    #[error(transparent)]
    Exhausted(#[from] ResourceExhausted),
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

impl CreateError {
    /// The error for system call `op` failing on `name` (mapping `len`
    /// bytes), with exhaustion told apart (see
    /// [`ResourceExhausted::from_os`]).
    pub(super) fn os(op: &'static str, name: &str, len: usize, source: Errno) -> CreateError {
        match ResourceExhausted::from_os(op, name, len, source) {
            Some(exhausted) => CreateError::Exhausted(exhausted),
            None => CreateError::Os {
                op,
                name: name.to_owned(),
                source,
            },
        }
    }
}

impl OpenError {
    /// As [`CreateError::os`].
    pub(super) fn os(op: &'static str, name: &str, len: usize, source: Errno) -> OpenError {
        match ResourceExhausted::from_os(op, name, len, source) {
            Some(exhausted) => OpenError::Exhausted(exhausted),
            None => OpenError::Os {
                op,
                name: name.to_owned(),
                source,
            },
        }
    }
}

/// Why [`SegmentBuilder::open_or_create`](super::SegmentBuilder::open_or_create) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
#[non_exhaustive]
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn os_error(e: &dyn std::error::Error) -> Option<Errno> {
        e.source().and_then(|s| s.downcast_ref::<Errno>()).copied()
    }

    #[test]
    fn exhaustion_reads_the_same_through_create_and_open_errors() {
        let fds = ResourceExhausted {
            name: "/conduit.d.s".to_owned(),
            resource: Resource::FileDescriptors { limit: Some(64) },
            source: Some(Errno::MFILE),
        };
        let text = fds.to_string();
        assert!(
            text.starts_with("cannot open /conduit.d.s: this process uses all 64 file descriptors"),
            "{text}"
        );
        let create = CreateError::from(fds.clone());
        let open = OpenError::from(fds);
        assert_eq!(create.to_string(), text);
        assert_eq!(open.to_string(), text);
        assert_eq!(os_error(&create), Some(Errno::MFILE));
        assert_eq!(os_error(&open), Some(Errno::MFILE));

        let space = CreateError::from(ResourceExhausted {
            name: "/conduit.d.s".to_owned(),
            resource: Resource::SharedMemorySpace {
                requested: 8192,
                available: 4096,
                total: 65536,
            },
            source: None,
        });
        assert_eq!(
            space.to_string(),
            "not enough shared memory for /conduit.d.s: asked for 8192 bytes, /dev/shm has 4096 of 65536 bytes free (in Docker, raise the limit with --shm-size, default 64 MiB)"
        );
        assert!(space.source().is_none(), "refused before asking the kernel");
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads rlimits (getrlimit), which Miri does not model")]
    fn only_descriptor_and_mapping_errnos_are_exhaustion() {
        let classify = |op, errno| ResourceExhausted::from_os(op, "x", 4096, errno);
        for errno in [Errno::MFILE, Errno::NFILE] {
            let e = classify("shm_open", errno).expect("descriptors");
            assert!(matches!(e.resource, Resource::FileDescriptors { .. }));
            assert_eq!(e.source, Some(errno));
        }
        let e = classify("mmap", Errno::NOMEM).expect("mappings");
        assert!(matches!(e.resource, Resource::Mappings { len: 4096, .. }));
        assert!(e.to_string().starts_with("cannot map x (4096 bytes): "));
        assert_eq!(classify("shm_open", Errno::NOMEM), None);
        assert_eq!(classify("mmap", Errno::ACCESS), None);
        assert!(matches!(
            OpenError::os("fstat", "x", 0, Errno::IO),
            OpenError::Os { op: "fstat", .. }
        ));
    }
}
