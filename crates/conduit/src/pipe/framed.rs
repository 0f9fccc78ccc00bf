//! A framed, typed channel over any byte stream: a pipe, a FIFO or a Unix
//! stream socket (anything that converts into an [`OwnedFd`]).
//!
//! # Wire format
//!
//! Typed channels ([`Sender`]/[`Receiver`] for `T: ShmSafe`) send a 16-byte
//! stream header once (magic `"CDT1"`, [`tag_of::<T>()`](tag_of),
//! `size_of::<T>()`, zero) and then the values back to back, each exactly
//! `size_of::<T>()` bytes: all values have the same length, so a per-value
//! header would only cost bytes.
//!
//! Byte and serde frames ([`FrameWriter`]/[`FrameReader`], the serde
//! channel) vary in length: each is an 8-byte header followed by the
//! payload:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | payload length, `u32` little endian |
//! | 4..8 | type tag, `u32` little endian |
//!
//! The tag is a fixed value for byte frames and for serde frames; for a
//! typed stream it is [`tag_of::<T>()`](tag_of), folded from the type's
//! layout fingerprint, so both sides must agree on the type. A header whose
//! tag does not match is reported as [`RecvError::WrongType`]: a wrong peer
//! or a desynchronised stream is detected, never silently misread.
//!
//! # Edges
//!
//! * A frame longer than the limit is refused by the sender before a single
//!   byte is written ([`SendError::FrameTooLarge`]): the stream stays
//!   usable. A receiver that sees an announced length above its own limit
//!   reads and discards that frame and reports
//!   [`RecvError::FrameTooLarge`]: the stream stays usable.
//! * End of file at a frame boundary is [`RecvError::Closed`]; end of file
//!   inside a frame (the writer died mid-frame) is
//!   [`RecvError::Truncated`], after which the receiver is broken and every
//!   further call returns [`RecvError::Broken`]. A sender whose write
//!   failed mid-frame is likewise broken.
//! * A closed reader is [`SendError::PeerGone`], never `SIGPIPE`.
//! * `EINTR` is retried, short writes continued.
//! * The descriptor should be blocking. On a non-blocking one, `EAGAIN`
//!   before a frame starts is [`SendError::WouldBlock`] /
//!   [`RecvError::WouldBlock`]; once a frame has started, the call spins
//!   (yielding) until it completes, so frames are never torn.
//!
//! # Speed
//!
//! A typed send is one `write` of the value's bytes and a typed receive
//! one `read` of exactly `size_of::<T>()` bytes: the same system calls and
//! the same bytes as a plain `write`/`read` loop. A frame send is one
//! `writev` (header and payload together); a frame receive reads the rest
//! of the payload **and the next header** in one `readv`, so in a steady
//! stream a frame costs one system call on each side. Because of that
//! read-ahead, readiness of the descriptor is not the whole story for a
//! [`FrameReader`]: check [`FrameReader::has_buffered`] before waiting on
//! the descriptor.

use core::marker::PhantomData;
use core::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::shm::ShmSafe;
use crate::sys;
use crate::sys::Errno;

/// Size of a frame header in bytes.
pub const HEADER_LEN: usize = 8;
/// Default limit for byte and serde frames: 16 MiB.
pub const DEFAULT_LIMIT: usize = 16 << 20;
/// Tag of byte frames (`"BYTE"`).
pub const BYTES_TAG: u32 = u32::from_le_bytes(*b"BYTE");
/// Tag of serde frames (`"SERD"`).
pub const SERDE_TAG: u32 = u32::from_le_bytes(*b"SERD");

/// The frame tag of a [`ShmSafe`] type: its 64-bit layout fingerprint
/// folded to 32 bits.
pub const fn tag_of<T: ShmSafe>() -> u32 {
    let f = T::LAYOUT.fingerprint;
    (f ^ (f >> 32)) as u32
}

