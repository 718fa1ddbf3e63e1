//! [`CoroutineMixIn`]: each request on a coroutine, a few worker threads
//! running them all — blocking handlers, event-driven underneath.

use std::collections::{BTreeSet, VecDeque};
use std::os::fd::{AsFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use generator::{Generator, Gn};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use parking_lot::Mutex;

use super::suspend::{self, Resume, Suspend};
use crate::mixin::in_flight::InFlight;
use crate::mixin::{hand_over, MixIn};
use crate::sys::{self, Waker};
use crate::{AddressOf, BaseServer, RequestOf};

/// The default stack size of a request coroutine: 256 KiB of address space,
/// of which a coroutine touches only the pages its handler uses.
pub const DEFAULT_COROUTINE_STACK_SIZE: usize = 256 * 1024;

/// Each request runs on a coroutine of its own; a few worker threads (one
/// per core by default) run every coroutine — the model of gevent, or of
/// Go's goroutines, under Python's blocking `RequestHandler`.
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
/// The rule that comes with it (gevent's too): a handler must not block its
/// worker by other means — a long computation, `std::thread::sleep`, a
/// lock held across I/O, blocking I/O on sockets or files of its own —
/// since every other request on that worker waits meanwhile. Only I/O
/// through the request's connection suspends. Handlers that block
/// elsewhere belong on [`ThreadingMixIn`] or [`ThreadPoolMixIn`].
///
/// Datagram servers accept it too: each datagram's handler runs on a
/// coroutine, which has nothing to wait for.
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

impl MixIn for CoroutineMixIn {
    /// Hands the request to a worker (in turn), which runs
    /// [`process_request_thread`](crate::mixin::process_request_thread) on a new coroutine. If no worker can take
    /// it, the request goes to `handle_error` and is shut down.
    fn process_request<S: BaseServer + ?Sized>(
        &self,
        server: &Arc<S>,
        request: RequestOf<S>,
        client_address: AddressOf<S>,
    ) {
        let running = self.in_flight.start();
        hand_over(server, request, client_address, running, |task| {
            self.workers()?.submit(task)
        });
    }

    /// Python's `server_close` for a mix-in with `block_on_close`: wait for
    /// the requests in flight (up to `close_timeout`), then stop the
    /// workers. From a request itself (the last handle to the server
    /// dropped by a handler) it cannot wait: its worker runs the others.
    fn server_close(&self) {
        let Some(workers) = self.pool.lock().take() else {
            return;
        };
        let mut join = self.block_on_close && !suspend::in_coroutine();
        if join {
            let deadline = self.close_timeout.map(|t| Instant::now() + t);
            let still_running = self.in_flight.wait_idle(deadline);
            if still_running > 0 {
                log::warn!(
                    "server_close: {still_running} requests still running after close_timeout; \
                     leaving them to finish"
                );
                join = false;
            }
        }
        workers.stop(join);
    }
}

type Task = Box<dyn FnOnce() + Send>;

enum Message {
    Task(Task),
    /// Exit once every coroutine has finished.
    Stop,
}

/// The worker threads and the way to each.
#[derive(Debug)]
struct Workers {
    inboxes: Vec<Inbox>,
    next: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Inbox {
    sender: Sender<Message>,
    wake: Arc<Waker>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Task(_) => "Task",
            Message::Stop => "Stop",
        })
    }
}

impl Workers {
    fn start(count: usize, stack_size: usize) -> std::io::Result<Workers> {
        let mut inboxes = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for n in 0..count {
            let (sender, receiver) = crossbeam_channel::unbounded();
            let wake = Arc::new(Waker::new()?);
            let worker_wake = Arc::clone(&wake);
            let thread = thread::Builder::new()
                .name(format!("socketserver-coroutines-{n}"))
                .spawn(move || {
                    if let Err(err) = Worker::new(receiver, worker_wake, stack_size)
                        .and_then(|mut worker| worker.run())
                    {
                        log::error!("coroutine worker stopped: {err}");
                    }
                })?;
            inboxes.push(Inbox { sender, wake });
            threads.push(thread);
        }
        Ok(Workers {
            inboxes,
            next: AtomicUsize::new(0),
            threads: Mutex::new(threads),
        })
    }

