//! [`Server`]: the struct behind `TCPServer`, `UDPServer`, `UnixStreamServer`
//! and `UnixDatagramServer`, holding the socket, the handler and Python's
//! attributes.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::connections::Limits;
use super::socket_file::SocketFile;
use crate::handler::RequestHandler;
use crate::mixin::{MixIn, Synchronous};
use crate::transport::{BindOptions, ServerAddress, Transport};
use crate::ServerHandle;

/// A server as the mix-ins see it: whatever implements
/// [`BaseServer`](crate::BaseServer) over this transport and mix-in.
pub(crate) type ServerObject<T, M> = dyn crate::BaseServer<Transport = T, MixIn = M>;

/// A server of transport `T` ([`Tcp`](crate::Tcp), [`Udp`](crate::Udp),
/// [`Unix`](crate::Unix), [`UnixDgram`](crate::UnixDgram)) and mix-in `M`
/// ([`Synchronous`], [`ThreadingMixIn`](crate::ThreadingMixIn), …).
///
/// You rarely name it: Python's class names are aliases of it —
/// [`TCPServer`](crate::TCPServer) is `Server<Tcp, Synchronous>`,
/// [`ThreadingTCPServer`](crate::ThreadingTCPServer) is
/// `Server<Tcp, ThreadingMixIn>`, and so on. Its hooks are those of
/// [`BaseServer`](crate::BaseServer), which it implements.
///
/// Python's class attributes are public fields here. Set them on a server
/// made with `unbound` (Python's `bind_and_activate=False`) before
/// [`bind_and_activate`](crate::BaseServer::bind_and_activate), or before
/// sharing the server between threads.
pub struct Server<T: Transport, M: MixIn = Synchronous> {
    socket: RwLock<Option<Arc<T::Socket>>>,
    server_address: Mutex<T::Address>,
    /// The Unix socket file `server_bind` created, to remove on close.
    socket_file: Mutex<Option<SocketFile>>,
    handler: Box<dyn RequestHandler<T::Kind>>,
    handle: ServerHandle,
    /// See [`serving`](Server::serving).
    serving: RwLock<Option<Weak<ServerObject<T, M>>>>,
    /// The concurrency mix-in and its settings (e.g. `daemon_threads`).
    pub mixin: M,
    /// Python's `timeout`: how long [`handle_request`](crate::BaseServer::handle_request)
    /// waits before calling `handle_timeout`. Defaults to `None` (for ever).
    /// `serve_forever` ignores it, as in Python.
    pub timeout: Option<Duration>,
    /// Python's `allow_reuse_address`: set SO_REUSEADDR before binding, so a
    /// restarted server can take a port still in TIME_WAIT. Defaults to
    /// `false`, as Python (std's `TcpListener::bind` always sets it).
    /// Internet sockets only.
    pub allow_reuse_address: bool,
    /// Python's `allow_reuse_port`: set SO_REUSEPORT, so several processes
    /// can listen on one port. Defaults to `false`. Internet sockets only
    /// (CPython gh-128916).
    pub allow_reuse_port: bool,
    /// Python's `request_queue_size`: the `listen(2)` backlog. Defaults to
    /// SOMAXCONN (4096 on Linux; the kernel caps it at
    /// `net.core.somaxconn`), as Python 3.15 — earlier Pythons used 5, and
    /// std uses 128, which resets connections under bursts. Stream servers only.
    pub request_queue_size: i32,
    /// Python's `max_packet_size`: the longest datagram read; a longer one
    /// arrives truncated. Defaults to 8192. Datagram servers only.
    pub max_packet_size: usize,
    /// The permissions of a Unix socket file, e.g. `0o600` so that only this
    /// user may connect (not in Python). Applied by `server_bind` right after
    /// binding, before `listen`, so no client connects through the wider
    /// mode the umask gave. Defaults to `None`: as the umask leaves it.
    pub unix_socket_mode: Option<u32>,
    /// Let an IPv6 server take IPv4 clients too, on one socket
    /// (IPV6_V6ONLY off, as `http.server`'s DualStackServer; not in
    /// socketserver). `false` leaves the system's default (on Linux,
    /// `net.ipv6.bindv6only`, usually 0: dual-stack already). IPv6 only.
    pub dual_stack: bool,
    /// At most this many stream connections open at once — running a
    /// handler, waiting for a worker, kept alive between requests, or in a
    /// forked child (not in Python). A connection beyond it is refused as
    /// it is accepted: [`reject_request`](crate::BaseServer::reject_request)
    /// runs with [`Refusal::MaxConnections`](crate::Refusal::MaxConnections)
    /// (the HTTP server answers 503), then it is closed. Never queued
    /// unseen; accepted again as soon as others close. Defaults to `None`:
    /// no cap (descriptors and memory are the limit). Stream servers only.
    pub max_connections: Option<usize>,
    /// At most this many open stream connections per client IP address,
    /// refused as `max_connections` is, with
    /// [`Refusal::MaxPerIp`](crate::Refusal::MaxPerIp) (not in Python).
    /// The address is the one `get_request` returns: behind a load
    /// balancer, the balancer's own, even with `proxy_protocol` (the PROXY
    /// header is read later, on the request's thread) — cap per client at
    /// the balancer then. Defaults to `None`. Internet stream servers only.
    pub max_per_ip: Option<usize>,
    /// A deadline for each run of the handler on a stream connection, from
    /// its start (not in Python, whose `timeout` bounds each read only, so
    /// a client sending a byte just before each timeout holds a request for
    /// ever). Past it the connection is shut down both ways: the handler's
    /// next (or current) read sees end-of-file and its write an error, it
    /// returns, and the request ends as usual; the cut is logged and counted
    /// ([`ServerStats::timed_out`](crate::ServerStats::timed_out)). A kept
    /// connection's deadline starts again with each run. The TLS handshake
    /// and PROXY header have their own (the handler's `timeout`). Defaults
    /// to `None`. Stream servers only.
    ///
    /// Under [`ForkingMixIn`](crate::ForkingMixIn) each child runs its own
    /// watchdog thread.
    pub request_timeout: Option<Duration>,
    /// Whether each connection starts with a PROXY protocol header giving
    /// the real client's address (behind HAProxy and the like; not in
    /// Python). Defaults to [`ProxyProtocol::Off`](crate::ProxyProtocol::Off).
    /// Stream servers only. Hooks that run before the handler
    /// (`verify_request`, `handle_error`) still see the balancer's address.
    /// Feature `proxy`.
    #[cfg(feature = "proxy")]
    pub proxy_protocol: crate::ProxyProtocol,
    /// Serve TLS (feature `tls`; not in Python): each connection's
    /// handshake runs on its own thread (worker, child) before the handler,
    /// within the handler's timeout or 10 s. Make one with
    /// [`tls::server_config_from_pem`](crate::tls::server_config_from_pem).
    /// Defaults to `None`. Stream servers only.
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl<T: Transport, M: MixIn + Default> Server<T, M> {
    /// Python's `TCPServer(server_address, RequestHandlerClass)` (and
    /// `UDPServer`, `UnixStreamServer`, `UnixDatagramServer`): creates the
    /// socket, binds it and, for a stream, listens (`request_queue_size`,
    /// SOMAXCONN by default).
    ///
    /// An Internet address is anything `ToSocketAddrs`: a host name gives
    /// its first IPv4 address if it has one (Python's `AF_INET` default),
    /// else its first address; an IPv6 literal gives an IPv6 server; port 0
    /// picks a free port, read back with
    /// [`server_address`](crate::BaseServer::server_address). A Unix
    /// address is a path; the socket file goes when the server closes.
    ///
    /// # Errors
    ///
    /// An error naming the address and the cause: address in use, permission
    /// denied below port 1024, a Unix path that exists already (another
    /// server's, or a stale file — nothing is removed)… The socket is closed.
    ///
    /// ```
    /// use socketserver::{BaseServer, DatagramRequest, StreamRequest, TCPServer, UDPServer, UnixStreamServer};
    /// let tcp = TCPServer::new("127.0.0.1:0", |_: &mut StreamRequest<'_>| Ok(()))?;
    /// assert_ne!(tcp.server_address().port(), 0);
    ///
    /// let udp = UDPServer::new(("localhost", 0), |r: &mut DatagramRequest<'_>| {
    ///     r.wfile = r.packet().to_ascii_uppercase();
    ///     Ok(())
    /// })?;
    /// assert!(udp.server_address().is_ipv4());
    ///
    /// let path = std::env::temp_dir().join(format!("doc-new-{}.sock", std::process::id()));
    /// let unix = UnixStreamServer::new(&path, |_: &mut StreamRequest<'_>| Ok(()))?;
    /// assert!(path.exists());
    /// drop(unix);
    /// assert!(!path.exists(), "the socket file goes with the server");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(
        server_address: impl ServerAddress<T>,
        handler: impl RequestHandler<T::Kind>,
    ) -> io::Result<Self> {
        let server = Self::unbound(server_address, handler)?;
        crate::BaseServer::bind_and_activate(&server)?;
        Ok(server)
    }

