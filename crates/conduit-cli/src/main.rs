//! `conduit`: the command-line tool.

use clap::{Parser, Subcommand};

mod limits;
mod pubsub;
mod signal;

/// Inspect and drive conduit IPC from a terminal.
#[derive(Parser)]
#[command(name = "conduit", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List conduit's shared-memory objects in /dev/shm.
    Segments,
    /// Show the kernel limits of pipes, fd passing and message queues.
    Limits,
    /// List the nodes of a domain, alive or dead.
    Nodes {
        /// The domain (default: $CONDUIT_DOMAIN or "default").
        #[arg(long)]
        domain: Option<String>,
    },
    /// List the publish/subscribe services of a domain with type and QoS.
    Services {
        /// The domain (default: $CONDUIT_DOMAIN or "default").
        #[arg(long)]
        domain: Option<String>,
    },
    /// Clean up dead nodes: their ports, segments and unused services.
    Cleanup {
        /// The domain (default: $CONDUIT_DOMAIN or "default").
        #[arg(long)]
        domain: Option<String>,
    },
    /// Send signals (through pidfds, with values) and watch them arrive.
    #[command(subcommand)]
    Signal(signal::SignalCommand),
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Segments => match conduit::sys::shm::list("conduit.") {
            Ok(names) => {
                for n in names {
                    println!("{n}");
                }
            }
            Err(e) => {
                eprintln!("conduit: cannot read /dev/shm: {e}");
                std::process::exit(1);
            }
        },
        Command::Limits => std::process::exit(limits::run()),
        Command::Nodes { domain } => std::process::exit(pubsub::nodes(domain)),
        Command::Services { domain } => std::process::exit(pubsub::services(domain)),
        Command::Cleanup { domain } => std::process::exit(pubsub::cleanup(domain)),
        Command::Signal(command) => std::process::exit(signal::run(command)),
    }
}
