//! `conduit top`: a live, refreshing table of every service of a domain
//! with its message rate, queue fill level and estimated drops.
//!
//! Rates come from the per-connection sequence numbers in the service
//! segment (read-only, via `conduit::pubsub::details`), so `top` takes
//! no part in the traffic. A rate needs two refreshes: the first shows
//! `-` (JSON: null). "sent/s" counts each sample once per publisher (a
//! sample goes into every subscriber's queue: the publisher's fastest
//! queue is its rate), "taken/s" once per subscriber that took it. The
//! sent counters are 32-bit and wrap: differences are taken modulo 2^32. Drops are estimated as samples sent but neither
//! queued, released nor possibly borrowed; exact drop counters live inside
//! each publisher's process and are not in shared memory.
//!
//! On a terminal the screen is redrawn in place (ANSI escapes, no extra
//! dependency); otherwise one table per refresh is printed, which
//! `--iterations` bounds for scripts.

use std::collections::HashMap;

use conduit::service::PortId;
use std::io::Write;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::common::{self, CmdResult, Failure, exit};
use crate::list::payload_name;

/// `conduit top` arguments.
#[derive(Args)]
pub struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub interval: f64,
    /// Exit after this many refreshes (default: until Ctrl-C).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::common::whole::<u64>)]
    pub iterations: Option<u64>,
    /// One JSON object per service and refresh instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Key of a connection's counters: (service, publisher, subscriber).
type Key = (String, PortId, PortId);

/// Samples sent and taken per second since the last refresh (`None` on
/// the first refresh of the service). Sent: per publisher, the most any of
/// its queues advanced (each sample is pushed into every queue), summed
/// over publishers; taken: summed over every connection.
fn rates(
    service: &str,
    connections: &[conduit::pubsub::ConnectionInfo],
    last: &HashMap<Key, (u64, u64)>,
    secs: f64,
) -> (Option<f64>, Option<f64>) {
    let mut per_publisher: HashMap<PortId, u64> = HashMap::new();
    let mut taken = 0u64;
    let mut any = false;
    for c in connections {
        let Some(&(sent, released)) = last.get(&(service.to_owned(), c.publisher, c.subscriber))
        else {
            continue;
        };
        any = true;
        // `sent` wraps at 2^32.
        let advanced = u64::from((c.sent as u32).wrapping_sub(sent as u32));
        let best = per_publisher.entry(c.publisher).or_default();
        *best = (*best).max(advanced);
        taken += c.released.wrapping_sub(released);
    }
    if !any {
        return (None, None);
    }
    let sent: u64 = per_publisher.values().sum();
    (Some(sent as f64 / secs), Some(taken as f64 / secs))
}

