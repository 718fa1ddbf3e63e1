//! Stream requests: Python's `StreamRequestHandler`, and what a stream
//! server does between `get_request` and the handler.

use std::io::{self, BufReader, Write};
use std::net::Shutdown;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use super::{Connection, RequestHandler, RequestKind, SocketWriter};
use crate::mixin::MixIn;
use crate::server::stats::Outcome;
use crate::{Address, Refusal, Server, ServerHandle, Transport};

/// The stream kind of request (TCP and Unix stream servers):
/// `RequestHandler<Stream>` is Python's `StreamRequestHandler`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stream;

impl RequestKind for Stream {
    type Request<'a> = StreamRequest<'a>;
    type Options = StreamOptions;
    type View<'a> = Connection<'a>;

    /// Python's `finish_request` for stream servers: the setup (PROXY
    /// header, TLS handshake), the handler's options
    /// (`StreamRequestHandler.setup`), then the handler; a TLS session ends
    /// with close_notify.
    fn finish_request<T: Transport<Kind = Stream>, M: MixIn>(
        server: &Server<T, M>,
        connection: Connection<'_>,
        client_address: Address,
    ) -> io::Result<()> {
        let handler = server.request_handler();
        connection.prepare_for_coroutine()?;
        // A parked connection comes back as a new request, through this
        // function again: only one with no per-connection setup (a PROXY
        // header read once, a TLS session) may park.
        #[allow(unused_mut)]
        let mut may_park = true;
        #[cfg(feature = "proxy")]
        let client_address = {
            may_park &= server.proxy_protocol == crate::ProxyProtocol::Off;
            server
                .proxy_protocol
                .client_address(connection, client_address)?
        };
        let options = handler.options();
        let handle = server.handle();
        let request_timeout = server.request_timeout;
        #[cfg(feature = "tls")]
        if let Some(config) = &server.tls {
            let settings = Settings {
                options: &options,
                request_timeout,
                counted_as: connection.fd(),
            };
            return run_tls(
                handler,
                config,
                connection,
                client_address,
                handle,
                settings,
            );
        }
        let request = StreamRequest::new(connection, client_address, handle, &options);
        let settings = Settings {
            options: &options,
            request_timeout,
            counted_as: connection.fd(),
        };
        run_on(handler, request, settings, may_park)
    }

    fn shutdown_request(connection: Connection<'_>) {
        // Python: "explicitly shutdown; socket.close() merely releases the
        // socket and waits for GC" — and ENOTCONN when the peer left is fine.
        let _ = connection.shutdown(Shutdown::Write);
    }

    fn readiness<'a>(connection: Self::View<'a>) -> Option<BorrowedFd<'a>> {
        Some(connection.fd())
    }

    /// Python's `StreamRequestHandler.finish`: flush `wfile`. Unlike Python,
    /// a failed flush is reported, not swallowed: buffered bytes that never
    /// left are lost data.
    fn send_reply(request: &mut StreamRequest<'_>) -> io::Result<()> {
        request.wfile.flush()
    }

    fn refused(handler: &dyn RequestHandler<Self>, connection: Connection<'_>, reason: Refusal) {
        handler.refused(Some(connection), reason);
    }
}

/// A stream handler's class attributes (Python's `StreamRequestHandler`
/// attributes of the same names).
///
/// ```
/// use socketserver::StreamOptions;
/// use std::time::Duration;
/// let options = StreamOptions {
///     timeout: Some(Duration::from_secs(5)),
///     disable_nagle_algorithm: true,
///     ..StreamOptions::default()
/// };
/// assert_eq!(options.rbufsize, 8192);
/// assert_eq!(options.wbufsize, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// Read and write timeout on the connection. A read or write that waits
    /// longer fails with [`io::ErrorKind::TimedOut`] (Python's
    /// `TimeoutError`). Defaults to `None`: wait for ever, as Python.
    pub timeout: Option<Duration>,
    /// Size of `rfile`'s buffer. Defaults to 8192 (Python's `-1`, meaning
    /// `io.DEFAULT_BUFFER_SIZE`); `0` reads unbuffered, a byte at a time for
    /// `read_until`, as Python's `rbufsize = 0`.
    pub rbufsize: usize,
    /// Size of `wfile`'s buffer. Defaults to `0`: every write is sent whole
    /// before it returns (Python's `_SocketWriter`).
    ///
    /// **The Nagle trap**: with `0`, a request/response protocol on a kept
    /// connection that writes a reply in two pieces (a head, then a body)
    /// sends two segments, and the second waits for the client's delayed ACK:
    /// about 40 ms per exchange on Linux (Python's `StreamRequestHandler`
    /// has the same stall). Set `wbufsize` (8192 brought one such exchange
    /// from 40 ms to 0.14 ms) so that a reply leaves in one write at
    /// `flush` or when the request ends, or set
    /// [`disable_nagle_algorithm`](StreamOptions::disable_nagle_algorithm).
    pub wbufsize: usize,
    /// Set `TCP_NODELAY` on TCP connections. Defaults to `false`.
    pub disable_nagle_algorithm: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            timeout: None,
            rbufsize: 8192,
            wbufsize: 0,
            disable_nagle_algorithm: false,
        }
    }
}

