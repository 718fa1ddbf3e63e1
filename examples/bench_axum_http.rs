//! `cargo run --release --example bench_axum_http -- --directory DIR --bind 127.0.0.1:0`
//! — the HTTP benchmark's axum anchor (benches/servers/http.rs): what a Rust
//! user writes today to serve a directory — axum 0.8 with tower-http's
//! `ServeDir` as the router's fallback, on tokio's multi-threaded runtime
//! (a worker per core). TCP_NODELAY is set on every accepted connection,
//! as axum's documentation advises: `ServeDir` writes the headers and the
//! body separately, and with Nagle on a keep-alive client would wait for
//! the delayed ACK (about 40 ms) on each response. Prints `listening on
//! ADDR` and exits 0 on SIGTERM.

#[path = "bench/args.rs"]
mod args;

use std::io;

use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tower_http::services::ServeDir;

#[tokio::main]
async fn main() -> io::Result<()> {
    let args::Args {
        bind, directory, ..
    } = args::parse(&["--directory"], "");
    let app = Router::new().fallback_service(ServeDir::new(directory));
    let listener = TcpListener::bind(&bind).await?;
    println!("listening on {}", listener.local_addr()?);
    // axum 0.8 dropped `Serve::tcp_nodelay`; `tap_io` is its replacement.
    let listener = listener.tap_io(|stream| {
        if let Err(err) = stream.set_nodelay(true) {
            eprintln!("TCP_NODELAY: {err}");
        }
    });
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        result = axum::serve(listener, app) => result,
        _ = terminate.recv() => Ok(()),
    }
}
