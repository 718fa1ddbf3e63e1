//! Request handlers: Python's `BaseRequestHandler`, `StreamRequestHandler` and
//! `DatagramRequestHandler`.
//!
//! One trait, [`RequestHandler`], keyed by the kind of request it handles:
//! [`Stream`] (TCP and Unix stream servers; Python's `StreamRequestHandler`) or
//! [`Datagram`] (UDP and Unix datagram servers; Python's
//! `DatagramRequestHandler`). The server calls, for every request:
//!
//! 1. [`setup`](RequestHandler::setup) — if it fails, nothing else runs;
//! 2. [`handle`](RequestHandler::handle);
//! 3. [`finish`](RequestHandler::finish) — runs even when `handle` failed or
//!    panicked, as Python's `try: handle() finally: finish()`; then the kind's
//!    own finish: a stream request flushes `wfile`, a datagram request sends
//!    `wfile` back to the client.

mod connection;
mod datagram;
// Used by the handshakes (TLS, PROXY) and the HTTP request head.
#[cfg(any(feature = "tls", feature = "proxy", feature = "http"))]
pub(crate) mod deadline;
pub(crate) mod keep_alive;
mod socket_writer;
mod stream;

pub use connection::Connection;
#[doc(hidden)]
pub use datagram::DatagramView;
pub use datagram::{Datagram, DatagramOptions, DatagramRequest, Packet};
pub use socket_writer::SocketWriter;
pub use stream::{Stream, StreamOptions, StreamRequest};

use std::io;
use std::os::fd::BorrowedFd;
use std::panic::{self, AssertUnwindSafe};

use crate::mixin::MixIn;
use crate::{Address, Refusal, Server, Transport};

