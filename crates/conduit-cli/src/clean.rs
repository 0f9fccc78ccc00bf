//! `conduit clean [--dry-run]`: remove what dead nodes left behind, and
//! say what was left and why.
//!
//! Both modes judge every object of the domain the way
//! [`conduit::Domain::cleanup`] does: a dead node's segment goes; a service
//! goes when no live process holds it open (its usage lock is free); a
//! publisher's data segment goes when its node is dead; a segment whose
//! creator died before it became ready goes. `--dry-run` prints that plan
//! ("would remove"); a real run cleans, then reports what actually
//! disappeared ("removed") and what it planned to remove but could not
//! ("could not remove", e.g. another user's object: only its owner or root
//! may remove a name in the sticky `/dev/shm`).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;

use conduit::node::{Node, NodeId, NodeInfo, NodeState};
use conduit::{DomainObject, ObjectKind, ServiceKind};
use serde_json::{Value, json};

use crate::common::{self, CmdResult, Failure, exit};

/// What a real clean would do with one object, and why.
struct Verdict {
    remove: bool,
    /// Another user's object this user cannot even read.
    unchecked: bool,
    reason: String,
}

/// Runs `conduit clean`.
pub fn run(domain: Option<String>, dry_run: bool, json: bool) -> CmdResult {
    let domain = common::domain(domain)?;
    let dom = common::as_domain(&domain)?;
    let nodes = Node::list(&domain)
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot list nodes: ", &e))?;
    let before = dom
        .objects()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot list the domain: ", &e))?;
    let names = service_names(&dom);
    let plan: Vec<Verdict> = before
        .iter()
        .map(|o| judge(&dom, o, &nodes, &names))
        .collect();
    let dead: HashSet<NodeId> = nodes
        .iter()
        .filter(|n| n.state == NodeState::Dead)
        .map(|n| n.id)
        .collect();
    // Ports of dead nodes in services that stay are freed, not removed.
    let mut lines = dead_ports(&dom, &dead, dry_run);

    let after: Option<HashSet<String>> = if dry_run {
        None
    } else {
        Node::cleanup_with(&domain, common::permissions())
            .map_err(|e| Failure::from_error(exit::FAILURE, "cleanup failed: ", &e))?;
        Some(
            dom.objects()
                .map_err(|e| Failure::from_error(exit::FAILURE, "cannot list the domain: ", &e))?
                .iter()
                .map(DomainObject::file_name)
                .collect(),
        )
    };
    let (mut removed, mut failed) = (0usize, 0usize);
    for (object, verdict) in before.iter().zip(&plan) {
        let gone = after.as_ref().map(|a| !a.contains(&object.file_name()));
        let (action, reason) = match (gone, verdict.remove) {
            (None | Some(false), false) if verdict.unchecked => {
                ("could not check", verdict.reason.clone())
            }
            (None, true) => ("would remove", verdict.reason.clone()),
            (None, false) | (Some(false), false) => ("kept", verdict.reason.clone()),
            (Some(true), true) => ("removed", verdict.reason.clone()),
            (Some(true), false) => ("removed", "gone during the clean".to_owned()),
            (Some(false), true) => ("could not remove", why_not_removed(object, verdict)),
        };
        match action {
            "would remove" | "removed" => removed += 1,
            "could not remove" | "could not check" => failed += 1,
            _ => {}
        }
        lines.push(line(action, object, &nodes, &names, reason));
    }
    for l in &lines {
        if json {
            common::print_json(l);
        } else {
            println!("{}", text(l));
        }
    }
    if !json {
        let verb = if dry_run { "would remove" } else { "removed" };
        let dead_nodes = before
            .iter()
            .zip(&plan)
            .filter(|(o, v)| o.kind == ObjectKind::Node && v.remove)
            .count();
        let alive = nodes.iter().filter(|n| n.state == NodeState::Alive).count();
        let mut summary = format!(
            "{verb} {removed} object(s), {dead_nodes} of them dead node(s); kept {alive} live node(s)"
        );
        if failed > 0 {
            summary.push_str(&format!(
                "; could not check or remove {failed} object(s) (see above)"
            ));
        }
        println!("{summary}");
    }
    Ok(())
}

/// Segment name (inside the domain) → (object label, service name), for
/// every service the tools can read.
fn service_names(dom: &conduit::Domain) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for s in conduit::pubsub::list(dom).unwrap_or_default() {
        names.insert(s.segment, s.name);
    }
    for e in conduit::event::list(dom).unwrap_or_default() {
        names.insert(e.segment, e.name);
    }
    names
}

/// What [`conduit::Domain::cleanup`] would do with `object`.
fn judge(
    dom: &conduit::Domain,
    object: &DomainObject,
    nodes: &[NodeInfo],
    names: &HashMap<String, String>,
) -> Verdict {
    let keep = |reason: &str| Verdict {
        remove: false,
        unchecked: false,
        reason: reason.to_owned(),
    };
    let remove = |reason: &str| Verdict {
        remove: true,
        unchecked: false,
        reason: reason.to_owned(),
    };
    // What cannot be read: another user's object (say whose), or ours.
    let unreadable = |what: String| match foreign_owner(object) {
        Some(uid) => Verdict {
            remove: false,
            unchecked: true,
            reason: format!(
                "owned by uid {uid}: this user can neither check nor remove it (its owner or root can)"
            ),
        },
        None => keep(&what),
    };
    match object.kind {
        ObjectKind::Node => match node_of(object, nodes) {
            Some(n) if n.state == NodeState::Dead => remove("its process is gone"),
            Some(_) => keep("still in use (process alive)"),
            None if abandoned(object) => remove("its creator died before it became ready"),
            None => unreadable("cannot be read".to_owned()),
        },
        ObjectKind::Service(_) => {
            if !names.contains_key(&object.name) && abandoned(object) {
                return remove("its creator died before it became ready");
            }
            match usage_lock_free(object) {
                Ok(true) => remove("no live process has it open"),
                Ok(false) => keep("still in use by a live process"),
                Err(e) => unreadable(format!("cannot be checked ({e})")),
            }
        }
        ObjectKind::PublisherData | ObjectKind::PortData => {
            if abandoned(object) {
                return remove("its creator died before it became ready");
            }
            match dom.data_segment_owner(object, common::permissions()) {
                Some(owner)
                    if nodes
                        .iter()
                        .any(|n| n.id == owner && n.state == NodeState::Alive) =>
                {
                    keep("its port's node is alive")
                }
                Some(_) => remove("its port's node is gone"),
                None => unreadable("cannot be read".to_owned()),
            }
        }
        _ => keep("not made by a node (clean never removes it)"),
    }
}

