//! Publish/subscribe of byte payloads: `Node.publish_subscribe(name)` is
//! a Rust `publish_subscribe::<[u8]>()` service.
//!
//! Self-borrowing objects: a Rust `Sample<'s>` borrows its `Subscriber`
//! and a loan borrows its `Publisher`. The Python objects hold the port in
//! an `Rc` (stable address, kept alive by every sample or loan that
//! borrows it) and the borrowed object with its lifetime extended to
//! `'static`; each such struct declares the borrower before the `Rc`, so
//! the borrower is dropped first, and never hands the `'static` borrow out.

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use conduit::pubsub::{
    NoHeader, Overflow, PubSubService as RustService, Publisher as RustPublisher, ReceiveError,
    Sample as RustSample, SampleMut, SendError, SendOrLoanError, Subscriber as RustSubscriber,
};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;

use crate::{
    Mode, Node, OnThisThread, blocking, error, exported, fill_buffer, released, resource,
    service_error,
};

/// The bytes of any object with the buffer protocol (`bytes`,
/// `bytearray`, `memoryview`, numpy arrays, a `Sample`), copied.
pub(crate) fn bytes_of(data: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = data.cast::<pyo3::types::PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    let buffer = PyBuffer::<u8>::get(data).map_err(|_| {
        PyTypeError::new_err(format!(
            "expected bytes or an object with the buffer protocol, not {}",
            data.get_type()
                .name()
                .map_or_else(|_| "?".to_owned(), |n| n.to_string())
        ))
    })?;
    buffer.to_vec(data.py())
}

/// An open publish/subscribe service of byte payloads.
#[pyclass(module = "conduit", unsendable)]
pub struct PubSubService {
    inner: RustService<[u8]>,
}

#[pymethods]
impl Node {
    /// `publish_subscribe(name, *, create=None, max_publishers=None,
    /// max_subscribers=None, subscriber_buffer=None, history=None,
    /// max_loans=None, max_borrowed=None, overflow=None)`: opens or
    /// creates (`create=None`), only creates (`True`) or only opens
    /// (`False`) the byte-payload service `name`. A value given when
    /// opening is a requirement the existing service must meet
    /// (`IncompatibleError` names it). `overflow` is `"drop_oldest"`
    /// (default), `"block"` or `"fail"`.
    #[pyo3(signature = (name, *, create=None, max_publishers=None, max_subscribers=None,
        subscriber_buffer=None, history=None, max_loans=None, max_borrowed=None, overflow=None))]
    #[allow(clippy::too_many_arguments)]
    fn publish_subscribe(
        &self,
        name: &str,
        create: Option<bool>,
        max_publishers: Option<usize>,
        max_subscribers: Option<usize>,
        subscriber_buffer: Option<usize>,
        history: Option<usize>,
        max_loans: Option<usize>,
        max_borrowed: Option<usize>,
        overflow: Option<&str>,
    ) -> PyResult<PubSubService> {
        let mut b = self.inner.service(name).publish_subscribe::<[u8]>();
        if let Some(v) = max_publishers {
            b = b.max_publishers(v);
        }
        if let Some(v) = max_subscribers {
            b = b.max_subscribers(v);
        }
        if let Some(v) = subscriber_buffer {
            b = b.subscriber_buffer(v);
        }
        if let Some(v) = history {
            b = b.history(v);
        }
        if let Some(v) = max_loans {
            b = b.max_loans(v);
        }
        if let Some(v) = max_borrowed {
            b = b.max_borrowed(v);
        }
        if let Some(v) = overflow {
            b = b.overflow(match v {
                "drop_oldest" => Overflow::DropOldest,
                "block" => Overflow::Block,
                "fail" => Overflow::Fail,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "overflow must be \"drop_oldest\", \"block\" or \"fail\", not {other:?}"
                    )));
                }
            });
        }
        let inner = match Mode::of(create) {
            Mode::OpenOrCreate => b.open_or_create(),
            Mode::Create => b.create(),
            Mode::Open => b.open(),
        }
        .map_err(service_error)?;
        Ok(PubSubService { inner })
    }
}

#[pymethods]
impl PubSubService {
    /// The service's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// `publisher(max_slice_len=4096, block_timeout=None)`: a publisher
    /// whose loans hold up to `max_slice_len` bytes; `block_timeout`
    /// (seconds) bounds a send to a full queue of an `overflow="block"`
    /// service.
    #[pyo3(signature = (max_slice_len=4096, block_timeout=None))]
    fn publisher(&self, max_slice_len: usize, block_timeout: Option<f64>) -> PyResult<Publisher> {
        let mut b = self.inner.publisher().max_slice_len(max_slice_len);
        if let Some(t) = block_timeout {
            let t = Duration::try_from_secs_f64(t)
                .map_err(|e| PyValueError::new_err(format!("block_timeout: {e}")))?;
            b = b.block_timeout(t);
        }
        let inner = b.create().map_err(|e| resource(&e))?;
        Ok(Publisher {
            inner: Rc::new(inner),
        })
    }

