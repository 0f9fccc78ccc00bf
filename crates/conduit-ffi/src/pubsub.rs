//! Publish/subscribe: byte services (a Rust `publish_subscribe::<[u8]>()`
//! service, [`conduit_pubsub_open`]) and typed services
//! ([`conduit_pubsub_open_typed`]: a C struct meets a Rust `#[repr(C)]`
//! type, checked by name, size, alignment and fingerprint), so C and
//! Rust ports meet on either.
//!
//! A publisher loans a chunk of its shared-memory pool
//! ([`conduit_publisher_loan`]), the C code writes the payload in place,
//! and [`conduit_loan_send`] delivers it to every subscriber with no
//! copy; [`conduit_subscriber_receive`] hands out a read-only view of the
//! publisher's chunk until [`conduit_sample_release`].
//!
//! Both kinds are the core's run-time typed services
//! (`conduit::pubsub::RawType`): a byte service is one of byte slices
//! (`RawType::of::<u8>()`, slice), a typed one of one value per sample.

use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::Duration;

use conduit::pubsub::{
    LoanError, NoHeader, Overflow, PubSubBuilder, Publisher, PublisherCreateError, RawPayload,
    RawType, ReceiveError, Sample, SampleUninit, SendError, SendOrLoanError, Subscriber,
    SubscriberCreateError,
};
use std::ffi::{c_char, c_void};

use crate::error::{Error, Result, conduit_error_t, conduit_error_t as E, guard, service_error};
use crate::handle::{Object, handle_type, insert, lock};
use crate::node::conduit_node_t;
use crate::{Mode, need, str_arg, timeout, write_opt, write_out};

/// An open publish/subscribe service of byte payloads; made by
/// [`conduit_pubsub_open`], freed by [`conduit_pubsub_destroy`].
///
/// A plain 64-bit id: copy it freely. The id 0 is never valid, so a
/// zero-initialised handle is safe to pass (the call fails with
/// `CONDUIT_ERROR_INVALID_HANDLE`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct conduit_pubsub_t {
    /// The id; 0 is never valid.
    pub id: u64,
}
handle_type!(conduit_pubsub_t, PubSubService, "publish/subscribe service");
/// A publisher; made by [`conduit_publisher_create`], freed by
/// [`conduit_publisher_destroy`].
///
/// A plain 64-bit id: copy it freely. The id 0 is never valid, so a
/// zero-initialised handle is safe to pass (the call fails with
/// `CONDUIT_ERROR_INVALID_HANDLE`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct conduit_publisher_t {
    /// The id; 0 is never valid.
    pub id: u64,
}
handle_type!(conduit_publisher_t, Publisher, "publisher");
/// A subscriber; made by [`conduit_subscriber_create`], freed by
/// [`conduit_subscriber_destroy`].
///
/// A plain 64-bit id: copy it freely. The id 0 is never valid, so a
/// zero-initialised handle is safe to pass (the call fails with
/// `CONDUIT_ERROR_INVALID_HANDLE`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct conduit_subscriber_t {
    /// The id; 0 is never valid.
    pub id: u64,
}
handle_type!(conduit_subscriber_t, Subscriber, "subscriber");

/// `overflow` of [`conduit_pubsub_options_t`]: the library default
/// (drop oldest); not checked when opening.
pub const CONDUIT_OVERFLOW_DEFAULT: u32 = 0;
/// A full subscriber queue loses its oldest sample.
pub const CONDUIT_OVERFLOW_DROP_OLDEST: u32 = 1;
/// A send waits for room, up to the publisher's block timeout.
pub const CONDUIT_OVERFLOW_BLOCK: u32 = 2;
/// A send to a full queue fails with `CONDUIT_ERROR_QUEUE_FULL`.
pub const CONDUIT_OVERFLOW_FAIL: u32 = 3;

/// The quality of service of a publish/subscribe service. Every field 0
/// means "the library default" when creating and "not checked" when
/// opening, so a zero-initialised struct (`= {0}`) asks for nothing.
/// When opening, a non-zero limit asks for at least that value and a
/// non-zero `overflow` for exactly that policy.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct conduit_pubsub_options_t {
    /// Most publishers at once (1..=64; default 2).
    pub max_publishers: usize,
    /// Most subscribers at once (1..=64; default 8).
    pub max_subscribers: usize,
    /// Samples a subscriber's queue holds per publisher (default 4).
    pub subscriber_buffer: usize,
    /// Samples a publisher keeps for late joiners (default 0; 0 cannot be
    /// asked for explicitly, it is the default).
    pub history: usize,
    /// Samples a publisher may have on loan at once (default 2).
    pub max_loans: usize,
    /// Samples a subscriber may hold at once (default 2).
    pub max_borrowed: usize,
    /// One of the `CONDUIT_OVERFLOW_*` constants.
    pub overflow: u32,
}

