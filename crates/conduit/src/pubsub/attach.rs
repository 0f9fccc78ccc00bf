//! Waking a subscriber through a file descriptor: the subscriber's side of
//! the protocol in `sync::fdwake`, and
//! [`Attachable`] so that a subscriber can be attached to a
//! [`WaitSet`](crate::waitset::WaitSet).

use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;

use super::subscriber::ReceiveError;
use super::{Payload, Sample, ServiceInner, Subscriber};
use crate::service::registry::PortSlot;
use crate::shm::ShmSafe;
use crate::sys::Errno;
use crate::waitset::Attachable;

/// The publisher's wake of subscriber slot `slot` after a delivery: bumps
/// its event word (no system call when nobody sleeps) and, if the
/// subscriber armed its descriptor, sends it a wake byte.
#[inline]
pub(super) fn wake(service: &ServiceInner, slot: &PortSlot) {
    crate::sync::fdwake::wake(
        &slot.event,
        &slot.fd_armed,
        service.domain.wake_prefix(),
        || slot.id.load(Ordering::Acquire),
    );
}

impl<P: Payload + ?Sized, H: ShmSafe> Subscriber<P, H> {
    /// The wake-up descriptor (created on first call): readable when a
    /// sample may be waiting. After it was reported readable, call
    /// [`try_receive`](Self::try_receive) until it returns `None` (which
    /// re-arms the descriptor). The first report after creation may be
    /// spurious. Publishers make a system call for it only while the
    /// subscriber is armed, never on the futex path.
    pub fn wake_fd(&self) -> Result<BorrowedFd<'_>, Errno> {
        self.fd_wake
            .fd(self.service.domain.wake_prefix(), self.id().0)
    }

    pub(super) fn try_receive_armed(&self) -> Result<Option<Sample<'_, P, H>>, ReceiveError> {
        let view = self.service.shm();
        let slot = &view.sub_slots()[self.slot];
        self.fd_wake
            .poll(&slot.event, &slot.fd_armed, || {
                self.try_receive_plain().transpose()
            })
            .transpose()
    }
}

impl<P: Payload + ?Sized, H: ShmSafe> Attachable for Subscriber<P, H> {
    /// # Panics
    ///
    /// If the wake-up descriptor cannot be created (out of descriptors);
    /// call [`Subscriber::wake_fd`] first to handle that as an error.
    fn fd(&self) -> BorrowedFd<'_> {
        self.wake_fd().expect(
            "cannot create the subscriber's wake-up socket (call wake_fd() first to handle this error)",
        )
    }
}
