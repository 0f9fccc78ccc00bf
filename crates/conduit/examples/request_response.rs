//! Request/response between two processes: the parent is a client that
//! asks a planner for paths; a child process is the server, which answers
//! each request with a stream of waypoints and ends the stream by dropping
//! the request. The client also shows what it sees when the server
//! drops a request without answering.
//!
//! `cargo run --example request_response`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use conduit::prelude::*;
use conduit::reqres::ResponseError;

#[derive(ShmSafe, Clone, Copy, Default, Debug)]
#[repr(C)]
struct PlanRequest {
    goal_x: f64,
    goal_y: f64,
    /// How many waypoints the client wants (0: the server refuses).
    waypoints: u32,
    _pad: u32,
}

#[derive(ShmSafe, Clone, Copy, Default, Debug)]
#[repr(C)]
struct Waypoint {
    x: f64,
    y: f64,
    index: u32,
    _pad: u32,
}

const ROLE: &str = "CONDUIT_EXAMPLE_CHILD";
const REQUESTS: u32 = 4;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(domain) = std::env::var(ROLE) {
        return server(&domain);
    }
    let domain = format!("example-reqres-{}", std::process::id());
    let node = Node::builder().name("client").domain(&domain).create()?;
    let svc = node
        .service("planner/plan")
        .request_response::<PlanRequest, Waypoint>()
        .open_or_create()?;
    let client = svc.client().create()?;

    let mut child = Command::new(std::env::current_exe()?)
        .env(ROLE, &domain)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    assert_eq!(lines.next().transpose()?.as_deref(), Some("serving"));

    for n in 0..REQUESTS {
        let request = PlanRequest {
            goal_x: f64::from(n) * 10.0,
            goal_y: 5.0,
            waypoints: n,
            _pad: 0,
        };
        let pending = client.loan_uninit()?.write(request).send()?;
        print!("request {n}:");
        loop {
            match pending.receive_timeout(Duration::from_secs(5)) {
                Ok(waypoint) => print!(" ({:.1}, {:.1})", waypoint.x, waypoint.y),
                Err(ResponseError::EndOfStream) => break println!(" — end"),
                Err(ResponseError::Unanswered) => break println!(" refused"),
                Err(e) => return Err(e.into()),
            }
        }
    }
    child.wait()?;
    Ok(())
}

fn server(domain: &str) -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::builder().name("planner").domain(domain).create()?;
    let svc = node
        .service("planner/plan")
        .request_response::<PlanRequest, Waypoint>()
        .open_or_create()?;
    let server = svc.server().create()?;
    println!("serving");
    for _ in 0..REQUESTS {
        let active = server.receive()?;
        let n = active.waypoints;
        for index in 0..n {
            let t = f64::from(index + 1) / f64::from(n);
            active
                .loan_uninit()?
                .write(Waypoint {
                    x: active.goal_x * t,
                    y: active.goal_y * t,
                    index,
                    _pad: 0,
                })
                .send()?;
        }
        // Dropping `active` ends the stream (with no response: Unanswered).
    }
    Ok(())
}
