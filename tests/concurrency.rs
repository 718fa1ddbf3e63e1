//! The Threading and ThreadPool variants of CPython's server tests, its
//! threading error-handler tests and test_close_immediately, and what this
//! crate adds: panic isolation in every mode, slow clients against a small
//! pool, graceful shutdown under load, the pool's overload policies.
//! Forking lives in tests/forking.rs; process-wide counts (threads,
//! descriptors) in files of their own.

#[path = "util/one_request.rs"]
mod one_request;
#[path = "util/serving.rs"]
mod serving;
mod util;

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use one_request::one_request;
use parking_lot::Mutex;
use serving::Serving;
use socketserver::mixin::{Dispatch, Overload};
#[cfg(feature = "coroutine")]
use socketserver::CoroutineMixIn;
use socketserver::{
    AddressOf, BaseServer, MixIn, Refusal, RequestOf, Server, StreamRequest, Synchronous, Tcp,
    ThreadPoolMixIn, ThreadPoolTCPServer, ThreadingMixIn, ThreadingTCPServer, Udp, Unix, UnixDgram,
};
use util::{
    bounded, datagram_line_echo, hammer, hold_echo, line_echo, panicky, run_server, tcp_examine,
    tcp_exchange, udp_examine, unix_dgram_examine, unix_path, unix_stream_examine, Counting,
    Recorder, TimedEcho, CLIENT_TIMEOUT, TEST_STR,
};

const LIMIT: Duration = Duration::from_secs(120);

/// CPython's four server tests (`test_TCPServer`, `test_UnixStreamServer`,
/// `test_UDPServer`, `test_UnixDatagramServer`) under the mix-in `M`; `tag`
/// tells its Unix socket files apart.
fn four_servers<M: MixIn + Default>(tag: &str) {
    let server = Server::<Tcp, M>::new("127.0.0.1:0", line_echo).unwrap();
    run_server(server, tcp_examine);
    let server = Server::<Unix, M>::new(unix_path(&format!("{tag}s")), line_echo).unwrap();
    run_server(server, unix_stream_examine);
    let server = Server::<Udp, M>::new("127.0.0.1:0", datagram_line_echo).unwrap();
    run_server(server, udp_examine);
    let path = unix_path(&format!("{tag}d"));
    let server = Server::<UnixDgram, M>::new(path, datagram_line_echo).unwrap();
    run_server(server, unix_dgram_examine);
}

/// CPython: `test_ThreadingTCPServer`, `test_ThreadingUnixStreamServer`,
/// `test_ThreadingUDPServer`, `test_ThreadingUnixDatagramServer`.
#[test]
fn test_threading_servers() {
    bounded(LIMIT, || four_servers::<ThreadingMixIn>("t"));
}

/// The pool's versions of the four server tests.
#[test]
fn test_thread_pool_servers() {
    bounded(LIMIT, || four_servers::<ThreadPoolMixIn>("p"));
}

/// The coroutine mix-in's versions of the four server tests.
#[test]
#[cfg(feature = "coroutine")]
fn test_coroutine_servers() {
    bounded(LIMIT, || four_servers::<CoroutineMixIn>("c"));
}

/// CPython: `test_close_immediately` — a threading server closed before any
/// request has nothing to join and does not fail.
#[test]
fn test_close_immediately() {
    bounded(LIMIT, || {
        let server = ThreadingTCPServer::new("127.0.0.1:0", line_echo).unwrap();
        server.server_close();
        assert_eq!(server.mixin.tracked_threads(), 0);
        let pool = ThreadPoolTCPServer::new("127.0.0.1:0", line_echo).unwrap();
        pool.server_close();
    });
}

