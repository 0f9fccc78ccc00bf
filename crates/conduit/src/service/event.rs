//! The entry point of event services ([`crate::event`]).

use super::ServiceBuilder;
use crate::event::EventBuilder;

impl ServiceBuilder {
    /// An event service: [`Notifier`](crate::event::Notifier)s notify
    /// event ids, [`Listener`](crate::event::Listener)s learn every id
    /// notified since they last looked. Event services live in their own
    /// segment (`evt.<hash>`): a pub/sub service and an event service may
    /// share a name.
    pub fn event(self) -> EventBuilder {
        EventBuilder::new(self.node, &self.name)
    }
}
