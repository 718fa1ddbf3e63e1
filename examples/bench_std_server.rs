//! `cargo run --release --example bench_std_server -- --bind 127.0.0.1:0 [--udp]`
//! — the benchmark's floor for a thread-per-connection server (benches/servers.rs):
//! a hand-written echo server on std alone, as short as such a server can be.
//!
//! `TcpListener::bind` (SO_REUSEADDR, std's listen backlog), a thread per
//! connection reading into an 8 KiB buffer and writing it back; for `--udp`,
//! one thread doing `recv_from`/`send_to`. No logging, no signal handling:
//! SIGTERM's default action ends the process, which is as fast as an exit
//! can be. Prints `listening on ADDR`, as the `socketserver` program does.

#[path = "bench/args.rs"]
mod args;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::thread;

fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn main() -> io::Result<()> {
    let args::Args { bind, udp, .. } = args::parse(&["--udp"], "");
    if udp {
        let socket = UdpSocket::bind(&bind)?;
        println!("listening on {}", socket.local_addr()?);
        io::stdout().flush()?;
        let mut buf = [0u8; 8192];
        loop {
            let (n, from) = socket.recv_from(&mut buf)?;
            let _ = socket.send_to(&buf[..n], from);
        }
    }
    let listener = TcpListener::bind(&bind)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                thread::spawn(move || echo(stream));
            }
            Err(err) => eprintln!("accept: {err}"),
        }
    }
    Ok(())
}
