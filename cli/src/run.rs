//! Running any server from the command line: signals, the `listening on`
//! line, graceful shutdown, restart on SIGHUP, and the choice of mix-in.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use socketserver::restart::{Inherited, Restarter};
use socketserver::{
    Address, AddressOf, BaseServer, CoroutineMixIn, ForkingMixIn, MixIn, RequestOf, Server,
    ServerAddress, Synchronous, ThreadPoolMixIn, ThreadingMixIn, Transport,
};

use crate::Mode;

/// Keeps `fork(2)` and the log lines of the program's other threads apart.
/// A log line holds the logger's lock (stderr's) while it is written; a
/// request's child forked by `--mode forking` at that moment would inherit
/// it locked, with no thread to unlock it, and hang at its own first log
/// line until the drain deadline killed it. The serving thread holds the
/// gate for reading while it hands a request to the mix-in (the fork); the
/// signal and restart threads hold it for writing while they log.
static FORK_GATE: RwLock<()> = RwLock::new(());

/// `log::$level!`, from a thread other than the serving one: see
/// [`FORK_GATE`].
macro_rules! aside {
    ($level:ident, $($arg:tt)*) => {{
        let _gate = FORK_GATE.write().unwrap_or_else(PoisonError::into_inner);
        log::$level!($($arg)*);
    }};
}

/// The server as the command line runs it: a forking server's
/// `process_request` behind [`FORK_GATE`]. (Only a forking one: in the other
/// modes nothing forks, and a synchronous server's `process_request` runs
/// the whole request, which must not hold up the signal thread's logging.)
struct Gated<T: Transport, M: MixIn>(Server<T, M>);

impl<T: Transport, M: MixIn + CloseTimeout> BaseServer for Gated<T, M> {
    type Transport = T;
    type MixIn = M;

    fn base(&self) -> &Server<T, M> {
        &self.0
    }

    fn process_request(&self, request: RequestOf<Self>, client_address: AddressOf<Self>) {
        let _gate = M::FORKS.then(|| FORK_GATE.read().unwrap_or_else(PoisonError::into_inner));
        self.0.process_request(request, client_address);
    }
}

/// Serves until SIGINT or SIGTERM, then shuts down gracefully: requests in
/// flight finish (`block_on_close`). A second signal exits at once. SIGHUP
/// restarts: see [`restart`]. SIGUSR1 logs the server's stats.
pub fn serve<T: Transport, M: MixIn + CloseTimeout>(mut server: Server<T, M>) -> io::Result<()> {
    let drain = drain_timeout();
    server.mixin.set_close_timeout(drain);
    let limits = LIMITS.get().copied().unwrap_or_default();
    server.max_connections = limits.max_connections;
    server.max_per_ip = limits.max_per_ip;
    server.request_timeout = limits.request_timeout;
    let server = Arc::new(Gated(server));
    let signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])?;
    std::thread::spawn({
        let server = Arc::clone(&server);
        move || watch(signals, server, drain)
    });
    let address: Address = server.server_address().into();
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {address}")?;
    stdout.flush()?;
    drop(stdout);
    announce_ready()?;
    server.serve_forever(None)?;
    // The drain: requests in flight finish within the mix-in's
    // close_timeout (the drain timeout), or are cut off then.
    server.server_close();
    // Stopped during a restart: the new process is stopped too once it is
    // ready (or fails), so that no process serves on after the stop.
    if let Some(thread) = lock(&RESTART_THREAD).take() {
        let _ = thread.join();
    }
    // A socket file this process took over from its predecessor goes now,
    // unless it was handed on in turn.
    drop(lock(&INHERITED).take());
    log::info!("shut down");
    Ok(())
}

/// Where a server stands, as its signals see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Serving,
    /// A successor is starting; this process serves meanwhile.
    Restarting,
    /// A successor took over: this process finishes its requests and exits.
    HandedOver,
    /// Stopping on SIGINT or SIGTERM.
    Stopping,
}