/// Error sending a frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The frame is longer than the limit; nothing was written.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes; nothing was sent")]
    FrameTooLarge {
        /// Payload length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The reading side closed the stream or died.
    #[error("the receiver is gone")]
    PeerGone(#[source] Errno),
    /// Non-blocking stream, no room for a new frame; nothing was written.
    #[error("the stream is full (non-blocking)")]
    WouldBlock,
    /// An earlier send failed mid-frame; the stream cannot be used.
    #[error("the stream is broken by an earlier failure mid-frame")]
    Broken,
    /// Another OS error. If it happened mid-frame the sender is now broken.
    #[error("write failed")]
    Io(#[source] Errno),
    /// The value could not be encoded (serde).
    #[error("cannot encode the value: {0}")]
    Encode(String),
}

/// Error receiving a frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The sender closed the stream at a frame boundary.
    #[error("the sender closed the stream")]
    Closed,
    /// End of file inside a frame: the sender died or closed mid-frame.
    /// The receiver is now broken.
    #[error("truncated frame: expected {expected} bytes, got {got} before end of file")]
    Truncated {
        /// Bytes the frame (or header) should have had.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// The frame announced more than the limit; it was read and discarded,
    /// and the stream is still usable.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes; it was discarded")]
    FrameTooLarge {
        /// Announced payload length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The frame carries another type (or the stream is out of step). The
    /// receiver is now broken.
    #[error("frame tag {found:#010x} does not match the expected {expected:#010x}")]
    WrongType {
        /// Tag this receiver expects.
        expected: u32,
        /// Tag found in the header.
        found: u32,
    },
    /// The frame has the right tag but not the size of the type (a peer
    /// built from another definition of a type with the same layout
    /// fingerprint, or a corrupted stream). The receiver is now broken.
    #[error("frame of {found} bytes where the type needs {expected}")]
    WrongLength {
        /// `size_of::<T>()`.
        expected: usize,
        /// Length in the header.
        found: usize,
    },
    /// Non-blocking stream and no frame started; nothing was consumed.
    #[error("no frame available (non-blocking)")]
    WouldBlock,
    /// An earlier error left the stream out of step; it cannot be used.
    #[error("the stream is broken by an earlier failure mid-frame")]
    Broken,
    /// Another OS error. The receiver is broken if it happened mid-frame.
    #[error("read failed")]
    Io(#[source] Errno),
    /// The payload could not be decoded (serde). The frame was consumed;
    /// the stream is still usable.
    #[error("cannot decode the frame: {0}")]
    Decode(String),
}

/// The writing half of the framing layer: untyped frames of bytes.
#[derive(Debug)]
pub struct FrameWriter {
    fd: OwnedFd,
    limit: usize,
    broken: bool,
}

impl FrameWriter {
    /// Frames over `stream`, refusing payloads above `limit` bytes (at
    /// most `u32::MAX`).
    pub fn new(stream: impl Into<OwnedFd>, limit: usize) -> FrameWriter {
        super::ensure_sigpipe_ignored();
        FrameWriter {
            fd: stream.into(),
            limit: limit.min(u32::MAX as usize),
            broken: false,
        }
    }

    /// The payload limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Sends one frame of bytes with tag [`BYTES_TAG`].
    pub fn send(&mut self, payload: &[u8]) -> Result<(), SendError> {
        // SAFETY: `payload` is readable for its length during the call.
        unsafe { self.send_raw(BYTES_TAG, payload.as_ptr(), payload.len()) }
    }

    /// Sends one frame whose payload is the `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for reads of `len` bytes (padding may be
    /// uninitialised) for the whole call.
    pub unsafe fn send_raw(
        &mut self,
        tag: u32,
        ptr: *const u8,
        len: usize,
    ) -> Result<(), SendError> {
        if self.broken {
            return Err(SendError::Broken);
        }
        if len > self.limit {
            return Err(SendError::FrameTooLarge {
                len,
                limit: self.limit,
            });
        }
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&(len as u32).to_le_bytes());
        header[4..].copy_from_slice(&tag.to_le_bytes());
        // SAFETY: forwarded from the caller.
        unsafe { self.write_parts(&header, ptr, len) }
    }

    /// Writes `head` then the `len` bytes at `ptr`, all of it, as one
    /// unit: `WouldBlock` only before the first byte; a failure after it
    /// breaks the writer.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for reads of `len` bytes for the whole call.
    pub(crate) unsafe fn write_parts(
        &mut self,
        head: &[u8],
        ptr: *const u8,
        len: usize,
    ) -> Result<(), SendError> {
        if self.broken {
            return Err(SendError::Broken);
        }
        let total = head.len() + len;
        let mut written = 0;
        while written < total {
            let result = if written < head.len() {
                let ranges = [(head[written..].as_ptr(), head.len() - written), (ptr, len)];
                // SAFETY: the head is a live slice; the caller guarantees
                // the payload range.
                unsafe { sys::pipe::write_raw_vectored(&self.fd, &ranges) }
            } else {
                let done = written - head.len();
                // SAFETY: done < len, so the range stays inside the payload
                // the caller guarantees readable.
                unsafe { sys::pipe::write_raw_vectored(&self.fd, &[(ptr.add(done), len - done)]) }
            };
            match result {
                Ok(n) => written += n,
                Err(Errno::AGAIN) if written == 0 => return Err(SendError::WouldBlock),
                Err(Errno::AGAIN) => std::thread::yield_now(),
                Err(e) => {
                    if written > 0 {
                        self.broken = true;
                    }
                    return Err(match e {
                        Errno::PIPE | Errno::CONNRESET => {
                            self.broken = true;
                            SendError::PeerGone(e)
                        }
                        e => SendError::Io(e),
                    });
                }
            }
        }
        Ok(())
    }
}

impl AsFd for FrameWriter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The reading half of the framing layer: untyped frames of bytes.
#[derive(Debug)]
pub struct FrameReader {
    fd: OwnedFd,
    limit: usize,
    header: [u8; HEADER_LEN],
    /// Bytes of the next header already read (the read-ahead).
    have: usize,
    broken: bool,
}

impl FrameReader {
    /// Frames from `stream`, discarding payloads above `limit` bytes.
    pub fn new(stream: impl Into<OwnedFd>, limit: usize) -> FrameReader {
        FrameReader {
            fd: stream.into(),
            limit,
            header: [0; HEADER_LEN],
            have: 0,
            broken: false,
        }
    }

    /// The payload limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether bytes of the next frame were already read ahead; if so, do
    /// not wait for the descriptor to become readable before receiving.
    pub fn has_buffered(&self) -> bool {
        self.have > 0
    }

    /// Receives one byte frame (tag [`BYTES_TAG`]) into `buf`, replacing
    /// its contents; returns the length.
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.recv_vec(BYTES_TAG, buf)
    }

    pub(crate) fn recv_vec(&mut self, tag: u32, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        let len = self.read_header(tag)?;
        if len > self.limit {
            self.skip(len)?;
            return Err(RecvError::FrameTooLarge {
                len,
                limit: self.limit,
            });
        }
        buf.clear();
        buf.reserve(len);
        // SAFETY: the spare capacity holds at least `len` bytes and is not
        // referenced elsewhere.
        unsafe { self.read_payload_raw(buf.as_mut_ptr(), len, true)? };
        // SAFETY: read_payload_raw returned Ok, so all `len` bytes were
        // written.
        unsafe { buf.set_len(len) };
        Ok(len)
    }

    /// Reads the next header and checks its tag; returns the length.
    pub(crate) fn read_header(&mut self, expected: u32) -> Result<usize, RecvError> {
        if self.broken {
            return Err(RecvError::Broken);
        }
        while self.have < HEADER_LEN {
            match sys::pipe::read(&self.fd, &mut self.header[self.have..]) {
                Ok(0) if self.have == 0 => return Err(RecvError::Closed),
                Ok(0) => {
                    self.broken = true;
                    return Err(RecvError::Truncated {
                        expected: HEADER_LEN,
                        got: self.have,
                    });
                }
                Ok(n) => self.have += n,
                Err(Errno::AGAIN) if self.have == 0 => return Err(RecvError::WouldBlock),
                Err(Errno::AGAIN) => std::thread::yield_now(),
                Err(e) => {
                    if self.have > 0 {
                        self.broken = true;
                    }
                    return Err(RecvError::Io(e));
                }
            }
        }
        self.have = 0;
        let len = u32::from_le_bytes(self.header[..4].try_into().unwrap_or([0; 4])) as usize;
        let found = u32::from_le_bytes(self.header[4..].try_into().unwrap_or([0; 4]));
        if found != expected {
            self.broken = true;
            return Err(RecvError::WrongType { expected, found });
        }
        Ok(len)
    }

    /// Reads exactly `len` payload bytes to `dst`; with `lookahead`, the
    /// same system calls may also read (part of) the next header.
    ///
    /// # Safety
    ///
    /// `dst` must be valid for writes of `len` bytes and not aliased.
    pub(crate) unsafe fn read_payload_raw(
        &mut self,
        dst: *mut u8,
        len: usize,
        lookahead: bool,
    ) -> Result<(), RecvError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.read_exact_raw(dst, len, lookahead, false) }
    }

    /// Reads exactly `len` bytes to `dst`. With `at_boundary`, end of file
    /// before the first byte is [`RecvError::Closed`]; any other end of
    /// file is `Truncated` and breaks the reader.
    ///
    /// # Safety
    ///
    /// `dst` must be valid for writes of `len` bytes and not aliased.
    pub(crate) unsafe fn read_exact_raw(
        &mut self,
        dst: *mut u8,
        len: usize,
        lookahead: bool,
        at_boundary: bool,
    ) -> Result<(), RecvError> {
        if self.broken {
            return Err(RecvError::Broken);
        }
        let mut got = 0;
        while got < len {
            // SAFETY: got < len: the range lies inside `dst`.
            let rest = unsafe { dst.add(got) };
            let header = self.header.as_mut_ptr();
            let ranges = [(rest, len - got), (header, HEADER_LEN)];
            let ranges = if lookahead { &ranges[..] } else { &ranges[..1] };
            // SAFETY: the payload range is valid by the caller's contract;
            // the header is our own array, unaliased while we hold &mut self
            // (have == 0, so no read-ahead bytes are overwritten).
            match unsafe { sys::pipe::read_raw_vectored(&self.fd, ranges) } {
                Ok(0) if got == 0 && at_boundary => return Err(RecvError::Closed),
                Ok(0) => {
                    self.broken = true;
                    return Err(RecvError::Truncated { expected: len, got });
                }
                Ok(n) if n > len - got => {
                    self.have = n - (len - got);
                    got = len;
                }
                Ok(n) => got += n,
                Err(Errno::AGAIN) if got == 0 && at_boundary => return Err(RecvError::WouldBlock),
                Err(Errno::AGAIN) => std::thread::yield_now(),
                Err(e) => {
                    if got > 0 || !at_boundary {
                        self.broken = true;
                    }
                    return Err(RecvError::Io(e));
                }
            }
        }
        Ok(())
    }

    fn skip(&mut self, mut len: usize) -> Result<(), RecvError> {
        let mut scratch = [0u8; 8192];
        while len > 0 {
            let chunk = len.min(scratch.len());
            // SAFETY: `scratch` is a local buffer of at least `chunk` bytes.
            unsafe { self.read_payload_raw(scratch.as_mut_ptr(), chunk, chunk == len)? };
            len -= chunk;
        }
        Ok(())
    }
}

