//! `conduit pub <service> <data>`: publish bytes from the terminal.

use std::time::{Duration, Instant};

use clap::Args;

use crate::bytes_service;
use crate::common::{self, CmdResult, Failure, exit};

/// `conduit pub` arguments.
#[derive(Args)]
pub struct PubArgs {
    /// The service (a `[u8]` slice service).
    pub service: String,
    /// The data: UTF-8 text, or hex digits with --hex ("de ad be ef" and
    /// "deadbeef" both work).
    pub data: String,
    /// DATA is hexadecimal.
    #[arg(long)]
    pub hex: bool,
    /// Publish this many times.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = crate::common::whole::<u64>)]
    pub count: u64,
    /// Seconds between two samples (with --count).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub interval: f64,
    /// Create the service (default QoS) if it does not exist.
    #[arg(long)]
    pub create: bool,
    /// Seconds to wait, after the last send, for subscribers to take the
    /// samples before exiting (a sample not taken by then is lost unless
    /// the service keeps history).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub linger: f64,
}

/// Parses hex digits, ignoring whitespace and `:`.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b':')
        .collect();
    let digits = digits
        .strip_prefix(b"0x")
        .map(<[u8]>::to_vec)
        .unwrap_or(digits);
    if digits.len() % 2 != 0 {
        return Err(format!("odd number of hex digits in {text:?}"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| format!("{text:?} is not hexadecimal"))
        })
        .collect()
}

fn seconds(what: &str, v: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        Failure::new(
            exit::USAGE,
            format!("{what} must be a number of seconds ≥ 0"),
        )
    })
}

/// Runs `conduit pub`.
pub fn run(args: PubArgs, domain: Option<String>) -> CmdResult {
    let domain = common::domain(domain)?;
    let interval = seconds("--interval", args.interval)?;
    let linger = seconds("--linger", args.linger)?;
    let data = if args.hex {
        parse_hex(&args.data).map_err(|e| Failure::new(exit::USAGE, e))?
    } else {
        args.data.clone().into_bytes()
    };
    let svc = bytes_service::open(&domain, &args.service, args.create)?;
    let publisher = svc
        .service
        .publisher()
        .max_slice_len(data.len().max(1))
        .create()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot create a publisher: ", &e))?;
    let mut interrupt = common::Interrupt::watch();
    for i in 0..args.count {
        if interrupt.happened() {
            break;
        }
        if i > 0 && !interval.is_zero() {
            std::thread::sleep(interval);
        }
        publisher
            .send_slice_copy(&data)
            .map_err(|e| Failure::from_error(exit::FAILURE, "send failed: ", &e))?;
    }
    // Wait until every subscriber took what we sent (or linger ran out).
    let deadline = Instant::now() + linger;
    while Instant::now() < deadline && !interrupt.happened() {
        // Read through the open service: another member's group-shared
        // service cannot be mapped by a tool's read.
        let pending: usize = svc
            .service
            .details()
            .connections
            .iter()
            .filter(|c| c.publisher == publisher.id())
            .map(|c| c.queued)
            .sum();
        if pending == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
