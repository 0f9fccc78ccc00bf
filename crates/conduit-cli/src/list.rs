//! `conduit list [services|nodes|segments]`: what exists in a domain.

use clap::ValueEnum;
use conduit::node::{Node, NodeState};
use serde_json::json;

use crate::common::{self, CmdResult, Failure, Style, exit, paint};

/// What `conduit list` shows.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum What {
    /// Event services (ids, notifiers, listeners, pending ids),
    /// blackboards (types, entries, writer, readers), request/response
    /// and publish/subscribe services (payload type, QoS, ports).
    Services,
    /// Nodes: id, pid, alive or dead, name.
    Nodes,
    /// Shared-memory objects conduit owns, with their sizes.
    Segments,
}

/// Runs `conduit list`.
pub fn run(what: Option<What>, domain: Option<String>, all_domains: bool, json: bool) -> CmdResult {
    let domain = common::domain(domain)?;
    let all = what.is_none();
    let heading = |title: &str| {
        if all && !json {
            println!("{}", paint(title, Style::Bold));
        }
    };
    if all || what == Some(What::Services) {
        heading("# services");
        services(&domain, json)?;
        if all && !json {
            println!();
        }
    }
    if all || what == Some(What::Nodes) {
        heading("# nodes");
        nodes(&domain, json)?;
        if all && !json {
            println!();
        }
    }
    if all || what == Some(What::Segments) {
        heading("# segments");
        segments(&domain, all_domains, json)?;
    }
    Ok(())
}

/// The name `conduit` shows for a pattern.
pub fn kind_name(kind: conduit::ServiceKind) -> &'static str {
    match kind {
        conduit::ServiceKind::PublishSubscribe => "publish/subscribe",
        conduit::ServiceKind::Event => "event",
        conduit::ServiceKind::Blackboard => "blackboard",
        conduit::ServiceKind::RequestResponse => "request/response",
        _ => "service",
    }
}

/// `conduit list --follow`: a line per service that appears or
/// disappears, until Ctrl-C or `count` lines (`Domain::watch`).
pub fn follow(domain: Option<String>, json: bool, count: Option<u64>) -> CmdResult {
    use conduit::discovery::ServiceEvent;
    use std::io::Write;
    let domain = common::as_domain(&common::domain(domain)?)?;
    let watch = domain
        .watch()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot watch /dev/shm: ", &e))?;
    let looked = |e| Failure::from_error(exit::FAILURE, "cannot list the services: ", &e);
    // The first look reports what exists: listed above already.
    watch.try_events().map_err(looked)?;
    eprintln!(
        "conduit: listening to the services of domain {:?}",
        domain.name()
    );
    let mut interrupt = common::Interrupt::watch();
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    while count.is_none_or(|c| printed < c) && !interrupt.happened() {
        for event in watch
            .wait(Some(std::time::Duration::from_millis(100)))
            .map_err(looked)?
        {
            let (sign, word, id) = match event {
                ServiceEvent::Appeared(id) => ("+", "appeared", id),
                ServiceEvent::Disappeared(id) => ("-", "disappeared", id),
                _ => continue,
            };
            let line = if json {
                json!({"event": word, "kind": kind_name(id.kind), "name": id.name}).to_string()
            } else {
                format!("{sign} {} {}", kind_name(id.kind), id.name)
            };
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return Ok(()); // stdout closed: a pipe's reader left
            }
            printed += 1;
            if count.is_some_and(|c| printed >= c) {
                break;
            }
        }
    }
    Ok(())
}

fn services(domain: &str, json: bool) -> CmdResult {
    let list = conduit::pubsub::list(&common::as_domain(domain)?)
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot read /dev/shm: ", &e))?;
    let events = conduit::event::list(&common::as_domain(domain)?)
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot read /dev/shm: ", &e))?;
    if json {
        for e in &events {
            common::print_json(&event_json(e));
        }
    } else if !events.is_empty() {
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                vec![
                    e.name.clone(),
                    format!("0..={}", e.max_event_id),
                    format!("{}/{}", e.notifiers, e.max_notifiers),
                    format!("{}/{}", e.listeners.len(), e.max_listeners),
                    e.listeners.iter().map(|l| l.2).sum::<usize>().to_string(),
                ]
            })
            .collect();
        common::print_table(
            &["event service", "ids", "notifiers", "listeners", "pending"],
            &rows,
        );
        println!();
    }
    blackboards(domain, json)?;
    request_response(domain, json)?;
    if json {
        for s in list {
            common::print_json(&json!({
                "kind": "service",
                "name": s.name,
                "segment": s.segment,
                "payload_kind": s.kind,
                "payload": type_json(&s.payload),
                "user_header": type_json(&s.header),
                "qos": qos_json(&s.qos),
                "publishers": s.publishers,
                "subscribers": s.subscribers,
                "segment_bytes": s.segment_bytes,
            }));
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                payload_name(s),
                format!("{}/{}", s.publishers, s.qos.max_publishers),
                format!("{}/{}", s.subscribers, s.qos.max_subscribers),
                format!(
                    "buffer {} history {} {:?}",
                    s.qos.subscriber_buffer, s.qos.history, s.qos.overflow
                ),
            ]
        })
        .collect();
    common::print_table(&["service", "payload", "pubs", "subs", "qos"], &rows);
    Ok(())
}

