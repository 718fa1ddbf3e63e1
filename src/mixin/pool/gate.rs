//! The pool's readiness gate ([`Dispatch::WhenReadable`]): accepted
//! connections wait in an epoll set, on a thread of their own, until they
//! are readable (or silent past `idle_timeout`), and only then take a place
//! in the queue — so that silent clients cost a descriptor each, never a
//! worker.
//!
//! [`Dispatch::WhenReadable`]: super::Dispatch::WhenReadable

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use parking_lot::{Condvar, Mutex, MutexGuard};

use super::mixin::{guarded, Entry, Job, Overload, Pool, Waiting, WAIT_SLICE};
use crate::sys::{self, Waker};

/// What [`Gate::admit`] decided.
pub(super) enum Admission<'a> {
    /// Registered in the epoll set: hold the connection under this lock.
    Watched(MutexGuard<'a, GateState>, u64),
    /// The waiting set is full and the policy is to refuse (or shutdown came).
    Full,
    /// Not watched (the gate is closing, or epoll refused): queue it now.
    Unwatched,
}

/// Holds accepted connections until they are readable, then queues them.
#[derive(Debug)]
pub(super) struct Gate {
    epoll: Epoll,
    wake: Waker,
    state: Mutex<GateState>,
    /// Signalled when a waiting connection leaves (room under `max_waiting`).
    room: Condvar,
    idle_timeout: Option<Duration>,
    max_waiting: usize,
}

pub(super) struct GateState {
    /// Watched connections, by epoll token.
    pending: HashMap<u64, Box<dyn Waiting>>,
    /// (deadline, token), in registration order: deadlines only grow.
    expiry: VecDeque<(Instant, u64)>,
    next_token: u64,
    closing: bool,
}

impl std::fmt::Debug for GateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateState")
            .field("pending", &self.pending.len())
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

/// The waker's token; connections count from 1.
const WAKE: u64 = 0;

