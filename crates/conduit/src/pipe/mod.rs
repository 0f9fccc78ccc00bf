//! Pipes and FIFOs: anonymous pipes (also to child processes), named
//! FIFOs, pipe capacity control, a framed typed channel over any byte
//! stream ([`framed`]) and a bulk byte stream that moves pages instead of
//! copying them ([`bulk`]).
//!
//! # Closed peers and `SIGPIPE`
//!
//! Writing to a pipe whose reader is gone raises `SIGPIPE`, whose default
//! action kills the process. The Rust runtime sets `SIGPIPE` to "ignore"
//! before `main` in ordinary binaries, but a library cannot rely on that
//! (a C host program, `#[unix_sigpipe]`, or an `extern "C" fn main`). So
//! every conduit writer calls [`ensure_sigpipe_ignored`] when it is built:
//! if the disposition is still the default, it is set to ignore (what the
//! runtime would have done); a handler the program installed is kept. A
//! write to a closed pipe is then the error value
//! [`std::io::ErrorKind::BrokenPipe`] / `PeerGone`, never a dead process.
//!
//! `EINTR` is retried inside every call; short writes are continued by
//! `write_all` and the framed channel.

pub mod bulk;
mod fifo;
pub mod framed;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};

pub use fifo::{Fifo, FifoError, open_reader as open_fifo_reader, open_writer as open_fifo_writer};

use crate::sys;
use crate::sys::Errno;

/// Makes sure a closed peer shows up as `EPIPE`, not as a `SIGPIPE` that
/// kills the process (see the [module docs](self)). Cheap after the first
/// call.
pub fn ensure_sigpipe_ignored() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = sys::pipe::ignore_sigpipe_if_default();
    });
}

