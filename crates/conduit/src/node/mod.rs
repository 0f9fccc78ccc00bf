//! Nodes: a process's identity, its liveness, and the cleanup of the
//! resources of nodes that died.
//!
//! A [`Node`] owns a small segment `/conduit.<domain>.node.<id>` and holds
//! an exclusive `flock` on it for its whole life. The kernel drops that
//! lock when the process dies, however it dies, so any other process can
//! tell a dead node from a live one without a daemon: it opens the node's
//! segment and tries a non-blocking shared lock. Getting it means the
//! owner is gone.
//!
//! Cleaning up a dead node ([`Node::cleanup`], run automatically when a
//! node is created; a service's dead ports are also freed when it is
//! opened) frees its ports in every service of the domain, removes its
//! publishers' data segments (processes that still map them keep reading
//! them: the memory lives until its last mapping goes), removes services
//! nobody uses any more, and finally removes the node's own segment. That
//! sweep knows every messaging pattern, so it lives above them, in
//! `maintenance.rs`, with [`NodeBuilder::create`]; this module only
//! creates nodes and tells live ones from dead ones.
//!
//! # Node segment layout (data area, after the segment header)
//!
//! | offset | field | meaning |
//! |---|---|---|
//! | 0 | `id` | the node id (`u64`, also in the segment name) |
//! | 8 | `pid` | process id of the owner, **in the owner's PID namespace** |
//! | 16 | `start_time` | its start time (ticks since boot, from the owner's `/proc`) |
//! | 24 | `locked` | 0 → 1 once the owner holds its `flock` (Release) |
//! | 32 | `name` | 16 words: the node name, UTF-8, length in `name_len` |
//! | 160 | `name_len` | bytes of the name |
//!
//! `id`, `pid`, `start_time` and the name are written once, before the
//! segment is ready, and never change.
//!
//! # Liveness probe
//!
//! A prober opens the node segment and tries `flock(LOCK_SH | LOCK_NB)`:
//!
//! | probe result | the node is |
//! |---|---|
//! | lock refused | alive (its owner holds `LOCK_EX`) |
//! | lock granted, `locked == 1` | dead: the kernel dropped the owner's lock with its last descriptor |
//! | lock granted, `locked == 0` | created but not locked yet: alive iff `/proc/<pid>` shows the recorded start time |
//! | segment missing, or abandoned in creation | dead |
//! | anything else (permissions, errors) | alive: never reclaim what may be in use |
//!
//! # PID namespaces
//!
//! The `flock` verdict holds whatever the PID namespaces of the prober and
//! the owner (containers sharing `/dev/shm`): the kernel drops the lock
//! when the owner's last descriptor goes, and nobody looks an id up. The
//! `pid` and `start_time` fields are the owner's view of itself: in another
//! PID namespace that number names another task or none. They are shown
//! by [`Node::list`] and `conduit list` for information only, with one
//! exception: the `locked == 0` row above (a node between its segment
//! becoming ready and taking its `flock`, a window of microseconds) asks
//! the prober's `/proc`, so a prober in another PID namespace may judge a
//! node dead inside that window and clean up its (still empty) node.
//! (Robust mutexes never use ids this way; see
//! [`RobustMutex`](crate::sync::RobustMutex).)
//!
//! # Cleanup order
//!
//! `Node::cleanup` (and node creation, first thing): find the dead nodes;
//! clean every event service, then every publish/subscribe service of the
//! domain (dead nodes' slots freed through `sync::slot`, their publishers'
//! data segments unlinked, services nobody has open removed); sweep
//! publisher data segments that no slot names and whose node is dead;
//! remove the dead nodes' segments; finally remove node segments abandoned
//! during creation (a process killed inside [`NodeBuilder::create`] between
//! `shm_open(O_EXCL)` and ready left a segment [`Node::list`] cannot open:
//! neither alive nor dead, it would stay forever; such a node never owned a
//! port). Every sweep of an "abandoned" segment confirms it over the grace
//! period first (a live creator is unready and unlocked for the
//! microseconds between `shm_open` and its `flock`). Each step is safe to
//! repeat and to race with other cleaners; a cleanup killed half way is
//! finished by the next one. Dropping the last handle of a node unlinks
//! its segment.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::Domain;
use crate::shm::words::{load_str, store_str};
use crate::shm::{self, Permissions, Segment};
use crate::sys::{self, fd::LockKind};

/// Longest node name, in bytes.
pub const MAX_NODE_NAME_LEN: usize = 128;

const NODE_DATA: usize = 256;

#[repr(C)]
struct NodeShm {
    id: AtomicU64,
    pid: AtomicU64,
    start_time: AtomicU64,
    locked: AtomicU64,
    name: [AtomicU64; 16],
    name_len: AtomicU64,
}

