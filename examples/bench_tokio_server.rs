//! `cargo run --release --example bench_tokio_server -- --bind 127.0.0.1:0 [--udp]`
//! — the benchmark's tokio anchor (benches/servers.rs): the echo server of
//! tokio's README on the multi-threaded runtime (a worker per core), a task
//! per connection with an 8 KiB buffer; for `--udp`, one task doing
//! `recv_from`/`send_to`. Prints `listening on ADDR` and exits 0 on SIGTERM.

#[path = "bench/args.rs"]
mod args;

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::signal::unix::{signal, SignalKind};

async fn serve_tcp(listener: TcpListener) -> io::Result<()> {
    loop {
        let (mut socket, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                eprintln!("accept: {err}");
                continue;
            }
        };
        tokio::spawn(async move {
            let mut buf = [0u8; 8192];
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if socket.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

async fn serve_udp(socket: UdpSocket) -> io::Result<()> {
    let mut buf = [0u8; 8192];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        let _ = socket.send_to(&buf[..n], from).await;
    }
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let args::Args { bind, udp, .. } = args::parse(&["--udp"], "");
    let mut terminate = signal(SignalKind::terminate())?;
    if udp {
        let socket = UdpSocket::bind(&bind).await?;
        println!("listening on {}", socket.local_addr()?);
        tokio::select! {
            result = serve_udp(socket) => result,
            _ = terminate.recv() => Ok(()),
        }
    } else {
        let listener = TcpListener::bind(&bind).await?;
        println!("listening on {}", listener.local_addr()?);
        tokio::select! {
            result = serve_tcp(listener) => result,
            _ = terminate.recv() => Ok(()),
        }
    }
}
