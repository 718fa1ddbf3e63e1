//! [`ForkingMixIn`]: Python's `ForkingMixIn`, a child process per request.
//!
//! # Fork safety
//!
//! `fork()` copies only the calling thread. Any lock another thread held at
//! that moment stays locked in the child for ever, so a child may deadlock on
//! the allocator, a logger or stdout. The rule: **fork only from a server
//! whose process runs no other threads** — no `ThreadingMixIn` or pool
//! beside it, no logger thread, no runtime. So a forking server refuses a
//! request (reported to `handle_error`, the connection closed) when the
//! process runs more than one thread, unless the program opts in with
//! [`ForkingMixIn::fork_with_threads`], stating that its other threads hold
//! no lock a child could need. The crate denies `unsafe`; this file allows
//! it for `fork()` and the child's `_exit()`.

#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, SigHandler, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use parking_lot::Mutex;

use super::{process_request_outcome, MixIn};
use crate::handler::RequestKind;
use crate::server::connections::Elsewhere;
use crate::server::stats::Outcome;
use crate::{AddressOf, BaseServer, RequestError, RequestOf, ServerHandle, Transport};

/// Python's `ForkingMixIn`: each request runs in a child process.
///
/// At most `max_children` children run at once; at the limit the server
/// waits for one to exit before forking another. Children are reaped by
/// `service_actions` and `handle_timeout`, and `server_close` waits for all
/// of them when `block_on_close`. Only the server's own children are ever
/// waited for: a child the rest of the program started keeps its exit
/// status for its owner (Python's `waitpid(-1)` at the limit may take it).
///
/// ```no_run
/// use socketserver::{BaseServer, ForkingTCPServer, StreamRequest};
/// use std::sync::Arc;
/// let server = Arc::new(ForkingTCPServer::new("127.0.0.1:0", |_: &mut StreamRequest<'_>| Ok(()))?);
/// assert_eq!(server.mixin.max_children, 40);
/// server.serve_forever(None)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ForkingMixIn {
    /// Python's `max_children`. Defaults to 40.
    pub max_children: usize,
    /// Python's `timeout` for forking servers (300 s): the server's
    /// [`timeout`](crate::Server::timeout) starts as this, so that
    /// `handle_request` loops reap children at least that often. Read once,
    /// when the server is made: to change it later, set `server.timeout`.
    pub timeout: Duration,
    /// Python's `block_on_close`: `server_close` waits for every child.
    /// Defaults to `true`.
    pub block_on_close: bool,
    /// How long `server_close` waits for the children (with
    /// `block_on_close`) before it asks those still running to stop
    /// (SIGTERM, whose default action each child restores), then, after
    /// [`STOP_GRACE`](crate::STOP_GRACE), ends them (SIGKILL): none is left
    /// behind. Defaults to `None`: wait for ever, as Python (not in Python).
    pub close_timeout: Option<Duration>,
    /// Fork even when the process runs other threads. Defaults to `false`:
    /// such a request is refused — reported to `handle_error` as
    /// [`RequestError::Process`] naming the thread count, and closed —
    /// because a child copies only the forking thread, and a lock another
    /// thread held (the allocator's, a logger's, stdout's) stays locked in
    /// the child for ever. Set it when the other threads are known to hold
    /// no such lock while the server forks: e.g. a signal-handling thread
    /// blocked in `read(2)` (the `ctrlc` crate's), or a test harness's.
    /// Python forks regardless (3.12 only warns).
    pub fork_with_threads: bool,
    /// In the order forked, so that the oldest is first.
    active_children: Mutex<VecDeque<Child>>,
    /// Forks under way (a child not yet in `active_children`), so that a
    /// `server_close` on another thread waits for it too — without holding
    /// the lock across `fork()`, whose copy would stay locked in the child.
    forking: AtomicUsize,
}

impl Default for ForkingMixIn {
    fn default() -> Self {
        ForkingMixIn {
            max_children: 40,
            timeout: Duration::from_secs(300),
            block_on_close: true,
            close_timeout: None,
            fork_with_threads: false,
            active_children: Mutex::new(VecDeque::new()),
            forking: AtomicUsize::new(0),
        }
    }
}

impl ForkingMixIn {
    /// Python's `active_children`: the children still running (or not yet
    /// reaped).
    pub fn active_children(&self) -> Vec<u32> {
        self.active_children
            .lock()
            .iter()
            .map(|child| child.pid.as_raw().unsigned_abs())
            .collect()
    }

