//! Publish/subscribe: `Node.publish_subscribe(name)` is a Rust
//! `publish_subscribe::<[u8]>()` service of byte payloads, and
//! `Node.publish_subscribe(name, Pose, fingerprint=...)` with a
//! `ctypes.Structure` (or a numpy dtype) is the Rust
//! `publish_subscribe::<Pose>()` service of a `#[repr(C)]` type: both are
//! the core's run-time typed services (`conduit::pubsub::RawType`),
//! checked by name, size, alignment and fingerprint.
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
    NoHeader, Overflow, PubSubService as RustService, Publisher as RustPublisher, RawPayload,
    RawType, ReceiveError, Sample as RustSample, SampleMut, SendError, SendOrLoanError,
    Subscriber as RustSubscriber,
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
/// `bytearray`, `memoryview`, numpy arrays, a `Sample`, a `ctypes`
/// structure), copied.
pub(crate) fn bytes_of(data: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = data.cast::<pyo3::types::PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(buffer) = PyBuffer::<u8>::get(data) {
        return buffer.to_vec(data.py());
    }
    // A buffer of other items (a ctypes structure, a float array): its
    // bytes, through a memoryview (which refuses objects without the
    // buffer protocol, so `bytes(5)`-style surprises cannot happen).
    let py = data.py();
    py.import("builtins")?
        .getattr("memoryview")?
        .call1((data,))
        .and_then(|view| view.call_method0("tobytes"))
        .and_then(|b| Ok(b.cast::<pyo3::types::PyBytes>()?.as_bytes().to_vec()))
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "expected bytes or an object with the buffer protocol, not {}",
                data.get_type()
                    .name()
                    .map_or_else(|_| "?".to_owned(), |n| n.to_string())
            ))
        })
}

/// The run-time type of `payload_type`: a ctypes type (its `sizeof`,
/// `alignment` and `__name__`) or a numpy dtype (its `itemsize` and
/// `alignment`; `type_name` required). The fingerprint defaults to the
/// leaf fingerprint of name, size and alignment.
fn raw_type_of(
    payload_type: &Bound<'_, PyAny>,
    type_name: Option<String>,
    fingerprint: Option<u64>,
) -> PyResult<RawType> {
    let py = payload_type.py();
    let ctypes = py.import("ctypes")?;
    let is_type = payload_type.is_instance_of::<pyo3::types::PyType>();
    let ctype = is_type
        .then(|| {
            let size = ctypes.call_method1("sizeof", (payload_type,)).ok()?;
            let align = ctypes.call_method1("alignment", (payload_type,)).ok()?;
            Some((size, align))
        })
        .flatten();
    let (size, align, own_name) = match ctype {
        Some((size, align)) => (
            size.extract::<usize>()?,
            align.extract::<usize>()?,
            Some(payload_type.getattr("__name__")?.extract::<String>()?),
        ),
        None => match (
            payload_type.getattr("itemsize").ok(),
            payload_type.getattr("alignment").ok(),
        ) {
            (Some(size), Some(align)) if !is_type => (size.extract()?, align.extract()?, None),
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "payload_type must be a ctypes type (such as a ctypes.Structure \
                     subclass) or a numpy dtype, not {}",
                    payload_type.repr()?
                )));
            }
        },
    };
    let name = type_name.or(own_name).ok_or_else(|| {
        PyValueError::new_err("a numpy dtype has no type name: give type_name= (the Rust type's)")
    })?;
    let fingerprint =
        fingerprint.unwrap_or_else(|| conduit::pubsub::leaf_fingerprint(&name, size, align));
    Ok(RawType {
        name,
        size,
        align,
        fingerprint,
    })
}

/// An open publish/subscribe service: of byte payloads, or of one value
/// of a ctypes type or numpy dtype per sample.
#[pyclass(module = "conduit", unsendable)]
pub struct PubSubService {
    inner: RustService<RawPayload>,
    /// The ctypes type or numpy dtype of a typed service.
    payload_type: Option<Py<PyAny>>,
}