/// Error creating a pipe.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The process or the system is out of file descriptors.
    #[error(
        "cannot create a pipe: {}",
        crate::shm::descriptor_hint(*.0, sys::process::descriptor_limit())
    )]
    TooManyFiles(#[source] Errno),
    /// Any other failure of `pipe2`.
    #[error("cannot create a pipe")]
    Other(#[source] Errno),
}

fn create_error(e: Errno) -> CreateError {
    match e {
        Errno::MFILE | Errno::NFILE => CreateError::TooManyFiles(e),
        e => CreateError::Other(e),
    }
}

/// Error changing the capacity of a pipe ([`Writer::set_capacity`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetCapacityError {
    /// An unprivileged process asked for more than the system limit.
    #[error(
        "pipe capacity {requested} bytes refused: the limit for unprivileged processes is {limit} bytes (/proc/sys/fs/pipe-max-size)"
    )]
    AboveLimit {
        /// Bytes asked for.
        requested: usize,
        /// `/proc/sys/fs/pipe-max-size` (0 if unreadable).
        limit: usize,
        /// `EPERM`.
        #[source]
        source: Errno,
    },
    /// The user's pipe buffers exceed `/proc/sys/fs/pipe-user-pages-soft`
    /// or `-hard`, or the pipe holds more data than the requested size.
    #[error(
        "pipe capacity {requested} bytes refused: pipe holds more data, or per-user pipe pages exhausted"
    )]
    Busy {
        /// Bytes asked for.
        requested: usize,
        /// `EBUSY`.
        #[source]
        source: Errno,
    },
    /// Any other failure.
    #[error("cannot set the pipe capacity to {requested} bytes")]
    Other {
        /// Bytes asked for.
        requested: usize,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

pub(crate) fn set_capacity(
    fd: BorrowedFd<'_>,
    requested: usize,
) -> Result<usize, SetCapacityError> {
    sys::pipe::set_size(fd, requested).map_err(|source| match source {
        Errno::PERM => SetCapacityError::AboveLimit {
            requested,
            limit: sys::pipe::max_size().unwrap_or(0),
            source,
        },
        Errno::BUSY => SetCapacityError::Busy { requested, source },
        source => SetCapacityError::Other { requested, source },
    })
}

/// `/proc/sys/fs/pipe-max-size`: the largest capacity an unprivileged
/// process may give a pipe.
pub fn max_capacity() -> io::Result<usize> {
    sys::pipe::max_size().map_err(io::Error::from)
}

/// Creates an anonymous pipe: `(reader, writer)`. Both ends are
/// close-on-exec; hand one to a child with [`spawn_with_stdin`],
/// [`spawn_with_stdout`] or `Stdio::from(OwnedFd::from(end))`.
pub fn pipe() -> Result<(Reader, Writer), CreateError> {
    let (r, w) = sys::pipe::pipe().map_err(create_error)?;
    ensure_sigpipe_ignored();
    Ok((Reader { fd: r }, Writer { fd: w }))
}

macro_rules! fd_wrapper {
    ($t:ident) => {
        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.fd.as_fd()
            }
        }
        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.fd.as_raw_fd()
            }
        }
        impl From<$t> for OwnedFd {
            fn from(end: $t) -> OwnedFd {
                end.fd
            }
        }
        impl IntoRawFd for $t {
            fn into_raw_fd(self) -> RawFd {
                self.fd.into_raw_fd()
            }
        }
        impl $t {
            /// Wraps a descriptor the caller knows to be this end of a
            /// pipe or FIFO.
            ///
            /// A descriptor of another kind is not unsafe, merely
            /// surprising: operations fail with the OS error.
            pub fn from_fd(fd: OwnedFd) -> Self {
                ensure_sigpipe_ignored();
                $t { fd }
            }

            /// Capacity of the pipe in bytes (`F_GETPIPE_SZ`).
            pub fn capacity(&self) -> io::Result<usize> {
                sys::pipe::size(&self.fd).map_err(io::Error::from)
            }

            /// Sets the capacity of the pipe (`F_SETPIPE_SZ`); the kernel
            /// rounds up to a power-of-two number of pages and the new
            /// capacity is returned. Refusals name the limit that was hit.
            pub fn set_capacity(&self, bytes: usize) -> Result<usize, SetCapacityError> {
                set_capacity(self.fd.as_fd(), bytes)
            }

            /// Switches `O_NONBLOCK` on or off.
            pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
                sys::pipe::set_nonblocking(&self.fd, nonblocking).map_err(io::Error::from)
            }
        }
    };
}

/// The read end of a pipe or FIFO. Reading returns `Ok(0)` once every
/// writer has closed its end (or died) and the pipe is drained.
#[derive(Debug)]
pub struct Reader {
    fd: OwnedFd,
}

/// The write end of a pipe or FIFO. Writing after every reader closed (or
/// died) fails with [`io::ErrorKind::BrokenPipe`]; see the module docs on
/// `SIGPIPE`.
#[derive(Debug)]
pub struct Writer {
    fd: OwnedFd,
}

fd_wrapper!(Reader);
fd_wrapper!(Writer);

impl io::Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::pipe::read(&self.fd, buf).map_err(io::Error::from)
    }
    fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        sys::pipe::read_vectored(&self.fd, bufs).map_err(io::Error::from)
    }
}

impl io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::pipe::write(&self.fd, buf).map_err(io::Error::from)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        sys::pipe::write_vectored(&self.fd, bufs).map_err(io::Error::from)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Spawns `cmd` with the read end of a new pipe as its standard input and
/// returns the child and the write end. Dropping the writer gives the
/// child end of file.
pub fn spawn_with_stdin(cmd: &mut Command) -> io::Result<(Child, Writer)> {
    let (r, w) = pipe().map_err(io::Error::other)?;
    // Stdio::from(OwnedFd) dup2s the fd onto 0 in the child; our copy of
    // the read end is closed when `cmd` is dropped or reconfigured, so we
    // drop it right after spawning by replacing stdin.
    cmd.stdin(Stdio::from(OwnedFd::from(r)));
    let child = cmd.spawn();
    cmd.stdin(Stdio::null());
    Ok((child?, w))
}

