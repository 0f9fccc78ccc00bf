//! `conduit call` and `conduit serve`: request/response services of `[u8]`
//! requests and `[u8]` responses from the terminal, for scripting.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Args;
use conduit::node::Node;
use conduit::reqres::{ReqResService, ResponseError};

use crate::common::{self, CmdResult, Failure, exit};

/// `conduit call` arguments.
#[derive(Args)]
pub struct CallArgs {
    /// The service (`[u8]` requests and responses).
    pub service: String,
    /// The request: UTF-8 text, or hex digits with --hex.
    pub data: String,
    /// DATA is hexadecimal, and responses are printed in hex.
    #[arg(long)]
    pub hex: bool,
    /// Seconds to wait for each response (and for the end of the stream).
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true)]
    pub timeout: f64,
    /// Send to this server only (its id in hex, as `conduit info` shows).
    #[arg(long, value_name = "ID")]
    pub server: Option<String>,
    /// Send wanting no response (fire-and-forget): exit once every server
    /// that got the request has taken it.
    #[arg(long)]
    pub no_response: bool,
}

/// `conduit serve` arguments.
#[derive(Args)]
pub struct ServeArgs {
    /// The service (`[u8]` requests and responses; created if missing).
    pub service: String,
    /// After `--`: answer each request by running this command with the
    /// request on its stdin; its stdout is the response (exit status ≠ 0:
    /// no response). Without it, each request is echoed back.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Exit after answering this many requests (default: until Ctrl-C).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::common::whole::<u64>)]
    pub count: Option<u64>,
    /// Seconds to wait, after the last request (--count), for the clients
    /// to take the responses and stream ends before exiting (a client that
    /// has not read them by then may lose them).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub linger: f64,
    /// The longest response, in bytes.
    #[arg(long, default_value_t = 65536, allow_negative_numbers = true, value_parser = crate::common::whole::<usize>)]
    pub max_len: usize,
}

/// An open `[u8]` → `[u8]` service and the node holding it.
struct BytesReqRes {
    _node: Node,
    service: ReqResService<[u8], [u8]>,
}

/// Opens `name` as a `[u8]` → `[u8]` request/response service (`create`:
/// create it with default QoS when missing), with clear errors for a
/// missing service, another kind and other types.
fn open(domain: &str, name: &str, create: bool) -> Result<BytesReqRes, Failure> {
    common::service_name(name)?;
    match conduit::reqres::details(&common::as_domain(domain)?, name) {
        Ok(Some(d)) => {
            let s = &d.info;
            let bytes = |t: &conduit::service::TypeLayoutInfo, slice| slice && t.name == "u8";
            if !bytes(&s.request, s.request_is_slice) || !bytes(&s.response, s.response_is_slice) {
                return Err(Failure::new(
                    exit::TYPE_MISMATCH,
                    format!(
                        "service {name:?} carries {} → {}; this command handles [u8] → [u8] services only",
                        crate::list::reqres_type(s, true),
                        crate::list::reqres_type(s, false)
                    ),
                ));
            }
        }
        Ok(None) if !create => {
            return Err(
                common::other_kind(domain, name, conduit::ServiceKind::RequestResponse)
                    .unwrap_or_else(|| {
                        Failure::new(
                            exit::NOT_FOUND,
                            format!("no service {name:?} in domain {domain:?}"),
                        )
                    }),
            );
        }
        // Created below; or another user's group-shared service, checked
        // by the open with the node's permissions.
        Ok(None) | Err(conduit::service::ServiceError::PermissionDenied { .. }) => {}
        Err(e) => return Err(common::service_failure(e)),
    }
    let node = common::node(domain)?;
    let builder = node.service(name).request_response::<[u8], [u8]>();
    let service = if create {
        builder.open_or_create()
    } else {
        builder.open()
    }
    .map_err(common::service_failure)?;
    Ok(BytesReqRes {
        _node: node,
        service,
    })
}

fn seconds(what: &str, v: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        Failure::new(
            exit::USAGE,
            format!("{what} must be a number of seconds ≥ 0"),
        )
    })
}

