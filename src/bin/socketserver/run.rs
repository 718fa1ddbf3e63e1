//! Running any server from the command line: signals, the `listening on`
//! line, graceful shutdown, and the choice of mix-in.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use socketserver::{
    Address, BaseServer, ForkingMixIn, MixIn, Server, Synchronous, ThreadPoolMixIn, ThreadingMixIn,
    Transport,
};

use crate::Mode;

/// Serves until SIGINT or SIGTERM, then shuts down gracefully: requests in
/// flight finish (`block_on_close`). A second signal exits at once.
pub fn serve<S: BaseServer>(server: S) -> io::Result<()> {
    let server = Arc::new(server);
    let handle = server.shutdown_handle();
    let signals = AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        if signals.fetch_add(1, Ordering::SeqCst) == 0 {
            log::info!("shutting down (again to force)");
            handle.request_shutdown();
        } else {
            eprintln!("forced exit");
            std::process::exit(130);
        }
    })
    .map_err(io::Error::other)?;
    let address: Address = server.server_address().into();
    // Exactly one line, flushed, so that scripts can wait for it and read the
    // real port of `--bind 127.0.0.1:0`.
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {address}")?;
    stdout.flush()?;
    drop(stdout);
    server.serve_forever(None)?;
    server.server_close();
    log::info!("shut down");
    Ok(())
}

/// Builds a server of transport `T` with the mix-in `M`.
pub trait Build {
    /// The transport the server uses.
    type Transport: Transport;
    /// Makes the server.
    fn build<M: MixIn + Default>(self) -> io::Result<Server<Self::Transport, M>>;
}

/// Serves what `build` makes, with the mix-in `mode` names.
pub fn serve_in_mode<B: Build>(mode: Mode, workers: Option<usize>, build: B) -> io::Result<()> {
    match mode {
        Mode::Sync => serve(build.build::<Synchronous>()?),
        Mode::Threading => serve(build.build::<ThreadingMixIn>()?),
        Mode::Pool => {
            let mut server = build.build::<ThreadPoolMixIn>()?;
            if let Some(workers) = workers {
                server.mixin.workers = workers;
            }
            serve(server)
        }
        Mode::Forking => serve(build.build::<ForkingMixIn>()?),
    }
}

/// A TCP server for `address` and `handler`.
pub struct TcpServer<H>(pub String, pub H);
/// A UDP server for `address` and `handler`.
pub struct UdpServer<H>(pub String, pub H);
/// A Unix stream server at a path.
pub struct UnixServer<H>(pub std::path::PathBuf, pub H);
/// A Unix datagram server at a path.
pub struct UnixDgramServer<H>(pub std::path::PathBuf, pub H);

use socketserver::{Datagram, RequestHandler, Stream, Tcp, Udp, Unix, UnixDgram};

impl<H: RequestHandler<Stream>> Build for TcpServer<H> {
    type Transport = Tcp;
    fn build<M: MixIn + Default>(self) -> io::Result<Server<Tcp, M>> {
        Server::<Tcp, M>::new(self.0.as_str(), self.1)
    }
}

impl<H: RequestHandler<Datagram>> Build for UdpServer<H> {
    type Transport = Udp;
    fn build<M: MixIn + Default>(self) -> io::Result<Server<Udp, M>> {
        Server::<Udp, M>::new(self.0.as_str(), self.1)
    }
}

impl<H: RequestHandler<Stream>> Build for UnixServer<H> {
    type Transport = Unix;
    fn build<M: MixIn + Default>(self) -> io::Result<Server<Unix, M>> {
        Server::<Unix, M>::new(self.0, self.1)
    }
}

impl<H: RequestHandler<Datagram>> Build for UnixDgramServer<H> {
    type Transport = UnixDgram;
    fn build<M: MixIn + Default>(self) -> io::Result<Server<UnixDgram, M>> {
        Server::<UnixDgram, M>::new(self.0, self.1)
    }
}

/// Seconds from the command line as a duration (fractions allowed).
pub fn seconds(secs: Option<f64>) -> io::Result<Option<std::time::Duration>> {
    secs.map(|s| {
        std::time::Duration::try_from_secs_f64(s).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad --timeout {s}: {e}"),
            )
        })
    })
    .transpose()
}