/// A node's identifier, unique within a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Why a node could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeCreateError {
    /// The domain is not a valid name.
    #[error(transparent)]
    InvalidDomain(#[from] shm::NameError),
    /// The node name is longer than [`MAX_NODE_NAME_LEN`] bytes.
    #[error("node name is {len} bytes long; the limit is {MAX_NODE_NAME_LEN}")]
    NameTooLong {
        /// Its length.
        len: usize,
    },
    /// The node's segment could not be created.
    #[error("cannot create the node segment")]
    Segment(#[source] shm::CreateError),
    /// Taking the liveness lock failed.
    #[error("cannot lock the node segment")]
    Lock(#[source] sys::Errno),
}

/// Why listing or cleaning up nodes failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CleanupError {
    /// `/dev/shm` could not be read.
    #[error("cannot list /dev/shm")]
    List(#[source] std::io::Error),
    /// The domain is not a valid name.
    #[error(transparent)]
    InvalidDomain(#[from] shm::NameError),
}

/// Configures a [`Node`].
#[derive(Debug, Clone, Default)]
pub struct NodeBuilder {
    pub(crate) name: String,
    pub(crate) domain: Option<String>,
    pub(crate) permissions: Permissions,
}

impl NodeBuilder {
    /// The node's name, for humans and tools (need not be unique).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// The domain (default: [`shm::try_default_domain`]).
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = Some(domain.to_owned());
        self
    }

    /// Who besides this user may open the node's objects (default
    /// [`Permissions::owner_only`], mode 0600). Applies to every object the
    /// node and its services and ports create, and to what they accept on
    /// open: all processes sharing a service must use the same value. See
    /// [`Permissions`].
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = permissions;
        self
    }

    /// Checks the builder: the domain and the name.
    pub(crate) fn checked_domain(&self) -> Result<Domain, NodeCreateError> {
        let domain = match &self.domain {
            Some(domain) => Domain::new(domain)?,
            None => Domain::new(&shm::try_default_domain()?)?,
        };
        if self.name.len() > MAX_NODE_NAME_LEN {
            return Err(NodeCreateError::NameTooLong {
                len: self.name.len(),
            });
        }
        Ok(domain)
    }

    /// Creates the node's segment and takes its liveness lock (the domain
    /// was checked and swept by the caller, `NodeBuilder::create`).
    pub(crate) fn create_in(self, domain: Domain) -> Result<Node, NodeCreateError> {
        let permissions = self.permissions;
        let pid = sys::process::process_id();
        let start = sys::process::start_time(pid).unwrap_or(0);
        loop {
            let id = NodeId(unique_id());
            let name = self.name.clone();
            let result = Segment::builder(&Domain::node_segment(id.0))
                .domain(domain.name())
                .permissions(permissions)
                .size(NODE_DATA)
                .init(move |region| {
                    let n = region
                        .resolve::<NodeShm>(0)
                        .map_err(|e| format!("node segment too small: {e}"))?;
                    // SAFETY: resolve checked bounds and alignment; NodeShm
                    // is made of atomics only; the mapping outlives `n`.
                    let n = unsafe { n.as_ref() };
                    n.id.store(id.0, Ordering::Relaxed);
                    n.pid.store(u64::from(pid), Ordering::Relaxed);
                    n.start_time.store(start, Ordering::Relaxed);
                    store_str(&n.name, &n.name_len, &name);
                    Ok(())
                })
                .create();
            let segment = match result {
                Ok(s) => s,
                Err(shm::CreateError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(NodeCreateError::Segment(e)),
            };
            match sys::fd::flock(segment.fd(), LockKind::Exclusive, false) {
                Ok(true) => {}
                Ok(false) => {
                    // Someone probing right now: wait for the probe to end.
                    sys::fd::flock(segment.fd(), LockKind::Exclusive, true)
                        .map_err(NodeCreateError::Lock)?;
                }
                Err(e) => {
                    let _ = segment.unlink();
                    return Err(NodeCreateError::Lock(e));
                }
            }
            node_shm(&segment)
                .expect("own node segment")
                .locked
                .store(1, Ordering::Release);
            return Ok(Node {
                inner: Arc::new(NodeInner {
                    id,
                    name: self.name,
                    domain,
                    permissions,
                    segment,
                }),
            });
        }
    }
}

#[derive(Debug)]
pub(crate) struct NodeInner {
    pub(crate) id: NodeId,
    pub(crate) name: String,
    pub(crate) domain: Domain,
    pub(crate) permissions: Permissions,
    segment: Segment,
}

impl Drop for NodeInner {
    fn drop(&mut self) {
        let _ = self.segment.unlink();
    }
}

/// A process's identity in a domain; the factory of services.
///
/// Cheap to clone (the clones share one identity). The node's segment is
/// removed when the last clone, and the last service or port created from
/// it, is dropped.
#[derive(Debug, Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

/// Whether a node's process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Its owner holds the liveness lock.
    Alive,
    /// Its owner is gone; its resources may be cleaned up.
    Dead,
}

/// A node as seen by [`Node::list`].
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Its id.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// The owner's process id **in the owner's PID namespace**: in a
    /// process of another PID namespace (another container sharing
    /// `/dev/shm`) this number names another task or none, so do not
    /// signal or look it up there. `state` does not depend on it.
    pub pid: u32,
    /// Alive or dead.
    pub state: NodeState,
}

