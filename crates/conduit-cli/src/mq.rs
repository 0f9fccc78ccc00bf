//! `conduit mq send|receive|list|info|remove`: POSIX message queues from
//! the terminal, interoperable with any POSIX client (`mq_open` in C,
//! Python's `posix_ipc`).
//!
//! A queue name without a leading `/` is a queue of the domain, whose
//! POSIX name is `/conduit.<domain>.<name>`; a name with a leading `/` is
//! a POSIX name used as it is, for queues made by other programs.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use conduit::mq::{MessageQueue, OpenError, PRIORITY_LIMIT, QueueBuilder, RecvError, SendError};

use crate::common::{self, CmdResult, Failure, exit};

/// `conduit mq` subcommands.
#[derive(Subcommand)]
pub enum MqCommand {
    /// Send one message (blocks while the queue is full, unless
    /// --timeout or --nonblocking).
    Send(SendArgs),
    /// Receive and print messages, highest priority first (blocks while
    /// the queue is empty, unless --timeout or --nonblocking).
    Receive(ReceiveArgs),
    /// The domain's queues (or every queue with --all), from the mqueue
    /// filesystem (/dev/mqueue).
    List(ListArgs),
    /// A queue's capacity, message size and current number of messages.
    Info(InfoArgs),
    /// Remove a queue's name (processes that have it open keep using it).
    Remove(RemoveArgs),
}

/// `conduit mq send` arguments.
#[derive(Args)]
pub struct SendArgs {
    /// The queue: a name in the domain (POSIX name
    /// /conduit.<domain>.<name>), or a POSIX name starting with '/'.
    pub queue: String,
    /// The message: UTF-8 text, or hex digits with --hex.
    pub message: String,
    /// MESSAGE is hexadecimal ("de ad be ef" and "deadbeef" both work).
    #[arg(long)]
    pub hex: bool,
    /// Priority 0..=32767; higher priorities are received first.
    #[arg(long, short, default_value_t = 0, allow_negative_numbers = true, value_parser = common::whole::<u32>)]
    pub priority: u32,
    /// Create the queue if it does not exist (it stays until `conduit mq
    /// remove`; --share-group GID gives it to that group, mode 0660).
    #[arg(long)]
    pub create: bool,
    /// Capacity in messages of a queue --create makes (default:
    /// /proc/sys/fs/mqueue/msg_default).
    #[arg(long, requires = "create", allow_negative_numbers = true, value_parser = common::whole::<usize>)]
    pub capacity: Option<usize>,
    /// Largest message in bytes of a queue --create makes (default:
    /// /proc/sys/fs/mqueue/msgsize_default).
    #[arg(long, requires = "create", allow_negative_numbers = true, value_parser = common::whole::<usize>)]
    pub message_size: Option<usize>,
    /// Seconds to wait while the queue is full, then fail.
    #[arg(long, allow_negative_numbers = true, conflicts_with = "nonblocking")]
    pub timeout: Option<f64>,
    /// Fail at once if the queue is full.
    #[arg(long)]
    pub nonblocking: bool,
}

/// How `conduit mq receive` prints a message.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// UTF-8 text (invalid bytes shown as U+FFFD), one message per line.
    Text,
    /// Hex digits, one message per line.
    Hex,
    /// The bytes exactly as received, nothing added.
    Raw,
}

/// `conduit mq receive` arguments.
#[derive(Args)]
pub struct ReceiveArgs {
    /// The queue: a name in the domain, or a POSIX name starting with '/'.
    pub queue: String,
    /// How many messages to receive; 0: until Ctrl-C (or --timeout, or an
    /// empty queue with --nonblocking).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = common::whole::<u64>)]
    pub count: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Same as --format hex.
    #[arg(long, conflicts_with = "format")]
    pub hex: bool,
    /// Same as --format raw.
    #[arg(long, conflicts_with_all = ["format", "hex"])]
    pub raw: bool,
    /// Print each message's priority before it (`<priority> <message>`;
    /// not with --raw).
    #[arg(long, conflicts_with = "raw")]
    pub show_priority: bool,
    /// Seconds to wait for each message while the queue is empty, then
    /// fail.
    #[arg(long, allow_negative_numbers = true, conflicts_with = "nonblocking")]
    pub timeout: Option<f64>,
    /// Fail at once if the queue is empty (with --count 0: stop there).
    #[arg(long)]
    pub nonblocking: bool,
}