/// Options of [`conduit_publisher_create`]; 0 in a field means the
/// default.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct conduit_publisher_options_t {
    /// The longest payload this publisher sends, in bytes (default 64).
    /// Its chunks are this large. Ignored for typed services
    /// ([`conduit_pubsub_open_typed`]): their payload is the type's size.
    pub max_len: usize,
    /// With `CONDUIT_OVERFLOW_BLOCK`: how long a send waits for room, in
    /// nanoseconds (default 1 s).
    pub block_timeout_ns: u64,
}

/// A loaned chunk: write up to `len` bytes at `data`, then
/// [`conduit_loan_send`] or [`conduit_loan_release`] it.
///
/// `data` stays valid until the loan is sent or released, or its
/// publisher destroyed (which releases every loan). A copy of a loan
/// that was sent or released is refused with
/// `CONDUIT_ERROR_INVALID_HANDLE`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct conduit_loan_t {
    /// The publisher that lent it.
    pub publisher: conduit_publisher_t,
    /// Which of its loans (0 is never valid).
    pub key: u64,
    /// The payload memory (in shared memory, aligned to 8 bytes, and to
    /// the type's alignment on a typed service).
    pub data: *mut c_void,
    /// Its length in bytes, as loaned.
    pub len: usize,
}

/// A received sample: a read-only view of `len` bytes at `data` in the
/// publisher's shared memory; give it back with
/// [`conduit_sample_release`].
///
/// `data` stays valid until the sample is released or its subscriber
/// destroyed (which releases every sample).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct conduit_sample_t {
    /// The subscriber that holds it.
    pub subscriber: conduit_subscriber_t,
    /// Which of its samples (0 is never valid).
    pub key: u64,
    /// The payload (read-only memory: writing it crashes the process),
    /// aligned to 8 bytes, and to the type's alignment on a typed service
    /// (so it may be read in place as the C struct).
    pub data: *const c_void,
    /// Its length in bytes.
    pub len: usize,
    /// The publisher's sequence number of the sample (1, 2, ...).
    pub sequence: u64,
    /// The id of the publisher that sent it.
    pub publisher_id: u64,
}

/// A publisher and its outstanding loans.
pub(crate) struct PublisherPort {
    /// Declared first: dropped before the publisher they borrow (and
    /// `Drop` clears them explicitly as well).
    loans: Vec<(u64, SampleUninit<'static, RawPayload, NoHeader>)>,
    next_key: u64,
    /// A leaked `Box`, freed by `Drop` after every loan is gone.
    publisher: NonNull<Publisher<RawPayload>>,
}

// SAFETY: the port owns its publisher and the loans that borrow it, and
// moves between threads only as a whole, behind the handle's mutex, so
// no two threads touch the publisher's (non-`Sync`) state at once. The
// loans' pointers point into the publisher's shared mapping, which is
// valid in every thread of the process.
unsafe impl Send for PublisherPort {}

impl PublisherPort {
    fn new(publisher: Publisher<RawPayload>) -> PublisherPort {
        PublisherPort {
            loans: Vec::new(),
            next_key: 1,
            publisher: NonNull::from(Box::leak(Box::new(publisher))),
        }
    }

    fn publisher(&self) -> &'static Publisher<RawPayload> {
        // SAFETY: the box is freed only in `Drop`, after every loan (the
        // only holders of this `'static` borrow outside a call) is
        // dropped; the reference never leaves the port otherwise.
        unsafe { self.publisher.as_ref() }
    }
}

impl Drop for PublisherPort {
    fn drop(&mut self) {
        self.loans.clear();
        // SAFETY: leaked in `new`; no loan borrows it any more, and it is
        // not used after this.
        drop(unsafe { Box::from_raw(self.publisher.as_ptr()) });
    }
}

