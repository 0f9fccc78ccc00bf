//! Request/response of byte payloads: a service is a Rust
//! `request_response::<[u8], [u8]>()` service, so C and Rust clients and
//! servers meet on it.
//!
//! A client sends a copy of its request ([`conduit_client_send_copy`])
//! and gets a [`conduit_pending_t`]; [`conduit_pending_receive`] hands
//! out each response of the stream as a read-only view of the server's
//! chunk (zero-copy) until [`conduit_response_release`], then
//! `CONDUIT_ERROR_END_OF_STREAM` once the server(s) ended the stream. A
//! server receives a [`conduit_request_t`] (a read-only view of the
//! client's chunk), answers it with any number of
//! [`conduit_request_respond_copy`] calls and ends the stream with
//! [`conduit_request_end`].
//!
//! Pending responses, responses and requests borrow their port in Rust;
//! the port keeps them (as `'static` borrows of its leaked box, dropped
//! before the box, as `pubsub.rs` does for samples) and the C side holds
//! keys into the port, checked on every call: a key used twice is an
//! invalid-handle error, never a dangling pointer.

use std::ffi::{c_char, c_void};
use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::Duration;

use conduit::reqres::{
    ActiveRequest, Client, ClientCreateError, PendingResponse, ReceiveError, RequestSendError,
    Response, ResponseError, ResponseSendError, ResponseSendOrLoanError, Server, ServerCreateError,
};

use crate::error::{Error, Result, conduit_error_t, conduit_error_t as E, guard, service_error};
use crate::handle::{Object, handle_type, insert, lock};
use crate::node::conduit_node_t;
use crate::pubsub::os_code;
use crate::{Mode, need, str_arg, timeout, write_out};

type Bytes = [u8];

/// An open request/response service of byte payloads; made by
/// [`conduit_reqres_open`], freed by [`conduit_reqres_destroy`].
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct conduit_reqres_t {
    /// The id; 0 is never valid.
    pub id: u64,
}
handle_type!(conduit_reqres_t, ReqResService, "request/response service");

/// A client; made by [`conduit_client_create`], freed by
/// [`conduit_client_destroy`].
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct conduit_client_t {
    /// The id; 0 is never valid.
    pub id: u64,
}
handle_type!(conduit_client_t, Client, "client");

/// A server; made by [`conduit_server_create`], freed by
/// [`conduit_server_destroy`].
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct conduit_server_t {
    /// The id; 0 is never valid.
    pub id: u64,
}
handle_type!(conduit_server_t, Server, "server");

/// The QoS of a request/response service; 0 in a field means "the
/// default" when creating and "not checked" when opening, so a
/// zero-initialised struct asks for nothing.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct conduit_reqres_options_t {
    /// Most clients at once.
    pub max_clients: usize,
    /// Most servers at once.
    pub max_servers: usize,
    /// Requests a client may have in flight at once.
    pub active_requests: usize,
    /// Responses a client's queue holds per request.
    pub response_buffer: usize,
    /// Chunks a port may have on loan at once.
    pub max_loans: usize,
}

/// The responses to one request, as they come; made by
/// [`conduit_client_send_copy`], received from with
/// [`conduit_pending_receive`], freed by [`conduit_pending_release`].
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct conduit_pending_t {
    /// The client that sent the request.
    pub client: conduit_client_t,
    /// Which of its pending responses (0 once released).
    pub key: u64,
    /// The request's id (what the server sees as `request_id`).
    pub request_id: u64,
}

/// One response: a read-only view of the server's chunk, valid until
/// [`conduit_response_release`].
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct conduit_response_t {
    /// The client that received it.
    pub client: conduit_client_t,
    /// Which of its responses (0 once released).
    pub key: u64,
    /// The payload (`NULL` once released).
    pub data: *const c_void,
    /// Its length in bytes.
    pub len: usize,
    /// The id of the server that sent it.
    pub server_id: u64,
}

/// A request being answered: a read-only view of the client's chunk,
/// valid until [`conduit_request_end`].
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct conduit_request_t {
    /// The server that received it.
    pub server: conduit_server_t,
    /// Which of its requests (0 once ended).
    pub key: u64,
    /// The payload (`NULL` once ended).
    pub data: *const c_void,
    /// Its length in bytes.
    pub len: usize,
    /// The id of the client that sent it.
    pub client_id: u64,
    /// The request's id.
    pub request_id: u64,
    /// 1 if the client waits for responses, 0 for a request sent without
    /// a pending response (responding fails with
    /// `CONDUIT_ERROR_DISCONNECTED`).
    pub wants_response: u8,
}

