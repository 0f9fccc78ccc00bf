//! The listener: waits for the ids notified to its service.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::EventSet;
use super::layout::LISTENERS;
use super::notifier::PortCreateError;
use super::service::EventInner;
use crate::service::PortId;
use crate::sync::Spin;
use crate::sync::fdwake::FdWake;
use crate::sys::Errno;

/// Configures a [`Listener`].
#[derive(Debug)]
pub struct ListenerBuilder {
    pub(super) service: Arc<EventInner>,
    pub(super) spin: Spin,
}

impl ListenerBuilder {
    crate::service::port_setters!(spin);

    /// Creates the listener and registers it in the service.
    pub fn create(self) -> Result<Listener, PortCreateError> {
        let svc = self.service;
        let id = PortId::unique();
        let slot = {
            let view = svc.events();
            svc.claim_slot(LISTENERS, id.0, |i| {
                // The slot may hold a dead listener's words: reset them
                // before the new id is published.
                let slot = view.listener(i);
                for w in slot.pending {
                    w.store(0, Ordering::Relaxed);
                }
                slot.head.fd_armed.store(0, Ordering::Relaxed);
            })?
        };
        Ok(Listener {
            service: svc,
            slot,
            id,
            spin: self.spin,
            fd: FdWake::default(),
        })
    }
}

/// Waits for the events of a service. `Send`, not `Sync`.
///
/// Attach it to a [`WaitSet`](crate::waitset::WaitSet) (it is
/// [`Attachable`](crate::waitset::Attachable)) or poll
/// [`wake_fd`](Listener::wake_fd) with any event loop: when the descriptor
/// is readable, call [`try_wait`](Listener::try_wait) (which also re-arms
/// it). The first report after the descriptor was created may be spurious.
pub struct Listener {
    service: Arc<EventInner>,
    slot: usize,
    id: PortId,
    spin: Spin,
    pub(crate) fd: FdWake,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("service", &self.service.config.name)
            .field("id", &self.id)
            .finish()
    }
}

impl Listener {
    /// This listener's id.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// Takes the pending ids (plain, without the descriptor protocol).
    fn take(&self) -> Option<EventSet> {
        let view = self.service.events();
        let slot = view.listener(self.slot);
        let mut words = Vec::new();
        let mut any = false;
        for (i, w) in slot.pending.iter().enumerate() {
            if w.load(Ordering::Relaxed) != 0 {
                let v = w.swap(0, Ordering::Acquire);
                if v != 0 {
                    if words.is_empty() {
                        words.resize(slot.pending.len(), 0);
                    }
                    words[i] = v;
                    any = true;
                }
            }
        }
        any.then_some(EventSet { words })
    }

    /// Takes every id notified since the last look; empty if none. Never
    /// blocks. If the wake-up descriptor is in use, also re-arms it when
    /// nothing is pending.
    pub fn try_wait(&self) -> EventSet {
        let r = if self.fd.is_active() {
            let view = self.service.events();
            let head = view.listener(self.slot).head;
            self.fd.poll(&head.event, &head.fd_armed, || self.take())
        } else {
            self.take()
        };
        r.unwrap_or_default()
    }

    /// Waits up to `timeout` for at least one id (spins for the configured
    /// budget, then sleeps on the futex); empty on timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> EventSet {
        self.wait_inner(Some(timeout)).unwrap_or_default()
    }

    /// Waits until at least one id is pending and takes them all.
    pub fn wait(&self) -> EventSet {
        loop {
            if let Some(set) = self.wait_inner(None) {
                return set;
            }
        }
    }

    fn wait_inner(&self, timeout: Option<Duration>) -> Option<EventSet> {
        let view = self.service.events();
        let event = &view.listener(self.slot).head.event;
        event.wait_until(self.spin, timeout, || self.take())
    }

    /// The wake-up descriptor (created on first call): readable when a
    /// notification may be pending. After it was reported readable, call
    /// [`try_wait`](Self::try_wait); a `try_wait` that returns empty re-arms
    /// it. Costs notifiers a system call only while the listener is armed
    /// (after an empty `try_wait`), never on the futex path.
    pub fn wake_fd(&self) -> Result<BorrowedFd<'_>, Errno> {
        self.fd.fd(self.service.domain.wake_prefix(), self.id.0)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let view = self.service.events();
        let slot = view.listener(self.slot);
        self.fd.release(&slot.head.event, &slot.head.fd_armed);
        self.service.release_slot(LISTENERS, self.slot);
    }
}

impl crate::waitset::Attachable for Listener {
    /// # Panics
    ///
    /// If the wake-up descriptor cannot be created (out of descriptors);
    /// call [`Listener::wake_fd`] first to handle that as an error.
    fn fd(&self) -> BorrowedFd<'_> {
        self.wake_fd()
            .expect("cannot create the listener's wake-up socket (call wake_fd() first to handle this error)")
    }
}
