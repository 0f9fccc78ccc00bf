//! Request/response of byte payloads: `Node.request_response(name)` is a
//! Rust `request_response::<[u8], [u8]>()` service.
//!
//! The same self-borrowing scheme as `pubsub.rs`: a pending response, a
//! response and an active request borrow their port, which they keep in
//! an `Rc` declared after the borrower.

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use conduit::reqres::{
    ActiveRequest as RustActive, Client as RustClient, PendingResponse as RustPending,
    ReqResService as RustService, RequestSendError, Response as RustResponse, ResponseError,
    ResponseSendError, ResponseSendOrLoanError, Server as RustServer,
};
use conduit::service::PortId;
use pyo3::create_exception;
use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::prelude::*;

use crate::pubsub::bytes_of;
use crate::{
    ConduitError, DisconnectedError, Mode, Node, OnThisThread, blocking, error, released, resource,
    service_error,
};

create_exception!(
    _conduit,
    EndOfStream,
    ConduitError,
    "The server ended the response stream (every response was received)."
);

type Bytes = [u8];

/// An open request/response service of byte payloads.
#[pyclass(module = "conduit", unsendable)]
pub struct ReqResService {
    inner: RustService<Bytes, Bytes>,
}

#[pymethods]
impl Node {
    /// `request_response(name, *, create=None, max_clients=None,
    /// max_servers=None, active_requests=None, response_buffer=None,
    /// max_loans=None)`: opens or creates (`create=None`), only creates
    /// (`True`) or only opens (`False`) the byte-payload request/response
    /// service `name`.
    #[pyo3(signature = (name, *, create=None, max_clients=None, max_servers=None,
        active_requests=None, response_buffer=None, max_loans=None))]
    #[allow(clippy::too_many_arguments)]
    fn request_response(
        &self,
        name: &str,
        create: Option<bool>,
        max_clients: Option<usize>,
        max_servers: Option<usize>,
        active_requests: Option<usize>,
        response_buffer: Option<usize>,
        max_loans: Option<usize>,
    ) -> PyResult<ReqResService> {
        let mut b = self.inner.service(name).request_response::<Bytes, Bytes>();
        if let Some(v) = max_clients {
            b = b.max_clients(v);
        }
        if let Some(v) = max_servers {
            b = b.max_servers(v);
        }
        if let Some(v) = active_requests {
            b = b.active_requests(v);
        }
        if let Some(v) = response_buffer {
            b = b.response_buffer(v);
        }
        if let Some(v) = max_loans {
            b = b.max_loans(v);
        }
        let inner = match Mode::of(create) {
            Mode::OpenOrCreate => b.open_or_create(),
            Mode::Create => b.create(),
            Mode::Open => b.open(),
        }
        .map_err(service_error)?;
        Ok(ReqResService { inner })
    }
}

#[pymethods]
impl ReqResService {
    /// The service's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// `client(max_slice_len=4096)`: a client whose requests hold up to
    /// `max_slice_len` bytes.
    #[pyo3(signature = (max_slice_len=4096))]
    fn client(&self, max_slice_len: usize) -> PyResult<Client> {
        let inner = self
            .inner
            .client()
            .max_slice_len(max_slice_len)
            .create()
            .map_err(|e| resource(&e))?;
        Ok(Client {
            inner: Rc::new(inner),
        })
    }

    /// `server(max_slice_len=4096)`: a server whose responses hold up to
    /// `max_slice_len` bytes.
    #[pyo3(signature = (max_slice_len=4096))]
    fn server(&self, max_slice_len: usize) -> PyResult<Server> {
        let inner = self
            .inner
            .server()
            .max_slice_len(max_slice_len)
            .create()
            .map_err(|e| resource(&e))?;
        Ok(Server {
            inner: Rc::new(inner),
        })
    }

    fn __repr__(&self) -> String {
        format!("ReqResService({:?})", self.inner.name())
    }
}

fn parse_port(id: &str) -> PyResult<PortId> {
    u64::from_str_radix(id, 16)
        .map(PortId)
        .map_err(|_| PyValueError::new_err(format!("{id:?} is not a port id (16 hex digits)")))
}

fn request_send_error(e: &RequestSendError) -> PyErr {
    DisconnectedError::new_err(crate::message(e))
}

/// Sends requests and receives their responses.
#[pyclass(module = "conduit", unsendable)]
pub struct Client {
    inner: Rc<RustClient<Bytes, Bytes>>,
}

#[pymethods]
impl Client {
    /// The client's id (16 hex digits).
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// How many servers it is connected to.
    #[getter]
    fn servers(&self) -> usize {
        self.inner.servers()
    }