    fn submit(&self, task: Task) -> std::io::Result<()> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.inboxes.len();
        let inbox = &self.inboxes[n];
        inbox
            .sender
            .send(Message::Task(task))
            .map_err(|_| std::io::Error::other("the coroutine worker has stopped"))?;
        inbox.wake.wake();
        Ok(())
    }

    /// Tells every worker to exit once its coroutines are done, and waits
    /// for them when `join`.
    fn stop(&self, join: bool) {
        for inbox in &self.inboxes {
            let _ = inbox.sender.send(Message::Stop);
            inbox.wake.wake();
        }
        let threads = std::mem::take(&mut *self.threads.lock());
        if join {
            for thread in threads {
                let _ = thread.join();
            }
        }
    }
}

/// The epoll token of a worker's waker; tasks count from 1.
const WAKE: u64 = 0;

/// One request's coroutine, as its worker keeps it.
struct Coroutine {
    generator: Generator<'static, Resume, Suspend>,
    started: bool,
    /// Suspended, waiting for readiness or its deadline.
    waiting: bool,
    /// Read readiness reported by epoll (`suspend::READABLE`,
    /// `READ_CLOSED`), for its reads to know when one would only say EAGAIN.
    readiness: u8,
    deadline: Option<Instant>,
    /// The descriptors it waited on, to forget when it ends.
    fds: Vec<RawFd>,
}

/// A worker thread: runs its coroutines in turn and sleeps in epoll_wait
/// when all of them wait.
struct Worker {
    inbox: Receiver<Message>,
    wake: Arc<Waker>,
    epoll: Rc<Epoll>,
    /// Stack size in words, as the generator crate counts it (and even: an
    /// odd size asks it to fill the stack to measure its use, touching
    /// every page).
    stack_words: usize,
    coroutines: Slab,
    runnable: VecDeque<(u64, Resume)>,
    deadlines: BTreeSet<(Instant, u64)>,
    stopping: bool,
}

impl Worker {
    fn new(
        inbox: Receiver<Message>,
        wake: Arc<Waker>,
        stack_size: usize,
    ) -> std::io::Result<Worker> {
        // This thread runs nothing but requests: their panics are reported
        // through handle_error, never printed, however their coroutines
        // interleave.
        crate::panic::capture_on_this_thread();
        let epoll = Rc::new(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?);
        epoll.add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
        suspend::become_worker(Rc::clone(&epoll));
        let words = stack_size.max(16 * 1024) / std::mem::size_of::<usize>();
        Ok(Worker {
            inbox,
            wake,
            epoll,
            stack_words: words & !1,
            coroutines: Slab::default(),
            runnable: VecDeque::new(),
            deadlines: BTreeSet::new(),
            stopping: false,
        })
    }