/// CPython: `MiscTestCase.test_threads_reaped` — ten requests through
/// `handle_request`, and finished threads are not kept.
#[test]
fn test_threads_reaped() {
    bounded(LIMIT, || {
        let server = Arc::new(ThreadingTCPServer::new("127.0.0.1:0", line_echo).unwrap());
        for _ in 0..10 {
            let address = server.server_address();
            let client = std::thread::spawn(move || tcp_exchange(address, TEST_STR));
            server.handle_request().unwrap();
            assert_eq!(client.join().unwrap(), TEST_STR);
        }
        assert!(server.mixin.tracked_threads() < 10);
        server.server_close();
        assert_eq!(server.mixin.tracked_threads(), 0);
    });
}

/// CPython: `ErrorHandlerTest.test_threading_handled` (and, since a Rust
/// panic is Python's ordinary exception, `test_threading_not_handled`'s
/// Rust counterpart): the error reaches `handle_error` on the worker thread,
/// and `shutdown_request` still runs.
#[test]
fn test_threading_handled() {
    bounded(LIMIT, || {
        for fail in [
            || Err(io::Error::other("Test error")),
            || -> io::Result<()> { panic!("Test error") },
        ] {
            let log = Arc::new(Mutex::new(String::new()));
            let handler_log = Arc::clone(&log);
            let handler = move |_: &mut StreamRequest<'_>| {
                handler_log.lock().push_str("Handler called\n");
                fail()
            };
            let server = Arc::new(Recorder::new(
                ThreadingTCPServer::new("127.0.0.1:0", handler).unwrap(),
            ));
            drop(TcpStream::connect(server.server_address()).unwrap());
            server.handle_request().unwrap();
            server.server_close(); // joins the thread: the log is complete
            assert_eq!(*log.lock(), "Handler called\n");
            assert_eq!(server.count("handle_error"), 1, "{:?}", server.calls());
            assert!(server.calls()[1].contains("Test error"));
            assert_eq!(server.count("shutdown_request"), 1);
        }
    });
}

/// 10,000 requests, every other one panicking: every good one is answered,
/// every panic reported once through `handle_error`, in the given mode.
fn panic_isolation<M: MixIn + Default>() {
    const TOTAL: usize = 10_000;
    let server = Serving::start(Recorder::new(
        Server::<Tcp, M>::new("127.0.0.1:0", panicky).unwrap(),
    ));
    let answered = hammer(server.server_address(), TOTAL, 8);
    let server = server.stop();
    server.server_close();
    assert_eq!(answered, TOTAL / 2);
    assert_eq!(server.count("handle_error"), TOTAL / 2);
    assert_eq!(server.count("shutdown_request"), TOTAL);
}

#[test]
fn panic_isolation_synchronous() {
    bounded(LIMIT, panic_isolation::<Synchronous>);
}

#[test]
fn panic_isolation_threading() {
    bounded(LIMIT, panic_isolation::<ThreadingMixIn>);
}

#[test]
fn panic_isolation_thread_pool() {
    bounded(LIMIT, || {
        panic_isolation::<ThreadPoolMixIn>();
    });
}

#[test]
#[cfg(feature = "coroutine")]
fn panic_isolation_coroutine() {
    bounded(LIMIT, panic_isolation::<CoroutineMixIn>);
}

/// A failing or panicking handler never costs the pool a worker: a pool of
/// one serves on after a thousand panics.
#[test]
fn pool_keeps_its_workers_through_panics() {
    bounded(LIMIT, || {
        let server = Serving::start(util::pool_server(1, panicky));
        assert_eq!(hammer(server.server_address(), 2000, 4), 1000);
        let server = server.stop();
        server.server_close(); // the last worker may still be closing its request
        let stats = server.mixin.stats();
        assert_eq!(stats.served, 2000);
        assert_eq!(stats.active, 0);
    });
}