    /// The ids of the connected servers.
    fn server_ids(&self) -> Vec<String> {
        self.inner
            .server_ids()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// `send(data, *, to=None, no_response=False)`: sends a copy of
    /// `data` to every connected server (or only server `to`, an id from
    /// `server_ids()`); returns the `PendingResponse` to receive the
    /// responses from, or `None` with `no_response=True` (the servers see
    /// `wants_response == False`). `DisconnectedError` if no server is
    /// connected.
    #[pyo3(signature = (data, *, to=None, no_response=false))]
    fn send(
        &self,
        data: &Bound<'_, PyAny>,
        to: Option<&str>,
        no_response: bool,
    ) -> PyResult<Option<PendingResponse>> {
        let bytes = bytes_of(data)?;
        let loan = self
            .inner
            .loan_slice_uninit(bytes.len())
            .map_err(|e| crate::loan_error(&e))?;
        let request = loan.write_from_slice(&bytes);
        let pending = match (to, no_response) {
            (Some(_), true) => {
                return Err(PyValueError::new_err(
                    "give `to` or `no_response`, not both",
                ));
            }
            (None, true) => {
                request
                    .send_no_response()
                    .map_err(|e| request_send_error(&e))?;
                return Ok(None);
            }
            (Some(id), false) => request.send_to(parse_port(id)?),
            (None, false) => request.send(),
        }
        .map_err(|e| request_send_error(&e))?;
        // SAFETY: `pending` borrows the client inside `self.inner`'s Rc,
        // which the PendingResponse keeps (field `_port`, dropped after
        // `pending`); the Rc's contents never move.
        let pending: RustPending<'static, Bytes, Bytes> = unsafe { std::mem::transmute(pending) };
        Ok(Some(PendingResponse {
            pending: Some(pending),
            _port: Rc::clone(&self.inner),
        }))
    }

    /// Requests sent whose response streams have not ended.
    #[getter]
    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }

    /// The descriptor that becomes readable when a response may be
    /// waiting; after it reports, `receive(timeout=0)` on the pending
    /// responses.
    fn fileno(&self) -> PyResult<i32> {
        self.inner
            .wake_fd()
            .map(|fd| fd.as_raw_fd())
            .map_err(|e| error(&e))
    }

    fn __repr__(&self) -> String {
        format!("Client(id={})", self.inner.id())
    }
}

fn response_error(e: &ResponseError) -> PyErr {
    match e {
        ResponseError::EndOfStream => EndOfStream::new_err(crate::message(e)),
        ResponseError::Unanswered | ResponseError::ServerGone { .. } => {
            DisconnectedError::new_err(crate::message(e))
        }
        ResponseError::Corrupted { .. } => crate::CorruptedError::new_err(crate::message(e)),
        _ => error(e),
    }
}

/// The responses to one request, as they come: `receive()` one, or
/// iterate (`for response in pending:`) until the server(s) end the
/// stream. Dropping it tells the servers the client no longer waits.
#[pyclass(module = "conduit", unsendable)]
pub struct PendingResponse {
    /// Declared first: dropped before the client it borrows.
    pending: Option<RustPending<'static, Bytes, Bytes>>,
    _port: Rc<RustClient<Bytes, Bytes>>,
}

impl PendingResponse {
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Response>> {
        let pending = self
            .pending
            .as_ref()
            .ok_or_else(|| released("pending response"))?;
        let got = blocking(py, timeout, |wait| {
            let r = match wait {
                None => pending.try_receive(),
                Some(d) => match pending.receive_timeout(d) {
                    Ok(r) => Ok(Some(r)),
                    Err(ResponseError::Timeout(_)) => Ok(None),
                    Err(e) => Err(e),
                },
            };
            r.map(|r| r.map(OnThisThread))
                .map_err(|e| response_error(&e))
        })?;
        Ok(got.map(|r| {
            // `r` borrows the client (not the pending response): keep the
            // client's Rc.
            let response: RustResponse<'static, Bytes> = r.0;
            Response {
                response: Some(response),
                exports: Cell::new(0),
                _port: Rc::clone(&self._port),
            }
        }))
    }
}

#[pymethods]
impl PendingResponse {
    /// The request's id.
    #[getter]
    fn request_id(&self) -> PyResult<u64> {
        Ok(self
            .pending
            .as_ref()
            .ok_or_else(|| released("pending response"))?
            .request_id())
    }

