//! The Python binding of conduit: the extension module `conduit._conduit`,
//! re-exported by the Python package `conduit` (`python/conduit`).
//!
//! ```python
//! import conduit
//! node = conduit.Node(name="camera", domain="robot")
//! frames = node.publish_subscribe("camera/frames")      # a [u8] service
//! pub = frames.publisher(max_slice_len=1 << 20)
//! with pub.loan(640 * 480) as loan:                     # shared memory
//!     memoryview(loan)[:4] = b"\x00\x01\x02\x03"        # written in place
//!     loan.send()
//! sub = frames.subscriber()
//! with sub.receive(timeout=1.0) as sample:              # None on timeout
//!     pixels = memoryview(sample)                       # no copy
//! ```
//!
//! # What it binds
//!
//! Nodes; publish/subscribe, request/response and events of byte
//! payloads (`publish_subscribe::<[u8]>()` and `request_response::<[u8],
//! [u8]>()` services, so a Rust program meets a Python one on the same
//! service); blackboards created by a Rust program (keys and values as the
//! bytes of their types). Typed payloads (a `ctypes.Structure` checked
//! against a Rust type's layout fingerprint) are not bound yet: the
//! library takes a payload type only from a Rust type's compile-time
//! `ShmSafe::LAYOUT`; send a structure's bytes (`bytes(s)`,
//! `S.from_buffer_copy(sample)`) meanwhile.
//!
//! # Zero copy and lifetimes
//!
//! A `Sample` (and a request or a response) exposes the
//! publisher's shared-memory chunk through the buffer protocol, read-only;
//! a `Loan` exposes its chunk writable. The chunk stays the
//! object's until `release()` (or `send()`, or the end of a `with`
//! block). While a `memoryview` of it is alive, `release()` raises
//! `BufferError` (as `bytearray` does when resized under a view); after
//! it, a new view raises `ValueError`. No Python code can reach a chunk
//! it no longer owns: a released sample's memory is never touched again.
//!
//! # Threads and blocking
//!
//! Ports are bound to the thread that made them (`unsendable` classes:
//! another thread gets pyo3's `PanicException`, never a data race). Every call that
//! blocks (`receive`, `wait`) releases the GIL and wakes every 100 ms to
//! let Python handle signals, so Ctrl-C interrupts it with
//! `KeyboardInterrupt`.

#![allow(unsafe_code)]

use std::time::{Duration, Instant};

