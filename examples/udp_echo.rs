//! `cargo run --example udp_echo` — the tutorials' UDP echo
//! ("udp套接字简单示例"): no listen, no accept, no link loop — each datagram is
//! a request, answered with `server.sendto(msg.upper(), client_addr)`.
//! An empty message is still a datagram (the tutorial's "发送空不会报错":
//! sending nothing is no error).

use std::io;
use std::net::UdpSocket;
use std::sync::Arc;

use socketserver::{BaseServer, DatagramRequest, UDPServer};

fn main() -> io::Result<()> {
    let server = Arc::new(UDPServer::new(
        "127.0.0.1:0",
        |r: &mut DatagramRequest<'_>| {
            println!(
                "server: {:?} from {}",
                String::from_utf8_lossy(r.packet()),
                r.client_address
            );
            r.wfile = r.packet().to_ascii_uppercase(); // sent back after finish()
            Ok(())
        },
    )?);
    let serving = {
        let server = Arc::clone(&server);
        std::thread::spawn(move || server.serve_forever(None))
    };
    let client = UdpSocket::bind("127.0.0.1:0")?;
    for msg in ["hello", "", "udp has message boundaries"] {
        client.send_to(msg.as_bytes(), server.server_address())?;
        let mut buf = [0; 1024];
        let (n, _) = client.recv_from(&mut buf)?;
        println!("client: {:?}", String::from_utf8_lossy(&buf[..n]));
    }
    server.shutdown()?;
    serving.join().unwrap()?;
    Ok(())
}
