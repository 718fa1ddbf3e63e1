//! Mix-ins: how `process_request` runs a request — in the serving thread
//! ([`Synchronous`]), a thread of its own ([`ThreadingMixIn`]), a bounded
//! pool ([`ThreadPoolMixIn`]), a coroutine ([`CoroutineMixIn`], feature
//! `coroutine`) or a child process ([`ForkingMixIn`]).
//!
//! Python mixes these into a server class by inheritance
//! (`class ThreadingTCPServer(ThreadingMixIn, TCPServer)`); Rust gives the
//! server a mix-in type parameter (`Server<Tcp, ThreadingMixIn>`), named
//! after Python's classes by the aliases in the crate root.

#[cfg(feature = "coroutine")]
mod coroutine;
mod forking;
mod in_flight;
mod pool;
mod threading;
#[cfg(not(feature = "coroutine"))]
pub(crate) mod without_coroutines;

#[cfg(feature = "coroutine")]
pub(crate) use coroutine::TakingDatagrams;
#[cfg(feature = "coroutine")]
pub use coroutine::{CoroutineMixIn, DEFAULT_COROUTINE_STACK_SIZE};
pub use forking::ForkingMixIn;
pub use pool::{Dispatch, Overload, PoolStats, ThreadPoolMixIn};
pub use threading::{ThreadingMixIn, DEFAULT_STACK_SIZE};

// The socket I/O of `Connection` and the PROXY reader: it suspends the
// request's coroutine where it would block, with the `coroutine` feature;
// without it, the same functions are the plain blocking calls.
#[cfg(feature = "coroutine")]
pub(crate) use coroutine::suspend;
#[cfg(not(feature = "coroutine"))]
pub(crate) use without_coroutines as suspend;

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use crate::handler::RequestKind;
use crate::server::stats::Outcome;
use crate::{AddressOf, BaseServer, Refusal, RequestError, RequestOf, ServerHandle, Transport};

/// A concurrency policy: what `process_request` does with a request.
///
/// Implement it for a policy of your own; [`process_request_thread`] is the
/// body every policy runs, wherever it runs it.
pub trait MixIn: Send + Sync + 'static {
    /// Python's `process_request` for this mix-in: run
    /// [`process_request_thread`] for the request somewhere.
    fn process_request<S: BaseServer + ?Sized>(
        &self,
        server: &Arc<S>,
        request: RequestOf<S>,
        client_address: AddressOf<S>,
    );

    /// Called by `server_close` after the socket is closed: wait for
    /// requests in flight, as `block_on_close` says — at most the mix-in's
    /// `close_timeout`, then stop those still running
    /// ([`ServerHandle::stop_requests`]) and wait up to
    /// [`STOP_GRACE`](crate::STOP_GRACE) more. Defaults to nothing.
    fn server_close(&self, server: &ServerHandle) {
        let _ = server;
    }

    /// How often an idle `serve_forever` with no `poll_interval` of its own
    /// wakes (to call `service_actions`), asked anew at each wake-up: the
    /// forking mix-in reaps exited children so while some run. Defaults to
    /// `None`: an idle server never wakes.
    fn poll_interval(&self) -> Option<Duration> {
        None
    }

    /// Called by the default `service_actions`. Defaults to nothing.
    fn service_actions(&self) {}

    /// Called by the default `handle_timeout`. Defaults to nothing.
    fn handle_timeout(&self) {}

    /// The server's [`timeout`](crate::Server::timeout) when it is made:
    /// the forking mix-in's 300 s, as Python's `ForkingMixIn.timeout`.
    /// Defaults to `None`.
    fn default_timeout(&self) -> Option<Duration> {
        None
    }
}

/// No mix-in: each request is handled in the thread running `serve_forever`,
/// one at a time (Python's plain `TCPServer`, `UDPServer`, …).
#[derive(Debug, Clone, Copy, Default)]
pub struct Synchronous;