impl AsFd for FrameReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Length of the stream header a typed [`Sender`] writes once.
pub const STREAM_HEADER_LEN: usize = 16;
/// Magic number at the start of a typed stream (`"CDT1"`).
pub const STREAM_MAGIC: u32 = u32::from_le_bytes(*b"CDT1");

fn stream_header<T: ShmSafe>() -> [u8; STREAM_HEADER_LEN] {
    let mut h = [0u8; STREAM_HEADER_LEN];
    h[..4].copy_from_slice(&STREAM_MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&tag_of::<T>().to_le_bytes());
    h[8..12].copy_from_slice(&(size_of::<T>() as u32).to_le_bytes());
    h
}

/// Sends values of a [`ShmSafe`] type as raw bytes.
///
/// Every value has the same length, so no per-value header is needed: the
/// first send is preceded by a 16-byte stream header `[magic "CDT1",
/// tag_of::<T>(), size_of::<T>(), 0]` that the receiver checks once; after
/// that each value is exactly its `size_of::<T>()` bytes, written with one
/// `write` (like a plain write loop). End of file inside a value is still
/// detected ([`RecvError::Truncated`]). One `Sender` per stream: values
/// of two writers sharing a pipe would interleave.
#[derive(Debug)]
pub struct Sender<T> {
    writer: FrameWriter,
    announced: bool,
    _type: PhantomData<fn(&T)>,
}