/// Runs `conduit call`: prints each response on its own line (text, or hex
/// with --hex), then exits 0 at the end of the stream.
pub fn call(args: CallArgs, domain: Option<String>) -> CmdResult {
    let domain = common::domain(domain)?;
    let timeout = seconds("--timeout", args.timeout)?;
    let data = if args.hex {
        crate::publish::parse_hex(&args.data).map_err(|e| Failure::new(exit::USAGE, e))?
    } else {
        args.data.clone().into_bytes()
    };
    let server = match &args.server {
        Some(id) => Some(conduit::service::PortId(
            u64::from_str_radix(id.trim_start_matches("0x"), 16).map_err(|_| {
                Failure::new(exit::USAGE, format!("--server {id:?} is not a hex port id"))
            })?,
        )),
        None => None,
    };
    let svc = open(&domain, &args.service, false)?;
    let client = svc
        .service
        .client()
        .max_slice_len(data.len().max(1))
        .create()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot create a client: ", &e))?;
    fn send_failed(e: &(dyn std::error::Error + 'static)) -> Failure {
        Failure::from_error(exit::FAILURE, "send failed: ", e)
    }
    let loan = client
        .loan_slice_uninit(data.len())
        .map_err(|e| send_failed(&e))?
        .write_from_slice(&data);
    if args.no_response {
        loan.send_no_response().map_err(|e| send_failed(&e))?;
        // Our requests leave with our pool: wait until every server that
        // got it has taken it (and dropped it), within --timeout.
        let deadline = std::time::Instant::now() + timeout;
        while client.in_flight() > 0 {
            if std::time::Instant::now() >= deadline {
                return Err(Failure::new(
                    exit::FAILURE,
                    format!("no server took the request within {timeout:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        return Ok(());
    }
    let pending = match server {
        Some(id) => loan.send_to(id),
        None => loan.send(),
    }
    .map_err(|e| send_failed(&e))?;
    let mut out = std::io::stdout().lock();
    loop {
        match pending.receive_timeout(timeout) {
            Ok(response) => {
                let line = if args.hex {
                    response
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                } else {
                    String::from_utf8_lossy(&response).into_owned()
                };
                let _ = writeln!(out, "{line}");
            }
            Err(ResponseError::EndOfStream) => return Ok(()),
            Err(e @ ResponseError::Timeout(_)) => {
                return Err(Failure::new(exit::FAILURE, e.to_string()));
            }
            Err(e) => return Err(Failure::new(exit::FAILURE, e.to_string())),
        }
    }
}

/// Runs `conduit serve`: answers requests until Ctrl-C (or --count).
pub fn serve(args: ServeArgs, domain: Option<String>) -> CmdResult {
    let domain = common::domain(domain)?;
    let linger = seconds("--linger", args.linger)?;
    let svc = open(&domain, &args.service, true)?;
    let server = svc
        .service
        .server()
        .max_slice_len(args.max_len)
        .create()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot create a server: ", &e))?;
    let mut interrupt = common::Interrupt::watch();
    eprintln!("conduit: serving {:?} (id {})", args.service, server.id());
    let mut served = 0u64;
    while args.count.is_none_or(|n| served < n) && !interrupt.happened() {
        let active = match server.receive_timeout(Duration::from_millis(100)) {
            Ok(a) => a,
            Err(conduit::reqres::ReceiveError::Timeout(_)) => continue,
            Err(e) => {
                eprintln!("conduit: {e}");
                continue;
            }
        };
        served += 1;
        if !active.wants_response() {
            continue;
        }
        let response = if args.command.is_empty() {
            Some(active.to_vec())
        } else {
            run_command(&args.command, &active)
        };
        if let Some(bytes) = response {
            if let Err(e) = active.send_slice_copy(&bytes) {
                eprintln!(
                    "conduit: cannot answer request {}: {e}",
                    active.request_id()
                );
            }
        }
        // Dropping `active` ends the stream.
    }
    let deadline = std::time::Instant::now() + linger;
    while server.undelivered() > 0 && std::time::Instant::now() < deadline && !interrupt.happened()
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Runs `command` with `input` on its stdin; its stdout, if it succeeded.
fn run_command(command: &[String], input: &[u8]) -> Option<Vec<u8>> {
    let mut child = match Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("conduit: cannot run {:?}: {e}", command[0]);
            return None;
        }
    };
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    // Write from another thread: a command that answers before reading all
    // of a large request must not deadlock us.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().ok()?;
    let _ = writer.join();
    if output.status.success() {
        Some(output.stdout)
    } else {
        eprintln!(
            "conduit: {:?} exited with {}: no response",
            command[0], output.status
        );
        None
    }
}
