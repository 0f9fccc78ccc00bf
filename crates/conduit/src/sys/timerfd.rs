//! timerfd: timers that are file descriptors, readable when they expire.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};

use super::{Errno, Result};

/// `timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)`: a new,
/// disarmed timer on the monotonic clock.
#[doc(alias = "timerfd_create")]
pub fn create() -> Result<OwnedFd> {
    timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
    )
}

fn timespec(d: Duration) -> Result<Timespec> {
    Timespec::try_from(d).map_err(|_| Errno::INVAL)
}

/// `timerfd_settime(fd, 0, {first, period})`: arms the timer to expire
/// `first` from now, then every `period` (`None`: once). A zero `first`
/// is moved to one nanosecond, because zero would disarm the timer.
/// Re-arming resets the count of expirations [`read`] reports.
#[doc(alias = "timerfd_settime")]
pub fn arm(fd: impl AsFd, first: Duration, period: Option<Duration>) -> Result<()> {
    let first = first.max(Duration::from_nanos(1));
    let spec = Itimerspec {
        it_value: timespec(first)?,
        it_interval: timespec(period.unwrap_or(Duration::ZERO))?,
    };
    timerfd_settime(fd, TimerfdTimerFlags::empty(), &spec).map(drop)
}

/// `read(fd, &mut u64)`: how many times the timer expired since it was
/// armed or last read, and resets that count. `Ok(0)` when it has not
/// expired (the descriptor is non-blocking). `EINTR` is retried.
#[doc(alias = "read(2)")]
pub fn read(fd: impl AsFd) -> Result<u64> {
    let fd = fd.as_fd();
    let mut buf = [0u8; 8];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(8) => return Ok(u64::from_ne_bytes(buf)),
            Ok(_) => return Err(Errno::IO),
            Err(Errno::AGAIN) => return Ok(0),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}