impl<T: ShmSafe> Sender<T> {
    /// A typed sender over `stream` (pipe write end, FIFO, Unix stream
    /// socket...).
    pub fn new(stream: impl Into<OwnedFd>) -> Sender<T> {
        Sender {
            writer: FrameWriter::new(stream, size_of::<T>()),
            announced: false,
            _type: PhantomData,
        }
    }

    /// Sends one value: a single `write` of its bytes (plus the stream
    /// header the first time).
    pub fn send(&mut self, value: &T) -> Result<(), SendError> {
        let header = stream_header::<T>();
        let head: &[u8] = if self.announced { &[] } else { &header };
        // SAFETY: `value` is a live reference to size_of::<T>() bytes.
        let r = unsafe {
            self.writer
                .write_parts(head, (value as *const T).cast(), size_of::<T>())
        };
        if r.is_ok() {
            self.announced = true;
        }
        r
    }
}

impl<T> AsFd for Sender<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.writer.as_fd()
    }
}

/// Receives values of a [`ShmSafe`] type sent by [`Sender`].
#[derive(Debug)]
pub struct Receiver<T> {
    reader: FrameReader,
    checked: bool,
    _type: PhantomData<fn() -> T>,
}

impl<T: ShmSafe> Receiver<T> {
    /// A typed receiver over `stream`.
    pub fn new(stream: impl Into<OwnedFd>) -> Receiver<T> {
        Receiver {
            reader: FrameReader::new(stream, size_of::<T>()),
            checked: false,
            _type: PhantomData,
        }
    }

