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

mod datagram;
mod stream;

pub(crate) use datagram::finish_datagram_request;
pub use datagram::{Datagram, DatagramOptions, DatagramRequest, Packet};
pub(crate) use stream::finish_stream_request;
#[doc(hidden)]
pub use stream::StreamSetup;
pub use stream::{Connection, SocketWriter, Stream, StreamOptions, StreamRequest};

use std::io;
use std::panic::{self, AssertUnwindSafe};

/// The kind of request a handler takes: [`Stream`] or [`Datagram`].
///
/// Sealed: the crate's servers produce only these two.
pub trait RequestKind: private::Sealed + Send + Sync + 'static {
    /// What the handler works with: [`StreamRequest`] or [`DatagramRequest`].
    type Request<'a>;
    /// The handler's class attributes for this kind: [`StreamOptions`] or
    /// [`DatagramOptions`].
    type Options: Default + Clone + std::fmt::Debug;

    /// The kind's own `finish`, run after the handler's: flush `wfile`
    /// (stream) or send it (datagram).
    #[doc(hidden)]
    fn finish_request(request: &mut Self::Request<'_>) -> io::Result<()>;
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
/// handler too, for the simple case.
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
    let flushed = K::finish_request(request);
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
