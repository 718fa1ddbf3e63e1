//! `cargo run --example transceiver` — the tutorials' message-and-file
//! server and client ("自定义类处理收发消息和文件", a custom class for
//! messages and files): the Transceiver sends messages (a 4-byte
//! big-endian length, then the text) and files ("name,length", then the raw
//! bytes). The server answers each message with a timestamped
//! acknowledgement; "file" starts an upload; "q" ends the session. Here the
//! upload is verified with sha256 and stored atomically under a temporary
//! directory. `socketserver files` is the full server.

use std::io;
use std::sync::Arc;

use socketserver::framing::Checksum;
use socketserver::transceiver::Transceiver;
use socketserver::{BaseServer, StreamRequest, ThreadPoolTCPServer};

fn main() -> io::Result<()> {
    let work = std::env::temp_dir().join(format!("transceiver-example-{}", std::process::id()));
    // The Python server's d:/2 and the Python client's d:/1.
    let (inbox, outbox) = (work.join("d-2"), work.join("d-1"));
    std::fs::create_dir_all(&inbox)?;
    std::fs::create_dir_all(&outbox)?;
    std::fs::write(
        outbox.join("notes.txt"),
        "粘包 is solved by framing.\n".repeat(5000),
    )?;

    let server_inbox = inbox.clone();
    let mut server = ThreadPoolTCPServer::new("127.0.0.1:0", move |r: &mut StreamRequest<'_>| {
        let mut m = Transceiver::new(r.connection, &server_inbox);
        while let Some(data) = m.recv()? {
            match data.as_str() {
                "q" | "Q" => break,
                "file" | "FILE" => {
                    let receipt = m.recv_file()?;
                    println!(
                        "server: stored {} ({} bytes, {})",
                        receipt.name,
                        receipt.size,
                        receipt.checksum.unwrap_or_default()
                    );
                }
                _ => m.send(&format!("服务端收到了你发来的“{data}”信息!"))?,
            }
        }
        Ok(())
    })?;
    server.mixin.workers = 5; // the Python server's max_connect
    let server = Arc::new(server);
    let serving = {
        let server = Arc::clone(&server);
        std::thread::spawn(move || server.serve_forever(None))
    };

    let stream = std::net::TcpStream::connect(server.server_address())?;
    let mut m = Transceiver::new(stream, &outbox);
    m.checksum = Checksum::Sha256;
    m.send("你好")?;
    println!(
        "client: 收到服务端发来的信息:{}",
        m.recv()?.unwrap_or_default()
    );
    m.send("file")?;
    let receipt = m.send_file(&outbox.join("notes.txt"), true, &mut |_| {})?;
    println!("client: 文件发送成功! {} bytes", receipt.size);
    m.send("q")?;
    drop(m);

    server.shutdown()?;
    serving.join().unwrap()?;
    server.server_close(); // waits for the session to end
    let same = std::fs::read(inbox.join("notes.txt"))? == std::fs::read(outbox.join("notes.txt"))?;
    println!("the stored file is identical: {same}");
    std::fs::remove_dir_all(&work)?;
    Ok(())
}
