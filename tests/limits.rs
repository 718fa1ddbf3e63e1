//! `stats()` checked counter by counter against what a test did (accepted,
//! refused by `verify_request`, requests, handler errors and panics, open
//! connections), in process and across forked children; the HTTP server's
//! 503 for a connection over `max_connections`, seen by Python's urllib;
//! `request_timeout` restarting with each run of a kept connection; a
//! forking `handle_request` loop at `max_connections` reaping before it
//! refuses. The limits' own tests, from the command line in every mode,
//! are in cli/tests/limits.rs.

#[path = "util/serving.rs"]
mod serving;
mod util;

use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serving::Serving;
use socketserver::{
    BaseServer, ForkingMixIn, MixIn, RequestOf, Server, ServerStats, StreamRequest, Tcp,
    ThreadingMixIn,
};
use util::{bounded, CLIENT_TIMEOUT};

const LIMIT: Duration = Duration::from_secs(60);

/// Answers a line: `ok` is echoed, `fail` is an error, `panic` panics.
fn by_line(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut line = String::new();
    request.rfile.read_line(&mut line)?;
    match line.trim() {
        "fail" => Err(io::Error::other("asked to fail")),
        "panic" => panic!("asked to panic"),
        _ => request.wfile.write_all(line.as_bytes()),
    }
}

/// A server whose `verify_request` refuses the clients bound to source
/// address 127.0.0.9.
struct Picky<M: MixIn>(Server<Tcp, M>);

impl<M: MixIn> BaseServer for Picky<M> {
    type Transport = Tcp;
    type MixIn = M;
    fn base(&self) -> &Server<Tcp, M> {
        &self.0
    }
    fn verify_request(&self, _: &RequestOf<Self>, client_address: &SocketAddr) -> bool {
        client_address.ip() != std::net::IpAddr::from([127, 0, 0, 9])
    }
    // Reported to stderr by default: quiet here, the test counts them.
    fn handle_error(&self, _: &RequestOf<Self>, _: &SocketAddr, _: &socketserver::RequestError) {}
}

/// Sends `line` from source address 127.0.0.`source`; what came back
/// before the server closed the connection.
fn exchange(address: SocketAddr, source: u8, line: &str) -> Vec<u8> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, source], 0)).into())
        .unwrap();
    socket.connect(&address.into()).unwrap();
    let mut client: TcpStream = socket.into();
    client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    client.write_all(line.as_bytes()).unwrap();
    let mut reply = Vec::new();
    // A refused connection may end in a reset: what came is what counts.
    let _ = client.read_to_end(&mut reply);
    reply
}

/// Five clients: two served, one failing, one panicking, one refused by
/// `verify_request`; each waited for to the end, so the counters are final.
fn five_clients(address: SocketAddr) {
    assert_eq!(exchange(address, 1, "ok\n"), b"ok\n");
    assert_eq!(exchange(address, 1, "ok\n"), b"ok\n");
    assert_eq!(exchange(address, 1, "fail\n"), b"");
    assert_eq!(exchange(address, 1, "panic\n"), b"");
    assert_eq!(exchange(address, 9, "ok\n"), b"", "refused");
}

fn expected_after_five() -> ServerStats {
    let mut expected = ServerStats::default();
    expected.accepted = 5;
    expected.refused_verify = 1;
    expected.requests = 4;
    expected.errors = 1;
    expected.panics = 1;
    expected
}

#[test]
fn stats_count_what_a_threading_server_did() {
    bounded(LIMIT, || {
        let server = Serving::start(Picky(
            Server::<Tcp, ThreadingMixIn>::new("127.0.0.1:0", by_line).unwrap(),
        ));
        assert_eq!(server.stats(), ServerStats::default());
        let address = server.server_address();
        // One connection held open while the others come and go.
        let held = TcpStream::connect(address).unwrap();
        five_clients(address);
        let mut expected = expected_after_five();
        expected.accepted += 1;
        expected.open = 1;
        assert_eq!(server.stats(), expected);
        drop(held);
        // The held one's handler reads end-of-file and ends: then it is
        // closed and counted.
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        while server.stats().open > 0 {
            assert!(Instant::now() < deadline, "{:?}", server.stats());
            std::thread::yield_now();
        }
        expected.open = 0;
        expected.requests += 1;
        assert_eq!(server.stats(), expected);
        eprintln!("threading: {}", server.stats());
        server.stop();
    });
}

#[test]
fn stats_count_forked_children_from_their_exit_status() {
    bounded(LIMIT, || {
        let mut base = Server::<Tcp, ForkingMixIn>::new("127.0.0.1:0", by_line).unwrap();
        // The test harness's threads hold no lock a child needs.
        base.mixin.fork_with_threads = true;
        let server = Serving::start(Picky(base));
        let address = server.server_address();
        five_clients(address);
        // Outcomes are counted as children are reaped (at most a second
        // after they exit, on an idle server).
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.stats().requests < 4 || server.stats().open > 0 {
            assert!(Instant::now() < deadline, "{:?}", server.stats());
            std::thread::sleep(Duration::from_millis(20)); // polling the reaper's work: no event to wait on
        }
        assert_eq!(server.stats(), expected_after_five());
        eprintln!("forking: {}", server.stats());
        server.stop();
    });
}