    /// `receive(timeout=None)`: the next response, waiting up to
    /// `timeout` seconds (`None`: until one comes; `0`: not at all);
    /// `None` if none came. Raises `EndOfStream` once the stream has
    /// ended and `DisconnectedError` if the server(s) left without ending
    /// it (or dropped the request unanswered).
    #[pyo3(signature = (timeout=None))]
    fn receive(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Response>> {
        self.next(py, timeout)
    }

    /// `await receive_async(timeout=None)`: as `receive`, without
    /// blocking the event loop (`asyncio`; waits on `fileno()`).
    #[pyo3(signature = (timeout=None))]
    fn receive_async<'py>(
        slf: Bound<'py, Self>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        crate::aio(slf.py(), "receive", (slf, timeout))
    }

    /// The client's descriptor (see `Client.fileno`): readable when a
    /// response may be waiting.
    fn fileno(&self) -> PyResult<i32> {
        self._port
            .wake_fd()
            .map(|fd| fd.as_raw_fd())
            .map_err(|e| error(&e))
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        crate::aio(slf.py(), "next_response", (slf,))
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Response> {
        match self.next(py, None) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(PyStopIteration::new_err(())),
            Err(e) if e.is_instance_of::<EndOfStream>(py) => Err(PyStopIteration::new_err(())),
            Err(e) => Err(e),
        }
    }

    /// Stops waiting for responses (the servers see the client gone from
    /// this request).
    fn cancel(&mut self) {
        self.pending = None;
    }

    fn __repr__(&self) -> String {
        match &self.pending {
            Some(p) => format!("PendingResponse(request_id={})", p.request_id()),
            None => "PendingResponse(cancelled)".to_owned(),
        }
    }
}

/// One response: the server's chunk, read-only, through the buffer
/// protocol until `release()` or the end of its `with` block.
#[pyclass(module = "conduit", unsendable)]
pub struct Response {
    /// Declared first: dropped before the client it borrows.
    response: Option<RustResponse<'static, Bytes>>,
    exports: Cell<usize>,
    _port: Rc<RustClient<Bytes, Bytes>>,
}

#[pymethods]
impl Response {
    /// The id of the server that sent it.
    #[getter]
    fn server_id(&self) -> PyResult<String> {
        Ok(self
            .response
            .as_ref()
            .ok_or_else(|| released("response"))?
            .server_id()
            .to_string())
    }

    /// Gives the chunk back (raises `BufferError` while a memoryview of
    /// it is alive).
    fn release(&mut self) -> PyResult<()> {
        crate::unexported(self)?;
        self.response = None;
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &mut self,
        _t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        match &self.response {
            Some(r) => format!("Response({} bytes)", r.len()),
            None => "Response(released)".to_owned(),
        }
    }
}

impl crate::Held for Response {
    const WHAT: &'static str = "response";
    fn held(&self) -> Option<&[u8]> {
        self.response.as_deref()
    }
    fn exports(&self) -> &Cell<usize> {
        &self.exports
    }
}

#[pymethods]
impl Response {
    fn __len__(&self) -> usize {
        crate::Held::held(self).map_or(0, <[u8]>::len)
    }

    fn __bytes__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        crate::held_bytes(py, self)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: std::os::raw::c_int,
    ) -> PyResult<()> {
        // SAFETY: forwarded from the interpreter's call.
        unsafe { crate::get_buffer(slf, view, flags) }
    }

    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {
        crate::release_buffer(self);
    }
}

/// Receives requests and answers them.
#[pyclass(module = "conduit", unsendable)]
pub struct Server {
    inner: Rc<RustServer<Bytes, Bytes>>,
}

#[pymethods]
impl Server {
    /// The server's id (16 hex digits).
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// How many clients it is connected to.
    #[getter]
    fn clients(&self) -> usize {
        self.inner.clients()
    }

    /// `receive(timeout=None)`: the next request, waiting up to `timeout`
    /// seconds (`None`: until one comes; `0`: not at all); `None` if none
    /// came.
    #[pyo3(signature = (timeout=None))]
    fn receive(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<ActiveRequest>> {
        use conduit::reqres::ReceiveError as E;
        let server = &*self.inner;
        let got = blocking(py, timeout, |wait| {
            let r = match wait {
                None => server.try_receive(),
                Some(d) => match server.receive_timeout(d) {
                    Ok(a) => Ok(Some(a)),
                    Err(E::Timeout(_)) => Ok(None),
                    Err(e) => Err(e),
                },
            };
            r.map(|a| a.map(OnThisThread)).map_err(|e| match e {
                E::Corrupted { .. } => crate::CorruptedError::new_err(crate::message(&e)),
                _ => error(&e),
            })
        })?;
        Ok(got.map(|a| {
            // SAFETY: `a` borrows the server inside `self.inner`'s Rc,
            // which the ActiveRequest keeps (field `_port`, dropped after
            // `active`); the Rc's contents never move.
            let active: RustActive<'static, Bytes, Bytes> = unsafe { std::mem::transmute(a.0) };
            ActiveRequest {
                active: Some(active),
                exports: Cell::new(0),
                _port: Rc::clone(&self.inner),
            }
        }))
    }

    /// `await receive_async(timeout=None)`: as `receive`, without
    /// blocking the event loop (`asyncio`; waits on `fileno()`).
    #[pyo3(signature = (timeout=None))]
    fn receive_async<'py>(
        slf: Bound<'py, Self>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        crate::aio(slf.py(), "receive", (slf, timeout))
    }

