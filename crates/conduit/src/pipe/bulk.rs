//! A bulk byte stream through a pipe that moves pages instead of copying
//! them: `vmsplice` on the writer, `splice` (or `read`) on the reader,
//! optional huge pages and an optional busy-polling mode.
//!
//! This is the ladder of "How fast are Linux pipes anyway?": a plain
//! `write`/`read` loop copies every byte twice; a bigger pipe cuts the
//! number of wake-ups; `vmsplice` hands the writer's pages to the pipe
//! (no copy on the writing side); `splice` to a file or `/dev/null` moves
//! them on without a copy; huge pages cut the per-page cost of pinning;
//! and busy polling (non-blocking calls in a spin loop) removes the sleep
//! and wake-up of each side.
//!
//! # The page-lifetime hazard and the protocol that makes reuse safe
//!
//! After `vmsplice` returns, the pipe still *refers* to the writer's
//! pages; the reader copies them only later. Writing into the buffer
//! before the reader consumed it would change bytes already "sent".
//! [`BulkWriter`] therefore owns its buffer: a ring of **twice the pipe's
//! capacity** `C`, handed out in chunks of at most `C` bytes
//! ([`BulkWriter::buffer`] then [`BulkWriter::commit`]).
//!
//! The argument: a pipe holds at most `C` bytes (its capacity is `C /
//! page` slots of at most one page each), and the bytes it holds are
//! always the *last* ones accepted. The writer counts the bytes `W` that
//! `vmsplice` has accepted and remembers, for each half of the ring, the
//! stream offset `E` where its last chunk ended. Before handing a half out
//! again it needs every byte before `E` to have left the pipe, which holds
//! when `W - E ≥ C` (always true after a full chunk in the other half: no
//! system call) and otherwise when the bytes queued in the pipe
//! (`FIONREAD`) are at most `W - E` (the writer waits, spinning or
//! yielding, until they are).
//!
//! The argument needs the reader to **copy** what it takes out of the
//! pipe: `read(2)`, or `splice` to a regular file or `/dev/null`. A
//! `splice` into another pipe or a socket would move the page references
//! on, outliving the protocol; [`BulkReader::splice_to`] therefore copies
//! (read + write) when its target is a pipe or a socket.
//!
//! # Fallbacks
//!
//! * `vmsplice` refused (the descriptor is not a pipe): the writer falls
//!   back to `write(2)`.
//! * `splice` refused by the target (`EINVAL`): the reader falls back to
//!   `read` + `write`.
//!
//! # Busy mode
//!
//! With [`BulkConfig::busy`], both ends are non-blocking and spin on
//! `EAGAIN`: the fastest throughput, at the price of one CPU per side
//! running at 100 % while waiting. End of stream and a closed peer are
//! reported exactly as in blocking mode.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{Reader, Writer};
use crate::sys;
use crate::sys::Errno;
use crate::sys::mman::{Advise, Mapping};
use crate::sys::pipe::FileKind;

/// Size of a transparent huge page on x86-64 and aarch64 (4 KiB base).
const HUGE_PAGE: usize = 2 << 20;

/// Options of a bulk stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkConfig {
    /// Pipe capacity to ask for (rounded up by the kernel; capped at
    /// `/proc/sys/fs/pipe-max-size` for unprivileged processes).
    /// Default 1 MiB.
    pub capacity: usize,
    /// Move pages with `vmsplice` (default) instead of copying with
    /// `write`.
    pub vmsplice: bool,
    /// Back the writer's ring with transparent huge pages
    /// (`MADV_HUGEPAGE`); silently 4 KiB pages where THP is disabled.
    pub huge_pages: bool,
    /// Non-blocking calls in a spin loop instead of sleeping.
    pub busy: bool,
}

impl Default for BulkConfig {
    fn default() -> Self {
        BulkConfig {
            capacity: 1 << 20,
            vmsplice: true,
            huge_pages: false,
            busy: false,
        }
    }
}

