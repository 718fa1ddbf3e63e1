//! Keep-alive through `StreamRequest::serve_again`: a handler serving one
//! request per call, called again when the client sends the next. Under the
//! pool a kept connection waits in the readiness gate between requests,
//! holding no worker; pipelined bytes are served at once; a stop closes
//! kept connections.

mod util;

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socketserver::{BaseServer, StreamRequest, ThreadingTCPServer};
use util::{bounded, serve, CLIENT_TIMEOUT};

const LIMIT: Duration = Duration::from_secs(60);

/// One line per call, echoed; asks to serve the connection again.
fn kept_line_echo(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut line = Vec::new();
    if request.rfile.read_until(b'\n', &mut line)? > 0 {
        request.wfile.write_all(&line)?;
        request.serve_again();
    }
    Ok(())
}

fn connect(address: std::net::SocketAddr) -> BufReader<TcpStream> {
    let stream = util::client(address);
    BufReader::new(stream)
}

fn exchange(client: &mut BufReader<TcpStream>, line: &str) -> String {
    client.get_mut().write_all(line.as_bytes()).unwrap();
    let mut echo = String::new();
    client.read_line(&mut echo).unwrap();
    echo
}

/// Waits (bounded) until `condition` holds; the pool parks a connection
/// just after its reply, on the worker's thread, with no event to wait on.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::yield_now();
    }
}

/// 200 kept connections on a pool of 2 workers: every one is served, twice,
/// while all stay open — between requests they wait in the gate. (A
/// handler looping inside `handle` would hold both workers with the first
/// two connections, and the others would never be served.)
#[test]
fn a_pool_of_two_serves_two_hundred_kept_connections() {
    bounded(LIMIT, || {
        let server = Arc::new(util::pool_server(2, kept_line_echo));
        let serving = serve(&server, None);
        let mut clients: Vec<_> = (0..200).map(|_| connect(server.server_address())).collect();
        for round in 0..2 {
            for (n, client) in clients.iter_mut().enumerate() {
                let line = format!("request {round} on connection {n}\n");
                assert_eq!(exchange(client, &line), line);
            }
            // The worker counts a request done just after parking it.
            eventually("all 200 parked in the gate, no worker held", || {
                let stats = server.mixin.stats();
                stats.waiting == 200 && stats.active == 0 && stats.served == 200 * (round + 1)
            });
        }
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        server.server_close();
        for client in &mut clients {
            let mut rest = String::new();
            assert_eq!(client.read_line(&mut rest).unwrap(), 0, "closed at close");
        }
    });
}

/// Two requests sent at once: the second is in `rfile`'s buffer after the
/// first, so the handler is called again at once instead of parking (the
/// gate would wait for bytes already read).
#[test]
fn pipelined_requests_are_served_in_order() {
    bounded(LIMIT, || {
        let server = Arc::new(util::pool_server(1, kept_line_echo));
        let serving = serve(&server, None);
        let mut client = connect(server.server_address());
        client.get_mut().write_all(b"one\ntwo\nthree\n").unwrap();
        for expected in ["one\n", "two\n", "three\n"] {
            let mut echo = String::new();
            client.read_line(&mut echo).unwrap();
            assert_eq!(echo, expected);
        }
        assert_eq!(exchange(&mut client, "four\n"), "four\n");
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

/// A kept line echo that, given "hold\n", says it has entered and waits to
/// be released before echoing: a request in flight at a chosen moment.
struct HoldingEcho {
    entered: parking_lot::Mutex<std::sync::mpsc::Sender<()>>,
    release: parking_lot::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl socketserver::RequestHandler for HoldingEcho {
    fn handle(&self, request: &mut StreamRequest<'_>) -> io::Result<()> {
        let mut line = Vec::new();
        if request.rfile.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line == b"hold\n" {
            self.entered.lock().send(()).unwrap();
            self.release.lock().recv().unwrap();
        }
        request.wfile.write_all(&line)?;
        request.serve_again();
        Ok(())
    }
}

/// Without a pool the handler is called again on its own thread; once the
/// server is shut down it is not called again: the request in flight is
/// answered, then the connection is closed.
#[test]
fn threading_serves_again_in_place_until_shutdown() {
    bounded(LIMIT, || {
        let (entered, entered_rx) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        let handler = HoldingEcho {
            entered: parking_lot::Mutex::new(entered),
            release: parking_lot::Mutex::new(release_rx),
        };
        let server = Arc::new(ThreadingTCPServer::new("127.0.0.1:0", handler).unwrap());
        let serving = serve(&server, None);
        let mut client = connect(server.server_address());
        for n in 0..3 {
            let line = format!("line {n}\n");
            assert_eq!(exchange(&mut client, &line), line);
        }
        client.get_mut().write_all(b"hold\n").unwrap();
        entered_rx.recv().unwrap();
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        release.send(()).unwrap();
        let mut echo = String::new();
        client.read_line(&mut echo).unwrap();
        assert_eq!(echo, "hold\n", "the request in flight is served");
        let mut rest = String::new();
        assert_eq!(client.read_line(&mut rest).unwrap(), 0, "then closed");
        server.server_close();
    });
}
