//! `cargo run --example echo_server [ADDR]` — a line-echo server,
//! the first example of CPython's socketserver documentation, in Rust.
//!
//! Try it with `nc 127.0.0.1 9999` or Python:
//! `python3 -c "import socket; s=socket.create_connection(('127.0.0.1',9999)); s.sendall(b'hi\n'); print(s.recv(99))"`.
//! Ctrl-C shuts it down gracefully.

use std::io::{self, BufRead, Write};
use std::sync::Arc;

use socketserver::{BaseServer, StreamRequest, TCPServer};

/// Python's `MyTCPHandler.handle`: read a line, send it back upper-cased.
fn handle(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut line = Vec::new();
    while request.rfile.read_until(b'\n', &mut line)? > 0 {
        log::info!(
            "{} wrote: {}",
            request.client_address,
            String::from_utf8_lossy(&line).trim_end()
        );
        request.wfile.write_all(&line.to_ascii_uppercase())?;
        line.clear();
    }
    Ok(())
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9999".into());
    let server = Arc::new(TCPServer::new(address.as_str(), handle)?);
    let handle = server.shutdown_handle();
    ctrlc::set_handler(move || handle.request_shutdown()).map_err(io::Error::other)?;
    println!("listening on {}", server.server_address());
    server.serve_forever(None)?;
    println!("shut down");
    Ok(())
}
