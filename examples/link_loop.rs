//! `cargo run --example link_loop` — the tutorials' TCP echo server with a
//! link loop and a communication loop ("加上链接循环和通信循环"): the
//! link loop (`while True: conn, addr = phone.accept()`) serves one client
//! after another; the communication loop talks to each until it leaves.
//!
//! `serve_forever` is the link loop; the handler is the communication loop.

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use socketserver::{BaseServer, StreamRequest, TCPServer};

fn communication_loop(request: &mut StreamRequest<'_>) -> io::Result<()> {
    println!("server: {} connected", request.client_address);
    loop {
        let msg = request.rfile.fill_buf()?;
        if msg.is_empty() {
            // "if len(msg) == 0: break" — without it, a client that leaves
            // makes recv return b'' for ever: the Python server's endless loop.
            println!("server: {} left", request.client_address);
            return Ok(());
        }
        let (upper, len) = (msg.to_ascii_uppercase(), msg.len());
        request.wfile.write_all(&upper)?;
        request.rfile.consume(len);
    }
}

fn main() -> io::Result<()> {
    let server = Arc::new(TCPServer::new("127.0.0.1:0", communication_loop)?);
    let serving = {
        let server = Arc::clone(&server);
        std::thread::spawn(move || server.serve_forever(None)) // the link loop
    };
    // Two clients, one after the other: a synchronous server serves them in turn.
    for name in ["first", "second"] {
        let mut phone = TcpStream::connect(server.server_address())?;
        for msg in [
            format!("{name} client, message 1"),
            format!("{name} client, message 2"),
        ] {
            phone.write_all(msg.as_bytes())?;
            let mut reply = vec![0; msg.len()];
            phone.read_exact(&mut reply)?;
            println!("{name}: {}", String::from_utf8_lossy(&reply));
        }
    }
    server.shutdown()?;
    serving.join().unwrap()?;
    Ok(())
}