/// A pool of 4 workers (further set by `configure`) whose handler echoes
/// with `timeout` on reads and writes, serving, with 50 connections to it
/// that never send a byte while `body` runs; then they close and the server
/// shuts down.
fn with_slowloris(
    timeout: Duration,
    configure: impl FnOnce(&mut ThreadPoolMixIn),
    body: impl FnOnce(&ThreadPoolTCPServer),
) {
    let mut server = util::pool_server(4, TimedEcho(timeout));
    configure(&mut server.mixin);
    let server = Serving::start(server);
    let silent: Vec<_> = (0..50)
        .map(|_| TcpStream::connect(server.server_address()).unwrap())
        .collect();
    body(&server);
    drop(silent);
    server.stop();
}

/// Slow clients: a pool of 4 workers, 50 connections that never send a
/// byte, and a real client still served within timeout + 1 s — the
/// connections wait for readability outside the pool.
#[test]
fn slowloris_does_not_starve_the_pool() {
    bounded(LIMIT, || {
        let timeout = Duration::from_secs(2);
        let readiness_dispatch = |_: &mut ThreadPoolMixIn| {}; // the default
        with_slowloris(timeout, readiness_dispatch, |server| {
            let started = Instant::now();
            assert_eq!(tcp_exchange(server.server_address(), TEST_STR), TEST_STR);
            let waited = started.elapsed();
            eprintln!("real client served after {waited:?} behind 50 silent connections");
            assert!(waited < timeout + Duration::from_secs(1), "{waited:?}");
            // Accepted in order before the real client, all fifty wait for
            // readability outside the pool: none holds a worker.
            assert_eq!(server.mixin.stats().waiting, 50);
        });
    });
}

/// Without readiness dispatch (`Dispatch::Immediately`, a plain FIFO), the
/// same 50 silent connections hold the 4 workers and the real client waits
/// — the reason for the default.
#[test]
fn fifo_dispatch_is_starved_by_slowloris() {
    bounded(LIMIT, || {
        let timeout = Duration::from_secs(1);
        let fifo = |pool: &mut ThreadPoolMixIn| {
            pool.dispatch = Dispatch::Immediately;
            pool.block_on_close = false;
        };
        with_slowloris(timeout, fifo, |server| {
            let client = TcpStream::connect(server.server_address()).unwrap();
            client
                .set_read_timeout(Some(timeout + Duration::from_secs(1)))
                .unwrap();
            (&client).write_all(TEST_STR).unwrap();
            let err = (&client).read(&mut [0; 16]).unwrap_err();
            assert_eq!(
                err.kind(),
                io::ErrorKind::WouldBlock,
                "not served within timeout + 1 s"
            );
        });
    });
}

/// A silent connection is closed after the idle timeout, unserved.
#[test]
fn pool_closes_connections_silent_past_the_idle_timeout() {
    bounded(LIMIT, || {
        let mut server = ThreadPoolTCPServer::new("127.0.0.1:0", line_echo).unwrap();
        server.mixin.dispatch = Dispatch::WhenReadable {
            idle_timeout: Some(Duration::from_millis(200)),
        };
        let server = Serving::start(server);
        let silent = util::client(server.server_address());
        assert!(
            util::read_to_end(&silent).is_empty(),
            "closed by the server"
        );
        assert_eq!(server.mixin.stats().expired, 1);
        assert_eq!(server.mixin.stats().served, 0);
        server.stop();
    });
}

/// A server that answers "busy" when the pool refuses a request.
struct Busy {
    base: ThreadPoolTCPServer,
}

impl BaseServer for Busy {
    type Transport = Tcp;
    type MixIn = ThreadPoolMixIn;
    fn base(&self) -> &ThreadPoolTCPServer {
        &self.base
    }
    fn reject_request(
        &self,
        request: RequestOf<Self>,
        client_address: AddressOf<Self>,
        reason: Refusal,
    ) {
        assert_eq!(reason, Refusal::Overload);
        let _ = (&request).write_all(b"busy\n");
        self.base().reject_request(request, client_address, reason);
    }
}