/// The request/response services: a JSON line each (`"kind":
/// "request/response"`), or a table before the publish/subscribe one.
fn request_response(domain: &str, json: bool) -> CmdResult {
    let list = conduit::reqres::list(&common::as_domain(domain)?)
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot read /dev/shm: ", &e))?;
    if json {
        for s in &list {
            common::print_json(&reqres_json(s));
        }
    } else if !list.is_empty() {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    format!("{} → {}", reqres_type(s, true), reqres_type(s, false)),
                    format!("{}/{}", s.clients, s.qos.max_clients),
                    format!("{}/{}", s.servers, s.qos.max_servers),
                    format!(
                        "active {} buffer {}",
                        s.qos.active_requests, s.qos.response_buffer
                    ),
                ]
            })
            .collect();
        common::print_table(
            &[
                "request/response service",
                "types",
                "clients",
                "servers",
                "qos",
            ],
            &rows,
        );
        println!();
    }
    Ok(())
}

/// `u64` or `[u8]`: the request (`request`) or response type's name.
pub fn reqres_type(s: &conduit::reqres::ServiceInfo, request: bool) -> String {
    let (t, slice) = if request {
        (&s.request, s.request_is_slice)
    } else {
        (&s.response, s.response_is_slice)
    };
    if slice {
        format!("[{}]", t.name)
    } else {
        t.name.clone()
    }
}

/// A request/response service as JSON (`list` and `info`).
pub fn reqres_json(s: &conduit::reqres::ServiceInfo) -> serde_json::Value {
    let q = &s.qos;
    json!({
        "kind": "request/response",
        "name": s.name,
        "segment": s.segment,
        "request": type_json(&s.request),
        "request_kind": if s.request_is_slice { "slice" } else { "typed" },
        "response": type_json(&s.response),
        "response_kind": if s.response_is_slice { "slice" } else { "typed" },
        "request_header": type_json(&s.request_header),
        "response_header": type_json(&s.response_header),
        "qos": {
            "max_clients": q.max_clients,
            "max_servers": q.max_servers,
            "active_requests": q.active_requests,
            "response_buffer": q.response_buffer,
            "max_loans": q.max_loans,
        },
        "clients": s.clients,
        "servers": s.servers,
    })
}

/// The blackboards: a JSON line each (`"kind": "blackboard"`, with every
/// entry), or a table (one row per blackboard; `conduit info` shows the
/// entries).
fn blackboards(domain: &str, json: bool) -> CmdResult {
    let list = conduit::blackboard::list(&common::as_domain(domain)?)
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot read /dev/shm: ", &e))?;
    if json {
        for b in &list {
            common::print_json(&blackboard_json(b));
        }
    } else if !list.is_empty() {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|b| {
                vec![
                    b.name.clone(),
                    format!("{} → {}", type_name(&b.key), type_name(&b.value)),
                    b.entries.len().to_string(),
                    usize::from(b.writer.is_some()).to_string(),
                    format!("{}/{}", b.readers.len(), b.max_readers),
                ]
            })
            .collect();
        common::print_table(
            &["blackboard", "key → value", "entries", "writer", "readers"],
            &rows,
        );
        println!();
    }
    Ok(())
}

/// `u32`, `[u8; 16]`, or the recorded name.
pub fn type_name(t: &conduit::service::TypeLayoutInfo) -> String {
    match t.byte_array_len() {
        Some(n) => format!("[u8; {n}]"),
        None => t.name.clone(),
    }
}

