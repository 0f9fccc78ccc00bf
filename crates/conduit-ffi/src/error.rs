//! Error codes, their messages, the thread-local detail of the last
//! failure, and the guard that keeps panics on the Rust side.

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What every function of the C API returns: `CONDUIT_OK` (0) or why it
/// failed. [`conduit_error_message`] names a code;
/// [`conduit_last_error_detail`] says more about the last failure on the
/// calling thread.
///
/// New codes may be added: C code should handle unknown values.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum conduit_error_t {
    /// Success.
    CONDUIT_OK = 0,
    /// A pointer the function needs was `NULL`.
    CONDUIT_ERROR_NULL_POINTER = 1,
    /// A handle is zero, was destroyed, or is of another kind.
    CONDUIT_ERROR_INVALID_HANDLE = 2,
    /// An argument is out of range: a name that is not UTF-8 or not a
    /// valid service, node or domain name, an unknown mode, a QoS value
    /// the service does not accept.
    CONDUIT_ERROR_INVALID_ARGUMENT = 3,
    /// `CONDUIT_CREATE`: the service exists already.
    CONDUIT_ERROR_ALREADY_EXISTS = 4,
    /// `CONDUIT_OPEN`: no such service.
    CONDUIT_ERROR_NOT_FOUND = 5,
    /// The service carries another payload type, or its configuration does
    /// not satisfy what the opener asked for.
    CONDUIT_ERROR_INCOMPATIBLE = 6,
    /// Every slot of that port kind (publishers, subscribers, notifiers,
    /// listeners) is taken by live processes.
    CONDUIT_ERROR_EXCEEDS_MAX_PORTS = 7,
    /// The publisher has its maximum number of samples on loan.
    CONDUIT_ERROR_EXCEEDS_MAX_LOANS = 8,
    /// Every chunk of the publisher's pool is held by subscribers.
    CONDUIT_ERROR_OUT_OF_CHUNKS = 9,
    /// The payload is longer than the publisher's maximum length.
    CONDUIT_ERROR_TOO_LONG = 10,
    /// Overflow policy "fail": a subscriber's queue is full.
    CONDUIT_ERROR_QUEUE_FULL = 11,
    /// Nothing arrived within the timeout (a timeout of 0 polls once), or
    /// a blocked send waited for room in vain.
    CONDUIT_ERROR_TIMEOUT = 12,
    /// The subscriber holds its maximum number of samples: release one.
    CONDUIT_ERROR_EXCEEDS_MAX_BORROWED = 13,
    /// Shared state written by another process is inconsistent.
    CONDUIT_ERROR_CORRUPTED = 14,
    /// The segment belongs to another user or group.
    CONDUIT_ERROR_PERMISSION_DENIED = 15,
    /// A resource ran out: space in /dev/shm, file descriptors, mappings.
    CONDUIT_ERROR_RESOURCE_EXHAUSTED = 16,
    /// Another system call failed (the detail names it and its errno).
    CONDUIT_ERROR_OS = 17,
    /// The event id is larger than the service's maximum.
    CONDUIT_ERROR_INVALID_EVENT_ID = 18,
    /// A bug inside conduit: a Rust panic, caught at the boundary. A port
    /// that panicked stays unusable; destroy it.
    CONDUIT_ERROR_INTERNAL = 19,
    /// Request/response: the server(s) ended the response stream; every
    /// response was received.
    CONDUIT_ERROR_END_OF_STREAM = 20,
    /// Request/response: the peer is gone: no server is connected, the
    /// server(s) left or died before ending the stream (or dropped the
    /// request unanswered), or the client no longer waits (or wants no
    /// response).
    CONDUIT_ERROR_DISCONNECTED = 21,
}

use conduit_error_t as E;

