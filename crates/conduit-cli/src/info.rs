//! `conduit info <service>`: configuration, ports, queue fill levels,
//! messages sent and released per connection.

use conduit::node::{Node, NodeState};
use serde_json::json;

use crate::common::{self, CmdResult, Failure, Style, exit, paint};
use crate::list::{payload_name, qos_json, type_json};

/// Runs `conduit info`.
pub fn run(service: &str, domain: Option<String>, json: bool) -> CmdResult {
    let domain = common::domain(domain)?;
    common::service_name(service)?;
    let Some(details) = conduit::pubsub::details(&common::as_domain(&domain)?, service)
        .map_err(common::service_failure)?
    else {
        if let Some(details) = conduit::reqres::details(&common::as_domain(&domain)?, service)
            .map_err(common::service_failure)?
        {
            return reqres_info(&details, &domain, json);
        }
        if let Some(b) = conduit::blackboard::inspect(&common::as_domain(&domain)?, service)
            .map_err(common::service_failure)?
        {
            return blackboard_info(&b, &domain, json);
        }
        return event_info(service, &domain, json);
    };
    let nodes = Node::list(&domain).unwrap_or_default();
    let node_of = |id: conduit::node::NodeId| {
        nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| (n.pid, n.name.clone(), n.state == NodeState::Alive))
    };
    let s = &details.info;
    if json {
        let port = |p: &conduit::pubsub::PortInfo| {
            let n = node_of(p.node);
            json!({
                "id": format!("{:016x}", p.id),
                "node": p.node.to_string(),
                "pid": n.as_ref().map(|n| n.0),
                "node_name": n.as_ref().map(|n| n.1.clone()),
                "alive": n.as_ref().map(|n| n.2),
            })
        };
        common::print_json(&json!({
            "name": s.name,
            "domain": domain,
            "segment": s.segment,
            "segment_bytes": s.segment_bytes,
            "payload_kind": s.kind,
            "payload": type_json(&s.payload),
            "user_header": type_json(&s.header),
            "qos": qos_json(&s.qos),
            "publishers": details.publishers.iter().map(port).collect::<Vec<_>>(),
            "subscribers": details.subscribers.iter().map(port).collect::<Vec<_>>(),
            "connections": details.connections.iter().map(|c| json!({
                "publisher": format!("{:016x}", c.publisher),
                "subscriber": format!("{:016x}", c.subscriber),
                "sent": c.sent,
                "released": c.released,
                "queued": c.queued,
                "capacity": c.capacity,
                "dropped": c.dropped,
            })).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    println!("{}", paint(&s.name, Style::Bold));
    println!("  domain:      {domain}");
    println!(
        "  segment:     {} ({})",
        s.segment,
        common::bytes(s.segment_bytes as f64)
    );
    println!(
        "  payload:     {} (element size {}, align {}, fingerprint {:016x})",
        payload_name(s),
        s.payload.size,
        s.payload.align,
        s.payload.fingerprint
    );
    println!("  qos:         {}", s.qos);
    let port_rows = |kind: &str, ports: &[conduit::pubsub::PortInfo]| -> Vec<Vec<String>> {
        ports
            .iter()
            .map(|p| {
                let (pid, name, alive) = node_of(p.node)
                    .map(|(pid, name, alive)| {
                        (
                            pid.to_string(),
                            name,
                            if alive {
                                paint("alive", Style::Good)
                            } else {
                                paint("dead", Style::Bad)
                            },
                        )
                    })
                    .unwrap_or(("-".into(), "-".into(), paint("gone", Style::Bad)));
                vec![kind.to_owned(), format!("{:016x}", p.id), pid, alive, name]
            })
            .collect()
    };
    let mut rows = port_rows("publisher", &details.publishers);
    rows.extend(port_rows("subscriber", &details.subscribers));
    println!();
    common::print_table(&["port", "id", "pid", "node", "node name"], &rows);
    println!();
    let rows: Vec<Vec<String>> = details
        .connections
        .iter()
        .map(|c| {
            vec![
                format!("{:016x}", c.publisher),
                format!("{:016x}", c.subscriber),
                c.sent.to_string(),
                c.released.to_string(),
                format!("{}/{}", c.queued, c.capacity),
                c.dropped.to_string(),
            ]
        })
        .collect();
    common::print_table(
        &[
            "publisher",
            "subscriber",
            "sent",
            "released",
            "queued",
            "dropped",
        ],
        &rows,
    );
    Ok(())
}

/// `conduit info` of a blackboard (when there is no publish/subscribe
/// service of that name): configuration, writer, readers, every entry.
fn blackboard_info(b: &conduit::blackboard::BlackboardInfo, domain: &str, json: bool) -> CmdResult {
    use crate::board::Format;
    if json {
        let mut v = crate::list::blackboard_json(b);
        v["domain"] = json!(domain);
        common::print_json(&v);
        return Ok(());
    }
    let nodes = Node::list(domain).unwrap_or_default();
    let pid = |node: conduit::node::NodeId| {
        nodes
            .iter()
            .find(|n| n.id == node)
            .map_or("gone".to_owned(), |n| match n.state {
                NodeState::Alive => format!("pid {}", n.pid),
                NodeState::Dead => format!("pid {}, dead", n.pid),
            })
    };
    println!("{} (blackboard)", paint(&b.name, Style::Bold));
    println!("  domain:      {domain}");
    println!(
        "  segment:     {} ({})",
        b.segment,
        common::bytes(b.segment_bytes as f64)
    );
    for (what, t) in [("key:  ", &b.key), ("value:", &b.value)] {
        println!(
            "  {what}      {} (size {}, align {}, fingerprint {:016x})",
            crate::list::type_name(t),
            t.size,
            t.align,
            t.fingerprint
        );
    }
    println!(
        "  writer:      {}",
        b.writer.map_or("none".to_owned(), |(id, node)| format!(
            "{id:016x} ({})",
            pid(node)
        ))
    );
    println!(
        "  readers:     {}/{}   notify_changes: {}",
        b.readers.len(),
        b.max_readers,
        b.notify_changes
    );
    println!();
    let (key, value) = (Format::of(&b.key), Format::of(&b.value));
    let show = |f: Option<Format>, bytes: &[u8]| match f {
        Some(f) => f.show(bytes, false),
        None => crate::board::to_hex(bytes),
    };
    let rows: Vec<Vec<String>> = b
        .entries
        .iter()
        .map(|e| {
            vec![
                show(key, &e.key),
                e.version.to_string(),
                e.event.map_or("-".to_owned(), |id| id.to_string()),
                e.value
                    .as_deref()
                    .map_or("(being rewritten)".to_owned(), |v| show(value, v)),
            ]
        })
        .collect();
    common::print_table(&["key", "version", "event", "value"], &rows);
    Ok(())
}

/// `conduit info` of an event service (when there is no publish/subscribe
/// service of that name).
fn event_info(service: &str, domain: &str, json: bool) -> CmdResult {
    let events = conduit::event::list(&common::as_domain(domain)?)
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot read /dev/shm: ", &e))?;
    let Some(e) = events.iter().find(|e| e.name == service) else {
        return Err(Failure::new(
            exit::NOT_FOUND,
            format!("no service {service:?} in domain {domain:?}"),
        ));
    };
    if json {
        let mut v = crate::list::event_json(e);
        v["domain"] = json!(domain);
        common::print_json(&v);
        return Ok(());
    }
    let nodes = Node::list(domain).unwrap_or_default();
    println!("{} (event service)", paint(&e.name, Style::Bold));
    println!("  domain:      {domain}");
    println!(
        "  segment:     {} ({})",
        e.segment,
        common::bytes(e.segment_bytes as f64)
    );
    println!("  event ids:   0..={}", e.max_event_id);
    println!(
        "  notifiers:   {}/{}   listeners: {}/{}",
        e.notifiers,
        e.max_notifiers,
        e.listeners.len(),
        e.max_listeners
    );
    println!();
    let rows: Vec<Vec<String>> = e
        .listeners
        .iter()
        .map(|(id, node, pending)| {
            let n = nodes.iter().find(|n| n.id == *node);
            vec![
                format!("{id:016x}"),
                n.map_or("-".into(), |n| n.pid.to_string()),
                match n.map(|n| n.state) {
                    Some(NodeState::Alive) => paint("alive", Style::Good),
                    Some(NodeState::Dead) => paint("dead", Style::Bad),
                    None => paint("gone", Style::Bad),
                },
                pending.to_string(),
            ]
        })
        .collect();
    common::print_table(&["listener", "pid", "node", "pending ids"], &rows);
    Ok(())
}

/// `conduit info` of a request/response service: configuration, clients
/// (with the requests whose responses each awaits) and servers.
fn reqres_info(d: &conduit::reqres::ServiceDetails, domain: &str, json: bool) -> CmdResult {
    let nodes = Node::list(domain).unwrap_or_default();
    let node_of = |id: conduit::node::NodeId| nodes.iter().find(|n| n.id == id);
    let s = &d.info;
    if json {
        let port = |p: &conduit::reqres::PortInfo| {
            let n = node_of(p.node);
            json!({
                "id": format!("{:016x}", p.id.0),
                "node": p.node.to_string(),
                "pid": n.map(|n| n.pid),
                "node_name": n.map(|n| n.name.clone()),
                "alive": n.map(|n| n.state == NodeState::Alive),
            })
        };
        let mut v = crate::list::reqres_json(s);
        v["domain"] = json!(domain);
        v["client_ports"] = d
            .clients
            .iter()
            .map(|c| {
                let mut p = port(&c.port);
                p["awaiting"] = json!(c.awaiting);
                p
            })
            .collect();
        v["server_ports"] = d.servers.iter().map(port).collect();
        common::print_json(&v);
        return Ok(());
    }
    println!("{} (request/response service)", paint(&s.name, Style::Bold));
    println!("  domain:      {domain}");
    println!("  segment:     {}", s.segment);
    for (what, t, header, request) in [
        ("request", &s.request, &s.request_header, true),
        ("response", &s.response, &s.response_header, false),
    ] {
        println!(
            "  {:<12} {} (element size {}, align {}, fingerprint {:016x})",
            format!("{what}:"),
            crate::list::reqres_type(s, request),
            t.size,
            t.align,
            t.fingerprint
        );
        if header.size != 0 {
            println!(
                "  {:<12} {} (size {}, align {}, fingerprint {:016x})",
                "  header:", header.name, header.size, header.align, header.fingerprint
            );
        }
    }
    let q = &s.qos;
    println!(
        "  qos:         clients {}, servers {}, active requests {}, response buffer {}, loans {}",
        q.max_clients, q.max_servers, q.active_requests, q.response_buffer, q.max_loans
    );
    println!();
    let row = |kind: &str, p: &conduit::reqres::PortInfo, awaiting: String| {
        let n = node_of(p.node);
        vec![
            kind.to_owned(),
            format!("{:016x}", p.id.0),
            n.map_or("-".into(), |n| n.pid.to_string()),
            match n.map(|n| n.state) {
                Some(NodeState::Alive) => paint("alive", Style::Good),
                Some(NodeState::Dead) => paint("dead", Style::Bad),
                None => paint("gone", Style::Bad),
            },
            awaiting,
            n.map_or("-".into(), |n| n.name.clone()),
        ]
    };
    let mut rows: Vec<Vec<String>> = d
        .clients
        .iter()
        .map(|c| row("client", &c.port, c.awaiting.to_string()))
        .collect();
    rows.extend(d.servers.iter().map(|p| row("server", p, "-".into())));
    common::print_table(
        &["port", "id", "pid", "node", "awaiting", "node name"],
        &rows,
    );
    Ok(())
}
