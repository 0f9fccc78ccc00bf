//! [`SegmentBuilder`]: creating, opening, open-or-create and removing an
//! abandoned segment, following the life described in the module docs.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::shm::Permissions;
use crate::shm::relptr::Region;
use crate::sys::{self, Errno, fd::LockKind, mman::Mapping, mman::Protection};

use super::{
    CreateError, DEFAULT_OPEN_TIMEOUT, HEADER_SIZE, Header, NameError, OpenError,
    OpenOrCreateError, RemoveError, Resource, ResourceExhausted, STATE_READY, Segment, object_name,
    try_default_domain,
};

/// Whether [`SegmentBuilder::open_or_create`] created or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This call created the segment.
    Created,
    /// The segment existed and was opened.
    Opened,
}

/// The caller's initialiser of the data area ([`SegmentBuilder::init`]).
pub(super) type Init<'a> = Box<dyn FnOnce(&Region) -> Result<(), String> + 'a>;

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
    pub(super) fn new(name: &str) -> Self {
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

    /// The domain that namespaces the segment (default: [`try_default_domain`]).
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
        let domain = match &self.domain {
            Some(domain) => domain.clone(),
            None => try_default_domain()?,
        };
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

/// Reserves `total` bytes, turning `ENOSPC` into
/// [`Resource::SharedMemorySpace`].
fn reserve(fd: &OwnedFd, total: u64, name: &str) -> Result<(), CreateError> {
    let space = |source| {
        let (available, all) = sys::shm::space().unwrap_or((0, 0));
        CreateError::Exhausted(ResourceExhausted {
            name: name.to_owned(),
            resource: Resource::SharedMemorySpace {
                requested: total,
                available,
                total: all,
            },
            source,
        })
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
