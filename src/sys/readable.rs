//! Waiting for one descriptor to become readable with poll(2): the blocking
//! wait of `Connection::wait_readable`, and the check a coroutine makes
//! after an edge-triggered report.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags};

use super::{poll_timeout, remaining};

/// poll(2) for readability until `deadline` (for ever without one; at once
/// with one that has passed): whether `fd` is readable.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let wait = poll_timeout(deadline.map(remaining));
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, wait) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
}
