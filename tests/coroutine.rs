//! What the coroutine mix-in promises beyond the server tests it shares with
//! the other mix-ins (tests/concurrency.rs): a read or a write that would
//! block suspends only its request, timeouts still apply, and the PROXY
//! header is read the same way. Every test runs on one worker thread, where
//! a request that blocked its thread would stall all the others.
#![cfg(feature = "coroutine")]

mod util;

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(feature = "proxy")]
use socketserver::ProxyProtocol;
use socketserver::{BaseServer, CoroutineTCPServer, StreamRequest};
use util::{bounded, line_echo, payload, serve, Recorder, TimedEcho, CLIENT_TIMEOUT};

const LIMIT: Duration = Duration::from_secs(60);

fn one_worker(server: CoroutineTCPServer) -> Arc<CoroutineTCPServer> {
    let mut server = server;
    server.mixin.workers = 1;
    Arc::new(server)
}

/// 100 connections open at once, served in the reverse of the order they
/// were accepted: the first ones wait, suspended, while the later ones are
/// answered. A worker blocked in the first connection's read would never
/// get to the others.
#[test]
fn one_worker_serves_connections_side_by_side() {
    bounded(LIMIT, || {
        let server = one_worker(CoroutineTCPServer::new("127.0.0.1:0", line_echo).unwrap());
        let serving = serve(&server, None);
        let clients: Vec<TcpStream> = (0..100)
            .map(|_| {
                let stream = TcpStream::connect(server.server_address()).unwrap();
                stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
                stream
            })
            .collect();
        for (i, stream) in clients.iter().enumerate().rev() {
            let line = format!("client {i}\n");
            (&*stream).write_all(line.as_bytes()).unwrap();
            assert_eq!(util::read_to_end(stream), line.as_bytes());
        }
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        server.server_close();
        assert_eq!(server.mixin.active_requests(), 0);
    });
}

const BIG: usize = 64 * 1024 * 1024;

/// "big" gets 64 MiB, more than the socket buffers hold; anything else its
/// echo.
fn big_or_echo(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut line = Vec::new();
    request.rfile.read_until(b'\n', &mut line)?;
    if line == b"big\n" {
        request.wfile.write_all(&payload(7, BIG))
    } else {
        request.wfile.write_all(&line)
    }
}

/// A client that stops reading leaves its request suspended in the middle
/// of a write; another client is served meanwhile, and the first then gets
/// every byte, in order.
#[test]
fn a_blocked_write_suspends_only_its_request() {
    bounded(LIMIT, || {
        let server = one_worker(CoroutineTCPServer::new("127.0.0.1:0", big_or_echo).unwrap());
        let serving = serve(&server, None);
        let reader = TcpStream::connect(server.server_address()).unwrap();
        reader.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        (&reader).write_all(b"big\n").unwrap();
        // The first byte arrives once the handler is writing; it then fills
        // the buffers and must wait for this client, which does not read.
        let mut first = [0; 1];
        (&reader).read_exact(&mut first).unwrap();

        let other = TcpStream::connect(server.server_address()).unwrap();
        other.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        (&other).write_all(b"meanwhile\n").unwrap();
        assert_eq!(util::read_to_end(&other), b"meanwhile\n");

        let mut reply = first.to_vec();
        reply.extend(util::read_to_end(&reader));
        assert_eq!(reply.len(), BIG);
        assert!(reply == payload(7, BIG), "every byte, in order");
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

/// `StreamOptions::timeout` applies to a suspended read as to a blocking
/// one: a silent client is cut off once it passes, with a `TimedOut` error
/// for handle_error; a talkative one on the same worker is served meanwhile.
#[test]
fn timeouts_apply_to_suspended_reads() {
    bounded(LIMIT, || {
        let timeout = Duration::from_millis(300);
        let mut base = CoroutineTCPServer::new("127.0.0.1:0", TimedEcho(timeout)).unwrap();
        base.mixin.workers = 1;
        let server = Arc::new(Recorder::new(base));
        let serving = serve(&server, None);
        let started = Instant::now();
        let silent = TcpStream::connect(server.server_address()).unwrap();
        silent.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        assert_eq!(
            util::tcp_exchange(server.server_address(), b"talkative\n"),
            b"talkative\n"
        );
        assert!(util::read_to_end(&silent).is_empty(), "closed unanswered");
        assert!(
            started.elapsed() >= timeout,
            "not before the timeout: {:?}",
            started.elapsed()
        );
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        server.server_close();
        let errors = server.calls_to("handle_error");
        assert_eq!(errors.len(), 1, "{:?}", server.calls());
        assert!(errors[0].contains("timed out"), "{errors:?}");
    });
}

/// The PROXY v1 header is found by peeking at what has arrived: with the
/// header cut in two, the first peek would block and the coroutine waits
/// for the rest.
#[test]
#[cfg(feature = "proxy")]
fn a_split_proxy_header_is_read_whole() {
    bounded(LIMIT, || {
        let mut base = CoroutineTCPServer::new("127.0.0.1:0", |r: &mut StreamRequest<'_>| {
            let mut line = String::new();
            r.rfile.read_line(&mut line)?;
            write!(r.wfile, "{} {line}", r.client_address)
        })
        .unwrap();
        base.mixin.workers = 1;
        base.proxy_protocol = ProxyProtocol::Required {
            timeout: CLIENT_TIMEOUT,
        };
        let server = Arc::new(base);
        let serving = serve(&server, None);
        let stream = TcpStream::connect(server.server_address()).unwrap();
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        (&stream)
            .write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 56324")
            .unwrap();
        // Another client is served while the first header is incomplete.
        let other = TcpStream::connect(server.server_address()).unwrap();
        other.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        (&other)
            .write_all(b"PROXY TCP4 192.0.2.2 127.0.0.1 1000 443\r\nsecond\n")
            .unwrap();
        assert_eq!(util::read_to_end(&other), b"192.0.2.2:1000 second\n");
        (&stream).write_all(b" 443\r\nfirst\n").unwrap();
        assert_eq!(util::read_to_end(&stream), b"192.0.2.1:56324 first\n");
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

/// A request whose socket is always ready never has to wait, so it never
/// suspends on its own: after a budget of operations it yields to the
/// others on its worker. Here one request spins on writes that always
/// succeed (empty ones) until a second request, on the same single worker,
/// tells it to stop; without the budget the second would never run.
#[test]
fn an_always_ready_request_yields_to_the_others() {
    bounded(LIMIT, || {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spins = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (stop_in, spins_in) = (Arc::clone(&stop), Arc::clone(&spins));
        let server = one_worker(
            CoroutineTCPServer::new("127.0.0.1:0", move |r: &mut StreamRequest<'_>| {
                let mut line = Vec::new();
                r.rfile.read_until(b'\n', &mut line)?;
                if line == b"spin\n" {
                    let mut connection = r.connection;
                    while !stop_in.load(std::sync::atomic::Ordering::SeqCst) {
                        assert_eq!(connection.write(b"")?, 0);
                        spins_in.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    r.wfile.write_all(b"stopped\n")
                } else {
                    stop_in.store(true, std::sync::atomic::Ordering::SeqCst);
                    r.wfile.write_all(b"stop sent\n")
                }
            })
            .unwrap(),
        );
        let serving = serve(&server, None);
        let spinner = TcpStream::connect(server.server_address()).unwrap();
        spinner.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        (&spinner).write_all(b"spin\n").unwrap();
        while spins.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        assert_eq!(
            util::tcp_exchange(server.server_address(), b"stop\n"),
            b"stop sent\n"
        );
        assert_eq!(util::read_to_end(&spinner), b"stopped\n");
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}