/// A blackboard as JSON, with its entries (keys and values shown as
/// `conduit get` shows them; hex for types it does not handle).
pub fn blackboard_json(b: &conduit::blackboard::BlackboardInfo) -> serde_json::Value {
    use crate::board::Format;
    let key = Format::of(&b.key);
    let value = Format::of(&b.value);
    let show = |f: Option<Format>, bytes: &[u8]| match f {
        Some(f) => f.json(bytes, false),
        None => json!(crate::board::to_hex(bytes)),
    };
    json!({
        "kind": "blackboard",
        "name": b.name,
        "segment": b.segment,
        "segment_bytes": b.segment_bytes,
        "key": type_json(&b.key),
        "value": type_json(&b.value),
        "max_readers": b.max_readers,
        "notify_changes": b.notify_changes,
        "writer": b.writer.map(|(id, node)| json!({"id": format!("{id:016x}"), "node": node.to_string()})),
        "readers": b.readers.iter().map(|(id, node)| json!({
            "id": format!("{id:016x}"), "node": node.to_string(),
        })).collect::<Vec<_>>(),
        "entries": b.entries.iter().map(|e| json!({
            "key": show(key, &e.key),
            "version": e.version,
            "value": e.value.as_deref().map(|v| show(value, v)),
            "event": e.event.map(|id| id.value()),
        })).collect::<Vec<_>>(),
    })
}

/// `u64`, `[u8]`, with the user header when there is one.
pub fn payload_name(s: &conduit::pubsub::ServiceInfo) -> String {
    let p = if s.kind == "slice" {
        format!("[{}]", s.payload.name)
    } else {
        s.payload.name.clone()
    };
    if s.header.size == 0 {
        p
    } else {
        format!("{p} + header {}", s.header.name)
    }
}

/// An event service as JSON.
pub fn event_json(e: &conduit::event::EventServiceInfo) -> serde_json::Value {
    json!({
        "kind": "event_service",
        "name": e.name,
        "segment": e.segment,
        "segment_bytes": e.segment_bytes,
        "max_event_id": e.max_event_id.value(),
        "max_notifiers": e.max_notifiers,
        "max_listeners": e.max_listeners,
        "notifiers": e.notifiers,
        "listeners": e.listeners.iter().map(|(id, node, pending)| json!({
            "id": format!("{id:016x}"), "node": node.to_string(), "pending": pending,
        })).collect::<Vec<_>>(),
    })
}

/// A recorded type as JSON.
pub fn type_json(t: &conduit::service::TypeLayoutInfo) -> serde_json::Value {
    json!({"name": t.name, "size": t.size, "align": t.align, "fingerprint": format!("{:016x}", t.fingerprint)})
}

/// A QoS as JSON.
pub fn qos_json(q: &conduit::pubsub::Qos) -> serde_json::Value {
    json!({
        "max_publishers": q.max_publishers,
        "max_subscribers": q.max_subscribers,
        "subscriber_buffer": q.subscriber_buffer,
        "history": q.history,
        "max_loans": q.max_loans,
        "max_borrowed": q.max_borrowed,
        "overflow": format!("{:?}", q.overflow),
    })
}

fn nodes(domain: &str, json: bool) -> CmdResult {
    let nodes = Node::list(domain)
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot list nodes: ", &e))?;
    if json {
        for n in nodes {
            common::print_json(&json!({
                "kind": "node",
                "id": n.id.to_string(),
                "pid": n.pid,
                "state": state(n.state),
                "name": n.name,
            }));
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let s = match n.state {
                NodeState::Alive => paint("alive", Style::Good),
                NodeState::Dead => paint("dead", Style::Bad),
            };
            vec![n.id.to_string(), n.pid.to_string(), s, n.name.clone()]
        })
        .collect();
    common::print_table(&["node", "pid", "state", "name"], &rows);
    Ok(())
}

fn state(s: NodeState) -> &'static str {
    match s {
        NodeState::Alive => "alive",
        NodeState::Dead => "dead",
    }
}

fn segments(domain: &str, all_domains: bool, json: bool) -> CmdResult {
    let objects = if all_domains {
        conduit::Domain::all_objects()
    } else {
        common::as_domain(domain)?.objects()
    }
    .map_err(|e| Failure::from_error(exit::FAILURE, "cannot read /dev/shm: ", &e))?;
    let mut rows = Vec::new();
    for object in objects {
        let name = object.file_name();
        let size = object.bytes;
        let (dom, object, what) = (object.domain, object.name, object.kind.to_string());
        if json {
            common::print_json(&json!({
                "kind": "segment", "name": name, "domain": dom, "object": object,
                "type": what, "bytes": size,
            }));
        } else {
            rows.push(vec![
                name.clone(),
                what.clone(),
                size.to_string(),
                common::bytes(size as f64),
            ]);
        }
    }
    if !json {
        common::print_table(&["object (/dev/shm)", "type", "bytes", "size"], &rows);
    }
    Ok(())
}