/// `Overload::Reject`: with the one worker busy and the queue full, the
/// next request is refused at once through `reject_request` (here, a
/// "busy" reply); counters say so.
#[test]
fn pool_reject_policy_answers_busy() {
    bounded(LIMIT, || {
        let (handler, hold) = hold_echo();
        let mut base = util::pool_server(1, handler);
        base.mixin.queue_size = 1;
        base.mixin.overload = Overload::Reject;
        base.mixin.dispatch = Dispatch::Immediately;
        let server = Serving::start(Busy { base });
        let address = server.server_address();

        let holder = std::thread::spawn(move || tcp_exchange(address, b"hold\n"));
        hold.entered(); // the worker is busy
        let queued = util::client(address); // fills the queue
        (&queued).write_all(b"queued\n").unwrap();
        let refused = util::client(address);
        assert_eq!(util::read_to_end(&refused), b"busy\n");
        let stats = server.base.mixin.stats();
        assert_eq!(
            (stats.rejected, stats.active, stats.queued),
            (1, 1, 1),
            "{stats:?}"
        );
        // The server's counters: three accepted, the third refused, and
        // the other two counted open (the refused one left before its reply).
        let counted = server.stats();
        assert_eq!(
            (counted.accepted, counted.refused_overload, counted.open),
            (3, 1, 2),
            "{counted}"
        );

        hold.release();
        assert_eq!(holder.join().unwrap(), b"hold\n");
        assert_eq!(
            util::read_to_end(&queued),
            b"queued\n",
            "queued requests are served"
        );
        server.stop();
    });
}

/// `Overload::Wait`: when full, the accept loop waits; every request is
/// eventually served, none refused.
#[test]
fn pool_wait_policy_applies_backpressure() {
    bounded(LIMIT, || {
        let mut server = util::pool_server(2, line_echo);
        server.mixin.queue_size = 2;
        let server = Serving::start(server);
        let address = server.server_address();
        let clients: Vec<_> = (0..40)
            .map(|i| std::thread::spawn(move || tcp_exchange(address, format!("{i}\n").as_bytes())))
            .collect();
        for (i, c) in clients.into_iter().enumerate() {
            assert_eq!(c.join().unwrap(), format!("{i}\n").as_bytes());
        }
        let server = server.stop();
        server.server_close(); // the last worker may still be closing its request
        let stats = server.mixin.stats();
        assert_eq!((stats.served, stats.rejected), (40, 0));
    });
}

const REPLY_LEN: usize = 64 * 1024;

/// Reads a first line, then a second, then replies with 64 KiB.
fn two_part(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut line = Vec::new();
    request.rfile.read_until(b'\n', &mut line)?;
    request.rfile.read_until(b'\n', &mut line)?;
    let reply: Vec<u8> = (0..REPLY_LEN).map(|i| (i % 251) as u8).collect();
    request.wfile.write_all(&reply)
}

/// Graceful shutdown under load: 200 connections mid-exchange when
/// `shutdown()` comes; every one accepted gets its full reply, and
/// `server_close` waits for them.
fn graceful_shutdown<M: MixIn + Default>(configure: impl FnOnce(&mut M)) {
    const CONNECTIONS: usize = 200;
    let mut base = Server::<Tcp, M>::new("127.0.0.1:0", two_part).unwrap();
    configure(&mut base.mixin);
    let (server, accepted_rx) = Counting::new(base);
    let server = Serving::start(server);
    let address = server.server_address();
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let stream = util::client(address);
            (&stream).write_all(b"first half\n").unwrap();
            stream
        })
        .collect();
    for _ in 0..CONNECTIONS {
        accepted_rx.recv().unwrap();
    }
    let server = server.stop(); // stops accepting; requests are mid-exchange
    let closing = {
        let server = Arc::clone(&server);
        std::thread::spawn(move || server.server_close())
    };
    let expected: Vec<u8> = (0..REPLY_LEN).map(|i| (i % 251) as u8).collect();
    let mut truncated = 0;
    for stream in clients {
        (&stream).write_all(b"second half\n").unwrap();
        if util::read_to_end(&stream) != expected {
            truncated += 1;
        }
    }
    closing.join().unwrap();
    assert_eq!(truncated, 0, "replies lost or truncated");
    assert_eq!(
        TcpStream::connect(address).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );
}