    /// Receives one value. Blocks on a blocking stream.
    pub fn recv(&mut self) -> Result<T, RecvError> {
        let mut value = MaybeUninit::<T>::uninit();
        self.recv_raw(value.as_mut_ptr())?;
        // SAFETY: recv_raw wrote all size_of::<T>() bytes, and every bit
        // pattern is a valid T (ShmSafe contract).
        Ok(unsafe { value.assume_init() })
    }

    /// Receives one value into `slot` (no copy of a large `T` through the
    /// stack). On error `slot` may hold part of a value.
    pub fn recv_into(&mut self, slot: &mut T) -> Result<(), RecvError> {
        self.recv_raw(slot)
    }

    fn check_stream_header(&mut self) -> Result<(), RecvError> {
        let mut h = [0u8; STREAM_HEADER_LEN];
        // SAFETY: `h` is a local array of STREAM_HEADER_LEN bytes.
        unsafe {
            self.reader
                .read_exact_raw(h.as_mut_ptr(), STREAM_HEADER_LEN, false, true)?
        };
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let (magic, tag, size) = (word(0), word(4), word(8) as usize);
        if magic != STREAM_MAGIC || tag != tag_of::<T>() {
            self.reader.broken = true;
            return Err(RecvError::WrongType {
                expected: tag_of::<T>(),
                found: if magic == STREAM_MAGIC { tag } else { magic },
            });
        }
        if size != size_of::<T>() {
            self.reader.broken = true;
            return Err(RecvError::WrongLength {
                expected: size_of::<T>(),
                found: size,
            });
        }
        self.checked = true;
        Ok(())
    }

