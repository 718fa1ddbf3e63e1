//! `crate::mixin::suspend` without the `coroutine` feature: the same small
//! API as `coroutine/suspend.rs`, for `Connection` and the PROXY reader,
//! with no coroutine to suspend — every call is the plain blocking one.
//! Nothing here runs on a coroutine, so `in_coroutine` is always `false`,
//! sockets stay blocking and SO_RCVTIMEO/SO_SNDTIMEO carry the timeouts.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use crate::sys;

/// What an operation would wait for (unused here: nothing waits but the
/// system call itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// Always `false`: there are no coroutines.
pub(crate) fn in_coroutine() -> bool {
    false
}

/// Does nothing: a blocking socket keeps its own timeouts.
pub(crate) fn set_timeouts(_: RawFd, _: Option<Duration>, _: Option<Duration>) {}

/// Runs the socket operation.
#[inline]
pub(crate) fn io<T>(
    _: BorrowedFd<'_>,
    _: Interest,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    op()
}

/// Runs the socket read.
#[inline]
pub(crate) fn read(
    _: BorrowedFd<'_>,
    _: usize,
    mut op: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    op()
}

/// Waits with poll(2) until `fd` is readable, at most `timeout`, then fails
/// with [`io::ErrorKind::TimedOut`].
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    let deadline = timeout.map(|t| Instant::now() + t);
    if sys::poll_readable(fd, deadline)? {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    }
}

/// Sends the datagram through `op`, blocking (`false`: no `MSG_DONTWAIT`).
#[inline]
pub(crate) fn send_datagram(mut op: impl FnMut(bool) -> io::Result<usize>) -> io::Result<usize> {
    op(false)
}