impl conduit_error_t {
    /// The static message of this code (NUL-terminated).
    fn message(self) -> &'static std::ffi::CStr {
        match self {
            E::CONDUIT_OK => c"success",
            E::CONDUIT_ERROR_NULL_POINTER => c"a required pointer argument is NULL",
            E::CONDUIT_ERROR_INVALID_HANDLE => {
                c"invalid handle (zero, destroyed, or of another kind)"
            }
            E::CONDUIT_ERROR_INVALID_ARGUMENT => c"invalid argument",
            E::CONDUIT_ERROR_ALREADY_EXISTS => c"the service already exists",
            E::CONDUIT_ERROR_NOT_FOUND => c"the service does not exist",
            E::CONDUIT_ERROR_INCOMPATIBLE => c"the service carries another type or configuration",
            E::CONDUIT_ERROR_EXCEEDS_MAX_PORTS => c"every port slot of the service is taken",
            E::CONDUIT_ERROR_EXCEEDS_MAX_LOANS => {
                c"the publisher has its maximum of samples on loan"
            }
            E::CONDUIT_ERROR_OUT_OF_CHUNKS => c"every chunk of the publisher's pool is in use",
            E::CONDUIT_ERROR_TOO_LONG => c"the payload exceeds the publisher's maximum length",
            E::CONDUIT_ERROR_QUEUE_FULL => c"a subscriber's queue is full",
            E::CONDUIT_ERROR_TIMEOUT => c"timed out",
            E::CONDUIT_ERROR_EXCEEDS_MAX_BORROWED => c"the subscriber holds its maximum of samples",
            E::CONDUIT_ERROR_CORRUPTED => c"corrupted shared state",
            E::CONDUIT_ERROR_PERMISSION_DENIED => c"permission denied",
            E::CONDUIT_ERROR_RESOURCE_EXHAUSTED => {
                c"a resource ran out (/dev/shm space, descriptors, mappings)"
            }
            E::CONDUIT_ERROR_OS => c"a system call failed",
            E::CONDUIT_ERROR_INVALID_EVENT_ID => c"event id exceeds the service's maximum",
            E::CONDUIT_ERROR_INTERNAL => c"internal error (a caught panic)",
            E::CONDUIT_ERROR_END_OF_STREAM => c"end of the response stream",
            E::CONDUIT_ERROR_DISCONNECTED => c"the peer left, died or no longer waits",
        }
    }

    /// Every code, in order (for [`conduit_error_message`]).
    const ALL: [conduit_error_t; 22] = [
        E::CONDUIT_OK,
        E::CONDUIT_ERROR_NULL_POINTER,
        E::CONDUIT_ERROR_INVALID_HANDLE,
        E::CONDUIT_ERROR_INVALID_ARGUMENT,
        E::CONDUIT_ERROR_ALREADY_EXISTS,
        E::CONDUIT_ERROR_NOT_FOUND,
        E::CONDUIT_ERROR_INCOMPATIBLE,
        E::CONDUIT_ERROR_EXCEEDS_MAX_PORTS,
        E::CONDUIT_ERROR_EXCEEDS_MAX_LOANS,
        E::CONDUIT_ERROR_OUT_OF_CHUNKS,
        E::CONDUIT_ERROR_TOO_LONG,
        E::CONDUIT_ERROR_QUEUE_FULL,
        E::CONDUIT_ERROR_TIMEOUT,
        E::CONDUIT_ERROR_EXCEEDS_MAX_BORROWED,
        E::CONDUIT_ERROR_CORRUPTED,
        E::CONDUIT_ERROR_PERMISSION_DENIED,
        E::CONDUIT_ERROR_RESOURCE_EXHAUSTED,
        E::CONDUIT_ERROR_OS,
        E::CONDUIT_ERROR_INVALID_EVENT_ID,
        E::CONDUIT_ERROR_INTERNAL,
        E::CONDUIT_ERROR_END_OF_STREAM,
        E::CONDUIT_ERROR_DISCONNECTED,
    ];
}

/// A failure inside the binding: its code and the detail that
/// [`conduit_last_error_detail`] returns.
#[derive(Debug)]
pub(crate) struct Error {
    pub(crate) code: conduit_error_t,
    pub(crate) detail: String,
}

impl Error {
    pub(crate) fn new(code: conduit_error_t, detail: impl Into<String>) -> Error {
        Error {
            code,
            detail: detail.into(),
        }
    }

    /// An error of a conduit operation: `code`, with the whole chain of
    /// messages (the OS error last) as the detail. A resource or
    /// permission error anywhere in the chain takes precedence over
    /// `code` when `code` is the generic [`E::CONDUIT_ERROR_OS`].
    pub(crate) fn from_std(
        code: conduit_error_t,
        error: &(dyn std::error::Error + 'static),
    ) -> Error {
        let mut detail = error.to_string();
        let mut code = code;
        let mut source = error.source();
        if code == E::CONDUIT_ERROR_OS && error.is::<conduit::shm::ResourceExhausted>() {
            code = E::CONDUIT_ERROR_RESOURCE_EXHAUSTED;
        }
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            if code == E::CONDUIT_ERROR_OS {
                if s.is::<conduit::shm::ResourceExhausted>() {
                    code = E::CONDUIT_ERROR_RESOURCE_EXHAUSTED;
                } else if let Some(errno) = s.downcast_ref::<conduit::Errno>() {
                    if *errno == conduit::Errno::ACCESS || *errno == conduit::Errno::PERM {
                        code = E::CONDUIT_ERROR_PERMISSION_DENIED;
                    }
                }
            }
            source = s.source();
        }
        Error { code, detail }
    }

