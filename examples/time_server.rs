//! `cargo run --example time_server` — the tutorials' UDP time server
//! ("时间服务器(NTP服务)"): the datagram is a `strftime` format; empty
//! means `%Y-%m-%d %X`. (This example formats with Python itself, through
//! python3, to stay free of a date crate; `socketserver time` uses chrono.)

use std::io;
use std::net::UdpSocket;
use std::process::Command;
use std::sync::Arc;

use socketserver::{BaseServer, DatagramRequest, UDPServer};

/// `time.strftime(fmt)`, by Python itself.
fn strftime(format: &str) -> io::Result<Vec<u8>> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, time; sys.stdout.write(time.strftime(sys.argv[1]))",
            format,
        ])
        .output()?;
    Ok(out.stdout)
}

fn main() -> io::Result<()> {
    let server = Arc::new(UDPServer::new(
        "127.0.0.1:0",
        |r: &mut DatagramRequest<'_>| {
            let format = match std::str::from_utf8(r.packet()) {
                Ok("") => "%Y-%m-%d %X",
                Ok(format) => format,
                Err(_) => "error: the format is not UTF-8",
            };
            println!("===> {format:?}");
            r.wfile = strftime(format)?;
            Ok(())
        },
    )?);
    let serving = {
        let server = Arc::clone(&server);
        std::thread::spawn(move || server.serve_forever(None))
    };
    let client = UdpSocket::bind("127.0.0.1:0")?;
    for format in ["", "%Y %m %d", "%H:%M:%S"] {
        client.send_to(format.as_bytes(), server.server_address())?;
        let mut buf = [0; 1024];
        let n = client.recv(&mut buf)?;
        println!("{format:?} → {}", String::from_utf8_lossy(&buf[..n]));
    }
    server.shutdown()?;
    serving.join().unwrap()?;
    Ok(())
}