    fn recv_raw(&mut self, dst: *mut T) -> Result<(), RecvError> {
        if !self.checked {
            self.check_stream_header()?;
        }
        // SAFETY: dst points to a T we may write (a MaybeUninit or &mut);
        // any bytes written form a valid T since T is ShmSafe.
        unsafe {
            self.reader
                .read_exact_raw(dst.cast(), size_of::<T>(), false, true)
        }
    }
}

impl<T> AsFd for Receiver<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.reader.as_fd()
    }
}

#[cfg(feature = "serde")]
pub use serde_codec::{SerdeReceiver, SerdeSender};

#[cfg(feature = "serde")]
mod serde_codec {
    //! serde types over frames, encoded with `postcard`.
    //!
    //! postcard: a compact, documented and stable (1.0) wire format
    //! (varint integers, no field names), `no_std`, actively maintained.
    //! bincode was the other candidate, but its development ceased in
    //! December 2025 (RUSTSEC-2025-0141).
    use super::*;

    /// Sends any `serde::Serialize` value, postcard-encoded, one frame each.
    #[derive(Debug)]
    pub struct SerdeSender<T> {
        writer: FrameWriter,
        buf: Vec<u8>,
        _type: PhantomData<fn(&T)>,
    }

    impl<T: serde::Serialize> SerdeSender<T> {
        /// A sender over `stream` with a frame limit of `limit` bytes.
        pub fn new(stream: impl Into<OwnedFd>, limit: usize) -> SerdeSender<T> {
            SerdeSender {
                writer: FrameWriter::new(stream, limit),
                buf: Vec::new(),
                _type: PhantomData,
            }
        }

        /// Encodes and sends one value. An encoding above the limit is
        /// [`SendError::FrameTooLarge`] and nothing is written.
        pub fn send(&mut self, value: &T) -> Result<(), SendError> {
            let buf = core::mem::take(&mut self.buf);
            let buf = postcard::to_extend(value, buf).map_err(|e| SendError::Encode(e.to_string()));
            let mut buf = buf?;
            // SAFETY: buf is a live Vec of buf.len() bytes.
            let r = unsafe { self.writer.send_raw(SERDE_TAG, buf.as_ptr(), buf.len()) };
            buf.clear();
            self.buf = buf;
            r
        }
    }

    impl<T> AsFd for SerdeSender<T> {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.writer.as_fd()
        }
    }

    /// Receives values sent by [`SerdeSender`].
    #[derive(Debug)]
    pub struct SerdeReceiver<T> {
        reader: FrameReader,
        buf: Vec<u8>,
        _type: PhantomData<fn() -> T>,
    }

    impl<T: serde::de::DeserializeOwned> SerdeReceiver<T> {
        /// A receiver over `stream` with a frame limit of `limit` bytes.
        pub fn new(stream: impl Into<OwnedFd>, limit: usize) -> SerdeReceiver<T> {
            SerdeReceiver {
                reader: FrameReader::new(stream, limit),
                buf: Vec::new(),
                _type: PhantomData,
            }
        }

        /// Receives and decodes one value.
        pub fn recv(&mut self) -> Result<T, RecvError> {
            self.reader.recv_vec(SERDE_TAG, &mut self.buf)?;
            postcard::from_bytes(&self.buf).map_err(|e| RecvError::Decode(e.to_string()))
        }

        /// See [`FrameReader::has_buffered`].
        pub fn has_buffered(&self) -> bool {
            self.reader.has_buffered()
        }
    }

    impl<T> AsFd for SerdeReceiver<T> {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.reader.as_fd()
        }
    }
}