/// A client with its pending responses and received responses.
pub(crate) struct ClientPort {
    /// Declared first: dropped before the client they borrow.
    responses: Vec<(u64, Response<'static, Bytes>)>,
    pendings: Vec<(u64, PendingResponse<'static, Bytes, Bytes>)>,
    next_key: u64,
    /// A leaked `Box`, freed by `Drop` after everything that borrows it.
    client: NonNull<Client<Bytes, Bytes>>,
}

// SAFETY: the port owns its client and everything that borrows it, and
// moves between threads only as a whole, behind the handle's mutex, so no
// two threads touch the client's (non-`Sync`) state at once; the views
// point into shared mappings, valid in every thread of the process.
unsafe impl Send for ClientPort {}

impl ClientPort {
    fn client(&self) -> &'static Client<Bytes, Bytes> {
        // SAFETY: the box is freed only in `Drop`, after every pending
        // response and response (the only holders of this `'static`
        // borrow outside a call) is dropped.
        unsafe { self.client.as_ref() }
    }

    fn key(&mut self) -> u64 {
        let k = self.next_key;
        self.next_key += 1;
        k
    }
}

impl Drop for ClientPort {
    fn drop(&mut self) {
        self.responses.clear();
        self.pendings.clear();
        // SAFETY: leaked in `conduit_client_create`; nothing borrows it
        // any more, and it is not used after this.
        drop(unsafe { Box::from_raw(self.client.as_ptr()) });
    }
}

/// A server with the requests it is answering.
pub(crate) struct ServerPort {
    /// Declared first: dropped before the server they borrow.
    requests: Vec<(u64, ActiveRequest<'static, Bytes, Bytes>)>,
    next_key: u64,
    /// A leaked `Box`, freed by `Drop` after every request is gone.
    server: NonNull<Server<Bytes, Bytes>>,
}

// SAFETY: as for `ClientPort`.
unsafe impl Send for ServerPort {}

impl ServerPort {
    fn server(&self) -> &'static Server<Bytes, Bytes> {
        // SAFETY: as in `ClientPort::client`.
        unsafe { self.server.as_ref() }
    }
}

impl Drop for ServerPort {
    fn drop(&mut self) {
        self.requests.clear();
        // SAFETY: leaked in `conduit_server_create`; no request borrows it
        // any more.
        drop(unsafe { Box::from_raw(self.server.as_ptr()) });
    }
}

fn with_client<R>(
    client: conduit_client_t,
    f: impl FnOnce(&mut ClientPort) -> Result<R>,
) -> Result<R> {
    let object = client.object()?;
    let Object::Client(port) = &*object else {
        unreachable!("checked by the handle type")
    };
    f(&mut *lock(port, &object)?)
}

fn with_server<R>(
    server: conduit_server_t,
    f: impl FnOnce(&mut ServerPort) -> Result<R>,
) -> Result<R> {
    let object = server.object()?;
    let Object::Server(port) = &*object else {
        unreachable!("checked by the handle type")
    };
    f(&mut *lock(port, &object)?)
}

/// Takes the entry `key` out of `list`, or names it used up.
fn take_key<T>(list: &mut Vec<(u64, T)>, key: u64, what: &str) -> Result<T> {
    let i = list.iter().position(|(k, _)| *k == key).ok_or_else(|| {
        Error::new(
            E::CONDUIT_ERROR_INVALID_HANDLE,
            format!("{what} {key} was released already"),
        )
    })?;
    Ok(list.swap_remove(i).1)
}

/// `len` bytes at `data` (`NULL` allowed for 0).
///
/// # Safety
///
/// `data` is `NULL` or readable for `len` bytes for `'a`.
unsafe fn bytes_arg<'a>(data: *const c_void, len: usize) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    need(data, "data")?;
    // SAFETY: not NULL, readable for `len` bytes (contract).
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

fn loan_error(e: &conduit::loan::LoanError) -> Error {
    use conduit::loan::LoanError as L;
    let code = match e {
        L::ExceedsMaxLoans(_) | L::ExceedsActiveRequests(_) => E::CONDUIT_ERROR_EXCEEDS_MAX_LOANS,
        L::OutOfChunks => E::CONDUIT_ERROR_OUT_OF_CHUNKS,
        L::SliceTooLong { .. } => E::CONDUIT_ERROR_TOO_LONG,
        _ => E::CONDUIT_ERROR_INTERNAL,
    };
    Error::from_std(code, e)
}

/// Opens the request/response service `name` of byte payloads with
/// `mode` (`CONDUIT_OPEN_OR_CREATE`, `CONDUIT_CREATE` or `CONDUIT_OPEN`)
/// and the QoS in `options` (`NULL`: defaults), and writes its handle to
/// `service_out`. It is the service a Rust program opens with
/// `node.service(name).request_response::<[u8], [u8]>()`.
///
/// # Safety
///
/// `name` is `NULL` or a NUL-terminated string; `options` is `NULL` or
/// readable; `service_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_reqres_open(
    node: conduit_node_t,
    name: *const c_char,
    options: *const conduit_reqres_options_t,
    mode: u32,
    service_out: *mut conduit_reqres_t,
) -> conduit_error_t {
    guard(|| {
        need(service_out, "service_out")?;
        let mode = Mode::from_c(mode)?;
        // SAFETY: NULL or NUL-terminated (contract).
        let name = unsafe { str_arg(name, "name") }?;
        let options = if options.is_null() {
            conduit_reqres_options_t::default()
        } else {
            // SAFETY: not NULL, readable (contract); plain data.
            unsafe { options.read() }
        };
        let object = node.object()?;
        let Object::Node(n) = &*object else {
            unreachable!("checked by the handle type")
        };
        let mut builder = n.service(name).request_response::<Bytes, Bytes>();
        crate::apply_options!(
            builder,
            options;
            max_clients,
            max_servers,
            active_requests,
            response_buffer,
            max_loans
        );
        let service = match mode {
            Mode::OpenOrCreate => builder.open_or_create(),
            Mode::Create => builder.create(),
            Mode::Open => builder.open(),
        }
        .map_err(|e| service_error(&e))?;
        let id = insert(Object::ReqResService(service));
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(service_out, conduit_reqres_t { id }, "service_out") }
    })
}

