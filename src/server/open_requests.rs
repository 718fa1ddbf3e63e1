//! [`OpenRequests`]: the connections of the stream requests in flight, so
//! that a bounded stop can shut them down — a handler blocked in a read
//! then sees end-of-file (or an error), returns, and its `finish` and
//! `shutdown_request` run — and so that a request past its
//! [`request_timeout`](crate::Server::request_timeout) is cut the same way
//! by a watchdog thread.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use nix::sys::socket::{shutdown, Shutdown};
use parking_lot::{Condvar, Mutex};

use crate::Address;

/// The descriptors of the connections whose requests are being handled.
#[derive(Debug, Default)]
pub(crate) struct OpenRequests {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the watchdog when a nearer deadline is set.
    nearer: Condvar,
    /// Requests cut at their deadline.
    timed_out: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    /// The open requests' connections, with the deadline of each that has
    /// one.
    open: HashMap<RawFd, Option<Deadline>>,
    /// `stop` was called: a request that opens later is cut at once.
    stopping: bool,
    /// The process whose watchdog thread runs (a forked child's copy of
    /// this table has none: it starts its own).
    watchdog: Option<u32>,
    /// When the watchdog wakes next, unless woken.
    wakes_at: Option<Instant>,
}

#[derive(Debug)]
struct Deadline {
    at: Instant,
    timeout: Duration,
    client: Address,
}

/// A request's place in [`OpenRequests`], given up when dropped — which
/// must happen before the request's socket is closed.
#[derive(Debug)]
pub(crate) struct OpenRequest<'a> {
    registry: &'a OpenRequests,
    fd: RawFd,
}

impl OpenRequests {
    /// Records a request's connection for as long as the returned guard
    /// lives.
    pub(crate) fn open<'a>(&'a self, connection: BorrowedFd<'_>) -> OpenRequest<'a> {
        let fd = connection.as_raw_fd();
        let mut inner = self.shared.inner.lock();
        if inner.stopping {
            cut(fd);
        }
        inner.open.insert(fd, None);
        OpenRequest { registry: self, fd }
    }

    /// Shuts down every open request's connection, and those of requests
    /// that open from now on. Returns how many were open.
    pub(crate) fn stop(&self) -> usize {
        let mut inner = self.shared.inner.lock();
        inner.stopping = true;
        // Under the lock: a request gives up its place (taking this lock)
        // before its socket is closed, so every descriptor here is still
        // that request's open socket, never a number reused by another file.
        for &fd in inner.open.keys() {
            cut(fd);
        }
        inner.open.len()
    }

    /// Serving again after a stop: requests are no longer cut as they open.
    pub(crate) fn resume(&self) {
        self.shared.inner.lock().stopping = false;
    }

    /// Requests cut at their deadline so far.
    pub(crate) fn timed_out(&self) -> u64 {
        self.shared.timed_out.load(Ordering::Relaxed)
    }
}

impl OpenRequests {
    /// The request open on `connection` must end within `timeout` from
    /// now (replacing an earlier deadline): past it, the watchdog cuts the
    /// connection. Nothing happens if no request is open on it.
    pub(crate) fn set_deadline(
        &self,
        connection: BorrowedFd<'_>,
        timeout: Duration,
        client: &Address,
    ) {
        let shared = &self.shared;
        let at = Instant::now() + timeout;
        let mut inner = shared.inner.lock();
        let Some(deadline) = inner.open.get_mut(&connection.as_raw_fd()) else {
            return;
        };
        *deadline = Some(Deadline {
            at,
            timeout,
            client: client.clone(),
        });
        let pid = std::process::id();
        if inner.watchdog != Some(pid) {
            inner.watchdog = Some(pid);
            let weak = Arc::downgrade(shared);
            let started = std::thread::Builder::new()
                .name("socketserver-deadlines".into())
                .spawn(move || watch(&weak));
            if let Err(err) = started {
                inner.watchdog = None;
                log::error!("cannot start the request_timeout watchdog thread: {err}");
            }
        }
        // Most deadlines come after the watchdog's next wake-up: it sees
        // them then. A nearer one must wake it now.
        if inner.wakes_at.is_none_or(|wakes| at < wakes) {
            shared.nearer.notify_one();
        }
    }
}

/// How long the watchdog lingers with no deadline to watch before its
/// thread ends (the next deadline starts another).
const WATCHDOG_LINGER: Duration = Duration::from_secs(5);

/// The watchdog: sleeps until the nearest deadline, cuts the connections
/// past theirs, and ends once none has been set for [`WATCHDOG_LINGER`] or
/// the server is gone.
fn watch(shared: &Weak<Shared>) {
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut inner = shared.inner.lock();
        let now = Instant::now();
        let mut nearest: Option<Instant> = None;
        for (&fd, deadline) in inner.open.iter_mut() {
            let Some(d) = deadline else { continue };
            if d.at <= now {
                // Counted first: whoever sees the cut sees the count.
                shared.timed_out.fetch_add(1, Ordering::Relaxed);
                // Under the lock, as in `stop`: the descriptor is still
                // this request's.
                cut(fd);
                log::warn!(
                    "request from {} cut off: it ran past its request_timeout of {:?}",
                    d.client,
                    d.timeout
                );
                *deadline = None;
            } else {
                nearest = Some(nearest.map_or(d.at, |n| n.min(d.at)));
            }
        }
        let wait_until = nearest.unwrap_or(now + WATCHDOG_LINGER);
        inner.wakes_at = Some(wait_until);
        let timed_out = shared.nearer.wait_until(&mut inner, wait_until).timed_out();
        if timed_out && nearest.is_none() && !inner.open.values().any(Option::is_some) {
            inner.watchdog = None;
            inner.wakes_at = None;
            return;
        }
    }
}

/// shutdown(2) both ways: the peer sees the end, and a read or write
/// blocked on the socket in this process returns.
fn cut(fd: RawFd) {
    // ENOTCONN: the peer left already, which is all we wanted.
    let _ = shutdown(fd, Shutdown::Both);
}

impl Drop for OpenRequest<'_> {
    fn drop(&mut self) {
        self.registry.shared.inner.lock().open.remove(&self.fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn stop_cuts_open_requests_and_later_ones() {
        let registry = OpenRequests::default();
        let (mut client, server) = pair();
        let open = registry.open(server.as_fd());
        assert_eq!(registry.stop(), 1);
        // The server side reads end-of-file at once, the client too.
        assert_eq!((&server).read(&mut [0; 8]).unwrap(), 0);
        assert_eq!(client.read(&mut [0; 8]).unwrap(), 0);
        drop(open);

        let (_client, late) = pair();
        let _late = registry.open(late.as_fd());
        assert_eq!((&late).read(&mut [0; 8]).unwrap(), 0, "cut as it opens");
    }

    #[test]
    fn ended_requests_are_not_cut() {
        let registry = OpenRequests::default();
        let (mut client, server) = pair();
        let first = registry.open(server.as_fd());
        drop(first);
        let (_other_client, other) = pair();
        let second = registry.open(other.as_fd());
        drop(second);
        assert_eq!(registry.stop(), 0);
        // `server` was not cut: it still carries data.
        client.write_all(b"x").unwrap();
        assert_eq!((&server).read(&mut [0; 8]).unwrap(), 1);
        registry.resume();
        let (_c, third) = pair();
        let _third = registry.open(third.as_fd());
        third.set_nonblocking(true).unwrap();
        let err = (&third).read(&mut [0; 8]).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::WouldBlock,
            "not cut after resume"
        );
    }
}
