//! Running any server from the command line: signals, the `listening on`
//! line, graceful shutdown, and the choice of mix-in.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socketserver::{
    Address, BaseServer, CoroutineMixIn, ForkingMixIn, MixIn, Server, Synchronous, ThreadPoolMixIn,
    ThreadingMixIn, Transport,
};

use crate::Mode;

/// Serves until SIGINT or SIGTERM, then shuts down gracefully: requests in
/// flight finish (`block_on_close`). A second signal exits at once.
pub fn serve<T: Transport, M: MixIn + CloseTimeout>(mut server: Server<T, M>) -> io::Result<()> {
    let drain = drain_timeout();
    server.mixin.set_close_timeout(drain);
    let server = Arc::new(server);
    let handle = server.shutdown_handle();
    let signals = AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        if signals.fetch_add(1, Ordering::SeqCst) == 0 {
            log::info!(
                "shutting down: requests in flight have {drain:?} to finish (again to force)"
            );
            // On a thread of its own: this one must stay free to see a
            // second signal. The loop stops at once, except in a
            // synchronous server whose handler waits on a client: its
            // connection is cut when the drain deadline passes.
            let handle = handle.clone();
            std::thread::spawn(move || handle.shutdown_within(drain));
        } else {
            eprintln!("forced exit");
            std::process::exit(130);
        }
    })
    .map_err(io::Error::other)?;
    let address: Address = server.server_address().into();
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {address}")?;
    stdout.flush()?;
    drop(stdout);
    server.serve_forever(None)?;
    // The drain: requests in flight finish within the mix-in's
    // close_timeout (the drain timeout), or are cut off then.
    server.server_close();
    log::info!("shut down");
    Ok(())
}

/// `--drain-timeout`'s default: long enough for any honest request, short of
/// systemd's 90 s stop timeout.
pub const DEFAULT_DRAIN_SECS: f64 = 30.0;

static DRAIN_TIMEOUT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Records `--drain-timeout` for every server command.
pub fn set_drain_timeout(secs: f64) -> io::Result<()> {
    let drain = Duration::try_from_secs_f64(secs).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad --drain-timeout {secs}: {e}"),
        )
    })?;
    let _ = DRAIN_TIMEOUT.set(drain);
    Ok(())
}

fn drain_timeout() -> Duration {
    DRAIN_TIMEOUT
        .get()
        .copied()
        .unwrap_or(Duration::from_secs_f64(DEFAULT_DRAIN_SECS))
}

/// A mix-in whose `server_close` waits at most a drain deadline.
pub trait CloseTimeout {
    /// Sets how long `server_close` waits before stopping the requests.
    fn set_close_timeout(&mut self, timeout: Duration);
}

impl CloseTimeout for Synchronous {
    /// The one request in flight runs on the serving thread: the signal's
    /// `shutdown_within` bounds it.
    fn set_close_timeout(&mut self, _: Duration) {}
}

macro_rules! close_timeout {
    ($($mixin:ty),*) => {$(
        impl CloseTimeout for $mixin {
            fn set_close_timeout(&mut self, timeout: Duration) {
                self.close_timeout = Some(timeout);
            }
        }
    )*};
}

close_timeout!(
    ThreadingMixIn,
    ThreadPoolMixIn,
    CoroutineMixIn,
    ForkingMixIn
);

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
        Mode::Coroutine => {
            let mut server = build.build::<CoroutineMixIn>()?;
            if let Some(workers) = workers {
                server.mixin.workers = workers;
            }
            serve(server)
        }
        Mode::Forking => {
            let mut server = build.build::<ForkingMixIn>()?;
            // The program's other thread is the signal handler's (ctrlc),
            // blocked in read(2) on its pipe: it holds no lock a child
            // could need. (The thread that stops the server starts only
            // after a signal, when no more children are forked.)
            server.mixin.fork_with_threads = true;
            serve(server)
        }
    }
}

/// A TCP server for `address` and `handler`.
pub struct TcpServer<H>(pub String, pub H, pub NetOptions);
/// A UDP server for `address` and `handler`.
pub struct UdpServer<H>(pub String, pub H);
/// A Unix stream server at a path, its socket file of the given mode.
pub struct UnixServer<H>(pub std::path::PathBuf, pub Option<u32>, pub H);
/// A Unix datagram server at a path, its socket file of the given mode.
pub struct UnixDgramServer<H>(pub std::path::PathBuf, pub Option<u32>, pub H);

use socketserver::{Datagram, RequestHandler, Stream, Tcp, Udp, Unix, UnixDgram};

