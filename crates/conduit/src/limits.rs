//! The system limits that bound conduit's resources, read when asked.
//!
//! These are the limits that conduit's exhaustion errors name:
//! [`shared_memory_space`] for [`shm::Resource::SharedMemorySpace`], [`open_files`]
//! for [`shm::Resource::FileDescriptors`] and the `TooManyOpenFiles`
//! variants, [`memory_mappings`] and [`address_space`] for
//! [`shm::Resource::Mappings`] (each in a [`shm::ResourceExhausted`]), and
//! [`message_queue_bytes`] for [`mq::OpenError::ResourceLimit`].
//! `conduit limits` prints them all. The limits of one mechanism live with
//! it: [`pipe::max_capacity`], [`socket::MAX_FDS_PER_MESSAGE`] and
//! [`mq::MessageQueue::limits`].
//!
//! # Edges
//!
//! * Nothing is cached: each call reads the current value, so a limit
//!   raised with `setrlimit`/`ulimit` or `sysctl` shows at once.
//! * Resource limits (`RLIMIT_*`) are this process's *soft* limits, the
//!   ones the kernel enforces; `None` means unlimited.
//! * [`memory_mappings`] reads a file in `/proc`, so it needs a free file
//!   descriptor: with none left it reports `None` (unreadable).
//!
//! [`shm::Resource::SharedMemorySpace`]: crate::shm::Resource::SharedMemorySpace
//! [`shm::Resource::FileDescriptors`]: crate::shm::Resource::FileDescriptors
//! [`shm::Resource::Mappings`]: crate::shm::Resource::Mappings
//! [`shm::ResourceExhausted`]: crate::shm::ResourceExhausted
//! [`mq::OpenError::ResourceLimit`]: crate::mq::OpenError::ResourceLimit
//! [`pipe::max_capacity`]: crate::pipe::max_capacity
//! [`socket::MAX_FDS_PER_MESSAGE`]: crate::socket::MAX_FDS_PER_MESSAGE
//! [`mq::MessageQueue::limits`]: crate::mq::MessageQueue::limits

use crate::sys;
use crate::sys::Errno;

/// Space of the file system that holds POSIX shared memory (`/dev/shm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedMemorySpace {
    /// Bytes an unprivileged process can still allocate (`f_bavail`).
    pub free: u64,
    /// Size of the file system in bytes (`f_blocks`).
    pub total: u64,
}

/// Free and total bytes of `/dev/shm` (`statvfs`), where named segments
/// live (Docker gives a container 64 MiB unless told `--shm-size`).
#[doc(alias = "statvfs")]
pub fn shared_memory_space() -> Result<SharedMemorySpace, Errno> {
    let (free, total) = sys::shm::space()?;
    Ok(SharedMemorySpace { free, total })
}

/// How many file descriptors this process may hold (`RLIMIT_NOFILE`, soft
/// limit); `None` if unlimited. Every segment, port, pipe end and socket
/// holds one.
#[doc(alias = "RLIMIT_NOFILE")]
#[doc(alias = "getrlimit")]
pub fn open_files() -> Option<u64> {
    sys::process::descriptor_limit()
}

/// How many memory mappings one process may have (`vm.max_map_count`);
/// `None` if it cannot be read. Every mapped segment is one mapping or more.
#[doc(alias = "max_map_count")]
pub fn memory_mappings() -> Option<u64> {
    sys::process::max_map_count()
}

/// How many bytes of address space this process may map (`RLIMIT_AS`,
/// soft limit); `None` if unlimited.
#[doc(alias = "RLIMIT_AS")]
#[doc(alias = "getrlimit")]
pub fn address_space() -> Option<u64> {
    sys::process::address_space_limit()
}

/// How many bytes of POSIX message queues (messages plus overhead) this
/// user may allocate (`RLIMIT_MSGQUEUE`, soft limit); `None` if unlimited.
#[doc(alias = "RLIMIT_MSGQUEUE")]
#[doc(alias = "getrlimit")]
pub fn message_queue_bytes() -> Option<u64> {
    sys::mq::rlimit_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The soft limit named `what` in `/proc/self/limits` (read by other
    /// code than the functions under test): `None` for "unlimited".
    fn proc_soft_limit(what: &str) -> Option<u64> {
        let text = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("no {what:?} in /proc/self/limits"));
        let soft = line[what.len()..].split_whitespace().next().unwrap();
        if soft == "unlimited" {
            None
        } else {
            Some(soft.parse().unwrap())
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc and calls statvfs/getrlimit")]
    fn limits_match_what_the_kernel_reports() {
        assert_eq!(open_files(), proc_soft_limit("Max open files"));
        assert_eq!(address_space(), proc_soft_limit("Max address space"));
        assert_eq!(message_queue_bytes(), proc_soft_limit("Max msgqueue size"));
        let maps = memory_mappings().expect("vm.max_map_count is readable");
        assert!(maps > 0);
        let space = shared_memory_space().expect("/dev/shm is mounted");
        assert!(space.total > 0);
        assert!(space.free <= space.total, "{space:?}");
    }
}
