//! `conduit sub <service>`: print the samples of a `[u8]` service.

use std::io::Write;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::json;

use crate::bytes_service;
use crate::common::{self, CmdResult, Failure, exit};

/// How `conduit sub` prints a sample.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// UTF-8 text (invalid bytes shown as U+FFFD), one sample per line.
    Text,
    /// Hex digits.
    Hex,
    /// One JSON object per sample: sequence, publisher, length, and the
    /// data as `text` (valid UTF-8) or `hex`.
    Json,
}

/// `conduit sub` arguments.
#[derive(Args)]
pub struct SubArgs {
    /// The service (a `[u8]` slice service).
    pub service: String,
    /// Exit after this many samples (default: run until Ctrl-C).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::common::whole::<u64>)]
    pub count: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Same as --format hex.
    #[arg(long, conflicts_with = "format")]
    pub hex: bool,
    /// Same as --format json.
    #[arg(long, conflicts_with_all = ["format", "hex"])]
    pub json: bool,
    /// Create the service (default QoS) if it does not exist.
    #[arg(long)]
    pub create: bool,
    /// If the service does not exist yet, wait until it appears (told by
    /// service discovery, `Domain::watch`, with a look every 100 ms as a
    /// fallback; Ctrl-C stops waiting), then subscribe.
    #[arg(long, conflicts_with = "create")]
    pub wait: bool,
}

/// How long `--wait` sleeps between looks when nothing reported the
/// service (the discovery watch wakes it sooner when a service appears).
const WAIT_POLL: Duration = Duration::from_millis(100);

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `conduit sub`.
pub fn run(args: SubArgs, domain: Option<String>) -> CmdResult {
    let domain = common::domain(domain)?;
    let format = if args.hex {
        Format::Hex
    } else if args.json {
        Format::Json
    } else {
        args.format
    };
    let mut interrupt = common::Interrupt::watch();
    let mut waiting = false;
    // Created on the first miss: wakes the wait when any service of the
    // domain appears (no watch, e.g. out of inotify instances: plain sleeps).
    let mut watch: Option<conduit::discovery::ServiceWatch> = None;
    let svc = loop {
        match bytes_service::open(&domain, &args.service, args.create) {
            Err(f) if f.code == exit::NOT_FOUND && args.wait => {
                if !waiting {
                    eprintln!("conduit: waiting for service {:?}", args.service);
                    waiting = true;
                }
                if interrupt.happened() {
                    return Ok(());
                }
                if watch.is_none() {
                    watch = common::as_domain(&domain).ok().and_then(|d| d.watch().ok());
                    if let Some(w) = &watch {
                        let _ = w.try_events(); // what exists now: looked at above
                    }
                }
                match &watch {
                    Some(w) => {
                        let _ = w.wait(Some(WAIT_POLL));
                    }
                    None => std::thread::sleep(WAIT_POLL),
                }
            }
            Err(mut f) if f.code == exit::NOT_FOUND => {
                f.message
                    .push_str(" (pass --wait to wait until it appears)");
                return Err(f);
            }
            r => break r?,
        }
    };
    let subscriber = svc
        .service
        .subscriber()
        .create()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot create a subscriber: ", &e))?;
    // Scripts (and tests) may wait for this line before publishing.
    eprintln!("conduit: subscribed to {:?}", args.service);
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    while args.count.is_none_or(|c| seen < c) {
        if interrupt.happened() {
            break;
        }
        let sample = match subscriber.receive_timeout(Duration::from_millis(100)) {
            Ok(s) => s,
            Err(conduit::pubsub::ReceiveError::Timeout(_)) => continue,
            Err(e) => return Err(Failure::from_error(exit::FAILURE, "receive failed: ", &e)),
        };
        let bytes: &[u8] = &sample;
        let line = match format {
            Format::Text => String::from_utf8_lossy(bytes).into_owned(),
            Format::Hex => hex(bytes),
            Format::Json => {
                let mut v = json!({
                    "sequence": sample.sequence(),
                    "publisher": format!("{:016x}", sample.publisher_id()),
                    "len": bytes.len(),
                });
                match std::str::from_utf8(bytes) {
                    Ok(t) => v["text"] = json!(t),
                    Err(_) => v["hex"] = json!(hex(bytes)),
                }
                v.to_string()
            }
        };
        drop(sample);
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            // stdout closed (e.g. `| head`): stop quietly.
            break;
        }
        seen += 1;
    }
    Ok(())
}
