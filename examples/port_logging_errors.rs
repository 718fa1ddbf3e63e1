//! `cargo run --example port_logging_errors` — a Python `handle_error`
//! override that logs, ported (docs/porting.md, "Side by side").
//!
//! The handler doubles a number. Three clients send `21`, `abc` and `crash`:
//! the first gets `42`; the second makes the handler return an error, the
//! third makes it panic. Both failures reach `handle_error`, which logs the
//! client's address and the error through `log` (shown by env_logger on
//! stderr); those clients see the connection close unanswered, and the server
//! carries on. Runs to completion by itself.

use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;

use socketserver::{BaseServer, RequestError, StreamRequest, TCPServer};
use socketserver::{Synchronous, Tcp};

/// Python: `class DoubleHandler(socketserver.StreamRequestHandler)`.
fn double_handler(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut line = String::new();
    request.rfile.read_line(&mut line)?;
    let line = line.trim();
    if line == "crash" {
        panic!("asked to crash");
    }
    // Python's `int(line)` raises ValueError; here the handler returns it.
    let n: i64 = line
        .parse()
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, format!("{line:?}: {err}")))?;
    writeln!(request.wfile, "{}", 2 * n)
}

/// Python: `class LoggingServer(socketserver.TCPServer)`.
struct LoggingServer {
    base: TCPServer,
}

impl BaseServer for LoggingServer {
    type Transport = Tcp;
    type MixIn = Synchronous;
    fn base(&self) -> &TCPServer {
        &self.base
    }

    /// Python reads the exception from `sys.exc_info()`; Rust passes it.
    fn handle_error(
        &self,
        _request: &TcpStream,
        client_address: &SocketAddr,
        error: &RequestError,
    ) {
        log::error!("request from {client_address} failed: {error}");
    }
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let server = Arc::new(LoggingServer {
        base: TCPServer::new("127.0.0.1:0", double_handler)?,
    });
    let serving = thread::spawn({
        let server = Arc::clone(&server);
        move || server.serve_forever(None)
    });
    for message in ["21\n", "abc\n", "crash\n"] {
        let reply = exchange(server.server_address(), message)?;
        println!("client sent {message:?}, got {reply:?}");
    }
    server.shutdown()?;
    serving.join().expect("serve_forever panicked")?;
    Ok(())
}

// ---- The client.

/// Sends `message` and returns the reply: empty when the server closed the
/// connection without answering.
fn exchange(server: SocketAddr, message: &str) -> io::Result<String> {
    let mut client = TcpStream::connect(server)?;
    client.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    client.write_all(message.as_bytes())?;
    let mut reply = String::new();
    client.read_to_string(&mut reply)?;
    Ok(reply)
}
