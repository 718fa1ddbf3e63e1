//! [`CoroutineMixIn`] and its settings: what `process_request` does under
//! coroutines (hand the request to a worker) and what `server_close` waits
//! for.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use parking_lot::Mutex;

use super::thread_locals;
use super::worker::{Job, TakeDatagram, Workers};
use crate::mixin::in_flight::InFlight;
use crate::mixin::{work, MixIn};
use crate::{AddressOf, BaseServer, RequestOf, ServerHandle};

/// The default stack size of a request coroutine: 256 KiB of address space,
/// of which a coroutine touches only the pages its handler uses.
pub const DEFAULT_COROUTINE_STACK_SIZE: usize = 256 * 1024;

/// Each request runs on a coroutine of its own; a few worker threads (one
/// per core by default) run every coroutine — the model of gevent, or of
/// Go's goroutines, under Python's blocking `RequestHandler`. Feature
/// `coroutine` (on by default; it brings the `corosensei` crate).
///
/// Handlers are written exactly as for [`ThreadingMixIn`]: `rfile`,
/// `wfile` and [`Connection`] read and write as if blocking. Underneath, the
/// connection is non-blocking; a read or write that would block suspends the
/// coroutine (a user-space switch, no system call), its worker runs the
/// other coroutines, and epoll resumes it when the socket is ready. So a
/// request costs no thread and no kernel context switch: at 50 busy
/// connections this mode serves tokio's rate where thread-per-connection
/// pays a context switch per request (docs/benchmarks.md). Timeouts
/// ([`StreamOptions::timeout`](crate::StreamOptions::timeout),
/// [`Connection::set_timeout`]) keep working.
///
/// # The rules a coroutine handler lives by
///
/// A worker runs one coroutine at a time and switches only where a
/// coroutine suspends: in a read or write through the request's `rfile`,
/// `wfile` or [`Connection`] (or a datagram reply) that would block. So:
///
/// * **A blocking call blocks the worker.** `std::thread::sleep`, a long
///   computation, blocking I/O on a socket, file or pipe of the handler's
///   own, a blocking channel receive, a database client: every other
///   request on that worker waits meanwhile. A resumption that keeps its
///   worker over 100 ms is logged (`log::warn!`, naming the request's
///   client, at most once a second per worker). Such handlers belong on
///   [`ThreadingMixIn`] or [`ThreadPoolMixIn`].
/// * **A lock held across a suspending read or write can deadlock the
///   worker.** The coroutine suspends with the lock held; another coroutine
///   on the same worker that takes the lock blocks the thread — and with it
///   the coroutine that would release it. Release locks before I/O on the
///   connection (`parking_lot` and `std` locks alike).
/// * **Thread-locals are shared by every coroutine on a worker**, and a
///   request's coroutine may see another's values between two of its
///   suspensions. Keep per-request state in the handler, not in a
///   `thread_local!`.
/// * **The stack is [`stack_size`](CoroutineMixIn::stack_size)** (256 KiB
///   by default): a handler that recurses deeper overflows it, and the
///   process aborts with `thread 'socketserver-coroutines-N' has overflowed
///   a request coroutine's stack`, as it does when a thread overflows.
///
/// # When resources run out
///
/// A stack that cannot be mapped (the address space exhausted, e.g. under
/// `RLIMIT_AS`) is an error for that request alone: `handle_error` is
/// called with it, the connection is shut down, and the worker serves the
/// others and later requests. A worker whose own loop fails is logged and
/// started again with its requests. Finished coroutines' stacks are kept
/// for the next requests (32 per worker).
///
/// Datagram servers accept it too: each datagram's handler runs on a
/// coroutine, and its reply is sent without blocking the worker. Under
/// `serve_forever` the workers read the server's socket themselves (a
/// datagram wakes one of them, which takes what is waiting), so for a
/// datagram server `get_request`, `verify_request` and `process_request`
/// run on the worker threads, not on the thread in `serve_forever`, and
/// `service_actions` runs only as often as `poll_interval` says. As in
/// Python, `shutdown` must not be called from those three:
/// `serve_forever` waits for them as it returns.
///
/// ```
/// use std::io::{BufRead, Read, Write};
/// use socketserver::{BaseServer, CoroutineTCPServer, StreamRequest};
///
/// let mut server = CoroutineTCPServer::new("127.0.0.1:0", |r: &mut StreamRequest<'_>| {
///     let mut line = String::new();
///     while r.rfile.read_line(&mut line)? > 0 {
///         r.wfile.write_all(line.to_uppercase().as_bytes())?;
///         line.clear();
///     }
///     Ok(())
/// })?;
/// server.mixin.workers = 1;
/// let addr = server.server_address();
/// let server = std::sync::Arc::new(server);
/// let serving = std::thread::spawn({
///     let server = server.clone();
///     move || server.serve_forever(None)
/// });
/// // Two clients at once on one worker thread: neither waits for the other.
/// let mut first = std::net::TcpStream::connect(addr)?;
/// let mut second = std::net::TcpStream::connect(addr)?;
/// second.write_all(b"second\n")?;
/// first.write_all(b"first\n")?;
/// let mut reply = [0; 7];
/// second.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"SECOND\n");
/// first.read_exact(&mut reply[..6])?;
/// assert_eq!(&reply[..6], b"FIRST\n");
/// drop((first, second));
/// server.shutdown();
/// serving.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// [`Connection`]: crate::Connection
/// [`Connection::set_timeout`]: crate::Connection::set_timeout
/// [`ThreadingMixIn`]: crate::ThreadingMixIn
/// [`ThreadPoolMixIn`]: crate::ThreadPoolMixIn
#[derive(Debug)]
pub struct CoroutineMixIn {
    /// Worker threads, started at the first request. Defaults to the
    /// number of cores (`std::thread::available_parallelism`).
    pub workers: usize,
    /// Stack size of each request's coroutine. Defaults to
    /// [`DEFAULT_COROUTINE_STACK_SIZE`].
    pub stack_size: usize,
    /// Python's `block_on_close`: when `true`, `server_close` waits for the
    /// requests in flight to finish. Defaults to `true`.
    pub block_on_close: bool,
    /// How long `server_close` waits at most when it blocks. Defaults to
    /// `None`: for ever, as Python.
    pub close_timeout: Option<Duration>,
    pool: Mutex<Option<Arc<Workers>>>,
    in_flight: Arc<InFlight>,
}

