//! `systemd-socket-activate -l 127.0.0.1:9999 target/debug/examples/socket_activation`
//! — a line-echo server on the socket systemd (or any supervisor speaking
//! its protocol: LISTEN_FDS, LISTEN_PID, descriptors from 3) passes in, so
//! the port is opened before the program starts and kept across restarts.
//! It serves until SIGTERM.

use std::io::{self, BufRead, Write};
use std::sync::Arc;

use socketserver::{BaseServer, StreamRequest, ThreadingTCPServer};

fn echo(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut line = Vec::new();
    request.rfile.read_until(b'\n', &mut line)?;
    request.wfile.write_all(&line)
}

fn main() -> io::Result<()> {
    // Before any thread starts: reading LISTEN_FDS also clears it.
    let server = Arc::new(ThreadingTCPServer::from_systemd(0, echo)?);
    let handle = server.shutdown_handle();
    ctrlc::set_handler(move || handle.request_shutdown()).map_err(io::Error::other)?;
    println!("listening on {} (from systemd)", server.server_address());
    io::stdout().flush()?;
    server.serve_forever(None)
}
