//! `socketserver http`: Python's `python -m http.server` — the files of a
//! directory over HTTP, with a listing, each request logged to stderr.

use std::io;
use std::path::PathBuf;

use clap::Args;
use socketserver::http::{HTTPHandler, HTTPServer, SimpleHTTPRequestHandler};
use socketserver::{MixIn, Server, Tcp};

use crate::run::{self, seconds, serve_in_mode, Build};
use crate::Mode;

#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Serve this directory (default: the current one).
    #[arg(long, short = 'd')]
    directory: Option<PathBuf>,
    /// Address to listen on; 0.0.0.0:8000 (or [::]:8000) for all
    /// interfaces.
    #[arg(long, short = 'b', default_value = "127.0.0.1:8000")]
    bind: String,
    /// HTTP/1.1 keeps connections alive between requests.
    #[arg(long, short = 'p', default_value = "HTTP/1.0", value_parser = ["HTTP/1.0", "HTTP/1.1"])]
    protocol: String,
    /// How requests run.
    #[arg(long, value_enum, default_value_t = Mode::Threading)]
    mode: Mode,
    /// Worker threads for --mode pool and --mode coroutine.
    #[arg(long)]
    workers: Option<usize>,
    /// Deadline for each request head, and timeout of each read and write
    /// after it, in seconds (default: none, as Python).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Speak TLS, with this PEM certificate chain …
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// … and this PEM private key.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// Builds the HTTP server for any mix-in (run::serve_in_mode).
struct HttpServer {
    bind: String,
    handler: SimpleHTTPRequestHandler,
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl Build for HttpServer {
    type Transport = Tcp;
    fn build<M: MixIn + Default>(self) -> io::Result<Server<Tcp, M>> {
        // The socket a restart's predecessor passed, if any; else Python's
        // HTTPServer, with SO_REUSEADDR: without it a restart would fail
        // for a minute on the connections this server closed first
        // (TIME_WAIT, which HTTP/1.0 leaves after every request).
        let mut server = match run::inherited_socket() {
            Some(fd) => Server::<Tcp, M>::from_fd(fd, HTTPHandler::new(self.handler))?,
            None => HTTPServer::<M>::new(self.bind.as_str(), self.handler)?.into_base(),
        };
        #[cfg(feature = "tls")]
        {
            server.tls = self.tls;
        }
        #[cfg(not(feature = "tls"))]
        let _ = &mut server;
        Ok(server)
    }
}

pub fn run(args: HttpArgs) -> io::Result<()> {
    let directory = match args.directory {
        Some(directory) => directory,
        None => std::env::current_dir()?,
    };
    if !directory.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("--directory {}: not a directory", directory.display()),
        ));
    }
    let mut handler = SimpleHTTPRequestHandler::new(directory);
    handler.options.protocol_version = args.protocol;
    handler.options.timeout = seconds(args.timeout)?;
    #[cfg(feature = "tls")]
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(socketserver::tls::server_config_from_pem(cert, key)?),
        _ => None,
    };
    #[cfg(not(feature = "tls"))]
    if args.tls_cert.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "--tls-cert: built without the tls feature",
        ));
    }
    let build = HttpServer {
        bind: args.bind,
        handler,
        #[cfg(feature = "tls")]
        tls,
    };
    serve_in_mode(args.mode, args.workers, build)
}
