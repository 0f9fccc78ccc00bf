//! A request/response server in an event loop: it waits in a `WaitSet` for
//! requests and a periodic timer at once. The client (the parent process)
//! sends fire-and-forget commands (`send_no_response`: "add n"), then a
//! query addressed to that one server (`send_to`) that the server answers
//! with the running total.
//!
//! `cargo run --example request_response_waitset`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use conduit::prelude::*;
use conduit::waitset::{Control, Event, WaitSet};

#[derive(ShmSafe, Clone, Copy, Default, Debug)]
#[repr(C)]
struct Cmd {
    /// 0: add `value` to the total (fire-and-forget); 1: query the total;
    /// 2: stop.
    op: u64,
    value: u64,
}

const ROLE: &str = "CONDUIT_EXAMPLE_CHILD";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(domain) = std::env::var(ROLE) {
        return server(&domain);
    }
    let domain = format!("example-reqres-ws-{}", std::process::id());
    let node = Node::builder().name("client").domain(&domain).create()?;
    let svc = node
        .service("counter")
        .request_response::<Cmd, u64>()
        .open_or_create()?;
    let client = svc.client().create()?;
    let mut child = Command::new(std::env::current_exe()?)
        .env(ROLE, &domain)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    assert_eq!(lines.next().transpose()?.as_deref(), Some("serving"));

    let server = client.server_ids()[0];
    for value in 1..=10 {
        // Commands want no response: the server cannot answer them, and
        // the client never waits.
        loop {
            match client.send_copy_no_response(Cmd { op: 0, value }) {
                Ok(()) => break,
                // At most `active_requests` in flight: wait for the server.
                Err(conduit::reqres::SendOrLoanError::Loan(
                    conduit::reqres::LoanError::ExceedsActiveRequests(_),
                )) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => return Err(e.into()),
            }
        }
    }
    let query = client
        .loan_uninit()?
        .write(Cmd { op: 1, value: 0 })
        .send_to(server)?;
    let total = query.receive_timeout(Duration::from_secs(5))?;
    println!("total from server {}: {}", total.server_id(), *total);
    drop(total);
    drop(query);
    client.send_copy_no_response(Cmd { op: 2, value: 0 })?;
    child.wait()?;
    Ok(())
}

fn server(domain: &str) -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::builder().name("counter").domain(domain).create()?;
    let svc = node
        .service("counter")
        .request_response::<Cmd, u64>()
        .open_or_create()?;
    let server = svc.server().create()?;
    let set = WaitSet::new()?;
    let requests = set.attach(&server)?;
    let ticks = set.attach_interval(Duration::from_millis(100))?;
    let mut total = 0u64;
    println!("serving");
    set.run(|event| {
        match event {
            Event::Interval { id, .. } if id == ticks.id() => {
                eprintln!("server: total so far {total}");
            }
            Event::Ready { id, .. } if id == requests.id() => {
                // Readable: take every request now (the next try that
                // finds nothing re-arms the descriptor).
                while let Ok(Some(active)) = server.try_receive() {
                    match active.op {
                        0 => total += active.value,
                        1 => {
                            if let Err(e) = active.send_copy(total) {
                                eprintln!("server: cannot answer: {e}");
                            }
                        }
                        _ => return Control::Stop,
                    }
                }
            }
            _ => {}
        }
        Control::Continue
    })?;
    Ok(())
}
