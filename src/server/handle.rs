//! [`ServerHandle`]: shutting a server down from anywhere, without polling.
//!
//! Python's `shutdown()` sets a flag that `serve_forever` sees at its next
//! `select` timeout, so it takes up to `poll_interval` (gh-88932, still open).
//! Here the flag comes with a waker (an eventfd) that `serve_forever` polls
//! beside the listening socket: `shutdown()` wakes it and the loop wakes at
//! once.

use std::any::Any;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use super::connections::Connections;
use super::open_requests::{OpenRequest, OpenRequests};
use super::stats::{Counters, ServerStats};
use crate::sys::Waker;

/// A cheap, cloneable handle that shuts its server down: what `ctrlc`
/// handlers, other threads and request handlers (as `request.server`) hold.
///
/// ```
/// use socketserver::{BaseServer, StreamRequest, TCPServer};
/// use std::sync::Arc;
///
/// let server = Arc::new(TCPServer::new("127.0.0.1:0", |_: &mut StreamRequest<'_>| Ok(()))?);
/// let handle = server.shutdown_handle();
/// let serving = std::thread::spawn({
///     let server = server.clone();
///     move || server.serve_forever(None)
/// });
/// handle.shutdown()?; // returns once serve_forever has returned
/// serving.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

struct Shared {
    /// Python's `__shutdown_request`.
    shutdown_request: AtomicBool,
    state: Mutex<State>,
    /// Signalled when `is_shut_down` or `closed` becomes true.
    changed: Condvar,
    /// The server that serves, for `downcast`: weak, since it owns us.
    server: RwLock<Option<Weak<dyn Any + Send + Sync>>>,
    /// Polled by `serve_forever` beside the listening socket.
    waker: Waker,
    /// The connections of the requests in flight, for `stop_requests` and
    /// `request_timeout`.
    open_requests: OpenRequests,
    /// The connections open, for the limits and `stats`.
    connections: Connections,
    counters: Counters,
}

struct State {
    /// Python's `__is_shut_down` event: set when `serve_forever` returns.
    is_shut_down: bool,
    /// The thread running `serve_forever`, if any.
    serving: Option<ThreadId>,
    /// `server_close` has run: no loop will ever come to answer `shutdown`.
    closed: bool,
}

impl ServerHandle {
    pub(crate) fn new() -> io::Result<Self> {
        let waker = Waker::new()?;
        Ok(ServerHandle {
            shared: Arc::new(Shared {
                shutdown_request: AtomicBool::new(false),
                state: Mutex::new(State {
                    is_shut_down: false,
                    serving: None,
                    closed: false,
                }),
                changed: Condvar::new(),
                server: RwLock::new(None),
                open_requests: OpenRequests::default(),
                connections: Connections::default(),
                counters: Counters::default(),
                waker,
            }),
        })
    }

