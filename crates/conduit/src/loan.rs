//! A loaned chunk of a port's pool, typed and zero-copy, in two states:
//! [`LoanUninit`] (payload not written yet) and [`LoanMut`] (written,
//! ready to send). Dropping either gives the chunk back unsent; sending a
//! [`LoanMut`] hands it to the port, and gives it back if the send fails.
//!
//! One implementation for every port that loans one value of a fixed type
//! (request/response's [`Client`](crate::reqres::Client) and the
//! responses of an [`ActiveRequest`](crate::reqres::ActiveRequest)); the
//! patterns name it as they like ([`RequestUninit`](crate::reqres::RequestUninit),
//! [`ResponseMut`](crate::reqres::ResponseMut), …). Publish/subscribe's
//! samples add a user header and slices and have their own types.

use std::fmt;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

/// What a loan is taken from: a port (or a request being answered) that
/// gives back and sends its chunks. Sealed: implemented by conduit's
/// ports only.
pub trait Lender: sealed::Lend {}

pub(crate) mod sealed {
    /// The lender's steps a loan needs.
    pub trait Lend {
        /// The payload type of a chunk.
        type Payload: crate::shm::ShmSafe;
        /// What a successful send returns.
        type Sent<'o>
        where
            Self: 'o;
        /// Why a send failed.
        type Error;
        /// A loan of `chunk` ends unsent.
        fn give_back(&self, chunk: u32);
        /// Sends loaned `chunk`.
        fn send_chunk(&self, chunk: u32) -> Result<Self::Sent<'_>, Self::Error>;
    }
}

/// The loan itself: gives the chunk back when dropped still holding it.
struct Held<'o, O: Lender> {
    owner: &'o O,
    chunk: Option<u32>,
    payload: NonNull<O::Payload>,
}

impl<O: Lender> Held<'_, O> {
    fn take(&mut self) -> u32 {
        self.chunk
            .take()
            .expect("a loan holds its chunk until sent")
    }
}

impl<O: Lender> Drop for Held<'_, O> {
    fn drop(&mut self) {
        if let Some(chunk) = self.chunk {
            self.owner.give_back(chunk);
        }
    }
}

/// A loaned chunk whose payload is not initialised yet. Dropping it gives
/// the chunk back unsent.
pub struct LoanUninit<'o, O: Lender>(Held<'o, O>);

/// A loaned chunk with its payload written, ready to
/// [`send`](Self::send). Dropping it gives the chunk back unsent.
pub struct LoanMut<'o, O: Lender>(Held<'o, O>);

impl<'o, O: Lender> LoanUninit<'o, O> {
    /// A loan of `chunk` of `owner`, whose payload is at `payload`.
    ///
    /// # Safety
    ///
    /// `payload` is aligned for `O::Payload`, inside `chunk` of the
    /// owner's writable mapping, and no one else reads or writes it until
    /// the loan is sent or given back.
    pub(crate) unsafe fn new(owner: &'o O, chunk: u32, payload: NonNull<O::Payload>) -> Self {
        LoanUninit(Held {
            owner,
            chunk: Some(chunk),
            payload,
        })
    }

    /// The payload memory.
    pub fn payload_mut(&mut self) -> &mut MaybeUninit<O::Payload> {
        // SAFETY: aligned, in the chunk, exclusively ours while loaned
        // (the contract of `new`).
        unsafe { self.0.payload.cast::<MaybeUninit<O::Payload>>().as_mut() }
    }

    /// Writes the payload.
    pub fn write(mut self, value: O::Payload) -> LoanMut<'o, O> {
        self.payload_mut().write(value);
        LoanMut(self.0)
    }

    /// Declares the payload initialised (after writing it through
    /// [`payload_mut`](Self::payload_mut)).
    ///
    /// # Safety
    ///
    /// Every byte of the payload must have been written.
    pub unsafe fn assume_init(self) -> LoanMut<'o, O> {
        LoanMut(self.0)
    }
}

impl<'o, O: Lender> LoanMut<'o, O> {
    /// The owner and the chunk, taken out of the loan: the caller sends
    /// it another way, or gives it back.
    pub(crate) fn into_parts(mut self) -> (&'o O, u32) {
        (self.0.owner, self.0.take())
    }

    /// Sends the chunk. On error the chunk goes back to the pool.
    pub fn send(mut self) -> Result<O::Sent<'o>, O::Error> {
        let chunk = self.0.take();
        let owner = self.0.owner;
        owner
            .send_chunk(chunk)
            .inspect_err(|_| owner.give_back(chunk))
    }
}

impl<O: Lender> std::ops::Deref for LoanMut<'_, O> {
    type Target = O::Payload;
    fn deref(&self) -> &O::Payload {
        // SAFETY: initialised (typestate), aligned, exclusively ours.
        unsafe { self.0.payload.as_ref() }
    }
}

impl<O: Lender> std::ops::DerefMut for LoanMut<'_, O> {
    fn deref_mut(&mut self) -> &mut O::Payload {
        // SAFETY: as in deref.
        unsafe { self.0.payload.as_mut() }
    }
}

impl<O: Lender> fmt::Debug for LoanUninit<'_, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoanUninit")
            .field("chunk", &self.0.chunk)
            .finish()
    }
}

impl<O: Lender> fmt::Debug for LoanMut<'_, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoanMut")
            .field("chunk", &self.0.chunk)
            .finish()
    }
}
