//! async/await on tokio (feature `tokio`): [`Listener::wait_async`],
//! [`Subscriber::receive_async`] and [`AsyncSignals`], built on tokio's
//! `AsyncFd` over the port's wake-up descriptor (or the signal
//! subscription's descriptor). Both are cancel-safe, so they can be raced
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

use crate::event::{EventSet, Listener};
use crate::pubsub::{Payload, ReceiveError, Sample, Subscriber};
use crate::shm::ShmSafe;
use crate::signal::{self, Received, Signals};
use crate::sync::fdwake::FdWake;

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
#[non_exhaustive]
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

/// A [`Signals`] subscription as an asynchronous stream of signals on
/// tokio: `while let Ok(signal) = signals.next().await { ... }`.
///
/// Whatever backend the subscription uses (signalfd or self-pipe, see
/// [`crate::signal`]), its descriptor is readable while a signal is
/// pending, so this works in any tokio runtime. Cancel-safe: a signal is
/// taken only when `next` returns it.
pub struct AsyncSignals {
    signals: Signals,
    afd: AsyncFd<OwnedFd>,
}

/// Why [`AsyncSignals::next`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AsyncSignalError {
    /// Reading the subscription failed.
    #[error(transparent)]
    Receive(#[from] signal::ReceiveError),
    /// Waiting on the descriptor failed.
    #[error("cannot wait on the signal descriptor")]
    Io(#[from] io::Error),
}

impl AsyncSignals {
    /// Wraps a subscription; must be called inside a tokio runtime with IO
    /// enabled.
    pub fn new(signals: Signals) -> io::Result<AsyncSignals> {
        use std::os::fd::AsFd;
        let fd = signals.as_fd().try_clone_to_owned()?;
        // SAFETY: the AsyncFd owns `fd`, a duplicate of the subscription's
        // descriptor, which stays open until the AsyncFd is dropped.
        let afd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(AsyncSignals { signals, afd })
    }

    /// The next signal, waiting asynchronously until one arrives.
    pub async fn next(&mut self) -> Result<Received, AsyncSignalError> {
        let signals = &mut self.signals;
        wait_on(&self.afd, || signals.try_next().transpose())
            .await?
            .map_err(AsyncSignalError::Receive)
    }

    /// The subscription back (it stays subscribed).
    pub fn into_inner(self) -> Signals {
        self.signals
    }
}
