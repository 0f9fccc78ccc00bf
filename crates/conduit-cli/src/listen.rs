//! `conduit listen <event>`: print the event ids notified, until Ctrl-C
//! or `--count`.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::common::{self, CmdResult, Failure, exit};

/// `conduit listen` arguments.
#[derive(Args)]
pub struct ListenArgs {
    /// The event service.
    pub event: String,
    /// Exit after this many ids (default: until Ctrl-C).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::common::whole::<u64>)]
    pub count: Option<u64>,
    /// One JSON object per id.
    #[arg(long)]
    pub json: bool,
    /// Create the service (default configuration) if it does not exist.
    #[arg(long)]
    pub create: bool,
}

/// Runs `conduit listen`. Ids notified several times between two wake-ups
/// are printed once (a listener learns the set of pending ids).
pub fn run(args: ListenArgs, domain: Option<String>) -> CmdResult {
    let domain = common::domain(domain)?;
    let (_node, service) = crate::notify::open(&domain, &args.event, args.create)?;
    let listener = service
        .listener()
        .create()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot create a listener: ", &e))?;
    let mut interrupt = common::Interrupt::watch();
    eprintln!("conduit: listening to {:?}", args.event);
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    'outer: while args.count.is_none_or(|c| seen < c) && !interrupt.happened() {
        let ids = listener.wait_timeout(Duration::from_millis(100));
        for id in ids.iter() {
            let line = if args.json {
                json!({"event": args.event, "id": id.value()}).to_string()
            } else {
                id.to_string()
            };
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                break 'outer;
            }
            seen += 1;
            if args.count.is_some_and(|c| seen >= c) {
                break 'outer;
            }
        }
    }
    Ok(())
}