/// Destroys a service handle; its clients and servers keep working.
#[unsafe(no_mangle)]
pub extern "C" fn conduit_reqres_destroy(service: conduit_reqres_t) -> conduit_error_t {
    guard(|| service.take().map(drop))
}

/// Creates a client whose requests hold up to `max_len` bytes (0: the
/// library's default) and writes its handle to `client_out`.
///
/// # Safety
///
/// `client_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_client_create(
    service: conduit_reqres_t,
    max_len: usize,
    client_out: *mut conduit_client_t,
) -> conduit_error_t {
    guard(|| {
        need(client_out, "client_out")?;
        let object = service.object()?;
        let Object::ReqResService(s) = &*object else {
            unreachable!("checked by the handle type")
        };
        let mut builder = s.client();
        if max_len != 0 {
            builder = builder.max_slice_len(max_len);
        }
        let client = builder.create().map_err(|e| {
            let code = match e {
                ClientCreateError::ExceedsMaxClients { .. } => E::CONDUIT_ERROR_EXCEEDS_MAX_PORTS,
                ClientCreateError::TypeTooLarge => E::CONDUIT_ERROR_INVALID_ARGUMENT,
                _ => E::CONDUIT_ERROR_OS,
            };
            Error::from_std(code, &e)
        })?;
        let port = ClientPort {
            responses: Vec::new(),
            pendings: Vec::new(),
            next_key: 1,
            client: NonNull::from(Box::leak(Box::new(client))),
        };
        let id = insert(Object::Client(Mutex::new(port)));
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(client_out, conduit_client_t { id }, "client_out") }
    })
}

/// Destroys a client: its pending responses and responses go with it
/// (the servers see it gone).
#[unsafe(no_mangle)]
pub extern "C" fn conduit_client_destroy(client: conduit_client_t) -> conduit_error_t {
    guard(|| client.take().map(drop))
}

