//! `conduit clean [--dry-run]`: remove what dead nodes left behind, and
//! say what was left and why.

use conduit::node::{Node, NodeState};
use serde_json::json;

use crate::common::{self, CmdResult, Failure, exit};

/// Runs `conduit clean`.
pub fn run(domain: Option<String>, dry_run: bool, json: bool) -> CmdResult {
    let domain = common::domain(domain)?;
    let dom = common::as_domain(&domain)?;
    let nodes = Node::list(&domain)
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot list nodes: ", &e))?;
    let dead: Vec<_> = nodes
        .iter()
        .filter(|n| n.state == NodeState::Dead)
        .collect();
    let alive: Vec<_> = nodes
        .iter()
        .filter(|n| n.state == NodeState::Alive)
        .collect();
    let services_before = conduit::pubsub::list(&dom).unwrap_or_default();
    let events_before = conduit::event::list(&dom).unwrap_or_default();
    let dead_ids: Vec<_> = dead.iter().map(|n| n.id).collect();
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut removed_nodes = Vec::new();
    if dry_run {
        removed_nodes = dead_ids.clone();
    } else {
        let r = Node::cleanup_with(&domain, common::permissions())
            .map_err(|e| Failure::from_error(exit::FAILURE, "cleanup failed: ", &e))?;
        removed_nodes.extend(r);
    }
    let services_after = if dry_run {
        services_before.clone()
    } else {
        conduit::pubsub::list(&dom).unwrap_or_default()
    };
    let mut lines = Vec::new();
    for n in dead.iter().filter(|n| removed_nodes.contains(&n.id)) {
        lines.push(json!({
            "action": verb, "object": "node", "id": n.id.to_string(), "pid": n.pid, "name": n.name,
            "reason": "its process is gone",
        }));
    }
    for s in &services_before {
        // Ports registered by dead nodes are freed by cleanup.
        let dead_ports = conduit::pubsub::details(&dom, &s.name)
            .ok()
            .flatten()
            .map(|d| {
                d.publishers
                    .iter()
                    .chain(&d.subscribers)
                    .filter(|p| dead_ids.contains(&p.node))
                    .count()
            })
            .unwrap_or(0);
        let gone = !services_after.iter().any(|a| a.name == s.name);
        if gone {
            lines.push(json!({
                "action": verb, "object": "service", "name": s.name,
                "reason": "no live process has it open",
            }));
        } else {
            if dead_ports > 0 {
                lines.push(json!({
                    "action": verb, "object": "ports", "service": s.name, "count": dead_ports,
                    "reason": "registered by dead nodes",
                }));
            }
            let live = s.publishers + s.subscribers - dead_ports.min(s.publishers + s.subscribers);
            lines.push(json!({
                "action": "kept", "object": "service", "name": s.name,
                "reason": if dry_run {
                    format!("{live} live port(s) (or open by a live process)")
                } else {
                    "still in use by a live process".to_owned()
                },
            }));
        }
    }
    let events_after = if dry_run {
        events_before.clone()
    } else {
        conduit::event::list(&dom).unwrap_or_default()
    };
    for e in &events_before {
        if dry_run {
            let dead_listeners = e
                .listeners
                .iter()
                .filter(|l| dead_ids.contains(&l.1))
                .count();
            lines.push(json!({
                "action": "may remove", "object": "service", "name": e.name,
                "reason": format!(
                    "event service; {dead_listeners} of its {} listener(s) belong to dead nodes; removed if no live process has it open",
                    e.listeners.len()
                ),
            }));
        } else if events_after.iter().any(|a| a.name == e.name) {
            lines.push(json!({
                "action": "kept", "object": "service", "name": e.name,
                "reason": "event service still in use by a live process",
            }));
        } else {
            lines.push(json!({
                "action": verb, "object": "service", "name": e.name,
                "reason": "event service no live process has open",
            }));
        }
    }
    for n in &alive {
        lines.push(json!({
            "action": "kept", "object": "node", "id": n.id.to_string(), "pid": n.pid, "name": n.name,
            "reason": "still in use (process alive)",
        }));
    }
    for l in &lines {
        if json {
            common::print_json(l);
        } else {
            let what = match l["object"].as_str().unwrap_or("") {
                "node" => format!(
                    "node {} (pid {}, {:?})",
                    l["id"].as_str().unwrap_or(""),
                    l["pid"],
                    l["name"].as_str().unwrap_or("")
                ),
                "service" => format!("service {:?}", l["name"].as_str().unwrap_or("")),
                _ => format!(
                    "{} port(s) of service {:?}",
                    l["count"],
                    l["service"].as_str().unwrap_or("")
                ),
            };
            println!(
                "{} {what}: {}",
                l["action"].as_str().unwrap_or(""),
                l["reason"].as_str().unwrap_or("")
            );
        }
    }
    if !json {
        println!(
            "{} {} dead node(s); kept {} live node(s)",
            verb,
            removed_nodes.len(),
            alive.len()
        );
    }
    Ok(())
}
