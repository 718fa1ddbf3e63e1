//! The request loop: Python's `serve_forever`, `handle_request` and
//! `_handle_request_noblock`.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::base::{AddressOf, BaseServer, RequestOf};
use super::selector::{self, AcceptBackoff, Ready};
use crate::handler::RequestKind;
use crate::mixin::MixIn;
use crate::transport::Transport;
use crate::{Address, Datagram, Refusal, RequestError};

fn class<S: BaseServer>() -> &'static str {
    S::Transport::CLASS
}

pub(crate) fn serve_forever<S: BaseServer>(
    server: &Arc<S>,
    poll_interval: Option<Duration>,
) -> io::Result<()> {
    let root = server.base();
    let handle = root.handle();
    let _serving = handle.start_serving()?;
    root.serve_as(server);
    // Dropped before `_serving`: no datagram is taken once we return.
    #[cfg(feature = "coroutine")]
    let on_workers = datagrams_on_workers(server)?;
    #[cfg(not(feature = "coroutine"))]
    let on_workers: Option<()> = None;
    let mut backoff = AcceptBackoff::default();
    while !handle.shutdown_requested() {
        let ready = match backoff.delay() {
            // Accept keeps failing while the listener stays readable: sleep
            // on the waker alone, then try again.
            Some(delay) => match selector::select(None, Some(handle.waker()), Some(delay))? {
                Ready::Timeout => Ready::Request,
                woke => woke,
            },
            None => {
                let socket = match root.socket() {
                    Ok(socket) => socket,
                    // server_close() from another thread: it asked us to stop.
                    Err(_) if handle.shutdown_requested() => break,
                    Err(err) => return Err(err),
                };
                let interval = poll_interval.or_else(|| root.mixin.poll_interval());
                // The workers wait for the datagrams: this thread only for
                // shutdown (and the interval).
                let socket = on_workers.is_none().then_some(socket.as_fd());
                selector::select(socket, Some(handle.waker()), interval)?
            }
        };
        // bpo-35017: a shutdown() that came during the wait wins over a
        // request that came with it.
        if handle.shutdown_requested() {
            break;
        }
        // Whether service_actions already ran after the last request.
        let mut turn_ended = false;
        match ready {
            Ready::Wake => handle.drain_waker(),
            Ready::Request => {
                // Take what is waiting, not only the request that woke us:
                // under a burst of connections (or datagrams) this saves a
                // poll(2) per request. Each is still a turn of Python's loop:
                // service_actions runs once after it, and a shutdown() that
                // came meanwhile wins over the next request.
                for taken in 0..BATCH {
                    if taken > 0 {
                        server.service_actions();
                        turn_ended = true;
                        if handle.shutdown_requested() {
                            break;
                        }
                    }
                    match handle_request_noblock(server) {
                        Ok(()) => {
                            backoff.succeeded(class::<S>());
                            turn_ended = false;
                        }
                        // Nothing (more) was there: not a failure. The first
                        // time, another thread took it or the client gave up.
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                            backoff.succeeded(class::<S>());
                            break;
                        }
                        Err(err) => {
                            backoff.failed(class::<S>(), &err);
                            turn_ended = false;
                            break;
                        }
                    }
                }
            }
            Ready::Timeout => {}
        }
        if !turn_ended {
            server.service_actions();
        }
    }
    Ok(())
}