/// Error creating a bulk stream end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BulkError {
    /// The pipe capacity was refused.
    #[error("cannot size the pipe")]
    Capacity(#[from] super::SetCapacityError),
    /// The descriptor is not open for writing (a read end was given as a
    /// writer).
    #[error("the descriptor is not open for writing")]
    NotWritable,
    /// Any other failure (mapping the ring, `fcntl`).
    #[error("bulk stream setup failed")]
    Other(#[source] Errno),
}

/// The writing end of a bulk stream. See the [module docs](self) for the
/// buffer protocol.
#[derive(Debug)]
pub struct BulkWriter {
    pipe: Writer,
    ring: Mapping,
    /// Offset of the aligned ring inside `ring`.
    start: usize,
    /// Ring length: 2 × chunk.
    ring_len: usize,
    /// Largest chunk: the pipe capacity.
    chunk: usize,
    /// Position of the next chunk in the ring (0 or `chunk`).
    next: usize,
    /// Bytes accepted by the pipe so far (`W`).
    accepted: u64,
    /// For each half, the stream offset where its last chunk ended (`E`).
    half_end: [u64; 2],
    vmsplice: bool,
    busy: bool,
}

impl BulkWriter {
    /// Wraps the write end of a pipe (or FIFO) with `config`. Any other
    /// writable descriptor (a stream socket, a file) works too, copying
    /// with `write(2)` in chunks of `config.capacity` bytes.
    pub fn new(pipe: Writer, config: BulkConfig) -> Result<BulkWriter, BulkError> {
        if !sys::pipe::is_writable(&pipe).map_err(BulkError::Other)? {
            return Err(BulkError::NotWritable);
        }
        // On something that is not a pipe (a socket, a file) there is no
        // capacity to set and nothing to vmsplice into: copy with write.
        let is_pipe = sys::pipe::file_kind(&pipe).map_err(BulkError::Other)? == FileKind::Pipe;
        let capacity = if is_pipe {
            pipe.set_capacity(config.capacity)?
        } else {
            config.capacity.max(sys::page_size())
        };
        let chunk = capacity;
        let ring_len = 2 * chunk;
        let align = if config.huge_pages {
            HUGE_PAGE
        } else {
            sys::page_size()
        };
        let ring = Mapping::anonymous(ring_len + align).map_err(BulkError::Other)?;
        let start = ring.as_ptr().align_offset(align).min(align);
        if config.huge_pages {
            // Best effort: THP may be disabled; the ring then uses 4 KiB
            // pages and still works.
            let page = sys::page_size();
            let len = ring_len.div_ceil(page) * page;
            let _ = ring.advise(start, len.min(ring.len() - start), Advise::HugePage);
        }
        // Touch the ring so the first vmsplice does not fault it in.
        // SAFETY: [start, start + ring_len) lies inside the private
        // mapping we own; nothing else references it yet.
        unsafe { core::ptr::write_bytes(ring.as_ptr().add(start), 0, ring_len) };
        if config.busy {
            pipe.set_nonblocking(true)
                .map_err(|e| BulkError::Other(io_errno(&e)))?;
        }
        Ok(BulkWriter {
            pipe,
            ring,
            start,
            ring_len,
            chunk,
            next: 0,
            accepted: 0,
            half_end: [0; 2],
            vmsplice: config.vmsplice && is_pipe,
            busy: config.busy,
        })
    }

    /// Largest chunk [`buffer`](Self::buffer) hands out: the pipe's
    /// capacity.
    pub fn chunk_len(&self) -> usize {
        self.chunk
    }

    /// The next chunk of the ring to fill. By the protocol in the module
    /// docs, none of its bytes is still referenced by the pipe.
    ///
    /// Usually free; after a short chunk it may wait until the reader has
    /// taken enough bytes out of the pipe.
    pub fn buffer(&mut self) -> &mut [u8] {
        self.wait_until_reusable();
        debug_assert!(self.next + self.chunk <= self.ring_len);
        // SAFETY: [start + next, + chunk) lies inside the ring we own;
        // `&mut self` makes the slice exclusive in this process, and the
        // protocol guarantees the pipe no longer refers to these pages.
        unsafe {
            core::slice::from_raw_parts_mut(
                self.ring.as_ptr().add(self.start + self.next),
                self.chunk,
            )
        }
    }

    /// Sends the first `len` bytes of the chunk returned by
    /// [`buffer`](Self::buffer) (`len` ≤ [`chunk_len`](Self::chunk_len))
    /// and advances to the other half of the ring. A closed reader is
    /// [`io::ErrorKind::BrokenPipe`].
    pub fn commit(&mut self, len: usize) -> io::Result<()> {
        if len > self.chunk {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "len exceeds the chunk",
            ));
        }
        // SAFETY: the range lies inside the ring (checked above).
        let data = unsafe {
            core::slice::from_raw_parts(self.ring.as_ptr().add(self.start + self.next), len)
        };
        let mut done = 0;
        while done < len {
            let result = if self.vmsplice {
                // SAFETY: `self.pipe` was checked writable in `new`, so
                // vmsplice only reads `data`.
                match unsafe { sys::pipe::vmsplice_write(&self.pipe, &data[done..], self.busy) } {
                    Err(Errno::INVAL) | Err(Errno::BADF) if done == 0 => {
                        // Not a pipe: copy from now on.
                        self.vmsplice = false;
                        continue;
                    }
                    other => other,
                }
            } else {
                sys::pipe::write(&self.pipe, &data[done..])
            };
            match result {
                Ok(n) => done += n,
                Err(Errno::AGAIN) => core::hint::spin_loop(),
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        self.accepted += len as u64;
        self.half_end[self.half()] = self.accepted;
        self.next = if self.next == 0 { self.chunk } else { 0 };
        Ok(())
    }

    fn half(&self) -> usize {
        usize::from(self.next != 0)
    }

    /// Waits until no byte of the next half is referenced by the pipe.
    fn wait_until_reusable(&self) {
        let since = self.accepted - self.half_end[self.half()];
        if since >= self.chunk as u64 {
            return;
        }
        // Only the last `queued` bytes of the stream are in the pipe.
        while let Ok(queued) = sys::pipe::bytes_queued(&self.pipe) {
            // A reader that died never drains the pipe; the next commit
            // reports the broken pipe.
            if queued <= since || sys::pipe::readers_gone(&self.pipe) {
                return;
            }
            if self.busy {
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Copies `data` through the ring and sends it, chunk by chunk.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = data.len().min(self.chunk);
            self.buffer()[..n].copy_from_slice(&data[..n]);
            self.commit(n)?;
            data = &data[n..];
        }
        Ok(())
    }
}

impl AsFd for BulkWriter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pipe.as_fd()
    }
}

