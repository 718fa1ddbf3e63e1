//! [`ThreadPoolMixIn`]: a bounded pool of worker threads (not in Python).
//!
//! Python's `ThreadingMixIn` starts a thread per request with no upper bound;
//! tiny_http's pool grows without bound too (its users have asked for a
//! bound since 2022). This pool has `workers` threads, a queue of
//! `queue_size` requests, and a policy for when both are full.
//!
//! A connection reaches the queue only once it is readable (nginx's rule):
//! silent connections wait in an epoll set, costing a descriptor and no
//! worker, so fifty clients that never send a byte cannot starve a pool of
//! four (slowloris).

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use parking_lot::{Mutex, RwLock};

use super::in_flight::InFlight;
use super::threading::DEFAULT_STACK_SIZE;
use super::{process_request_thread, MixIn};
use crate::{AddressOf, BaseServer, RequestOf, Root, Transport};

/// What the pool does with a request when every worker is busy and the
/// queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overload {
    /// Wait for room: the accept loop stops accepting meanwhile, so new
    /// connections wait in the kernel's listen backlog (backpressure).
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
    /// Requests refused by [`Overload::Reject`].
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
    /// Requests that may wait for a worker. Defaults to 1024.
    pub queue_size: usize,
    /// What to do when workers and queue are full. Defaults to
    /// [`Overload::Wait`].
    pub overload: Overload,
    /// When a connection is queued. Defaults to `WhenReadable` with a 60 s
    /// idle timeout.
    pub dispatch: Dispatch,
    /// When `true`, `server_close` waits for queued and running requests.
    /// Defaults to `true`.
    pub block_on_close: bool,
    /// The longest `server_close` waits; `None` (the default) is for ever.
    pub close_timeout: Option<Duration>,
    /// Stack size of the workers. Defaults to 512 KiB (see
    /// [`DEFAULT_STACK_SIZE`](crate::mixin::DEFAULT_STACK_SIZE)).
    pub stack_size: usize,
    /// Workers are named `"{thread_name}-{n}"`. Defaults to `"socketserver-pool"`.
    pub thread_name: String,
    pool: OnceLock<Pool>,
    counters: Arc<Counters>,
}

impl Default for ThreadPoolMixIn {
    fn default() -> Self {
        ThreadPoolMixIn {
            workers: 64,
            queue_size: 1024,
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
struct Counters {
    active: AtomicUsize,
    served: AtomicU64,
    rejected: AtomicU64,
    expired: AtomicU64,
}

/// A request on its way to a worker, with what to do if it never gets one.
trait Task: Send {
    /// Handle it (on a worker).
    fn run(self: Box<Self>);
    /// The pool is full ([`Overload::Reject`]).
    fn reject(self: Box<Self>);
    /// It stayed silent past the idle timeout, or the pool is gone.
    fn close(self: Box<Self>);
}

struct Request<S: BaseServer> {
    server: Arc<S>,
    request: RequestOf<S>,
    client_address: AddressOf<S>,
}

impl<S: BaseServer> Task for Request<S> {
    fn run(self: Box<Self>) {
        process_request_thread(&*self.server, self.request, self.client_address);
    }
    fn reject(self: Box<Self>) {
        self.server
            .reject_request(self.request, self.client_address);
    }
    fn close(self: Box<Self>) {
        self.server.shutdown_request(self.request);
    }
}

type Job = Box<dyn Task>;

#[derive(Debug)]
struct Pool {
    sender: RwLock<Option<Sender<Job>>>,
    receiver: Receiver<Job>,
    gate: Option<Arc<Gate>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Live threads (workers and the gate), for `server_close`'s deadline.
    live: Arc<InFlight>,
}

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

    fn start(&self) -> Pool {
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
                    let _alive = alive;
                    worker(&receiver, &counters);
                });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(err) => log::error!("thread pool: could not start worker {n}: {err}"),
            }
        }
        let gate = match self.dispatch {
            Dispatch::Immediately => None,
            Dispatch::WhenReadable { idle_timeout } => {
                match Gate::start(self, idle_timeout, sender.clone(), &live) {
                    Ok((gate, thread)) => {
                        threads.push(thread);
                        Some(gate)
                    }
                    Err(err) => {
                        log::error!("thread pool: readiness dispatch unavailable ({err}); dispatching at once");
                        None
                    }
                }
            }
        };
        Pool {
            sender: RwLock::new(Some(sender)),
            receiver,
            gate,
            threads: Mutex::new(threads),
            live,
        }
    }

    /// Queues a task as the overload policy says.
    fn submit(overload: Overload, counters: &Counters, sender: &Sender<Job>, task: Job) {
        let refused = match overload {
            Overload::Wait => sender.send(task).err().map(|e| e.into_inner()),
            Overload::Reject => match sender.try_send(task) {
                Ok(()) => None,
                Err(TrySendError::Full(task)) => {
                    counters.rejected.fetch_add(1, Ordering::SeqCst);
                    task.reject();
                    None
                }
                Err(TrySendError::Disconnected(task)) => Some(task),
            },
        };
        if let Some(task) = refused {
            // The pool is closed: nobody will ever run it.
            task.close();
        }
    }
}