use pyo3::exceptions::{PyBufferError, PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::{create_exception, ffi};

mod blackboard;
mod event;
mod pubsub;
mod reqres;

create_exception!(
    _conduit,
    ConduitError,
    PyException,
    "Base class of every error conduit raises."
);
create_exception!(
    _conduit,
    NotFoundError,
    ConduitError,
    "The service (or entry) does not exist."
);
create_exception!(
    _conduit,
    AlreadyExistsError,
    ConduitError,
    "The service exists already (`create=True`)."
);
create_exception!(
    _conduit,
    IncompatibleError,
    ConduitError,
    "The service exists with another payload type or configuration."
);
create_exception!(
    _conduit,
    CorruptedError,
    ConduitError,
    "Shared state written by another process is not valid."
);
create_exception!(
    _conduit,
    ResourceError,
    ConduitError,
    "A limit was reached: loans, chunks, queue room, ports."
);
create_exception!(
    _conduit,
    DisconnectedError,
    ConduitError,
    "The peer left or died (a server before it ended its response stream)."
);

/// The error's message with its `source()` chain, as one line.
pub(crate) fn message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A Python exception for a service error.
pub(crate) fn service_error(e: conduit::service::ServiceError) -> PyErr {
    use conduit::service::ServiceError as S;
    let text = message(&e);
    match e {
        S::NotFound(_) => NotFoundError::new_err(text),
        S::AlreadyExists(_) => AlreadyExistsError::new_err(text),
        S::IncompatibleType { .. } | S::IncompatibleConfig { .. } | S::NameCollision { .. } => {
            IncompatibleError::new_err(text)
        }
        S::Corrupted { .. } => CorruptedError::new_err(text),
        S::InvalidName { .. } | S::InvalidConfig(_) => PyValueError::new_err(text),
        _ => ConduitError::new_err(text),
    }
}

/// A `ConduitError` with the error's message chain.
pub(crate) fn error(e: &(dyn std::error::Error + 'static)) -> PyErr {
    ConduitError::new_err(message(e))
}

/// A `ResourceError` with the error's message chain.
pub(crate) fn resource(e: &(dyn std::error::Error + 'static)) -> PyErr {
    ResourceError::new_err(message(e))
}

/// A loan that could not be made: a `ValueError` for a slice longer than
/// the port allows or a length that is not the type's, a `ResourceError`
/// otherwise.
pub(crate) fn loan_error(e: &conduit::loan::LoanError) -> PyErr {
    match e {
        conduit::loan::LoanError::SliceTooLong { .. }
        | conduit::loan::LoanError::WrongLength { .. } => PyValueError::new_err(message(e)),
        _ => resource(e),
    }
}

/// How a service is opened: `create=None` (the default) opens it or
/// creates it, `True` only creates, `False` only opens.
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    OpenOrCreate,
    Create,
    Open,
}

impl Mode {
    pub(crate) fn of(create: Option<bool>) -> Mode {
        match create {
            None => Mode::OpenOrCreate,
            Some(true) => Mode::Create,
            Some(false) => Mode::Open,
        }
    }
}

/// A value moved into a closure that runs with the GIL released.
///
/// `Python::detach` asks for `Send` because in general the closure could
/// run elsewhere; it runs on the calling thread, synchronously, so values
/// that are only `!Send` because they must stay on one thread (ports, and
/// samples that borrow them) stay on it.
pub(crate) struct OnThisThread<T>(pub(crate) T);

// SAFETY: an `OnThisThread` is only made around a `Python::detach` call and
// unwrapped right after it, on the same thread: `detach` runs its closure
// on the calling thread before it returns, so the wrapped value never
// reaches another thread. The port objects it refers to are `unsendable`
// pyclasses, which pyo3 refuses to other threads while the GIL is
// released (and the caller holds a borrow of them for the whole call).
unsafe impl<T> Send for OnThisThread<T> {}

/// How long one blocking slice lasts before Python gets to run its signal
/// handlers.
const SLICE: Duration = Duration::from_millis(100);

/// Blocks (GIL released) until `attempt` gives a value, for at most
/// `timeout` seconds (`None`: forever; `0`: one non-blocking attempt).
/// `attempt(Some(d))` waits up to `d`, `attempt(None)` does not wait; both
/// give `Ok(None)` when nothing came. Between slices of [`SLICE`] the
/// interpreter runs its signal handlers, so Ctrl-C raises
/// `KeyboardInterrupt` here.
pub(crate) fn blocking<T>(
    py: Python<'_>,
    timeout: Option<f64>,
    mut attempt: impl FnMut(Option<Duration>) -> PyResult<Option<T>>,
) -> PyResult<Option<T>> {
    let deadline = match timeout {
        Some(t) if !(t >= 0.0 && t.is_finite()) => {
            return Err(PyValueError::new_err(format!(
                "timeout must be a finite number of seconds >= 0, not {t}"
            )));
        }
        Some(t) if t <= 0.0 => return attempt(None),
        Some(t) => Some(Instant::now() + Duration::from_secs_f64(t)),
        None => None,
    };
    loop {
        let slice = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return attempt(None);
                }
                left.min(SLICE)
            }
            None => SLICE,
        };
        let call = OnThisThread(&mut attempt);
        let got = py.detach(move || {
            let call = call;
            OnThisThread((call.0)(Some(slice)))
        });
        if let Some(v) = got.0? {
            return Ok(Some(v));
        }
        py.check_signals()?;
    }
}

/// Fills a buffer view over `len` bytes at `ptr` owned by `owner`
/// (which the view keeps alive through its `obj` reference).
///
/// # Safety
///
/// `ptr..ptr + len` must stay valid (and, unless `readonly`, writable)
/// for as long as the view exists: the owner must refuse to give up the
/// memory while it has exports.
pub(crate) unsafe fn fill_buffer(
    owner: &Bound<'_, PyAny>,
    view: *mut ffi::Py_buffer,
    flags: std::os::raw::c_int,
    ptr: *mut u8,
    len: usize,
    readonly: bool,
) -> PyResult<()> {
    if view.is_null() {
        return Err(PyBufferError::new_err("no view to fill"));
    }
    let len = isize::try_from(len).map_err(|_| PyBufferError::new_err("buffer too long"))?;
    // SAFETY: `view` is the non-null view the interpreter asked to fill;
    // the memory is valid for `len` bytes as the caller guarantees;
    // PyBuffer_FillInfo takes a new reference to `owner` (released by
    // PyBuffer_Release) and fails (returns -1 with an exception set) if a
    // writable view of read-only memory is asked for.
    let rc = unsafe {
        ffi::PyBuffer_FillInfo(
            view,
            owner.as_ptr(),
            ptr.cast(),
            len,
            i32::from(readonly),
            flags,
        )
    };
    if rc == -1 {
        return Err(PyErr::fetch(owner.py()));
    }
    Ok(())
}