/// A subscriber and the samples the C side holds.
pub(crate) struct SubscriberPort {
    /// Declared first: dropped before the subscriber they borrow.
    samples: Vec<(u64, Sample<'static, RawPayload>)>,
    next_key: u64,
    /// A leaked `Box`, freed by `Drop` after every sample is gone.
    subscriber: NonNull<Subscriber<RawPayload>>,
}

// SAFETY: as for `PublisherPort`: the subscriber and the samples that
// borrow it move and are used together, behind the handle's mutex.
unsafe impl Send for SubscriberPort {}

impl SubscriberPort {
    fn new(subscriber: Subscriber<RawPayload>) -> SubscriberPort {
        SubscriberPort {
            samples: Vec::new(),
            next_key: 1,
            subscriber: NonNull::from(Box::leak(Box::new(subscriber))),
        }
    }

    fn subscriber(&self) -> &'static Subscriber<RawPayload> {
        // SAFETY: as in `PublisherPort::publisher`.
        unsafe { self.subscriber.as_ref() }
    }
}

impl Drop for SubscriberPort {
    fn drop(&mut self) {
        self.samples.clear();
        // SAFETY: leaked in `new`; no sample borrows it any more.
        drop(unsafe { Box::from_raw(self.subscriber.as_ptr()) });
    }
}

fn loan_error(e: &LoanError) -> Error {
    let code = match e {
        LoanError::ExceedsMaxLoans(_) => E::CONDUIT_ERROR_EXCEEDS_MAX_LOANS,
        LoanError::OutOfChunks => E::CONDUIT_ERROR_OUT_OF_CHUNKS,
        LoanError::SliceTooLong { .. } => E::CONDUIT_ERROR_TOO_LONG,
        LoanError::WrongLength { .. } => E::CONDUIT_ERROR_INVALID_ARGUMENT,
        _ => E::CONDUIT_ERROR_INTERNAL,
    };
    Error::from_std(code, e)
}

fn send_error(e: &SendError) -> Error {
    let code = match e {
        SendError::QueueFull => E::CONDUIT_ERROR_QUEUE_FULL,
        SendError::Timeout(_) => E::CONDUIT_ERROR_TIMEOUT,
        _ => E::CONDUIT_ERROR_INTERNAL,
    };
    Error::from_std(code, e)
}

fn receive_error(e: &ReceiveError) -> Error {
    let code = match e {
        ReceiveError::ExceedsMaxBorrowed(_) => E::CONDUIT_ERROR_EXCEEDS_MAX_BORROWED,
        ReceiveError::Timeout(_) => E::CONDUIT_ERROR_TIMEOUT,
        ReceiveError::Corrupted { .. } => E::CONDUIT_ERROR_CORRUPTED,
        _ => E::CONDUIT_ERROR_INTERNAL,
    };
    Error::from_std(code, e)
}

/// Opens the publish/subscribe service `name` of byte payloads with
/// `mode` (`CONDUIT_OPEN_OR_CREATE`, `CONDUIT_CREATE` or `CONDUIT_OPEN`)
/// and the QoS in `options` (`NULL`: defaults), and writes its handle to
/// `service_out`.
///
/// It is the service a Rust program opens with
/// `node.service(name).publish_subscribe::<[u8]>()`. A service of
/// another payload type gives `CONDUIT_ERROR_INCOMPATIBLE`.
///
/// # Safety
///
/// `name` is `NULL` or a NUL-terminated string; `options` is `NULL` or
/// readable; `service_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_pubsub_open(
    node: conduit_node_t,
    name: *const c_char,
    options: *const conduit_pubsub_options_t,
    mode: u32,
    service_out: *mut conduit_pubsub_t,
) -> conduit_error_t {
    guard(|| {
        // SAFETY: forwarded contract.
        unsafe {
            open_service(node, name, options, mode, service_out, |b| {
                b.publish_subscribe_raw_slice(RawType::of::<u8>())
            })
        }
    })
}

/// A payload type as C describes it, for [`conduit_pubsub_open_typed`]:
/// what a Rust type's `ShmSafe::LAYOUT` says of it.
///
/// For a Rust `#[repr(C)] #[derive(ShmSafe)]` struct, `name` is its name
/// as written in its definition (`"Pose"`), `size` and `align` are
/// `sizeof` and `_Alignof` of the C struct (equal to the Rust ones when
/// the fields match), and `fingerprint` is the Rust type's
/// `T::LAYOUT.fingerprint`: it folds in every field's name, offset and
/// type, so C cannot derive it from the struct; take it from the Rust
/// side (print it, or read it from `conduit info` once a Rust port has
/// opened the service) and keep it as a constant next to the struct. A
/// field changed on one side only then fails the open instead of
/// misreading data. For a Rust type whose `ShmSafe` impl is hand-written
/// with `TypeLayout::leaf(name, size, align)`,
/// [`conduit_type_leaf_fingerprint`] computes it.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct conduit_type_t {
    /// The type's name: NUL-terminated UTF-8, at most 128 bytes.
    pub name: *const c_char,
    /// Its size in bytes (`sizeof`): a multiple of `align`.
    pub size: usize,
    /// Its alignment (`_Alignof`): a power of two, at most 4096.
    pub align: usize,
    /// Its layout fingerprint.
    pub fingerprint: u64,
}