/// The signal thread: SIGINT and SIGTERM stop the server (a second one
/// exits at once), SIGHUP restarts it.
fn watch<T: Transport, M: MixIn + CloseTimeout>(
    mut signals: signal_hook::iterator::Signals,
    server: Arc<Gated<T, M>>,
    drain: Duration,
) {
    let state = Arc::new(Mutex::new(State::Serving));
    let mut stops = 0;
    for signal in signals.forever() {
        if signal == SIGUSR1 {
            aside!(info, "stats: {}", server.stats());
            continue;
        }
        if signal == SIGHUP {
            let mut now = lock(&state);
            match *now {
                State::Serving => {
                    *now = State::Restarting;
                    let (server, state) = (Arc::clone(&server), Arc::clone(&state));
                    let thread = std::thread::spawn(move || restart(&server, &state, drain));
                    *lock(&RESTART_THREAD) = Some(thread);
                }
                State::Restarting => aside!(warn, "SIGHUP ignored: a restart is under way"),
                State::HandedOver | State::Stopping => {
                    aside!(warn, "SIGHUP ignored: this process is stopping")
                }
            }
            continue;
        }
        stops += 1;
        if stops > 1 {
            eprintln!("forced exit");
            std::process::exit(130);
        }
        let before = std::mem::replace(&mut *lock(&state), State::Stopping);
        if before == State::HandedOver {
            aside!(
                info,
                "stopping already: requests in flight have {drain:?} to finish (again to force)"
            );
            continue;
        }
        aside!(
            info,
            "shutting down: requests in flight have {drain:?} to finish (again to force)"
        );
        if let Err(err) = socketserver::restart::notify("STOPPING=1") {
            aside!(warn, "{err}");
        }
        // On a thread of its own: this one must stay free to see a second
        // signal. The loop stops at once, except in a synchronous server
        // whose handler waits on a client: its connection is cut when the
        // drain deadline passes.
        let handle = server.shutdown_handle();
        std::thread::spawn(move || handle.shutdown_within(drain));
    }
}

/// On SIGHUP: starts a new process of this program (the path it was started
/// from, so that an upgraded binary takes over, with the same arguments)
/// and hands it the listening socket; once it has printed its `listening
/// on` line and reported ready, this process stops accepting, finishes its
/// requests within the drain timeout and exits 0. The socket is never closed
/// while either process could accept: no connection is refused or reset.
/// If the new process fails to start or to report ready within
/// `--restart-timeout`, it is killed and this one serves on.
fn restart<T: Transport, M: MixIn + CloseTimeout>(
    server: &Gated<T, M>,
    state: &Mutex<State>,
    drain: Duration,
) {
    let started = Instant::now();
    let result = match (RESTARTER.get(), server.base().socket()) {
        (Some(Ok(restarter)), Ok(socket)) => {
            aside!(
                info,
                "restarting: starting {}",
                restarter.program().display()
            );
            restarter.spawn(&[socket.as_fd()])
        }
        (Some(Err(err)), _) => Err(io::Error::new(err.kind(), err.to_string())),
        (None, _) => Err(io::Error::other("restart: not set up (init_restart)")),
        (_, Err(err)) => Err(err),
    };
    let child = match result {
        Ok(child) => child,
        Err(err) => {
            aside!(error, "{err}; this process serves on");
            let mut now = lock(state);
            if *now == State::Restarting {
                *now = State::Serving;
            }
            return;
        }
    };
    let pid = child.id();
    let mut now = lock(state);
    if *now == State::Stopping {
        // Stopped while the new process started: it stops too.
        aside!(info, "restart: stopping the new process {pid} too");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        return;
    }
    *now = State::HandedOver;
    drop(now);
    aside!(
        info,
        "restart: process {pid} took over in {} ms; this one stops accepting, and its \
         requests in flight have {drain:?} to finish",
        started.elapsed().as_millis()
    );
    // Under systemd (Type=notify), the new process is the service's main
    // process from now on.
    if let Err(err) = socketserver::restart::notify(&format!("MAINPID={pid}\nREADY=1")) {
        aside!(warn, "{err}");
    }
    let _ = server.shutdown_handle().shutdown_within(drain);
}

/// The thread of the restart under way, if any.
static RESTART_THREAD: Mutex<Option<std::thread::JoinHandle<()>>> = Mutex::new(None);

/// What a predecessor passed to this process (started by a restart), taken
/// at start; the successor's socket file goes with it.
static INHERITED: Mutex<Option<Inherited>> = Mutex::new(None);

/// How a restart starts the next process: read at start, before an upgrade
/// can replace the executable (or the error that prevented it, reported
/// at SIGHUP).
static RESTARTER: OnceLock<io::Result<Restarter>> = OnceLock::new();

/// Call first thing in `main`, before any thread starts: takes the sockets
/// a predecessor passed (if a restart started this process) and records
/// this program's path and arguments, and `--restart-timeout`, for the next
/// restart.
pub fn init_restart(ready_timeout_secs: f64) -> io::Result<()> {
    let ready_timeout = duration("--restart-timeout", ready_timeout_secs)?;
    *lock(&INHERITED) = Inherited::from_env()?;
    let _ = RESTARTER.set(Restarter::new().map(|mut restarter| {
        restarter.ready_timeout = ready_timeout;
        restarter
    }));
    Ok(())
}

/// The listening socket a predecessor passed, if this process was started
/// by a restart (and has not taken it yet).
pub fn inherited_socket() -> Option<OwnedFd> {
    lock(&INHERITED).as_mut()?.take(0)
}