    /// Python's `shutdown()`: stops the `serve_forever` loop and waits until
    /// it has returned.
    ///
    /// The loop wakes at once (no `poll_interval` wait). Called before
    /// `serve_forever` starts, it makes the next `serve_forever` return at
    /// once (as Python). On a closed server with no loop running, it returns
    /// at once.
    ///
    /// # Errors
    ///
    /// Python deadlocks when `shutdown()` is called from the thread that runs
    /// `serve_forever` (a handler of a synchronous server). This returns an
    /// error of kind [`io::ErrorKind::WouldBlock`] instead, and does nothing:
    /// call [`request_shutdown`](ServerHandle::request_shutdown) there.
    pub fn shutdown(&self) -> io::Result<()> {
        let mut state = self.shared.state.lock();
        if state.serving == Some(thread::current().id()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "shutdown() called from the thread running serve_forever() would wait for \
                 itself for ever; call request_shutdown() from a handler instead",
            ));
        }
        self.request_shutdown();
        // A loop still running (even on a closed server) is waited for; a
        // closed server with none running has nothing to wait for.
        while state.serving.is_some() || (!state.is_shut_down && !state.closed) {
            self.shared.changed.wait(&mut state);
        }
        Ok(())
    }

    /// A bounded `shutdown()` (not in Python): stops the loop and waits for
    /// it at most `drain`; if a request still holds it then (a synchronous
    /// server's handler waiting on a silent client), shuts the requests'
    /// connections down with [`stop_requests`](ServerHandle::stop_requests)
    /// and waits up to [`STOP_GRACE`](crate::STOP_GRACE) more. Returns
    /// whether the loop has returned.
    ///
    /// # Errors
    ///
    /// As [`shutdown`](ServerHandle::shutdown): called from the serving
    /// thread.
    pub fn shutdown_within(&self, drain: Duration) -> io::Result<bool> {
        if self.shared.state.lock().serving == Some(thread::current().id()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "shutdown_within() called from the thread running serve_forever() would wait \
                 for itself",
            ));
        }
        self.request_shutdown();
        if self.wait_for_loop(drain) {
            return Ok(true);
        }
        self.stop_requests();
        Ok(self.wait_for_loop(crate::STOP_GRACE))
    }

    /// Waits at most `limit` for `serve_forever` to return; whether it has.
    fn wait_for_loop(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut state = self.shared.state.lock();
        while state.serving.is_some() {
            if self
                .shared
                .changed
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                break;
            }
        }
        state.serving.is_none()
    }

    /// Shuts down the connections of the stream requests in flight, and of
    /// those that start from now on until the server serves again: a
    /// handler blocked in a read sees end-of-file (or an error), returns,
    /// and its `finish` and `shutdown_request` run. What a bounded stop does
    /// when the drain deadline has passed; `server_close` calls it after the
    /// mix-in's `close_timeout`. Returns how many connections were cut.
    /// (Forked children have their own copies of their connections: the
    /// forking mix-in sends them SIGTERM instead.)
    pub fn stop_requests(&self) -> usize {
        let cut = self.shared.open_requests.stop();
        if cut > 0 {
            log::warn!("stopping: {cut} requests still in flight were cut off");
        }
        cut
    }

    /// Records a request's connection for [`stop_requests`](ServerHandle::stop_requests)
    /// while the returned guard lives: drop it before closing the socket.
    pub(crate) fn open_request(&self, connection: BorrowedFd<'_>) -> OpenRequest<'_> {
        self.shared.open_requests.open(connection)
    }

    /// What the server has done so far: connections open, accepted and
    /// refused (by reason), requests, errors and panics. Cheap (a lock to
    /// count the open connections, the rest atomics): a handler or a
    /// signal thread may log it at will.
    ///
    /// ```
    /// use socketserver::{BaseServer, StreamRequest, TCPServer};
    /// use std::io::Write;
    /// use std::sync::Arc;
    ///
    /// let server = Arc::new(TCPServer::new("127.0.0.1:0", |r: &mut StreamRequest<'_>| {
    ///     r.wfile.write_all(b"hi\n")
    /// })?);
    /// let client = std::net::TcpStream::connect(server.server_address())?;
    /// server.handle_request()?;
    /// assert_eq!(std::io::read_to_string(client)?, "hi\n");
    /// let stats = server.stats();
    /// assert_eq!((stats.accepted, stats.requests, stats.errors, stats.open), (1, 1, 0, 0));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stats(&self) -> ServerStats {
        let shared = &self.shared;
        shared
            .counters
            .snapshot(shared.connections.open(), shared.open_requests.timed_out())
    }

    /// Gives the request open on `connection` a deadline `timeout` from
    /// now ([`Server::request_timeout`](crate::Server::request_timeout)).
    pub(crate) fn set_request_deadline(
        &self,
        connection: BorrowedFd<'_>,
        timeout: Duration,
        client: &crate::Address,
    ) {
        self.shared
            .open_requests
            .set_deadline(connection, timeout, client);
    }

    pub(crate) fn connections(&self) -> &Connections {
        &self.shared.connections
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Asks `serve_forever` to stop and returns without waiting: the loop
    /// finishes the request in hand, then returns. Safe from any thread,
    /// including a handler of a synchronous server (not in Python).
    pub fn request_shutdown(&self) {
        self.shared.shutdown_request.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// The server that serves (Python's `self.server` in a handler), as the
    /// type `S` it was made as: a subclass's fields are its state, shared by
    /// every request. `None` when the server is of another type, or no
    /// longer exists. Set when `serve_forever` or `handle_request` starts.
    ///
    /// ```
    /// use socketserver::{BaseServer, StreamRequest, Synchronous, TCPServer, Tcp};
    /// use std::io::Write;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    ///
    /// /// Python: `class Counting(TCPServer)` with `self.count`.
    /// struct Counting {
    ///     base: TCPServer,
    ///     count: AtomicU64,
    /// }
    /// impl BaseServer for Counting {
    ///     type Transport = Tcp;
    ///     type MixIn = Synchronous;
    ///     fn base(&self) -> &TCPServer {
    ///         &self.base
    ///     }
    /// }
    ///
    /// fn handle(request: &mut StreamRequest<'_>) -> std::io::Result<()> {
    ///     let server = request.server.downcast::<Counting>().expect("a Counting server");
    ///     let n = server.count.fetch_add(1, Ordering::Relaxed) + 1;
    ///     writeln!(request.wfile, "you are visitor {n}")
    /// }
    ///
    /// let server = Arc::new(Counting {
    ///     base: TCPServer::new("127.0.0.1:0", handle)?,
    ///     count: AtomicU64::new(0),
    /// });
    /// let client = std::net::TcpStream::connect(server.server_address())?;
    /// server.handle_request()?;
    /// let reply = std::io::read_to_string(client)?;
    /// assert_eq!(reply, "you are visitor 1\n");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn downcast<S: Any + Send + Sync>(&self) -> Option<Arc<S>> {
        let server = self.shared.server.read().as_ref()?.upgrade()?;
        server.downcast().ok()
    }

    /// Records the server that serves, for [`downcast`](ServerHandle::downcast).
    pub(crate) fn serve_as<S: Any + Send + Sync>(&self, server: &Arc<S>) {
        let server: Arc<dyn Any + Send + Sync> = server.clone();
        *self.shared.server.write() = Some(Arc::downgrade(&server));
    }

    /// Whether `serve_forever` is running now.
    pub fn is_serving(&self) -> bool {
        self.shared.state.lock().serving.is_some()
    }

    pub(crate) fn shutdown_requested(&self) -> bool {
        self.shared.shutdown_request.load(Ordering::SeqCst)
    }

    /// Whether the server is stopping or has stopped: shut down (asked to,
    /// or `serve_forever` has returned since) or closed. A kept connection
    /// is not served again then.
    pub(crate) fn stopping(&self) -> bool {
        if self.shutdown_requested() {
            return true;
        }
        let state = self.shared.state.lock();
        state.is_shut_down || state.closed
    }

    pub(crate) fn waker(&self) -> BorrowedFd<'_> {
        self.shared.waker.as_fd()
    }

    /// Empties the waker after it woke the loop (or before the loop starts,
    /// so that a stale wake-up does not spin it).
    pub(crate) fn drain_waker(&self) {
        self.shared.waker.reset();
    }

    fn wake(&self) {
        self.shared.waker.wake();
    }

    /// Marks the server closed: a pending or later `shutdown()` returns at
    /// once, and a running loop stops.
    pub(crate) fn close(&self) {
        self.request_shutdown();
        self.shared.state.lock().closed = true;
        self.shared.changed.notify_all();
    }

    /// Enters `serve_forever`: clears Python's `__is_shut_down`, and leaves
    /// `__shutdown_request` alone so that an early `shutdown()` still counts.
    pub(crate) fn start_serving(&self) -> io::Result<Serving<'_>> {
        let mut state = self.shared.state.lock();
        if state.closed {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "serve_forever() called on a closed server",
            ));
        }
        if state.serving.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                "serve_forever() is already running in another thread",
            ));
        }
        state.serving = Some(thread::current().id());
        state.is_shut_down = false;
        self.shared.open_requests.resume();
        drop(state);
        self.drain_waker();
        Ok(Serving { handle: self })
    }
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("shutdown_request", &self.shutdown_requested())
            .field("serving", &self.is_serving())
            .finish()
    }
}

/// While alive, `serve_forever` is running; dropping it is Python's
/// `finally: __shutdown_request = False; __is_shut_down.set()`, and runs
/// even when the loop unwinds.
pub(crate) struct Serving<'a> {
    handle: &'a ServerHandle,
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        let shared = &self.handle.shared;
        let mut state = shared.state.lock();
        shared.shutdown_request.store(false, Ordering::SeqCst);
        state.serving = None;
        state.is_shut_down = true;
        shared.changed.notify_all();
    }
}
