//! File-descriptor passing (`SCM_RIGHTS`) and the protocol that splits a
//! long list of descriptors at the kernel's limit.
//!
//! `send_fds` sends `ceil(n / 253)` messages (one if `n == 0`), each with an
//! 8-byte payload `[total: u32 LE, first_index: u32 LE]` and up to 253
//! descriptors. `recv_fds` reads them in order and checks that the indices
//! follow on, so a foreign message is a protocol error, not a silent mix.
//! On a stream socket each payload is read with exactly 8 bytes requested,
//! so a read never reaches into the next chunk (whose descriptors ride on
//! its first byte).

use std::os::fd::{BorrowedFd, OwnedFd};

use super::{RecvError, SendError, recv_error, send_error};
use crate::sys;
use crate::sys::socket::{Kind, MAX_FDS_PER_MESSAGE};

pub(super) fn send_with_fds(
    fd: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<usize, SendError> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(SendError::TooManyFds { count: fds.len() });
    }
    if data.is_empty() && !fds.is_empty() {
        return Err(SendError::EmptyWithFds);
    }
    sys::socket::send_with_fds(fd, data, fds).map_err(|e| send_error(data.len(), e))
}

pub(super) fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    kind: Kind,
) -> Result<(usize, Vec<OwnedFd>), RecvError> {
    let r = sys::socket::recv_with_fds(fd, buf, false).map_err(recv_error)?;
    // Any early return below drops `r.fds`, closing them: no leak.
    if r.fds_truncated {
        return Err(RecvError::FdsTruncated);
    }
    if r.truncated {
        return Err(RecvError::Truncated {
            len: r.message_len,
            capacity: buf.len(),
        });
    }
    if r.len == 0 && r.fds.is_empty() && kind != Kind::Datagram {
        return Err(RecvError::Closed);
    }
    Ok((r.len, r.fds))
}

const CHUNK_HEADER: usize = 8;

pub(super) fn send_fds(fd: BorrowedFd<'_>, fds: &[BorrowedFd<'_>]) -> Result<(), SendError> {
    let total = u32::try_from(fds.len()).map_err(|_| SendError::TooManyFds { count: fds.len() })?;
    let mut first = 0usize;
    loop {
        let chunk = &fds[first..(first + MAX_FDS_PER_MESSAGE).min(fds.len())];
        let mut header = [0u8; CHUNK_HEADER];
        header[..4].copy_from_slice(&total.to_le_bytes());
        header[4..].copy_from_slice(&(first as u32).to_le_bytes());
        let mut sent = send_with_fds(fd, &header, chunk)?;
        // A stream may take the 8 bytes in parts; the descriptors went
        // with the first part.
        while sent < CHUNK_HEADER {
            sent += sys::socket::send(fd, &header[sent..], false)
                .map_err(|e| send_error(CHUNK_HEADER, e))?;
        }
        first += chunk.len();
        if first >= fds.len() {
            return Ok(());
        }
    }
}

pub(super) fn recv_fds(fd: BorrowedFd<'_>, kind: Kind) -> Result<Vec<OwnedFd>, RecvError> {
    let mut all: Vec<OwnedFd> = Vec::new();
    loop {
        let mut header = [0u8; CHUNK_HEADER];
        let (mut got, fds) = match recv_with_fds(fd, &mut header, kind) {
            Err(RecvError::Truncated { .. }) => {
                return Err(RecvError::Protocol(
                    "message longer than a descriptor-list chunk",
                ));
            }
            other => other?,
        };
        while got < CHUNK_HEADER {
            if kind != Kind::Stream {
                return Err(RecvError::Protocol("short descriptor-list message"));
            }
            let r = sys::socket::recv(fd, &mut header[got..], false).map_err(recv_error)?;
            if r.len == 0 {
                return Err(RecvError::Closed);
            }
            got += r.len;
        }
        let total = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let first = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if first != all.len() || first + fds.len() > total || (fds.is_empty() && total != 0) {
            return Err(RecvError::Protocol("descriptor-list chunk out of sequence"));
        }
        all.extend(fds);
        if all.len() == total {
            return Ok(all);
        }
    }
}