/// For a datagram server in coroutine mode: has the workers take the
/// datagrams themselves while this lives. Handing each datagram from this
/// thread to a worker cost more than most handlers do (docs/concurrency.md).
#[cfg(feature = "coroutine")]
fn datagrams_on_workers<S: BaseServer>(
    server: &Arc<S>,
) -> io::Result<Option<crate::mixin::TakingDatagrams<<S::Transport as Transport>::Socket>>> {
    use std::any::{Any, TypeId};
    let root = server.base();
    let datagrams = TypeId::of::<<S::Transport as Transport>::Kind>() == TypeId::of::<Datagram>();
    let coroutines = (&root.mixin as &dyn Any).downcast_ref::<crate::CoroutineMixIn>();
    let (true, Some(coroutines)) = (datagrams, coroutines) else {
        return Ok(None);
    };
    let taker = Arc::clone(server);
    let take = Box::new(move || handle_request_noblock(&taker));
    match coroutines.take_datagrams(root.socket()?, take) {
        Ok(taking) => Ok(Some(taking)),
        // No worker to take them (threads or epoll sets exhausted): this
        // thread reads, and each request is refused as process_request
        // finds no worker.
        Err(err) => {
            log::warn!(
                "{}: the coroutine workers cannot take datagrams ({err}); reading them on the serving thread",
                class::<S>()
            );
            Ok(None)
        }
    }
}

/// The most requests `serve_forever` takes per wake-up before it polls
/// again (and so drains the waker and honours `poll_interval`).
const BATCH: usize = 64;

pub(crate) fn handle_request<S: BaseServer>(server: &Arc<S>) -> io::Result<()> {
    let root = server.base();
    root.serve_as(server);
    let deadline = root.timeout.map(|timeout| Instant::now() + timeout);
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        // The socket is not held past the wait: a forked child drops the
        // server's reference to close it, and must hold no other.
        let ready = selector::select(Some(root.socket()?.as_fd()), None, remaining)?;
        match ready {
            Ready::Request => match handle_request_noblock(server) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                result => return result,
            },
            // A signal (EINTR) or the timeout: only the deadline ends the wait.
            Ready::Timeout | Ready::Wake => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    server.handle_timeout();
                    return Ok(());
                }
            }
        }
    }
}

/// Python's `_handle_request_noblock`: one request, from `get_request` to
/// `process_request` (or `shutdown_request` when refused). Only
/// `get_request`'s error comes back; the rest is reported through
/// `handle_error` or the log, so the loop never dies of one connection.
/// Before `verify_request`, a stream connection is counted against the
/// server's limits, and refused through `reject_request` beyond them.
fn handle_request_noblock<S: BaseServer>(server: &Arc<S>) -> io::Result<()> {
    let (request, client_address) = server.get_request()?;
    let root = server.base();
    root.handle().counters().accepted();
    if let Err(reason) = admit(&**server, &request, &client_address) {
        crate::mixin::reject(&**server, request, client_address, reason);
        return Ok(());
    }
    match crate::panic::catch(|| server.verify_request(&request, &client_address)) {
        Ok(true) => {
            if let Err(message) =
                crate::panic::catch(|| server.process_request(request, client_address))
            {
                log::error!("{}: process_request panicked: {message}", class::<S>());
            }
        }
        Ok(false) => {
            root.handle().counters().refused_by_verify();
            crate::mixin::shutdown_request(&**server, request);
        }
        Err(message) => {
            server.handle_error(&request, &client_address, &RequestError::Panic(message));
            crate::mixin::shutdown_request(&**server, request);
        }
    }
    Ok(())
}

/// Counts a new stream connection among the open ones, or says which limit
/// refuses it. Datagrams are not counted.
fn admit<S: BaseServer>(
    server: &S,
    request: &RequestOf<S>,
    client_address: &AddressOf<S>,
) -> Result<(), Refusal> {
    let view = S::Transport::view(request);
    let Some(fd) = <S::Transport as Transport>::Kind::readiness(view) else {
        return Ok(());
    };
    let root = server.base();
    let limits = root.limits();
    // The address is converted only when a limit needs it.
    let ip = limits
        .max_per_ip
        .and_then(|_| Into::<Address>::into(client_address.clone()).ip());
    let admit = || {
        root.handle()
            .connections()
            .admit(fd.as_raw_fd(), ip, limits)
    };
    admit().or_else(|_| {
        // Connections that ended in forked children are counted open until
        // the children are reaped, which a `handle_request` loop does only
        // after a request: reap now, then look again.
        root.mixin.service_actions();
        admit()
    })
}
