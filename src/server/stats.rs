//! [`ServerStats`]: what a server has done, counted as it goes — atomics
//! bumped once per connection or request, never per read or write, so
//! they are always on.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a request was refused before its handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// [`Server::max_connections`](crate::Server::max_connections)
    /// connections were open already.
    MaxConnections,
    /// [`Server::max_per_ip`](crate::Server::max_per_ip) connections from
    /// the client's IP address were open already.
    MaxPerIp,
    /// The [`ThreadPoolMixIn`](crate::ThreadPoolMixIn) was full under
    /// [`Overload::Reject`](crate::mixin::Overload::Reject), or shutting
    /// down while the request waited for room.
    Overload,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::MaxConnections => "max_connections reached",
            Refusal::MaxPerIp => "max_per_ip reached for this address",
            Refusal::Overload => "thread pool full",
        })
    }
}

/// A snapshot of a server's counters: [`BaseServer::stats`](crate::BaseServer::stats).
///
/// Counted for every mix-in. Under [`ForkingMixIn`](crate::ForkingMixIn) a
/// request's outcome is counted when its child is reaped, from the child's
/// exit status (one request per child).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Stream connections open now: accepted and not yet closed, whether a
    /// handler runs on them or they wait (for a worker, for their next
    /// request on a kept connection, in a forked child).
    pub open: usize,
    /// Connections accepted, or datagrams received, by `get_request`.
    pub accepted: u64,
    /// Refused by [`Server::max_connections`](crate::Server::max_connections).
    pub refused_max_connections: u64,
    /// Refused by [`Server::max_per_ip`](crate::Server::max_per_ip).
    pub refused_max_per_ip: u64,
    /// Refused by [`verify_request`](crate::BaseServer::verify_request).
    pub refused_verify: u64,
    /// Refused by a full [`ThreadPoolMixIn`](crate::ThreadPoolMixIn).
    pub refused_overload: u64,
    /// Handler runs that ended, successfully or not (a kept connection
    /// served again, [`StreamRequest::serve_again`](crate::StreamRequest::serve_again),
    /// counts once per run). Under [`ForkingMixIn`](crate::ForkingMixIn),
    /// once per child: the parent sees only the child's exit status, not
    /// how many runs its connection had.
    pub requests: u64,
    /// Requests whose handler returned an error (not panics).
    pub errors: u64,
    /// Requests whose handler panicked.
    pub panics: u64,
    /// Connections cut at their [`Server::request_timeout`](crate::Server::request_timeout)
    /// (not counted under [`ForkingMixIn`](crate::ForkingMixIn): the child
    /// cuts its own, and its exit status says only that the request failed).
    pub timed_out: u64,
}

impl fmt::Display for ServerStats {
    /// One line, for a log: `open 3, accepted 120, refused 4 (max_connections
    /// 4, max_per_ip 0, verify 0, overload 0), requests 116, errors 1,
    /// panics 0, timed out 0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let refused = self.refused_max_connections
            + self.refused_max_per_ip
            + self.refused_verify
            + self.refused_overload;
        write!(
            f,
            "open {}, accepted {}, refused {refused} (max_connections {}, max_per_ip {}, \
             verify {}, overload {}), requests {}, errors {}, panics {}, timed out {}",
            self.open,
            self.accepted,
            self.refused_max_connections,
            self.refused_max_per_ip,
            self.refused_verify,
            self.refused_overload,
            self.requests,
            self.errors,
            self.panics,
            self.timed_out
        )
    }
}

/// How a request ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Served,
    Failed,
    Panicked,
}

impl Outcome {
    /// A forked child's exit status for this outcome (Python's child exits
    /// 1 on any exception; a panic gets 2 here, to be counted apart).
    pub(crate) fn exit_status(self) -> i32 {
        match self {
            Outcome::Served => 0,
            Outcome::Failed => 1,
            Outcome::Panicked => 2,
        }
    }

    /// The outcome a child's exit status tells; killed by a signal: failed.
    pub(crate) fn from_exit_status(status: Option<i32>) -> Self {
        match status {
            Some(0) => Outcome::Served,
            Some(2) => Outcome::Panicked,
            _ => Outcome::Failed,
        }
    }
}

/// The counters behind [`ServerStats`] (`open` is the connection table's).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    accepted: AtomicU64,
    refused_max_connections: AtomicU64,
    refused_max_per_ip: AtomicU64,
    refused_verify: AtomicU64,
    refused_overload: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
}

// Relaxed: each counter is read on its own, for a report; none orders
// anything else.
impl Counters {
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self, reason: Refusal) {
        let counter = match reason {
            Refusal::MaxConnections => &self.refused_max_connections,
            Refusal::MaxPerIp => &self.refused_max_per_ip,
            Refusal::Overload => &self.refused_overload,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused_by_verify(&self) {
        self.refused_verify.fetch_add(1, Ordering::Relaxed);
    }

    /// One more handler run ended: `outcome` says how.
    pub(crate) fn ended(&self, outcome: Outcome) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Served => {}
            Outcome::Failed => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Panicked => {
                self.panics.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn snapshot(&self, open: usize, timed_out: u64) -> ServerStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ServerStats {
            open,
            accepted: load(&self.accepted),
            refused_max_connections: load(&self.refused_max_connections),
            refused_max_per_ip: load(&self.refused_max_per_ip),
            refused_verify: load(&self.refused_verify),
            refused_overload: load(&self.refused_overload),
            requests: load(&self.requests),
            errors: load(&self.errors),
            panics: load(&self.panics),
            timed_out,
        }
    }
}
