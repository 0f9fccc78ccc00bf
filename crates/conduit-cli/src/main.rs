//! `conduit`: the command-line tool.

use clap::{Parser, Subcommand};

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
    /// Send signals (through pidfds, with values) and watch them arrive.
    #[command(subcommand)]
    Signal(signal::SignalCommand),
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Segments => {
            match conduit::sys::shm::list("conduit.") {
                Ok(names) => {
                    for n in names {
                        println!("{n}");
                    }
                }
                Err(e) => {
                    eprintln!("conduit: cannot read /dev/shm: {e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Signal(command) => std::process::exit(signal::run(command)),
    }
}
