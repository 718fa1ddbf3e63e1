//! The worker threads of [`CoroutineMixIn`](crate::CoroutineMixIn):
//! [`Workers`] hands each request to one of them in turn; a [`Worker`]
//! runs its coroutines one at a time, resuming each when epoll reports its
//! socket ready or its deadline passes, and sleeps in epoll_wait when all
//! of them wait.
//!
//! What a worker does when something fails:
//!
//! * No stack for a new request (`RLIMIT_AS`, the address space
//!   exhausted): that request is refused — `handle_error` with the error,
//!   the connection shut down, its in-flight count released — and the
//!   worker goes on with the others.
//! * A panic out of a coroutine (one not caught around the handler): that
//!   request ends, logged; the others go on.
//! * A panic or an error in the worker's own loop: logged, and the loop
//!   starts again on the same thread with the same coroutines, each resumed
//!   once (a spurious wake-up, which every wait tolerates). A suspended
//!   coroutine is never dropped, so corosensei never has to force-unwind
//!   one through a handler's `catch_unwind`.
//! * A stack overflow: the process aborts with a message (`overflow.rs`).
//! * A resumption that keeps the worker from its loop longer than
//!   [`SLOW_STEP`]: a warning naming the request's client.
//!
//! A datagram server's socket is read by the workers themselves while
//! `serve_forever` runs ([`Workers::take_datagrams`]): each worker's epoll
//! holds it (`EPOLLEXCLUSIVE`, so a datagram wakes one worker), and the
//! worker that is woken takes the datagrams waiting and runs each request
//! at once, on its own thread. Handing each datagram from the serving
//! thread to a worker cost more than the handler did.

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use corosensei::stack::{DefaultStack, Stack};
use corosensei::CoroutineResult;
use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use parking_lot::{Mutex, RwLock};

use super::overflow;
use super::slab::Slab;
use super::stacks::{Stacks, KEPT_STACKS};
use super::suspend::{Resume, Suspend};
use super::thread_locals;
use crate::mixin::Work;
use crate::sys::{self, Waker};
use crate::Address;

/// A request for a worker: the work, and who it is for (named in
/// warnings).
pub(super) struct Job {
    pub(super) work: Box<dyn Work>,
    pub(super) client: Address,
}

enum Message {
    Job(Job),
    /// Exit once every coroutine has finished.
    Stop,
    /// Panic in the worker's loop (tests of its recovery).
    #[cfg(test)]
    Panic,
}

/// How long one resumption may keep a worker from its event loop before a
/// warning is logged: 100 ms, a delay every other request on that worker
/// shares, and far above any handler step that only computes a reply (a
/// 16 KiB MD5 takes 25 µs). It is measured when the worker gets control
/// back, so a handler blocked for ever is never reported.
pub(super) const SLOW_STEP: Duration = Duration::from_millis(100);

/// At most one slow-step warning per worker in this long.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// Takes one request off a datagram server's socket and hands it to
/// `process_request` (Python's `_handle_request_noblock`); `WouldBlock`
/// when no datagram is waiting.
pub(super) type TakeDatagram = Box<dyn Fn() -> io::Result<()> + Send + Sync>;

/// The most datagrams a worker takes per wake-up before it looks at its
/// inbox and its other coroutines again.
const DATAGRAM_BATCH: usize = 32;

/// The worker threads and the way to each.
pub(super) struct Workers {
    /// This pool among others in the process: a request that one of its
    /// workers takes off a datagram socket stays on that worker.
    id: u64,
    inboxes: Vec<Inbox>,
    next: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Set while the workers take datagrams themselves; each take holds it
    /// read, so that none starts once `stop_taking_datagrams` has it.
    taking: Arc<RwLock<Option<TakeDatagram>>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("id", &self.id)
            .field("inboxes", &self.inboxes)
            .field("taking_datagrams", &self.taking.read().is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Inbox {
    sender: Sender<Message>,
    wake: Arc<Doorbell>,
    /// The worker's epoll set, where a datagram socket is added for it.
    epoll: Arc<Epoll>,
}

/// How a worker is woken for a new message: its eventfd, written only when
/// the worker is about to sleep or sleeping in epoll_wait. A busy worker
/// finds the message at its next turn, so a burst of requests (a datagram
/// each) costs no write and no read of the eventfd each.
#[derive(Debug)]
struct Doorbell {
    waker: Waker,
    sleeping: AtomicBool,
}

impl Doorbell {
    /// Wakes the worker whatever it is doing.
    fn ring(&self) {
        self.waker.wake();
    }

    /// Wakes the worker if it sleeps, after a message was sent to it.
    fn ring_if_sleeping(&self) {
        // Pairs with the fence in `Worker::run`: either the worker sees
        // the message when it checks its inbox after saying it sleeps, or
        // this sees that it sleeps.
        fence(Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.waker.wake();
        }
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Job(_) => "Job",
            Message::Stop => "Stop",
            #[cfg(test)]
            Message::Panic => "Panic",
        })
    }
}

