//! Blackboards: `Node.blackboard(name)` opens a blackboard a Rust program
//! created (`blackboard::<K, V>()`), with its types learnt from the
//! service's configuration (the library's `RawBlackboard`). Keys and
//! values are the bytes of their Rust types; an integer key (`u8` ...
//! `u64`, `i8` ... `i64`, `usize`, `isize`) may also be given as a Python
//! `int`. Decode values with `struct.unpack` or a `ctypes.Structure`'s
//! `from_buffer_copy`.

use std::time::Duration;

use conduit::blackboard::{
    EntryError, RawBlackboard, RawReader, RawWriter, ReadError, UpdateError, WaitError,
};
use conduit::service::TypeLayoutInfo;
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;

use crate::pubsub::bytes_of;
use crate::{Node, OnThisThread, blocking, error, resource, service_error};

/// An open blackboard (types learnt at run time).
#[pyclass(module = "conduit", unsendable)]
pub struct Blackboard {
    inner: RawBlackboard,
}

#[pymethods]
impl Node {
    /// `blackboard(name)`: opens the existing blackboard `name`
    /// (`NotFoundError` if there is none; a blackboard is created, with
    /// its keys and initial values, by a Rust program).
    fn blackboard(&self, name: &str) -> PyResult<Blackboard> {
        let inner = self
            .inner
            .service(name)
            .blackboard_raw()
            .open()
            .map_err(service_error)?;
        Ok(Blackboard { inner })
    }
}

/// `(name, size)` of a recorded type.
fn type_tuple(t: &TypeLayoutInfo) -> (String, u64) {
    (t.name.clone(), t.size)
}

/// Whether the recorded type is a signed integer of its size.
fn integer_kind(t: &TypeLayoutInfo) -> Option<bool> {
    match t.name.as_str() {
        "u8" | "u16" | "u32" | "u64" | "usize" => Some(false),
        "i8" | "i16" | "i32" | "i64" | "isize" => Some(true),
        _ => None,
    }
}

/// The key's bytes: the bytes given, or an `int` packed as the key type
/// (little-endian, the only byte order conduit runs on... and checked to
/// fit).
fn key_bytes(key_type: &TypeLayoutInfo, key: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(n) = key.extract::<i128>() {
        let signed = integer_kind(key_type).ok_or_else(|| {
            PyValueError::new_err(format!(
                "keys of this blackboard are {}, not integers: give the key's bytes",
                key_type.name
            ))
        })?;
        let size = key_type.size as usize;
        let bits = 8 * size as u32;
        let (min, max) = if signed {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        } else {
            (0, (1i128 << bits) - 1)
        };
        if n < min || n > max {
            return Err(PyValueError::new_err(format!(
                "key {n} does not fit the key type {}",
                key_type.name
            )));
        }
        return Ok(n.to_le_bytes()[..size].to_vec());
    }
    bytes_of(key)
}

fn entry_error(e: &EntryError) -> PyErr {
    match e {
        EntryError::UnknownKey { .. } => PyKeyError::new_err(crate::message(e)),
        _ => PyValueError::new_err(crate::message(e)),
    }
}

fn update_error(e: &UpdateError) -> PyErr {
    match e {
        UpdateError::UnknownKey { .. } => PyKeyError::new_err(crate::message(e)),
        _ => PyValueError::new_err(crate::message(e)),
    }
}

fn read_error(e: &ReadError) -> PyErr {
    resource(e)
}

#[pymethods]
impl Blackboard {
    /// The blackboard's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// The key type as `(name, size in bytes)`.
    #[getter]
    fn key_type(&self) -> (String, u64) {
        type_tuple(&self.inner.key_type())
    }

    /// The value type as `(name, size in bytes)`.
    #[getter]
    fn value_type(&self) -> (String, u64) {
        type_tuple(&self.inner.value_type())
    }

    /// Whether the writer wakes waiting readers
    /// (`Reader.wait_changed_since`).
    #[getter]
    fn notify_changes(&self) -> bool {
        self.inner.notify_changes()
    }

