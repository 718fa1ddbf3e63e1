//! [`ThreadPoolMixIn`] and its settings ([`Overload`], [`Dispatch`]), its
//! counters ([`PoolStats`]), the queue and the worker threads. The
//! readiness gate that holds silent connections is in `gate.rs`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;

use super::gate::{Admission, Gate};
use crate::handler::RequestKind;
use crate::mixin::in_flight::InFlight;
use crate::mixin::threading::DEFAULT_STACK_SIZE;
use crate::mixin::{process_request_or_park, MixIn};
use crate::{AddressOf, BaseServer, Refusal, RequestOf, ServerHandle, Transport};

type TransportOf<S> = <S as BaseServer>::Transport;

/// What the pool does with a request when every worker is busy and the
/// queue is full (or, for connections waiting to become readable,
/// `max_waiting` are waiting already).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overload {
    /// Wait for room: the accept loop stops accepting meanwhile, so new
    /// connections wait in the kernel's listen backlog (backpressure). If
    /// the server is shut down or closed while a request waits for room, it
    /// goes to `reject_request` instead, so that shutdown never waits on a
    /// full pool (a handler calling `shutdown()` would wait for itself).
    #[default]
    Wait,
    /// Refuse the request at once: the server's
    /// [`reject_request`](crate::BaseServer::reject_request) hook runs (it
    /// may answer "busy"), then the connection is closed.
    Reject,
}

/// When an accepted connection is handed to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// At once, in the order accepted. Choose this when the server speaks
    /// first (a greeting), since such clients never become readable first.
    Immediately,
    /// Once the client has sent something (or closed). A connection silent
    /// for `idle_timeout` is closed unserved (`None`: it may wait for ever,
    /// costing one descriptor). Datagrams are always dispatched at once.
    WhenReadable {
        /// How long an accepted connection may stay silent.
        idle_timeout: Option<Duration>,
    },
}

