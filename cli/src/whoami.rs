//! `socketserver whoami`: replies with the client address it sees, then
//! closes — to check what a server learns behind a load balancer
//! (`--proxy-protocol`: the real client's address, from HAProxy's
//! `send-proxy` / `send-proxy-v2`).

use std::io::{self, Write};
use std::time::Duration;

use clap::Args;
use socketserver::{ProxyProtocol, RequestHandler, StreamRequest};

use crate::run::{serve_in_mode, TcpServer};
use crate::Mode;

#[derive(Debug, Args)]
pub struct WhoamiArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9998")]
    bind: String,
    /// Expect a PROXY protocol (v1 or v2) header on every connection.
    #[arg(long)]
    proxy_protocol: bool,
    /// How long the PROXY header may take, in seconds.
    #[arg(long, default_value_t = 5.0)]
    proxy_timeout: f64,
    /// How requests run.
    #[arg(long, value_enum, default_value_t = Mode::Threading)]
    mode: Mode,
}

#[derive(Debug)]
struct Whoami;

impl RequestHandler for Whoami {
    fn handle(&self, request: &mut StreamRequest<'_>) -> io::Result<()> {
        log::info!("whoami: {}", request.client_address);
        writeln!(request.wfile, "{}", request.client_address)
    }
}

pub fn run(args: WhoamiArgs) -> io::Result<()> {
    let proxy = if args.proxy_protocol {
        let timeout =
            crate::run::seconds(Some(args.proxy_timeout))?.unwrap_or(Duration::from_secs(5));
        ProxyProtocol::Required { timeout }
    } else {
        ProxyProtocol::Off
    };
    serve_in_mode(
        args.mode,
        None,
        WithProxy(TcpServer(args.bind, Whoami, Default::default()), proxy),
    )
}

/// A TCP server with the PROXY protocol setting applied.
struct WithProxy(TcpServer<Whoami>, ProxyProtocol);

impl crate::run::Build for WithProxy {
    type Transport = socketserver::Tcp;
    fn build<M: socketserver::MixIn + Default>(
        self,
    ) -> io::Result<socketserver::Server<socketserver::Tcp, M>> {
        let mut server = self.0.build::<M>()?;
        server.proxy_protocol = self.1;
        Ok(server)
    }
}