/// Reads a C type description.
///
/// # Safety
///
/// `payload` is `NULL` or readable, its `name` `NULL` or NUL-terminated.
unsafe fn raw_type(payload: *const conduit_type_t) -> Result<RawType> {
    need(payload, "payload")?;
    // SAFETY: not NULL, readable (contract); plain data.
    let t = unsafe { payload.read() };
    // SAFETY: NULL or NUL-terminated (contract).
    let name = unsafe { str_arg(t.name, "payload->name") }?;
    Ok(RawType {
        name: name.to_owned(),
        size: t.size,
        align: t.align,
        fingerprint: t.fingerprint,
    })
}

/// Opens the publish/subscribe service `name` whose payload is one value
/// of the type `payload` describes, with `mode`, the QoS in `options`
/// (`NULL`: defaults), and writes its handle to `service_out`.
///
/// It is the service a Rust program opens with
/// `node.service(name).publish_subscribe::<T>()` for a Rust type `T` of
/// that name, size, alignment and fingerprint (see [`conduit_type_t`]).
/// A service of another type (any of the four differs, or a byte
/// service) gives `CONDUIT_ERROR_INCOMPATIBLE`, and
/// `conduit_last_error_detail` names both types; an invalid description
/// (alignment not a power of two, size not a multiple of it, name too
/// long) gives `CONDUIT_ERROR_INVALID_ARGUMENT`.
///
/// Loans of its publishers are exactly `payload->size` bytes, aligned to
/// `payload->align` (and to 8); samples are that long.
///
/// # Safety
///
/// `name` is `NULL` or a NUL-terminated string; `payload` is `NULL` or
/// readable with a `name` that is `NULL` or NUL-terminated; `options` is
/// `NULL` or readable; `service_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_pubsub_open_typed(
    node: conduit_node_t,
    name: *const c_char,
    payload: *const conduit_type_t,
    options: *const conduit_pubsub_options_t,
    mode: u32,
    service_out: *mut conduit_pubsub_t,
) -> conduit_error_t {
    guard(|| {
        // SAFETY: forwarded contract.
        let payload = unsafe { raw_type(payload) }?;
        // SAFETY: forwarded contract.
        unsafe {
            open_service(node, name, options, mode, service_out, |b| {
                b.publish_subscribe_raw(payload)
            })
        }
    })
}

/// Writes to `fingerprint_out` the fingerprint a Rust type gets from
/// `TypeLayout::leaf(name, size, align)` (integers, floats, and
/// hand-written `ShmSafe` impls that use it). A `#[derive(ShmSafe)]`
/// struct's fingerprint is another (it covers its fields): see
/// [`conduit_type_t`].
///
/// # Safety
///
/// `name` is `NULL` or a NUL-terminated string; `fingerprint_out` is
/// `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_type_leaf_fingerprint(
    name: *const c_char,
    size: usize,
    align: usize,
    fingerprint_out: *mut u64,
) -> conduit_error_t {
    guard(|| {
        // SAFETY: NULL or NUL-terminated (contract).
        let name = unsafe { str_arg(name, "name") }?;
        let fingerprint = conduit::pubsub::leaf_fingerprint(name, size, align);
        // SAFETY: NULL or writable (contract).
        unsafe { write_out(fingerprint_out, fingerprint, "fingerprint_out") }
    })
}

