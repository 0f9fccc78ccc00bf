//! `conduit get <blackboard> <key>`: the latest value of one entry.

use std::ffi::OsString;

use clap::Args;
use serde_json::json;

use crate::common::{self, CmdResult, Failure, exit};

/// `conduit get` arguments.
#[derive(Args)]
pub struct GetArgs {
    /// The blackboard.
    pub blackboard: String,
    /// The key: the bytes of a byte-array key (any bytes), or a number.
    pub key: OsString,
    /// The key is given in hex (its raw bytes, little-endian for numbers).
    #[arg(long)]
    pub key_hex: bool,
    /// Show the value's raw bytes in hex.
    #[arg(long)]
    pub hex: bool,
    /// One JSON object: key, version, value.
    #[arg(long)]
    pub json: bool,
}

/// Runs `conduit get`: prints the value (text for byte arrays, trailing
/// zero bytes left out; decimal for numbers), or a JSON object.
pub fn run(args: GetArgs, domain: Option<String>) -> CmdResult {
    let domain = common::domain(domain)?;
    let b = crate::board::open(&domain, &args.blackboard, args.key_hex, args.hex)?;
    let key = b.key.parse(&args.key, args.key_hex, "key")?;
    let reader = b
        .board
        .reader()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot create a reader: ", &e))?;
    let entry = reader
        .entry(&key)
        .map_err(|e| Failure::from_error(exit::NOT_FOUND, "", &e))?;
    let (value, version) = entry
        .get_with_version()
        .map_err(|e| Failure::from_error(exit::FAILURE, "", &e))?;
    if args.json {
        common::print_json(&json!({
            "blackboard": args.blackboard,
            "key": b.key.json(&key, args.key_hex),
            "version": version,
            "value": b.value.json(&value, args.hex),
        }));
    } else {
        println!("{}", b.value.show(&value, args.hex));
    }
    Ok(())
}
