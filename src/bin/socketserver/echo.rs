//! `socketserver echo`: the seeds' phone-call echo (`conn.send(data.upper())`),
//! the link loop and communication loop, and the UDP echo.

use std::io::{self, BufRead, Write};
use std::time::Duration;

use clap::Args;
use socketserver::{Datagram, DatagramRequest, RequestHandler, StreamOptions, StreamRequest};

use crate::run::{seconds, serve_in_mode, TcpServer, UdpServer, UnixDgramServer, UnixServer};
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
    /// Worker threads for --mode pool.
    #[arg(long)]
    workers: Option<usize>,
    /// Send back upper-cased, as the seeds do.
    #[arg(long)]
    upper: bool,
    /// Close a connection that sends nothing for this many seconds.
    #[arg(long)]
    timeout: Option<f64>,
}

/// The seeds' communication loop: `while True: data = conn.recv(1024); if
/// not data: break; conn.send(data.upper())` — every chunk as it arrives.
#[derive(Debug, Clone)]
pub struct StreamEcho {
    pub upper: bool,
    pub timeout: Option<Duration>,
}

impl RequestHandler for StreamEcho {
    fn options(&self) -> StreamOptions {
        StreamOptions {
            timeout: self.timeout,
            ..StreamOptions::default()
        }
    }

    fn handle(&self, request: &mut StreamRequest<'_>) -> io::Result<()> {
        log::info!("{} connected", request.client_address);
        loop {
            let chunk = request.rfile.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            let len = chunk.len();
            if self.upper {
                request.wfile.write_all(&chunk.to_ascii_uppercase())?;
            } else {
                request.wfile.write_all(chunk)?;
            }
            request.rfile.consume(len);
        }
        log::info!("{} disconnected", request.client_address);
        Ok(())
    }
}

/// The seeds' UDP echo: `server.sendto(msg.upper(), client_addr)`.
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
    let Listen { bind, unix } = args.listen;
    match (unix, args.udp) {
        (None, false) => serve_in_mode(args.mode, args.workers, TcpServer(bind, stream)),
        (None, true) => serve_in_mode(args.mode, args.workers, UdpServer(bind, datagram)),
        (Some(path), false) => serve_in_mode(args.mode, args.workers, UnixServer(path, stream)),
        (Some(path), true) => {
            serve_in_mode(args.mode, args.workers, UnixDgramServer(path, datagram))
        }
    }
}
