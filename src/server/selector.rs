//! Waiting for a request: Python's `_ServerSelector` (poll(2)), plus the
//! back-off that keeps an accept loop alive and idle when descriptors run out.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags};

use crate::sys;

/// What woke the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    /// The listening socket is readable: a request is waiting.
    Request,
    /// The shutdown waker fired.
    Wake,
    /// The timeout ran out, or a signal interrupted the wait.
    Timeout,
}

/// poll(2) on the listening socket and, if given, the wake-up fd. `None`
/// waits for ever; sub-millisecond timeouts round up so as never to spin.
pub(crate) fn select(
    listener: Option<BorrowedFd<'_>>,
    waker: Option<BorrowedFd<'_>>,
    timeout: Option<Duration>,
) -> io::Result<Ready> {
    let mut fds = Vec::with_capacity(2);
    if let Some(fd) = waker {
        fds.push(PollFd::new(fd, PollFlags::POLLIN));
    }
    if let Some(fd) = listener {
        fds.push(PollFd::new(fd, PollFlags::POLLIN));
    }
    match poll(&mut fds, sys::poll_timeout(timeout)) {
        Ok(0) | Err(Errno::EINTR) => return Ok(Ready::Timeout),
        Ok(_) => {}
        Err(errno) => return Err(errno.into()),
    }
    let fired = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
    if waker.is_some() && fired(&fds[0]) {
        Ok(Ready::Wake)
    } else {
        Ok(Ready::Request)
    }
}

/// Keeps `get_request` failures from killing or spinning the loop.
///
/// CPython swallows accept errors silently and tiny_http's accept loop exits
/// on the first one. When the process is out of descriptors (EMFILE) the
/// pending connection stays in the backlog, the listener stays readable and
/// a naive loop spins at 100% CPU. So: retry at once on EINTR/ECONNABORTED;
/// on anything else wait 10 ms, doubling to 1 s, and log once per burst.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    delay: Option<Duration>,
    failures: u64,
}

const FIRST_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_secs(1);

impl AcceptBackoff {
    /// How long to wait before the next accept, while backing off.
    pub(crate) fn delay(&self) -> Option<Duration> {
        self.delay
    }

    pub(crate) fn succeeded(&mut self, class: &str) {
        if self.failures > 0 {
            log::info!(
                "{class}: accepting again after {} failed attempts",
                self.failures
            );
        }
        self.delay = None;
        self.failures = 0;
    }

    pub(crate) fn failed(&mut self, class: &str, err: &io::Error) {
        let transient = matches!(
            err.raw_os_error().map(Errno::from_raw),
            Some(Errno::EINTR | Errno::ECONNABORTED | Errno::EPROTO)
        ) || err.kind() == io::ErrorKind::WouldBlock;
        if transient {
            log::debug!("{class}: get_request: {err}; retrying");
            return;
        }
        self.failures += 1;
        self.delay = Some(match self.delay {
            None => {
                log::warn!(
                    "{class}: get_request failed: {err}; backing off (logged once until it recovers)"
                );
                FIRST_DELAY
            }
            Some(delay) => (delay * 2).min(MAX_DELAY),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets() {
        let mut backoff = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(Errno::EMFILE as i32);
        backoff.failed("T", &emfile);
        assert_eq!(backoff.delay(), Some(FIRST_DELAY));
        for _ in 0..20 {
            backoff.failed("T", &emfile);
        }
        assert_eq!(backoff.delay(), Some(MAX_DELAY));
        backoff.succeeded("T");
        assert_eq!(backoff.delay(), None);
        backoff.failed(
            "T",
            &io::Error::from_raw_os_error(Errno::ECONNABORTED as i32),
        );
        assert_eq!(backoff.delay(), None, "ECONNABORTED is retried at once");
    }
}