#[pymethods]
impl Node {
    /// `publish_subscribe(name, payload_type=None, *, fingerprint=None,
    /// type_name=None, create=None, max_publishers=None,
    /// max_subscribers=None, subscriber_buffer=None, history=None,
    /// max_loans=None, max_borrowed=None, overflow=None)`: opens or
    /// creates (`create=None`), only creates (`True`) or only opens
    /// (`False`) the service `name`. A value given when opening is a
    /// requirement the existing service must meet (`IncompatibleError`
    /// names it). `overflow` is `"drop_oldest"` (default), `"block"` or
    /// `"fail"`.
    ///
    /// Without `payload_type` the service carries bytes (Rust
    /// `publish_subscribe::<[u8]>()`). With a ctypes type (a
    /// `ctypes.Structure` subclass) or a numpy dtype (built with
    /// `align=True`, and `type_name=` given) each sample is one value of
    /// it: the Rust `publish_subscribe::<T>()` service of the
    /// `#[repr(C)]` type `T` of that name (`type_name`, default the ctypes
    /// class name), size, alignment and `fingerprint` (Rust's
    /// `T::LAYOUT.fingerprint`; default the leaf fingerprint of name, size
    /// and alignment, which only hand-written Rust layouts have). Any
    /// difference raises `IncompatibleError` naming both types.
    #[pyo3(signature = (name, payload_type=None, *, fingerprint=None, type_name=None,
        create=None, max_publishers=None, max_subscribers=None,
        subscriber_buffer=None, history=None, max_loans=None, max_borrowed=None, overflow=None))]
    #[allow(clippy::too_many_arguments)]
    fn publish_subscribe(
        &self,
        name: &str,
        payload_type: Option<&Bound<'_, PyAny>>,
        fingerprint: Option<u64>,
        type_name: Option<String>,
        create: Option<bool>,
        max_publishers: Option<usize>,
        max_subscribers: Option<usize>,
        subscriber_buffer: Option<usize>,
        history: Option<usize>,
        max_loans: Option<usize>,
        max_borrowed: Option<usize>,
        overflow: Option<&str>,
    ) -> PyResult<PubSubService> {
        let service = self.inner.service(name);
        let mut b = match payload_type {
            None => service.publish_subscribe_raw_slice(RawType::of::<u8>()),
            Some(t) => service.publish_subscribe_raw(raw_type_of(t, type_name, fingerprint)?),
        };
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
        Ok(PubSubService {
            inner,
            payload_type: payload_type.map(|t| t.clone().unbind()),
        })
    }
}

#[pymethods]
impl PubSubService {
    /// The service's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// The ctypes type or numpy dtype of a typed service; `None` for a
    /// byte service.
    #[getter]
    fn payload_type(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.payload_type.as_ref().map(|t| t.clone_ref(py))
    }

    /// `(name, size, alignment, fingerprint)` of the payload type as the
    /// service records it (`("u8", 1, 1, ...)` for a byte service): what
    /// another program must give to meet this one.
    #[getter]
    fn layout(&self) -> (String, u64, u64, u64) {
        let t = self.inner.payload_type();
        (t.name, t.size, t.align, t.fingerprint)
    }

