//! Opening a `[u8]` service for `pub`, `sub` and `hz`, with clear errors
//! for the cases a terminal user hits (no such service, another type).

use conduit::node::Node;
use conduit::pubsub::PubSubService;

use crate::common::{self, Failure, exit};
use crate::list::payload_name;

/// An open `[u8]` service and the node holding it.
pub struct BytesService {
    /// The CLI's node (kept alive as long as the service).
    pub _node: Node,
    /// The service.
    pub service: PubSubService<[u8]>,
}

/// Opens `name` in `domain` as a `[u8]` slice service. `create`: create it
/// (with default QoS) when it does not exist.
pub fn open(domain: &str, name: &str, create: bool) -> Result<BytesService, Failure> {
    common::service_name(name)?;
    let details = match conduit::pubsub::details(&common::as_domain(domain)?, name) {
        Ok(details) => details,
        // Tools read only this user's segments; another member's
        // group-shared service is checked by the open below, with the
        // node's permissions (its type included).
        Err(conduit::service::ServiceError::PermissionDenied { .. }) => {
            return open_service(domain, name, create);
        }
        Err(e) => return Err(common::service_failure(e)),
    };
    match details {
        Some(d) => {
            let s = &d.info;
            if s.kind != "slice" || s.payload.name != "u8" || s.header.size != 0 {
                return Err(Failure::new(
                    exit::TYPE_MISMATCH,
                    format!(
                        "service {name:?} carries {} (size {}); this command handles [u8] slice services without a user header only",
                        payload_name(s),
                        s.payload.size
                    ),
                ));
            }
        }
        None if !create => {
            return Err(
                common::other_kind(domain, name, conduit::ServiceKind::PublishSubscribe)
                    .unwrap_or_else(|| {
                        Failure::new(
                            exit::NOT_FOUND,
                            format!("no service {name:?} in domain {domain:?}"),
                        )
                    }),
            );
        }
        None => {}
    }
    open_service(domain, name, create)
}

/// Opens (or creates) `name` as a `[u8]` service with this command's node.
fn open_service(domain: &str, name: &str, create: bool) -> Result<BytesService, Failure> {
    let node = common::node(domain)?;
    let builder = node.service(name).publish_subscribe::<[u8]>();
    let service = if create {
        builder.open_or_create()
    } else {
        builder.open()
    }
    .map_err(common::service_failure)?;
    Ok(BytesService {
        _node: node,
        service,
    })
}
