//! `cargo run --example sticky_exec_naive` — the tutorials' remote-command
//! server before any fix ("粘包现象", the sticky-packet phenomenon, shown
//! with a "简单的 ssh", a minimal ssh): a remote command server
//! that sends the output raw, and a client that reads `recv(1024)`. A long
//! output does not fit; its tail arrives as the start of the *next* reply.
//!
//! The commands are fixed and run without a shell (the Python server uses
//! `shell=True`; never do that with input from the network).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;

use socketserver::{BaseServer, StreamRequest, ThreadingTCPServer};

/// The Python server's loop: `cmd = conn.recv(1024)`, run it, `conn.send(stdout + stderr)`.
fn handle(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut cmd = [0; 1024];
    loop {
        let n = request.rfile.read(&mut cmd)?;
        if n == 0 {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&cmd[..n]).into_owned();
        let mut words = line.split_whitespace();
        let output = match words.next() {
            Some(program @ ("seq" | "pwd" | "echo")) => {
                Command::new(program).args(words).output()?
            }
            _ => return Ok(()),
        };
        request.wfile.write_all(&output.stdout)?;
        request.wfile.write_all(&output.stderr)?;
    }
}

fn main() -> io::Result<()> {
    let server = Arc::new(ThreadingTCPServer::new("127.0.0.1:0", handle)?);
    let serving = {
        let server = Arc::clone(&server);
        std::thread::spawn(move || server.serve_forever(None))
    };
    let mut client = TcpStream::connect(server.server_address())?;
    for cmd in ["seq 1 400", "echo second command"] {
        client.write_all(cmd.as_bytes())?;
        // Give the whole reply time to arrive, as a person typing would.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut data = [0; 1024]; // the Python client's phone.recv(1024)
        let n = client.read(&mut data)?;
        let text = String::from_utf8_lossy(&data[..n]);
        println!(
            "$ {cmd}   → {n} bytes received, starting {:?}",
            &text[..text.len().min(20)]
        );
    }
    println!(
        "粘包: the second reply began with the tail of the first, which did not fit in 1024 bytes."
    );
    println!("The fix: tell the receiver how much to read — cargo run --example sticky_exec_fixed");
    drop(client);
    server.shutdown()?;
    serving.join().unwrap()?;
    Ok(())
}
