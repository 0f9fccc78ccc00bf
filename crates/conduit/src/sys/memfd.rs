//! Anonymous memory files (`memfd_create`) and file seals.

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{MemfdFlags, SealFlags};

use super::Result;

/// Seals that can be applied to a memfd (`F_SEAL_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seals {
    /// `F_SEAL_SHRINK`: the file can no longer shrink (a receiver can trust
    /// that mapping up to the current size never faults).
    pub shrink: bool,
    /// `F_SEAL_GROW`: the file can no longer grow.
    pub grow: bool,
    /// `F_SEAL_WRITE`: the contents can no longer change.
    pub write: bool,
    /// `F_SEAL_SEAL`: no further seals can be added.
    pub seal: bool,
    /// `F_SEAL_FUTURE_WRITE` (Linux ≥ 5.1): mappings and descriptors that
    /// exist keep their access, but no new writable mapping and no
    /// `write(2)` are allowed any more; a receiver can only map it
    /// read-only. Unlike `F_SEAL_WRITE` it may be added while writable
    /// mappings exist. Older kernels refuse it with `EINVAL`.
    pub future_write: bool,
}

impl Seals {
    fn to_flags(self) -> SealFlags {
        let mut f = SealFlags::empty();
        if self.shrink {
            f |= SealFlags::SHRINK;
        }
        if self.grow {
            f |= SealFlags::GROW;
        }
        if self.write {
            f |= SealFlags::WRITE;
        }
        if self.seal {
            f |= SealFlags::SEAL;
        }
        if self.future_write {
            f |= SealFlags::FUTURE_WRITE;
        }
        f
    }

    fn from_flags(f: SealFlags) -> Self {
        Seals {
            shrink: f.contains(SealFlags::SHRINK),
            grow: f.contains(SealFlags::GROW),
            write: f.contains(SealFlags::WRITE),
            seal: f.contains(SealFlags::SEAL),
            future_write: f.contains(SealFlags::FUTURE_WRITE),
        }
    }
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`: creates an
/// anonymous memory file. `name` only appears in `/proc/<pid>/fd`; the file
/// has no name in any file system.
#[doc(alias = "memfd_create")]
pub fn create(name: &str) -> Result<OwnedFd> {
    rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
}

/// `fcntl(fd, F_ADD_SEALS, seals)`: adds seals to a memfd.
#[doc(alias = "fcntl")]
#[doc(alias = "F_ADD_SEALS")]
pub fn add_seals(fd: impl AsFd, seals: Seals) -> Result<()> {
    rustix::fs::fcntl_add_seals(fd, seals.to_flags())
}

/// `fcntl(fd, F_GET_SEALS)`: the seals a memfd carries. `EINVAL` for a file
/// that does not support sealing.
#[doc(alias = "fcntl")]
#[doc(alias = "F_GET_SEALS")]
pub fn seals(fd: impl AsFd) -> Result<Seals> {
    rustix::fs::fcntl_get_seals(fd).map(Seals::from_flags)
}
