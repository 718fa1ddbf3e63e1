//! `cargo run --example qq_chat` — the tutorials' QQ chat over UDP
//! ("qq聊天"): UDP has no connection, so several clients can talk to one
//! server at once. The Python server replies with `input('回复消息: ')`; here
//! it replies automatically, so the example runs by itself (the
//! `socketserver chat` command prompts when run in a terminal).

use std::io;
use std::net::UdpSocket;
use std::sync::Arc;

use socketserver::{BaseServer, DatagramRequest, UDPServer};

fn main() -> io::Result<()> {
    let server = Arc::new(UDPServer::new(
        "127.0.0.1:0",
        |r: &mut DatagramRequest<'_>| {
            let msg = String::from_utf8_lossy(r.packet()).into_owned();
            println!(
                "来自[{}]的一条消息:\x1b[1;44m{msg}\x1b[0m",
                r.client_address
            );
            r.wfile = format!("收到「{msg}」").into_bytes();
            Ok(())
        },
    )?);
    let serving = {
        let server = Arc::clone(&server);
        std::thread::spawn(move || server.serve_forever(None))
    };
    // Two clients (client1.py, client2.py), each with its own socket.
    for (name, msg) in [("狗哥alex", "在吗"), ("一棵树", "晚上吃什么")] {
        let client = UdpSocket::bind("127.0.0.1:0")?;
        client.send_to(msg.as_bytes(), server.server_address())?;
        let mut buf = [0; 1024];
        let (n, addr) = client.recv_from(&mut buf)?;
        println!(
            "[{name}] 来自[{addr}]的一条消息:{}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    server.shutdown()?;
    serving.join().unwrap()?;
    Ok(())
}