/// Writes how many servers the client is connected to to `servers_out`.
///
/// # Safety
///
/// `servers_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_client_servers(
    client: conduit_client_t,
    servers_out: *mut usize,
) -> conduit_error_t {
    guard(|| {
        let n = with_client(client, |c| Ok(c.client().servers()))?;
        // SAFETY: NULL or writable (contract).
        unsafe { write_out(servers_out, n, "servers_out") }
    })
}

/// Sends a copy of `len` bytes at `data` as a request to every connected
/// server. With `pending_out` not `NULL`, writes the pending response to
/// receive the responses from; with `NULL`, sends it without one (the
/// servers see `wants_response` 0). No server connected:
/// `CONDUIT_ERROR_DISCONNECTED`.
///
/// The request lives in the client's memory: destroying the client (or
/// exiting) before a server took it withdraws it.
///
/// # Safety
///
/// `data` is `NULL` (only with `len` 0) or readable for `len` bytes;
/// `pending_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_client_send_copy(
    client: conduit_client_t,
    data: *const c_void,
    len: usize,
    pending_out: *mut conduit_pending_t,
) -> conduit_error_t {
    guard(|| {
        // SAFETY: forwarded contract.
        let bytes = unsafe { bytes_arg(data, len) }?;
        let pending = with_client(client, |c| {
            let loan = c
                .client()
                .loan_slice_uninit(bytes.len())
                .map_err(|e| loan_error(&e))?;
            let request = loan.write_from_slice(bytes);
            let send_error =
                |e: RequestSendError| Error::from_std(E::CONDUIT_ERROR_DISCONNECTED, &e);
            if pending_out.is_null() {
                request.send_no_response().map_err(send_error)?;
                return Ok(None);
            }
            let pending = request.send().map_err(send_error)?;
            let key = c.key();
            let out = conduit_pending_t {
                client,
                key,
                request_id: pending.request_id(),
            };
            c.pendings.push((key, pending));
            Ok(Some(out))
        })?;
        if let Some(p) = pending {
            // SAFETY: not NULL (a pending was made only then); writable
            // (contract).
            unsafe { write_out(pending_out, p, "pending_out") }?;
        }
        Ok(())
    })
}

/// Receives the next response of `pending` into `response_out`, waiting
/// up to `timeout_ns` nanoseconds (0: poll once; negative,
/// `CONDUIT_WAIT_FOREVER`: until one comes). Nothing in time:
/// `CONDUIT_ERROR_TIMEOUT`; the stream has ended:
/// `CONDUIT_ERROR_END_OF_STREAM`; the server(s) left or died before
/// ending it: `CONDUIT_ERROR_DISCONNECTED`.
///
/// # Safety
///
/// `pending` is `NULL` or readable; `response_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_pending_receive(
    pending: *const conduit_pending_t,
    timeout_ns: i64,
    response_out: *mut conduit_response_t,
) -> conduit_error_t {
    guard(|| {
        need(pending, "pending")?;
        need(response_out, "response_out")?;
        // SAFETY: not NULL, readable (contract); plain data.
        let p = unsafe { pending.read() };
        let response = with_client(p.client, |c| {
            let pend = &c
                .pendings
                .iter()
                .find(|(k, _)| *k == p.key)
                .ok_or_else(|| {
                    Error::new(
                        E::CONDUIT_ERROR_INVALID_HANDLE,
                        format!("pending response {} was released already", p.key),
                    )
                })?
                .1;
            let received = match timeout(timeout_ns) {
                Some(Duration::ZERO) => pend.try_receive(),
                Some(t) => pend.receive_timeout(t).map(Some),
                None => pend.receive().map(Some),
            }
            .map_err(|e| {
                let code = match e {
                    ResponseError::EndOfStream => E::CONDUIT_ERROR_END_OF_STREAM,
                    ResponseError::Unanswered | ResponseError::ServerGone { .. } => {
                        E::CONDUIT_ERROR_DISCONNECTED
                    }
                    ResponseError::Timeout(_) => E::CONDUIT_ERROR_TIMEOUT,
                    ResponseError::Corrupted { .. } => E::CONDUIT_ERROR_CORRUPTED,
                    _ => E::CONDUIT_ERROR_INTERNAL,
                };
                Error::from_std(code, &e)
            })?;
            let Some(response) = received else {
                return Err(Error::new(E::CONDUIT_ERROR_TIMEOUT, "no response waiting"));
            };
            let key = c.key();
            let out = conduit_response_t {
                client: p.client,
                key,
                data: response.as_ptr().cast::<c_void>(),
                len: response.len(),
                server_id: response.server_id().0,
            };
            c.responses.push((key, response));
            Ok(out)
        })?;
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(response_out, response, "response_out") }
    })
}