impl Default for Dispatch {
    /// `WhenReadable` with a 60 s idle timeout.
    fn default() -> Self {
        Dispatch::WhenReadable {
            idle_timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// A snapshot of the pool's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Worker threads started.
    pub workers: usize,
    /// Requests being handled now.
    pub active: usize,
    /// Requests in the queue, waiting for a worker.
    pub queued: usize,
    /// Connections accepted but not yet readable (see [`Dispatch`]).
    pub waiting: usize,
    /// Requests handled to the end (successfully or not).
    pub served: u64,
    /// Requests refused: by [`Overload::Reject`], or by [`Overload::Wait`]
    /// when shutdown came while they waited for room.
    pub rejected: u64,
    /// Connections closed for staying silent past the idle timeout.
    pub expired: u64,
}

/// A bounded thread pool: `workers` threads take requests from a queue of
/// `queue_size`. Not in Python: the nearest is `ThreadingMixIn` with a cap.
///
/// A failing or panicking handler never costs the pool a worker: the panic
/// is caught, reported through `handle_error`, and the worker goes on.
///
/// ```
/// use socketserver::mixin::Overload;
/// use socketserver::{StreamRequest, ThreadPoolTCPServer};
/// let mut server = ThreadPoolTCPServer::new("127.0.0.1:0", |_: &mut StreamRequest<'_>| Ok(()))?;
/// server.mixin.workers = 8;
/// server.mixin.queue_size = 32;
/// server.mixin.overload = Overload::Reject;
/// assert_eq!(server.mixin.stats().served, 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ThreadPoolMixIn {
    /// Worker threads, started with the first request. Defaults to 64. Each
    /// worker serves one connection at a time, for as long as its handler
    /// runs: a server of long-lived connections needs as many workers as it
    /// has connections.
    pub workers: usize,
    /// Requests that may wait for a worker. Defaults to 1024. With 0, a
    /// request is handed over only to an idle worker (so under
    /// [`Overload::Reject`], whenever none is idle at that instant, it is refused).
    pub queue_size: usize,
    /// Accepted connections that may wait to become readable (see
    /// [`Dispatch`]); past that, `overload` applies. Defaults to 4096 (a
    /// descriptor each).
    pub max_waiting: usize,
    /// What to do when workers and queue are full. Defaults to
    /// [`Overload::Wait`].
    pub overload: Overload,
    /// When a connection is queued. Defaults to `WhenReadable` with a 60 s
    /// idle timeout.
    pub dispatch: Dispatch,
    /// When `true`, `server_close` waits for queued and running requests
    /// (connections that never sent anything are closed at once). Defaults
    /// to `true`.
    pub block_on_close: bool,
    /// The longest `server_close` waits; `None` (the default) is for ever.
    pub close_timeout: Option<Duration>,
    /// Stack size of the workers. Defaults to 512 KiB (see
    /// [`DEFAULT_STACK_SIZE`](crate::mixin::DEFAULT_STACK_SIZE)).
    pub stack_size: usize,
    /// Workers are named `"{thread_name}-{n}"`. Defaults to `"socketserver-pool"`.
    pub thread_name: String,
    pool: OnceLock<Arc<Pool>>,
    counters: Arc<Counters>,
}

impl Default for ThreadPoolMixIn {
    fn default() -> Self {
        ThreadPoolMixIn {
            workers: 64,
            queue_size: 1024,
            max_waiting: 4096,
            overload: Overload::Wait,
            dispatch: Dispatch::default(),
            block_on_close: true,
            close_timeout: None,
            stack_size: DEFAULT_STACK_SIZE,
            thread_name: "socketserver-pool".to_owned(),
            pool: OnceLock::new(),
            counters: Arc::default(),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    active: AtomicUsize,
    served: AtomicU64,
    rejected: AtomicU64,
    pub(super) expired: AtomicU64,
}

/// A request on its way to a worker, with what to do if it never gets one.
pub(super) trait Task: Send {
    /// Handle it (on a worker).
    fn run(self: Box<Self>);
    /// Refuse it: the pool is full, or shutting down.
    fn reject(self: Box<Self>);
    /// Close it unserved: it never sent anything, or the pool is gone.
    fn close(self: Box<Self>);
}

pub(super) type Job = Box<dyn Task>;

struct Request<S: BaseServer + ?Sized> {
    server: Arc<S>,
    /// Where a connection parked by its handler goes back to.
    pool: Weak<Pool>,
    request: RequestOf<S>,
    client_address: AddressOf<S>,
}

impl<S: BaseServer + ?Sized> Task for Request<S> {
    fn run(self: Box<Self>) {
        let Request {
            server,
            pool,
            request,
            client_address,
        } = *self;
        let parked = process_request_or_park(&*server, request, client_address);
        if let Some((request, client_address)) = parked {
            match pool.upgrade() {
                Some(pool) => pool.dispatch(&server, request, client_address, Entry::Parked),
                None => crate::mixin::shutdown_request(&*server, request),
            }
        }
    }
    fn reject(self: Box<Self>) {
        crate::mixin::reject(
            &*self.server,
            self.request,
            self.client_address,
            Refusal::Overload,
        );
    }
    fn close(self: Box<Self>) {
        crate::mixin::shutdown_request(&*self.server, self.request);
    }
}

/// A connection waiting to become readable. It holds the server weakly: a
/// silent connection must not keep a dropped server alive.
pub(super) trait Waiting: Send {
    /// The task to queue, if the server still exists (else the connection
    /// is simply closed).
    fn upgrade(self: Box<Self>) -> Option<Job>;
}

struct Pending<S: BaseServer + ?Sized> {
    server: Weak<S>,
    pool: Weak<Pool>,
    request: RequestOf<S>,
    client_address: AddressOf<S>,
}

impl<S: BaseServer + ?Sized> Waiting for Pending<S> {
    fn upgrade(self: Box<Self>) -> Option<Job> {
        let server = self.server.upgrade()?;
        Some(Box::new(Request {
            server,
            pool: self.pool,
            request: self.request,
            client_address: self.client_address,
        }))
    }
}

/// How a connection comes to [`Pool::dispatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Entry {
    /// Just accepted: the overload policy applies.
    Accepted,
    /// Parked by its handler after a request (keep-alive): it waits in the
    /// gate if there is room at once, else it is closed — a worker never
    /// waits for room, and a kept connection closed between requests is
    /// one the client expects may close.
    Parked,
}

/// Runs a request hook that must not take the calling thread down with it.
pub(super) fn guarded(what: &str, hook: impl FnOnce()) {
    if let Err(message) = crate::panic::catch(hook) {
        log::error!("thread pool: {what} panicked: {message}");
    }
}

/// The pool's shared state once started.
#[derive(Debug)]
pub(super) struct Pool {
    /// Taken by `server_close`; senders clone it and send outside the lock.
    sender: Mutex<Option<Sender<Job>>>,
    receiver: Receiver<Job>,
    /// Set by `server_close`: a waiting `Overload::Wait` gives up.
    closing: AtomicBool,
    pub(super) handle: ServerHandle,
    pub(super) overload: Overload,
    pub(super) counters: Arc<Counters>,
    gate: Option<Arc<Gate>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Live threads (workers and the gate), for `server_close`.
    live: Arc<InFlight>,
}

impl Pool {
    /// Hands a connection to the gate to wait until it is readable, or
    /// queues it for a worker.
    fn dispatch<S: BaseServer + ?Sized>(
        self: &Arc<Self>,
        server: &Arc<S>,
        request: RequestOf<S>,
        client_address: AddressOf<S>,
        entry: Entry,
    ) {
        let Some(sender) = self.sender.lock().clone() else {
            crate::mixin::shutdown_request(&**server, request); // closed: nobody will run it
            return;
        };
        let readiness =
            <TransportOf<S> as Transport>::Kind::readiness(TransportOf::<S>::view(&request));
        let task = |request, client_address| {
            Box::new(Request {
                server: Arc::clone(server),
                pool: Arc::downgrade(self),
                request,
                client_address,
            })
        };
        if let (Some(gate), Some(fd)) = (&self.gate, readiness) {
            match (gate.admit(self, fd, entry), entry) {
                (Admission::Watched(state, token), _) => {
                    let waiting = Box::new(Pending {
                        server: Arc::downgrade(server),
                        pool: Arc::downgrade(self),
                        request,
                        client_address,
                    });
                    return gate.hold(state, token, waiting);
                }
                (Admission::Full, Entry::Accepted) => {
                    return self.reject(task(request, client_address));
                }
                (Admission::Full | Admission::Unwatched, Entry::Parked) => {
                    return guarded("shutdown_request", || {
                        crate::mixin::shutdown_request(&**server, request)
                    });
                }
                (Admission::Unwatched, Entry::Accepted) => {}
            }
        }
        self.submit(&sender, task(request, client_address), || {});
    }

