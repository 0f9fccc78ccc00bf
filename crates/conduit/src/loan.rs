//! A loaned chunk of a port's pool, zero-copy, in two states:
//! [`LoanUninit`] (payload not written yet) and [`LoanMut`] (written,
//! ready to send). Dropping either gives the chunk back unsent; sending a
//! [`LoanMut`] hands it to the port, and gives it back if the send fails.
//! The payload `P` is a `T: ShmSafe` or a slice `[T]` of the length asked
//! for at the loan ([`Payload`]).
//!
//! Each chunk also carries the lender's user header (`Lend::Header`,
//! zeroed at the loan; [`NoHeader`](crate::service::NoHeader), zero-sized,
//! when the service has none), reached through `header_mut`.
//!
//! One implementation for request/response's ports
//! ([`Client`](crate::reqres::Client) and the responses of an
//! [`ActiveRequest`](crate::reqres::ActiveRequest)); the patterns name it
//! as they like ([`RequestUninit`](crate::reqres::RequestUninit),
//! [`ResponseMut`](crate::reqres::ResponseMut), …). Publish/subscribe's
//! samples predate it and have their own types.

use std::fmt;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use crate::service::Payload;
use crate::shm::ShmSafe;

/// Why a loan failed: the same for every port that loans chunks of its
/// pool (publisher, client, server).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoanError {
    /// The port has `max_loans` chunks on loan already.
    #[error("the port has its maximum of {0} chunks on loan")]
    ExceedsMaxLoans(usize),
    /// A request/response client has `active_requests` requests in flight
    /// (with the loans outstanding); wait for a stream to end, or drop a
    /// pending response whose server has ended it.
    #[error("the client has its maximum of {0} requests in flight")]
    ExceedsActiveRequests(usize),
    /// Every chunk of the pool is in use (held by peers that are slow to
    /// drop them, or that exceed their limits).
    #[error("every chunk of the pool is in use")]
    OutOfChunks,
    /// A slice loan longer than the port's `max_slice_len`.
    #[error("a slice of {len} elements exceeds this port's max_slice_len {max}")]
    SliceTooLong {
        /// Elements asked for.
        len: usize,
        /// The port's limit.
        max: usize,
    },
    /// A port of a service whose payload type is given at run time
    /// ([`RawPayload`](crate::pubsub::RawPayload)) asked for a sample of
    /// `len` bytes, which is not one value of the `size`-byte type (a
    /// one-value service) or a whole number of them (a slice service).
    #[error(
        "a sample of {len} bytes is not {} of the service's {size}-byte payload type",
        if *.slice { "a whole number of values" } else { "one value" }
    )]
    WrongLength {
        /// Bytes asked for.
        len: usize,
        /// The payload (element) type's size.
        size: usize,
        /// Whether the service carries slices.
        slice: bool,
    },
}

/// Why a `send_copy` failed: the loan, or the send (`E`, the port's send
/// error). One type for every port; the patterns name it
/// ([`pubsub::SendOrLoanError`](crate::pubsub::SendOrLoanError),
/// [`reqres::SendOrLoanError`](crate::reqres::SendOrLoanError),
/// [`reqres::ResponseSendOrLoanError`](crate::reqres::ResponseSendOrLoanError))
/// and convert their send error into it with `?`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendOrLoanError<E: std::error::Error + 'static> {
    /// No chunk could be loaned.
    #[error(transparent)]
    Loan(#[from] LoanError),
    /// The send failed.
    #[error(transparent)]
    Send(E),
}

/// `From<$send> for SendOrLoanError<$send>` (a generic `From<E>` would
/// overlap `From<LoanError>`).
macro_rules! send_or_loan_from {
    ($send:ty) => {
        impl From<$send> for $crate::loan::SendOrLoanError<$send> {
            fn from(e: $send) -> Self {
                $crate::loan::SendOrLoanError::Send(e)
            }
        }
    };
}
pub(crate) use send_or_loan_from;

impl From<crate::pool::TakeError> for LoanError {
    fn from(e: crate::pool::TakeError) -> LoanError {
        match e {
            crate::pool::TakeError::ExceedsMaxLoans(max) => LoanError::ExceedsMaxLoans(max),
            crate::pool::TakeError::OutOfChunks => LoanError::OutOfChunks,
        }
    }
}

/// What a loan of payload `P` is taken from: a port (or a request being
/// answered) that gives back and sends its chunks. Sealed: implemented by
/// conduit's ports only.
pub trait Lender<P: Payload + ?Sized>: sealed::Lend<P> {}