/// Stops waiting for the responses of `pending` (the servers see the
/// client gone from this request) and clears `pending->key`.
///
/// # Safety
///
/// `pending` is `NULL` or readable and writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_pending_release(
    pending: *mut conduit_pending_t,
) -> conduit_error_t {
    guard(|| {
        need(pending, "pending")?;
        // SAFETY: not NULL, readable (contract); plain data.
        let p = unsafe { pending.read() };
        with_client(p.client, |c| {
            take_key(&mut c.pendings, p.key, "pending response").map(drop)
        })?;
        // SAFETY: not NULL (checked); writable (contract).
        unsafe { (*pending).key = 0 };
        Ok(())
    })
}

/// Gives a response's chunk back and clears `*response`.
///
/// # Safety
///
/// `response` is `NULL` or readable and writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_response_release(
    response: *mut conduit_response_t,
) -> conduit_error_t {
    guard(|| {
        need(response, "response")?;
        // SAFETY: not NULL, readable (contract); plain data.
        let r = unsafe { response.read() };
        with_client(r.client, |c| {
            take_key(&mut c.responses, r.key, "response").map(drop)
        })?;
        // SAFETY: not NULL (checked); writable (contract).
        unsafe {
            (*response).key = 0;
            (*response).data = std::ptr::null();
        }
        Ok(())
    })
}

/// Writes the client's wake-up descriptor to `fd_out`: it polls readable
/// when a response may be waiting; then receive with timeout 0 on the
/// pending responses. Do not close it.
///
/// # Safety
///
/// `fd_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_client_fd(
    client: conduit_client_t,
    fd_out: *mut i32,
) -> conduit_error_t {
    guard(|| {
        need(fd_out, "fd_out")?;
        let fd = with_client(client, |c| {
            use std::os::fd::AsRawFd;
            c.client()
                .wake_fd()
                .map(|fd| fd.as_raw_fd())
                .map_err(|e| Error::from_std(os_code(e), &e))
        })?;
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(fd_out, fd, "fd_out") }
    })
}

/// Creates a server whose responses hold up to `max_len` bytes (0: the
/// library's default) and writes its handle to `server_out`.
///
/// # Safety
///
/// `server_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_server_create(
    service: conduit_reqres_t,
    max_len: usize,
    server_out: *mut conduit_server_t,
) -> conduit_error_t {
    guard(|| {
        need(server_out, "server_out")?;
        let object = service.object()?;
        let Object::ReqResService(s) = &*object else {
            unreachable!("checked by the handle type")
        };
        let mut builder = s.server();
        if max_len != 0 {
            builder = builder.max_slice_len(max_len);
        }
        let server = builder.create().map_err(|e| {
            let code = match e {
                ServerCreateError::ExceedsMaxServers { .. } => E::CONDUIT_ERROR_EXCEEDS_MAX_PORTS,
                ServerCreateError::TypeTooLarge => E::CONDUIT_ERROR_INVALID_ARGUMENT,
                _ => E::CONDUIT_ERROR_OS,
            };
            Error::from_std(code, &e)
        })?;
        let port = ServerPort {
            requests: Vec::new(),
            next_key: 1,
            server: NonNull::from(Box::leak(Box::new(server))),
        };
        let id = insert(Object::Server(Mutex::new(port)));
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(server_out, conduit_server_t { id }, "server_out") }
    })
}

/// Destroys a server: the requests it holds end (their clients see the
/// server gone if it had not ended their streams).
#[unsafe(no_mangle)]
pub extern "C" fn conduit_server_destroy(server: conduit_server_t) -> conduit_error_t {
    guard(|| server.take().map(drop))
}

