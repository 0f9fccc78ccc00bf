//! async/await on tokio (feature `tokio`): [`Listener::wait_async`],
//! [`Subscriber::receive_async`], [`Server::receive_async`],
//! [`PendingResponse::receive_async`] and [`AsyncSignals`], built on tokio's
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
use crate::reqres::{self, ActiveRequest, PendingResponse, Response, ResponseError, Server};
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
        let afd = async_fd(&self.fd_wake, self.wake_fd())?;
        wait_on(afd, || self.try_receive().transpose())
            .await?
            .map_err(AsyncReceiveError::Receive)
    }
}

/// Why [`Server::receive_async`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AsyncRequestError {
    /// The receive itself failed.
    #[error(transparent)]
    Receive(#[from] reqres::ReceiveError),
    /// The descriptor could not be created or registered with tokio.
    #[error("cannot wait on the server's wake-up descriptor")]
    Io(#[from] io::Error),
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe>
    Server<Req, Resp, ReqH, RespH>
{
    /// Waits for the next request. Must run inside a tokio runtime with IO
    /// enabled; cancel-safe (a request is taken only when it returns).
    pub async fn receive_async(
        &self,
    ) -> Result<ActiveRequest<'_, Req, Resp, ReqH, RespH>, AsyncRequestError> {
        let afd = async_fd(&self.fd_wake, self.wake_fd())?;
        wait_on(afd, || self.try_receive().transpose())
            .await?
            .map_err(AsyncRequestError::Receive)
    }
}

/// Why [`PendingResponse::receive_async`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AsyncResponseError {
    /// The receive itself failed, or the stream ended
    /// ([`ResponseError::EndOfStream`] and the other ends).
    #[error(transparent)]
    Response(#[from] ResponseError),
    /// The descriptor could not be created or registered with tokio.
    #[error("cannot wait on the client's wake-up descriptor")]
    Io(#[from] io::Error),
}

impl<'c, Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe>
    PendingResponse<'c, Req, Resp, ReqH, RespH>
{
    /// Waits for the next response, or the end of the stream. Must run
    /// inside a tokio runtime with IO enabled; cancel-safe (a response is
    /// taken only when it returns). As the blocking
    /// [`receive`](PendingResponse::receive), while it waits it looks for
    /// dead servers every [`LIVENESS_CHECK`](crate::reqres::LIVENESS_CHECK)
    /// (a timer descriptor, so no tokio time driver is needed): a server
    /// killed mid-stream ends it with [`ResponseError::ServerGone`].
    pub async fn receive_async(&self) -> Result<Response<'c, Resp, RespH>, AsyncResponseError> {
        if let Some(r) = self.try_receive().transpose() {
            return r.map_err(AsyncResponseError::Response);
        }
        let client = self.client();
        let afd = async_fd(&client.fd_wake, client.wake_fd())?;
        let timer = crate::sys::timerfd::create().map_err(io::Error::from)?;
        let check = reqres::LIVENESS_CHECK;
        crate::sys::timerfd::arm(&timer, check, Some(check)).map_err(io::Error::from)?;
        // SAFETY: the AsyncFd owns `timer` (an OwnedFd): it stays open and
        // refers to the same timer until the AsyncFd is dropped.
        let timer = unsafe { AsyncFd::register_with_interest(timer, Interest::READABLE) }
            .map_err(io::Error::from)?;
        loop {
            tokio::select! {
                r = wait_on(afd, || self.try_receive().transpose()) => {
                    return r?.map_err(AsyncResponseError::Response);
                }
                ready = timer.readable() => {
                    let mut ready = ready?;
                    let _ = crate::sys::timerfd::read(timer.get_ref());
                    ready.clear_ready();
                    // Frees a dead server's slot and wakes us
                    // (`port_reclaimed`): the next poll ends its streams.
                    client.cleanup_dead_ports();
                }
            }
        }
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