/// The kind of request a handler takes: [`Stream`] or [`Datagram`]. What
/// happens to a request between `get_request` and the handler (and after
/// it) is written once per kind, here, not once per transport.
///
/// Sealed: the crate's servers produce only these two.
pub trait RequestKind: private::Sealed + Send + Sync + 'static {
    /// What the handler works with: [`StreamRequest`] or [`DatagramRequest`].
    type Request<'a>;
    /// The handler's class attributes for this kind: [`StreamOptions`] or
    /// [`DatagramOptions`].
    type Options: Default + Clone + std::fmt::Debug;
    /// A transport's request as this kind sees it: a [`Connection`], or a
    /// datagram and the socket to reply on.
    #[doc(hidden)]
    type View<'a>: Copy;

    /// Python's `finish_request`: runs `server`'s handler on the request.
    #[doc(hidden)]
    fn finish_request<T: Transport<Kind = Self>, M: MixIn>(
        server: &Server<T, M>,
        view: Self::View<'_>,
        client_address: Address,
    ) -> io::Result<()>;

    /// Python's `shutdown_request` before `close_request`: for a stream,
    /// shut down the write half; nothing for a datagram.
    #[doc(hidden)]
    fn shutdown_request(view: Self::View<'_>);

    /// The descriptor that becomes readable when the client has sent
    /// something: the connection for streams, none for datagrams.
    #[doc(hidden)]
    fn readiness<'a>(view: Self::View<'a>) -> Option<BorrowedFd<'a>>;

    /// The kind's own finish, run after the handler's: flush `wfile`
    /// (stream) or send it (datagram).
    #[doc(hidden)]
    fn send_reply(request: &mut Self::Request<'_>) -> io::Result<()>;

    /// Tells `handler` its request is refused ([`RequestHandler::refused`]).
    #[doc(hidden)]
    fn refused(handler: &dyn RequestHandler<Self>, view: Self::View<'_>, reason: Refusal);
}

/// A request handler: Python's `BaseRequestHandler` and its two subclasses.
///
/// Python creates one handler object per request and calls `setup()`,
/// `handle()` and `finish()` on it. Rust keeps one handler value per server
/// and passes each request, with its `rfile`, `wfile` and `client_address`,
/// to those methods. Per-request state lives in locals of `handle`; state
/// shared between requests lives in the handler's fields (behind a lock or an
/// atomic, since requests may run on several threads at once).
///
/// | Python | Rust |
/// |---|---|
/// | `class H(StreamRequestHandler)` | `impl RequestHandler for H` (the kind defaults to [`Stream`]) |
/// | `class H(DatagramRequestHandler)` | `impl RequestHandler<Datagram> for H` |
/// | `self.rfile`, `self.wfile`, `self.client_address` | `request.rfile`, `request.wfile`, `request.client_address` |
/// | `self.request` / `self.connection` | `request.connection` ([`Connection`]) |
/// | `self.server.shutdown()` | `request.server.shutdown()` ([`ServerHandle`](crate::ServerHandle)) |
/// | `timeout = 5`, `disable_nagle_algorithm = True`, `rbufsize`, `wbufsize` | [`options`](RequestHandler::options) returning [`StreamOptions`] |
///
/// A closure taking `&mut StreamRequest` or `&mut DatagramRequest` is a
/// handler too, for the simple case. Write its parameter's type
/// (`|request: &mut StreamRequest<'_>|`): a closure is a handler of either
/// kind, so Rust cannot infer it from the server (error E0282, "type
/// annotations needed").
///
/// # Example
///
/// ```
/// use socketserver::{RequestHandler, StreamRequest};
/// use std::io::{self, BufRead, Write};
///
/// /// Python: `class Upper(socketserver.StreamRequestHandler)`.
/// struct Upper;
///
/// impl RequestHandler for Upper {
///     fn handle(&self, request: &mut StreamRequest<'_>) -> io::Result<()> {
///         let mut line = Vec::new();
///         request.rfile.read_until(b'\n', &mut line)?;
///         request.wfile.write_all(&line.to_ascii_uppercase())
///     }
/// }
///
/// // The closure form of the same handler.
/// let upper = |request: &mut StreamRequest<'_>| -> io::Result<()> {
///     let mut line = Vec::new();
///     request.rfile.read_until(b'\n', &mut line)?;
///     request.wfile.write_all(&line.to_ascii_uppercase())
/// };
/// # fn is_handler(_: &impl RequestHandler) {}
/// # is_handler(&Upper);
/// # is_handler(&upper);
/// ```
pub trait RequestHandler<K: RequestKind = Stream>: Send + Sync + 'static {
    /// Called before [`handle`](RequestHandler::handle). If it fails, neither
    /// `handle` nor `finish` runs (as in Python).
    ///
    /// Defaults to doing nothing: the request's `rfile` and `wfile` are
    /// already made, with [`options`](RequestHandler::options) applied.
    fn setup(&self, request: &mut K::Request<'_>) -> io::Result<()> {
        let _ = request;
        Ok(())
    }

    /// Services the request. Must be overridden.
    fn handle(&self, request: &mut K::Request<'_>) -> io::Result<()>;

    /// Called after [`handle`](RequestHandler::handle), even when it failed or
    /// panicked. The kind's own finish (flush `wfile`, or send the datagram
    /// reply) runs after it whatever this returns.
    ///
    /// Defaults to doing nothing.
    fn finish(&self, request: &mut K::Request<'_>) -> io::Result<()> {
        let _ = request;
        Ok(())
    }

    /// Called instead of `setup`, `handle` and `finish` when the server
    /// refuses the request before the handler runs (not in Python): a
    /// connection beyond [`Server::max_connections`](crate::Server::max_connections)
    /// or [`Server::max_per_ip`](crate::Server::max_per_ip), or a full
    /// [`ThreadPoolMixIn`](crate::ThreadPoolMixIn) under
    /// [`Overload::Reject`](crate::mixin::Overload::Reject); `reason` says
    /// which. A handler that speaks a protocol says "busy" in it here (the
    /// HTTP handlers answer 503); the connection is closed after.
    ///
    /// `connection` is the client's stream, nothing read from it yet
    /// (`None` for a datagram). It runs on the serving thread: write
    /// little, and never wait for the client (send with `MSG_DONTWAIT`). A
    /// server with [`tls`](crate::Server::tls) does not call it: no
    /// handshake has happened. Called by the default
    /// [`BaseServer::reject_request`](crate::BaseServer::reject_request).
    ///
    /// Defaults to doing nothing.
    fn refused(&self, connection: Option<Connection<'_>>, reason: Refusal) {
        let _ = (connection, reason);
    }

    /// Python's class attributes of the handler (`timeout`, `rbufsize`,
    /// `wbufsize`, `disable_nagle_algorithm` for stream handlers), read once
    /// per request before `setup`.
    ///
    /// Defaults to `K::Options::default()`: see [`StreamOptions`].
    fn options(&self) -> K::Options {
        K::Options::default()
    }
}

impl<F> RequestHandler<Stream> for F
where
    F: Fn(&mut StreamRequest<'_>) -> io::Result<()> + Send + Sync + 'static,
{
    fn handle(&self, request: &mut StreamRequest<'_>) -> io::Result<()> {
        self(request)
    }
}

impl<F> RequestHandler<Datagram> for F
where
    F: Fn(&mut DatagramRequest<'_>) -> io::Result<()> + Send + Sync + 'static,
{
    fn handle(&self, request: &mut DatagramRequest<'_>) -> io::Result<()> {
        self(request)
    }
}

/// Python's `BaseRequestHandler.__init__`: `setup()`, then `try: handle()
/// finally: finish()`, then the kind's own finish. The first error wins.
pub(crate) fn run_handler<K: RequestKind>(
    handler: &dyn RequestHandler<K>,
    request: &mut K::Request<'_>,
) -> io::Result<()> {
    handler.setup(request)?;
    // A panic in `handle` is Python's exception in `handle`: `finish` still
    // runs, then the panic goes on to the server's catch (crate::panic).
    let handled = panic::catch_unwind(AssertUnwindSafe(|| handler.handle(request)));
    let finished = handler.finish(request);
    let flushed = K::send_reply(request);
    match handled {
        Ok(result) => result.and(finished).and(flushed),
        Err(payload) => panic::resume_unwind(payload),
    }
}

mod private {
    pub trait Sealed {}
    impl Sealed for super::Stream {}
    impl Sealed for super::Datagram {}
}
