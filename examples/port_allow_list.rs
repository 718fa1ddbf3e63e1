//! `cargo run --example port_allow_list` — a Python `verify_request`
//! allow-list, ported (docs/porting.md, "Side by side").
//!
//! Only 127.0.0.1 may connect. Two clients try: one from 127.0.0.1, one from
//! 127.0.0.2 (loopback too, on Linux). The second is refused:
//! `verify_request` returns `false`, the handler never runs, and the server
//! closes the connection unanswered. Runs to completion by itself.

use std::collections::HashSet;
use std::io::{self, BufRead, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use socketserver::{BaseServer, StreamRequest, TCPServer};
use socketserver::{Synchronous, Tcp};

/// Python: `class UpperHandler(socketserver.StreamRequestHandler)`.
fn upper_handler(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut line = Vec::new();
    request.rfile.read_until(b'\n', &mut line)?;
    request.wfile.write_all(&line.to_ascii_uppercase())
}

/// Python: `class AllowListServer(socketserver.TCPServer)`.
struct AllowListServer {
    base: TCPServer,
    allowed: HashSet<IpAddr>,
}

impl AllowListServer {
    /// Python: `AllowListServer.__init__`.
    fn new(server_address: &str, allowed: &[&str]) -> io::Result<Self> {
        let allowed = allowed
            .iter()
            .map(|ip| ip.parse().map_err(io::Error::other))
            .collect::<io::Result<_>>()?;
        Ok(AllowListServer {
            base: TCPServer::new(server_address, upper_handler)?,
            allowed,
        })
    }
}

impl BaseServer for AllowListServer {
    type Transport = Tcp;
    type MixIn = Synchronous;
    fn base(&self) -> &TCPServer {
        &self.base
    }

    fn verify_request(&self, _request: &TcpStream, client_address: &SocketAddr) -> bool {
        let ok = self.allowed.contains(&client_address.ip());
        println!("server: verify_request({}) -> {ok}", client_address.ip());
        ok
    }
}

fn main() -> io::Result<()> {
    let server = Arc::new(AllowListServer::new("127.0.0.1:0", &["127.0.0.1"])?);
    let serving = thread::spawn({
        let server = Arc::clone(&server);
        move || server.serve_forever(None)
    });
    for source in ["127.0.0.1", "127.0.0.2"] {
        let reply = exchange(source, server.server_address(), b"hello\n")?;
        println!(
            "client from {source}: {:?}",
            String::from_utf8_lossy(&reply)
        );
    }
    server.shutdown()?;
    serving.join().expect("serve_forever panicked")?;
    // Leaving `main` drops the last `Arc`, which closes the server: the end
    // of Python's `with` block.
    Ok(())
}

// ---- The client (Python's `socket.create_connection(..., source_address=)`).

/// Connects from `source`, sends `message` and returns the reply: empty when
/// the server closed the connection without answering.
fn exchange(source: &str, server: SocketAddr, message: &[u8]) -> io::Result<Vec<u8>> {
    let source: IpAddr = source.parse().map_err(io::Error::other)?;
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect(&server.into())?;
    let mut client = TcpStream::from(socket);
    client.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reply = Vec::new();
    // A refused client may see a reset instead of an end of file: the
    // server closed the connection with the message unread.
    let outcome = client
        .write_all(message)
        .and_then(|()| client.read_to_end(&mut reply));
    match outcome {
        Ok(_) => Ok(reply),
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ) =>
        {
            Ok(reply)
        }
        Err(err) => Err(err),
    }
}