/// The coroutine `conduit._aio.<name>(args...)`: how the ports' async
/// methods are built (an `asyncio` reader on the port's descriptor,
/// written in Python where the event loop lives).
pub(crate) fn aio<'py>(
    py: Python<'py>,
    name: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    py.import("conduit._aio")?.call_method1(name, args)
}

/// The error for an object whose memory is gone.
pub(crate) fn released(what: &str) -> PyErr {
    PyValueError::new_err(format!("this {what} was released (sent, or ended)"))
}

/// The error for giving up memory that a view still shows.
pub(crate) fn exported(what: &str, n: usize) -> PyErr {
    PyBufferError::new_err(format!(
        "this {what} has {n} live memoryview(s): release them (or leave their `with` block) first"
    ))
}

/// A class that holds received bytes (a sample, a request, a response)
/// and shows them read-only through the buffer protocol: the methods
/// [`get_buffer`] and friends need.
pub(crate) trait Held: pyo3::PyClass {
    /// What the class is called in errors ("sample").
    const WHAT: &'static str;
    /// The bytes, while held.
    fn held(&self) -> Option<&[u8]>;
    /// How many views of them are alive; the class must refuse to drop
    /// its bytes while this is above 0 (see [`exported`]).
    fn exports(&self) -> &std::cell::Cell<usize>;
}

/// `__getbuffer__` of a [`Held`] class: a read-only view of the shared
/// memory itself.
///
/// # Safety
///
/// As for `__getbuffer__`: `view` is the interpreter's.
pub(crate) unsafe fn get_buffer<T: Held>(
    slf: Bound<'_, T>,
    view: *mut ffi::Py_buffer,
    flags: std::os::raw::c_int,
) -> PyResult<()> {
    let (ptr, len) = {
        let me = slf.borrow();
        let b = me.held().ok_or_else(|| released(T::WHAT))?;
        (b.as_ptr().cast_mut(), b.len())
    };
    // SAFETY: the bytes stay the object's until it drops them, which it
    // refuses while `exports` > 0 (this view counts from here until
    // `__releasebuffer__`); read-only, so the view never writes the shared
    // memory.
    unsafe { fill_buffer(slf.as_any(), view, flags, ptr, len, true)? };
    let me = slf.borrow();
    me.exports().set(me.exports().get() + 1);
    Ok(())
}

/// `__releasebuffer__` of a [`Held`] class.
pub(crate) fn release_buffer<T: Held>(me: &T) {
    me.exports().set(me.exports().get().saturating_sub(1));
}

/// `__bytes__` of a [`Held`] class (a copy).
pub(crate) fn held_bytes<'py, T: Held>(
    py: Python<'py>,
    me: &T,
) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let b = me.held().ok_or_else(|| released(T::WHAT))?;
    Ok(pyo3::types::PyBytes::new(py, b))
}

/// Refuses (`BufferError`) to give up the bytes of a [`Held`] class
/// (`release`, `end`) while a view of them is alive.
pub(crate) fn unexported<T: Held>(me: &T) -> PyResult<()> {
    match me.exports().get() {
        0 => Ok(()),
        n => Err(exported(T::WHAT, n)),
    }
}

/// A conduit node: the process's membership of a domain. Every service
/// is reached through a node.
#[pyclass(module = "conduit", unsendable)]
pub struct Node {
    pub(crate) inner: conduit::node::Node,
}

#[pymethods]
impl Node {
    /// `Node(name=None, domain=None)`: joins `domain` (default: the
    /// `CONDUIT_DOMAIN` environment variable, else `"default"`) as a node
    /// called `name`.
    #[new]
    #[pyo3(signature = (name=None, domain=None))]
    fn new(name: Option<&str>, domain: Option<&str>) -> PyResult<Node> {
        let mut b = conduit::node::Node::builder();
        if let Some(n) = name {
            b = b.name(n);
        }
        if let Some(d) = domain {
            b = b.domain(d);
        }
        let inner = b.create().map_err(|e| match e {
            conduit::node::NodeCreateError::InvalidDomain(_)
            | conduit::node::NodeCreateError::NameTooLong { .. } => {
                PyValueError::new_err(message(&e))
            }
            _ => error(&e),
        })?;
        Ok(Node { inner })
    }