/// Spawns `cmd` with the write end of a new pipe as its standard output and
/// returns the child and the read end. The reader sees end of file once the
/// child (and any grandchild holding the pipe) has exited.
pub fn spawn_with_stdout(cmd: &mut Command) -> io::Result<(Child, Reader)> {
    let (r, w) = pipe().map_err(io::Error::other)?;
    cmd.stdout(Stdio::from(OwnedFd::from(w)));
    let child = cmd.spawn();
    // Drop our copy of the write end now, or we would never see EOF.
    cmd.stdout(Stdio::inherit());
    Ok((child?, r))
}

/// Hands a pipe end to a child process started from `cmd`: the child
/// inherits a duplicate of `end` and finds its number in the environment
/// variable `env`; it takes ownership with [`Reader::from_env`] /
/// [`Writer::from_env`].
///
/// In this process the duplicate stays close-on-exec (so children that
/// other threads spawn meanwhile do not inherit it, which would keep the
/// pipe open and hide end of file); only the child clears the flag,
/// between `fork` and `exec`. Keep the returned guard until `cmd` has been
/// spawned, then drop it.
pub fn pass_to_child(end: impl AsFd, cmd: &mut Command, env: &str) -> io::Result<InheritedFd> {
    use std::os::unix::process::CommandExt;
    let fd = sys::pipe::dup_cloexec(end.as_fd()).map_err(io::Error::from)?;
    let raw = fd.as_raw_fd();
    cmd.env(env, raw.to_string());
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls fcntl(F_SETFD), which is async-signal-safe, allocates nothing
    // and takes no lock. `raw` is open in the child because the guard
    // keeps it open in the parent until after spawning.
    unsafe {
        cmd.pre_exec(move || sys::pipe::clear_cloexec_in_child(raw).map_err(io::Error::from));
    }
    Ok(InheritedFd { _fd: fd })
}

/// The parent's duplicate of a descriptor handed to a child by
/// [`pass_to_child`]; drop it once the child is spawned.
#[derive(Debug)]
pub struct InheritedFd {
    _fd: OwnedFd,
}

/// Takes ownership of a descriptor handed over by [`pass_to_child`]
/// (any kind: pipe end, socket, memfd) through the environment variable
/// `env`; it is made close-on-exec again. Call it once per variable: a
/// second call would own the same descriptor twice.
pub fn take_inherited_fd(env: &str) -> io::Result<OwnedFd> {
    let value = std::env::var(env)
        .map_err(|_| io::Error::new(io::ErrorKind::NotFound, format!("{env} is not set")))?;
    let raw: RawFd = value.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{env}={value} is not a fd"),
        )
    })?;
    if !sys::pipe::is_open(raw) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{env}={value}: no such open descriptor"),
        ));
    }
    // SAFETY: the descriptor was checked to be open, and was handed to this
    // process by `pass_to_child` for it to own; the variable is removed
    // from nothing, so the caller must call `from_env` once per variable
    // (documented on the callers).
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    sys::pipe::set_cloexec(&fd).map_err(io::Error::from)?;
    Ok(fd)
}

impl Reader {
    /// Takes ownership of a pipe end handed over by [`pass_to_child`]
    /// through the environment variable `env`. Call it once per variable:
    /// a second call would own the same descriptor twice.
    pub fn from_env(env: &str) -> io::Result<Reader> {
        take_inherited_fd(env).map(Reader::from_fd)
    }
}

impl Writer {
    /// Takes ownership of a pipe end handed over by [`pass_to_child`]
    /// through the environment variable `env`. Call it once per variable:
    /// a second call would own the same descriptor twice.
    pub fn from_env(env: &str) -> io::Result<Writer> {
        take_inherited_fd(env).map(Writer::from_fd)
    }
}