    /// A subscriber: it receives what every publisher of the service sends
    /// from now on (and the history a publisher keeps).
    fn subscriber(&self) -> PyResult<Subscriber> {
        let inner = self.inner.subscriber().create().map_err(|e| resource(&e))?;
        Ok(Subscriber {
            inner: Rc::new(inner),
        })
    }

    fn __repr__(&self) -> String {
        format!("PubSubService({:?})", self.inner.name())
    }
}

fn send_error(e: &SendError) -> PyErr {
    resource(e)
}

fn send_or_loan_error(e: &SendOrLoanError) -> PyErr {
    match e {
        SendOrLoanError::Loan(l) => crate::loan_error(l),
        SendOrLoanError::Send(s) => send_error(s),
        _ => error(e),
    }
}

/// A publisher of byte payloads.
#[pyclass(module = "conduit", unsendable)]
pub struct Publisher {
    inner: Rc<RustPublisher<[u8]>>,
}

#[pymethods]
impl Publisher {
    /// The publisher's id (16 hex digits).
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// The most bytes one loan holds.
    #[getter]
    fn max_slice_len(&self) -> usize {
        self.inner.max_slice_len()
    }

    /// `send(data)`: copies `data` (bytes or any buffer) into a chunk and
    /// sends it; returns how many subscribers it reached.
    fn send(&self, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let bytes = bytes_of(data)?;
        self.inner
            .send_slice_copy(&bytes)
            .map_err(|e| send_or_loan_error(&e))
    }

    /// `loan(size)`: a chunk of `size` bytes of shared memory to write in
    /// place (`memoryview(loan)`), then `loan.send()`. Its bytes are
    /// unspecified until written (a reused chunk holds an older sample).
    fn loan(&self, size: usize) -> PyResult<Loan> {
        let uninit = self
            .inner
            .loan_slice_uninit(size)
            .map_err(|e| crate::loan_error(&e))?;
        // SAFETY: the chunk lies in a shared mapping: its bytes were
        // written by the kernel (zero pages) or by an earlier sample, so
        // every byte holds a `u8` value; `u8` has no invalid values.
        let sample: SampleMut<'_, [u8], NoHeader> = unsafe { uninit.assume_init() };
        // SAFETY: `sample` borrows the publisher inside `self.inner`'s
        // Rc, which the Loan keeps (field `_port`, dropped after
        // `sample`); the Rc's contents never move.
        let sample: SampleMut<'static, [u8], NoHeader> = unsafe { std::mem::transmute(sample) };
        Ok(Loan {
            sample: Some(sample),
            exports: Cell::new(0),
            _port: Rc::clone(&self.inner),
        })
    }

    fn __repr__(&self) -> String {
        format!("Publisher(id={})", self.inner.id())
    }
}

/// A chunk of a publisher's shared memory on loan: write it through the
/// buffer protocol, then `send()`. Dropping it (or leaving its `with`
/// block) unsent gives the chunk back.
#[pyclass(module = "conduit", unsendable)]
pub struct Loan {
    /// Declared first: dropped before the publisher it borrows.
    sample: Option<SampleMut<'static, [u8], NoHeader>>,
    exports: Cell<usize>,
    _port: Rc<RustPublisher<[u8]>>,
}

#[pymethods]
impl Loan {
    /// Sends the chunk to every subscriber; returns how many it reached.
    /// The loan is empty afterwards.
    fn send(&mut self) -> PyResult<usize> {
        let n = self.exports.get();
        if n > 0 {
            return Err(exported("loan", n));
        }
        let sample = self.sample.take().ok_or_else(|| released("loan"))?;
        sample.send().map_err(|e| send_error(&e))
    }

    /// Gives the chunk back unsent.
    fn discard(&mut self) -> PyResult<()> {
        let n = self.exports.get();
        if n > 0 {
            return Err(exported("loan", n));
        }
        self.sample = None;
        Ok(())
    }