impl<H: RequestHandler<Stream>> Build for TcpServer<H> {
    type Transport = Tcp;
    fn build<M: MixIn + Default>(self) -> io::Result<Server<Tcp, M>> {
        let TcpServer(address, handler, options) = self;
        let mut server = match options.inherited {
            Some(index) => Server::<Tcp, M>::from_systemd(index, handler)?,
            None => {
                let mut server = Server::<Tcp, M>::unbound(address.as_str(), handler)?;
                server.allow_reuse_port = options.reuse_port;
                server.bind_and_activate()?;
                server
            }
        };
        #[cfg(feature = "tls")]
        {
            server.tls = options.tls;
        }
        #[cfg(not(feature = "tls"))]
        let _ = &mut server;
        Ok(server)
    }
}

/// How a TCP server gets its socket, and whether it speaks TLS.
#[derive(Debug, Default)]
pub struct NetOptions {
    /// Socket `index` passed by systemd (LISTEN_FDS), instead of binding.
    pub inherited: Option<usize>,
    /// SO_REUSEPORT: several processes on one port.
    pub reuse_port: bool,
    /// TLS configuration.
    #[cfg(feature = "tls")]
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl NetOptions {
    /// From the command line. Call before any thread starts: `--listen-fd`
    /// is passed on as systemd's protocol (LISTEN_FDS, LISTEN_PID), which
    /// the library reads — and a process started by systemd socket
    /// activation is picked up without any option.
    pub fn from_args(listen: &crate::Listen) -> io::Result<Self> {
        let inherited = match listen.listen_fd {
            Some(fd) if fd < 3 => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--listen-fd {fd}: inherited sockets start at descriptor 3"),
                ))
            }
            Some(fd) => {
                std::env::set_var("LISTEN_PID", std::process::id().to_string());
                std::env::set_var("LISTEN_FDS", (fd - 2).to_string());
                Some((fd - 3) as usize)
            }
            None => std::env::var("LISTEN_PID")
                .ok()
                .filter(|pid| *pid == std::process::id().to_string())
                .and(std::env::var_os("LISTEN_FDS"))
                .map(|_| 0),
        };
        Ok(NetOptions {
            inherited,
            reuse_port: listen.reuse_port,
            #[cfg(feature = "tls")]
            tls: match (&listen.tls_cert, &listen.tls_key) {
                (Some(cert), Some(key)) => {
                    Some(socketserver::tls::server_config_from_pem(cert, key)?)
                }
                (None, None) => None,
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "--tls-cert and --tls-key go together",
                    ))
                }
            },
        })
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
        // Unbound first: the mode is applied between bind and listen.
        let mut server = Server::<Unix, M>::unbound(self.0, self.2)?;
        server.unix_socket_mode = self.1;
        server.bind_and_activate()?;
        Ok(server)
    }
}

impl<H: RequestHandler<Datagram>> Build for UnixDgramServer<H> {
    type Transport = UnixDgram;
    fn build<M: MixIn + Default>(self) -> io::Result<Server<UnixDgram, M>> {
        let mut server = Server::<UnixDgram, M>::unbound(self.0, self.2)?;
        server.unix_socket_mode = self.1;
        server.bind_and_activate()?;
        Ok(server)
    }
}

/// `--unix-mode`: permissions in octal (`600`, `0660`), at most `777`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "{text:?} is not a file mode: octal digits, at most 777 (e.g. 600)"
        )),
    }
}

/// `--unix-replace-stale`: removes `path` if it is a socket that refuses
/// connections (ECONNREFUSED: no socket is bound to it any more, so the
/// server that made it died without removing it). A live server's socket —
/// stream or datagram, since a stream probe of a live datagram socket fails
/// with EPROTOTYPE, not ECONNREFUSED — a file that is not a socket, or no
/// file, is left alone, and the bind that follows says what is wrong.
///
/// Two servers started at once on one path can still race (one may probe
/// the other's socket between its bind and its listen): give each server
/// its own path.
pub fn remove_stale_socket(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !metadata.file_type().is_socket() {
        return Ok(());
    }
    let probe = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    // Non-blocking: a live server with a full backlog must not hang us.
    probe.set_nonblocking(true)?;
    let refused = match probe.connect(&socket2::SockAddr::unix(path)?) {
        Err(e) => e.raw_os_error() == Some(nix::libc::ECONNREFUSED),
        Ok(()) => false,
    };
    drop(probe);
    if refused {
        log::warn!(
            "removing the stale socket file {} (nobody listens on it)",
            path.display()
        );
        std::fs::remove_file(path).or_else(|e| match e.kind() {
            io::ErrorKind::NotFound => Ok(()),
            _ => Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot remove the stale socket file {}: {e}",
                    path.display()
                ),
            )),
        })?;
    }
    Ok(())
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