    /// `publisher(max_slice_len=4096, block_timeout=None)`: a publisher
    /// whose loans hold up to `max_slice_len` bytes (on a typed service:
    /// one value, whatever `max_slice_len`); `block_timeout` (seconds)
    /// bounds a send to a full queue of an `overflow="block"` service.
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
    fn subscriber(&self, py: Python<'_>) -> PyResult<Subscriber> {
        let inner = self.inner.subscriber().create().map_err(|e| resource(&e))?;
        Ok(Subscriber {
            inner: Rc::new(inner),
            payload_type: self.payload_type.as_ref().map(|t| t.clone_ref(py)),
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

/// A publisher (of byte payloads, or of one typed value per sample).
#[pyclass(module = "conduit", unsendable)]
pub struct Publisher {
    inner: Rc<RustPublisher<RawPayload>>,
}

#[pymethods]
impl Publisher {
    /// The publisher's id (16 hex digits).
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// The most bytes one loan holds (on a typed service: the type's
    /// size).
    #[getter]
    fn max_slice_len(&self) -> usize {
        self.inner.max_bytes()
    }

    /// `send(data)`: copies `data` (bytes or any buffer: on a typed
    /// service a ctypes instance of the type, or exactly its size in
    /// bytes) into a chunk and sends it; returns how many subscribers it
    /// reached.
    fn send(&self, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let bytes = bytes_of(data)?;
        self.inner
            .send_copy(&bytes)
            .map_err(|e| send_or_loan_error(&e))
    }

    /// `loan(size=None)`: a chunk of `size` bytes of shared memory to
    /// write in place (`memoryview(loan)`, or on a typed service
    /// `Pose.from_buffer(loan)`: the struct over the shared memory, to
    /// drop before `send`), then `loan.send()`. On a typed service `size`
    /// is the type's size (the default); a byte service needs it. Its
    /// bytes are unspecified until written (a reused chunk holds an
    /// older sample).
    #[pyo3(signature = (size=None))]
    fn loan(&self, size: Option<usize>) -> PyResult<Loan> {
        let size = match size {
            Some(size) => size,
            None if !self.inner.is_slice() => self.inner.max_bytes(),
            None => {
                return Err(PyValueError::new_err(
                    "loan(size): a byte service's loan needs its size in bytes",
                ));
            }
        };
        let uninit = self
            .inner
            .loan_uninit(size)
            .map_err(|e| crate::loan_error(&e))?;
        // SAFETY: the chunk lies in a shared mapping: its bytes were
        // written by the kernel (zero pages) or by an earlier sample, so
        // every byte holds a `u8` value; `u8` has no invalid values.
        let sample: SampleMut<'_, RawPayload, NoHeader> = unsafe { uninit.assume_init() };
        // SAFETY: `sample` borrows the publisher inside `self.inner`'s
        // Rc, which the Loan keeps (field `_port`, dropped after
        // `sample`); the Rc's contents never move.
        let sample: SampleMut<'static, RawPayload, NoHeader> =
            unsafe { std::mem::transmute(sample) };
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
    sample: Option<SampleMut<'static, RawPayload, NoHeader>>,
    exports: Cell<usize>,
    _port: Rc<RustPublisher<RawPayload>>,
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

/// A subscriber (of byte payloads, or of one typed value per sample).
#[pyclass(module = "conduit", unsendable)]
pub struct Subscriber {
    inner: Rc<RustSubscriber<RawPayload>>,
    /// The ctypes type or numpy dtype of a typed service.
    payload_type: Option<Py<PyAny>>,
}

fn receive_error(e: &ReceiveError) -> PyErr {
    match e {
        ReceiveError::ExceedsMaxBorrowed(_) => resource(e),
        ReceiveError::Corrupted { .. } => crate::CorruptedError::new_err(crate::message(e)),
        _ => error(e),
    }
}

impl Subscriber {
    fn wrap(&self, py: Python<'_>, sample: RustSample<'_, RawPayload>) -> Sample {
        // SAFETY: `sample` borrows the subscriber inside `self.inner`'s
        // Rc, which the Sample keeps (field `_port`, dropped after
        // `sample`); the Rc's contents never move.
        let sample: RustSample<'static, RawPayload> = unsafe { std::mem::transmute(sample) };
        Sample {
            sample: Some(sample),
            exports: Cell::new(0),
            payload_type: self.payload_type.as_ref().map(|t| t.clone_ref(py)),
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
        Ok(got.map(|s| self.wrap(py, s.0)))
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
/// `with` block. On a typed service `sample.value` is a copy as the
/// ctypes type or numpy dtype.
#[pyclass(module = "conduit", unsendable)]
pub struct Sample {
    /// Declared first: dropped before the subscriber it borrows.
    sample: Option<RustSample<'static, RawPayload>>,
    exports: Cell<usize>,
    /// The ctypes type or numpy dtype of a typed service.
    payload_type: Option<Py<PyAny>>,
    _port: Rc<RustSubscriber<RawPayload>>,
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

    /// The payload as the service's type, copied (so it outlives the
    /// sample): `Pose.from_buffer_copy(sample)` for a ctypes type (ctypes'
    /// zero-copy `from_buffer` needs a writable buffer, and the sample is
    /// read-only shared memory), a `numpy.void` record for a dtype (for a
    /// zero-copy read use `numpy.frombuffer(sample, dtype)`, a read-only
    /// view that holds the sample until it is gone). `TypeError` on a
    /// byte service.
    #[getter]
    fn value<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let payload_type = {
            let me = slf.borrow();
            me.sample.as_ref().ok_or_else(|| released("sample"))?;
            me.payload_type
                .as_ref()
                .ok_or_else(|| {
                    PyTypeError::new_err(
                        "the samples of a byte service have no type: read them with \
                         bytes(sample) or memoryview(sample)",
                    )
                })?
                .bind(py)
                .clone()
        };
        if payload_type.hasattr("from_buffer_copy")? {
            // The buffer protocol: `slf` is borrowed only inside it.
            return payload_type.call_method1("from_buffer_copy", (slf,));
        }
        let bytes = crate::held_bytes(py, &*slf.borrow())?;
        py.import("numpy")?
            .call_method1("frombuffer", (bytes, payload_type))?
            .get_item(0)
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