    /// The node's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// The node's domain.
    #[getter]
    fn domain(&self) -> String {
        self.inner.domain().to_owned()
    }

    /// The node's id (unique in the domain), as 16 hex digits.
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "Node(name={:?}, domain={:?}, id={})",
            self.inner.name(),
            self.inner.domain(),
            self.inner.id()
        )
    }
}

/// The extension module.
#[pymodule]
fn _conduit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ConduitError", py.get_type::<ConduitError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("AlreadyExistsError", py.get_type::<AlreadyExistsError>())?;
    m.add("IncompatibleError", py.get_type::<IncompatibleError>())?;
    m.add("CorruptedError", py.get_type::<CorruptedError>())?;
    m.add("ResourceError", py.get_type::<ResourceError>())?;
    m.add("DisconnectedError", py.get_type::<DisconnectedError>())?;
    m.add_class::<Node>()?;
    m.add_class::<ServiceWatch>()?;
    pubsub::register(m)?;
    event::register(m)?;
    reqres::register(m)?;
    blackboard::register(m)?;
    Ok(())
}

/// Watches a domain's services appear and disappear
/// (`Node.watch_services()`; the library's `Domain::watch`).
#[pyclass(module = "conduit", unsendable)]
pub struct ServiceWatch {
    inner: conduit::discovery::ServiceWatch,
}

fn kind_name(kind: conduit::ServiceKind) -> &'static str {
    match kind {
        conduit::ServiceKind::PublishSubscribe => "publish_subscribe",
        conduit::ServiceKind::Event => "event",
        conduit::ServiceKind::Blackboard => "blackboard",
        conduit::ServiceKind::RequestResponse => "request_response",
        _ => "service",
    }
}

fn event_tuple(
    e: conduit::discovery::ServiceEvent,
) -> Option<(&'static str, &'static str, String)> {
    use conduit::discovery::ServiceEvent as E;
    match e {
        E::Appeared(id) => Some(("appeared", kind_name(id.kind), id.name)),
        E::Disappeared(id) => Some(("disappeared", kind_name(id.kind), id.name)),
        _ => None,
    }
}

#[pymethods]
impl Node {
    /// `watch_services()`: a `ServiceWatch` of this node's domain; its
    /// first `events()` lists every service that exists as `appeared`.
    fn watch_services(&self) -> PyResult<ServiceWatch> {
        let domain = conduit::Domain::new(self.inner.domain()).map_err(|e| error(&e))?;
        let inner = domain.watch().map_err(|e| error(&e))?;
        Ok(ServiceWatch { inner })
    }
}

#[pymethods]
impl ServiceWatch {
    /// `events(timeout=None)`: what changed since the last call, as
    /// `(what, kind, name)` tuples (`what`: `"appeared"` or
    /// `"disappeared"`; `kind`: `"publish_subscribe"`, `"event"`,
    /// `"request_response"` or `"blackboard"`), waiting up to `timeout`
    /// seconds for a change (`None`: until one; `0`: not at all); `[]` if
    /// none came. A service that comes and goes between two looks may be
    /// missed.
    #[pyo3(signature = (timeout=None))]
    fn events(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<Vec<(&'static str, &'static str, String)>> {
        let watch = &self.inner;
        let got = blocking(py, timeout, |wait| {
            let events = match wait {
                None => watch.try_events(),
                Some(d) => watch.wait(Some(d)),
            }
            .map_err(|e| error(&e))?;
            let tuples: Vec<_> = events.into_iter().filter_map(event_tuple).collect();
            Ok((!tuples.is_empty()).then_some(OnThisThread(tuples)))
        })?;
        Ok(got.map(|t| t.0).unwrap_or_default())
    }

    /// The services as of the last look, as `(kind, name)` tuples.
    fn services(&self) -> Vec<(&'static str, String)> {
        self.inner
            .services()
            .into_iter()
            .map(|s| (kind_name(s.kind), s.name))
            .collect()
    }

    /// The descriptor that becomes readable when something may have
    /// changed (any file of /dev/shm): then `events(timeout=0)`.
    fn fileno(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.inner.fd().as_raw_fd()
    }

    fn __repr__(&self) -> String {
        format!("ServiceWatch(domain={:?})", self.inner.domain().name())
    }
}