    /// Python's `bind_and_activate=False`: creates the socket only, so that
    /// attributes (`allow_reuse_address`, `request_queue_size`, …) can be
    /// set before [`bind_and_activate`](crate::BaseServer::bind_and_activate).
    ///
    /// ```
    /// use socketserver::{BaseServer, StreamRequest, TCPServer};
    /// let mut server = TCPServer::unbound("127.0.0.1:0", |_: &mut StreamRequest<'_>| Ok(()))?;
    /// server.allow_reuse_address = true;
    /// server.request_queue_size = 64;
    /// server.bind_and_activate()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn unbound(
        server_address: impl ServerAddress<T>,
        handler: impl RequestHandler<T::Kind>,
    ) -> io::Result<Self> {
        Self::create(server_address.server_address()?, Box::new(handler))
    }

    /// Creates the socket, not yet bound: Python's `TCPServer.__init__` up
    /// to `bind_and_activate`.
    fn create(
        server_address: T::Address,
        handler: Box<dyn RequestHandler<T::Kind>>,
    ) -> io::Result<Self> {
        let socket = T::socket(&server_address).map_err(|err| {
            crate::error::context(err, format_args!("{}: cannot create a socket", T::CLASS))
        })?;
        Self::assemble(socket, server_address, handler)
    }

    fn assemble(
        socket: T::Socket,
        server_address: T::Address,
        handler: Box<dyn RequestHandler<T::Kind>>,
    ) -> io::Result<Self> {
        crate::panic::install_hook();
        let mixin = M::default();
        Ok(Server {
            socket: RwLock::new(Some(Arc::new(socket))),
            server_address: Mutex::new(server_address),
            socket_file: Mutex::new(None),
            handler,
            handle: ServerHandle::new()?,
            serving: RwLock::new(None),
            timeout: mixin.default_timeout(),
            mixin,
            allow_reuse_address: false,
            allow_reuse_port: false,
            request_queue_size: nix::libc::SOMAXCONN,
            max_packet_size: 8192,
            unix_socket_mode: None,
            dual_stack: false,
            max_connections: None,
            max_per_ip: None,
            request_timeout: None,
            #[cfg(feature = "proxy")]
            proxy_protocol: crate::ProxyProtocol::Off,
            #[cfg(feature = "tls")]
            tls: None,
        })
    }

    /// A server on a socket made elsewhere, already bound (and, for a
    /// stream, listening): a std `TcpListener`, `UdpSocket`, `UnixListener`
    /// or `UnixDatagram`. `server_bind` and `server_activate` are not called;
    /// a Unix socket file stays where it is when the server closes (its
    /// creator owns it). Not in Python.
    ///
    /// # Errors
    ///
    /// The socket is of another type or family, or (a stream) not listening.
    ///
    /// ```
    /// use socketserver::{BaseServer, StreamRequest, TCPServer};
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let address = listener.local_addr()?;
    /// let server = TCPServer::from_socket(listener, |_: &mut StreamRequest<'_>| Ok(()))?;
    /// assert_eq!(server.server_address(), address);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn from_socket(
        socket: T::Socket,
        handler: impl RequestHandler<T::Kind>,
    ) -> io::Result<Self> {
        let address = T::adopt(&socket)?;
        Self::assemble(socket, address, Box::new(handler))
    }

    /// A server on an inherited descriptor (from a parent process, a
    /// supervisor, `--listen-fd`): as [`from_socket`](Server::from_socket),
    /// after checking what the descriptor is.
    pub fn from_fd(fd: OwnedFd, handler: impl RequestHandler<T::Kind>) -> io::Result<Self> {
        Self::from_socket(T::Socket::from(fd), handler)
    }

    /// A server on socket `index` passed by systemd socket activation
    /// (`LISTEN_FDS`, `LISTEN_PID`; the first is 0). Call it before
    /// starting threads: reading the variables also clears them (the
    /// listenfd crate), and the environment is not thread-safe. Feature
    /// `systemd` (on by default; it brings the `listenfd` crate).
    ///
    /// # Errors
    ///
    /// No such socket was passed (not started by systemd, or fewer
    /// sockets), or it is of another kind.
    #[cfg(feature = "systemd")]
    pub fn from_systemd(index: usize, handler: impl RequestHandler<T::Kind>) -> io::Result<Self> {
        let mut fds = listenfd::ListenFd::from_env();
        let passed = fds.len();
        let socket = T::take_inherited(&mut fds, index)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{}: no socket {index} from systemd (LISTEN_FDS passed {passed}; \
                     is this process socket-activated?)",
                    T::CLASS
                ),
            )
        })?;
        Self::from_socket(socket, handler)
    }
}