pub(crate) mod sealed {
    /// The lender's steps a loan needs.
    pub trait Lend<P: ?Sized> {
        /// The user header every chunk carries.
        type Header: crate::shm::ShmSafe;
        /// What a successful send returns.
        type Sent<'o>
        where
            Self: 'o;
        /// Why a send failed.
        type Error;
        /// A loan of `chunk` ends unsent.
        fn give_back(&self, chunk: u32);
        /// Sends loaned `chunk`, holding `len` elements.
        fn send_chunk(&self, chunk: u32, len: usize) -> Result<Self::Sent<'_>, Self::Error>;
    }
}

/// The loan itself: gives the chunk back when dropped still holding it.
struct Held<'o, O: Lender<P>, P: Payload + ?Sized> {
    owner: &'o O,
    chunk: Option<u32>,
    payload: NonNull<P::Element>,
    header: NonNull<O::Header>,
    /// Elements (1 for a typed payload).
    len: usize,
}

impl<O: Lender<P>, P: Payload + ?Sized> Held<'_, O, P> {
    fn take(&mut self) -> u32 {
        self.chunk
            .take()
            .expect("a loan holds its chunk until sent")
    }
}

impl<O: Lender<P>, P: Payload + ?Sized> Drop for Held<'_, O, P> {
    fn drop(&mut self) {
        if let Some(chunk) = self.chunk {
            self.owner.give_back(chunk);
        }
    }
}

/// A loaned chunk whose payload is not initialised yet. Dropping it gives
/// the chunk back unsent.
pub struct LoanUninit<'o, O: Lender<P>, P: Payload + ?Sized>(Held<'o, O, P>);

/// A loaned chunk with its payload written, ready to
/// [`send`](Self::send). Dropping it gives the chunk back unsent.
pub struct LoanMut<'o, O: Lender<P>, P: Payload + ?Sized>(Held<'o, O, P>);

impl<'o, O: Lender<P>, P: Payload + ?Sized> LoanUninit<'o, O, P> {
    /// A loan of `chunk` of `owner`, whose payload of `len` elements is at
    /// `payload` and whose user header is at `header` (zeroed here).
    ///
    /// # Safety
    ///
    /// `payload` is aligned for `P::Element`, `len` elements fit inside
    /// `chunk` of the owner's writable mapping, `len` is 1 for a typed
    /// payload; `header` is aligned for `O::Header` and one of it fits in
    /// the chunk without overlapping the payload; and no one else reads
    /// or writes them until the loan is sent or given back.
    pub(crate) unsafe fn new(
        owner: &'o O,
        chunk: u32,
        payload: NonNull<P::Element>,
        header: NonNull<O::Header>,
        len: usize,
    ) -> Self {
        // SAFETY: aligned, in our chunk, exclusively ours (the contract
        // above); zero bytes are a valid header (ShmSafe: every bit
        // pattern is).
        unsafe { header.as_ptr().write_bytes(0, 1) };
        LoanUninit(Held {
            owner,
            chunk: Some(chunk),
            payload,
            header,
            len,
        })
    }

    /// The user header (zeroed at the loan).
    pub fn header_mut(&mut self) -> &mut O::Header {
        // SAFETY: aligned, in the chunk, exclusively ours while loaned
        // (the contract of `new`), initialised (zeroed by `new`).
        unsafe { self.0.header.as_mut() }
    }
}

impl<'o, T: ShmSafe, O: Lender<T>> LoanUninit<'o, O, T> {
    /// The payload memory.
    pub fn payload_mut(&mut self) -> &mut MaybeUninit<T> {
        // SAFETY: aligned, in the chunk, exclusively ours while loaned
        // (the contract of `new`).
        unsafe { self.0.payload.cast::<MaybeUninit<T>>().as_mut() }
    }

    /// Writes the payload.
    pub fn write(mut self, value: T) -> LoanMut<'o, O, T> {
        self.payload_mut().write(value);
        LoanMut(self.0)
    }

    /// Declares the payload initialised (after writing it through
    /// [`payload_mut`](Self::payload_mut)).
    ///
    /// # Safety
    ///
    /// Every byte of the payload must have been written.
    pub unsafe fn assume_init(self) -> LoanMut<'o, O, T> {
        LoanMut(self.0)
    }
}

impl<'o, T: ShmSafe, O: Lender<[T]>> LoanUninit<'o, O, [T]> {
    /// Elements loaned.
    pub fn len(&self) -> usize {
        self.0.len
    }