/// `conduit mq list` arguments.
#[derive(Args)]
pub struct ListArgs {
    /// Every queue of the system (POSIX names), not only the domain's.
    #[arg(long)]
    pub all: bool,
    /// One JSON object per queue and line: `name`, `posix_name`,
    /// `messages`, `capacity`, `message_size` (null where the queue could
    /// not be read, with `error`).
    #[arg(long)]
    pub json: bool,
}

/// `conduit mq info` arguments.
#[derive(Args)]
pub struct InfoArgs {
    /// The queue: a name in the domain, or a POSIX name starting with '/'.
    pub queue: String,
    /// One JSON object: `name`, `domain`, `posix_name`, `messages`,
    /// `capacity`, `message_size`.
    #[arg(long)]
    pub json: bool,
}

/// `conduit mq remove` arguments.
#[derive(Args)]
pub struct RemoveArgs {
    /// The queue: a name in the domain, or a POSIX name starting with '/'.
    pub queue: String,
}

/// Runs `conduit mq …`.
pub fn run(command: MqCommand, domain: Option<String>) -> CmdResult {
    let domain = common::as_domain(&common::domain(domain)?)?;
    match command {
        MqCommand::Send(args) => send(args, &domain),
        MqCommand::Receive(args) => receive(args, &domain),
        MqCommand::List(args) => list(args, &domain),
        MqCommand::Info(args) => info(args, &domain),
        MqCommand::Remove(args) => remove(args, &domain),
    }
}

/// The POSIX name of `queue`: itself when it starts with `/`, else the
/// domain's queue of that name.
fn posix_name(domain: &conduit::Domain, queue: &str) -> Result<String, Failure> {
    if queue.starts_with('/') {
        return Ok(queue.to_owned());
    }
    if queue.is_empty() || queue.contains(['/', '\0']) {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "invalid queue name {queue:?}: a queue of the domain is named without '/' \
                 (or give a POSIX name: '/' followed by up to 255 characters without '/')"
            ),
        ));
    }
    Ok(domain.queue_name(queue))
}

fn seconds(what: &str, value: Option<f64>) -> Result<Option<Duration>, Failure> {
    value
        .map(|v| {
            Duration::try_from_secs_f64(v).map_err(|_| {
                Failure::new(
                    exit::USAGE,
                    format!("{what} must be a number of seconds ≥ 0, not {v}"),
                )
            })
        })
        .transpose()
}

/// Maps an open error to an exit code and a line.
fn open_failure(e: &OpenError) -> Failure {
    let code = match e {
        OpenError::InvalidName { .. }
        | OpenError::CapacityAboveLimit { .. }
        | OpenError::MessageSizeAboveLimit { .. }
        | OpenError::ZeroAttribute => exit::USAGE,
        OpenError::NotFound { .. } => exit::NOT_FOUND,
        OpenError::PermissionDenied { .. } => exit::PERMISSION,
        _ => exit::FAILURE,
    };
    let mut failure = Failure::from_error(code, "", e);
    match e {
        OpenError::NotFound { .. } => failure
            .message
            .push_str(" (create it with `conduit mq send --create`; `conduit mq list` shows the domain's queues)"),
        OpenError::PermissionDenied { .. } => failure
            .message
            .push_str(" (its owner can share it with a group: `conduit --share-group GID mq send --create`)"),
        _ => {}
    }
    failure
}