    fn __len__(&self) -> usize {
        self.sample.as_ref().map_or(0, |s| s.len())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Leaving the `with` block gives an unsent chunk back.
    fn __exit__(
        &mut self,
        _t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        if self.sample.is_some() {
            self.discard()?;
        }
        Ok(false)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: std::os::raw::c_int,
    ) -> PyResult<()> {
        let (ptr, len) = {
            let mut me = slf.borrow_mut();
            let sample = me.sample.as_mut().ok_or_else(|| released("loan"))?;
            (sample.as_mut_ptr(), sample.len())
        };
        // SAFETY: the chunk stays the loan's until `send`/`discard`, which
        // refuse while `exports` > 0; the view counts as an export from
        // here until `__releasebuffer__`.
        unsafe { fill_buffer(slf.as_any(), view, flags, ptr, len, false)? };
        let me = slf.borrow();
        me.exports.set(me.exports.get() + 1);
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.set(self.exports.get().saturating_sub(1));
    }

    fn __repr__(&self) -> String {
        match &self.sample {
            Some(s) => format!("Loan({} bytes)", s.len()),
            None => "Loan(released)".to_owned(),
        }
    }
}

/// A subscriber of byte payloads.
#[pyclass(module = "conduit", unsendable)]
pub struct Subscriber {
    inner: Rc<RustSubscriber<[u8]>>,
}

fn receive_error(e: &ReceiveError) -> PyErr {
    match e {
        ReceiveError::ExceedsMaxBorrowed(_) => resource(e),
        ReceiveError::Corrupted { .. } => crate::CorruptedError::new_err(crate::message(e)),
        _ => error(e),
    }
}

impl Subscriber {
    fn wrap(&self, sample: RustSample<'_, [u8]>) -> Sample {
        // SAFETY: `sample` borrows the subscriber inside `self.inner`'s
        // Rc, which the Sample keeps (field `_port`, dropped after
        // `sample`); the Rc's contents never move.
        let sample: RustSample<'static, [u8]> = unsafe { std::mem::transmute(sample) };
        Sample {
            sample: Some(sample),
            exports: Cell::new(0),
            _port: Rc::clone(&self.inner),
        }
    }
}

#[pymethods]
impl Subscriber {
    /// The subscriber's id (16 hex digits).
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// How many publishers it is connected to.
    #[getter]
    fn publishers(&self) -> usize {
        self.inner.publishers()
    }

    /// `receive(timeout=None)`: the next sample, waiting up to `timeout`
    /// seconds (`None`: until one comes; `0`: not at all); `None` if none
    /// came. The GIL is released while it waits.
    #[pyo3(signature = (timeout=None))]
    fn receive(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Sample>> {
        let sub = &*self.inner;
        let got = blocking(py, timeout, |wait| {
            let r = match wait {
                None => sub.try_receive(),
                Some(d) => match sub.receive_timeout(d) {
                    Ok(s) => Ok(Some(s)),
                    Err(ReceiveError::Timeout(_)) => Ok(None),
                    Err(e) => Err(e),
                },
            };
            r.map(|s| s.map(OnThisThread))
                .map_err(|e| receive_error(&e))
        })?;
        Ok(got.map(|s| self.wrap(s.0)))
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

    /// The descriptor that becomes readable when a sample may be waiting
    /// (for `select`, `selectors` or `asyncio`'s `add_reader`); after it
    /// reports, `receive(timeout=0)` until it gives `None`, which re-arms
    /// it.
    fn fileno(&self) -> PyResult<i32> {
        self.inner
            .wake_fd()
            .map(|fd| fd.as_raw_fd())
            .map_err(|e| error(&e))
    }

    fn __repr__(&self) -> String {
        format!("Subscriber(id={})", self.inner.id())
    }
}

/// A received sample: the publisher's chunk, read-only, through the
/// buffer protocol (`memoryview(sample)`, `bytes(sample)`,
/// `numpy.frombuffer(sample, ...)`) until `release()` or the end of its
/// `with` block.
#[pyclass(module = "conduit", unsendable)]
pub struct Sample {
    /// Declared first: dropped before the subscriber it borrows.
    sample: Option<RustSample<'static, [u8]>>,
    exports: Cell<usize>,
    _port: Rc<RustSubscriber<[u8]>>,
}

#[pymethods]
impl Sample {
    /// The publisher's sequence number of the sample (1, 2, ...).
    #[getter]
    fn sequence(&self) -> PyResult<u64> {
        Ok(self
            .sample
            .as_ref()
            .ok_or_else(|| released("sample"))?
            .sequence())
    }

    /// The id of the publisher that sent it.
    #[getter]
    fn publisher_id(&self) -> PyResult<String> {
        Ok(self
            .sample
            .as_ref()
            .ok_or_else(|| released("sample"))?
            .publisher_id()
            .to_string())
    }

    /// Gives the chunk back to the publisher (raises `BufferError` while
    /// a memoryview of it is alive).
    fn release(&mut self) -> PyResult<()> {
        crate::unexported(self)?;
        self.sample = None;
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
        match &self.sample {
            Some(s) => format!("Sample({} bytes, sequence={})", s.len(), s.sequence()),
            None => "Sample(released)".to_owned(),
        }
    }
}

impl crate::Held for Sample {
    const WHAT: &'static str = "sample";
    fn held(&self) -> Option<&[u8]> {
        self.sample.as_deref()
    }
    fn exports(&self) -> &Cell<usize> {
        &self.exports
    }
}

#[pymethods]
impl Sample {
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
    m.add_class::<PubSubService>()?;
    m.add_class::<Publisher>()?;
    m.add_class::<Loan>()?;
    m.add_class::<Subscriber>()?;
    m.add_class::<Sample>()?;
    Ok(())
}