    /// Whether the loaned slice is empty.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// The payload memory.
    pub fn payload_mut(&mut self) -> &mut [MaybeUninit<T>] {
        // SAFETY: `len` elements, aligned, in the chunk, exclusively ours
        // while loaned (the contract of `new`).
        unsafe {
            std::slice::from_raw_parts_mut(
                self.0.payload.cast::<MaybeUninit<T>>().as_ptr(),
                self.0.len,
            )
        }
    }

    /// Writes element `i` as `f(i)`, for every element.
    pub fn write_from_fn(mut self, mut f: impl FnMut(usize) -> T) -> LoanMut<'o, O, [T]> {
        for (i, slot) in self.payload_mut().iter_mut().enumerate() {
            slot.write(f(i));
        }
        LoanMut(self.0)
    }

    /// Copies `values` (exactly the loaned length) into the payload.
    ///
    /// # Panics
    ///
    /// If `values.len()` differs from the loaned length.
    pub fn write_from_slice(mut self, values: &[T]) -> LoanMut<'o, O, [T]>
    where
        T: Copy,
    {
        let payload = self.payload_mut();
        assert_eq!(
            values.len(),
            payload.len(),
            "write_from_slice: the slice must have the loaned length"
        );
        // SAFETY: `payload` is the loaned slice of exactly `values.len()`
        // elements (asserted), exclusively ours; `values` is a separate
        // borrow, so they do not overlap; T: Copy. One memcpy rather than
        // an element loop.
        unsafe {
            std::ptr::copy_nonoverlapping(
                values.as_ptr(),
                payload.as_mut_ptr().cast::<T>(),
                values.len(),
            );
        }
        LoanMut(self.0)
    }

    /// Declares the payload initialised (after writing it through
    /// [`payload_mut`](Self::payload_mut)).
    ///
    /// # Safety
    ///
    /// Every byte of the `len` elements must have been written.
    pub unsafe fn assume_init(self) -> LoanMut<'o, O, [T]> {
        LoanMut(self.0)
    }
}

impl<'o, O: Lender<P>, P: Payload + ?Sized> LoanMut<'o, O, P> {
    /// The user header (zeroed at the loan, then as written).
    pub fn header_mut(&mut self) -> &mut O::Header {
        // SAFETY: as in `LoanUninit::header_mut`.
        unsafe { self.0.header.as_mut() }
    }

    /// The user header.
    pub fn header(&self) -> &O::Header {
        // SAFETY: as in `LoanUninit::header_mut`.
        unsafe { self.0.header.as_ref() }
    }

    /// The owner, the chunk and the length, taken out of the loan: the
    /// caller sends it another way, or gives it back.
    pub(crate) fn into_parts(mut self) -> (&'o O, u32, usize) {
        (self.0.owner, self.0.take(), self.0.len)
    }

    /// Sends the chunk. On error the chunk goes back to the pool.
    pub fn send(mut self) -> Result<O::Sent<'o>, O::Error> {
        let chunk = self.0.take();
        let owner = self.0.owner;
        owner
            .send_chunk(chunk, self.0.len)
            .inspect_err(|_| owner.give_back(chunk))
    }
}

impl<T: ShmSafe, O: Lender<T>> std::ops::Deref for LoanMut<'_, O, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: initialised (typestate), aligned, exclusively ours.
        unsafe { self.0.payload.as_ref() }
    }
}

impl<T: ShmSafe, O: Lender<T>> std::ops::DerefMut for LoanMut<'_, O, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in deref.
        unsafe { self.0.payload.as_mut() }
    }
}

impl<T: ShmSafe, O: Lender<[T]>> std::ops::Deref for LoanMut<'_, O, [T]> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements (typestate), aligned,
        // exclusively ours.
        unsafe { std::slice::from_raw_parts(self.0.payload.as_ptr(), self.0.len) }
    }
}

impl<T: ShmSafe, O: Lender<[T]>> std::ops::DerefMut for LoanMut<'_, O, [T]> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref.
        unsafe { std::slice::from_raw_parts_mut(self.0.payload.as_ptr(), self.0.len) }
    }
}

impl<O: Lender<P>, P: Payload + ?Sized> fmt::Debug for LoanUninit<'_, O, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoanUninit")
            .field("chunk", &self.0.chunk)
            .field("len", &self.0.len)
            .finish()
    }
}

impl<O: Lender<P>, P: Payload + ?Sized> fmt::Debug for LoanMut<'_, O, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoanMut")
            .field("chunk", &self.0.chunk)
            .field("len", &self.0.len)
            .finish()
    }
}