    /// The descriptor that becomes readable when a request may be
    /// waiting; after it reports, `receive(timeout=0)` until it gives
    /// `None`, which re-arms it.
    fn fileno(&self) -> PyResult<i32> {
        self.inner
            .wake_fd()
            .map(|fd| fd.as_raw_fd())
            .map_err(|e| error(&e))
    }

    fn __repr__(&self) -> String {
        format!("Server(id={})", self.inner.id())
    }
}

fn respond_error(e: &ResponseSendOrLoanError) -> PyErr {
    match e {
        ResponseSendOrLoanError::Loan(l) => crate::loan_error(l),
        ResponseSendOrLoanError::Send(
            ResponseSendError::Disconnected | ResponseSendError::NoResponseWanted,
        ) => DisconnectedError::new_err(crate::message(e)),
        ResponseSendOrLoanError::Send(_) => resource(e),
        _ => error(e),
    }
}

/// A request being answered: its bytes, read-only, through the buffer
/// protocol; `respond(data)` any number of times (a stream), then `end()`
/// (or leave its `with` block) to end the stream.
#[pyclass(module = "conduit", unsendable)]
pub struct ActiveRequest {
    /// Declared first: dropped before the server it borrows.
    active: Option<RustActive<'static, Bytes, Bytes>>,
    exports: Cell<usize>,
    _port: Rc<RustServer<Bytes, Bytes>>,
}

#[pymethods]
impl ActiveRequest {
    /// The id of the client that sent it.
    #[getter]
    fn client_id(&self) -> PyResult<String> {
        Ok(self.get()?.client_id().to_string())
    }

    /// The request's id (the client's `PendingResponse.request_id`).
    #[getter]
    fn request_id(&self) -> PyResult<u64> {
        Ok(self.get()?.request_id())
    }

    /// Whether the client waits for responses (`False` for a request sent
    /// with `no_response=True`).
    #[getter]
    fn wants_response(&self) -> PyResult<bool> {
        Ok(self.get()?.wants_response())
    }

    /// Whether the client still waits for this request's responses.
    #[getter]
    fn is_connected(&self) -> PyResult<bool> {
        Ok(self.get()?.is_connected())
    }

    /// `respond(data)`: sends a copy of `data` as one response of the
    /// stream. `DisconnectedError` if the client no longer waits.
    fn respond(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = bytes_of(data)?;
        self.get()?
            .send_slice_copy(&bytes)
            .map_err(|e| respond_error(&e))
    }

    /// Ends the response stream (raises `BufferError` while a memoryview
    /// of the request is alive).
    fn end(&mut self) -> PyResult<()> {
        crate::unexported(self)?;
        self.active = None;
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &mut self,
        _t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.end()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        match &self.active {
            Some(a) => format!(
                "ActiveRequest({} bytes, request_id={})",
                a.len(),
                a.request_id()
            ),
            None => "ActiveRequest(ended)".to_owned(),
        }
    }
}

impl ActiveRequest {
    fn get(&self) -> PyResult<&RustActive<'static, Bytes, Bytes>> {
        self.active.as_ref().ok_or_else(|| released("request"))
    }
}

impl crate::Held for ActiveRequest {
    const WHAT: &'static str = "request";
    fn held(&self) -> Option<&[u8]> {
        self.active.as_deref()
    }
    fn exports(&self) -> &Cell<usize> {
        &self.exports
    }
}

#[pymethods]
impl ActiveRequest {
    fn __len__(&self) -> usize {
        crate::Held::held(self).map_or(0, <[u8]>::len)
    }

    fn __bytes__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        crate::held_bytes(py, self)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: std::os::raw::c_int,
    ) -> PyResult<()> {
        // SAFETY: forwarded from the interpreter's call.
        unsafe { crate::get_buffer(slf, view, flags) }
    }

    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {
        crate::release_buffer(self);
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("EndOfStream", m.py().get_type::<EndOfStream>())?;
    m.add_class::<ReqResService>()?;
    m.add_class::<Client>()?;
    m.add_class::<PendingResponse>()?;
    m.add_class::<Response>()?;
    m.add_class::<Server>()?;
    m.add_class::<ActiveRequest>()?;
    Ok(())
}