/// Receives the next request into `request_out`, waiting up to
/// `timeout_ns` nanoseconds (0: poll once; negative: until one comes);
/// `CONDUIT_ERROR_TIMEOUT` if none came.
///
/// # Safety
///
/// `request_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_server_receive(
    server: conduit_server_t,
    timeout_ns: i64,
    request_out: *mut conduit_request_t,
) -> conduit_error_t {
    guard(|| {
        need(request_out, "request_out")?;
        let request = with_server(server, |s| {
            let srv = s.server();
            let received = match timeout(timeout_ns) {
                Some(Duration::ZERO) => srv.try_receive(),
                Some(t) => srv.receive_timeout(t).map(Some),
                None => srv.receive().map(Some),
            }
            .map_err(|e| {
                let code = match e {
                    ReceiveError::Timeout(_) => E::CONDUIT_ERROR_TIMEOUT,
                    ReceiveError::Corrupted { .. } => E::CONDUIT_ERROR_CORRUPTED,
                    _ => E::CONDUIT_ERROR_INTERNAL,
                };
                Error::from_std(code, &e)
            })?;
            let Some(active) = received else {
                return Err(Error::new(E::CONDUIT_ERROR_TIMEOUT, "no request waiting"));
            };
            let key = s.next_key;
            s.next_key += 1;
            let out = conduit_request_t {
                server,
                key,
                data: active.as_ptr().cast::<c_void>(),
                len: active.len(),
                client_id: active.client_id().0,
                request_id: active.request_id(),
                wants_response: u8::from(active.wants_response()),
            };
            s.requests.push((key, active));
            Ok(out)
        })?;
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(request_out, request, "request_out") }
    })
}

/// Sends a copy of `len` bytes at `data` as one response of the stream of
/// `request`. The client no longer waits (or wants no response):
/// `CONDUIT_ERROR_DISCONNECTED`.
///
/// # Safety
///
/// `request` is `NULL` or readable; `data` is `NULL` (only with `len` 0)
/// or readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_request_respond_copy(
    request: *const conduit_request_t,
    data: *const c_void,
    len: usize,
) -> conduit_error_t {
    guard(|| {
        need(request, "request")?;
        // SAFETY: not NULL, readable (contract); plain data.
        let r = unsafe { request.read() };
        // SAFETY: forwarded contract.
        let bytes = unsafe { bytes_arg(data, len) }?;
        with_server(r.server, |s| {
            let active = &s
                .requests
                .iter()
                .find(|(k, _)| *k == r.key)
                .ok_or_else(|| {
                    Error::new(
                        E::CONDUIT_ERROR_INVALID_HANDLE,
                        format!("request {} was ended already", r.key),
                    )
                })?
                .1;
            active.send_slice_copy(bytes).map_err(|e| {
                let code = match &e {
                    ResponseSendOrLoanError::Loan(l) => return loan_error(l),
                    ResponseSendOrLoanError::Send(
                        ResponseSendError::Disconnected | ResponseSendError::NoResponseWanted,
                    ) => E::CONDUIT_ERROR_DISCONNECTED,
                    ResponseSendOrLoanError::Send(ResponseSendError::BufferFull) => {
                        E::CONDUIT_ERROR_QUEUE_FULL
                    }
                    _ => E::CONDUIT_ERROR_INTERNAL,
                };
                Error::from_std(code, &e)
            })
        })
    })
}

/// Ends the response stream of `request`, gives its chunk back and
/// clears `*request`.
///
/// # Safety
///
/// `request` is `NULL` or readable and writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_request_end(request: *mut conduit_request_t) -> conduit_error_t {
    guard(|| {
        need(request, "request")?;
        // SAFETY: not NULL, readable (contract); plain data.
        let r = unsafe { request.read() };
        with_server(r.server, |s| {
            take_key(&mut s.requests, r.key, "request").map(drop)
        })?;
        // SAFETY: not NULL (checked); writable (contract).
        unsafe {
            (*request).key = 0;
            (*request).data = std::ptr::null();
        }
        Ok(())
    })
}

/// Writes the server's wake-up descriptor to `fd_out`: it polls readable
/// when a request may be waiting; then receive with timeout 0 until
/// `CONDUIT_ERROR_TIMEOUT`, which re-arms it. Do not close it.
///
/// # Safety
///
/// `fd_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_server_fd(
    server: conduit_server_t,
    fd_out: *mut i32,
) -> conduit_error_t {
    guard(|| {
        need(fd_out, "fd_out")?;
        let fd = with_server(server, |s| {
            use std::os::fd::AsRawFd;
            s.server()
                .wake_fd()
                .map(|fd| fd.as_raw_fd())
                .map_err(|e| Error::from_std(os_code(e), &e))
        })?;
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(fd_out, fd, "fd_out") }
    })
}