/// Whether a restart started this process.
fn is_successor() -> bool {
    lock(&INHERITED).is_some()
}

/// `Server::new(address, handler)` — or, in a process a restart started,
/// the server on the socket its predecessor passed: nothing is bound.
pub fn new_server<T: Transport, M: MixIn + Default>(
    address: impl ServerAddress<T>,
    handler: impl socketserver::RequestHandler<T::Kind>,
) -> io::Result<Server<T, M>> {
    match inherited_socket() {
        Some(fd) => Server::from_fd(fd, handler),
        None => Server::new(address, handler),
    }
}

/// Tells whoever waits that this process serves: the predecessor (a
/// restart), or systemd (`Type=notify`).
fn announce_ready() -> io::Result<()> {
    if let Some(inherited) = lock(&INHERITED).as_mut() {
        return inherited.ready();
    }
    if let Err(err) = socketserver::restart::notify("READY=1") {
        log::warn!("{err}");
    }
    Ok(())
}

/// A lock whose holder cannot have panicked half-way through a change.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `--drain-timeout`'s default: long enough for any honest request, short of
/// systemd's 90 s stop timeout.
pub const DEFAULT_DRAIN_SECS: f64 = 30.0;

static DRAIN_TIMEOUT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Records `--drain-timeout` for every server command.
pub fn set_drain_timeout(secs: f64) -> io::Result<()> {
    let drain = duration("--drain-timeout", secs)?;
    let _ = DRAIN_TIMEOUT.set(drain);
    Ok(())
}

fn drain_timeout() -> Duration {
    DRAIN_TIMEOUT
        .get()
        .copied()
        .unwrap_or(Duration::from_secs_f64(DEFAULT_DRAIN_SECS))
}

/// `--max-connections`, `--max-per-ip` and `--request-timeout`.
#[derive(Debug, Clone, Copy, Default)]
struct Limits {
    max_connections: Option<usize>,
    max_per_ip: Option<usize>,
    request_timeout: Option<Duration>,
}

static LIMITS: OnceLock<Limits> = OnceLock::new();

/// Records the limits every server command applies.
pub fn set_limits(
    max_connections: Option<usize>,
    max_per_ip: Option<usize>,
    request_timeout: Option<f64>,
) -> io::Result<()> {
    let request_timeout = request_timeout
        .map(|secs| duration("--request-timeout", secs))
        .transpose()?;
    let _ = LIMITS.set(Limits {
        max_connections,
        max_per_ip,
        request_timeout,
    });
    Ok(())
}

/// A mix-in whose `server_close` waits at most a drain deadline.
pub trait CloseTimeout {
    /// Whether the mix-in forks a child per request (see [`FORK_GATE`]).
    const FORKS: bool = false;
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

close_timeout!(ThreadingMixIn, ThreadPoolMixIn, CoroutineMixIn);

impl CloseTimeout for ForkingMixIn {
    const FORKS: bool = true;
    fn set_close_timeout(&mut self, timeout: Duration) {
        self.close_timeout = Some(timeout);
    }
}

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
            // The program's other thread is the signal handler's
            // (signal-hook), blocked in poll(2) on its pipe; during a
            // restart, another starts the new process (posix_spawn: nothing
            // of it runs in a fork of this one) and waits on a pipe.
            // Neither holds a lock a child could need, except while it
            // logs, which FORK_GATE keeps apart from the fork. (The thread
            // that stops the server starts only after a signal, when no
            // more children are forked.)
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
        let mut server = match (inherited_socket(), options.inherited) {
            (Some(fd), _) => Server::<Tcp, M>::from_fd(fd, handler)?,
            (None, Some(index)) => Server::<Tcp, M>::from_systemd(index, handler)?,
            (None, None) => {
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
            // A restart passed the socket (descriptor 3 now, whatever the
            // first process was given): see TcpServer::build.
            _ if is_successor() => None,
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
        new_server(self.0.as_str(), self.1)
    }
}

impl<H: RequestHandler<Stream>> Build for UnixServer<H> {
    type Transport = Unix;
    fn build<M: MixIn + Default>(self) -> io::Result<Server<Unix, M>> {
        if let Some(fd) = inherited_socket() {
            // The socket file exists, with its mode: nothing is bound.
            return Server::from_fd(fd, self.2);
        }
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
        if let Some(fd) = inherited_socket() {
            return Server::from_fd(fd, self.2);
        }
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
    secs.map(|s| duration("--timeout", s)).transpose()
}

/// The value of `option`, in seconds (fractions allowed), as a duration.
fn duration(option: &str, secs: f64) -> io::Result<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad {option} {secs}: {e}"),
        )
    })
}