    /// Every key, as bytes, in creation order.
    fn keys(&self) -> Vec<Vec<u8>> {
        self.inner.keys()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// A reader.
    fn reader(&self) -> PyResult<Reader> {
        let inner = self.inner.reader().map_err(|e| resource(&e))?;
        Ok(Reader {
            inner,
            key_type: self.inner.key_type(),
        })
    }

    /// The writer (`ResourceError` while another process writes).
    fn writer(&self) -> PyResult<Writer> {
        let inner = self.inner.writer().map_err(|e| resource(&e))?;
        Ok(Writer {
            inner,
            key_type: self.inner.key_type(),
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "Blackboard({:?}, {} -> {}, {} entries)",
            self.inner.name(),
            self.inner.key_type().name,
            self.inner.value_type().name,
            self.inner.len()
        )
    }
}

/// Reads a blackboard's entries without a lock.
#[pyclass(module = "conduit", unsendable)]
pub struct Reader {
    inner: RawReader,
    key_type: TypeLayoutInfo,
}

#[pymethods]
impl Reader {
    /// `get(key)`: the entry's latest complete value (bytes) and its
    /// version, as `(value, version)`. `KeyError` for an unknown key.
    fn get(&self, key: &Bound<'_, PyAny>) -> PyResult<(Vec<u8>, u64)> {
        let key = key_bytes(&self.key_type, key)?;
        let entry = self.inner.entry(&key).map_err(|e| entry_error(&e))?;
        entry.get_with_version().map_err(|e| read_error(&e))
    }

    /// `version(key)`: the entry's version (0: its initial value; each
    /// update publishes a greater one).
    fn version(&self, key: &Bound<'_, PyAny>) -> PyResult<u64> {
        let key = key_bytes(&self.key_type, key)?;
        Ok(self
            .inner
            .entry(&key)
            .map_err(|e| entry_error(&e))?
            .version())
    }

    /// `changed_since(key, version)`: whether the entry's version is no
    /// longer `version`.
    fn changed_since(&self, key: &Bound<'_, PyAny>, version: u64) -> PyResult<bool> {
        let key = key_bytes(&self.key_type, key)?;
        Ok(self
            .inner
            .entry(&key)
            .map_err(|e| entry_error(&e))?
            .changed_since(version))
    }

    /// `wait_changed_since(key, version, timeout=None)`: waits (GIL
    /// released) until the entry's version is not `version`, up to
    /// `timeout` seconds; returns the new version, or `None` on timeout.
    /// Needs a blackboard created with `notify_changes(true)`
    /// (`ConduitError` otherwise).
    #[pyo3(signature = (key, version, timeout=None))]
    fn wait_changed_since(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        version: u64,
        timeout: Option<f64>,
    ) -> PyResult<Option<u64>> {
        let key = key_bytes(&self.key_type, key)?;
        let entry = self.inner.entry(&key).map_err(|e| entry_error(&e))?;
        let got = blocking(py, timeout, |wait| {
            let d = wait.unwrap_or(Duration::ZERO);
            match entry.wait_changed_since(version, Some(d)) {
                Ok(v) => Ok(Some(OnThisThread(v))),
                Err(WaitError::Timeout) => Ok(None),
                Err(e) => Err(error(&e)),
            }
        })?;
        Ok(got.map(|v| v.0))
    }

    fn __repr__(&self) -> String {
        format!("Reader(id={})", self.inner.id())
    }
}

/// Updates a blackboard's entries (one writer at a time).
#[pyclass(module = "conduit", unsendable)]
pub struct Writer {
    inner: RawWriter,
    key_type: TypeLayoutInfo,
}

#[pymethods]
impl Writer {
    /// `update(key, value)`: publishes `value` (exactly the value type's
    /// bytes) as the entry's new value; returns its version.
    fn update(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<u64> {
        let key = key_bytes(&self.key_type, key)?;
        let value = bytes_of(value)?;
        self.inner
            .update(&key, &value)
            .map_err(|e| update_error(&e))
    }

    fn __repr__(&self) -> String {
        format!("Writer(id={})", self.inner.id())
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Blackboard>()?;
    m.add_class::<Reader>()?;
    m.add_class::<Writer>()?;
    Ok(())
}
