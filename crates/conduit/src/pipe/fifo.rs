//! Named pipes (FIFOs).

use std::path::{Path, PathBuf};

use super::{Reader, Writer};
use crate::shm::Permissions;
use crate::sys;
use crate::sys::Errno;
use crate::sys::pipe::FifoEnd;

/// Error creating or opening a FIFO.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FifoError {
    /// `create`: something already exists at the path.
    #[error("cannot create FIFO {path}: the path already exists")]
    AlreadyExists {
        /// The path.
        path: PathBuf,
        /// `EEXIST`.
        #[source]
        source: Errno,
    },
    /// `open`: no FIFO at the path (or a parent directory is missing).
    #[error("no FIFO at {path}")]
    NotFound {
        /// The path.
        path: PathBuf,
        /// `ENOENT`.
        #[source]
        source: Errno,
    },
    /// The mode or a parent directory forbids access.
    #[error("permission denied for FIFO {path}")]
    PermissionDenied {
        /// The path.
        path: PathBuf,
        /// `EACCES`/`EPERM`.
        #[source]
        source: Errno,
    },
    /// A non-blocking open for writing found no reader.
    #[error("FIFO {path} has no reader")]
    NoReader {
        /// The path.
        path: PathBuf,
        /// `ENXIO`.
        #[source]
        source: Errno,
    },
    /// Any other failure.
    #[error("FIFO {path}: operation failed")]
    Other {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

fn fifo_error(path: &Path, source: Errno) -> FifoError {
    let path = path.to_owned();
    match source {
        Errno::EXIST => FifoError::AlreadyExists { path, source },
        Errno::NOENT => FifoError::NotFound { path, source },
        Errno::ACCESS | Errno::PERM => FifoError::PermissionDenied { path, source },
        Errno::NXIO => FifoError::NoReader { path, source },
        source => FifoError::Other { path, source },
    }
}

/// A named pipe created by this process; the name is removed from the file
/// system when the `Fifo` is dropped (open ends keep working).
///
/// A FIFO behaves like an anonymous pipe once open. Opening one end blocks
/// until the other end is opened too, unless non-blocking.
#[derive(Debug)]
pub struct Fifo {
    path: PathBuf,
}

impl Fifo {
    /// `mkfifo(path, mode)`: creates a FIFO with exactly `mode` (e.g.
    /// `0o600`; the umask is not applied). Fails if the path exists.
    pub fn create(path: impl AsRef<Path>, mode: u32) -> Result<Fifo, FifoError> {
        let path = path.as_ref();
        sys::pipe::make_fifo(path, mode).map_err(|e| fifo_error(path, e))?;
        Ok(Fifo {
            path: path.to_owned(),
        })
    }

    /// Creates a FIFO that the owner only (mode 0600), or also the members
    /// of a group (mode 0660, the FIFO given to that group: the creator
    /// must be a member or have `CAP_CHOWN`), may open: the same
    /// [`Permissions`] as shared-memory objects. The FIFO is made with
    /// 0600 and only then given to the group and widened, so it is never
    /// open to more than asked for; use a directory where nobody else can
    /// replace the name (a private or sticky one) for the few
    /// instructions between.
    pub fn create_with(
        path: impl AsRef<Path>,
        permissions: Permissions,
    ) -> Result<Fifo, FifoError> {
        let fifo = Fifo::create(path, 0o600)?;
        if permissions.gid().is_some() {
            // On error `fifo` drops and removes the name.
            sys::fd::set_path_permissions(&fifo.path, permissions.mode(), permissions.gid())
                .map_err(|e| fifo_error(&fifo.path, e))?;
        }
        Ok(fifo)
    }

    /// The FIFO's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the read end; blocks until a writer opens the FIFO.
    pub fn open_reader(&self) -> Result<Reader, FifoError> {
        open_reader(&self.path)
    }

    /// Opens the write end; blocks until a reader opens the FIFO.
    pub fn open_writer(&self) -> Result<Writer, FifoError> {
        open_writer(&self.path)
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = sys::pipe::unlink(&self.path);
    }
}

/// Opens the read end of an existing FIFO; blocks until a writer opens it.
pub fn open_reader(path: impl AsRef<Path>) -> Result<Reader, FifoError> {
    let path = path.as_ref();
    sys::pipe::open_fifo(path, FifoEnd::Read, false)
        .map(Reader::from_fd)
        .map_err(|e| fifo_error(path, e))
}

/// Opens the write end of an existing FIFO; blocks until a reader opens it.
pub fn open_writer(path: impl AsRef<Path>) -> Result<Writer, FifoError> {
    let path = path.as_ref();
    sys::pipe::open_fifo(path, FifoEnd::Write, false)
        .map(Writer::from_fd)
        .map_err(|e| fifo_error(path, e))
}
