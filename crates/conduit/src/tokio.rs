//! async/await on tokio (feature `tokio`): [`Listener::wait_async`] and
//! [`Subscriber::receive_async`], built on tokio's `AsyncFd` over the
//! port's wake-up descriptor. Both are cancel-safe, so they can be raced
//! with `tokio::select!` without a WaitSet:
//!
//! ```no_run
//! # async fn f(listener: conduit::event::Listener, subscriber: conduit::pubsub::Subscriber<u64>) {
//! tokio::select! {
//!     ids = listener.wait_async() => println!("events {:?}", ids.unwrap().iter().collect::<Vec<_>>()),
//!     sample = subscriber.receive_async() => println!("sample {}", *sample.unwrap()),
//! }
//! # }
//! ```
//!
//! This module is the whole tokio glue: the core only exposes the
//! descriptor (`wake_fd`) and the non-blocking, re-arming `try_wait` /
//! `try_receive`. Another runtime is added the same way (e.g. async-io's
//! `Async<T>`), without touching the core. The `AsyncFd` (over a duplicate
//! of the descriptor) is created on first use and kept in the port, so it
//! must be used from within one runtime.

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::event::{EventSet, FdWake, Listener};
use crate::pubsub::{Payload, ReceiveError, Sample, Subscriber};
use crate::shm::ShmSafe;

/// The port's `AsyncFd`, registered with the current runtime on first use.
fn async_fd<'a>(
    wake: &'a FdWake,
    fd: Result<std::os::fd::BorrowedFd<'_>, crate::sys::Errno>,
) -> io::Result<&'a AsyncFd<OwnedFd>> {
    if wake.glue.get().is_none() {
        let fd = fd?.try_clone_to_owned()?;
        // SAFETY: the AsyncFd owns `fd` (an OwnedFd): it stays open and
        // refers to the same socket until the AsyncFd is dropped, and its
        // `as_raw_fd` always returns that descriptor.
        let afd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        let _ = wake.glue.set(Box::new(afd));
    }
    Ok(wake
        .glue
        .get()
        .and_then(|g| g.downcast_ref::<AsyncFd<OwnedFd>>())
        .expect("the glue slot holds this module's AsyncFd"))
}

/// Waits (asynchronously) until `try_once` returns `Some`.
async fn wait_on<R>(
    afd: &AsyncFd<OwnedFd>,
    mut try_once: impl FnMut() -> Option<R>,
) -> io::Result<R> {
    loop {
        if let Some(r) = try_once() {
            return Ok(r);
        }
        // `try_once` found nothing and armed the descriptor: wait for it.
        let mut guard = afd.readable().await?;
        if let Some(r) = try_once() {
            return Ok(r);
        }
        // Drained and re-armed by `try_once`: a byte that arrives from now
        // on is a new readiness event for tokio.
        guard.clear_ready();
    }
}

impl Listener {
    /// Waits for at least one event and takes every pending id. Must run
    /// inside a tokio runtime with IO enabled; cancel-safe (nothing is
    /// taken until it returns).
    pub async fn wait_async(&self) -> io::Result<EventSet> {
        let afd = async_fd(&self.fd, self.wake_fd())?;
        wait_on(afd, || {
            let set = self.try_wait();
            (!set.is_empty()).then_some(set)
        })
        .await
    }
}

/// Why [`Subscriber::receive_async`] failed.
#[derive(Debug, thiserror::Error)]
pub enum AsyncReceiveError {
    /// The receive itself failed.
    #[error(transparent)]
    Receive(#[from] ReceiveError),
    /// The descriptor could not be created or registered with tokio.
    #[error("cannot wait on the subscriber's wake-up descriptor")]
    Io(#[from] io::Error),
}

impl<P: Payload + ?Sized, H: ShmSafe> Subscriber<P, H> {
    /// Waits for the next sample. Must run inside a tokio runtime with IO
    /// enabled; cancel-safe (a sample is taken only when it returns).
    pub async fn receive_async(&self) -> Result<Sample<'_, P, H>, AsyncReceiveError> {
        let afd = async_fd(self.fd_wake(), self.wake_fd())?;
        wait_on(afd, || self.try_receive().transpose())
            .await?
            .map_err(AsyncReceiveError::Receive)
    }
}
