//! [`BaseServer`]: Python's `BaseServer` and its hooks.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use super::serve;
use super::Server;
use crate::handler::RequestKind;
use crate::mixin::MixIn;
use crate::transport::Transport;
use crate::{Address, Refusal, RequestError, ServerHandle, ServerStats};

/// The request type of server `S`: `TcpStream` for TCP, `UnixStream` for Unix
/// stream servers, a [`Packet`](crate::Packet) for datagram servers.
pub type RequestOf<S> = <<S as BaseServer>::Transport as Transport>::Request;

/// The address type of server `S`: `SocketAddr`, or `PathBuf` for Unix.
pub type AddressOf<S> = <<S as BaseServer>::Transport as Transport>::Address;

/// The kind of request server `S`'s handler takes.
type KindOf<S> = <<S as BaseServer>::Transport as Transport>::Kind;

/// Python's `BaseServer`: the request loop and every hook a subclass may
/// override.
///
/// The crate's servers ([`TCPServer`](crate::TCPServer),
/// [`UDPServer`](crate::UDPServer), …) implement it. To subclass one, as in
/// Python, wrap it in a struct of your own, return it from
/// [`base`](BaseServer::base), and override only the hooks you need: every
/// other method keeps its default, and every default calls the hooks through
/// `self`, so your overrides are the ones that run — from `serve_forever`,
/// from worker threads, from forked children.
///
/// `super().hook(…)` is a call on the server you wrap: `self.base().hook(…)`
/// when that is one of the crate's servers; when you wrap a subclass of your
/// own (Python's `class B(A)`), `self.a.hook(…)`, with `base()` returning
/// `self.a.base()`. Every hook takes `&self`, `process_request` too, so
/// each can be extended this way.
///
/// # The call order
///
/// ```text
/// serve_forever / handle_request
///   → get_request
///   → verify_request            (false → shutdown_request, done)
///   → process_request           (the mix-in: here, a thread, a pool, a fork)
///       → finish_request        (runs the handler: setup, handle, finish)
///       → handle_error          (if the handler failed or panicked)
///       → shutdown_request → close_request
/// serve_forever also calls service_actions after each wake-up;
/// handle_request calls handle_timeout when its timeout runs out.
/// ```
///
/// # Methods for the caller
/// [`serve_forever`](BaseServer::serve_forever),
/// [`handle_request`](BaseServer::handle_request),
/// [`shutdown`](BaseServer::shutdown),
/// [`server_close`](BaseServer::server_close),
/// [`with`](BaseServer::with),
/// [`stats`](BaseServer::stats),
/// [`fileno`](BaseServer::fileno),
/// [`server_address`](BaseServer::server_address),
/// [`shutdown_handle`](BaseServer::shutdown_handle).
///
/// # Methods that may be overridden
/// [`server_bind`](BaseServer::server_bind),
/// [`server_activate`](BaseServer::server_activate),
/// [`get_request`](BaseServer::get_request),
/// [`verify_request`](BaseServer::verify_request),
/// [`process_request`](BaseServer::process_request),
/// [`finish_request`](BaseServer::finish_request),
/// [`shutdown_request`](BaseServer::shutdown_request),
/// [`close_request`](BaseServer::close_request),
/// [`handle_error`](BaseServer::handle_error),
/// [`reject_request`](BaseServer::reject_request),
/// [`handle_timeout`](BaseServer::handle_timeout),
/// [`service_actions`](BaseServer::service_actions),
/// [`server_close`](BaseServer::server_close).
///
/// # Example: a `verify_request` allow-list
///
/// ```
/// use socketserver::{BaseServer, StreamRequest, Synchronous, TCPServer, Tcp};
/// use std::net::{IpAddr, SocketAddr, TcpStream};
///
/// /// Python: `class AllowList(socketserver.TCPServer)`.
/// struct AllowList {
///     base: TCPServer,
///     allowed: Vec<IpAddr>,
/// }
///
/// impl BaseServer for AllowList {
///     type Transport = Tcp;
///     type MixIn = Synchronous;
///     fn base(&self) -> &TCPServer {
///         &self.base
///     }
///
///     fn verify_request(&self, _request: &TcpStream, client_address: &SocketAddr) -> bool {
///         self.allowed.contains(&client_address.ip())
///     }
/// }
///
/// let server = AllowList {
///     base: TCPServer::new("127.0.0.1:0", |_: &mut StreamRequest<'_>| Ok(()))?,
///     allowed: vec!["127.0.0.1".parse().unwrap()],
/// };
/// assert!(server.fileno() >= 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait BaseServer: Send + Sync + 'static {
    /// The transport: [`Tcp`](crate::Tcp), [`Udp`](crate::Udp),
    /// [`Unix`](crate::Unix) or [`UnixDgram`](crate::UnixDgram) (Python's
    /// `TCPServer`, `UDPServer`, … base class).
    type Transport: Transport;
    /// The concurrency mix-in: [`Synchronous`](crate::Synchronous),
    /// [`ThreadingMixIn`](crate::ThreadingMixIn), …
    type MixIn: MixIn;

    /// The crate's server underneath: the socket, the handler and Python's
    /// attributes. For the crate's servers, themselves.
    fn base(&self) -> &Server<Self::Transport, Self::MixIn>;

    // ---- Methods for the caller ----

    /// Python's `serve_forever(poll_interval)`: handles requests until
    /// [`shutdown`](BaseServer::shutdown).
    ///
    /// It waits in poll(2) on the socket and on a wake-up descriptor, so
    /// `shutdown()` makes it return at once, and an idle server does not
    /// wake at all unless `poll_interval` is `Some`: then it wakes that often
    /// to call [`service_actions`](BaseServer::service_actions) (Python wakes
    /// every 0.5 s whatever you ask). `service_actions` also runs after every
    /// request.
    ///
    /// Errors from `get_request` never end the loop: they are logged, and
    /// when descriptors or memory run out (EMFILE, ENFILE, ENOBUFS, ENOMEM)
    /// the loop backs off from 10 ms to 1 s instead of spinning.
    ///
    /// It takes `&Arc<Self>` because mix-ins hand the server to other
    /// threads. A panicking hook other than the handler (which is caught)
    /// ends the loop; a later `serve_forever` may start it again.
    ///
    /// # Errors
    ///
    /// The server is closed, `serve_forever` is already running, or poll(2)
    /// failed.
    fn serve_forever(self: &Arc<Self>, poll_interval: Option<Duration>) -> io::Result<()>
    where
        Self: Sized,
    {
        serve::serve_forever(self, poll_interval)
    }

    /// Python's `handle_request()`: waits for one request and handles it.
    ///
    /// It waits at most [`timeout`](crate::Server::timeout) (`None`: for
    /// ever) and then calls [`handle_timeout`](BaseServer::handle_timeout).
    ///
    /// # Errors
    ///
    /// Unlike Python, which swallows it, an error from `get_request` is
    /// returned. A closed server is an error.
    fn handle_request(self: &Arc<Self>) -> io::Result<()>
    where
        Self: Sized,
    {
        serve::handle_request(self)
    }

    /// Python's `shutdown()`: makes `serve_forever` return, and waits until
    /// it has. See [`ServerHandle::shutdown`] for the details and the error
    /// (instead of Python's deadlock) when called from the serving thread.
    fn shutdown(&self) -> io::Result<()> {
        self.base().handle().shutdown()
    }

    /// A cloneable handle to shut this server down from another thread, a
    /// signal handler or a request handler.
    fn shutdown_handle(&self) -> ServerHandle {
        self.base().handle().clone()
    }

    /// Python's `server_close()`: closes the socket, removes a Unix socket
    /// file this server made, and lets the mix-in wait for its requests
    /// (`block_on_close`). Dropping the server calls it; calling it twice is
    /// harmless.
    ///
    /// If you override it, implement `Drop` for your struct to call it too:
    /// dropping your struct drops only the base, which calls the base's.
    fn server_close(&self) {
        let base = self.base();
        base.close();
        base.mixin.server_close(base.handle());
    }

    /// Python's `with server:` block: runs `body`, then
    /// [`server_close`](BaseServer::server_close) — also when `body` returns
    /// an error or panics — so the requests in flight finish (as
    /// `block_on_close` says) before `with` returns.
    ///
    /// Dropping the server is not enough where requests are in flight:
    /// request threads hold clones of its `Arc`, so `main`'s drop closes
    /// nothing while they run.
    ///
    /// ```
    /// use socketserver::{BaseServer, StreamRequest, ThreadingTCPServer};
    /// use std::io::{BufRead, Write};
    /// use std::sync::Arc;
    ///
    /// fn handle(request: &mut StreamRequest<'_>) -> std::io::Result<()> {
    ///     let mut line = Vec::new();
    ///     request.rfile.read_until(b'\n', &mut line)?;
    ///     request.wfile.write_all(&line)
    /// }
    ///
    /// let server = Arc::new(ThreadingTCPServer::new("127.0.0.1:0", handle)?);
    /// let mut client = std::net::TcpStream::connect(server.server_address())?;
    /// server.with(|server| {
    ///     server.handle_request()?; // the request runs on a thread of its own
    ///     client.write_all(b"in flight\n")
    /// })?;
    /// // `with` waited for the request: its reply is there, the socket closed.
    /// assert_eq!(std::io::read_to_string(client)?, "in flight\n");
    /// assert_eq!(server.fileno(), -1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn with<R>(self: &Arc<Self>, body: impl FnOnce(&Arc<Self>) -> R) -> R
    where
        Self: Sized,
    {
        /// Closes the server when the block ends, however it ends.
        struct Closing<'a, S: BaseServer>(&'a S);
        impl<S: BaseServer> Drop for Closing<'_, S> {
            fn drop(&mut self) {
                self.0.server_close();
            }
        }
        let _closing = Closing(&**self);
        body(self)
    }

    /// What the server has done so far (not in Python): see
    /// [`ServerHandle::stats`].
    fn stats(&self) -> ServerStats {
        self.base().handle().stats()
    }

    /// Python's `fileno()`: the listening socket's descriptor, or -1 once
    /// closed.
    fn fileno(&self) -> RawFd {
        self.base().fileno()
    }

    /// Python's `server_address`: after binding, the real address (port 0
    /// resolved to the port the system chose).
    fn server_address(&self) -> AddressOf<Self> {
        self.base().server_address()
    }

    /// The body of Python's `TCPServer.__init__` with `bind_and_activate`:
    /// [`server_bind`](BaseServer::server_bind) then
    /// [`server_activate`](BaseServer::server_activate), through `self`, so
    /// overrides run. On failure the server is closed (no descriptor leaks),
    /// and the error returned.
    fn bind_and_activate(&self) -> io::Result<()> {
        let result = self.server_bind().and_then(|()| self.server_activate());
        if result.is_err() {
            self.server_close();
        }
        result
    }

    // ---- Methods that may be overridden ----

    /// Python's `server_bind()`: sets SO_REUSEADDR / SO_REUSEPORT as the
    /// attributes say, binds, and records the real address.
    ///
    /// Override to change the socket before or after binding (Python's
    /// `http.server.HTTPServer` does); call `self.base().server_bind()` for
    /// the default.
    fn server_bind(&self) -> io::Result<()> {
        self.base().bind()
    }

    /// Python's `server_activate()`: `listen(request_queue_size)` for stream
    /// servers; nothing for datagram servers.
    fn server_activate(&self) -> io::Result<()> {
        self.base().activate()
    }

    /// Python's `get_request()`: accepts a connection, or receives a datagram
    /// (at most `max_packet_size` bytes). Never blocks: the socket is
    /// non-blocking and the loop calls it when poll(2) says it is ready.
    fn get_request(&self) -> io::Result<(RequestOf<Self>, AddressOf<Self>)> {
        self.base().get_request()
    }

    /// Python's `verify_request()`: return `false` to refuse the request,
    /// which then goes straight to [`shutdown_request`](BaseServer::shutdown_request).
    /// Defaults to `true`.
    fn verify_request(&self, request: &RequestOf<Self>, client_address: &AddressOf<Self>) -> bool {
        let _ = (request, client_address);
        true
    }

    /// Python's `process_request()`: the mix-in decides — in this thread
    /// ([`Synchronous`](crate::Synchronous)), a new thread, a pool worker or
    /// a child process — and calls `finish_request`, `handle_error` and
    /// `shutdown_request` there on the server that `serve_forever` (or
    /// `handle_request`) runs, so a subclass's hooks run wherever the
    /// request goes, even when the subclass extends this hook.
    fn process_request(&self, request: RequestOf<Self>, client_address: AddressOf<Self>) {
        let base = self.base();
        match base.serving() {
            Some(server) => base.mixin.process_request(&server, request, client_address),
            None => {
                let error = io::Error::other(
                    "process_request needs a server in serve_forever or handle_request",
                );
                self.handle_error(&request, &client_address, &RequestError::Process(error));
                crate::mixin::shutdown_request(self, request);
            }
        }
    }

    /// Python's `finish_request()`: runs the handler on the request
    /// (`setup`, `handle`, `finish`). Returns what the handler returned.
    fn finish_request(
        &self,
        request: &RequestOf<Self>,
        client_address: &AddressOf<Self>,
    ) -> io::Result<()> {
        KindOf::<Self>::finish_request(
            self.base(),
            Self::Transport::view(request),
            client_address.clone().into(),
        )
    }

    /// Python's `shutdown_request()`: for a stream, shuts down the write
    /// half (so the client sees the end at once), then calls
    /// [`close_request`](BaseServer::close_request).
    fn shutdown_request(&self, request: RequestOf<Self>) {
        KindOf::<Self>::shutdown_request(Self::Transport::view(&request));
        self.close_request(request);
    }

    /// Python's `close_request()`: closes a stream connection; nothing for a
    /// datagram (the socket is the server's).
    fn close_request(&self, request: RequestOf<Self>) {
        drop(request);
    }

    /// Python's `handle_error()`: called when the handler returned an error
    /// or panicked. The server carries on either way.
    ///
    /// Defaults to Python's words, `Exception occurred during processing of
    /// request from ADDR: …`: logged at `error` level through the `log`
    /// crate when a logger is installed, else printed to stderr between
    /// Python's dashed lines, as Python prints it — so an error is never
    /// silent.
    fn handle_error(
        &self,
        request: &RequestOf<Self>,
        client_address: &AddressOf<Self>,
        error: &RequestError,
    ) {
        let _ = request;
        let address: Address = client_address.clone().into();
        // No logger installed leaves the maximum level at Off.
        if log::max_level() == log::LevelFilter::Off {
            let dashes = "-".repeat(40);
            eprintln!(
                "{dashes}\nException occurred during processing of request from {address}\n\
                 {error}\n{dashes}"
            );
        } else {
            log::error!("Exception occurred during processing of request from {address}: {error}");
        }
    }

    /// Called instead of `process_request` for a request refused before its
    /// handler (not in Python): [`Server::max_connections`] or
    /// [`Server::max_per_ip`] reached as it was accepted, or a full
    /// [`ThreadPoolMixIn`](crate::ThreadPoolMixIn) under
    /// [`Overload::Reject`](crate::mixin::Overload::Reject); `reason` says
    /// which. Override it to act on the refusal (to tell the client, the
    /// handler's [`refused`](crate::RequestHandler::refused) is the place:
    /// it knows the protocol); call `self.base().reject_request(…)` to
    /// finish.
    ///
    /// Defaults to the handler's [`refused`](crate::RequestHandler::refused)
    /// (unless the server speaks TLS), logging at `debug` level (each
    /// refusal is counted in [`stats`](BaseServer::stats)), and
    /// [`shutdown_request`](BaseServer::shutdown_request).
    ///
    /// [`Server::max_connections`]: crate::Server::max_connections
    /// [`Server::max_per_ip`]: crate::Server::max_per_ip
    fn reject_request(
        &self,
        request: RequestOf<Self>,
        client_address: AddressOf<Self>,
        reason: Refusal,
    ) {
        #[cfg(feature = "tls")]
        let tls = self.base().tls.is_some();
        #[cfg(not(feature = "tls"))]
        let tls = false;
        if !tls {
            let handler = self.base().request_handler();
            KindOf::<Self>::refused(handler, Self::Transport::view(&request), reason);
        }
        let address: Address = client_address.into();
        log::debug!("request from {address} refused: {reason}");
        self.shutdown_request(request);
    }

    /// Python's `handle_timeout()`: called by `handle_request` when its
    /// timeout runs out. Defaults to the mix-in's (the forking mix-in reaps
    /// children; the others do nothing).
    fn handle_timeout(&self) {
        self.base().mixin.handle_timeout();
    }

    /// Python's `service_actions()`: called by `serve_forever` after each
    /// request and each `poll_interval` wake-up. Defaults to the mix-in's
    /// (the forking mix-in reaps children; the others do nothing).
    fn service_actions(&self) {
        self.base().mixin.service_actions();
    }
}

impl<T: Transport, M: MixIn> BaseServer for Server<T, M> {
    type Transport = T;
    type MixIn = M;
    fn base(&self) -> &Self {
        self
    }
}