fn io_errno(e: &io::Error) -> Errno {
    Errno::from_io_error(e).unwrap_or(Errno::IO)
}

/// The reading end of a bulk stream.
#[derive(Debug)]
pub struct BulkReader {
    pipe: Reader,
    busy: bool,
    dev_null: Option<OwnedFd>,
    scratch: Vec<u8>,
}

impl BulkReader {
    /// Wraps the read end of a pipe (or FIFO; any readable descriptor
    /// works, without the splice fast path). `config.busy` makes reads
    /// spin instead of sleeping; the capacity is set by the writer.
    pub fn new(pipe: Reader, config: BulkConfig) -> Result<BulkReader, BulkError> {
        if config.busy {
            pipe.set_nonblocking(true)
                .map_err(|e| BulkError::Other(io_errno(&e)))?;
        }
        Ok(BulkReader {
            pipe,
            busy: config.busy,
            dev_null: None,
            scratch: Vec::new(),
        })
    }

    /// Copies up to `buf.len()` bytes out of the pipe (`read(2)`).
    /// `Ok(0)` is end of stream.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match sys::pipe::read(&self.pipe, buf) {
                Err(Errno::AGAIN) => core::hint::spin_loop(),
                other => return other.map_err(io::Error::from),
            }
        }
    }

    /// Moves up to `len` bytes to `out` with `splice` when `out` is a
    /// regular file or a character device, and copies (read + write) when
    /// it is a pipe or socket (see the module docs) or refuses splicing.
    /// Returns the bytes moved; `Ok(0)` is end of stream.
    pub fn splice_to(&mut self, out: impl AsFd, len: usize) -> io::Result<usize> {
        let out = out.as_fd();
        let kind = sys::pipe::file_kind(out).map_err(io::Error::from)?;
        if matches!(kind, FileKind::Pipe | FileKind::Socket) {
            return self.copy_to(out, len);
        }
        loop {
            match sys::pipe::splice(&self.pipe, out, len, self.busy) {
                Err(Errno::AGAIN) => core::hint::spin_loop(),
                Err(Errno::INVAL) => return self.copy_to(out, len),
                other => return other.map_err(io::Error::from),
            }
        }
    }

    /// Moves up to `len` bytes to `/dev/null` with `splice` (the fastest
    /// way to consume a stream whose bytes are not needed here, e.g. when
    /// measuring). `Ok(0)` is end of stream.
    pub fn discard(&mut self, len: usize) -> io::Result<usize> {
        if self.dev_null.is_none() {
            self.dev_null = Some(sys::pipe::open_dev_null().map_err(io::Error::from)?);
        }
        let null = self.dev_null.as_ref().map(|f| f.as_fd());
        let Some(null) = null else {
            return Err(io::Error::from(Errno::BADF));
        };
        loop {
            match sys::pipe::splice(&self.pipe, null, len, self.busy) {
                Err(Errno::AGAIN) => core::hint::spin_loop(),
                // Not a pipe (e.g. a socket): read and drop.
                Err(Errno::INVAL) => {
                    let mut scratch = core::mem::take(&mut self.scratch);
                    scratch.resize(len.clamp(1, 1 << 20), 0);
                    let r = self.read(&mut scratch);
                    self.scratch = scratch;
                    return r;
                }
                other => return other.map_err(io::Error::from),
            }
        }
    }

    fn copy_to(&mut self, out: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        let mut scratch = core::mem::take(&mut self.scratch);
        scratch.resize(len.min(1 << 20), 0);
        let result = (|| {
            let n = self.read(&mut scratch)?;
            let mut done = 0;
            while done < n {
                match sys::pipe::write(out, &scratch[done..n]) {
                    Ok(k) => done += k,
                    Err(Errno::AGAIN) => core::hint::spin_loop(),
                    Err(e) => return Err(io::Error::from(e)),
                }
            }
            Ok(n)
        })();
        self.scratch = scratch;
        result
    }
}

impl AsFd for BulkReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pipe.as_fd()
    }
}

/// A new pipe as a bulk stream: `(reader, writer)`.
pub fn bulk_pipe(config: BulkConfig) -> Result<(BulkReader, BulkWriter), BulkError> {
    let (r, w) = super::pipe().map_err(|e| match e {
        super::CreateError::TooManyFiles(e) | super::CreateError::Other(e) => BulkError::Other(e),
    })?;
    Ok((BulkReader::new(r, config)?, BulkWriter::new(w, config)?))
}
