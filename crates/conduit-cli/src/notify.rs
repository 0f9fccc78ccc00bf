//! `conduit notify <event> [--id N]`: notify the listeners of an event
//! service.

use clap::Args;
use conduit::event::EventService;
use conduit::node::Node;

use crate::common::{self, CmdResult, Failure, exit};

/// `conduit notify` arguments.
#[derive(Args)]
pub struct NotifyArgs {
    /// The event service.
    pub event: String,
    /// The event id (0..=max_event_id of the service).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = crate::common::whole::<usize>)]
    pub id: usize,
    /// Create the service (default configuration) if it does not exist.
    #[arg(long)]
    pub create: bool,
}

/// Opens (or with `create`, opens or creates) event service `name`.
pub fn open(domain: &str, name: &str, create: bool) -> Result<(Node, EventService), Failure> {
    common::service_name(name)?;
    let node = common::node(domain)?;
    let builder = node.service(name).event();
    let service = if create {
        builder.open_or_create()
    } else {
        builder.open()
    }
    .map_err(|e| match e {
        conduit::service::ServiceError::NotFound(_) => {
            common::other_kind(domain, name, conduit::ServiceKind::Event)
                .unwrap_or_else(|| common::service_failure(e))
        }
        e => common::service_failure(e),
    })?;
    Ok((node, service))
}

/// Runs `conduit notify`; prints how many listeners were reached.
pub fn run(args: NotifyArgs, domain: Option<String>) -> CmdResult {
    let domain = common::domain(domain)?;
    let (_node, service) = open(&domain, &args.event, args.create)?;
    let notifier = service
        .notifier()
        .create()
        .map_err(|e| Failure::from_error(exit::FAILURE, "cannot create a notifier: ", &e))?;
    let reached = notifier
        .notify(args.id)
        .map_err(|e| Failure::from_error(exit::USAGE, "", &e))?;
    println!("notified id {} to {reached} listener(s)", args.id);
    Ok(())
}