/// The common part of the `conduit_pubsub_open*` calls: `kind` picks
/// the payload.
///
/// # Safety
///
/// As [`conduit_pubsub_open`].
unsafe fn open_service(
    node: conduit_node_t,
    name: *const c_char,
    options: *const conduit_pubsub_options_t,
    mode: u32,
    service_out: *mut conduit_pubsub_t,
    kind: impl FnOnce(conduit::service::ServiceBuilder) -> PubSubBuilder<RawPayload, NoHeader>,
) -> Result<()> {
    need(service_out, "service_out")?;
    let mode = Mode::from_c(mode)?;
    // SAFETY: NULL or NUL-terminated (contract).
    let name = unsafe { str_arg(name, "name") }?;
    let options = if options.is_null() {
        conduit_pubsub_options_t::default()
    } else {
        // SAFETY: not NULL, readable (contract); plain data.
        unsafe { options.read() }
    };
    let overflow = match options.overflow {
        CONDUIT_OVERFLOW_DEFAULT => None,
        CONDUIT_OVERFLOW_DROP_OLDEST => Some(Overflow::DropOldest),
        CONDUIT_OVERFLOW_BLOCK => Some(Overflow::Block),
        CONDUIT_OVERFLOW_FAIL => Some(Overflow::Fail),
        other => {
            return Err(Error::new(
                E::CONDUIT_ERROR_INVALID_ARGUMENT,
                format!("unknown overflow policy {other}"),
            ));
        }
    };
    let object = node.object()?;
    let Object::Node(n) = &*object else {
        unreachable!("checked by the handle type")
    };
    let mut builder = kind(n.service(name));
    crate::apply_options!(
        builder,
        options;
        max_publishers,
        max_subscribers,
        subscriber_buffer,
        history,
        max_loans,
        max_borrowed
    );
    if let Some(overflow) = overflow {
        builder = builder.overflow(overflow);
    }
    let service = match mode {
        Mode::OpenOrCreate => builder.open_or_create(),
        Mode::Create => builder.create(),
        Mode::Open => builder.open(),
    }
    .map_err(|e| service_error(&e))?;
    let id = insert(Object::PubSubService(service));
    // SAFETY: checked non-NULL; writable (contract).
    unsafe { write_out(service_out, conduit_pubsub_t { id }, "service_out") }
}

/// Writes the QoS in force in the service (every field set) to
/// `options_out`.
///
/// # Safety
///
/// `options_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_pubsub_options(
    service: conduit_pubsub_t,
    options_out: *mut conduit_pubsub_options_t,
) -> conduit_error_t {
    guard(|| {
        let object = service.object()?;
        let Object::PubSubService(s) = &*object else {
            unreachable!("checked by the handle type")
        };
        let qos = s.qos();
        let options = conduit_pubsub_options_t {
            max_publishers: qos.max_publishers,
            max_subscribers: qos.max_subscribers,
            subscriber_buffer: qos.subscriber_buffer,
            history: qos.history,
            max_loans: qos.max_loans,
            max_borrowed: qos.max_borrowed,
            overflow: match qos.overflow {
                Overflow::DropOldest => CONDUIT_OVERFLOW_DROP_OLDEST,
                Overflow::Block => CONDUIT_OVERFLOW_BLOCK,
                Overflow::Fail => CONDUIT_OVERFLOW_FAIL,
            },
        };
        // SAFETY: NULL or writable (contract).
        unsafe { write_out(options_out, options, "options_out") }
    })
}

/// Destroys a service handle. Its ports keep working; the service's
/// shared memory goes when nobody uses it any more.
#[unsafe(no_mangle)]
pub extern "C" fn conduit_pubsub_destroy(service: conduit_pubsub_t) -> conduit_error_t {
    guard(|| service.take().map(drop))
}

/// Creates a publisher on `service` with `options` (`NULL`: defaults)
/// and writes its handle to `publisher_out`.
///
/// # Safety
///
/// `options` is `NULL` or readable; `publisher_out` is `NULL` or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_publisher_create(
    service: conduit_pubsub_t,
    options: *const conduit_publisher_options_t,
    publisher_out: *mut conduit_publisher_t,
) -> conduit_error_t {
    guard(|| {
        need(publisher_out, "publisher_out")?;
        let options = if options.is_null() {
            conduit_publisher_options_t::default()
        } else {
            // SAFETY: not NULL, readable (contract); plain data.
            unsafe { options.read() }
        };
        let object = service.object()?;
        let Object::PubSubService(s) = &*object else {
            unreachable!("checked by the handle type")
        };
        let mut builder = s.publisher();
        if options.max_len != 0 {
            builder = builder.max_slice_len(options.max_len);
        }
        if options.block_timeout_ns != 0 {
            builder = builder.block_timeout(Duration::from_nanos(options.block_timeout_ns));
        }
        let publisher = builder.create().map_err(|e| {
            let code = match e {
                PublisherCreateError::ExceedsMaxPublishers { .. } => {
                    E::CONDUIT_ERROR_EXCEEDS_MAX_PORTS
                }
                PublisherCreateError::SliceTooLarge(_) => E::CONDUIT_ERROR_INVALID_ARGUMENT,
                _ => E::CONDUIT_ERROR_OS,
            };
            Error::from_std(code, &e)
        })?;
        let id = insert(Object::Publisher(Mutex::new(PublisherPort::new(publisher))));
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(publisher_out, conduit_publisher_t { id }, "publisher_out") }
    })
}

