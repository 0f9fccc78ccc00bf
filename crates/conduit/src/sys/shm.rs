//! POSIX shared-memory objects (`shm_open`, `shm_unlink`).
//!
//! On Linux these are files in the tmpfs mounted at `/dev/shm`; a name is
//! `/` followed by at most 254 bytes without another `/`.

use std::os::fd::OwnedFd;

use rustix::fs::Mode;
use rustix::shm::OFlags;

use super::Result;

/// How [`open`] treats an existing or missing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// `O_CREAT | O_EXCL | O_RDWR`: create; fail with `EEXIST` if it exists.
    CreateExclusive,
    /// `O_RDWR`: open an existing object for reading and writing.
    ReadWrite,
    /// `O_RDONLY`: open an existing object for reading only.
    ReadOnly,
}

/// `shm_open(name, flags, mode)`: opens or creates a POSIX shared-memory
/// object. The descriptor is close-on-exec.
///
/// `name` must start with `/`. `mode` is only used when creating.
#[doc(alias = "shm_open")]
pub fn open(name: &str, how: OpenMode, mode: u32) -> Result<OwnedFd> {
    let flags = match how {
        OpenMode::CreateExclusive => OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
        OpenMode::ReadWrite => OFlags::RDWR,
        OpenMode::ReadOnly => OFlags::RDONLY,
    };
    rustix::shm::open(name, flags, Mode::from_raw_mode(mode))
}

/// `shm_unlink(name)`: removes the name of a shared-memory object.
///
/// The name disappears at once; the memory stays until the last descriptor
/// and mapping of it are gone (the kernel's file semantics).
#[doc(alias = "shm_unlink")]
pub fn unlink(name: &str) -> Result<()> {
    rustix::shm::unlink(name)
}

/// Free and total bytes of the file system that holds POSIX shared memory
/// (`statvfs("/dev/shm")`). Used to explain an `ENOSPC`.
#[doc(alias = "statvfs")]
pub fn space() -> Result<(u64, u64)> {
    let st = rustix::fs::statvfs("/dev/shm")?;
    Ok((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}

/// Lists the names (without the leading `/`) of the POSIX shared-memory
/// objects whose name starts with `prefix` (`readdir("/dev/shm")`).
#[doc(alias = "readdir")]
pub fn list(prefix: &str) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/dev/shm")? {
        let entry = entry?;
        if let Some(name) = entry.file_name().to_str() {
            if name.starts_with(prefix) {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}
