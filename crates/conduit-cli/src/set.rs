//! `conduit set <blackboard> <key> <value>`: update one entry.

use std::ffi::OsString;

use clap::Args;

use crate::common::{self, CmdResult, Failure, exit};

/// `conduit set` arguments.
#[derive(Args)]
pub struct SetArgs {
    /// The blackboard.
    pub blackboard: String,
    /// The key: the bytes of a byte-array key (any bytes), or a number.
    pub key: OsString,
    /// The value: for a byte array its bytes (any bytes, zero-padded to
    /// the array's length), else a number.
    #[arg(allow_hyphen_values = true)]
    pub value: OsString,
    /// The key is given in hex (its raw bytes, little-endian for numbers).
    #[arg(long)]
    pub key_hex: bool,
    /// The value is given in hex (its raw bytes).
    #[arg(long)]
    pub hex: bool,
}

/// Runs `conduit set`: takes the blackboard's writer slot for the one
/// update (exit 1 while a live writer has it), prints the new version.
pub fn run(args: SetArgs, domain: Option<String>) -> CmdResult {
    let domain = common::domain(domain)?;
    let b = crate::board::open(&domain, &args.blackboard, args.key_hex, args.hex)?;
    let key = b.key.parse(&args.key, args.key_hex, "key")?;
    let value = b.value.parse(&args.value, args.hex, "value")?;
    let writer = b
        .board
        .writer()
        .map_err(|e| Failure::from_error(exit::FAILURE, "", &e))?;
    let version = writer.update(&key, &value).map_err(|e| {
        let code = match e {
            conduit::blackboard::UpdateError::UnknownKey { .. } => exit::NOT_FOUND,
            _ => exit::USAGE,
        };
        Failure::from_error(code, "", &e)
    })?;
    println!(
        "{} = {} (version {version})",
        b.key.show(&key, args.key_hex),
        b.value.show(&value, args.hex)
    );
    Ok(())
}