    fn run(&mut self) -> std::io::Result<()> {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            self.take_messages();
            // One pass over those ready now: a coroutine that yields its
            // budget goes to the back, after whatever epoll says is ready.
            for _ in 0..self.runnable.len() {
                if let Some((id, resume)) = self.runnable.pop_front() {
                    self.step(id, resume);
                }
            }
            if self.stopping && self.coroutines.is_empty() {
                return Ok(());
            }
            let timeout = match self.deadlines.first() {
                _ if !self.runnable.is_empty() => EpollTimeout::ZERO,
                first => sys::epoll_timeout(first.map(|&(deadline, _)| sys::remaining(deadline))),
            };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(err) => return Err(err.into()),
            };
            for event in &events[..n] {
                if event.data() == WAKE {
                    self.wake.reset();
                } else {
                    self.wake_up(event.data(), Resume::Ready, event.events());
                }
            }
            if self.deadlines.is_empty() {
                continue;
            }
            let now = Instant::now();
            while let Some(&(deadline, id)) = self.deadlines.first() {
                if deadline > now {
                    break;
                }
                self.wake_up(id, Resume::TimedOut, EpollFlags::empty());
            }
        }
    }

    fn take_messages(&mut self) {
        loop {
            match self.inbox.try_recv() {
                Ok(Message::Task(task)) => {
                    let generator = Gn::<Resume>::new_opt(self.stack_words, move || {
                        task();
                        Suspend::Done
                    });
                    let id = self.coroutines.insert(Coroutine {
                        generator,
                        started: false,
                        waiting: false,
                        readiness: 0,
                        deadline: None,
                        fds: Vec::new(),
                    });
                    self.runnable.push_back((id, Resume::Ready));
                }
                Ok(Message::Stop) | Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.stopping = true;
                    return;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => return,
            }
        }
    }

    /// Makes a waiting coroutine runnable, adding what an event reported to
    /// its read readiness (events of coroutines gone are ignored).
    fn wake_up(&mut self, id: u64, resume: Resume, events: EpollFlags) {
        let Some(coroutine) = self.coroutines.get_mut(id) else {
            return;
        };
        if events.intersects(EpollFlags::EPOLLIN) {
            coroutine.readiness |= suspend::READABLE;
        }
        if events.intersects(EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
            coroutine.readiness |= suspend::READABLE | suspend::READ_CLOSED;
        }
        if let Some(deadline) = coroutine.deadline.take() {
            self.deadlines.remove(&(deadline, id));
        }
        if std::mem::replace(&mut coroutine.waiting, false) {
            self.runnable.push_back((id, resume));
        }
    }

    /// Runs coroutine `id` until it waits again or ends.
    fn step(&mut self, id: u64, resume: Resume) {
        let Some(coroutine) = self.coroutines.get_mut(id) else {
            return;
        };
        suspend::enter_task(id, coroutine.readiness);
        // Panics are caught inside, around the handler and the hooks
        // (process_request_thread); one escaping here (the generator's own,
        // such as a stack overflow) ends this request, not the worker.
        let started = std::mem::replace(&mut coroutine.started, true);
        let yielded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if started {
                coroutine.generator.raw_send(Some(resume))
            } else {
                coroutine.generator.resume()
            }
        }));
        coroutine.readiness = suspend::leave_task();
        match yielded {
            Ok(Some(Suspend::Wait { fd, deadline })) if !coroutine.generator.is_done() => {
                if !coroutine.fds.contains(&fd) {
                    coroutine.fds.push(fd);
                }
                coroutine.waiting = true;
                if let Some(deadline) = deadline {
                    coroutine.deadline = Some(deadline);
                    self.deadlines.insert((deadline, id));
                }
            }
            Ok(Some(Suspend::Yield)) if !coroutine.generator.is_done() => {
                self.runnable.push_back((id, Resume::Ready));
            }
            Ok(_) => self.finish(id),
            Err(payload) => {
                log::error!(
                    "a request's coroutine failed outside its handler: {}",
                    crate::panic::payload_message(&*payload)
                );
                self.finish(id);
            }
        }
    }

    fn finish(&mut self, id: u64) {
        if let Some(coroutine) = self.coroutines.remove(id) {
            suspend::forget_task(id, &coroutine.fds);
        }
    }
}

/// The coroutines of a worker, by id: a slot index and the slot's
/// generation, so that an id stays unique after its slot is reused (epoll
/// events and deadlines of a finished coroutine are then ignored). Ids are
/// never 0, the wake-up token.
#[derive(Default)]
struct Slab {
    slots: Vec<(u32, Option<Coroutine>)>,
    free: Vec<u32>,
    len: usize,
}

impl Slab {
    fn insert(&mut self, coroutine: Coroutine) -> u64 {
        self.len += 1;
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push((0, None));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 coroutines")
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.0 = slot.0.wrapping_add(1);
        slot.1 = Some(coroutine);
        (u64::from(slot.0) << 32) | (u64::from(index) + 1)
    }

    fn slot(&mut self, id: u64) -> Option<&mut (u32, Option<Coroutine>)> {
        let index = usize::try_from((id & 0xffff_ffff).checked_sub(1)?).ok()?;
        let slot = self.slots.get_mut(index)?;
        (u64::from(slot.0) == id >> 32).then_some(slot)
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Coroutine> {
        self.slot(id)?.1.as_mut()
    }

    fn remove(&mut self, id: u64) -> Option<Coroutine> {
        let coroutine = self.slot(id)?.1.take()?;
        self.free.push((id & 0xffff_ffff) as u32 - 1);
        self.len -= 1;
        Some(coroutine)
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}