    /// Queues a task as the overload policy says. The caller holds no lock.
    pub(super) fn submit(&self, sender: &Sender<Job>, task: Job, mut meanwhile: impl FnMut()) {
        let mut task = match self.overload {
            Overload::Reject => match sender.try_send(task) {
                Ok(()) => return,
                Err(TrySendError::Full(task)) => return self.reject(task),
                Err(TrySendError::Disconnected(task)) => {
                    return guarded("close_request", || task.close())
                }
            },
            Overload::Wait => task,
        };
        // Wait for room, but not through a shutdown or a close: a handler
        // that calls shutdown() could be the very worker we wait for.
        loop {
            match sender.send_timeout(task, WAIT_SLICE) {
                Ok(()) => return,
                Err(SendTimeoutError::Timeout(back)) => {
                    if self.closing.load(Ordering::SeqCst) || self.handle.shutdown_requested() {
                        return self.reject(back);
                    }
                    meanwhile();
                    task = back;
                }
                Err(SendTimeoutError::Disconnected(task)) => {
                    return guarded("close_request", || task.close())
                }
            }
        }
    }

    pub(super) fn reject(&self, task: Job) {
        self.counters.rejected.fetch_add(1, Ordering::SeqCst);
        guarded("reject_request", || task.reject());
    }
}

/// How long a full queue is waited on between checks for shutdown (and, in
/// the gate, for idle connections to expire).
pub(super) const WAIT_SLICE: Duration = Duration::from_millis(50);

impl ThreadPoolMixIn {
    /// The pool's counters now.
    pub fn stats(&self) -> PoolStats {
        let Some(pool) = self.pool.get() else {
            return PoolStats::default();
        };
        PoolStats {
            workers: self.workers,
            active: self.counters.active.load(Ordering::SeqCst),
            queued: pool.receiver.len(),
            waiting: pool.gate.as_ref().map_or(0, |g| g.waiting()),
            served: self.counters.served.load(Ordering::SeqCst),
            rejected: self.counters.rejected.load(Ordering::SeqCst),
            expired: self.counters.expired.load(Ordering::SeqCst),
        }
    }

