//! Event ids and the one thing a pattern may ask of another pattern's
//! notifications: [`EventSink`]. Patterns never import each other; a
//! blackboard writer that wakes an event service's listeners after each
//! update does it through this trait, which the event pattern's
//! [`Notifier`](crate::event::Notifier) implements.

/// Largest event id any service may use (the event pattern's
/// `MAX_EVENT_ID_LIMIT`).
pub(crate) const EVENT_ID_LIMIT: usize = 4095;

/// An event id: `0..=max_event_id` of its service (at most
/// [`MAX_EVENT_ID_LIMIT`](crate::event::MAX_EVENT_ID_LIMIT)).
///
/// Every API that takes one also takes a plain `usize`
/// (`notifier.notify(7)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EventId(pub usize);

impl EventId {
    /// The id as a number.
    pub const fn value(self) -> usize {
        self.0
    }
}

impl From<usize> for EventId {
    fn from(id: usize) -> EventId {
        EventId(id)
    }
}

impl From<EventId> for usize {
    fn from(id: EventId) -> usize {
        id.0
    }
}

impl PartialEq<usize> for EventId {
    fn eq(&self, other: &usize) -> bool {
        self.0 == *other
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Something that notifies event ids: an event service's
/// [`Notifier`](crate::event::Notifier), or your own forwarding. A
/// blackboard [`Writer`](crate::blackboard::Writer) given one with
/// [`notify_through`](crate::blackboard::Writer::notify_through) notifies
/// the id bound to an entry after each update of it.
pub trait EventSink: Send {
    /// The largest id [`notify_event`](Self::notify_event) accepts.
    fn max_event_id(&self) -> EventId;

    /// Notifies `id` (at most [`max_event_id`](Self::max_event_id)).
    /// Must not block: it runs on the blackboard writer's update path.
    fn notify_event(&self, id: EventId);
}
