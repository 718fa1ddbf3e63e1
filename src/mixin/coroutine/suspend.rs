//! Blocking socket I/O that suspends a coroutine instead of its thread.
//!
//! Under [`CoroutineMixIn`](crate::CoroutineMixIn) a handler runs on a
//! coroutine (a stack of its own, switched in user space) and its connection
//! is non-blocking. A read or write on [`Connection`](crate::Connection) that
//! would block does not block the worker thread: it yields the coroutine with
//! what it waits for, the worker runs other handlers, and resumes this one
//! when epoll says the socket is ready (or its timeout passes). The handler's
//! code is the same blocking code as under threads — what gevent does for
//! Python's socketserver, without monkey-patching.
//!
//! Outside a coroutine every function here is the plain blocking call.
//! Without the `coroutine` feature, `crate::mixin::suspend` is
//! `mixin/without_coroutines.rs` instead: the same functions, only that.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use super::thread_locals;
use crate::sys;

pub(crate) use super::thread_locals::{in_coroutine, set_timeouts};

/// What a suspended coroutine waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// What a coroutine yields to its worker.
#[derive(Debug)]
pub(crate) enum Suspend {
    /// Resume me once `fd` may be ready (either way: the retried operation
    /// tells), or at `deadline`.
    Wait {
        fd: RawFd,
        deadline: Option<Instant>,
    },
    /// Resume me after the others that are ready: I have run
    /// [`BUDGET`](thread_locals::BUDGET) operations without waiting.
    Yield,
    /// Resume me at `deadline` (with [`Resume::TimedOut`]).
    Sleep { deadline: Instant },
}

/// What the worker sends back when it resumes a coroutine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// The socket reported readiness (or may have: retry the operation).
    Ready,
    /// The deadline passed first.
    TimedOut,
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out")
}

/// Runs a socket operation; inside a coroutine, each time it would block,
/// suspends until `fd` is ready for `interest` (failing with
/// [`io::ErrorKind::TimedOut`] after the timeout set for `fd`) and retries.
#[inline]
pub(crate) fn io<T>(
    fd: BorrowedFd<'_>,
    interest: Interest,
    op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let result = retry(fd, interest, op);
    spend_budget();
    result
}

/// A TCP read of up to `len` bytes through `op`, as [`io()`] does it, but
/// without the read that could only fail with EAGAIN: a TCP read returns
/// less than asked only when the socket had no more, so after a short read
/// the next one waits for epoll's next report first — unless one has come
/// since, or the peer has closed (both are kept per task, as tokio keeps
/// readiness per socket). One system call less per request.
#[inline]
pub(crate) fn read(
    fd: BorrowedFd<'_>,
    len: usize,
    op: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    if !in_coroutine() {
        return retry(fd, Interest::Read, op);
    }
    let registered = thread_locals::is_registered(fd.as_raw_fd());
    // Known empty: only a registered socket has its reports come here.
    if registered && thread_locals::readiness() == 0 {
        wait(fd, Interest::Read)?;
    }
    let result = retry(fd, Interest::Read, op);
    if matches!(result, Ok(n) if 0 < n && n < len) {
        thread_locals::forget_readable();
    }
    // After the readiness is settled: a yield lets the worker report more.
    spend_budget();
    result
}

/// The retry loop of [`io()`] and [`read`]: a read that would block also
/// tells that the socket is empty, until epoll reports it again.
#[inline]
fn retry<T>(
    fd: BorrowedFd<'_>,
    interest: Interest,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    loop {
        match op() {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock && in_coroutine() => {
                if interest == Interest::Read {
                    thread_locals::forget_readable();
                }
                wait(fd, interest)?;
            }
            result => return result,
        }
    }
}

/// Suspends until `fd` may be ready for `interest`, within its timeout.
fn wait(fd: BorrowedFd<'_>, interest: Interest) -> io::Result<()> {
    let deadline = thread_locals::timeout_of(fd.as_raw_fd(), interest).map(|t| Instant::now() + t);
    suspend_until_ready(fd, deadline)
}

/// Counts one completed operation against the running coroutine's budget,
/// yielding to the others on its worker when the budget is spent.
#[inline]
fn spend_budget() {
    if thread_locals::spend_budget() {
        yield_to_others();
    }
}

/// Lets the worker run the other ready coroutines before this one goes on.
fn yield_to_others() {
    thread_locals::suspend(Suspend::Yield);
}

/// The longest a datagram reply waits between two tries.
const SEND_RETRY_MAX: Duration = Duration::from_millis(16);

/// Sends one datagram through `op`, which is told whether to send without
/// blocking (`MSG_DONTWAIT`). Inside a coroutine it is, and a send that
/// would block (the socket's send buffer is full) suspends the coroutine
/// and tries again after 1 ms, then 2, 4, … up to 16 ms: the server's
/// socket is shared by every request and every worker, so it is not given
/// to one coroutine's epoll registration; a full UDP send buffer drains in
/// microseconds. Outside a coroutine it is the plain blocking send.
pub(crate) fn send_datagram(mut op: impl FnMut(bool) -> io::Result<usize>) -> io::Result<usize> {
    if !in_coroutine() {
        return op(false);
    }
    let mut pause = Duration::from_millis(1);
    loop {
        match op(true) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                thread_locals::suspend(Suspend::Sleep {
                    deadline: Instant::now() + pause,
                });
                pause = (pause * 2).min(SEND_RETRY_MAX);
            }
            result => {
                spend_budget();
                return result;
            }
        }
    }
}

/// Waits until `fd` is readable (data, end of file or an error for the next
/// read to report), at most `timeout`, then fails with
/// [`io::ErrorKind::TimedOut`]. Suspends only the coroutine when in one;
/// poll(2) otherwise.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    let deadline = timeout.map(|t| Instant::now() + t);
    if in_coroutine() {
        // Edge-triggered readiness only says "something changed": check.
        while !sys::poll_readable(fd, Some(Instant::now()))? {
            suspend_until_ready(fd, deadline)?;
        }
        return Ok(());
    }
    if sys::poll_readable(fd, deadline)? {
        Ok(())
    } else {
        Err(timed_out())
    }
}

/// Yields the current coroutine until its worker sees `fd` ready or
/// `deadline` passes.
fn suspend_until_ready(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<()> {
    thread_locals::register(fd)?;
    let fd = fd.as_raw_fd();
    match thread_locals::suspend(Suspend::Wait { fd, deadline }) {
        Resume::TimedOut => Err(timed_out()),
        Resume::Ready => Ok(()),
    }
}
