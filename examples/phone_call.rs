//! `cargo run --example phone_call` — the tutorials' phone-call echo
//! ("用打电话的流程快速描述socket通信", socket communication told as a phone
//! call): one call (one connection), a few
//! sentences, each answered upper-cased (`conn.send(data.upper())`).
//!
//! Python's server accepts once and talks until the line drops; here that is
//! a `TCPServer` handling exactly one request (`handle_request`).

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use socketserver::{BaseServer, StreamRequest, TCPServer};

/// The communication loop: `data = conn.recv(1024)`, `conn.send(data.upper())`,
/// until the client hangs up (`if not data: break`, which the tutorial learns it needs).
fn handle(request: &mut StreamRequest<'_>) -> io::Result<()> {
    loop {
        let data = request.rfile.fill_buf()?;
        if data.is_empty() {
            return Ok(());
        }
        println!("server===> {:?}", String::from_utf8_lossy(data));
        let (upper, len) = (data.to_ascii_uppercase(), data.len());
        request.wfile.write_all(&upper)?;
        request.rfile.consume(len);
    }
}

fn main() -> io::Result<()> {
    // phone=socket(AF_INET,SOCK_STREAM); phone.bind(...); phone.listen(5)
    let server = Arc::new(TCPServer::new("127.0.0.1:0", handle)?);
    let address = server.server_address();
    // The caller, on another thread: phone.connect(...); send; recv.
    let caller = std::thread::spawn(move || -> io::Result<()> {
        let mut phone = TcpStream::connect(address)?;
        for msg in ["hello", "how are you", "bye"] {
            phone.write_all(msg.as_bytes())?;
            let mut data = vec![0; msg.len()];
            phone.read_exact(&mut data)?;
            println!("client====> {:?}", String::from_utf8_lossy(&data));
        }
        Ok(()) // hanging up: the server's recv returns b''
    });
    server.handle_request()?; // conn,addr=phone.accept() … conn.close()
    caller.join().unwrap()?;
    server.server_close(); // phone.close()
    Ok(())
}
