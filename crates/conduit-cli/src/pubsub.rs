//! `conduit nodes`, `conduit services`, `conduit cleanup`: the runtime view
//! of a domain (nodes alive or dead, publish/subscribe services with their
//! types and QoS) and cleanup of dead nodes on request.

use conduit::node::{Node, NodeState};

fn domain(d: Option<String>) -> String {
    d.unwrap_or_else(conduit::shm::default_domain)
}

/// Lists the nodes of a domain.
pub fn nodes(d: Option<String>) -> i32 {
    let domain = domain(d);
    match Node::list(&domain) {
        Ok(nodes) => {
            println!("{:<18} {:<8} {:<6} name", "node", "pid", "state");
            for n in nodes {
                let state = match n.state {
                    NodeState::Alive => "alive",
                    NodeState::Dead => "dead",
                };
                println!(
                    "{:<18} {:<8} {:<6} {}",
                    n.id.to_string(),
                    n.pid,
                    state,
                    n.name
                );
            }
            0
        }
        Err(e) => {
            eprintln!("conduit: {e}");
            1
        }
    }
}

/// Lists the publish/subscribe services of a domain with their details.
pub fn services(d: Option<String>) -> i32 {
    let domain = domain(d);
    match conduit::service::list(&domain) {
        Ok(list) => {
            for s in list {
                println!("{}", s.name);
                println!("  segment:     {} ({} bytes)", s.segment, s.segment_bytes);
                println!(
                    "  payload:     {} {} (size {}, align {}, fingerprint {:016x})",
                    s.kind, s.payload.name, s.payload.size, s.payload.align, s.payload.fingerprint
                );
                println!(
                    "  user header: {} (size {}, align {})",
                    s.header.name, s.header.size, s.header.align
                );
                println!("  qos:         {}", s.qos);
                println!(
                    "  ports:       {} publishers, {} subscribers",
                    s.publishers, s.subscribers
                );
            }
            0
        }
        Err(e) => {
            eprintln!("conduit: cannot read /dev/shm: {e}");
            1
        }
    }
}

/// Cleans up the dead nodes of a domain.
pub fn cleanup(d: Option<String>) -> i32 {
    let domain = domain(d);
    match Node::cleanup(&domain) {
        Ok(removed) => {
            println!("removed {} dead node(s)", removed.len());
            0
        }
        Err(e) => {
            eprintln!("conduit: {e}");
            1
        }
    }
}
