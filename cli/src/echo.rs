//! `socketserver echo`: the tutorials' phone-call echo
//! (`conn.send(data.upper())`), the link loop and communication loop, and the
//! UDP echo.

use std::io::{self, Read, Write};
use std::time::Duration;

use clap::Args;
use socketserver::{Datagram, DatagramRequest, RequestHandler, StreamOptions, StreamRequest};

use crate::run::{
    remove_stale_socket, seconds, serve_in_mode, TcpServer, UdpServer, UnixDgramServer, UnixServer,
};
use crate::{Listen, Mode};

#[derive(Debug, Args)]
pub struct EchoArgs {
    #[command(flatten)]
    listen: Listen,
    /// Echo datagrams (UDP, or Unix datagrams with --unix).
    #[arg(long)]
    udp: bool,
    /// How requests run.
    #[arg(long, value_enum, default_value_t = Mode::Threading)]
    mode: Mode,
    /// Worker threads for --mode pool and --mode coroutine.
    #[arg(long)]
    workers: Option<usize>,
    /// Send back upper-cased, as the Python tutorials do.
    #[arg(long)]
    upper: bool,
    /// Close a connection that sends nothing for this many seconds.
    #[arg(long)]
    timeout: Option<f64>,
}

/// The tutorials' communication loop: `while True: data = conn.recv(1024); if
/// not data: break; conn.send(data.upper())` — every chunk as it arrives.
#[derive(Debug, Clone)]
pub struct StreamEcho {
    pub upper: bool,
    pub timeout: Option<Duration>,
}

/// The most one `recv` takes, as `rfile`'s default buffer.
const CHUNK: usize = 8192;

impl RequestHandler for StreamEcho {
    fn options(&self) -> StreamOptions {
        StreamOptions {
            timeout: self.timeout,
            // The loop reads the connection itself, as the Python servers'
            // `conn.recv` does: `rfile` goes unused and needs no buffer.
            rbufsize: 0,
            ..StreamOptions::default()
        }
    }

    fn handle(&self, request: &mut StreamRequest<'_>) -> io::Result<()> {
        log::info!("{} connected", request.client_address);
        // No buffer until the client has sent something (nginx's rule): a
        // connection that stays silent costs its thread's stack and little
        // else — about 10 KiB instead of 18 (docs/benchmarks.md, idle
        // connections). One poll(2) per connection, none per chunk.
        request.connection.wait_readable(self.timeout)?;
        let mut buf = vec![0; CHUNK];
        let mut connection = request.connection;
        loop {
            let len = match connection.read(&mut buf) {
                Ok(0) => break,
                Ok(len) => len,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            let chunk = &mut buf[..len];
            if self.upper {
                chunk.make_ascii_uppercase();
            }
            request.wfile.write_all(chunk)?;
        }
        log::info!("{} disconnected", request.client_address);
        Ok(())
    }
}

/// The tutorials' UDP echo: `server.sendto(msg.upper(), client_addr)`.
#[derive(Debug, Clone)]
pub struct DatagramEcho {
    pub upper: bool,
}

impl RequestHandler<Datagram> for DatagramEcho {
    fn handle(&self, request: &mut DatagramRequest<'_>) -> io::Result<()> {
        let reply = if self.upper {
            request.packet().to_ascii_uppercase()
        } else {
            request.packet().to_vec()
        };
        request.wfile = reply;
        Ok(())
    }
}

pub fn run(args: EchoArgs) -> io::Result<()> {
    let stream = StreamEcho {
        upper: args.upper,
        timeout: seconds(args.timeout)?,
    };
    let datagram = DatagramEcho { upper: args.upper };
    let net = crate::run::NetOptions::from_args(&args.listen)?;
    let Listen {
        bind,
        unix,
        unix_mode,
        unix_replace_stale,
        ..
    } = args.listen;
    if unix.is_none() && (unix_mode.is_some() || unix_replace_stale) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--unix-mode and --unix-replace-stale apply to a --unix socket only",
        ));
    }
    let tcp_only = net.inherited.is_some() || net.reuse_port;
    #[cfg(feature = "tls")]
    let tcp_only = tcp_only || net.tls.is_some();
    if tcp_only && (unix.is_some() || args.udp) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--listen-fd, --reuse-port and --tls-* apply to a TCP server only",
        ));
    }
    if let (Some(path), true) = (&unix, unix_replace_stale) {
        remove_stale_socket(path)?;
    }
    match (unix, args.udp) {
        (None, false) => serve_in_mode(args.mode, args.workers, TcpServer(bind, stream, net)),
        (None, true) => serve_in_mode(args.mode, args.workers, UdpServer(bind, datagram)),
        (Some(path), false) => {
            serve_in_mode(args.mode, args.workers, UnixServer(path, unix_mode, stream))
        }
        (Some(path), true) => serve_in_mode(
            args.mode,
            args.workers,
            UnixDgramServer(path, unix_mode, datagram),
        ),
    }
}