/// Runs `conduit top`.
pub fn run(args: TopArgs, domain: Option<String>) -> CmdResult {
    let domain = common::domain(domain)?;
    let dom = common::as_domain(&domain)?;
    let interval = Duration::try_from_secs_f64(args.interval)
        .ok()
        .filter(|w| !w.is_zero())
        .ok_or_else(|| Failure::new(exit::USAGE, "--interval must be a number of seconds > 0"))?;
    let live = common::tty() && !args.json;
    let mut interrupt = common::Interrupt::watch();
    // (service, publisher, subscriber) → (sent, released) at the last refresh.
    let mut last: HashMap<Key, (u64, u64)> = HashMap::new();
    let mut last_time = Instant::now();
    let mut frame = 0u64;
    if live {
        print!("\x1b[?25l"); // hide the cursor
    }
    let result = loop {
        let services = match conduit::pubsub::list(&dom) {
            Ok(s) => s,
            Err(e) => {
                break Err(Failure::from_error(
                    exit::FAILURE,
                    "cannot read /dev/shm: ",
                    &e,
                ));
            }
        };
        let secs = last_time.elapsed().as_secs_f64().max(1e-3);
        last_time = Instant::now();
        let mut rows = Vec::new();
        let mut now: HashMap<Key, (u64, u64)> = HashMap::new();
        for s in &services {
            let Ok(Some(d)) = conduit::pubsub::details(&dom, &s.name) else {
                continue;
            };
            let (sent_rate, recv_rate) = rates(&s.name, &d.connections, &last, secs);
            let (mut queued, mut capacity, mut drops) = (0usize, 0usize, 0u64);
            for c in &d.connections {
                now.insert(
                    (s.name.clone(), c.publisher, c.subscriber),
                    (c.sent, c.released),
                );
                queued += c.queued;
                capacity += c.capacity;
                drops += c.dropped;
            }
            let fill = if capacity == 0 {
                0.0
            } else {
                queued as f64 / capacity as f64 * 100.0
            };
            if args.json {
                common::print_json(&json!({
                    "refresh": frame, "service": s.name, "payload": payload_name(s),
                    "publishers": s.publishers, "subscribers": s.subscribers,
                    "sent_per_s": sent_rate, "released_per_s": recv_rate,
                    "queued": queued, "capacity": capacity, "dropped": drops,
                }));
            }
            rows.push(vec![
                s.name.clone(),
                payload_name(s),
                s.publishers.to_string(),
                s.subscribers.to_string(),
                sent_rate.map_or("-".into(), |r| format!("{r:.1}")),
                recv_rate.map_or("-".into(), |r| format!("{r:.1}")),
                format!("{queued}/{capacity} ({fill:.0}%)"),
                drops.to_string(),
            ]);
        }
        for e in conduit::event::list(&dom).unwrap_or_default() {
            let pending: usize = e.listeners.iter().map(|l| l.2).sum();
            if args.json {
                common::print_json(&json!({
                    "refresh": frame, "service": e.name, "payload": "event",
                    "publishers": e.notifiers, "subscribers": e.listeners.len(),
                    "pending": pending,
                }));
            }
            rows.push(vec![
                e.name.clone(),
                format!("event 0..={}", e.max_event_id),
                e.notifiers.to_string(),
                e.listeners.len().to_string(),
                "-".into(),
                "-".into(),
                format!("{pending} pending"),
                "-".into(),
            ]);
        }
        for r in conduit::reqres::list(&dom).unwrap_or_default() {
            // Requests whose responses their clients await now.
            let awaiting: usize = conduit::reqres::details(&dom, &r.name)
                .ok()
                .flatten()
                .map_or(0, |d| d.clients.iter().map(|c| c.awaiting).sum());
            let types = format!(
                "{} → {}",
                crate::list::reqres_type(&r, true),
                crate::list::reqres_type(&r, false)
            );
            if args.json {
                common::print_json(&json!({
                    "refresh": frame, "service": r.name, "payload": types,
                    "kind": "request/response",
                    "clients": r.clients, "servers": r.servers, "awaiting": awaiting,
                }));
            }
            rows.push(vec![
                r.name.clone(),
                types,
                r.clients.to_string(),
                r.servers.to_string(),
                "-".into(),
                "-".into(),
                format!("{awaiting} awaiting"),
                "-".into(),
            ]);
        }
        last = now;
        if !args.json {
            let mut text = String::new();
            if live {
                text.push_str("\x1b[H\x1b[2J");
            }
            text.push_str(&format!(
                "conduit top — domain {domain:?}, {} service(s), every {:.1} s{}\n\n",
                rows.len(),
                interval.as_secs_f64(),
                if live { " (Ctrl-C to quit)" } else { "" }
            ));
            text.push_str(&common::table(
                &[
                    "service",
                    "payload",
                    "pubs/clients",
                    "subs/servers",
                    "sent/s",
                    "taken/s",
                    "queued",
                    "dropped",
                ],
                &rows,
            ));
            let mut out = std::io::stdout().lock();
            if write!(out, "{text}").and_then(|()| out.flush()).is_err() {
                break Ok(());
            }
        }
        frame += 1;
        if args.iterations.is_some_and(|n| frame >= n) {
            break Ok(());
        }
        let wake = Instant::now() + interval;
        let mut stop = false;
        while Instant::now() < wake {
            if interrupt.happened() {
                stop = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50).min(wake - Instant::now()));
        }
        if stop {
            break Ok(());
        }
    };
    if live {
        println!("\x1b[?25h");
    }
    result
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use conduit::pubsub::ConnectionInfo;
    use conduit::service::PortId;

    use super::rates;

    fn conn(publisher: u64, subscriber: u64, sent: u64, released: u64) -> ConnectionInfo {
        ConnectionInfo {
            publisher: PortId(publisher),
            subscriber: PortId(subscriber),
            sent,
            released,
            queued: 0,
            capacity: 8,
            dropped: 0,
        }
    }

    #[test]
    fn a_sample_counts_once_per_publisher_and_counters_wrap() {
        let key = |p: u64, s: u64| ("svc".to_owned(), PortId(p), PortId(s));
        // Publisher 1 feeds subscribers 10 and 11; publisher 2 feeds 10.
        // Publisher 1's counter wraps at 2^32 between the refreshes.
        let last = HashMap::from([
            (key(1, 10), (u64::from(u32::MAX) - 4, 100)),
            (key(1, 11), (u64::from(u32::MAX) - 4, 100)),
            (key(2, 10), (7, 0)),
        ]);
        let now = [conn(1, 10, 5, 110), conn(1, 11, 5, 104), conn(2, 10, 10, 3)];
        let (sent, taken) = rates("svc", &now, &last, 2.0);
        // 10 samples by publisher 1 (not 20), 3 by publisher 2; per second.
        assert_eq!(sent, Some(13.0 / 2.0));
        assert_eq!(taken, Some((10.0 + 4.0 + 3.0) / 2.0));
        // First refresh: no rate, not 0.
        assert_eq!(rates("svc", &now, &HashMap::new(), 2.0), (None, None));
    }
}