#[test]
fn graceful_shutdown_under_load_threading() {
    bounded(LIMIT, || graceful_shutdown::<ThreadingMixIn>(|_| {}));
}

#[test]
fn graceful_shutdown_under_load_thread_pool() {
    bounded(LIMIT, || {
        // Fewer workers than connections: most requests wait in the queue
        // or the readiness set when shutdown comes, and are served all the same.
        graceful_shutdown::<ThreadPoolMixIn>(|pool| pool.workers = 16);
    });
}

#[test]
#[cfg(feature = "coroutine")]
fn graceful_shutdown_under_load_coroutine() {
    // One worker: the 200 requests are suspended coroutines when shutdown
    // comes, and server_close waits for each to finish.
    bounded(LIMIT, || {
        graceful_shutdown::<CoroutineMixIn>(|c| c.workers = 1)
    });
}

/// `block_on_close = false` and `daemon_threads` make `server_close` return
/// without waiting; `close_timeout` bounds the wait, then stops the request
/// still running (its connection shut down: the handler sees end-of-file).
#[test]
fn block_on_close_daemon_threads_and_close_timeout() {
    bounded(LIMIT, || {
        for (configure, stopped) in [
            (
                (|m: &mut ThreadingMixIn| m.block_on_close = false) as fn(&mut ThreadingMixIn),
                false,
            ),
            (|m| m.daemon_threads = true, false),
            (|m| m.close_timeout = Some(Duration::from_millis(100)), true),
        ] {
            let (entered, in_handler) = mpsc::channel();
            let entered = Mutex::new(entered);
            let mut server =
                ThreadingTCPServer::new("127.0.0.1:0", move |r: &mut StreamRequest<'_>| {
                    entered.lock().send(()).unwrap();
                    line_echo(r)
                })
                .unwrap();
            configure(&mut server.mixin);
            let server = Arc::new(server);
            let client = TcpStream::connect(server.server_address()).unwrap();
            server.handle_request().unwrap();
            in_handler.recv().unwrap();
            let started = Instant::now();
            server.server_close(); // the handler is still waiting for a line
            assert!(started.elapsed() < Duration::from_secs(5));
            if stopped {
                assert_eq!(server.mixin.active_threads(), 0, "stopped and waited for");
                client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
                assert_eq!(util::read_to_end(&client), b"", "closed by the stop");
            } else {
                assert_eq!(server.mixin.active_threads(), 1);
            }
            drop(client); // the handler ends
        }
    });
}

/// With `block_on_close` (the default), `server_close` waits for a request
/// in flight to finish.
#[test]
fn block_on_close_waits_for_requests() {
    bounded(LIMIT, || {
        let server = Arc::new(ThreadingTCPServer::new("127.0.0.1:0", line_echo).unwrap());
        let client = util::client(server.server_address());
        server.handle_request().unwrap();
        let closing = {
            let server = Arc::clone(&server);
            std::thread::spawn(move || server.server_close())
        };
        (&client).write_all(TEST_STR).unwrap();
        assert_eq!(util::read_to_end(&client), TEST_STR);
        closing.join().unwrap();
        assert_eq!(server.mixin.active_threads(), 0);
    });
}

/// Request threads are named.
#[test]
fn request_threads_are_named() {
    bounded(LIMIT, || {
        let name = one_request::<ThreadingMixIn, _>(|_| {
            std::thread::current().name().unwrap_or_default().to_owned()
        });
        assert_eq!(name, "socketserver-0");
    });
}
