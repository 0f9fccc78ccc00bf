//! `conduit top`: a live, refreshing table of every service of a domain
//! with its message rate, queue fill level and estimated drops.
//!
//! Rates come from the per-connection sequence numbers in the service
//! segment (read-only, via `conduit::pubsub::details`), so `top` takes
//! no part in the traffic. Drops are estimated as samples sent but neither
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
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Exit after this many refreshes (default: until Ctrl-C or `q`).
    #[arg(long)]
    pub iterations: Option<u64>,
    /// One JSON object per service and refresh instead of the table.
    #[arg(long)]
    pub json: bool,
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
    let mut last: HashMap<(String, PortId, PortId), (u64, u64)> = HashMap::new();
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
        let mut now: HashMap<(String, PortId, PortId), (u64, u64)> = HashMap::new();
        for s in &services {
            let Ok(Some(d)) = conduit::pubsub::details(&dom, &s.name) else {
                continue;
            };
            let (mut sent_rate, mut recv_rate) = (0.0, 0.0);
            let (mut queued, mut capacity, mut drops) = (0usize, 0usize, 0u64);
            for c in &d.connections {
                let key = (s.name.clone(), c.publisher, c.subscriber);
                if let Some((sent, released)) = last.get(&key) {
                    sent_rate += c.sent.saturating_sub(*sent) as f64 / secs;
                    recv_rate += c.released.saturating_sub(*released) as f64 / secs;
                }
                now.insert(key, (c.sent, c.released));
                queued += c.queued;
                capacity += c.capacity;
                drops += c
                    .sent
                    .saturating_sub(c.released + c.queued as u64 + s.qos.max_borrowed as u64);
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
                    "queued": queued, "capacity": capacity, "drops_estimate": drops,
                }));
            }
            rows.push(vec![
                s.name.clone(),
                payload_name(s),
                s.publishers.to_string(),
                s.subscribers.to_string(),
                format!("{sent_rate:.1}"),
                format!("{recv_rate:.1}"),
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
                    "service", "payload", "pubs", "subs", "sent/s", "taken/s", "queued", "drops~",
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