impl Gate {
    pub(super) fn new(idle_timeout: Option<Duration>, max_waiting: usize) -> std::io::Result<Gate> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let wake = Waker::new()?;
        epoll.add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
        Ok(Gate {
            epoll,
            wake,
            state: Mutex::new(GateState {
                pending: HashMap::new(),
                expiry: VecDeque::new(),
                next_token: WAKE + 1,
                closing: false,
            }),
            room: Condvar::new(),
            idle_timeout,
            max_waiting: max_waiting.max(1),
        })
    }

    pub(super) fn waiting(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// Makes room under `max_waiting` (waiting or refusing as the policy
    /// says), then adds the connection to the epoll set — one-shot: it
    /// fires once, and the registration goes when the connection closes.
    /// The lock comes back held, so that the gate cannot see the event
    /// before it knows the connection.
    pub(super) fn admit(&self, pool: &Pool, fd: BorrowedFd<'_>, entry: Entry) -> Admission<'_> {
        let mut state = self.state.lock();
        while state.pending.len() >= self.max_waiting && !state.closing {
            if pool.overload == Overload::Reject
                || pool.handle.shutdown_requested()
                || entry == Entry::Parked
            {
                return Admission::Full;
            }
            self.room.wait_for(&mut state, WAIT_SLICE);
        }
        if state.closing {
            return Admission::Unwatched;
        }
        let token = state.next_token;
        state.next_token += 1;
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLONESHOT;
        let mut event = EpollEvent::new(flags, token);
        // A parked connection is in the set already, disarmed since it
        // fired (one-shot): re-arm it.
        let added = match self.epoll.add(fd, event) {
            Err(Errno::EEXIST) => self.epoll.modify(fd, &mut event),
            added => added,
        };
        match added {
            Ok(()) => Admission::Watched(state, token),
            Err(err) => {
                log::debug!("thread pool: epoll_ctl failed ({err}); dispatching at once");
                Admission::Unwatched
            }
        }
    }

    /// Keeps a watched connection until it is readable or expires.
    pub(super) fn hold(
        &self,
        mut state: MutexGuard<'_, GateState>,
        token: u64,
        waiting: Box<dyn Waiting>,
    ) {
        let was_idle = state.expiry.is_empty();
        if let Some(timeout) = self.idle_timeout {
            state.expiry.push_back((Instant::now() + timeout, token));
        }
        state.pending.insert(token, waiting);
        drop(state);
        if was_idle {
            // The gate may be waiting with no deadline: give it this one.
            self.wake.wake();
        }
    }

    /// Stops watching: the gate thread hands over what is readable by now,
    /// closes the connections that never sent anything (no request is lost:
    /// they made none), and exits. New connections are dispatched at once.
    pub(super) fn close(&self) {
        self.state.lock().closing = true;
        self.room.notify_all();
        self.wake.wake();
    }

    /// Closes every connection still waiting (the gate thread's last act).
    fn close_waiting(&self) {
        let silent: Vec<_> = {
            let mut state = self.state.lock();
            state.closing = true;
            state.expiry.clear();
            state.pending.drain().map(|(_, waiting)| waiting).collect()
        };
        self.room.notify_all();
        for waiting in silent {
            if let Some(task) = waiting.upgrade() {
                guarded("shutdown_request", || task.close());
            }
        }
    }

    /// Takes the connections past their idle deadline.
    fn take_expired(&self, state: &mut GateState) -> Vec<Box<dyn Waiting>> {
        let now = Instant::now();
        let mut expired = Vec::new();
        while let Some(&(deadline, token)) = state.expiry.front() {
            if !state.pending.contains_key(&token) {
                state.expiry.pop_front(); // dispatched already
            } else if deadline <= now {
                state.expiry.pop_front();
                expired.extend(state.pending.remove(&token));
            } else {
                break;
            }
        }
        expired
    }

    fn close_expired(&self, pool: &Pool, expired: Vec<Box<dyn Waiting>>) {
        if expired.is_empty() {
            return;
        }
        self.room.notify_all();
        for waiting in expired {
            pool.counters.expired.fetch_add(1, Ordering::SeqCst);
            log::debug!("thread pool: closing a connection silent past the idle timeout");
            if let Some(task) = waiting.upgrade() {
                guarded("shutdown_request", || task.close());
            }
        }
    }

    /// The gate thread: hands over readable connections and expires silent
    /// ones until closed, then makes one last pass without waiting. Whatever
    /// still waits when it returns — or unwinds — is closed.
    pub(super) fn run(&self, pool: &Weak<Pool>, sender: &Sender<Job>) {
        struct Exit<'a>(&'a Gate);
        impl Drop for Exit<'_> {
            fn drop(&mut self) {
                self.0.close_waiting();
            }
        }
        let _exit = Exit(self);
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            let (closing, timeout) = {
                let state = self.state.lock();
                let deadline = state.expiry.front().map(|(deadline, _)| *deadline);
                (state.closing, deadline)
            };
            let timeout = match (closing, timeout) {
                (true, _) => EpollTimeout::ZERO,
                (false, deadline) => sys::epoll_timeout(deadline.map(sys::remaining)),
            };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(err) => {
                    log::error!(
                        "thread pool: epoll_wait failed: {err}; no longer waiting for readiness"
                    );
                    return;
                }
            };
            let (ready, expired) = {
                let mut state = self.state.lock();
                let mut ready = Vec::new();
                for event in &events[..n] {
                    if event.data() == WAKE {
                        self.wake.reset();
                    } else if let Some(waiting) = state.pending.remove(&event.data()) {
                        ready.push(waiting);
                    }
                }
                (ready, self.take_expired(&mut state))
            };
            if !ready.is_empty() {
                self.room.notify_all();
            }
            let Some(pool) = pool.upgrade() else { return };
            self.close_expired(&pool, expired);
            for task in ready.into_iter().filter_map(|waiting| waiting.upgrade()) {
                // While the queue is full, keep expiring silent connections.
                pool.submit(sender, task, || {
                    let expired = self.take_expired(&mut self.state.lock());
                    self.close_expired(&pool, expired);
                });
            }
            if closing && n < events.len() {
                return;
            }
        }
    }
}