/// Destroys a publisher: releases its outstanding loans, leaves the
/// service and removes its data segment. Samples it sent stay readable
/// by subscribers that hold or have queued them.
#[unsafe(no_mangle)]
pub extern "C" fn conduit_publisher_destroy(publisher: conduit_publisher_t) -> conduit_error_t {
    guard(|| publisher.take().map(drop))
}

fn with_publisher<R>(
    publisher: conduit_publisher_t,
    f: impl FnOnce(&mut PublisherPort) -> Result<R>,
) -> Result<R> {
    let object = publisher.object()?;
    let Object::Publisher(port) = &*object else {
        unreachable!("checked by the handle type")
    };
    f(&mut *lock(port, &object)?)
}

fn with_subscriber<R>(
    subscriber: conduit_subscriber_t,
    f: impl FnOnce(&mut SubscriberPort) -> Result<R>,
) -> Result<R> {
    let object = subscriber.object()?;
    let Object::Subscriber(port) = &*object else {
        unreachable!("checked by the handle type")
    };
    f(&mut *lock(port, &object)?)
}

/// Writes the publisher's port id (the `publisher_id` its subscribers
/// see) to `id_out`.
///
/// # Safety
///
/// `id_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_publisher_id(
    publisher: conduit_publisher_t,
    id_out: *mut u64,
) -> conduit_error_t {
    guard(|| {
        let id = with_publisher(publisher, |p| Ok(p.publisher().id().0))?;
        // SAFETY: NULL or writable (contract).
        unsafe { write_out(id_out, id, "id_out") }
    })
}

/// Connects subscribers that joined since the last send (and delivers
/// the history to them) without sending.
#[unsafe(no_mangle)]
pub extern "C" fn conduit_publisher_update_connections(
    publisher: conduit_publisher_t,
) -> conduit_error_t {
    guard(|| {
        with_publisher(publisher, |p| {
            p.publisher().update_connections();
            Ok(())
        })
    })
}

/// Loans a chunk for a payload of `len` bytes (at most the publisher's
/// `max_len`; on a typed service exactly the type's size, else
/// `CONDUIT_ERROR_INVALID_ARGUMENT`) and writes the loan to `loan_out`:
/// write the payload at `loan_out->data`, then send or release it. The
/// memory is not cleared.
///
/// # Safety
///
/// `loan_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_publisher_loan(
    publisher: conduit_publisher_t,
    len: usize,
    loan_out: *mut conduit_loan_t,
) -> conduit_error_t {
    guard(|| {
        need(loan_out, "loan_out")?;
        let loan = with_publisher(publisher, |p| {
            let mut sample = p.publisher().loan_uninit(len).map_err(|e| loan_error(&e))?;
            let data = sample.payload_mut().as_mut_ptr().cast::<c_void>();
            let key = p.next_key;
            p.next_key += 1;
            p.loans.push((key, sample));
            Ok(conduit_loan_t {
                publisher,
                key,
                data,
                len,
            })
        })?;
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(loan_out, loan, "loan_out") }
    })
}

