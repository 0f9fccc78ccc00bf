//! Events: `Node.event(name)` is the same event service a Rust program
//! opens with `node.service(name).event()`.

use std::os::fd::AsRawFd;

use conduit::event::{EventId, EventService as RustService, Listener as RustListener, NotifyError};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::{Mode, Node, OnThisThread, blocking, error, resource, service_error};

/// An open event service.
#[pyclass(module = "conduit", unsendable)]
pub struct EventService {
    inner: RustService,
}

#[pymethods]
impl Node {
    /// `event(name, *, create=None, max_event_id=None, max_notifiers=None,
    /// max_listeners=None)`: opens or creates (`create=None`), only
    /// creates (`True`) or only opens (`False`) the event service `name`.
    #[pyo3(signature = (name, *, create=None, max_event_id=None, max_notifiers=None,
        max_listeners=None))]
    fn event(
        &self,
        name: &str,
        create: Option<bool>,
        max_event_id: Option<usize>,
        max_notifiers: Option<usize>,
        max_listeners: Option<usize>,
    ) -> PyResult<EventService> {
        let mut b = self.inner.service(name).event();
        if let Some(v) = max_event_id {
            b = b.max_event_id(v);
        }
        if let Some(v) = max_notifiers {
            b = b.max_notifiers(v);
        }
        if let Some(v) = max_listeners {
            b = b.max_listeners(v);
        }
        let inner = match Mode::of(create) {
            Mode::OpenOrCreate => b.open_or_create(),
            Mode::Create => b.create(),
            Mode::Open => b.open(),
        }
        .map_err(service_error)?;
        Ok(EventService { inner })
    }
}

#[pymethods]
impl EventService {
    /// The service's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// The largest event id a notifier may use.
    #[getter]
    fn max_event_id(&self) -> usize {
        self.inner.max_event_id().value()
    }

    /// A notifier.
    fn notifier(&self) -> PyResult<Notifier> {
        let inner = self.inner.notifier().create().map_err(|e| resource(&e))?;
        Ok(Notifier { inner })
    }

    /// A listener.
    fn listener(&self) -> PyResult<Listener> {
        let inner = self.inner.listener().create().map_err(|e| resource(&e))?;
        Ok(Listener { inner })
    }

    fn __repr__(&self) -> String {
        format!("EventService({:?})", self.inner.name())
    }
}

/// Notifies the listeners of an event service.
#[pyclass(module = "conduit", unsendable)]
pub struct Notifier {
    inner: conduit::event::Notifier,
}

#[pymethods]
impl Notifier {
    /// The notifier's id (16 hex digits).
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// `notify(id=0)`: wakes every listener with event `id`; returns how
    /// many listeners it reached. `ValueError` above `max_event_id`.
    #[pyo3(signature = (id=0))]
    fn notify(&self, id: usize) -> PyResult<usize> {
        self.inner.notify(id).map_err(|e| match e {
            NotifyError::InvalidId { .. } => PyValueError::new_err(crate::message(&e)),
            _ => error(&e),
        })
    }

    fn __repr__(&self) -> String {
        format!("Notifier(id={})", self.inner.id())
    }
}

/// Waits for the events of an event service.
#[pyclass(module = "conduit", unsendable)]
pub struct Listener {
    inner: RustListener,
}

fn ids(set: &conduit::event::EventSet) -> Vec<usize> {
    set.iter().map(EventId::value).collect()
}

#[pymethods]
impl Listener {
    /// The listener's id (16 hex digits).
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// `wait(timeout=None)`: the sorted list of event ids notified since
    /// the last wait, waiting up to `timeout` seconds for one (`None`:
    /// until one comes; `0`: not at all); `[]` if none came. An id
    /// notified several times between two waits is listed once.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Vec<usize>> {
        let listener = &self.inner;
        let got = blocking(py, timeout, |wait| {
            let set = match wait {
                None => listener.try_wait(),
                Some(d) => listener.wait_timeout(d),
            };
            Ok((!set.is_empty()).then(|| OnThisThread(ids(&set))))
        })?;
        Ok(got.map(|v| v.0).unwrap_or_default())
    }

    /// `await wait_async(timeout=None)`: as `wait`, without blocking the
    /// event loop (`asyncio`; waits on `fileno()`).
    #[pyo3(signature = (timeout=None))]
    fn wait_async<'py>(slf: Bound<'py, Self>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        crate::aio(slf.py(), "wait", (slf, timeout))
    }

    /// The descriptor that becomes readable when an event may be waiting
    /// (for `select`, `selectors`, `asyncio`); after it reports,
    /// `wait(timeout=0)` until it gives `[]`, which re-arms it.
    fn fileno(&self) -> PyResult<i32> {
        self.inner
            .wake_fd()
            .map(|fd| fd.as_raw_fd())
            .map_err(|e| error(&e))
    }

    fn __repr__(&self) -> String {
        format!("Listener(id={})", self.inner.id())
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EventService>()?;
    m.add_class::<Notifier>()?;
    m.add_class::<Listener>()?;
    Ok(())
}
