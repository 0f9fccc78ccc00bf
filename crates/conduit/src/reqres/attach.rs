//! Waking servers and clients through a file descriptor (the protocol of
//! `sync::fdwake`, as for subscribers and listeners), and [`Attachable`]
//! so that a server or a pending response joins a
//! [`WaitSet`](crate::waitset::WaitSet). The descriptor of a client is one
//! for all its pending responses: readable when a response (or the end of
//! a stream) may have arrived for any of them.

use crate::shm::ShmSafe;
use std::os::fd::BorrowedFd;

use super::{Client, PendingResponse, Server};
use crate::service::Payload;
use crate::sys::Errno;
use crate::waitset::Attachable;

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe>
    Server<Req, Resp, ReqH, RespH>
{
    /// The wake-up descriptor (created on first call): readable when a
    /// request may be waiting. After it was reported readable, call
    /// [`try_receive`](Self::try_receive) until it returns `None` (which
    /// re-arms the descriptor). The first report after creation may be
    /// spurious. Clients make a system call for it only while the server
    /// is armed (idle), never on the futex path.
    pub fn wake_fd(&self) -> Result<BorrowedFd<'_>, Errno> {
        self.fd_wake
            .fd(self.service.domain.wake_prefix(), self.id().0)
    }
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe>
    Client<Req, Resp, ReqH, RespH>
{
    #[allow(dead_code)] // used by the runtime glue (feature `tokio`)
    pub(crate) fn cleanup_dead_ports(&self) {
        self.service.cleanup_dead_ports();
    }

    /// The wake-up descriptor (created on first call), one for all of this
    /// client's pending responses: readable when a response or the end of
    /// a stream may have arrived. After it was reported readable, call
    /// [`PendingResponse::try_receive`] on the pending responses you wait
    /// for; a call that finds nothing re-arms the descriptor. The first
    /// report after creation may be spurious.
    pub fn wake_fd(&self) -> Result<BorrowedFd<'_>, Errno> {
        self.fd_wake
            .fd(self.service.domain.wake_prefix(), self.id().0)
    }
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> Attachable
    for Server<Req, Resp, ReqH, RespH>
{
    /// # Panics
    ///
    /// If the wake-up descriptor cannot be created (out of descriptors);
    /// call [`Server::wake_fd`] first to handle that as an error.
    fn fd(&self) -> BorrowedFd<'_> {
        self.wake_fd().expect(
            "cannot create the server's wake-up socket (call wake_fd() first to handle this error)",
        )
    }
}

impl<Req: Payload + ?Sized, Resp: Payload + ?Sized, ReqH: ShmSafe, RespH: ShmSafe> Attachable
    for PendingResponse<'_, Req, Resp, ReqH, RespH>
{
    /// The client's descriptor ([`Client::wake_fd`]).
    ///
    /// # Panics
    ///
    /// If the wake-up descriptor cannot be created (out of descriptors);
    /// call [`Client::wake_fd`] first to handle that as an error.
    fn fd(&self) -> BorrowedFd<'_> {
        self.client().wake_fd().expect(
            "cannot create the client's wake-up socket (call Client::wake_fd() first to handle this error)",
        )
    }
}
