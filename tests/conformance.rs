//! Ports of CPython's Lib/test/test_socketserver.py, each test naming the
//! CPython test it mirrors. The Threading* and Forking* variants live in
//! tests/concurrency.rs.

#[path = "util/one_request.rs"]
mod one_request;
mod util;

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use one_request::one_request;
use parking_lot::Mutex;
use socketserver::{
    AddressOf, BaseServer, RequestError, RequestOf, StreamRequest, TCPServer, UDPServer,
    UnixDatagramServer, UnixStreamServer,
};
use socketserver::{Synchronous, Tcp, Transport};
use util::{
    bounded, datagram_line_echo, line_echo, run_server, serve, tcp_examine, udp_examine,
    unix_dgram_examine, unix_path, unix_stream_examine, Recorder,
};

const LIMIT: Duration = Duration::from_secs(60);

/// CPython: `SocketServerTest.test_TCPServer`.
#[test]
fn test_tcp_server() {
    bounded(LIMIT, || {
        let server = TCPServer::new("127.0.0.1:0", line_echo).unwrap();
        assert_ne!(server.server_address().port(), 0, "port 0 is resolved");
        run_server(server, tcp_examine);
    });
}

/// CPython: `SocketServerTest.test_TCPServer` over IPv6 (`::1`), when the
/// machine has IPv6 loopback.
#[test]
fn test_tcp_server_ipv6() {
    bounded(LIMIT, || {
        let server = match TCPServer::new("[::1]:0", line_echo) {
            Ok(server) => server,
            Err(err) if err.kind() == io::ErrorKind::AddrNotAvailable => {
                return util::skipped(&format!("no IPv6 loopback on this machine ({err})"));
            }
            Err(err) => panic!("{err}"),
        };
        assert!(server.server_address().is_ipv6());
        run_server(server, tcp_examine);
    });
}

/// A Unix server made by `new` at a fresh path, examined by `examine`: its
/// address is that path, and `server_close` removes the socket file.
fn run_unix_server<S>(
    tag: &str,
    new: impl FnOnce(&Path) -> io::Result<S>,
    examine: impl Fn(PathBuf),
) where
    S: BaseServer,
    S::Transport: Transport<Address = PathBuf>,
{
    let path = unix_path(tag);
    let server = new(&path).unwrap();
    assert_eq!(server.server_address(), path);
    run_server(server, examine);
    assert!(!path.exists(), "server_close removes the socket file");
}

/// CPython: `SocketServerTest.test_UnixStreamServer`.
#[test]
fn test_unix_stream_server() {
    bounded(LIMIT, || {
        run_unix_server(
            "stream",
            |path| UnixStreamServer::new(path, line_echo),
            unix_stream_examine,
        )
    });
}

/// CPython: `SocketServerTest.test_UDPServer`.
#[test]
fn test_udp_server() {
    bounded(LIMIT, || {
        let server = UDPServer::new("127.0.0.1:0", datagram_line_echo).unwrap();
        run_server(server, udp_examine);
    });
}

/// CPython: `SocketServerTest.test_UnixDatagramServer` (the client binds a
/// path of its own so that the server can reply).
#[test]
fn test_unix_datagram_server() {
    bounded(LIMIT, || {
        run_unix_server(
            "dgram",
            |path| UnixDatagramServer::new(path, datagram_line_echo),
            unix_dgram_examine,
        )
    });
}

/// CPython: `SocketServerTest.test_shutdown` — 20 servers, `shutdown()`
/// called straight after starting each loop, before it has begun: every
/// `serve_forever` still returns (Issue #2302).
#[test]
fn test_shutdown() {
    bounded(LIMIT, || {
        let servers: Vec<_> = (0..20)
            .map(|_| {
                let server = Arc::new(TCPServer::new("127.0.0.1:0", line_echo).unwrap());
                let serving = serve(&server, Some(Duration::from_millis(10)));
                server.shutdown().unwrap();
                (server, serving)
            })
            .collect();
        for (server, serving) in servers {
            serving.join().unwrap().unwrap();
            server.server_close();
        }
    });
}

/// CPython: `SocketServerTest.test_context_manager` — leaving the `with`
/// block closes the socket; in Rust, dropping the server does.
#[test]
fn test_context_manager() {
    bounded(LIMIT, || {
        let address = {
            let server = TCPServer::new("127.0.0.1:0", line_echo).unwrap();
            server.server_address()
        };
        let err = TcpStream::connect(address).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);

        let path = unix_path("ctx");
        drop(UnixStreamServer::new(&path, line_echo).unwrap());
        assert!(!path.exists(), "dropping a Unix server removes its file");
    });
}

