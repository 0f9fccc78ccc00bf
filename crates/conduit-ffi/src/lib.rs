//! # conduit-ffi: the C API of conduit
//!
//! A C program links `libconduit_ffi.a` or `libconduit_ffi.so` and
//! includes `include/conduit.h` (generated from this crate by cbindgen
//! and checked in; `tests/header.rs` fails when it is out of date). It
//! meets Rust programs on the same services: a C publisher and a Rust
//! subscriber of a `publish_subscribe::<[u8]>()` service exchange samples
//! with no copy, a C struct meets a Rust `#[repr(C)]` type on a typed
//! service ([`conduit_pubsub_open_typed`]), and C notifiers wake Rust
//! listeners.
//!
//! What is bound: nodes ([`node`]), publish/subscribe of byte and typed
//! payloads with loans, send, receive and release ([`pubsub`]), events with
//! notifiers and listeners ([`event`]), request/response of byte
//! payloads with streamed responses ([`reqres`]), a pollable descriptor
//! per subscriber, listener, client and server, and domain cleanup. The crate README lists
//! what is not bound yet.
//!
//! # Conventions
//!
//! * Every function returns a [`conduit_error_t`]; results come back
//!   through out-pointers, written only on success.
//!   [`conduit_error_message`] names a code and
//!   [`conduit_last_error_detail`] explains the last failure of the
//!   calling thread.
//! * Objects are **handles**: small structs holding a 64-bit id into a
//!   process-wide table. Every call checks the id: 0, a destroyed handle
//!   or a handle of another kind gives `CONDUIT_ERROR_INVALID_HANDLE`,
//!   never a crash. Destroy each handle with its `_destroy` function;
//!   handles may be destroyed in any order (a port keeps its service
//!   and node alive internally).
//! * No Rust panic crosses into C: every function catches it and
//!   returns `CONDUIT_ERROR_INTERNAL`.
//! * Timeouts are `int64_t` nanoseconds: 0 polls once,
//!   [`CONDUIT_WAIT_FOREVER`] (any negative value) blocks until something
//!   arrives.
//! * Handles may be used from any thread; calls on one port (publisher,
//!   subscriber, notifier, listener) serialize on that port.
#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

/// Applies the nonzero fields of a C options struct to a service builder
/// of the same setter names (0 means "the default").
macro_rules! apply_options {
    ($builder:ident, $options:ident; $($field:ident),* $(,)?) => {$(
        if $options.$field != 0 {
            $builder = $builder.$field($options.$field);
        }
    )*};
}
pub(crate) use apply_options;

pub mod error;
pub mod event;
mod handle;
pub mod node;
pub mod pubsub;
pub mod reqres;

use std::ffi::{CStr, c_char};
use std::time::Duration;

pub use error::{conduit_error_message, conduit_error_t, conduit_last_error_detail};
pub use event::*;
pub use node::*;
pub use pubsub::*;
pub use reqres::*;

use error::{Error, Result};

/// Pass as a timeout to wait until something arrives.
pub const CONDUIT_WAIT_FOREVER: i64 = -1;

/// `mode` of the `_open` functions: open the service, creating it if it
/// does not exist (race-free between processes).
pub const CONDUIT_OPEN_OR_CREATE: u32 = 0;
/// `mode` of the `_open` functions: create the service; fail with
/// `CONDUIT_ERROR_ALREADY_EXISTS` if it exists.
pub const CONDUIT_CREATE: u32 = 1;
/// `mode` of the `_open` functions: open the existing service; fail with
/// `CONDUIT_ERROR_NOT_FOUND` if there is none.
pub const CONDUIT_OPEN: u32 = 2;

/// The version of this library, `"MAJOR.MINOR.PATCH"` (static,
/// NUL-terminated).
#[unsafe(no_mangle)]
pub extern "C" fn conduit_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// How a service is opened.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    OpenOrCreate,
    Create,
    Open,
}

impl Mode {
    pub(crate) fn from_c(mode: u32) -> Result<Mode> {
        match mode {
            CONDUIT_OPEN_OR_CREATE => Ok(Mode::OpenOrCreate),
            CONDUIT_CREATE => Ok(Mode::Create),
            CONDUIT_OPEN => Ok(Mode::Open),
            other => Err(Error::new(
                conduit_error_t::CONDUIT_ERROR_INVALID_ARGUMENT,
                format!("unknown open mode {other}"),
            )),
        }
    }
}

/// A C string argument as `&str`.
///
/// # Safety
///
/// `ptr` is `NULL` or points to a NUL-terminated string that stays valid
/// and unchanged for `'a`.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: not NULL, and NUL-terminated and valid for 'a (contract).
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map_err(|_| {
        Error::new(
            conduit_error_t::CONDUIT_ERROR_INVALID_ARGUMENT,
            format!("{what} is not UTF-8"),
        )
    })
}

/// Writes `value` through an out-pointer, refusing `NULL`.
///
/// # Safety
///
/// `ptr` is `NULL` or valid for a write of a `T` (it need not be
/// initialised).
pub(crate) unsafe fn write_out<T>(ptr: *mut T, value: T, what: &str) -> Result<()> {
    if ptr.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: not NULL and valid for writes (contract); `write` does not
    // read or drop the old contents.
    unsafe { ptr.write(value) };
    Ok(())
}

/// Writes `value` through an optional out-pointer (`NULL`: not wanted).
///
/// # Safety
///
/// As [`write_out`].
pub(crate) unsafe fn write_opt<T>(ptr: *mut T, value: T) {
    if !ptr.is_null() {
        // SAFETY: not NULL and valid for writes (contract).
        unsafe { ptr.write(value) };
    }
}

/// Refuses a `NULL` out-pointer before any work is done, so that a call
/// that would fail on it has no side effect.
pub(crate) fn need<T>(ptr: *const T, what: &str) -> Result<()> {
    if ptr.is_null() {
        Err(Error::null(what))
    } else {
        Ok(())
    }
}

/// A C timeout: `None` for forever (negative), else the duration.
pub(crate) fn timeout(ns: i64) -> Option<Duration> {
    u64::try_from(ns).ok().map(Duration::from_nanos)
}