impl Node {
    /// Starts configuring a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This node's domain.
    pub fn domain(&self) -> &str {
        self.inner.domain.name()
    }

    /// This node's domain, as a [`Domain`].
    pub fn domain_ref(&self) -> &Domain {
        &self.inner.domain
    }

    /// Who may open this node's objects (see [`NodeBuilder::permissions`]).
    pub fn permissions(&self) -> Permissions {
        self.inner.permissions
    }
}

impl Node {
    /// Lists the nodes of `domain`, alive and dead: this user's nodes,
    /// whatever their [`Permissions`].
    pub fn list(domain: &str) -> Result<Vec<NodeInfo>, CleanupError> {
        list_nodes(&Domain::new(domain)?, None)
    }
}

/// The nodes of `domain` that a node with `permissions` may open (`None`:
/// this user's, whatever their permissions).
pub(crate) fn list_nodes(
    domain: &Domain,
    permissions: Option<Permissions>,
) -> Result<Vec<NodeInfo>, CleanupError> {
    let names = domain.node_segments().map_err(CleanupError::List)?;
    let mut nodes = Vec::new();
    for segment_name in names {
        let Some(id) = Domain::node_id_of(&segment_name) else {
            continue;
        };
        let id = NodeId(id);
        let builder = Segment::builder(&segment_name)
            .domain(domain.name())
            .open_timeout(std::time::Duration::ZERO);
        let builder = match permissions {
            Some(p) => builder.permissions(p),
            None => builder.any_permissions(),
        };
        let Ok(segment) = builder.open() else {
            continue;
        };
        let (name, pid) = match node_shm(&segment) {
            Some(n) => (
                load_str(&n.name, &n.name_len),
                n.pid.load(Ordering::Relaxed) as u32,
            ),
            None => (String::new(), 0),
        };
        let state = if probe(&segment) {
            NodeState::Alive
        } else {
            NodeState::Dead
        };
        nodes.push(NodeInfo {
            id,
            name,
            pid,
            state,
        });
    }
    Ok(nodes)
}

fn node_shm(segment: &Segment) -> Option<&NodeShm> {
    let p = segment.data().resolve::<NodeShm>(0).ok()?;
    // SAFETY: bounds and alignment checked; atomics only; tied to `segment`.
    Some(unsafe { p.as_ref() })
}

/// True if the node owning `segment` is alive.
fn probe(segment: &Segment) -> bool {
    match sys::fd::flock(segment.fd(), LockKind::Shared, false) {
        Ok(false) => true,
        Ok(true) => {
            let _ = sys::fd::funlock(segment.fd());
            match node_shm(segment) {
                Some(n) if n.locked.load(Ordering::Acquire) == 0 => {
                    // Created but not locked yet: ask the process table
                    // (ours: wrong for an owner in another PID namespace,
                    // see "PID namespaces" in the module docs).
                    let pid = n.pid.load(Ordering::Relaxed) as u32;
                    sys::process::is_alive(pid, n.start_time.load(Ordering::Relaxed))
                }
                _ => false,
            }
        }
        Err(_) => true,
    }
}

/// Whether node `id` of `domain` is alive. A node without a segment is dead.
/// `permissions` are those of the asking node: a node of another user is
/// visible only if it shares the same group.
pub(crate) fn is_alive(domain: &Domain, id: NodeId, permissions: Permissions) -> bool {
    match Segment::builder(&Domain::node_segment(id.0))
        .domain(domain.name())
        .permissions(permissions)
        .open_timeout(std::time::Duration::from_millis(200))
        .open()
    {
        Ok(segment) => probe(&segment),
        Err(shm::OpenError::NotFound { .. }) => false,
        Err(shm::OpenError::Abandoned { .. }) => false,
        // Unknown: assume alive, never reclaim what may be in use.
        Err(_) => true,
    }
}

/// A 64-bit id that no other live object of the domain has: mixes the
/// process id, its start time, a per-process counter and the clock.
pub(crate) fn unique_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = u64::from(sys::process::process_id());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut h = shm::fingerprint::start();
    h = shm::fingerprint::word(h, pid);
    h = shm::fingerprint::word(h, n);
    h = shm::fingerprint::word(h, t);
    if h == 0 { 1 } else { h }
}