/// CPython: `MiscTestCase.test_shutdown_request_called_if_verify_request_false`
/// (Issue #26309): a refused request is shut down exactly once.
#[test]
fn test_shutdown_request_called_if_verify_request_false() {
    bounded(LIMIT, || {
        let mut recorder = Recorder::new(TCPServer::new("127.0.0.1:0", line_echo).unwrap());
        recorder.verify = false;
        let server = Arc::new(recorder);
        drop(TcpStream::connect(server.server_address()).unwrap());
        server.handle_request().unwrap();
        assert_eq!(server.count("shutdown_request"), 1);
        assert_eq!(server.calls(), ["verify_request", "shutdown_request"]);
    });
}

/// The error tests' server (CPython's `BaseErrorTestServer`): the handler
/// writes "Handler called" then fails; `handle_error` writes "Error handled".
struct ErrorTestServer {
    base: TCPServer,
    log: Arc<Mutex<String>>,
}

impl BaseServer for ErrorTestServer {
    type Transport = Tcp;
    type MixIn = Synchronous;
    fn base(&self) -> &TCPServer {
        &self.base
    }
    fn handle_error(&self, _: &RequestOf<Self>, _: &AddressOf<Self>, _: &RequestError) {
        self.log.lock().push_str("Error handled\n");
    }
}

fn error_test(fail: fn() -> io::Result<()>) -> String {
    let log = Arc::new(Mutex::new(String::new()));
    let handler_log = Arc::clone(&log);
    let handler = move |_: &mut StreamRequest<'_>| {
        handler_log.lock().push_str("Handler called\n");
        fail()
    };
    let server = Arc::new(ErrorTestServer {
        base: TCPServer::new("127.0.0.1:0", handler).unwrap(),
        log: Arc::clone(&log),
    });
    drop(TcpStream::connect(server.server_address()).unwrap());
    server.handle_request().unwrap();
    server.server_close();
    let text = log.lock().clone();
    text
}

/// CPython: `ErrorHandlerTest.test_sync_handled` — a handler error reaches
/// `handle_error`.
#[test]
fn test_sync_handled() {
    bounded(LIMIT, || {
        let log = error_test(|| Err(io::Error::other("Test error")));
        assert_eq!(log, "Handler called\nError handled\n");
    });
}

/// CPython: `ErrorHandlerTest.test_sync_not_handled` has `SystemExit`
/// escape `handle_request`. Rust has no `SystemExit` (docs/porting.md): a
/// panic is Python's ordinary exception, so it is handled, and
/// `handle_request` returns normally.
#[test]
fn test_sync_panic_handled() {
    bounded(LIMIT, || {
        let log = error_test(|| panic!("Test error"));
        assert_eq!(log, "Handler called\nError handled\n");
    });
}

/// CPython: `SocketWriterTest.test_basics` — `wfile` writes to the
/// connection's own descriptor.
#[test]
fn test_socket_writer_basics() {
    bounded(LIMIT, || {
        let (wfile, request) =
            one_request::<Synchronous, _>(|r| (r.wfile.fileno(), r.connection.as_raw_fd()));
        assert_eq!(wfile, request);
    });
}

/// CPython: `SocketWriterTest.test_write` — an unbuffered write is sent
/// without flush, and a 16 MiB + 1 write returns only once all of it is sent.
#[test]
fn test_socket_writer_write() {
    const SOCK_MAX_SIZE: usize = 16 * 1024 * 1024 + 1;
    bounded(LIMIT, || {
        let results = Arc::new(Mutex::new(None));
        let record = Arc::clone(&results);
        let server = Arc::new(
            TCPServer::new("127.0.0.1:0", move |r: &mut StreamRequest<'_>| {
                let sent1 = r.wfile.write(b"write data\n")?;
                let mut received = Vec::new();
                r.rfile.read_until(b'\n', &mut received)?;
                let sent2 = r.wfile.write(&vec![0; SOCK_MAX_SIZE])?;
                *record.lock() = Some((sent1, received, sent2));
                Ok(())
            })
            .unwrap(),
        );
        let address = server.server_address();
        let client = std::thread::spawn(move || {
            let stream = util::client(address);
            let mut reader = io::BufReader::new(&stream);
            let mut response1 = Vec::new();
            reader.read_until(b'\n', &mut response1).unwrap();
            (&stream).write_all(b"client response\n").unwrap();
            let mut first = [0; 100];
            reader.read_exact(&mut first).unwrap();
            let rest = util::read_to_end(reader);
            (response1, rest.len())
        });
        server.handle_request().unwrap();
        let (response1, rest) = client.join().unwrap();
        let (sent1, received, sent2) = results.lock().take().unwrap();
        assert_eq!(response1, b"write data\n");
        assert_eq!(sent1, response1.len());
        assert_eq!(received, b"client response\n");
        assert_eq!(sent2, SOCK_MAX_SIZE);
        assert_eq!(rest, SOCK_MAX_SIZE - 100);
    });
}