    fn start(&self, handle: ServerHandle) -> Arc<Pool> {
        let (sender, receiver) = crossbeam_channel::bounded::<Job>(self.queue_size);
        let live = Arc::new(InFlight::default());
        let mut threads = Vec::with_capacity(self.workers + 1);
        for n in 0..self.workers.max(1) {
            let receiver = receiver.clone();
            let counters = Arc::clone(&self.counters);
            let alive = live.start();
            let spawned = thread::Builder::new()
                .name(format!("{}-{n}", self.thread_name))
                .stack_size(self.stack_size)
                .spawn(move || {
                    alive.enter();
                    worker(&receiver, &counters);
                    drop(alive);
                });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(err) => log::error!("thread pool: could not start worker {n}: {err}"),
            }
        }
        let gate = match self.dispatch {
            Dispatch::Immediately => None,
            Dispatch::WhenReadable { idle_timeout } => {
                match Gate::new(idle_timeout, self.max_waiting) {
                    Ok(gate) => Some(Arc::new(gate)),
                    Err(err) => {
                        log::error!("thread pool: readiness dispatch unavailable ({err}); dispatching at once");
                        None
                    }
                }
            }
        };
        let pool = Arc::new(Pool {
            sender: Mutex::new(Some(sender)),
            receiver,
            closing: AtomicBool::new(false),
            handle,
            overload: self.overload,
            counters: Arc::clone(&self.counters),
            gate,
            threads: Mutex::new(threads),
            live,
        });
        if let Some(gate) = &pool.gate {
            let alive = pool.live.start();
            let (thread_gate, gate_pool) = (Arc::clone(gate), Arc::downgrade(&pool));
            // The gate's own sender: it still hands over what became
            // readable after server_close has taken the pool's.
            let sender = pool.sender.lock().clone();
            let spawned = thread::Builder::new()
                .name(format!("{}-gate", self.thread_name))
                .spawn(move || {
                    alive.enter();
                    if let Some(sender) = sender {
                        thread_gate.run(&gate_pool, &sender);
                    }
                    drop(alive);
                });
            match spawned {
                Ok(thread) => pool.threads.lock().push(thread),
                Err(err) => {
                    log::error!("thread pool: could not start the readiness thread ({err}); dispatching at once");
                    gate.close();
                }
            }
        }
        pool
    }
}

fn worker(receiver: &Receiver<Job>, counters: &Counters) {
    for task in receiver.iter() {
        counters.active.fetch_add(1, Ordering::SeqCst);
        // process_request_thread catches handler panics; this catches a
        // panicking hook (shutdown_request, handle_error) so that the worker
        // survives that too.
        guarded("a request hook", || task.run());
        counters.active.fetch_sub(1, Ordering::SeqCst);
        counters.served.fetch_add(1, Ordering::SeqCst);
    }
}

impl MixIn for ThreadPoolMixIn {
    fn process_request<S: BaseServer + ?Sized>(
        &self,
        server: &Arc<S>,
        request: RequestOf<S>,
        client_address: AddressOf<S>,
    ) {
        let pool = self
            .pool
            .get_or_init(|| self.start(server.shutdown_handle()));
        pool.dispatch(server, request, client_address, Entry::Accepted);
    }

    /// Stops taking requests and closes connections that never sent
    /// anything; with `block_on_close`, waits (up to `close_timeout`) until
    /// the queued and running requests are done.
    fn server_close(&self, server: &ServerHandle) {
        let Some(pool) = self.pool.get() else { return };
        pool.closing.store(true, Ordering::SeqCst);
        pool.sender.lock().take();
        if let Some(gate) = &pool.gate {
            gate.close();
        }
        // From a pool thread (dropping the last handle to the server there):
        // the others finish on their own; waiting could wait for ourselves.
        if !self.block_on_close || pool.live.is_current_thread_inside() {
            return;
        }
        let still_running = pool.live.drain(self.close_timeout, server);
        if still_running > 0 {
            log::warn!("server_close: {still_running} pool threads still busy after close_timeout and being stopped; leaving them");
            return;
        }
        for thread in pool.threads.lock().drain(..) {
            let _ = thread.join();
        }
    }
}