/// A `handle_request` loop over a forking server at `max_connections`:
/// a child that has exited is reaped before its connection can refuse the
/// next client (a loop that reaped only in `process_request` refused every
/// client after the first, for ever).
#[test]
fn forking_handle_request_admits_once_the_child_has_exited() {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    use nix::unistd::Pid;
    bounded(LIMIT, || {
        let mut base = Server::<Tcp, ForkingMixIn>::new("127.0.0.1:0", by_line).unwrap();
        base.mixin.fork_with_threads = true; // the harness's threads hold no lock a child needs
        base.max_connections = Some(1);
        let server = std::sync::Arc::new(base);
        let address = server.server_address();
        for _ in 0..3 {
            let client = std::thread::spawn(move || exchange(address, 1, "ok\n"));
            server.handle_request().unwrap();
            assert_eq!(client.join().unwrap(), b"ok\n", "{}", server.stats());
            // Wait for the child's exit without reaping it: reaping is the
            // server's to do, at the next request.
            for pid in server.mixin.active_children() {
                let pid = Pid::from_raw(pid as i32);
                waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT).unwrap();
            }
        }
        server.server_close();
        let stats = server.stats();
        let refused = stats.refused_max_connections;
        assert_eq!(
            (stats.accepted, refused, stats.requests),
            (3, 0, 3),
            "{stats}"
        );
        assert_eq!(stats.open, 0, "{stats}");
    });
}

/// The HTTP handlers' 503 (feature `http`).
#[cfg(feature = "http")]
mod http {
    use super::*;
    use socketserver::http::{
        BaseHTTPRequestHandler, HTTPOptions, HTTPRequest, ThreadingHTTPServer,
    };

    /// An HTTP/1.1 hello, whose kept connection holds a server's one place.
    struct Hello;

    impl BaseHTTPRequestHandler for Hello {
        fn do_GET(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
            request.send_response(200)?;
            request.send_header("Content-Length", 6)?;
            request.end_headers();
            request.wfile.write_all(b"hello\n")
        }
        fn log_message(&self, _: &HTTPRequest<'_>, _: std::fmt::Arguments<'_>) {}
        fn options(&self) -> HTTPOptions {
            HTTPOptions {
                protocol_version: "HTTP/1.1".into(),
                ..HTTPOptions::default()
            }
        }
    }

    #[test]
    fn http_answers_503_over_max_connections() {
        if !util::require_tool("python3") {
            return;
        }
        bounded(LIMIT, || {
            let mut base = ThreadingHTTPServer::new("127.0.0.1:0", Hello).unwrap();
            base.max_connections = Some(1);
            let server = Serving::start(base);
            let address = server.server_address();
            // A kept connection takes the one place.
            let mut kept = TcpStream::connect(address).unwrap();
            kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut head = [0; 15];
            kept.read_exact(&mut head).unwrap();
            assert_eq!(&head, b"HTTP/1.1 200 OK");
            let url = format!("http://{address}/");
            let seen = util::python(
                "import sys, urllib.request, urllib.error\n\
                 try:\n    urllib.request.urlopen(sys.argv[1], timeout=10)\n\
                 except urllib.error.HTTPError as e:\n    print(e.code, e.headers['Retry-After'], e.read().decode().strip())\n",
                &[&url],
            );
            assert_eq!(
                seen.trim(),
                "503 1 503 Service Unavailable: max_connections reached"
            );
            drop(kept);
            // Room again once the kept connection is gone.
            let deadline = Instant::now() + CLIENT_TIMEOUT;
            let served = loop {
                let reply = util::python(
                    "import sys, urllib.request, urllib.error\n\
                     try:\n    print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode().strip())\n\
                     except urllib.error.HTTPError as e:\n    print(e.code)\n",
                    &[&url],
                );
                if reply.trim() == "hello" || Instant::now() > deadline {
                    break reply;
                }
            };
            assert_eq!(served.trim(), "hello");
            assert!(server.stats().refused_max_connections >= 1);
            server.stop();
        });
    }
}

/// A line echo that serves each line as a run of its own (keep-alive).
fn kept_echo(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut line = Vec::new();
    if request.rfile.read_until(b'\n', &mut line)? > 0 {
        request.wfile.write_all(&line)?;
        request.serve_again();
    }
    Ok(())
}

#[test]
fn request_timeout_starts_again_with_each_run_of_a_kept_connection() {
    bounded(LIMIT, || {
        let mut base = Server::<Tcp, ThreadingMixIn>::new("127.0.0.1:0", kept_echo).unwrap();
        base.request_timeout = Some(Duration::from_millis(600));
        let server = Serving::start(base);
        let mut client = TcpStream::connect(server.server_address()).unwrap();
        client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let mut reader = io::BufReader::new(client.try_clone().unwrap());
        // Eight quick exchanges 200 ms apart: 1.6 s on one connection, each
        // run well within its 600 ms.
        let started = Instant::now();
        for _ in 0..8 {
            client.write_all(b"ping\n").unwrap();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert_eq!(line, "ping\n", "cut after {:?}", started.elapsed());
            std::thread::sleep(Duration::from_millis(200)); // the client's pace: the input
        }
        assert_eq!(server.stats().timed_out, 0);
        // Then one run that never ends: cut at its deadline.
        client.write_all(b"no newline").unwrap();
        let waited = Instant::now();
        let mut rest = String::new();
        assert_eq!(reader.read_line(&mut rest).unwrap(), 0, "end-of-file");
        let cut_after = waited.elapsed();
        assert!(cut_after < Duration::from_secs(3), "{cut_after:?}");
        assert_eq!(server.stats().timed_out, 1);
        eprintln!(
            "kept connection: 8 runs in {:?}, the stalled one cut after {cut_after:?}",
            waited - started
        );
        server.stop();
    });
}
