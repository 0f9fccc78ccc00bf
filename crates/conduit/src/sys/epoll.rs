//! epoll: one kernel object that watches many file descriptors.
//!
//! Used level-triggered by [`crate::waitset`]: a ready descriptor is
//! reported by every `epoll_wait` until the condition is consumed.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll::{self, CreateFlags, EventData};
use rustix::time::Timespec;

pub use rustix::event::epoll::{Event, EventFlags};

use super::{Errno, Result};

/// `epoll_create1(EPOLL_CLOEXEC)`: a new, empty epoll instance.
#[doc(alias = "epoll_create1")]
pub fn create() -> Result<OwnedFd> {
    epoll::create(CreateFlags::CLOEXEC)
}

/// `epoll_ctl(EPOLL_CTL_ADD)`: starts watching `source` for `flags`;
/// `data` comes back with every event. `EEXIST` when `source` (this open
/// file description through this descriptor number) is already watched.
#[doc(alias = "epoll_ctl")]
#[doc(alias = "EPOLL_CTL_ADD")]
pub fn add(epoll: impl AsFd, source: impl AsFd, data: u64, flags: EventFlags) -> Result<()> {
    epoll::add(epoll, source, EventData::new_u64(data), flags)
}

/// `epoll_ctl(EPOLL_CTL_DEL)`: stops watching `source`. `ENOENT` when it
/// was not watched.
#[doc(alias = "EPOLL_CTL_DEL")]
pub fn delete(epoll: impl AsFd, source: impl AsFd) -> Result<()> {
    epoll::delete(epoll, source)
}

/// `epoll_wait(epoll, events, timeout)`: waits until at least one watched
/// descriptor is ready or `timeout` passes (`None`: forever), fills
/// `events` and returns how many it filled (0 at timeout).
///
/// `EINTR` is returned, not retried: the caller knows how much of its
/// timeout is left.
#[doc(alias = "epoll_pwait")]
pub fn wait(epoll: impl AsFd, events: &mut [Event], timeout: Option<Duration>) -> Result<usize> {
    let timespec = match timeout {
        Some(t) => Some(Timespec::try_from(t).map_err(|_| Errno::INVAL)?),
        None => None,
    };
    epoll::wait(epoll, events, timespec.as_ref())
}

/// An event record to fill a buffer for [`wait`] with.
pub fn empty_event() -> Event {
    Event {
        flags: EventFlags::empty(),
        data: EventData::new_u64(0),
    }
}

/// The `data` value given to [`add`] for the descriptor of `event`.
pub fn event_data(event: &Event) -> u64 {
    let data = event.data;
    data.u64()
}

/// What `event` reports (`EPOLLIN`, `EPOLLHUP`, ...).
pub fn event_flags(event: &Event) -> EventFlags {
    // A copy: the record is packed on x86-64.
    event.flags
}
