//! [`ThreadingMixIn`]: Python's `ThreadingMixIn`, a thread per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::Mutex;

use super::in_flight::InFlight;
use super::{hand_over, MixIn};
use crate::{AddressOf, BaseServer, RequestOf, ServerHandle};

/// The default stack size of a request thread: 512 KiB.
///
/// Measured on this project's 2-core machine (docs/concurrency.md): an idle
/// connection's thread costs the same resident memory (about 18 KiB) and the
/// same time to start (about 85 µs per short request) with a 64 KiB, 256 KiB
/// or 2 MiB stack — a thread touches only the pages it uses. So the size is
/// chosen for safety: a handler that overflows its stack aborts the whole
/// process, so the default leaves room for deep handlers, while taking a
/// quarter of std's 2 MiB of address space per thread (10,000 threads: 5 GiB
/// instead of 20 GiB, which matters under strict overcommit).
pub const DEFAULT_STACK_SIZE: usize = 512 * 1024;

/// Python's `ThreadingMixIn`: each request runs on a new thread.
///
/// Threads are named (`thread_name`, then a number) and finished ones are
/// reaped as new ones start, so a long-running server holds only the threads
/// still running (Python kept every thread until 3.8, bpo-37193).
///
/// There is no cap on threads: that is what
/// [`ThreadPoolMixIn`](crate::ThreadPoolMixIn) is for.
///
/// ```
/// use socketserver::{BaseServer, StreamRequest, ThreadingTCPServer};
/// let mut server = ThreadingTCPServer::new("127.0.0.1:0", |_: &mut StreamRequest<'_>| Ok(()))?;
/// server.mixin.daemon_threads = true; // Python: `daemon_threads = True`
/// assert!(server.mixin.block_on_close);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ThreadingMixIn {
    /// Python's `daemon_threads`: when `true`, `server_close` does not wait
    /// for request threads. (Rust has no daemon threads: every thread dies
    /// with the process, whatever this says.) Defaults to `false`.
    pub daemon_threads: bool,
    /// Python's `block_on_close`: when `true`, `server_close` waits for
    /// (non-daemon) request threads to finish. Defaults to `true`.
    pub block_on_close: bool,
    /// How long `server_close` waits at most when it blocks; the threads
    /// still running after it are left to finish on their own (and logged).
    /// Defaults to `None`: for ever, as Python.
    pub close_timeout: Option<Duration>,
    /// Stack size of request threads. Defaults to [`DEFAULT_STACK_SIZE`].
    pub stack_size: usize,
    /// Request threads are named `"{thread_name}-{n}"`. Defaults to
    /// `"socketserver"`.
    pub thread_name: String,
    threads: Mutex<Vec<JoinHandle<()>>>,
    in_flight: Arc<InFlight>,
    spawned: AtomicU64,
}

impl Default for ThreadingMixIn {
    fn default() -> Self {
        ThreadingMixIn {
            daemon_threads: false,
            block_on_close: true,
            close_timeout: None,
            stack_size: DEFAULT_STACK_SIZE,
            thread_name: "socketserver".to_owned(),
            threads: Mutex::new(Vec::new()),
            in_flight: Arc::default(),
            spawned: AtomicU64::new(0),
        }
    }
}

impl ThreadingMixIn {
    /// How many request threads are tracked for `server_close` to join
    /// (Python's `len(server._threads)`): only those still running once
    /// reaped, and none with `daemon_threads` or without `block_on_close`.
    pub fn tracked_threads(&self) -> usize {
        let mut threads = self.threads.lock();
        reap(&mut threads);
        threads.len()
    }

    /// How many request threads are running now.
    pub fn active_threads(&self) -> usize {
        self.in_flight.count()
    }

    fn tracking(&self) -> bool {
        self.block_on_close && !self.daemon_threads
    }
}

/// Python's `_Threads.reap`: forget the threads that have finished (joining
/// a finished thread returns at once and frees what it held).
///
/// In place: it runs at every request, and partitioning into new vectors
/// allocated and copied every handle each time (quadratic in the threads
/// held while 10,000 idle connections are accepted).
fn reap(threads: &mut Vec<JoinHandle<()>>) {
    let mut i = 0;
    while i < threads.len() {
        if threads[i].is_finished() {
            let _ = threads.swap_remove(i).join();
        } else {
            i += 1;
        }
    }
}

impl MixIn for ThreadingMixIn {
    /// Python's `ThreadingMixIn.process_request`: start a thread running
    /// [`process_request_thread`](super::process_request_thread). If no thread can be started, the request
    /// goes to `handle_error` and is shut down.
    fn process_request<S: BaseServer + ?Sized>(
        &self,
        server: &Arc<S>,
        request: RequestOf<S>,
        client_address: AddressOf<S>,
    ) {
        let n = self.spawned.fetch_add(1, Ordering::Relaxed);
        let running = self.in_flight.start();
        let spawned = hand_over(server, request, client_address, running, |work| {
            thread::Builder::new()
                .name(format!("{}-{n}", self.thread_name))
                .stack_size(self.stack_size)
                .spawn(work)
        });
        if let Some(thread) = spawned.filter(|_| self.tracking()) {
            let mut threads = self.threads.lock();
            reap(&mut threads);
            threads.push(thread);
        }
    }

    /// Python's `ThreadingMixIn.server_close`: join the request threads when
    /// `block_on_close` (and not `daemon_threads`), up to `close_timeout`.
    fn server_close(&self, server: &ServerHandle) {
        if !self.tracking() {
            return;
        }
        // A request thread may close the server (dropping the last handle to
        // it, or from a hook): it waits for the others, not for itself.
        let still_running = self.in_flight.drain(self.close_timeout, server);
        if still_running > 0 {
            log::warn!(
                "server_close: {still_running} request threads still running after close_timeout \
                 and being stopped; leaving them to finish"
            );
        }
        let mut threads = self.threads.lock();
        if still_running > 0 || self.in_flight.is_current_thread_inside() {
            // Past the deadline, or from a request thread (which must not
            // join the others: two closing at once would join each other).
            let me = thread::current().id();
            reap(&mut threads);
            threads.retain(|t| t.thread().id() != me);
            return;
        }
        // Every request is done; their threads may still be exiting. Join
        // them all, so that none is left once server_close returns (Python
        // joins every thread).
        for thread in threads.drain(..) {
            let _ = thread.join();
        }
    }
}
