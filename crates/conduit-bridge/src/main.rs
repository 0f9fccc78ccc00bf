//! `conduit-bridge`: runs one bridge for one conduit domain on this host
//! until SIGINT or SIGTERM.

use std::time::Duration;

use clap::Parser;

/// Forwards a conduit domain's publish/subscribe and event services to
/// the bridges of other hosts over Zenoh.
#[derive(Debug, Parser)]
#[command(name = "conduit-bridge", version)]
struct Args {
    /// The conduit domain to bridge (default: CONDUIT_DOMAIN or `default`).
    #[arg(long)]
    domain: Option<String>,
    /// The Zenoh key prefix the bridges share (default `conduit/<domain>`).
    #[arg(long)]
    key_prefix: Option<String>,
    /// A Zenoh configuration file (JSON5), passed through.
    #[arg(long)]
    zenoh_config: Option<std::path::PathBuf>,
    /// A Zenoh endpoint to listen on (repeatable), e.g. tcp/0.0.0.0:7447.
    #[arg(long)]
    listen: Vec<String>,
    /// A Zenoh endpoint to connect to (repeatable).
    #[arg(long)]
    connect: Vec<String>,
    /// Turn Zenoh's multicast scouting off (use only the given endpoints).
    #[arg(long)]
    no_multicast_scouting: bool,
    /// How often to announce the local services, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    announce_period_ms: u64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conduit-bridge: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let termination = conduit::signal::Termination::install()?;
    let mut builder = conduit_bridge::Bridge::builder()
        .announce_period(Duration::from_millis(args.announce_period_ms));
    if let Some(d) = &args.domain {
        builder = builder.domain(d);
    }
    if let Some(p) = &args.key_prefix {
        builder = builder.key_prefix(p);
    }
    if let Some(path) = &args.zenoh_config {
        builder = builder.zenoh_config(
            zenoh::Config::from_file(path)
                .map_err(|e| format!("zenoh configuration {}: {e}", path.display()))?,
        );
    }
    for l in &args.listen {
        builder = builder.listen(l);
    }
    for c in &args.connect {
        builder = builder.connect(c);
    }
    if args.no_multicast_scouting {
        builder = builder.multicast_scouting(false);
    }
    let bridge = builder.start()?;
    eprintln!("conduit-bridge: running as bridge {:#x}", bridge.id());
    while bridge.is_running() {
        if termination
            .wait_timeout(Duration::from_millis(200))
            .is_some()
        {
            break;
        }
    }
    bridge.stop()?;
    Ok(())
}
