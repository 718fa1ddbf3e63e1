//! What a porter of Python socketserver code expects and trips on without:
//! `super()` through a subclass of a subclass (also for `process_request`),
//! `self.server.attr` from a handler, Python's `with server:`, Python's
//! empty host, one datagram per `sendto`, and `handle_error`'s report on
//! stderr when no logger is installed.

mod util;

use std::io::{self, BufRead, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use socketserver::{
    AddressOf, BaseServer, DatagramRequest, RequestError, RequestOf, Server, StreamRequest,
    TCPServer, ThreadingMixIn, ThreadingTCPServer, UDPServer,
};
use util::{bounded, line_echo, serve, tcp_exchange, CLIENT_TIMEOUT, TEST_STR};

const LIMIT: Duration = Duration::from_secs(60);

/// Python: `class A(ThreadingTCPServer)` refusing every other client.
struct A {
    base: ThreadingTCPServer,
    verified: AtomicUsize,
}

impl BaseServer for A {
    type Transport = socketserver::Tcp;
    type MixIn = ThreadingMixIn;
    fn base(&self) -> &ThreadingTCPServer {
        &self.base
    }
    fn verify_request(&self, request: &TcpStream, client_address: &SocketAddr) -> bool {
        let n = self.verified.fetch_add(1, Ordering::SeqCst);
        n.is_multiple_of(2) && self.base().verify_request(request, client_address)
    }
}

/// Python: `class B(A)`, extending `process_request` and `finish_request`
/// with `super()`.
struct B {
    a: A,
    calls: Mutex<Vec<String>>,
}

impl BaseServer for B {
    type Transport = socketserver::Tcp;
    type MixIn = ThreadingMixIn;
    fn base(&self) -> &ThreadingTCPServer {
        self.a.base()
    }
    fn verify_request(&self, request: &TcpStream, client_address: &SocketAddr) -> bool {
        self.a.verify_request(request, client_address)
    }
    fn process_request(&self, request: TcpStream, client_address: SocketAddr) {
        self.calls.lock().push("B.process_request".into());
        self.a.process_request(request, client_address); // super()
    }
    fn finish_request(&self, request: &TcpStream, client_address: &SocketAddr) -> io::Result<()> {
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        self.calls
            .lock()
            .push(format!("B.finish_request on {thread}"));
        self.a.finish_request(request, client_address)
    }
}

/// `class B(A)`: `A`'s override runs through `B`'s `super()`, and the
/// request thread that the mix-in starts from `A`'s (default)
/// `process_request` runs `B`'s `finish_request` — as Python's would.
#[test]
fn subclass_of_a_subclass_extends_every_hook() {
    bounded(LIMIT, || {
        let server = Arc::new(B {
            a: A {
                base: ThreadingTCPServer::new("127.0.0.1:0", line_echo).unwrap(),
                verified: AtomicUsize::new(0),
            },
            calls: Mutex::new(Vec::new()),
        });
        let serving = serve(&server, None);
        let address = server.server_address();
        assert_eq!(tcp_exchange(address, TEST_STR), TEST_STR);
        // A refuses the second client: closed unanswered.
        assert_eq!(tcp_exchange(address, TEST_STR), b"");
        assert_eq!(tcp_exchange(address, TEST_STR), TEST_STR);
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        server.server_close();
        let calls = server.calls.lock().clone();
        assert_eq!(calls.len(), 4, "{calls:?}");
        for pair in calls.chunks(2) {
            assert_eq!(pair[0], "B.process_request");
            assert!(
                pair[1].starts_with("B.finish_request on socketserver-"),
                "B's finish_request runs on the request thread: {calls:?}"
            );
        }
        assert_eq!(server.a.verified.load(Ordering::SeqCst), 3);
    });
}

/// Python: `class Counting(TCPServer)` with `self.count`, read by the
/// handler as `self.server.count`.
struct Counting<S> {
    base: S,
    count: AtomicUsize,
}

impl<S: BaseServer> BaseServer for Counting<S> {
    type Transport = S::Transport;
    type MixIn = S::MixIn;
    fn base(&self) -> &Server<S::Transport, S::MixIn> {
        self.base.base()
    }
}

fn visitor(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let server = request
        .server
        .downcast::<Counting<ThreadingTCPServer>>()
        .expect("the handler's server is a Counting<ThreadingTCPServer>");
    assert!(request.server.downcast::<TCPServer>().is_none());
    let n = server.count.fetch_add(1, Ordering::SeqCst) + 1;
    writeln!(request.wfile, "visitor {n}")
}

#[test]
fn a_handler_reads_its_servers_fields() {
    bounded(LIMIT, || {
        let server = Arc::new(Counting {
            base: ThreadingTCPServer::new("127.0.0.1:0", visitor).unwrap(),
            count: AtomicUsize::new(0),
        });
        let serving = serve(&server, None);
        for n in 1..=3 {
            let reply = tcp_exchange(server.server_address(), b"");
            assert_eq!(reply, format!("visitor {n}\n").as_bytes());
        }
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        assert_eq!(server.count.load(Ordering::SeqCst), 3);
    });
}

/// `with server:` waits for the request in flight before it returns, and
/// closes the server even when the block fails.
#[test]
fn with_block_waits_for_requests_in_flight_and_closes() {
    bounded(LIMIT, || {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Mutex::new(released);
        let finished = Arc::new(AtomicUsize::new(0));
        let handler = {
            let finished = Arc::clone(&finished);
            move |request: &mut StreamRequest<'_>| -> io::Result<()> {
                released.lock().recv().unwrap();
                request.wfile.write_all(b"done\n")?;
                finished.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        };
        let server = Arc::new(ThreadingTCPServer::new("127.0.0.1:0", handler).unwrap());
        let client = util::client(server.server_address());
        let result: io::Result<()> = server.with(|server| {
            server.handle_request()?;
            release.send(()).unwrap();
            Err(io::Error::other("the block fails"))
        });
        assert_eq!(result.unwrap_err().to_string(), "the block fails");
        assert_eq!(finished.load(Ordering::SeqCst), 1, "with waited for it");
        assert_eq!(server.fileno(), -1, "with closed the server");
        let mut line = String::new();
        io::BufReader::new(client).read_line(&mut line).unwrap();
        assert_eq!(line, "done\n");
    });
}

/// Python's `("", port)` is every interface; so is `":port"`.
#[test]
fn empty_host_binds_every_interface() {
    bounded(LIMIT, || {
        for server in [
            TCPServer::new(("", 0), line_echo).unwrap(),
            TCPServer::new(":0", line_echo).unwrap(),
            TCPServer::new(String::from(":0"), line_echo).unwrap(),
        ] {
            let address = server.server_address();
            assert!(address.ip().is_unspecified(), "{address}");
            let server = Arc::new(server);
            let serving = serve(&server, None);
            let loopback = SocketAddr::from(([127, 0, 0, 1], address.port()));
            assert_eq!(tcp_exchange(loopback, TEST_STR), TEST_STR);
            server.shutdown().unwrap();
            serving.join().unwrap().unwrap();
        }
        let udp = UDPServer::new(("", 0), |_: &mut DatagramRequest<'_>| Ok(())).unwrap();
        assert!(udp.server_address().ip().is_unspecified());
        let bad = TCPServer::new(":http-alt-not-a-port", line_echo).unwrap_err();
        assert!(bad.to_string().contains("TCPServer"), "{bad}");
    });
}

/// A handler that replies with `sendto` itself (Python's BaseRequestHandler
/// on a UDP server) sends one datagram, not that and an empty one.
#[test]
fn sendto_reply_is_the_only_datagram() {
    bounded(LIMIT, || {
        let handler = |request: &mut DatagramRequest<'_>| -> io::Result<()> {
            let upper = request.packet().to_ascii_uppercase();
            request.sendto(&upper, &request.client_address)?;
            Ok(())
        };
        let server = Arc::new(UDPServer::new("127.0.0.1:0", handler).unwrap());
        let serving = serve(&server, None);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        for message in [&b"one"[..], b"two"] {
            client.send_to(message, server.server_address()).unwrap();
        }
        let mut buf = [0; 64];
        let mut replies = Vec::new();
        for _ in 0..2 {
            let n = client.recv(&mut buf).unwrap();
            replies.push(buf[..n].to_vec());
        }
        // An empty datagram after "ONE" would have come before "TWO".
        assert_eq!(replies, [b"ONE".to_vec(), b"TWO".to_vec()]);
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

/// Python prints a handler's exception to stderr; with no logger
/// installed, so does the default `handle_error`. Run in a child process
/// (this test binary again), whose stderr the test reads.
#[test]
fn handle_error_without_a_logger_prints_to_stderr() {
    if std::env::var_os("PORTING_CHILD").is_some() {
        let failing = |_: &mut StreamRequest<'_>| -> io::Result<()> {
            Err(io::Error::other("the handler failed"))
        };
        let server = Arc::new(TCPServer::new("127.0.0.1:0", failing).unwrap());
        let client = TcpStream::connect(server.server_address()).unwrap();
        server.handle_request().unwrap();
        drop(client);
        return;
    }
    bounded(LIMIT, || {
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "handle_error_without_a_logger_prints_to_stderr",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PORTING_CHILD", "1")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let dashes = "-".repeat(40);
        let expected =
            format!("{dashes}\nException occurred during processing of request from 127.0.0.1:");
        assert!(stderr.contains(&expected), "stderr: {stderr}");
        assert!(stderr.contains("the handler failed"), "stderr: {stderr}");
    });
}

/// A hook override with the concrete types, as a porter writes them; and
/// `RequestOf`/`AddressOf` where a wrapper is generic.
#[test]
fn handle_error_override_sees_the_request() {
    struct Reporting {
        base: TCPServer,
        reports: Mutex<Vec<String>>,
    }
    impl BaseServer for Reporting {
        type Transport = socketserver::Tcp;
        type MixIn = socketserver::Synchronous;
        fn base(&self) -> &TCPServer {
            &self.base
        }
        fn handle_error(
            &self,
            request: &RequestOf<Self>,
            client_address: &AddressOf<Self>,
            error: &RequestError,
        ) {
            assert_eq!(request.peer_addr().unwrap(), *client_address);
            self.reports.lock().push(error.to_string());
        }
    }
    bounded(LIMIT, || {
        let failing = |_: &mut StreamRequest<'_>| -> io::Result<()> { Err(io::Error::other("no")) };
        let server = Arc::new(Reporting {
            base: TCPServer::new("127.0.0.1:0", failing).unwrap(),
            reports: Mutex::new(Vec::new()),
        });
        let client = TcpStream::connect(server.server_address()).unwrap();
        server.handle_request().unwrap();
        drop(client);
        let reports = server.reports.lock().clone();
        assert_eq!(reports.len(), 1);
        assert!(reports[0].contains("no"), "{reports:?}");
    });
}
