//! Who besides its owner may open the shared-memory objects of a node.
//!
//! Every object conduit creates in `/dev/shm` is made with `O_CREAT |
//! O_EXCL` and then given its permission bits with `fchmod`, so the umask
//! neither widens nor narrows them. Two models, chosen with one
//! [`Permissions`] value, normally set on the node and passed down to
//! every segment it creates and opens:
//!
//! | `Permissions` | mode | group | who can open | what an opener accepts |
//! |---|---|---|---|---|
//! | [`owner_only()`](Permissions::owner_only) (default) | 0600 | the creator's | the owner (and root) | owner == own euid, mode == 0600 |
//! | [`group(gid)`](Permissions::group) | 0660 | `gid` (`fchown`) | the owner, members of `gid`, root | group == `gid`, mode == 0660, any owner |
//!
//! Why "any owner" for group objects: the group is the trust anchor. Only a
//! member of the group (or a process with `CAP_CHOWN`) can give a file to a
//! group, so a group-owned object was made by someone the group trusts; a
//! non-member cannot plant a segment that a member would accept. The kernel
//! lets members in (mode 0660) and refuses non-members at `shm_open`
//! (`EACCES`, `OpenError::PermissionDenied`, surfaced by services as
//! `ServiceError::PermissionDenied`); a non-member asking for
//! `Permissions::group(gid)` fails at creation (`fchown`: `EPERM`,
//! `CreateError::PermissionDenied`). Openers must ask for what the creator
//! used: an owner-only opener refuses a 0660 segment (`ModeMismatch`), a
//! group opener another group's (`GroupMismatch`). Tools (listing, details)
//! open with `SegmentBuilder::any_permissions`: they see this user's
//! objects whatever their mode or group.
//!
//! `/dev/shm` is sticky (mode 1777): only an object's owner (or root) can
//! remove its name; see [`Permissions`] for what that means for services
//! shared with a group.
//!
//! The other named IPC objects take the same value: message queues
//! (`QueueBuilder::permissions`), FIFOs (`Fifo::create_with`) and
//! path-named Unix sockets (`Listener::bind_with`: connecting needs write
//! permission on the socket file); each is created no wider than asked
//! and then set exactly (mode 0600, or 0660 and given to the group).
//! Abstract socket names have no file and no permissions
//! (`BindError::NoPermissionsForAbstract`; filter peers by credentials
//! instead).

/// Who may open the shared-memory objects conduit creates: the owner only
/// (the default, mode 0600), or also the members of one group (mode 0660,
/// the objects given to that group).
///
/// Set it once on a node ([`NodeBuilder::permissions`]) and it applies to
/// everything the node creates: its own segment, the segments of its
/// services and event services, its publishers' data segments. The same
/// value governs what the node accepts on open: with
/// [`Permissions::owner_only`] it opens only objects of its own effective
/// uid with mode 0600; with [`Permissions::group`] it opens objects of any
/// owner that belong to the group and have mode 0660. Every process that
/// shares a service must therefore use the same `Permissions`.
///
/// ```no_run
/// use conduit::node::Node;
/// use conduit::shm::Permissions;
/// let node = Node::builder().permissions(Permissions::group(1001)).create()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # What group sharing does not give
///
/// `/dev/shm` is sticky (mode 1777): only the owner of an object (or
/// root) can remove its name. A service segment created by one member is
/// therefore removed when its creator's last user leaves or by the
/// creator's next cleanup, not by another member; the other members leave
/// it in place, usable, instead of marking it removed.
///
/// [`NodeBuilder::permissions`]: crate::node::NodeBuilder::permissions
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions {
    group: Option<u32>,
}

impl Permissions {
    /// Only the owning user: mode 0600 (the default).
    pub const fn owner_only() -> Self {
        Permissions { group: None }
    }

    /// The owning user and the members of group `gid`: mode 0660, objects
    /// given to `gid` (the creator must be a member of it, or have
    /// `CAP_CHOWN`).
    pub const fn group(gid: u32) -> Self {
        Permissions { group: Some(gid) }
    }

    /// The permission bits objects are created with and must have on open.
    pub const fn mode(self) -> u32 {
        match self.group {
            Some(_) => 0o660,
            None => 0o600,
        }
    }

    /// The group objects are shared with, if any.
    pub const fn gid(self) -> Option<u32> {
        self.group
    }
}