    /// Python's `collect_children(blocking=...)`: reaps the children that
    /// have exited (`blocking`: waits for every child). While `max_children`
    /// or more remain, waits for one of them to exit.
    pub fn collect_children(&self, blocking: bool) {
        self.reap_exited();
        // The waits below hold no lock: `active_children()` stays readable.
        loop {
            let children: Vec<Pid> = {
                let children = self.active_children.lock();
                if children.len() < self.max_children.max(1) {
                    break;
                }
                children.iter().map(|child| child.pid).collect()
            };
            let (gone, status) = wait_for_one(&children);
            let mut children = self.active_children.lock();
            let at = children.iter().position(|child| child.pid == gone);
            if let Some(child) = at.and_then(|at| children.remove(at)) {
                child.ended(status);
            }
        }
        if !blocking {
            return;
        }
        loop {
            let children = std::mem::take(&mut *self.active_children.lock());
            let none_left = children.is_empty();
            for child in children {
                let status = reap(child.pid, true);
                child.ended(status.flatten());
            }
            if none_left {
                if self.forking.load(Ordering::SeqCst) == 0 {
                    return;
                }
                std::thread::yield_now(); // a fork under way: its child comes next
            }
        }
    }

    /// Reaps the children that have exited, without waiting.
    fn reap_exited(&self) {
        let mut children = self.active_children.lock();
        let mut running = VecDeque::with_capacity(children.len());
        for child in children.drain(..) {
            match reap(child.pid, false) {
                Some(status) => child.ended(status),
                None => running.push_back(child),
            }
        }
        *children = running;
    }

    /// Reaps children until none is left (true) or `deadline` passes.
    fn reap_until(&self, deadline: Option<Instant>) -> bool {
        let Some(deadline) = deadline else {
            self.collect_children(true);
            return true;
        };
        loop {
            self.reap_exited();
            if self.active_children.lock().is_empty() && self.forking.load(Ordering::SeqCst) == 0 {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            // Children exit on their own schedule; a short poll keeps this
            // simple (a SIGCHLD handler would be process-wide state).
            std::thread::sleep(left.min(REAP_POLL));
        }
    }

    /// Sends `signal` to every child still recorded.
    fn signal_children(&self, signal: Signal) {
        for child in self.active_children.lock().iter() {
            // ESRCH: it exited meanwhile, and waits to be reaped.
            let _ = kill(child.pid, signal);
        }
    }

    /// Why this process must not fork now: it runs other threads and the
    /// program has not opted in with `fork_with_threads`.
    fn refuse_threaded(&self) -> Option<std::io::Error> {
        if self.fork_with_threads {
            return None;
        }
        let threads = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .and_then(|n| n.trim().parse::<usize>().ok())
            })?;
        (threads > 1).then(|| {
            std::io::Error::other(format!(
                "ForkingMixIn: refusing to fork a process that runs {threads} threads (a child \
                 may deadlock on a lock another thread held); set \
                 ForkingMixIn::fork_with_threads if the other threads hold none"
            ))
        })
    }
}

/// A request no child will run: reported, then shut down and closed.
fn not_forked<S: BaseServer + ?Sized>(
    server: &S,
    request: RequestOf<S>,
    client_address: AddressOf<S>,
    why: std::io::Error,
) {
    super::report(
        server,
        &request,
        &client_address,
        &RequestError::Process(why),
    );
    super::shutdown_request(server, request);
}

/// How often `server_close` looks for exited children while it waits with
/// a deadline.
const REAP_POLL: Duration = Duration::from_millis(10);

/// How often an idle `serve_forever` wakes to reap exited children while
/// some run (not in Python, which reaps only after a request or its 0.5 s
/// poll).
const IDLE_REAP_INTERVAL: Duration = Duration::from_secs(1);

/// The signals a server program commonly handles: a child restores their
/// default actions, so that it stops when told to, not as its parent would
/// (a handler inherited from the parent may rely on a thread that does not
/// exist in the child, and so ignore the signal).
const RESET_IN_CHILD: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// A request served by a child process, as the parent records it.
#[derive(Debug)]
struct Child {
    pid: Pid,
    /// Where the request's outcome and the connection's end are counted.
    server: ServerHandle,
    /// The connection, counted open until the child is gone.
    connection: Option<Elsewhere>,
}

impl Child {
    /// The child is gone, with this exit status (`None`: killed by a
    /// signal, or reaped by someone else).
    fn ended(self, status: Option<i32>) {
        // The connection first: a request counted as done has no
        // connection left open in `stats()`.
        if let Some(connection) = self.connection {
            self.server.connections().left_elsewhere(connection);
        }
        self.server
            .counters()
            .ended(Outcome::from_exit_status(status));
    }
}

/// Waits until one of `children` (oldest first) exits, reaps it, and
/// returns it with its exit status. Python's `waitpid(-1)` would reap any
/// child, the program's own included; here the next child to exit is only
/// peeked at (WNOWAIT) and reaped if it is ours — if it is not, the oldest
/// of ours is waited for instead.
fn wait_for_one(children: &[Pid]) -> (Pid, Option<i32>) {
    let next = waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
        .ok()
        .and_then(|status| status.pid())
        .filter(|pid| children.contains(pid));
    let pid = next.unwrap_or(children[0]);
    (pid, reap(pid, true).flatten())
}