/// Takes the loan `loan` describes out of its publisher.
///
/// # Safety
///
/// `loan` is `NULL` or points to a readable `conduit_loan_t`.
unsafe fn take_loan<R>(
    loan: *mut conduit_loan_t,
    f: impl FnOnce(SampleUninit<'static, RawPayload, NoHeader>) -> Result<R>,
) -> Result<R> {
    need(loan, "loan")?;
    // SAFETY: not NULL, readable (contract); plain data.
    let l = unsafe { loan.read() };
    let result = with_publisher(l.publisher, |p| {
        let i = p
            .loans
            .iter()
            .position(|(key, _)| *key == l.key)
            .ok_or_else(|| {
                Error::new(
                    E::CONDUIT_ERROR_INVALID_HANDLE,
                    format!("loan {} of this publisher was sent or released", l.key),
                )
            })?;
        let (_, sample) = p.loans.swap_remove(i);
        f(sample)
    });
    if result.is_ok() {
        // SAFETY: not NULL (checked); writable (contract). Clearing the
        // caller's copy makes a second use an invalid-handle error.
        unsafe {
            (*loan).key = 0;
            (*loan).data = std::ptr::null_mut();
        }
    }
    result
}

/// Sends the loaned payload (its first `loan->len` bytes) to every
/// connected subscriber, writes how many it reached to `delivered_out`
/// (may be `NULL`), and clears `*loan`. On error the chunk goes back to
/// the pool (the loan is used up either way, unless the loan itself was
/// invalid).
///
/// # Safety
///
/// `loan` is `NULL` or points to a readable and writable
/// `conduit_loan_t`; `delivered_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_loan_send(
    loan: *mut conduit_loan_t,
    delivered_out: *mut usize,
) -> conduit_error_t {
    guard(|| {
        let send = |sample: SampleUninit<'static, RawPayload, NoHeader>| {
            // SAFETY: the payload lies in the publisher's shared mapping,
            // whose bytes are always initialised memory (the kernel
            // zero-fills a new segment; later they hold earlier payloads);
            // the C side wrote what it sends.
            let sample = unsafe { sample.assume_init() };
            Ok(sample.send())
        };
        // SAFETY: forwarded contract.
        let sent = unsafe { take_loan(loan, send) }?;
        let reached = sent.map_err(|e| send_error(&e))?;
        // SAFETY: NULL or writable (contract).
        unsafe { write_opt(delivered_out, reached) };
        Ok(())
    })
}

/// Gives a loaned chunk back unsent and clears `*loan`.
///
/// # Safety
///
/// `loan` is `NULL` or points to a readable and writable
/// `conduit_loan_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_loan_release(loan: *mut conduit_loan_t) -> conduit_error_t {
    // SAFETY: forwarded contract.
    let release = |sample: SampleUninit<'static, RawPayload, NoHeader>| {
        drop(sample);
        Ok(())
    };
    // SAFETY: forwarded contract.
    guard(|| unsafe { take_loan(loan, release) })
}

/// Copies `len` bytes from `data` into a loan and sends it (loan, write
/// and send in one call; on a typed service `len` is the type's size);
/// writes the number of subscribers reached to `delivered_out` (may be
/// `NULL`).
///
/// # Safety
///
/// `data` is `NULL` (only with `len` 0) or readable for `len` bytes;
/// `delivered_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_publisher_send_copy(
    publisher: conduit_publisher_t,
    data: *const c_void,
    len: usize,
    delivered_out: *mut usize,
) -> conduit_error_t {
    guard(|| {
        let bytes: &[u8] = if len == 0 {
            &[]
        } else {
            need(data, "data")?;
            // SAFETY: not NULL, readable for `len` bytes (contract).
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }
        };
        let reached = with_publisher(publisher, |p| {
            p.publisher().send_copy(bytes).map_err(|e| match e {
                SendOrLoanError::Loan(e) => loan_error(&e),
                SendOrLoanError::Send(e) => send_error(&e),
                e => Error::from_std(E::CONDUIT_ERROR_INTERNAL, &e),
            })
        })?;
        // SAFETY: NULL or writable (contract).
        unsafe { write_opt(delivered_out, reached) };
        Ok(())
    })
}

/// Creates a subscriber on `service` and writes its handle to
/// `subscriber_out`. Publishers connect it at their next send.
///
/// # Safety
///
/// `subscriber_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_subscriber_create(
    service: conduit_pubsub_t,
    subscriber_out: *mut conduit_subscriber_t,
) -> conduit_error_t {
    guard(|| {
        need(subscriber_out, "subscriber_out")?;
        let object = service.object()?;
        let Object::PubSubService(s) = &*object else {
            unreachable!("checked by the handle type")
        };
        let subscriber = s.subscriber().create().map_err(|e| {
            let code = match e {
                SubscriberCreateError::ExceedsMaxSubscribers { .. } => {
                    E::CONDUIT_ERROR_EXCEEDS_MAX_PORTS
                }
                _ => E::CONDUIT_ERROR_OS,
            };
            Error::from_std(code, &e)
        })?;
        let id = insert(Object::Subscriber(Mutex::new(SubscriberPort::new(
            subscriber,
        ))));
        // SAFETY: checked non-NULL; writable (contract).
        unsafe {
            write_out(
                subscriber_out,
                conduit_subscriber_t { id },
                "subscriber_out",
            )
        }
    })
}

/// Destroys a subscriber: releases the samples it holds and leaves the
/// service.
#[unsafe(no_mangle)]
pub extern "C" fn conduit_subscriber_destroy(subscriber: conduit_subscriber_t) -> conduit_error_t {
    guard(|| subscriber.take().map(drop))
}