fn send(args: SendArgs, domain: &conduit::Domain) -> CmdResult {
    let name = posix_name(domain, &args.queue)?;
    let timeout = seconds("--timeout", args.timeout)?;
    if args.priority >= PRIORITY_LIMIT {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "priority {} is too high: priorities are 0..={}",
                args.priority,
                PRIORITY_LIMIT - 1
            ),
        ));
    }
    let message = if args.hex {
        crate::publish::parse_hex(&args.message).map_err(|e| Failure::new(exit::USAGE, e))?
    } else {
        args.message.into_bytes()
    };
    let mut builder = MessageQueue::builder(name)
        .send_only()
        .nonblocking(args.nonblocking);
    let queue = if args.create {
        builder = builder.permissions(common::permissions());
        if let Some(capacity) = args.capacity {
            builder = builder.capacity(capacity);
        }
        if let Some(size) = args.message_size {
            builder = builder.message_size(size);
        }
        builder.open_or_create()
    } else {
        builder.open()
    }
    .map_err(|e| open_failure(&e))?;
    let sent = match timeout {
        Some(timeout) => queue.send_timeout(&message, args.priority, timeout),
        None => queue.send(&message, args.priority),
    };
    sent.map_err(|e| {
        let code = match e {
            SendError::MessageTooLarge { .. } | SendError::InvalidPriority(_) => exit::USAGE,
            _ => exit::FAILURE,
        };
        Failure::from_error(code, &format!("cannot send to {}: ", queue.name()), &e)
    })
}