/// One stream request, as a stream handler sees it: Python's
/// `StreamRequestHandler` instance attributes.
#[derive(Debug)]
#[non_exhaustive]
pub struct StreamRequest<'a> {
    /// The connection (Python's `self.request` and `self.connection`).
    pub connection: Connection<'a>,
    /// Buffered reader over the connection (Python's `self.rfile`).
    pub rfile: BufReader<Connection<'a>>,
    /// Writer to the connection (Python's `self.wfile`).
    pub wfile: SocketWriter<'a>,
    /// The client's address (Python's `self.client_address`).
    pub client_address: Address,
    /// The server that accepted the request (Python's `self.server`), to
    /// shut it down from a handler.
    pub server: &'a ServerHandle,
    /// Set by [`serve_again`](StreamRequest::serve_again).
    again: bool,
}

impl<'a> StreamRequest<'a> {
    pub(crate) fn new(
        connection: Connection<'a>,
        client_address: Address,
        server: &'a ServerHandle,
        options: &StreamOptions,
    ) -> Self {
        // A zero-sized BufReader reports end of file at once; Python's
        // "unbuffered" rfile reads a byte at a time.
        let rfile = BufReader::with_capacity(options.rbufsize.max(1), connection);
        StreamRequest {
            connection,
            rfile,
            wfile: SocketWriter::new(connection, options.wbufsize),
            client_address,
            server,
            again: false,
        }
    }

    /// Asks for the handler to run again on this connection — `setup`,
    /// `handle` and `finish` — when the client sends its next request: the
    /// keep-alive of a request/response protocol (HTTP/1.1), written as a
    /// handler that serves one request per call. Not in Python, whose
    /// handlers loop inside `handle`, holding their thread meanwhile.
    ///
    /// Under [`ThreadPoolMixIn`](crate::ThreadPoolMixIn) with
    /// [`Dispatch::WhenReadable`](crate::mixin::Dispatch::WhenReadable) (the
    /// default), a connection with nothing more to read waits in the pool's
    /// readiness gate meanwhile, holding no worker, until the client sends
    /// or `idle_timeout` passes (then it is closed, counted in
    /// [`PoolStats::expired`](crate::mixin::PoolStats::expired)). Otherwise
    /// — other mix-ins, bytes already in `rfile`'s buffer (pipelining), a
    /// TLS or PROXY-protocol connection — the handler is called again at
    /// once, on the same thread, with the same `rfile`. Once the server is
    /// shut down or closed, it is not called again: the connection is
    /// closed after the request that asked.
    ///
    /// ```
    /// use socketserver::{StreamRequest, ThreadPoolTCPServer};
    /// use std::io::{BufRead, Write};
    ///
    /// // A line echo that serves each line as a request of its own: between
    /// // two lines the connection holds no pool worker.
    /// let server = ThreadPoolTCPServer::new("127.0.0.1:0", |r: &mut StreamRequest<'_>| {
    ///     let mut line = Vec::new();
    ///     if r.rfile.read_until(b'\n', &mut line)? > 0 {
    ///         r.wfile.write_all(&line)?;
    ///         r.serve_again();
    ///     }
    ///     Ok(())
    /// })?;
    /// # drop(server);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn serve_again(&mut self) {
        self.again = true;
    }
}

/// The TLS branch of `Stream::finish_request`, out of line on purpose: a
/// TLS session is a few KiB, and inlined it would enlarge the stack frame
/// of every plain request too. An idle request thread's stack is resident
/// memory: with the session in the common frame it touched three pages
/// instead of two (benches/servers.rs, idle connections, 4 KiB more per
/// connection).
#[cfg(feature = "tls")]
#[inline(never)]
fn run_tls(
    handler: &dyn RequestHandler<Stream>,
    config: &std::sync::Arc<rustls::ServerConfig>,
    connection: Connection<'_>,
    client_address: Address,
    server: &ServerHandle,
    settings: Settings<'_>,
) -> io::Result<()> {
    let options = settings.options;
    let timeout = options
        .timeout
        .unwrap_or(crate::tls::DEFAULT_HANDSHAKE_TIMEOUT);
    let tls = crate::tls::TlsStream::accept(config, connection, timeout)?;
    let request = StreamRequest::new(Connection::Tls(&tls), client_address, server, options);
    let result = run_on(handler, request, settings, false);
    let closed = tls.close();
    result.and(closed)
}

/// What `run_on` needs besides the request.
struct Settings<'a> {
    /// The handler's options.
    options: &'a StreamOptions,
    /// The server's `request_timeout`.
    request_timeout: Option<Duration>,
    /// The descriptor the server knows this connection by, for the
    /// deadline: the accepted socket, which a TLS session reads through a
    /// duplicate of.
    counted_as: BorrowedFd<'a>,
}

/// Runs the handler on `request`, again for as long as it asks to
/// ([`StreamRequest::serve_again`]), or until it may park instead. Each
/// run gets the server's `request_timeout` from its start.
fn run_on(
    handler: &dyn RequestHandler<Stream>,
    mut request: StreamRequest<'_>,
    settings: Settings<'_>,
    may_park: bool,
) -> io::Result<()> {
    request.connection.apply(settings.options)?;
    loop {
        if let Some(timeout) = settings.request_timeout {
            let server = request.server;
            server.set_request_deadline(settings.counted_as, timeout, &request.client_address);
        }
        request.again = false;
        super::run_handler(handler, &mut request)?;
        if !request.again || request.server.stopping() {
            return Ok(());
        }
        // Bytes already buffered would be lost with this rfile.
        if may_park && request.rfile.buffer().is_empty() && super::keep_alive::park() {
            return Ok(());
        }
        // A run that ended well, with another to follow here (the last run
        // is counted as the request ends, a parked one as it parks).
        request.server.counters().ended(Outcome::Served);
    }
}