fn worker(receiver: &Receiver<Job>, counters: &Counters) {
    for task in receiver.iter() {
        counters.active.fetch_add(1, Ordering::SeqCst);
        // process_request_thread catches handler panics; this catches a
        // panicking hook (shutdown_request, handle_error) so that the
        // worker survives that too.
        if let Err(message) = crate::panic::catch(|| task.run()) {
            log::error!("thread pool: a request hook panicked: {message}");
        }
        counters.active.fetch_sub(1, Ordering::SeqCst);
        counters.served.fetch_add(1, Ordering::SeqCst);
    }
}

impl MixIn for ThreadPoolMixIn {
    fn process_request<S: BaseServer>(
        &self,
        server: &Arc<S>,
        request: RequestOf<S>,
        client_address: AddressOf<S>,
    ) {
        let pool = self.pool.get_or_init(|| self.start());
        let sender = pool.sender.read();
        let new_task = |request, client_address| -> Job {
            Box::new(Request {
                server: Arc::clone(server),
                request,
                client_address,
            })
        };
        let Some(sender) = sender.as_ref() else {
            new_task(request, client_address).close();
            return;
        };
        let readiness = <<S::Base as Root>::Transport as Transport>::readiness(&request);
        let (Some(gate), Some(fd)) = (&pool.gate, readiness) else {
            Self::submit(
                self.overload,
                &self.counters,
                sender,
                new_task(request, client_address),
            );
            return;
        };
        // Registered and recorded under one lock, so that the gate cannot
        // see the event before it knows the task.
        let mut state = gate.state.lock();
        let token = gate.watch(&mut state, fd);
        let task = new_task(request, client_address);
        match token {
            Some(token) => gate.hold(state, token, task),
            None => {
                drop(state);
                Self::submit(self.overload, &self.counters, sender, task);
            }
        }
    }

    /// Stops taking requests; with `block_on_close`, waits (up to
    /// `close_timeout`) until the queued and running ones are done.
    fn server_close(&self) {
        let Some(pool) = self.pool.get() else { return };
        // Closing the queue: the gate hands over what becomes readable, then
        // drops its sender; the workers finish the queue, then exit.
        pool.sender.write().take();
        if let Some(gate) = &pool.gate {
            gate.close();
        }
        if !self.block_on_close {
            return;
        }
        let me = thread::current().id();
        let own = pool.threads.lock().iter().any(|t| t.thread().id() == me);
        let deadline = self.close_timeout.map(|t| Instant::now() + t);
        let still_running = pool.live.wait_idle(deadline, usize::from(own));
        if still_running > usize::from(own) {
            log::warn!(
                "server_close: {} pool threads still busy after close_timeout; leaving them",
                still_running - usize::from(own)
            );
            return;
        }
        for thread in pool.threads.lock().drain(..) {
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
    }
}

/// Holds accepted connections until they are readable, then queues them.
#[derive(Debug)]
struct Gate {
    epoll: Epoll,
    wake: EventFd,
    state: Mutex<GateState>,
    idle_timeout: Option<Duration>,
}

struct GateState {
    /// Watched connections' tasks, by epoll token.
    pending: HashMap<u64, Job>,
    /// (deadline, token), in registration order: deadlines only grow.
    expiry: VecDeque<(Instant, u64)>,
    next_token: u64,
    closing: bool,
    sender: Option<Sender<Job>>,
    overload: Overload,
    counters: Option<Arc<Counters>>,
}

impl std::fmt::Debug for GateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateState")
            .field("pending", &self.pending.len())
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

/// The wake-up eventfd's token; connections count from 1.
const WAKE: u64 = 0;

impl Gate {
    fn start(
        mixin: &ThreadPoolMixIn,
        idle_timeout: Option<Duration>,
        sender: Sender<Job>,
        live: &Arc<InFlight>,
    ) -> std::io::Result<(Arc<Gate>, JoinHandle<()>)> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let wake = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        epoll.add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
        let gate = Arc::new(Gate {
            epoll,
            wake,
            state: Mutex::new(GateState {
                pending: HashMap::new(),
                expiry: VecDeque::new(),
                next_token: WAKE + 1,
                closing: false,
                sender: Some(sender),
                overload: mixin.overload,
                counters: Some(Arc::clone(&mixin.counters)),
            }),
            idle_timeout,
        });
        let thread_gate = Arc::clone(&gate);
        let alive = live.start();
        let thread = thread::Builder::new()
            .name(format!("{}-gate", mixin.thread_name))
            .spawn(move || {
                let _alive = alive;
                thread_gate.run();
            })?;
        Ok((gate, thread))
    }

