//! `cargo run --example sticky_exec_fixed` — the final version of the
//! tutorials' remote-command server ("解决粘包的最终版", the 粘包 fix's
//! final form): each reply is `struct.pack('i', len(header))`,
//! a JSON header (`filename`, `total_size`, `md5`), then the body, so the
//! client reads exactly `total_size` bytes and no reply bleeds into the next.
//! The `socketserver exec` command is the full version of this server.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;

use socketserver::framing::{header_for, LengthPrefix, MessageCodec};
use socketserver::{BaseServer, StreamRequest, ThreadingTCPServer};

fn handle(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let codec = MessageCodec::new(LengthPrefix::NativeI32); // struct 'i', as the Python server
    let mut cmd = [0; 1024];
    loop {
        let n = request.rfile.read(&mut cmd)?;
        if n == 0 {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&cmd[..n]).into_owned();
        let mut words = line.split_whitespace();
        let body = match words.next() {
            Some(program @ ("seq" | "pwd" | "echo")) => {
                let output = Command::new(program).args(words).output()?;
                [output.stdout, output.stderr].concat()
            }
            _ => format!("error: {line:?} is not one of seq, pwd, echo\n").into_bytes(),
        };
        let mut header = header_for(&body); // total_size and md5
        header.filename = Some("a.txt".into()); // the Python server's placeholder
        codec.write_message(&mut request.wfile, &header, &body)?;
    }
}

fn main() -> io::Result<()> {
    let server = Arc::new(ThreadingTCPServer::new("127.0.0.1:0", handle)?);
    let serving = {
        let server = Arc::clone(&server);
        std::thread::spawn(move || server.serve_forever(None))
    };
    let codec = MessageCodec::new(LengthPrefix::NativeI32);
    let mut client = TcpStream::connect(server.server_address())?;
    for cmd in ["seq 1 400", "echo second command", "rm -rf /"] {
        client.write_all(cmd.as_bytes())?;
        // header_size = struct.unpack('i', phone.recv(4))[0]; head_dic = json.loads(...);
        // then recv until total_size bytes have arrived.
        let (header, body) = codec
            .read_message(&mut client)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "server closed"))?;
        let text = String::from_utf8_lossy(&body);
        println!(
            "$ {cmd}   → header {{total_size: {}, md5: {}}}, body starts {:?}",
            header.total_size,
            header.md5.as_deref().unwrap_or("-"),
            &text[..text.len().min(20)]
        );
    }
    drop(client);
    server.shutdown()?;
    serving.join().unwrap()?;
    Ok(())
}
