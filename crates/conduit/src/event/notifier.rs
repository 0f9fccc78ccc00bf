//! The notifier: marks ids pending at every listener of its service.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::EventId;
use super::layout::{LISTENERS, NOTIFIERS};
use super::service::{EventInner, deliver};
use crate::service::PortId;

/// Why a notifier or listener could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortCreateError {
    /// Every slot of that kind is taken by live nodes.
    #[error("event service {service:?} already has its maximum of {max} {kind}")]
    ExceedsMaxPorts {
        /// The service.
        service: String,
        /// "notifiers" or "listeners".
        kind: &'static str,
        /// The limit.
        max: usize,
    },
}

impl From<crate::service::core::SlotsFull> for PortCreateError {
    fn from(full: crate::service::core::SlotsFull) -> PortCreateError {
        PortCreateError::ExceedsMaxPorts {
            service: full.service,
            kind: full.kind,
            max: full.max,
        }
    }
}

/// Why a notification failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The id is larger than the service's `max_event_id`.
    #[error("event id {id} exceeds the service's max_event_id {max}")]
    InvalidId {
        /// The id.
        id: EventId,
        /// The service's limit.
        max: EventId,
    },
}

/// Configures a [`Notifier`].
#[derive(Debug)]
pub struct NotifierBuilder {
    pub(super) service: Arc<EventInner>,
}

impl NotifierBuilder {
    /// Creates the notifier (notifies the created event if configured).
    pub fn create(self) -> Result<Notifier, PortCreateError> {
        let svc = self.service;
        let id = PortId::unique();
        let slot = svc.claim_slot(NOTIFIERS, id.0, |_| {})?;
        let notifier = Notifier {
            service: svc,
            slot,
            id,
            listeners: RefCell::new((u64::MAX, Vec::new())),
        };
        if let Some(e) = notifier.service.config.created_event {
            let _ = notifier.notify(e);
        }
        Ok(notifier)
    }
}

/// Notifies the listeners of an event service. `Send`, not `Sync`.
pub struct Notifier {
    service: Arc<EventInner>,
    slot: usize,
    id: PortId,
    /// (listener generation seen, listener slots in use then).
    listeners: RefCell<(u64, Vec<usize>)>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("service", &self.service.config.name)
            .field("id", &self.id)
            .finish()
    }
}

impl Notifier {
    /// This notifier's id.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// Marks `id` pending at every listener and wakes those that sleep.
    /// Returns the number of listeners reached. No system call unless a
    /// listener sleeps (on its futex or its wake-up descriptor); never
    /// blocks.
    pub fn notify(&self, id: impl Into<EventId>) -> Result<usize, NotifyError> {
        let id = id.into();
        let max = self.service.config.max_event_id;
        if id > max {
            return Err(NotifyError::InvalidId { id, max });
        }
        let view = self.service.events();
        let generation = view.header().generation[LISTENERS].load(Ordering::Acquire);
        let mut cache = self.listeners.borrow_mut();
        if cache.0 != generation {
            cache.1 = (0..self.service.layout.max_listeners)
                .filter(|&i| view.listener(i).head.id.load(Ordering::Acquire) != 0)
                .collect();
            cache.0 = generation;
        }
        let mut reached = 0;
        for &i in &cache.1 {
            if deliver(&self.service.domain, view.listener(i), id) {
                reached += 1;
            }
        }
        Ok(reached)
    }
}

/// A blackboard writer notifies through a notifier
/// ([`Writer::notify_through`](crate::blackboard::Writer::notify_through)).
impl crate::service::EventSink for Notifier {
    fn max_event_id(&self) -> EventId {
        self.service.config.max_event_id
    }

    fn notify_event(&self, id: EventId) {
        // Ids above the maximum are refused with an error that nobody
        // would see here; `notify_through` checks them up front.
        let _ = self.notify(id);
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some(e) = self.service.config.dropped_event {
            let _ = self.notify(e);
        }
        self.service.release_slot(NOTIFIERS, self.slot);
    }
}