impl Workers {
    pub(super) fn start(count: usize, stack_size: usize) -> std::io::Result<Workers> {
        static POOLS: AtomicU64 = AtomicU64::new(1);
        let id = POOLS.fetch_add(1, Ordering::Relaxed);
        let taking = Arc::new(RwLock::new(None));
        let mut inboxes = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for n in 0..count {
            let (sender, receiver) = crossbeam_channel::unbounded();
            let wake = Arc::new(Doorbell {
                waker: Waker::new()?,
                sleeping: AtomicBool::new(false),
            });
            let epoll = Arc::new(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?);
            epoll.add(
                wake.waker.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, WAKE),
            )?;
            let (worker_wake, worker_epoll) = (Arc::clone(&wake), Arc::clone(&epoll));
            let worker_taking = Arc::clone(&taking);
            let thread = thread::Builder::new()
                .name(format!("socketserver-coroutines-{n}"))
                .spawn(move || {
                    work(Worker::new(
                        (id, n),
                        receiver,
                        worker_wake,
                        worker_epoll,
                        worker_taking,
                        stack_size,
                    ))
                })?;
            inboxes.push(Inbox {
                sender,
                wake,
                epoll,
            });
            threads.push(thread);
        }
        Ok(Workers {
            id,
            inboxes,
            next: AtomicUsize::new(0),
            threads: Mutex::new(threads),
            taking,
        })
    }

    /// Gives `job` to the next worker in turn (or, should that one have
    /// exited, to the next that has not); gives it back with the error
    /// when none is left. A job submitted by one of these workers while it
    /// takes a datagram stays on that worker.
    pub(super) fn submit(&self, job: Job) -> Result<(), (Job, std::io::Error)> {
        let Err(job) = thread_locals::keep_taken_job(self.id, job) else {
            return Ok(());
        };
        let count = self.inboxes.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let mut message = Message::Job(job);
        for n in 0..self.inboxes.len() {
            let inbox = &self.inboxes[(first + n) % count];
            match inbox.sender.send(message) {
                Ok(()) => {
                    inbox.wake.ring_if_sleeping();
                    return Ok(());
                }
                Err(crossbeam_channel::SendError(back)) => message = back,
            }
        }
        let Message::Job(job) = message else {
            unreachable!("only a job was sent")
        };
        Err((
            job,
            std::io::Error::other("every coroutine worker has stopped"),
        ))
    }

    /// Makes worker 0's loop panic (tests of its recovery).
    #[cfg(test)]
    fn inject_panic(&self) {
        self.inboxes[0].sender.send(Message::Panic).unwrap();
        self.inboxes[0].wake.ring();
    }

    /// From now on the workers take datagrams off `socket` themselves,
    /// with `take`, until [`stop_taking_datagrams`](Self::stop_taking_datagrams).
    pub(super) fn take_datagrams(
        &self,
        socket: BorrowedFd<'_>,
        take: TakeDatagram,
    ) -> io::Result<()> {
        *self.taking.write() = Some(take);
        // Exclusive: a datagram wakes one sleeping worker, not all of them.
        let interest = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE, DATAGRAMS);
        for inbox in &self.inboxes {
            if let Err(err) = inbox.epoll.add(socket, interest) {
                self.stop_taking_datagrams(socket);
                return Err(err.into());
            }
        }
        Ok(())
    }

    /// Ends [`take_datagrams`](Self::take_datagrams): waits for the takes
    /// under way (a `get_request`, `verify_request` and `process_request`
    /// each; not the handlers), and none starts after.
    pub(super) fn stop_taking_datagrams(&self, socket: BorrowedFd<'_>) {
        let take = self.taking.write().take();
        for inbox in &self.inboxes {
            // Not there if adding it failed.
            let _ = inbox.epoll.delete(socket);
        }
        drop(take);
    }

    /// Tells every worker to exit once its coroutines are done, and waits
    /// for them when `join`.
    pub(super) fn stop(&self, join: bool) {
        for inbox in &self.inboxes {
            let _ = inbox.sender.send(Message::Stop);
            inbox.wake.ring();
        }
        let threads = std::mem::take(&mut *self.threads.lock());
        if join {
            for thread in threads {
                let _ = thread.join();
            }
        }
    }
}

