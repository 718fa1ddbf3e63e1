//! [`ForkingMixIn`]: Python's `ForkingMixIn`, a child process per request.
//!
//! # Fork safety
//!
//! `fork()` copies only the calling thread. Any lock another thread held at
//! that moment stays locked in the child for ever, so a child may deadlock on
//! the allocator, a logger or stdout. The rule: **fork only from a server
//! whose process runs no other threads** — no `ThreadingMixIn` or pool
//! beside it, no logger thread, no runtime. This module warns once (through
//! `log`) when it forks from a process with more than one thread. This file
//! is the only one in the crate allowed `unsafe`: for `fork()` and the
//! child's `_exit()`.

#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use parking_lot::Mutex;

use super::{process_request_thread, MixIn};
use crate::{AddressOf, BaseServer, RequestError, RequestOf};

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
    /// `handle_request` loops reap children at least that often.
    pub timeout: Duration,
    /// Python's `block_on_close`: `server_close` waits for every child.
    /// Defaults to `true`.
    pub block_on_close: bool,
    active_children: Mutex<BTreeSet<Pid>>,
    warned: AtomicBool,
}

impl Default for ForkingMixIn {
    fn default() -> Self {
        ForkingMixIn {
            max_children: 40,
            timeout: Duration::from_secs(300),
            block_on_close: true,
            active_children: Mutex::new(BTreeSet::new()),
            warned: AtomicBool::new(false),
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
            .map(|pid| pid.as_raw().unsigned_abs())
            .collect()
    }

    /// Python's `collect_children(blocking=...)`: reaps the children that
    /// have exited (`blocking`: waits for every child). While `max_children`
    /// or more remain, waits for the oldest to exit.
    pub fn collect_children(&self, blocking: bool) {
        let mut children = self.active_children.lock();
        children.retain(|&pid| !reap(pid, false));
        while children.len() >= self.max_children.max(1) {
            let oldest = *children.first().expect("not empty");
            reap(oldest, true);
            children.remove(&oldest);
            children.retain(|&pid| !reap(pid, false));
        }
        if blocking {
            for pid in std::mem::take(&mut *children) {
                reap(pid, true);
            }
        }
    }

    fn warn_if_threaded(&self) {
        let threads = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .and_then(|n| n.trim().parse::<usize>().ok())
            });
        if threads.is_some_and(|n| n > 1) && !self.warned.swap(true, Ordering::Relaxed) {
            log::warn!(
                "ForkingMixIn: forking a process that runs {} threads; a child may deadlock on a \
                 lock another thread held (see the fork-safety rule in ForkingMixIn's docs)",
                threads.unwrap_or_default()
            );
        }
    }
}

/// Waits for one of our children; true once it is gone (exited, or not ours
/// any more).
fn reap(pid: Pid, blocking: bool) -> bool {
    let flags = if blocking {
        None
    } else {
        Some(WaitPidFlag::WNOHANG)
    };
    loop {
        match waitpid(pid, flags) {
            Ok(WaitStatus::StillAlive) => return false,
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return true,
            Ok(_) => return false,
            Err(Errno::EINTR) => continue,
            // ECHILD: reaped elsewhere already, or never ours.
            Err(_) => return true,
        }
    }
}

impl MixIn for ForkingMixIn {
    /// Python's `ForkingMixIn.process_request`: fork; the parent records the
    /// child and closes its copy of the request (`close_request`, no
    /// shutdown); the child runs [`process_request_thread`] and exits with
    /// status 0, or 1 if the request failed, without running destructors.
    fn process_request<S: BaseServer>(
        &self,
        server: &Arc<S>,
        request: RequestOf<S>,
        client_address: AddressOf<S>,
    ) {
        self.collect_children(false);
        self.warn_if_threaded();
        // SAFETY: the child runs only the request (process_request_thread)
        // and then `_exit`s without unwinding or running destructors; the
        // parent goes on as before. What fork cannot make safe — locks held
        // by other threads at the fork — is excluded by the rule in this
        // module's docs (warned about above).
        match unsafe { fork() } {
            Ok(ForkResult::Parent { child }) => {
                self.active_children.lock().insert(child);
                server.close_request(request);
            }
            Ok(ForkResult::Child) => {
                let ok = process_request_thread(&**server, request, client_address);
                // SAFETY: `_exit` ends the child at once. Unlike
                // `process::exit`, it runs no atexit handlers and flushes no
                // buffers copied from the parent, which would then be
                // written twice — Python's `os._exit`.
                unsafe { nix::libc::_exit(if ok { 0 } else { 1 }) }
            }
            Err(errno) => {
                let error = RequestError::Process(errno.into());
                server.handle_error(&request, &client_address, &error);
                server.shutdown_request(request);
            }
        }
    }

    /// Python's `ForkingMixIn.server_close`: wait for the children when
    /// `block_on_close`, else reap those that have exited.
    fn server_close(&self) {
        self.collect_children(self.block_on_close);
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
