//! Domain-wide maintenance: the one module that knows every messaging
//! pattern.
//!
//! Freeing what dead processes left behind needs each pattern's own
//! cleanup (a dead publisher's data segment, a dead notifier's event), so
//! it cannot live in `node` or in the service core, which sit below the
//! patterns. It lives here, above them, and so does
//! [`NodeBuilder::create`], which sweeps the domain before it registers a
//! new node (a Rust type's methods may be defined in any module of its
//! crate; these are documented on [`Node`], [`NodeBuilder`] and
//! [`Domain`] as usual). Dependencies point down only: `node` and
//! `service` never call up into this module.
//!
//! The sweep, in order: every service of every pattern (dead ports freed,
//! services nobody has open removed), then the data segments of
//! publishers, clients and servers that died before they registered, then the segments of dead
//! nodes, then node segments whose creator died before they were ready.

use crate::domain::{Domain, DomainObject, ObjectKind};
use crate::node::{self, CleanupError, Node, NodeBuilder, NodeCreateError, NodeId, NodeState};
use crate::service::core;
use crate::shm::{Permissions, Segment};

impl Domain {
    /// Cleans up every dead node of this domain: frees its ports in every
    /// service, removes its publishers' data segments, its own segment,
    /// and services that nobody uses any more. Returns the ids of the
    /// nodes removed.
    ///
    /// Sees the objects this user may open with `permissions`
    /// ([`Permissions::owner_only`] for this user's own): objects of other
    /// users can be cleared from the services, but their names can only be
    /// removed by their owner or root (`/dev/shm` is sticky).
    pub fn cleanup(&self, permissions: Permissions) -> Result<Vec<NodeId>, CleanupError> {
        let dead: Vec<NodeId> = node::list_nodes(self, Some(permissions))?
            .into_iter()
            .filter(|n| n.state == NodeState::Dead)
            .map(|n| n.id)
            .collect();
        core::cleanup_domain::<crate::event::Events>(self, permissions);
        crate::blackboard::cleanup_domain(self, permissions);
        core::cleanup_domain::<crate::pubsub::PubSub>(self, permissions);
        core::cleanup_domain::<crate::reqres::ReqRes>(self, permissions);
        for id in &dead {
            let _ = Segment::remove(self.name(), &Domain::node_segment(id.0));
        }
        // Node segments whose creator died before they became ready (a
        // process killed inside `NodeBuilder::create`): `Node::list` cannot
        // open them, so they would otherwise stay forever. Such a node
        // never owned a port, so removing its segment is all there is to do.
        if let Ok(names) = self.node_segments() {
            for name in names {
                core::remove_if_abandoned(self, &name, permissions);
            }
        }
        Ok(dead)
    }

    /// The node that owns chunk-pool data segment `object` of this domain
    /// (an object of kind [`ObjectKind::PublisherData`] or
    /// [`ObjectKind::PortData`], as [`Domain::objects`] lists it), as
    /// recorded in the segment; `None` for another kind, or if it cannot
    /// be opened with `permissions` or read.
    ///
    /// For tools: [`Domain::cleanup`] removes a data segment whose owner
    /// is dead, so `conduit clean --dry-run` uses this to say which it
    /// would remove.
    pub fn data_segment_owner(
        &self,
        object: &DomainObject,
        permissions: Permissions,
    ) -> Option<NodeId> {
        let pool = match object.kind {
            ObjectKind::PublisherData => crate::pubsub::POOL,
            ObjectKind::PortData => crate::reqres::POOL,
            _ => return None,
        };
        crate::pool::data_segment_node(self, &object.name, pool, permissions).map(NodeId)
    }
}

impl NodeBuilder {
    /// Creates the node: its segment and its liveness lock. Cleans up the
    /// domain's dead nodes first ([`Domain::cleanup`]; errors of that
    /// cleanup are ignored).
    pub fn create(self) -> Result<Node, NodeCreateError> {
        let domain = self.checked_domain()?;
        let _ = domain.cleanup(self.permissions);
        self.create_in(domain)
    }
}

impl Node {
    /// Cleans up every dead node of `domain` ([`Domain::cleanup`] with
    /// this user's [`Permissions::owner_only`]). Returns the ids of the
    /// nodes removed.
    pub fn cleanup(domain: &str) -> Result<Vec<NodeId>, CleanupError> {
        Domain::new(domain)?.cleanup(Permissions::owner_only())
    }

    /// [`Node::cleanup`] for nodes and services created with
    /// `permissions` (for example those shared with a group).
    pub fn cleanup_with(
        domain: &str,
        permissions: Permissions,
    ) -> Result<Vec<NodeId>, CleanupError> {
        Domain::new(domain)?.cleanup(permissions)
    }
}