/// Waits for one of our children. `None`: still running (only without
/// `blocking`); `Some(status)` once it is gone, with its exit status
/// (`None` when a signal ended it, or it was not ours to reap).
fn reap(pid: Pid, blocking: bool) -> Option<Option<i32>> {
    let flags = if blocking {
        None
    } else {
        Some(WaitPidFlag::WNOHANG)
    };
    loop {
        match waitpid(pid, flags) {
            Ok(WaitStatus::StillAlive) => return None,
            Ok(WaitStatus::Exited(_, status)) => return Some(Some(status)),
            Ok(WaitStatus::Signaled(..)) => return Some(None),
            Ok(_) => return None,
            Err(Errno::EINTR) => continue,
            // ECHILD: reaped elsewhere already, or never ours.
            Err(_) => return Some(None),
        }
    }
}

impl MixIn for ForkingMixIn {
    /// Python's `ForkingMixIn.process_request`: fork; the parent records the
    /// child and closes its copy of the request (`close_request`, no
    /// shutdown); the child runs [`process_request_thread`](super::process_request_thread)
    /// and exits with status 0, or 1 if the request failed (2 if its
    /// handler panicked), without running destructors.
    fn process_request<S: BaseServer + ?Sized>(
        &self,
        server: &Arc<S>,
        request: RequestOf<S>,
        client_address: AddressOf<S>,
    ) {
        self.collect_children(false);
        if let Some(refused) = self.refuse_threaded() {
            return not_forked(&**server, request, client_address, refused);
        }
        // Counted from before the fork until the child is recorded, so that
        // a server_close on another thread cannot miss it.
        self.forking.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the child runs only the request (process_request_thread)
        // and then `_exit`s without unwinding or running destructors; the
        // parent goes on as before. What fork cannot make safe — locks held
        // by other threads at the fork — is excluded by the rule in this
        // module's docs: refused above unless the program opted in.
        match unsafe { fork() } {
            Ok(ForkResult::Parent { child }) => {
                let handle = server.base().handle();
                let connection =
                    <S::Transport as Transport>::Kind::readiness(S::Transport::view(&request))
                        .and_then(|fd| handle.connections().move_elsewhere(fd.as_raw_fd()));
                self.active_children.lock().push_back(Child {
                    pid: child,
                    server: handle.clone(),
                    connection,
                });
                self.forking.fetch_sub(1, Ordering::SeqCst);
                server.close_request(request);
            }
            Ok(ForkResult::Child) => {
                for signal in RESET_IN_CHILD {
                    // SAFETY: restoring a default action installs no
                    // handler, so nothing can run in a state it does not
                    // expect; the child has one thread.
                    let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
                }
                // The listening socket is the parent's: a child that kept
                // it would keep the port bound after the parent exits.
                server.base().close_socket_in_child();
                // Whatever a hook does — even a panicking shutdown_request —
                // the child must exit here, never return into the serve
                // loop as a second server (Python's `finally: os._exit`).
                let outcome = crate::panic::catch(|| {
                    process_request_outcome(&**server, request, client_address)
                })
                .unwrap_or(Outcome::Panicked);
                // SAFETY: `_exit` ends the child at once. Unlike
                // `process::exit`, it runs no atexit handlers and flushes no
                // buffers copied from the parent, which would then be
                // written twice — Python's `os._exit`.
                unsafe { nix::libc::_exit(outcome.exit_status()) }
            }
            Err(errno) => {
                self.forking.fetch_sub(1, Ordering::SeqCst);
                not_forked(&**server, request, client_address, errno.into());
            }
        }
    }

    /// Python's `ForkingMixIn.server_close`: wait for the children when
    /// `block_on_close` (at most `close_timeout`, then stop them), else
    /// reap those that have exited.
    fn server_close(&self, _: &ServerHandle) {
        if !self.block_on_close {
            self.collect_children(false);
            return;
        }
        if self.reap_until(self.close_timeout.map(|t| Instant::now() + t)) {
            return;
        }
        let left = self.active_children.lock().len();
        log::warn!(
            "server_close: {left} children still running after close_timeout; stopping them"
        );
        self.signal_children(Signal::SIGTERM);
        if self.reap_until(Some(Instant::now() + crate::STOP_GRACE)) {
            return;
        }
        self.signal_children(Signal::SIGKILL);
        self.collect_children(true);
    }

    /// While children run, an idle `serve_forever` wakes this often to reap
    /// those that have exited (no zombie waits for the next request).
    fn poll_interval(&self) -> Option<Duration> {
        (!self.active_children.lock().is_empty()).then_some(IDLE_REAP_INTERVAL)
    }

    /// Python's `ForkingMixIn.service_actions`: reap exited children.
    fn service_actions(&self) {
        self.collect_children(false);
    }

    /// Python's `ForkingMixIn.handle_timeout`: reap exited children.
    fn handle_timeout(&self) {
        self.collect_children(false);
    }

    fn default_timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }
}