impl<T: Transport, M: MixIn> Server<T, M> {
    /// The handler every request goes to (Python's `RequestHandlerClass`).
    pub fn request_handler(&self) -> &dyn RequestHandler<T::Kind> {
        &*self.handler
    }

    /// The handle that shuts this server down.
    pub(crate) fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// Python's `server.socket`: the listening socket (a `TcpListener`,
    /// `UdpSocket`, `UnixListener` or `UnixDatagram`), or an error once the
    /// server is closed. Before binding it is a fresh, unbound socket, so a
    /// `server_bind` override can set options on it first — through
    /// `socket2::SockRef::from(&*socket)` for those std does not offer (as
    /// `http.server`'s DualStackServer clears `IPV6_V6ONLY`).
    pub fn socket(&self) -> io::Result<Arc<T::Socket>> {
        self.socket.read().clone().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                format!("{} is closed (server_close was called)", T::CLASS),
            )
        })
    }

    /// The server `serve_forever` or `handle_request` runs (this one, or
    /// the subclass wrapping it): what the mix-in hands each request to, so
    /// that the subclass's hooks run wherever the request goes.
    pub(crate) fn serving(&self) -> Option<Arc<ServerObject<T, M>>> {
        self.serving.read().as_ref()?.upgrade()
    }

    /// Records the server that serves: called as `serve_forever` and
    /// `handle_request` start. Weak, since that server owns this one.
    pub(crate) fn serve_as<S: crate::BaseServer<Transport = T, MixIn = M>>(&self, server: &Arc<S>) {
        let object: Arc<ServerObject<T, M>> = server.clone();
        *self.serving.write() = Some(Arc::downgrade(&object));
        self.handle.serve_as(server);
    }

    pub(crate) fn fileno(&self) -> RawFd {
        self.socket
            .read()
            .as_ref()
            .map_or(-1, |socket| socket.as_fd().as_raw_fd())
    }

    pub(crate) fn server_address(&self) -> T::Address {
        self.server_address.lock().clone()
    }

    pub(crate) fn bind(&self) -> io::Result<()> {
        let socket = self.socket()?;
        let options = BindOptions {
            reuse_address: self.allow_reuse_address,
            reuse_port: self.allow_reuse_port,
            dual_stack: self.dual_stack,
        };
        let requested = self.server_address();
        let bound = T::bind(&socket, &requested, options)?;
        if let Some(path) = T::socket_file(&bound) {
            *self.socket_file.lock() = SocketFile::created(path);
            if let Some(mode) = self.unix_socket_mode {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(
                    |err| {
                        crate::error::context(
                            err,
                            format_args!(
                                "{}: cannot set mode {mode:o} on {}",
                                T::CLASS,
                                path.display()
                            ),
                        )
                    },
                )?;
            }
        }
        *self.server_address.lock() = bound;
        Ok(())
    }

    pub(crate) fn activate(&self) -> io::Result<()> {
        T::activate(&*self.socket()?, self.request_queue_size).map_err(|err| {
            crate::error::context(
                err,
                format_args!(
                    "{} could not listen on {:?}",
                    T::CLASS,
                    self.server_address()
                ),
            )
        })
    }

    /// What `serve_forever` checks a new connection against.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            max_per_ip: self.max_per_ip,
        }
    }

    pub(crate) fn get_request(&self) -> io::Result<(T::Request, T::Address)> {
        T::get_request(&self.socket()?, self.max_packet_size)
    }

    /// In a forked child: drops the child's copy of the listening socket,
    /// and nothing else (the socket file and the shutdown handle are the
    /// parent's). A lock another thread held at the fork is skipped, never
    /// waited for.
    pub(crate) fn close_socket_in_child(&self) {
        if let Some(mut socket) = self.socket.try_write() {
            socket.take();
        }
    }

    /// Closes the socket (Python's `TCPServer.server_close`), removes the
    /// Unix socket file if this server made it, and tells `shutdown()`
    /// callers that no loop will answer. Safe to call twice.
    pub(crate) fn close(&self) {
        if self.socket.write().take().is_some() {
            if let Some(file) = self.socket_file.lock().take() {
                file.remove();
            }
        }
        self.handle.close();
    }
}

impl<T: Transport, M: MixIn> Drop for Server<T, M> {
    /// Python's `with` block: leaving it calls `server_close()`.
    fn drop(&mut self) {
        crate::BaseServer::server_close(self);
    }
}

impl<T: Transport, M: MixIn + fmt::Debug> fmt::Debug for Server<T, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct(T::CLASS);
        debug
            .field("server_address", &self.server_address())
            .field("fileno", &self.fileno())
            .field("mixin", &self.mixin)
            .field("timeout", &self.timeout)
            .field("allow_reuse_address", &self.allow_reuse_address)
            .field("allow_reuse_port", &self.allow_reuse_port)
            .field("request_queue_size", &self.request_queue_size)
            .field("max_packet_size", &self.max_packet_size)
            .field("unix_socket_mode", &self.unix_socket_mode)
            .field("dual_stack", &self.dual_stack)
            .field("max_connections", &self.max_connections)
            .field("max_per_ip", &self.max_per_ip)
            .field("request_timeout", &self.request_timeout);
        #[cfg(feature = "proxy")]
        debug.field("proxy_protocol", &self.proxy_protocol);
        debug.finish_non_exhaustive()
    }
}