impl MixIn for Synchronous {
    fn process_request<S: BaseServer + ?Sized>(
        &self,
        server: &Arc<S>,
        request: RequestOf<S>,
        client_address: AddressOf<S>,
    ) {
        process_request_thread(&**server, request, client_address);
    }
}

/// Hands a request to `start`, which runs the work it is given elsewhere (a
/// new thread) and returns what it made of it. The work runs
/// [`process_request_thread`] with `running` held. The work waits in a slot
/// rather than in what `start` is given, so that if `start` fails (a thread
/// that cannot be spawned drops its closure) it is still ours to refuse:
/// reported to `handle_error` and shut down; then `None` is returned.
pub(crate) fn hand_over<S: BaseServer + ?Sized, T>(
    server: &Arc<S>,
    request: RequestOf<S>,
    client_address: AddressOf<S>,
    running: in_flight::Running,
    start: impl FnOnce(Box<dyn FnOnce() + Send>) -> std::io::Result<T>,
) -> Option<T> {
    let work = work(server, request, client_address, running);
    let slot = Arc::new(parking_lot::Mutex::new(Some(work)));
    let taken = Arc::clone(&slot);
    let run = Box::new(move || {
        let work = taken.lock().take();
        if let Some(work) = work {
            work.run();
        }
    });
    match start(run) {
        Ok(started) => Some(started),
        Err(err) => {
            let work = slot.lock().take();
            if let Some(work) = work {
                work.refuse(err);
            }
            None
        }
    }
}

/// A request handed over to run elsewhere: [`run`](Work::run) serves it;
/// [`refuse`](Work::refuse), called instead by a runner that cannot run it
/// after all (a coroutine worker without a stack for it), reports the
/// error to `handle_error` and shuts the request down. Either releases the
/// in-flight count it holds.
pub(crate) trait Work: Send {
    fn run(self: Box<Self>);
    fn refuse(self: Box<Self>, err: std::io::Error);
}

/// The request, its server and its in-flight count, as [`Work`].
struct Handed<S: BaseServer + ?Sized> {
    server: Arc<S>,
    request: RequestOf<S>,
    client_address: AddressOf<S>,
    running: in_flight::Running,
}

impl<S: BaseServer + ?Sized> Work for Handed<S> {
    fn run(self: Box<Self>) {
        let Handed {
            server,
            request,
            client_address,
            running,
        } = *self;
        running.enter();
        process_request_thread(&*server, request, client_address);
        // Finished before the server handle goes: if it was the last,
        // dropping the server here waits for the others, not for us.
        drop(running);
        drop(server);
    }

    fn refuse(self: Box<Self>, err: std::io::Error) {
        let Handed {
            server,
            request,
            client_address,
            running,
        } = *self;
        let error = RequestError::Process(err);
        report(&*server, &request, &client_address, &error);
        shutdown_request(&*server, request);
        drop(running);
    }
}

/// A request as [`Work`] for a runner elsewhere (one allocation).
pub(crate) fn work<S: BaseServer + ?Sized>(
    server: &Arc<S>,
    request: RequestOf<S>,
    client_address: AddressOf<S>,
    running: in_flight::Running,
) -> Box<dyn Work> {
    Box::new(Handed {
        server: Arc::clone(server),
        request,
        client_address,
        running,
    })
}

/// Python's `ThreadingMixIn.process_request_thread`: `finish_request`; on an
/// error or a panic, `handle_error` (once, with the panic's message and the
/// client's address); then `shutdown_request` in every case.
///
/// Returns whether the request succeeded.
pub fn process_request_thread<S: BaseServer + ?Sized>(
    server: &S,
    request: RequestOf<S>,
    client_address: AddressOf<S>,
) -> bool {
    process_request_outcome(server, request, client_address) == Outcome::Served
}

/// [`process_request_thread`], saying how the request ended.
pub(crate) fn process_request_outcome<S: BaseServer + ?Sized>(
    server: &S,
    request: RequestOf<S>,
    client_address: AddressOf<S>,
) -> Outcome {
    let outcome = finish_and_report(server, &request, &client_address);
    shutdown_request(server, request);
    outcome
}

