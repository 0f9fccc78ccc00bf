//! What every subcommand shares: the domain, exit codes, error lines,
//! colors (only on a terminal), simple tables, Ctrl-C handling.

use std::io::IsTerminal;

/// Exit codes scripts can rely on (also in `--help` and the README).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// An operation failed at run time (OS error, timeout, corrupted state).
    pub const FAILURE: i32 = 1;
    /// Bad input: usage error, invalid name, malformed data.
    pub const USAGE: i32 = 2;
    /// The service (or other named object) does not exist.
    pub const NOT_FOUND: i32 = 3;
    /// The service exists but carries a type this command cannot handle.
    pub const TYPE_MISMATCH: i32 = 4;
    /// Permission denied.
    pub const PERMISSION: i32 = 5;
}

/// A failed command: its exit code and one line for stderr.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: i32,
    /// The message (without the `conduit: ` prefix).
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A failure from an error and its sources, classified by the errno
    /// found in the chain (EACCES/EPERM → permission).
    pub fn from_error(code: i32, context: &str, e: &(dyn std::error::Error + 'static)) -> Failure {
        let mut code = code;
        let mut text = format!("{context}{e}");
        let mut source = e.source();
        let mut seen = vec![e.to_string()];
        let check = |err: &(dyn std::error::Error + 'static), code: &mut i32| {
            if let Some(errno) = err.downcast_ref::<conduit::Errno>()
                && (*errno == conduit::Errno::ACCESS || *errno == conduit::Errno::PERM)
            {
                *code = exit::PERMISSION;
            }
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::PermissionDenied
            {
                *code = exit::PERMISSION;
            }
        };
        check(e, &mut code);
        while let Some(s) = source {
            check(s, &mut code);
            let line = s.to_string();
            if !seen.iter().any(|l| l.contains(&line)) {
                text.push_str(": ");
                text.push_str(&line);
                seen.push(line);
            }
            source = s.source();
        }
        Failure::new(code, text.replace('\n', " "))
    }
}

/// Result of a subcommand.
pub type CmdResult = Result<(), Failure>;

/// The domain to use: `--domain`, else `$CONDUIT_DOMAIN`, else `default`;
/// validated.
/// `$CONDUIT_DOMAIN` that is not UTF-8 is bad input, never silently
/// `default`.
pub fn domain(d: Option<String>) -> Result<String, Failure> {
    let d = match d {
        Some(d) => d,
        None => conduit::shm::try_default_domain()
            .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?,
    };
    conduit::shm::validate_domain(&d)
        .map_err(|e| Failure::new(exit::USAGE, format!("invalid domain {d:?}: {e}")))?;
    Ok(d)
}

/// Parses a whole number ≥ 0 for an option. The options take negative
/// numbers as values (`--count -1`, not only `--count=-1`), so that a
/// negative one is reported as what it is rather than as an unknown flag.
pub fn whole<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    if text.trim_start().starts_with('-') {
        return Err(format!("must be 0 or more, not {text}"));
    }
    text.parse()
        .map_err(|_| format!("{text:?} is not a whole number"))
}

/// Checks a service name, as the library would.
pub fn service_name(name: &str) -> Result<(), Failure> {
    conduit::service::validate_service_name(name)
        .map_err(|e| Failure::new(exit::USAGE, e.to_string()))
}

/// Maps a service error to an exit code and a line.
pub fn service_failure(e: conduit::service::ServiceError) -> Failure {
    use conduit::service::ServiceError as E;
    let code = match &e {
        E::InvalidName { .. } | E::InvalidConfig(_) => exit::USAGE,
        E::NotFound(_) => exit::NOT_FOUND,
        E::IncompatibleType { .. } | E::IncompatibleConfig { .. } | E::NameCollision { .. } => {
            exit::TYPE_MISMATCH
        }
        E::PermissionDenied { .. } => exit::PERMISSION,
        _ => exit::FAILURE,
    };
    let mut failure = Failure::from_error(code, "", &e);
    if code == exit::PERMISSION {
        failure
            .message
            .push_str(" (here: pass --share-group GID to join a service shared with group GID)");
    }
    failure
}

