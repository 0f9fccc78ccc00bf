//! `conduit hz <service>`: message rate and bandwidth of a `[u8]` service,
//! measured by subscribing and counting.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::bytes_service;
use crate::common::{self, CmdResult, Failure, exit};

/// `conduit hz` arguments.
#[derive(Args)]
pub struct HzArgs {
    /// The service (a `[u8]` slice service).
    pub service: String,
    /// Seconds per report line.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub window: f64,
    /// Exit after this many report lines (default: until Ctrl-C).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::common::whole::<u64>)]
    pub count: Option<u64>,
    /// One JSON object per report line.
    #[arg(long)]
    pub json: bool,
}

/// Runs `conduit hz`.
pub fn run(args: HzArgs, domain: Option<String>) -> CmdResult {
    let domain = common::domain(domain)?;
    let window = Duration::try_from_secs_f64(args.window)
        .ok()
        .filter(|w| !w.is_zero())
        .ok_or_else(|| Failure::new(exit::USAGE, "--window must be a number of seconds > 0"))?;
    let svc = bytes_service::open(&domain, &args.service, false)?;
    let subscriber = svc
        .service
        .subscriber()
        .create()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot create a subscriber: ", &e))?;
    let mut interrupt = common::Interrupt::watch();
    eprintln!("conduit: subscribed to {:?}", args.service);
    let mut out = std::io::stdout().lock();
    let mut reports = 0;
    let mut start = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut first_seq: Option<u64> = None;
    let mut last_seq = 0u64;
    while args.count.is_none_or(|c| reports < c) && !interrupt.happened() {
        let left = window.saturating_sub(start.elapsed());
        if !left.is_zero() {
            match subscriber.receive_timeout(left.min(Duration::from_millis(100))) {
                Ok(s) => {
                    n += 1;
                    bytes += s.len() as u64;
                    first_seq.get_or_insert(s.sequence());
                    last_seq = s.sequence();
                }
                Err(conduit::pubsub::ReceiveError::Timeout(_)) => {}
                Err(e) => return Err(Failure::from_error(exit::FAILURE, "receive failed: ", &e)),
            }
            continue;
        }
        let secs = start.elapsed().as_secs_f64();
        let (rate, bw) = (n as f64 / secs, bytes as f64 / secs);
        // Samples the publisher sent that this subscriber never saw
        // (overwritten in its queue): from the sequence numbers.
        let missed = first_seq.map_or(0, |f| (last_seq.saturating_sub(f) + 1).saturating_sub(n));
        let line = if args.json {
            json!({"service": args.service, "window_s": secs, "messages": n, "bytes": bytes,
                   "rate_hz": rate, "bytes_per_s": bw, "missed": missed})
            .to_string()
        } else {
            format!(
                "{:>10.1} msg/s  {:>12}/s  ({n} samples in {secs:.2} s, {missed} missed)",
                rate,
                common::bytes(bw)
            )
        };
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break;
        }
        reports += 1;
        start = Instant::now();
        (n, bytes, first_seq) = (0, 0, None);
    }
    Ok(())
}
