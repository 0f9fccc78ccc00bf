//! The system layer: the only module of conduit that makes system calls.
//!
//! Every function here is a thin, safe wrapper over one kernel interface.
//! They take `impl AsFd` and return `OwnedFd`, report failures as
//! [`Errno`] (the raw OS error, which callers keep as the `source()` of
//! their own error types), and name the C call they wrap in their first doc
//! line and in a `doc(alias)`. `rustix` is used first; `libc` only where
//! rustix has no API.
//!
//! Nothing above this layer calls `rustix` or `libc` directly.

pub mod epoll;
pub mod eventfd;
pub mod fd;
pub mod futex;
pub mod inotify;
pub mod memfd;
pub mod mman;
pub mod mq;
pub mod pipe;
pub mod process;
pub mod shm;
pub mod signal;
pub mod socket;
pub mod timerfd;

pub use rustix::io::Errno;

/// Result type of the system layer: the value, or the OS error number.
pub type Result<T> = core::result::Result<T, Errno>;

/// Size in bytes of a memory page on this machine.
#[doc(alias = "sysconf")]
#[doc(alias = "_SC_PAGESIZE")]
pub fn page_size() -> usize {
    rustix::param::page_size()
}
