//! `cargo run --example port_http_server_bind` — Python's
//! `http.server.HTTPServer.server_bind` override, ported (docs/porting.md,
//! "Side by side").
//!
//! `HTTPServer` sets `allow_reuse_address`, and overrides `server_bind` to
//! call `TCPServer.server_bind` and then record `server_name` and
//! `server_port`. Here the server is made unbound (Python's
//! `bind_and_activate=False`), the attribute set, and `bind_and_activate`
//! called on the wrapping struct so that its `server_bind` runs. A client
//! sends one HTTP/1.0 request; the handler answers with the recorded name.
//! Runs to completion by itself.

use std::io::{self, BufRead, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::thread;

use socketserver::{BaseServer, RequestHandler, StreamRequest, TCPServer};
use socketserver::{Synchronous, Tcp};

/// What `server_bind` records: Python's `self.server_name` and
/// `self.server_port`. Hooks take `&self`, so these are set once through
/// `OnceLock`; the handler holds the same `Arc`, since it cannot reach the
/// server as Python's `self.server` does.
#[derive(Debug, Default)]
struct ServerName {
    server_name: OnceLock<String>,
    server_port: OnceLock<u16>,
}

/// Python: `class HTTPServer(socketserver.TCPServer)`.
struct HttpServer {
    base: TCPServer,
    name: Arc<ServerName>,
}

impl HttpServer {
    /// Python: `HTTPServer(server_address, RequestHandlerClass)`.
    fn new(
        server_address: &str,
        handler: impl RequestHandler,
        name: Arc<ServerName>,
    ) -> io::Result<Self> {
        let mut base = TCPServer::unbound(server_address, handler)?;
        base.allow_reuse_address = true; // Python: `allow_reuse_address = 1`
        let server = HttpServer { base, name };
        server.bind_and_activate()?; // runs HttpServer::server_bind below
        Ok(server)
    }
}

impl BaseServer for HttpServer {
    type Transport = Tcp;
    type MixIn = Synchronous;
    fn base(&self) -> &TCPServer {
        &self.base
    }

    fn server_bind(&self) -> io::Result<()> {
        self.base().server_bind()?; // Python: `socketserver.TCPServer.server_bind(self)`
        let address = self.server_address(); // the real port, now that it is bound
        let _ = self.name.server_name.set(getfqdn(address.ip()));
        let _ = self.name.server_port.set(address.port());
        Ok(())
    }
}

/// Python's `socket.getfqdn(host)`, approximated without a reverse DNS
/// lookup: a loopback address is `localhost`, any other stays as it is.
fn getfqdn(host: IpAddr) -> String {
    if host.is_loopback() {
        "localhost".to_owned()
    } else {
        host.to_string()
    }
}

/// Python: `class HelloHandler(socketserver.StreamRequestHandler)`.
struct HelloHandler {
    name: Arc<ServerName>,
}

impl RequestHandler for HelloHandler {
    fn handle(&self, request: &mut StreamRequest<'_>) -> io::Result<()> {
        let mut line = String::new();
        request.rfile.read_line(&mut line)?; // the request line
        loop {
            // the headers, up to the blank line
            line.clear();
            if request.rfile.read_line(&mut line)? == 0 || line.trim().is_empty() {
                break;
            }
        }
        let name = self.name.server_name.get().map_or("?", String::as_str);
        let port = self.name.server_port.get().copied().unwrap_or_default();
        let body = format!("served by {name}:{port}\n");
        write!(
            request.wfile,
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}

fn main() -> io::Result<()> {
    let name = Arc::new(ServerName::default());
    let handler = HelloHandler {
        name: Arc::clone(&name),
    };
    let server = Arc::new(HttpServer::new("127.0.0.1:0", handler, name)?);
    println!(
        "server_bind recorded {}:{}",
        server.name.server_name.get().map_or("?", String::as_str),
        server.name.server_port.get().copied().unwrap_or_default()
    );
    let serving = thread::spawn({
        let server = Arc::clone(&server);
        move || server.serve_forever(None)
    });
    print!("{}", get(server.server_address())?);
    server.shutdown()?;
    serving.join().expect("serve_forever panicked")?;
    Ok(())
}

// ---- The client.

/// Sends `GET /` and returns the whole response.
fn get(server: SocketAddr) -> io::Result<String> {
    let mut client = TcpStream::connect(server)?;
    client.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    client.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    client.read_to_string(&mut response)?;
    Ok(response)
}