    pub(crate) fn null(what: &str) -> Error {
        Error::new(E::CONDUIT_ERROR_NULL_POINTER, format!("{what} is NULL"))
    }

    /// Stores the detail for [`conduit_last_error_detail`] and returns the
    /// code.
    fn record(self) -> conduit_error_t {
        // A detail with an interior NUL is cut there.
        let detail = match CString::new(self.detail) {
            Ok(s) => s,
            Err(e) => {
                let n = e.nul_position();
                let mut bytes = e.into_vec();
                bytes.truncate(n);
                CString::new(bytes).unwrap_or_default()
            }
        };
        LAST_ERROR.with(|last| *last.borrow_mut() = detail);
        self.code
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

thread_local! {
    /// The detail of the last failure on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Runs the body of an exported function: a panic becomes
/// [`E::CONDUIT_ERROR_INTERNAL`], an error its code (and the thread's
/// last-error detail), success `CONDUIT_OK`.
pub(crate) fn guard(body: impl FnOnce() -> Result<()>) -> conduit_error_t {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => E::CONDUIT_OK,
        Ok(Err(e)) => e.record(),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with a non-string payload".to_owned());
            Error::new(
                E::CONDUIT_ERROR_INTERNAL,
                format!("panic in conduit: {what}"),
            )
            .record()
        }
    }
}

/// The message of error code `code` (a static, NUL-terminated string;
/// never `NULL`). An unknown code gives `"unknown error code"`.
#[unsafe(no_mangle)]
pub extern "C" fn conduit_error_message(code: i32) -> *const c_char {
    usize::try_from(code)
        .ok()
        .and_then(|i| conduit_error_t::ALL.get(i))
        .map_or(c"unknown error code".as_ptr(), |e| e.message().as_ptr())
}

/// What went wrong in the last call on this thread that failed: the
/// operation, the service or port, and the OS error, as one line
/// (NUL-terminated; `""` if no call failed yet; never `NULL`).
///
/// Successful calls leave it unchanged. The string stays valid until the
/// next failing call on this thread; copy it to keep it.
#[unsafe(no_mangle)]
pub extern "C" fn conduit_last_error_detail() -> *const c_char {
    // The pointer outlives the borrow: the CString's buffer stays in place
    // until the next `record` on this thread replaces it, as documented.
    LAST_ERROR
        .try_with(|last| last.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// The code and detail of a service that could not be created or opened.
pub(crate) fn service_error(e: &conduit::service::ServiceError) -> Error {
    use conduit::service::ServiceError as S;
    let code = match e {
        S::InvalidName { .. } | S::InvalidConfig(_) => E::CONDUIT_ERROR_INVALID_ARGUMENT,
        S::AlreadyExists(_) => E::CONDUIT_ERROR_ALREADY_EXISTS,
        S::NotFound(_) => E::CONDUIT_ERROR_NOT_FOUND,
        S::IncompatibleType { .. } | S::IncompatibleConfig { .. } | S::NameCollision { .. } => {
            E::CONDUIT_ERROR_INCOMPATIBLE
        }
        S::Corrupted { .. } => E::CONDUIT_ERROR_CORRUPTED,
        S::PermissionDenied { .. } => E::CONDUIT_ERROR_PERMISSION_DENIED,
        _ => E::CONDUIT_ERROR_OS,
    };
    Error::from_std(code, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_message_at_its_index() {
        for (i, code) in conduit_error_t::ALL.iter().enumerate() {
            assert_eq!(*code as i32, i as i32);
            assert_eq!(conduit_error_message(i as i32), code.message().as_ptr());
        }
        assert_eq!(
            conduit_error_message(-1),
            c"unknown error code".as_ptr(),
            "negative codes are unknown"
        );
    }

    #[test]
    fn a_panic_becomes_internal_with_its_message() {
        let code = guard(|| panic!("boom"));
        assert_eq!(code, E::CONDUIT_ERROR_INTERNAL);
        // SAFETY: the pointer is valid until the next failing call here.
        let detail = unsafe { std::ffi::CStr::from_ptr(conduit_last_error_detail()) };
        assert_eq!(detail.to_str().unwrap(), "panic in conduit: boom");
    }
}
