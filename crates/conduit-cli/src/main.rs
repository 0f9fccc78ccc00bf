//! `conduit`: the command-line tool.

use clap::{Parser, Subcommand};

mod bench;
mod bench_report;
mod board;
mod bytes_service;
mod clean;
mod common;
mod get;
mod hz;
mod info;
mod limits;
mod list;
mod listen;
mod mq;
mod notify;
mod publish;
mod reqres_cmd;
mod rng;
mod set;
mod signal;
mod soak;
mod subscribe;
mod top;
mod watch;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the operation failed (OS error, timeout, corrupted shared state)
  2  bad input: usage error, invalid name or domain, malformed data
  3  no such service
  4  the service carries a type this command cannot handle, or the name
     is a service of another kind (e.g. `sub` on an event service)
  5  permission denied
  141  the reader of the output went away (as a process killed by SIGPIPE)
Errors are one line on stderr, starting with `conduit: `.";

/// Inspect and drive conduit IPC from a terminal.
#[derive(Parser)]
#[command(name = "conduit", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// The domain (default: $CONDUIT_DOMAIN, else "default").
    #[arg(long, global = true)]
    domain: Option<String>,
    /// Share what this command creates with group GID (mode 0660) and
    /// join services shared with that group (like a node built with
    /// `Permissions::group(GID)`); default: private to this user (0600).
    /// (Not `--group`: `conduit signal send --group` means a process group.)
    #[arg(long = "share-group", global = true, value_name = "GID")]
    share_group: Option<u32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List services, nodes and shared-memory segments (or one kind).
    List {
        /// Only this kind.
        #[arg(value_enum)]
        what: Option<list::What>,
        /// Segments of every domain, not just --domain.
        #[arg(long)]
        all_domains: bool,
        /// JSON lines instead of tables.
        #[arg(long)]
        json: bool,
        /// After the listing, print a line per service that appears
        /// (`+ KIND NAME`) or disappears (`- KIND NAME`) in the domain,
        /// until Ctrl-C or --count.
        #[arg(long)]
        follow: bool,
        /// With --follow: stop after N lines.
        #[arg(long, requires = "follow")]
        count: Option<u64>,
    },
    /// A service's configuration, ports, queue fill levels and counters.
    Info {
        /// The service name.
        service: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove what dead nodes left behind (their ports, segments, and
    /// services nobody uses); says what was removed and what was kept.
    Clean {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Publish bytes to a [u8] service.
    Pub(publish::PubArgs),
    /// Print the samples of a [u8] service (until Ctrl-C or --count).
    Sub(subscribe::SubArgs),
    /// Send a [u8] request to a request/response service and print each
    /// response until the end of the stream.
    Call(reqres_cmd::CallArgs),
    /// Answer [u8] requests: echo them, or run the command after `--` per
    /// request (request on stdin, stdout as the response), until Ctrl-C.
    Serve(reqres_cmd::ServeArgs),
    /// Notify the listeners of an event service (id 0 unless --id).
    Notify(notify::NotifyArgs),
    /// Print the event ids notified (until Ctrl-C or --count).
    Listen(listen::ListenArgs),
    /// POSIX message queues: send, receive, list, info, remove (any POSIX
    /// client can use the same queues: /conduit.<domain>.<name>).
    #[command(subcommand)]
    Mq(mq::MqCommand),
    /// The latest value of a blackboard entry ([u8; N] or number values).
    Get(get::GetArgs),
    /// Update a blackboard entry (takes the writer slot for the update).
    Set(set::SetArgs),
    /// Print a blackboard entry's (or every entry's) value, then each
    /// change (until Ctrl-C or --count).
    Watch(watch::WatchArgs),
    /// Message rate and bandwidth of a [u8] service.
    Hz(hz::HzArgs),
    /// A live, refreshing table of all services: rates, fill levels, drops.
    Top(top::TopArgs),
    /// Benchmark every mechanism against the baselines, in one run.
    Bench(bench::BenchArgs),
    /// Show the kernel limits of shared memory, descriptors, mappings,
    /// pipes, fd passing and message queues.
    Limits {
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send signals (through pidfds, with values) and watch them arrive.
    #[command(subcommand)]
    Signal(signal::SignalCommand),
    /// Soak test: publishers and subscribers in separate processes, killed
    /// and restarted at random; every sample checked (sequence, checksum).
    ///
    /// Runs in a fresh domain (soak-<pid>-<n>; $CONDUIT_DOMAIN is ignored)
    /// unless --domain is given. Prints messages moved, kills survived,
    /// corrupt, duplicates, lost, leftovers and hangs; exits 1 if any
    /// invariant was violated. Ctrl-C stops early and still reports.
    Soak(soak::SoakArgs),
    /// Internal: one publisher or subscriber of `conduit soak`.
    #[command(hide = true)]
    SoakWorker(soak::WorkerArgs),
}

fn main() {
    // Benchmark children re-execute this binary: run their role and exit.
    bench::child_main_if_requested();
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        // The reader of our output went away (`conduit sub … | head`):
        // stop quietly, with the status of a process killed by SIGPIPE,
        // as other Unix tools do (Rust ignores SIGPIPE, so `print!` fails).
        if what.starts_with("failed printing to std") && what.contains("Broken pipe") {
            std::process::exit(141);
        }
        eprintln!("conduit: internal error: {}", what.replace('\n', " "));
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
    common::set_group(cli.share_group);
    let domain = cli.domain;
    let result = match cli.command {
        Command::List {
            what,
            all_domains,
            json,
            follow,
            count,
        } => list::run(what, domain.clone(), all_domains, json).and_then(|()| {
            if follow {
                list::follow(domain, json, count)
            } else {
                Ok(())
            }
        }),
        Command::Info { service, json } => info::run(&service, domain, json),
        Command::Clean { dry_run, json } => clean::run(domain, dry_run, json),
        Command::Pub(args) => publish::run(args, domain),
        Command::Sub(args) => subscribe::run(args, domain),
        Command::Call(args) => reqres_cmd::call(args, domain),
        Command::Serve(args) => reqres_cmd::serve(args, domain),
        Command::Notify(args) => notify::run(args, domain),
        Command::Listen(args) => listen::run(args, domain),
        Command::Mq(command) => mq::run(command, domain),
        Command::Get(args) => get::run(args, domain),
        Command::Set(args) => set::run(args, domain),
        Command::Watch(args) => watch::run(args, domain),
        Command::Hz(args) => hz::run(args, domain),
        Command::Top(args) => top::run(args, domain),
        Command::Bench(args) => bench::run(args),
        Command::Limits { json } => std::process::exit(limits::run(json)),
        Command::Signal(command) => std::process::exit(signal::run(command)),
        Command::Soak(args) => soak::run(args, domain),
        Command::SoakWorker(args) => soak::worker(args, domain),
    };
    match result {
        Ok(()) => std::process::exit(common::exit::OK),
        Err(f) => {
            eprintln!("conduit: {}", f.message);
            std::process::exit(f.code);
        }
    }
}

/// Help and version go to stdout as usual; a usage error becomes one line
/// on stderr (exit code 2), like every other error.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    if e.kind() == ErrorKind::InvalidUtf8 {
        // clap does not say which argument: name it.
        if let Some((i, bad)) = std::env::args_os()
            .enumerate()
            .skip(1)
            .find(|(_, a)| a.to_str().is_none())
        {
            eprintln!(
                "conduit: argument {i} ({bad:?}) is not valid UTF-8 \
                 (names and text data are UTF-8; `pub --hex` and `mq send --hex` take any bytes) (see --help)"
            );
            std::process::exit(common::exit::USAGE);
        }
    }
    let text = e.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("Usage:")
                && !l.starts_with("For more information")
                && !l.starts_with("tip:")
        })
        .collect();
    let line = parts.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    eprintln!("conduit: {line} (see --help)");
    std::process::exit(common::exit::USAGE);
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// clap's own consistency checks over every subcommand (duplicate or
    /// clashing argument names, a global option shadowing a subcommand's).
    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