fn receive(args: ReceiveArgs, domain: &conduit::Domain) -> CmdResult {
    let name = posix_name(domain, &args.queue)?;
    let timeout = seconds("--timeout", args.timeout)?;
    let format = if args.hex {
        Format::Hex
    } else if args.raw {
        Format::Raw
    } else {
        args.format
    };
    let queue = MessageQueue::builder(name)
        .receive_only()
        .nonblocking(args.nonblocking)
        .open()
        .map_err(|e| open_failure(&e))?;
    let mut buf = vec![0; queue.message_size()];
    let mut interrupt = common::Interrupt::watch();
    let mut out = std::io::stdout().lock();
    let mut received = 0u64;
    while args.count == 0 || received < args.count {
        let message = match next(&queue, &mut buf, timeout, &mut interrupt) {
            Ok(Some(message)) => message,
            // Ctrl-C.
            Ok(None) => break,
            Err(RecvError::Empty) if args.count == 0 => break,
            Err(e) => {
                return Err(Failure::from_error(
                    exit::FAILURE,
                    &format!("cannot receive from {}: ", queue.name()),
                    &e,
                ));
            }
        };
        received += 1;
        let bytes = &buf[..message.len];
        let mut line = Vec::new();
        if args.show_priority {
            line.extend_from_slice(format!("{} ", message.priority).as_bytes());
        }
        match format {
            Format::Text => line.extend_from_slice(String::from_utf8_lossy(bytes).as_bytes()),
            Format::Hex => line.extend_from_slice(crate::subscribe::hex(bytes).as_bytes()),
            Format::Raw => line.extend_from_slice(bytes),
        }
        if format != Format::Raw {
            line.push(b'\n');
        }
        // A closed pipe (`| head`) ends the command quietly.
        if out.write_all(&line).and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    Ok(())
}

/// How long one blocking receive waits before looking for Ctrl-C (the
/// signals are watched, not delivered, so they do not interrupt the call).
const INTERRUPT_POLL: Duration = Duration::from_millis(100);

/// The next message, waiting at most `timeout` (forever if `None`);
/// `Ok(None)` on Ctrl-C.
fn next(
    queue: &MessageQueue,
    buf: &mut [u8],
    timeout: Option<Duration>,
    interrupt: &mut common::Interrupt,
) -> Result<Option<conduit::mq::Message>, RecvError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if interrupt.happened() {
            return Ok(None);
        }
        let slice = match deadline {
            Some(deadline) => deadline
                .saturating_duration_since(Instant::now())
                .min(INTERRUPT_POLL),
            None => INTERRUPT_POLL,
        };
        match queue.receive_timeout(buf, slice) {
            Ok(message) => return Ok(Some(message)),
            Err(RecvError::Timeout(_)) => {
                if let Some(deadline) = deadline
                    && Instant::now() >= deadline
                {
                    return Err(RecvError::Timeout(timeout.unwrap_or_default()));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn list(args: ListArgs, domain: &conduit::Domain) -> CmdResult {
    let names: Vec<(String, String)> = if args.all {
        conduit::mq::list("").map(|names| names.into_iter().map(|n| (n.clone(), n)).collect())
    } else {
        domain.queues().map(|names| {
            names
                .into_iter()
                .map(|n| (domain.queue_name(&n), n))
                .collect()
        })
    }
    .map_err(|e| Failure::from_error(exit::FAILURE, "", &e))?;
    // (name shown, attributes or why not)
    let looked: Vec<(&str, &str, Result<conduit::mq::Attributes, &'static str>)> = names
        .iter()
        .map(|(posix, shown)| {
            let opened = MessageQueue::builder(posix.as_str())
                .receive_only()
                .nonblocking(true)
                .open();
            let attributes = match opened.as_ref().map(MessageQueue::attributes) {
                Ok(Ok(a)) => Ok(a),
                Err(OpenError::PermissionDenied { .. }) => Err("no permission"),
                // Removed since listed, or unreadable.
                _ => Err("cannot be read"),
            };
            (posix.as_str(), shown.as_str(), attributes)
        })
        .collect();
    if args.json {
        for (posix, shown, attributes) in &looked {
            let value = match attributes {
                Ok(a) => serde_json::json!({
                    "name": shown, "posix_name": posix, "messages": a.current_messages,
                    "capacity": a.max_messages, "message_size": a.message_size,
                }),
                Err(why) => serde_json::json!({
                    "name": shown, "posix_name": posix, "messages": null,
                    "capacity": null, "message_size": null, "error": why,
                }),
            };
            common::print_json(&value);
        }
        return Ok(());
    }
    if looked.is_empty() {
        if args.all {
            println!("no message queues");
        } else {
            println!("no message queues in domain {:?}", domain.name());
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = looked
        .iter()
        .map(|(_, shown, attributes)| {
            let mut row = vec![shown.to_string()];
            match attributes {
                Ok(a) => row.extend([
                    a.current_messages.to_string(),
                    a.max_messages.to_string(),
                    a.message_size.to_string(),
                ]),
                Err(why) => {
                    row.extend(["-".into(), "-".into(), "-".into()]);
                    if *why == "no permission" {
                        row.push("(no permission)".into());
                    }
                }
            }
            row
        })
        .collect();
    common::print_table(
        &["QUEUE", "MESSAGES", "CAPACITY", "MESSAGE SIZE", ""],
        &rows,
    );
    Ok(())
}

fn info(args: InfoArgs, domain: &conduit::Domain) -> CmdResult {
    let name = posix_name(domain, &args.queue)?;
    // Opened for receiving (read permission), never receiving: looking
    // takes nothing from the queue.
    let queue = MessageQueue::builder(name)
        .receive_only()
        .nonblocking(true)
        .open()
        .map_err(|e| open_failure(&e))?;
    let attributes = queue
        .attributes()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot read the attributes: ", &e))?;
    if args.json {
        common::print_json(&serde_json::json!({
            "name": args.queue, "domain": domain.name(), "posix_name": queue.name(),
            "messages": attributes.current_messages, "capacity": attributes.max_messages,
            "message_size": attributes.message_size,
        }));
        return Ok(());
    }
    println!("{}", common::paint(&args.queue, common::Style::Bold));
    println!("  domain:        {}", domain.name());
    println!("  posix name:    {}", queue.name());
    println!("  messages:      {}", attributes.current_messages);
    println!("  capacity:      {} messages", attributes.max_messages);
    println!("  message size:  {} bytes", attributes.message_size);
    Ok(())
}

fn remove(args: RemoveArgs, domain: &conduit::Domain) -> CmdResult {
    let name = posix_name(domain, &args.queue)?;
    let checked: QueueBuilder = MessageQueue::builder(name.as_str());
    // Check the name as opening would (an invalid one is bad input, not
    // "no such queue").
    if let Err(e @ OpenError::InvalidName { .. }) = checked.open() {
        return Err(open_failure(&e));
    }
    MessageQueue::unlink(&name).map_err(|e| open_failure(&e))?;
    println!("removed {name}");
    Ok(())
}