/// A worker thread's life: its loop, started again after a failure (see
/// the module doc).
fn work(mut worker: Worker) {
    let _signal_stack = overflow::alternate_stack();
    overflow::install_handler();
    worker.become_worker();
    let number = worker.number;
    let mut pause = Duration::from_millis(10);
    loop {
        let started = Instant::now();
        let failure = match panic::catch_unwind(AssertUnwindSafe(|| worker.run())) {
            Ok(Ok(())) => return,
            Ok(Err(err)) => err.to_string(),
            Err(payload) => format!("panicked: {}", crate::panic::payload_message(&*payload)),
        };
        log::error!(
            "coroutine worker {number}: its loop failed ({failure}); starting it again with \
             its {} requests",
            worker.coroutines.len()
        );
        // A failure that comes back at once is not retried in a busy loop.
        if started.elapsed() > Duration::from_secs(1) {
            pause = Duration::from_millis(10);
        } else {
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
        worker.recover();
    }
}

/// The epoll token of a worker's waker; tasks count from 1.
const WAKE: u64 = 0;
/// The epoll token of a datagram server's socket, while the workers take
/// its datagrams.
const DATAGRAMS: u64 = u64::MAX;

type Co = corosensei::Coroutine<Resume, Suspend, (), DefaultStack>;

/// One request's coroutine, as its worker keeps it.
struct Coroutine {
    co: Co,
    /// Its stack's mapping, `(lowest address, top)`, guard page included.
    stack: (usize, usize),
    client: Address,
    /// Suspended, waiting for readiness or its deadline.
    waiting: bool,
    /// Read readiness reported by epoll (`thread_locals::READABLE`,
    /// `READ_CLOSED`), for its reads to know when one would only say EAGAIN.
    readiness: u8,
    deadline: Option<Instant>,
    /// The descriptors it waited on, to forget when it ends.
    fds: Vec<RawFd>,
}

/// A worker thread: runs its coroutines in turn and sleeps in epoll_wait
/// when all of them wait.
struct Worker {
    /// Its pool's id, and its number in the pool.
    pool: u64,
    number: usize,
    inbox: Receiver<Message>,
    wake: Arc<Doorbell>,
    epoll: Arc<Epoll>,
    taking: Arc<RwLock<Option<TakeDatagram>>>,
    stacks: Stacks,
    coroutines: Slab<Coroutine>,
    runnable: VecDeque<(u64, Resume)>,
    deadlines: BTreeSet<(Instant, u64)>,
    stopping: bool,
    /// When the last slow-step warning was logged, and how many were not
    /// since.
    last_warning: Option<Instant>,
    unreported_slow_steps: u64,
}

impl Worker {
    fn new(
        (pool, number): (u64, usize),
        inbox: Receiver<Message>,
        wake: Arc<Doorbell>,
        epoll: Arc<Epoll>,
        taking: Arc<RwLock<Option<TakeDatagram>>>,
        stack_size: usize,
    ) -> Worker {
        Worker {
            pool,
            number,
            inbox,
            wake,
            epoll,
            taking,
            stacks: Stacks::new(stack_size.max(16 * 1024), KEPT_STACKS),
            coroutines: Slab::default(),
            runnable: VecDeque::new(),
            deadlines: BTreeSet::new(),
            stopping: false,
            last_warning: None,
            unreported_slow_steps: 0,
        }
    }

    /// Makes the calling thread this worker.
    fn become_worker(&self) {
        // This thread runs nothing but requests: their panics are reported
        // through handle_error, never printed, however their coroutines
        // interleave.
        crate::panic::capture_on_this_thread();
        thread_locals::become_worker(self.number, Arc::clone(&self.epoll));
    }

    /// After a failure of the loop: every coroutine runnable once more
    /// (whatever it waited for), none left half-entered.
    fn recover(&mut self) {
        thread_locals::leave_task();
        self.runnable.clear();
        self.deadlines.clear();
        for (id, coroutine) in self.coroutines.iter_mut() {
            coroutine.waiting = false;
            coroutine.deadline = None;
            self.runnable.push_back((id, Resume::Ready));
        }
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
            let mut timeout = match self.deadlines.first() {
                _ if !self.runnable.is_empty() => EpollTimeout::ZERO,
                first => sys::epoll_timeout(first.map(|&(deadline, _)| sys::remaining(deadline))),
            };
            if timeout != EpollTimeout::ZERO {
                // About to sleep: from here on a new message rings the
                // eventfd (Doorbell::ring_if_sleeping); one that came
                // before is seen now.
                self.wake.sleeping.store(true, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                if !self.inbox.is_empty() {
                    timeout = EpollTimeout::ZERO;
                }
            }
            let waited = self.epoll.wait(&mut events, timeout);
            self.wake.sleeping.store(false, Ordering::SeqCst);
            let n = match waited {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(err) => return Err(err.into()),
            };
            for event in &events[..n] {
                if event.data() == WAKE {
                    self.wake.waker.reset();
                } else if event.data() == DATAGRAMS {
                    self.take_datagrams();
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
                Ok(Message::Job(job)) => {
                    if let Some(id) = self.start(job) {
                        self.runnable.push_back((id, Resume::Ready));
                    }
                }
                Ok(Message::Stop) | Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.stopping = true;
                    return;
                }
                #[cfg(test)]
                Ok(Message::Panic) => panic!("a panic injected in the worker's loop"),
                Err(crossbeam_channel::TryRecvError::Empty) => return,
            }
        }
    }

    /// Takes up to [`DATAGRAM_BATCH`] datagrams off the server's socket,
    /// running each request at once until it first waits or ends.
    fn take_datagrams(&mut self) {
        for _ in 0..DATAGRAM_BATCH {
            let taking = self.taking.read();
            // Stopped since epoll reported it.
            let Some(take) = &*taking else { return };
            let (taken, job) = thread_locals::taking_for(self.pool, take);
            drop(taking);
            if let Some(id) = job.and_then(|job| self.start(job)) {
                self.step(id, Resume::Ready);
            }
            match taken {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                // Closed by server_close while serve_forever stops.
                Err(err) if err.kind() == io::ErrorKind::NotConnected => return,
                Err(err) => {
                    log::warn!("coroutine worker {}: get_request: {err}", self.number);
                    return;
                }
            }
        }
    }

    /// Puts `job` on a coroutine and returns its id, to be resumed; without
    /// a stack for it, refuses it (handle_error, shutdown_request,
    /// in-flight count released).
    fn start(&mut self, job: Job) -> Option<u64> {
        let Job { work, client } = job;
        let stack = match self.stacks.take() {
            Ok(stack) => stack,
            Err(err) => {
                // On this thread's own stack, outside any coroutine.
                work.refuse(err);
                return None;
            }
        };
        let bounds = (stack.limit().get(), stack.base().get());
        let co = Co::with_stack(stack, move |yielder, _first: Resume| {
            thread_locals::start_coroutine(yielder);
            work.run();
        });
        let id = self.coroutines.insert(Coroutine {
            co,
            stack: bounds,
            client,
            waiting: false,
            readiness: 0,
            deadline: None,
            fds: Vec::new(),
        });
        Some(id)
    }

    /// Makes a waiting coroutine runnable, adding what an event reported to
    /// its read readiness (events of coroutines gone are ignored).
    fn wake_up(&mut self, id: u64, resume: Resume, events: EpollFlags) {
        let Some(coroutine) = self.coroutines.get_mut(id) else {
            return;
        };
        if events.intersects(EpollFlags::EPOLLIN) {
            coroutine.readiness |= thread_locals::READABLE;
        }
        if events.intersects(EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
            coroutine.readiness |= thread_locals::READABLE | thread_locals::READ_CLOSED;
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
        thread_locals::enter_task(id, coroutine.readiness, coroutine.stack);
        let entered = Instant::now();
        // Panics are caught inside, around the handler and the hooks
        // (process_request_thread); one escaping here ends this request
        // (the coroutine is then done), not the worker.
        let yielded = panic::catch_unwind(AssertUnwindSafe(|| coroutine.co.resume(resume)));
        coroutine.readiness = thread_locals::leave_task();
        let held = entered.elapsed();
        if held > SLOW_STEP {
            let client = coroutine.client.clone();
            self.warn_slow(held, &client);
        }
        let Some(coroutine) = self.coroutines.get_mut(id) else {
            return;
        };
        match yielded {
            Ok(CoroutineResult::Yield(Suspend::Wait { fd, deadline })) => {
                if !coroutine.fds.contains(&fd) {
                    coroutine.fds.push(fd);
                }
                coroutine.waiting = true;
                if let Some(deadline) = deadline {
                    coroutine.deadline = Some(deadline);
                    self.deadlines.insert((deadline, id));
                }
            }
            Ok(CoroutineResult::Yield(Suspend::Sleep { deadline })) => {
                coroutine.waiting = true;
                coroutine.deadline = Some(deadline);
                self.deadlines.insert((deadline, id));
            }
            Ok(CoroutineResult::Yield(Suspend::Yield)) => {
                self.runnable.push_back((id, Resume::Ready));
            }
            Ok(CoroutineResult::Return(())) => self.finish(id),
            Err(payload) => {
                log::error!(
                    "a request's coroutine failed outside its handler: {}",
                    crate::panic::payload_message(&*payload)
                );
                self.finish(id);
            }
        }
    }

    /// Logs that a resumption held this worker for `held`, at most once
    /// per [`WARN_EVERY`].
    fn warn_slow(&mut self, held: Duration, client: &Address) {
        self.unreported_slow_steps += 1;
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            return;
        }
        let others = self.unreported_slow_steps - 1;
        self.unreported_slow_steps = 0;
        self.last_warning = Some(now);
        log::warn!(
            "{}: the request from {client} kept its coroutine worker from its other requests \
             for {} ms (over {} ms: a blocking call or a long computation in a handler{})",
            thread::current().name().unwrap_or("a coroutine worker"),
            held.as_millis(),
            SLOW_STEP.as_millis(),
            if others > 0 {
                format!("; {others} more such since the last warning")
            } else {
                String::new()
            }
        );
    }

    /// Forgets a finished coroutine and keeps its stack for the next.
    fn finish(&mut self, id: u64) {
        if let Some(coroutine) = self.coroutines.remove(id) {
            thread_locals::forget_task(id, &coroutine.fds);
            // Done (returned, or unwound by a panic): nothing lives on it.
            self.stacks.give_back(coroutine.co.into_stack());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;

    /// How long a test waits for something that should happen at once
    /// before it fails rather than hangs.
    const BOUND: Duration = Duration::from_secs(10);

    /// Work made of closures.
    struct TestWork<R> {
        run: R,
        refused: mpsc::Sender<String>,
    }

    impl<R: FnOnce() + Send> Work for TestWork<R> {
        fn run(self: Box<Self>) {
            (self.run)();
        }
        fn refuse(self: Box<Self>, err: std::io::Error) {
            self.refused.send(err.to_string()).unwrap();
        }
    }

    fn job(run: impl FnOnce() + Send + 'static, refused: mpsc::Sender<String>) -> Job {
        Job {
            work: Box::new(TestWork { run, refused }),
            client: Address::Inet(([127, 0, 0, 1], 9).into()),
        }
    }

    #[test]
    fn a_request_without_a_stack_is_refused_and_the_worker_goes_on() {
        // No address space is this large: every stack fails to map.
        let workers = Workers::start(1, 1 << 50).unwrap();
        let (refused, refusals) = mpsc::channel();
        let (ran, runs) = mpsc::channel();
        for n in 0..3 {
            let ran = ran.clone();
            workers
                .submit(job(move || ran.send(n).unwrap(), refused.clone()))
                .map_err(|(_, err)| err)
                .unwrap();
        }
        for _ in 0..3 {
            let refusal = refusals.recv_timeout(BOUND).unwrap();
            assert!(
                refusal.contains("cannot map a coroutine stack"),
                "{refusal}"
            );
        }
        drop(ran);
        workers.stop(true);
        // None ran; the worker refused all three and then exited when told.
        assert_eq!(runs.try_recv(), Err(mpsc::TryRecvError::Disconnected));
    }

    #[test]
    fn a_worker_whose_loop_panics_starts_again_with_its_coroutines() {
        let workers = Workers::start(1, 64 * 1024).unwrap();
        let (refused, refusals) = mpsc::channel();
        let (done, finished) = mpsc::channel();
        let (mut peer, socket) = UnixStream::pair().unwrap();
        socket.set_nonblocking(true).unwrap();
        // A suspended coroutine: it waits for its socket.
        let waiting = done.clone();
        let (entered, has_entered) = mpsc::channel();
        workers
            .submit(job(
                move || {
                    entered.send(()).unwrap();
                    super::super::suspend::wait_readable(socket.as_fd(), Some(BOUND)).unwrap();
                    waiting.send("waited").unwrap();
                },
                refused.clone(),
            ))
            .map_err(|(_, err)| err)
            .unwrap();
        has_entered.recv_timeout(BOUND).unwrap();
        workers.inject_panic();
        // Taken after the panic, by the loop started again.
        let after = done.clone();
        workers
            .submit(job(move || after.send("after").unwrap(), refused))
            .map_err(|(_, err)| err)
            .unwrap();
        assert_eq!(finished.recv_timeout(BOUND), Ok("after"));
        // The coroutine suspended before the panic is still there, and
        // still resumed by its socket.
        peer.write_all(b"x").unwrap();
        assert_eq!(finished.recv_timeout(BOUND), Ok("waited"));
        assert!(refusals.try_recv().is_err(), "nothing refused");
        workers.stop(true);
    }

    /// Every warning logged by this test binary (the one logger a unit
    /// test installs).
    struct Warnings {
        records: parking_lot::Mutex<Vec<String>>,
        arrived: parking_lot::Condvar,
    }

    static WARNINGS: Warnings = Warnings {
        records: parking_lot::Mutex::new(Vec::new()),
        arrived: parking_lot::Condvar::new(),
    };

    impl log::Log for Warnings {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::Level::Warn
        }
        fn log(&self, record: &log::Record<'_>) {
            if self.enabled(record.metadata()) {
                self.records.lock().push(record.args().to_string());
                self.arrived.notify_all();
            }
        }
        fn flush(&self) {}
    }

    #[test]
    fn a_resumption_that_holds_the_worker_too_long_is_logged_with_its_client() {
        log::set_logger(&WARNINGS).unwrap();
        log::set_max_level(log::LevelFilter::Warn);
        let workers = Workers::start(1, 64 * 1024).unwrap();
        let (refused, _refusals) = mpsc::channel();
        // The mistake the warning is for: a blocking call in a handler.
        let blocked = SLOW_STEP + Duration::from_millis(50);
        workers
            .submit(job(move || thread::sleep(blocked), refused))
            .map_err(|(_, err)| err)
            .unwrap();
        let deadline = Instant::now() + BOUND;
        let mut records = WARNINGS.records.lock();
        let warning = loop {
            if let Some(warning) = records
                .iter()
                .find(|r| r.contains("kept its coroutine worker"))
            {
                break warning.clone();
            }
            assert!(
                !WARNINGS
                    .arrived
                    .wait_until(&mut records, deadline)
                    .timed_out(),
                "no warning: {records:?}"
            );
        };
        drop(records);
        assert!(
            warning.starts_with("socketserver-coroutines-0: "),
            "{warning}"
        );
        assert!(
            warning.contains("the request from 127.0.0.1:9"),
            "{warning}"
        );
        workers.stop(true);
    }
}
