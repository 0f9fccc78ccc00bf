//! inotify: a descriptor that becomes readable when files appear in or
//! disappear from a directory.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

use super::{Errno, Result};

/// `inotify_init1(IN_NONBLOCK | IN_CLOEXEC)` and a watch on `dir` for
/// files created in it, deleted from it, or moved in or out of it.
#[doc(alias = "inotify_init1")]
#[doc(alias = "inotify_add_watch")]
pub fn watch_dir(dir: &str) -> Result<OwnedFd> {
    let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
    inotify::add_watch(
        &fd,
        dir,
        WatchFlags::CREATE | WatchFlags::DELETE | WatchFlags::MOVED_FROM | WatchFlags::MOVED_TO,
    )?;
    Ok(fd)
}

/// Reads every event waiting on `fd` (non-blocking) and calls `f` with
/// the name of each file it concerns, or `None` for a queue overflow
/// (events were lost: look again at everything); returns how many events
/// there were. `EINTR` is retried.
pub fn drain(fd: impl AsFd, mut f: impl FnMut(Option<&[u8]>)) -> Result<usize> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    let mut reader = inotify::Reader::new(fd.as_fd(), &mut buf);
    let mut n = 0;
    loop {
        match reader.next() {
            Ok(event) => {
                n += 1;
                if event.events().contains(ReadFlags::QUEUE_OVERFLOW) {
                    f(None);
                } else if let Some(name) = event.file_name() {
                    f(Some(name.to_bytes()));
                }
            }
            Err(Errno::AGAIN) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}