impl Default for CoroutineMixIn {
    fn default() -> Self {
        CoroutineMixIn {
            workers: thread::available_parallelism().map_or(1, usize::from),
            stack_size: DEFAULT_COROUTINE_STACK_SIZE,
            block_on_close: true,
            close_timeout: None,
            pool: Mutex::new(None),
            in_flight: Arc::default(),
        }
    }
}

impl CoroutineMixIn {
    /// How many requests are running now (suspended ones included).
    pub fn active_requests(&self) -> usize {
        self.in_flight.count()
    }

    /// Has the workers take `socket`'s datagrams themselves with `take`
    /// (which runs `get_request` to `process_request` for one), until the
    /// guard returned is dropped: what `serve_forever` does for a datagram
    /// server in this mode. The serving thread then only waits for
    /// `shutdown`.
    pub(crate) fn take_datagrams<F: AsFd>(
        &self,
        socket: Arc<F>,
        take: TakeDatagram,
    ) -> io::Result<TakingDatagrams<F>> {
        let workers = self.workers()?;
        workers.take_datagrams(socket.as_fd(), take)?;
        Ok(TakingDatagrams { workers, socket })
    }

    /// The worker threads, started on first use.
    fn workers(&self) -> std::io::Result<Arc<Workers>> {
        let mut pool = self.pool.lock();
        if let Some(workers) = &*pool {
            return Ok(Arc::clone(workers));
        }
        let workers = Arc::new(Workers::start(self.workers.max(1), self.stack_size)?);
        *pool = Some(Arc::clone(&workers));
        Ok(workers)
    }
}

/// The workers take a datagram socket's requests while this lives; when it
/// is dropped, the takes under way end and no other starts.
pub(crate) struct TakingDatagrams<F: AsFd> {
    workers: Arc<Workers>,
    socket: Arc<F>,
}

impl<F: AsFd> Drop for TakingDatagrams<F> {
    fn drop(&mut self) {
        self.workers.stop_taking_datagrams(self.socket.as_fd());
    }
}

impl MixIn for CoroutineMixIn {
    /// Hands the request to a worker (in turn), which runs
    /// [`process_request_thread`](crate::mixin::process_request_thread) on
    /// a new coroutine. If no worker can take it, the request goes to
    /// `handle_error` and is shut down.
    fn process_request<S: BaseServer + ?Sized>(
        &self,
        server: &Arc<S>,
        request: RequestOf<S>,
        client_address: AddressOf<S>,
    ) {
        let running = self.in_flight.start();
        let client = client_address.clone().into();
        let work = work(server, request, client_address, running);
        let submitted = match self.workers() {
            Ok(workers) => workers.submit(Job { work, client }),
            Err(err) => Err((Job { work, client }, err)),
        };
        // Not taken: refused here.
        if let Err((job, err)) = submitted {
            job.work.refuse(err);
        }
    }

    /// Python's `server_close` for a mix-in with `block_on_close`: wait for
    /// the requests in flight (up to `close_timeout`), then stop the
    /// workers. From a worker thread (the last handle to the server dropped
    /// by a request) it cannot wait: that worker runs the others.
    fn server_close(&self, server: &ServerHandle) {
        let Some(workers) = self.pool.lock().take() else {
            return;
        };
        // A worker (a request, or a refusal, dropping the last handle to
        // the server) cannot wait for the workers: it is one of them.
        let mut join = self.block_on_close && !thread_locals::on_worker();
        if join {
            let still_running = self.in_flight.drain(self.close_timeout, server);
            if still_running > 0 {
                log::warn!(
                    "server_close: {still_running} requests still running after close_timeout \
                     and being stopped; leaving them to finish"
                );
                join = false;
            }
        }
        workers.stop(join);
    }
}
