//! The worker threads of [`CoroutineMixIn`](crate::CoroutineMixIn):
//! [`Workers`] hands each request to one of them in turn; a [`Worker`]
//! runs its coroutines one at a time, resuming each when epoll reports its
//! socket ready or its deadline passes, and sleeps in epoll_wait when all
//! of them wait.

use std::collections::{BTreeSet, VecDeque};
use std::os::fd::{AsFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use generator::{Generator, Gn};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use parking_lot::Mutex;

use super::slab::Slab;
use super::suspend::{Resume, Suspend};
use super::thread_locals;
use crate::sys::{self, Waker};

pub(super) type Task = Box<dyn FnOnce() + Send>;

enum Message {
    Task(Task),
    /// Exit once every coroutine has finished.
    Stop,
}

/// The worker threads and the way to each.
#[derive(Debug)]
pub(super) struct Workers {
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
    pub(super) fn start(count: usize, stack_size: usize) -> std::io::Result<Workers> {
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

    pub(super) fn submit(&self, task: Task) -> std::io::Result<()> {
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
    pub(super) fn stop(&self, join: bool) {
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
    inbox: Receiver<Message>,
    wake: Arc<Waker>,
    epoll: Rc<Epoll>,
    /// Stack size in words, as the generator crate counts it (and even: an
    /// odd size asks it to fill the stack to measure its use, touching
    /// every page).
    stack_words: usize,
    coroutines: Slab<Coroutine>,
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
        thread_locals::become_worker(Rc::clone(&epoll));
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
        thread_locals::enter_task(id, coroutine.readiness);
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
        coroutine.readiness = thread_locals::leave_task();
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
            thread_locals::forget_task(id, &coroutine.fds);
        }
    }
}