/// Receives the next sample into `sample_out`, waiting up to `timeout_ns`
/// nanoseconds (0: poll once; negative, `CONDUIT_WAIT_FOREVER`: until one
/// arrives). Nothing in time: `CONDUIT_ERROR_TIMEOUT`. The wait spins
/// briefly, then sleeps on a futex.
///
/// With a descriptor from [`conduit_subscriber_fd`]: after it polls
/// readable, receive with timeout 0 until `CONDUIT_ERROR_TIMEOUT`, which
/// re-arms it.
///
/// A waiting receive holds the subscriber: other calls on it from other
/// threads (a release included) wait until the receive returns.
///
/// # Safety
///
/// `sample_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_subscriber_receive(
    subscriber: conduit_subscriber_t,
    timeout_ns: i64,
    sample_out: *mut conduit_sample_t,
) -> conduit_error_t {
    guard(|| {
        need(sample_out, "sample_out")?;
        let sample = with_subscriber(subscriber, |s| {
            let sub = s.subscriber();
            let received = match timeout(timeout_ns) {
                Some(Duration::ZERO) => sub.try_receive(),
                Some(t) => sub.receive_timeout(t).map(Some),
                None => sub.receive().map(Some),
            }
            .map_err(|e| receive_error(&e))?;
            let Some(sample) = received else {
                return Err(Error::new(E::CONDUIT_ERROR_TIMEOUT, "no sample waiting"));
            };
            let key = s.next_key;
            s.next_key += 1;
            let out = conduit_sample_t {
                subscriber,
                key,
                data: sample.as_ptr().cast::<c_void>(),
                len: sample.len(),
                sequence: sample.sequence(),
                publisher_id: sample.publisher_id().0,
            };
            s.samples.push((key, sample));
            Ok(out)
        })?;
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(sample_out, sample, "sample_out") }
    })
}

/// Gives a received sample back to its publisher and clears `*sample`.
///
/// # Safety
///
/// `sample` is `NULL` or points to a readable and writable
/// `conduit_sample_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_sample_release(sample: *mut conduit_sample_t) -> conduit_error_t {
    guard(|| {
        need(sample, "sample")?;
        // SAFETY: not NULL, readable (contract); plain data.
        let s = unsafe { sample.read() };
        with_subscriber(s.subscriber, |port| {
            let i = port
                .samples
                .iter()
                .position(|(key, _)| *key == s.key)
                .ok_or_else(|| {
                    Error::new(
                        E::CONDUIT_ERROR_INVALID_HANDLE,
                        format!("sample {} of this subscriber was released", s.key),
                    )
                })?;
            // Dropped here, under the port's lock: it updates the
            // subscriber's state.
            drop(port.samples.swap_remove(i));
            Ok(())
        })?;
        // SAFETY: not NULL (checked); writable (contract).
        unsafe {
            (*sample).key = 0;
            (*sample).data = std::ptr::null();
        }
        Ok(())
    })
}

/// Writes the subscriber's wake-up descriptor to `fd_out`: it polls
/// readable (`poll`, `epoll`, `select`) when a sample may be waiting;
/// then receive with timeout 0 until `CONDUIT_ERROR_TIMEOUT`. The first
/// report may be spurious. The descriptor belongs to the subscriber:
/// do not close it; it is valid until the subscriber is destroyed.
///
/// # Safety
///
/// `fd_out` is `NULL` or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn conduit_subscriber_fd(
    subscriber: conduit_subscriber_t,
    fd_out: *mut i32,
) -> conduit_error_t {
    guard(|| {
        need(fd_out, "fd_out")?;
        let fd = with_subscriber(subscriber, |s| {
            use std::os::fd::AsRawFd;
            s.subscriber()
                .wake_fd()
                .map(|fd| fd.as_raw_fd())
                .map_err(|e| Error::from_std(os_code(e), &e))
        })?;
        // SAFETY: checked non-NULL; writable (contract).
        unsafe { write_out(fd_out, fd, "fd_out") }
    })
}

/// The code of a bare OS error.
pub(crate) fn os_code(e: conduit::Errno) -> E {
    if e == conduit::Errno::MFILE || e == conduit::Errno::NFILE || e == conduit::Errno::NOMEM {
        E::CONDUIT_ERROR_RESOURCE_EXHAUSTED
    } else {
        E::CONDUIT_ERROR_OS
    }
}