/// [`process_request_thread`] on a pool worker, where a connection whose
/// handler asked to serve it again ([`StreamRequest::serve_again`]) may
/// park: then it is given back, open, instead of shut down.
///
/// [`StreamRequest::serve_again`]: crate::StreamRequest::serve_again
pub(crate) fn process_request_or_park<S: BaseServer + ?Sized>(
    server: &S,
    request: RequestOf<S>,
    client_address: AddressOf<S>,
) -> Option<(RequestOf<S>, AddressOf<S>)> {
    let (outcome, parked) = crate::handler::keep_alive::allowing_parking(|| {
        finish_and_report(server, &request, &client_address)
    });
    if parked && outcome == Outcome::Served {
        return Some((request, client_address));
    }
    shutdown_request(server, request);
    None
}

/// How the crate ends a request: the connection leaves the count of open
/// ones ([`ServerStats::open`](crate::ServerStats::open), the limits), then
/// `shutdown_request` closes it.
pub(crate) fn shutdown_request<S: BaseServer + ?Sized>(server: &S, request: RequestOf<S>) {
    leave(server, &request);
    server.shutdown_request(request);
}

/// How the crate refuses a request before its handler runs: counted by
/// `reason`, out of the count of open connections, then `reject_request`
/// (a panic there is logged: it must not take down the caller's thread).
pub(crate) fn reject<S: BaseServer + ?Sized>(
    server: &S,
    request: RequestOf<S>,
    client_address: AddressOf<S>,
    reason: Refusal,
) {
    server.base().handle().counters().refused(reason);
    leave(server, &request);
    if let Err(message) =
        crate::panic::catch(|| server.reject_request(request, client_address, reason))
    {
        log::error!("reject_request panicked: {message} (refusing: {reason})");
    }
}

/// The request's connection counts as open no more: it is about to close.
fn leave<S: BaseServer + ?Sized>(server: &S, request: &RequestOf<S>) {
    let view = S::Transport::view(request);
    if let Some(fd) = <S::Transport as Transport>::Kind::readiness(view) {
        server.base().handle().connections().leave(fd.as_raw_fd());
    }
}

/// `finish_request`, and `handle_error` if it failed or panicked: the part
/// of `process_request_thread` before `shutdown_request`. Counts and
/// returns how it ended.
fn finish_and_report<S: BaseServer + ?Sized>(
    server: &S,
    request: &RequestOf<S>,
    client_address: &AddressOf<S>,
) -> Outcome {
    let handle = server.base().handle();
    // A stream request's connection, for a bounded stop to shut down.
    let view = S::Transport::view(request);
    let open = <S::Transport as Transport>::Kind::readiness(view).map(|fd| handle.open_request(fd));
    let error = match crate::panic::catch(|| server.finish_request(request, client_address)) {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(RequestError::Handler(err)),
        Err(message) => Some(RequestError::Panic(message)),
    };
    let outcome = match &error {
        None => Outcome::Served,
        Some(RequestError::Panic(_)) => Outcome::Panicked,
        Some(_) => Outcome::Failed,
    };
    handle.counters().ended(outcome);
    if let Some(error) = error {
        report(server, request, client_address, &error);
    }
    // Given up before shutdown_request closes the socket (see OpenRequests).
    drop(open);
    outcome
}

/// `handle_error`, guarded: a panicking `handle_error` is logged, and must
/// not skip the `shutdown_request` that follows.
fn report<S: BaseServer + ?Sized>(
    server: &S,
    request: &RequestOf<S>,
    client_address: &AddressOf<S>,
    error: &RequestError,
) {
    if let Err(message) =
        crate::panic::catch(|| server.handle_error(request, client_address, error))
    {
        log::error!("handle_error panicked: {message} (while reporting: {error})");
    }
}