    fn waiting(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// Adds a connection to the epoll set (one-shot: it fires once, and the
    /// registration goes when the connection is closed). `None` when the
    /// gate is closing or epoll refuses: dispatch at once instead.
    fn watch(&self, state: &mut GateState, fd: BorrowedFd<'_>) -> Option<u64> {
        if state.closing {
            return None;
        }
        let token = state.next_token;
        state.next_token += 1;
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLONESHOT;
        match self.epoll.add(fd, EpollEvent::new(flags, token)) {
            Ok(()) => Some(token),
            Err(err) => {
                log::debug!("thread pool: epoll_ctl failed ({err}); dispatching at once");
                None
            }
        }
    }

    /// Keeps a watched connection's task until it is readable or expires.
    fn hold(&self, mut state: parking_lot::MutexGuard<'_, GateState>, token: u64, task: Job) {
        let was_idle = state.expiry.is_empty();
        if let Some(timeout) = self.idle_timeout {
            state.expiry.push_back((Instant::now() + timeout, token));
        }
        state.pending.insert(token, task);
        drop(state);
        if was_idle {
            // The gate may be waiting with no deadline: give it this one.
            let _ = self.wake.write(1);
        }
    }

    fn close(&self) {
        self.state.lock().closing = true;
        let _ = self.wake.write(1);
    }

    fn run(&self) {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            let timeout = {
                let state = self.state.lock();
                if state.closing && state.pending.is_empty() {
                    break;
                }
                state
                    .expiry
                    .front()
                    .map(|(deadline, _)| deadline.saturating_duration_since(Instant::now()))
            };
            let timeout = match timeout {
                None => EpollTimeout::NONE,
                Some(t) => EpollTimeout::try_from(t.as_millis().saturating_add(1))
                    .unwrap_or(EpollTimeout::MAX),
            };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(err) => {
                    log::error!("thread pool: epoll_wait failed: {err}; dispatching what waits");
                    self.state.lock().closing = true;
                    0
                }
            };
            let (ready, expired, sender, overload, counters) = {
                let mut state = self.state.lock();
                let mut ready = Vec::new();
                for event in &events[..n] {
                    if event.data() == WAKE {
                        let _ = self.wake.read();
                    } else if let Some(task) = state.pending.remove(&event.data()) {
                        ready.push(task);
                    }
                }
                let now = Instant::now();
                let mut expired = Vec::new();
                while let Some(&(deadline, token)) = state.expiry.front() {
                    if !state.pending.contains_key(&token) {
                        state.expiry.pop_front();
                    } else if deadline <= now {
                        state.expiry.pop_front();
                        expired.extend(state.pending.remove(&token));
                    } else {
                        break;
                    }
                }
                let sender = if state.closing && state.pending.is_empty() {
                    state.sender.take()
                } else {
                    state.sender.clone()
                };
                (
                    ready,
                    expired,
                    sender,
                    state.overload,
                    state.counters.clone(),
                )
            };
            let counters = counters.expect("set at start");
            for task in expired {
                counters.expired.fetch_add(1, Ordering::SeqCst);
                log::debug!("thread pool: closing a connection silent past the idle timeout");
                task.close();
            }
            for task in ready {
                match &sender {
                    Some(sender) => ThreadPoolMixIn::submit(overload, &counters, sender, task),
                    None => task.close(),
                }
            }
        }
        self.state.lock().sender.take();
    }
}
