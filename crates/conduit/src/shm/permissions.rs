//! Who besides its owner may open the shared-memory objects of a node.

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
