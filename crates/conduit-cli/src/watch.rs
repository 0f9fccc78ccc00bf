//! `conduit watch <blackboard> [key]`: print an entry's (or every
//! entry's) value, then each change, until Ctrl-C or `--count`.

use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::common::{self, CmdResult, Failure, exit};

/// `conduit watch` arguments.
#[derive(Args)]
pub struct WatchArgs {
    /// The blackboard.
    pub blackboard: String,
    /// Only this entry's key (default: every entry).
    pub key: Option<OsString>,
    /// The key is given, and keys are shown, in hex.
    #[arg(long)]
    pub key_hex: bool,
    /// Show values' raw bytes in hex.
    #[arg(long)]
    pub hex: bool,
    /// Exit after this many changes (default: until Ctrl-C).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::common::whole::<u64>)]
    pub count: Option<u64>,
    /// One JSON object per line: key, version, value.
    #[arg(long)]
    pub json: bool,
}

/// Runs `conduit watch`. Prints `KEY vVERSION VALUE` for each watched
/// entry, then a line per change seen. Updates between two looks show as
/// one change (a blackboard holds state, not a stream). One entry of a
/// blackboard created with `notify_changes` is waited for on the reader's
/// futex; otherwise the versions are polled every millisecond (a load
/// each).
pub fn run(args: WatchArgs, domain: Option<String>) -> CmdResult {
    let domain = common::domain(domain)?;
    let b = crate::board::open(&domain, &args.blackboard, args.key_hex, args.hex)?;
    let reader = b
        .board
        .reader()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot create a reader: ", &e))?;
    let entries = match &args.key {
        Some(key) => {
            let key = b.key.parse(key, args.key_hex, "key")?;
            vec![
                reader
                    .entry(&key)
                    .map_err(|e| Failure::from_error(exit::NOT_FOUND, "", &e))?,
            ]
        }
        None => (0..reader.len())
            .filter_map(|i| reader.entry_at(i))
            .collect(),
    };
    let mut interrupt = common::Interrupt::watch();
    eprintln!("conduit: watching {:?}", args.blackboard);
    let mut out = std::io::stdout().lock();
    let mut print = |entry: &conduit::blackboard::RawReaderEntry<'_>| -> Result<u64, bool> {
        let Ok((value, version)) = entry.get_with_version() else {
            // Rewritten during every attempt: look again next time.
            return Err(false);
        };
        let key = entry.key();
        let line = if args.json {
            json!({
                "key": b.key.json(&key, args.key_hex),
                "version": version,
                "value": b.value.json(&value, args.hex),
            })
            .to_string()
        } else {
            format!(
                "{} v{version} {}",
                b.key.show(&key, args.key_hex),
                b.value.show(&value, args.hex)
            )
        };
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|_| true)?;
        Ok(version)
    };
    let mut seen = Vec::with_capacity(entries.len());
    for e in &entries {
        match print(e) {
            Ok(v) => seen.push(v),
            Err(true) => return Ok(()),
            Err(false) => seen.push(u64::MAX),
        }
    }
    let wait_one = entries.len() == 1 && b.board.notify_changes();
    let mut changes = 0u64;
    while args.count.is_none_or(|c| changes < c) && !interrupt.happened() {
        if wait_one {
            // Wakes at each update; the timeout only to look at Ctrl-C.
            let _ = entries[0].wait_changed_since(seen[0], Some(Duration::from_millis(100)));
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
        for (e, last) in entries.iter().zip(seen.iter_mut()) {
            if e.changed_since(*last) {
                match print(e) {
                    Ok(v) => {
                        *last = v;
                        changes += 1;
                    }
                    Err(true) => return Ok(()),
                    Err(false) => {}
                }
                if args.count.is_some_and(|c| changes >= c) {
                    break;
                }
            }
        }
    }
    Ok(())
}
