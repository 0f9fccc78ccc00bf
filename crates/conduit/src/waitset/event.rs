//! What the WaitSet reports.

use crate::sys::epoll::EventFlags;

/// Identifies one attachment of one [`WaitSet`](super::WaitSet); carried
/// by every event of that source. Ids are not reused for a long time
/// (2³¹ attachments), so a stale id never names a newer source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttachmentId {
    pub(super) index: u32,
    pub(super) generation: u32,
}

/// What [`WaitSet::run`](super::WaitSet::run)'s closure tells the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on handling events.
    Continue,
    /// Return from `run` now (events not yet handled stay pending in the
    /// kernel and are reported by the next wait).
    Stop,
}

/// What a descriptor is watched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    readable: bool,
    writable: bool,
}

impl Interest {
    /// Data to read (or end of file).
    pub const READABLE: Self = Self {
        readable: true,
        writable: false,
    };
    /// Room to write.
    pub const WRITABLE: Self = Self {
        readable: false,
        writable: true,
    };
    /// Both.
    pub const BOTH: Self = Self {
        readable: true,
        writable: true,
    };

    pub(super) fn flags(self) -> EventFlags {
        let mut flags = EventFlags::empty();
        if self.readable {
            flags |= EventFlags::IN;
        }
        if self.writable {
            flags |= EventFlags::OUT;
        }
        flags
    }
}

impl core::ops::BitOr for Interest {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        Self {
            readable: self.readable || other.readable,
            writable: self.writable || other.writable,
        }
    }
}

/// What a descriptor was found ready for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    flags: EventFlags,
}

impl Readiness {
    pub(super) fn from_flags(flags: EventFlags) -> Self {
        Self { flags }
    }

    /// There is data to read, or end of file.
    pub fn readable(self) -> bool {
        self.flags.contains(EventFlags::IN)
    }

    /// There is room to write.
    pub fn writable(self) -> bool {
        self.flags.contains(EventFlags::OUT)
    }

    /// The peer closed its end (for a pipe: every writer is gone, for
    /// example because its process died). Read what is left until end of
    /// file; the WaitSet no longer watches this descriptor.
    pub fn hang_up(self) -> bool {
        self.flags.contains(EventFlags::HUP)
    }

    /// An error condition (for a pipe's write end: every reader is gone).
    /// The WaitSet no longer watches this descriptor.
    pub fn error(self) -> bool {
        self.flags.contains(EventFlags::ERR)
    }
}

/// One thing the WaitSet found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A descriptor, subscriber or listener is ready.
    Ready {
        /// Which attachment.
        id: AttachmentId,
        /// Ready for what.
        readiness: Readiness,
    },
    /// An interval timer fired `count` times since it was last reported
    /// (more than 1 when the loop ran late).
    Interval {
        /// Which attachment.
        id: AttachmentId,
        /// Periods elapsed since the last report, at least 1.
        count: u64,
    },
    /// A one-shot timer fired.
    Timer(AttachmentId),
    /// A source with a deadline stayed silent for `count` whole deadline
    /// periods.
    DeadlineMissed {
        /// Which attachment.
        id: AttachmentId,
        /// Deadline periods missed since the last report, at least 1.
        count: u64,
    },
    /// `SIGINT` or `SIGTERM` arrived (`signal` is its number).
    Termination {
        /// Which attachment.
        id: AttachmentId,
        /// The signal.
        signal: crate::signal::Signal,
    },
}

impl Event {
    /// The attachment this event belongs to.
    pub fn id(&self) -> AttachmentId {
        match *self {
            Event::Ready { id, .. }
            | Event::Interval { id, .. }
            | Event::Timer(id)
            | Event::DeadlineMissed { id, .. }
            | Event::Termination { id, .. } => id,
        }
    }
}