/// The node `object` (a node segment) belongs to.
fn node_of<'a>(object: &DomainObject, nodes: &'a [NodeInfo]) -> Option<&'a NodeInfo> {
    nodes
        .iter()
        .find(|n| object.name.ends_with(&n.id.to_string()))
}

/// Whether `object`'s creator died before it became ready.
fn abandoned(object: &DomainObject) -> bool {
    matches!(
        conduit::shm::Segment::builder(&object.name)
            .domain(&object.domain)
            .any_permissions()
            .open_timeout(std::time::Duration::ZERO)
            .open(),
        Err(conduit::shm::OpenError::Abandoned { .. })
    )
}

/// Whether no process holds `object`'s usage lock (a service's users hold
/// it shared): the test cleanup makes before it removes a service. The
/// exclusive lock is taken without waiting and let go at once; an opener
/// that comes in between waits for it, as it would for a real clean.
fn usage_lock_free(object: &DomainObject) -> std::io::Result<bool> {
    let file = std::fs::File::open(format!("/dev/shm/{}", object.file_name()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            let _ = rustix::fs::flock(&file, rustix::fs::FlockOperation::Unlock);
            Ok(true)
        }
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The owner of `object` if it is another user and this user is not root
/// (only then can this user not remove its name from the sticky
/// `/dev/shm`).
fn foreign_owner(object: &DomainObject) -> Option<u32> {
    let uid = std::fs::metadata(format!("/dev/shm/{}", object.file_name()))
        .ok()?
        .uid();
    let me = rustix::process::geteuid().as_raw();
    (uid != me && me != 0).then_some(uid)
}

/// Why an object planned for removal is still there.
fn why_not_removed(object: &DomainObject, verdict: &Verdict) -> String {
    match foreign_owner(object) {
        Some(uid) => format!(
            "{}, but it is owned by uid {uid}: only its owner or root can remove it",
            verdict.reason
        ),
        None => format!("{}, but it is still there (in use again?)", verdict.reason),
    }
}

/// One report line (JSON; the text form is made from it).
fn line(
    action: &str,
    object: &DomainObject,
    nodes: &[NodeInfo],
    names: &HashMap<String, String>,
    reason: String,
) -> Value {
    let segment = object.file_name();
    match object.kind {
        ObjectKind::Node => match node_of(object, nodes) {
            Some(n) => json!({
                "action": action, "object": "node", "segment": segment, "id": n.id.to_string(),
                "pid": n.pid, "name": n.name, "reason": reason,
            }),
            None => {
                json!({"action": action, "object": "node", "segment": segment, "reason": reason})
            }
        },
        ObjectKind::Service(kind) => json!({
            "action": action,
            "object": if kind == ServiceKind::PublishSubscribe { "service".to_owned() } else { kind.to_string() },
            "segment": segment,
            "name": names.get(&object.name),
            "reason": reason,
        }),
        _ => json!({
            "action": action, "object": object.kind.to_string(), "segment": segment, "reason": reason,
        }),
    }
}

/// One line per service that stays but has ports of dead nodes (freed).
fn dead_ports(dom: &conduit::Domain, dead: &HashSet<NodeId>, dry_run: bool) -> Vec<Value> {
    let action = if dry_run { "would free" } else { "freed" };
    let mut lines = Vec::new();
    for s in conduit::pubsub::list(dom).unwrap_or_default() {
        let count = conduit::pubsub::details(dom, &s.name)
            .ok()
            .flatten()
            .map_or(0, |d| {
                d.publishers
                    .iter()
                    .chain(&d.subscribers)
                    .filter(|p| dead.contains(&p.node))
                    .count()
            });
        if count > 0 {
            lines.push(json!({
                "action": action, "object": "ports", "service": s.name, "count": count,
                "reason": "registered by dead nodes",
            }));
        }
    }
    for e in conduit::event::list(dom).unwrap_or_default() {
        let count = e.listeners.iter().filter(|l| dead.contains(&l.1)).count();
        if count > 0 {
            lines.push(json!({
                "action": action, "object": "ports", "service": e.name, "count": count,
                "reason": "listeners of dead nodes",
            }));
        }
    }
    lines
}

/// The text form of a report line.
fn text(l: &Value) -> String {
    let s = |k: &str| l[k].as_str().unwrap_or("").to_owned();
    let what = match s("object").as_str() {
        "node" if l.get("id").is_some() => {
            format!("node {} (pid {}, {:?})", s("id"), l["pid"], s("name"))
        }
        "ports" => format!("{} port(s) of service {:?}", l["count"], s("service")),
        "service" | "event service" if l["name"].is_string() => {
            format!("{} {:?}", s("object"), s("name"))
        }
        other => format!("{other} {}", s("segment")),
    };
    format!("{} {what}: {}", s("action"), s("reason"))
}