/// Whether stdout is a terminal (colors and screen control only then).
pub fn tty() -> bool {
    std::io::stdout().is_terminal()
}

/// `text` in bold/green/red/dim when stdout is a terminal.
pub fn paint(text: &str, style: Style) -> String {
    if !tty() {
        return text.to_owned();
    }
    let code = match style {
        Style::Bold => "1",
        Style::Good => "32",
        Style::Bad => "31",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// A text style.
#[derive(Clone, Copy)]
pub enum Style {
    Bold,
    Good,
    Bad,
}

/// Prints a table with a header; columns sized to their widest cell (the
/// last column is not padded).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", table(header, rows));
}

/// [`print_table`] into a string.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                s.push_str(&c);
            } else {
                let pad = widths[i].saturating_sub(c.chars().count());
                s.push_str(&c);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = paint(
        line(header.iter().map(|h| h.to_string()).collect()).trim_end(),
        Style::Bold,
    ) + "\n";
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

/// Prints one JSON value on its own line.
pub fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

/// Ctrl-C / SIGTERM, watched so that long-running commands leave cleanly
/// (dropping their ports and node) instead of dying mid-way.
pub struct Interrupt(Option<conduit::signal::Signals>);

impl Interrupt {
    pub fn watch() -> Interrupt {
        use conduit::signal::Signal;
        Interrupt(conduit::signal::Signals::new([Signal::INT, Signal::TERM]).ok())
    }

    /// True once SIGINT or SIGTERM arrived.
    pub fn happened(&mut self) -> bool {
        match &mut self.0 {
            Some(s) => matches!(s.try_next(), Ok(Some(_))),
            None => false,
        }
    }
}

static PERMISSIONS: std::sync::OnceLock<conduit::shm::Permissions> = std::sync::OnceLock::new();

/// Records `--share-group`: the permissions of the CLI's node (set once, before
/// the subcommand runs).
pub fn set_group(group: Option<u32>) {
    let permissions = group.map_or(
        conduit::shm::Permissions::owner_only(),
        conduit::shm::Permissions::group,
    );
    let _ = PERMISSIONS.set(permissions);
}

/// The permissions `--share-group` asked for (owner only without it).
pub fn permissions() -> conduit::shm::Permissions {
    PERMISSIONS.get().copied().unwrap_or_default()
}

/// A node for the CLI's own ports, with the `--share-group` permissions.
/// The [`conduit::Domain`] of a domain name (checked).
pub fn as_domain(name: &str) -> Result<conduit::Domain, Failure> {
    conduit::Domain::new(name)
        .map_err(|e| Failure::new(exit::USAGE, format!("invalid domain {name:?}: {e}")))
}

/// When no service `name` of kind `wanted` exists but one of another kind
/// does: the failure (exit 4) naming that kind and the commands that
/// handle it. `None` if no service of any kind has that name.
pub fn other_kind(domain: &str, name: &str, wanted: conduit::ServiceKind) -> Option<Failure> {
    use conduit::{ObjectKind, ServiceKind};
    let objects = as_domain(domain).ok()?.objects().ok()?;
    let kind = ServiceKind::ALL.into_iter().find(|&kind| {
        kind != wanted
            && objects
                .iter()
                .any(|o| o.kind == ObjectKind::Service(kind) && o.name == kind.segment_name(name))
    })?;
    let commands = match kind {
        ServiceKind::PublishSubscribe => " (use conduit pub, sub, hz)",
        ServiceKind::Event => " (use conduit notify, listen)",
        ServiceKind::Blackboard => " (use conduit get, set, watch)",
        _ => "",
    };
    Some(Failure::new(
        exit::TYPE_MISMATCH,
        format!(
            "no {wanted} {name:?} in domain {domain:?}; {name:?} is a service of another kind: {kind}{commands}"
        ),
    ))
}

pub fn node(domain: &str) -> Result<conduit::node::Node, Failure> {
    conduit::node::Node::builder()
        .name("conduit-cli")
        .domain(domain)
        .permissions(permissions())
        .create()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot create a node: ", &e))
}

/// "8 B", "1.5 KiB", …
pub fn bytes(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", units[u])
    } else {
        format!("{v:.1} {}", units[u])
    }
}
