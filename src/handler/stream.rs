//! Stream requests: Python's `StreamRequestHandler` and `_SocketWriter`.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::{RequestHandler, RequestKind};
use crate::suspend::{self, Interest};
use crate::{Address, ServerHandle};

/// The stream kind of request (TCP and Unix stream servers):
/// `RequestHandler<Stream>` is Python's `StreamRequestHandler`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stream;

impl RequestKind for Stream {
    type Request<'a> = StreamRequest<'a>;
    type Options = StreamOptions;

    /// Python's `StreamRequestHandler.finish`: flush `wfile`. Unlike Python,
    /// a failed flush is reported, not swallowed: buffered bytes that never
    /// left are lost data.
    fn finish_request(request: &mut StreamRequest<'_>) -> io::Result<()> {
        request.wfile.flush()
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

/// A connected stream socket, TCP or Unix: Python's `self.request` (also
/// `self.connection`) in a stream handler.
///
/// It is `Copy`: it borrows the socket that the server owns and closes after
/// the request (`shutdown_request`).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Connection<'a> {
    /// A TCP connection.
    Tcp(&'a TcpStream),
    /// A Unix stream connection.
    Unix(&'a UnixStream),
    /// A TLS session over a TCP or Unix connection (feature `tls`).
    #[cfg(feature = "tls")]
    Tls(&'a crate::tls::TlsStream),
}

impl Connection<'_> {
    /// Python's `settimeout`: sets the read and the write timeout.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            #[cfg(feature = "tls")]
            Connection::Tls(tls) => tls.transport().set_timeout(timeout),
            Connection::Tcp(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)?;
                suspend::set_timeouts(s.as_raw_fd(), timeout, timeout);
                Ok(())
            }
            Connection::Unix(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)?;
                suspend::set_timeouts(s.as_raw_fd(), timeout, timeout);
                Ok(())
            }
        }
    }

    /// Waits until the connection is readable — data, end of file or an
    /// error for the next read to report — at most `timeout`; then fails as
    /// a read would, with [`io::ErrorKind::TimedOut`]. Under
    /// [`CoroutineMixIn`](crate::CoroutineMixIn) only the request's
    /// coroutine waits, not its thread.
    ///
    /// A handler can so put off allocating its buffers until the client has
    /// sent something: a silent connection then costs little more than its
    /// stack. A TLS session returns at once (it may hold decrypted bytes that
    /// the socket does not show); its next read waits as usual.
    ///
    /// ```
    /// # use socketserver::StreamRequest;
    /// # use std::time::Duration;
    /// fn handle(request: &mut StreamRequest<'_>) -> std::io::Result<()> {
    ///     request.connection.wait_readable(Some(Duration::from_secs(30)))?;
    ///     let mut buf = vec![0; 64 * 1024];
    ///     // ... read into buf ...
    /// #   let _ = &mut buf;
    ///     Ok(())
    /// }
    /// ```
    pub fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            #[cfg(feature = "tls")]
            Connection::Tls(_) => Ok(()),
            _ => suspend::wait_readable(self.as_fd(), timeout),
        }
    }

    /// Under [`CoroutineMixIn`](crate::CoroutineMixIn), makes the socket
    /// non-blocking, for reads and writes to suspend the coroutine.
    fn prepare_for_coroutine(&self) -> io::Result<()> {
        match self {
            _ if !suspend::in_coroutine() => Ok(()),
            Connection::Tcp(s) => s.set_nonblocking(true),
            Connection::Unix(s) => s.set_nonblocking(true),
            #[cfg(feature = "tls")]
            Connection::Tls(_) => Ok(()),
        }
    }

    /// Sets `TCP_NODELAY`; does nothing on a Unix connection.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => s.set_nodelay(nodelay),
            Connection::Unix(_) => Ok(()),
            #[cfg(feature = "tls")]
            Connection::Tls(tls) => tls.transport().set_nodelay(nodelay),
        }
    }

    /// Shuts down the reading, writing or both halves.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => s.shutdown(how),
            Connection::Unix(s) => s.shutdown(how),
            #[cfg(feature = "tls")]
            Connection::Tls(tls) => tls.transport().shutdown(how),
        }
    }

    /// The peer's address (Python's `getpeername()`).
    pub fn peer_addr(&self) -> io::Result<Address> {
        match self {
            #[cfg(feature = "tls")]
            Connection::Tls(tls) => tls.transport().peer_addr(),
            Connection::Tcp(s) => s.peer_addr().map(Address::Inet),
            Connection::Unix(s) => Ok(Address::Unix(
                s.peer_addr()?
                    .as_pathname()
                    .map(Into::into)
                    .unwrap_or_default(),
            )),
        }
    }

    /// Applies a stream handler's options: Python's `StreamRequestHandler.setup`.
    pub(crate) fn apply(&self, options: &StreamOptions) -> io::Result<()> {
        if options.timeout.is_some() {
            self.set_timeout(options.timeout)?;
        }
        if options.disable_nagle_algorithm {
            self.set_nodelay(true)?;
        }
        Ok(())
    }
}

/// A blocking socket with SO_RCVTIMEO or SO_SNDTIMEO reports a timeout as
/// EAGAIN; say what it is.
fn timed_out(err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, "timed out")
    } else {
        err
    }
}

// Plain sockets go through `suspend::io`, which under a coroutine turns
// "would block" into a wait; TLS reads and writes reach the same code through
// its transport connection.
impl Read for Connection<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match *self {
            Connection::Tcp(mut s) => {
                let len = buf.len();
                suspend::read(s.as_fd(), len, || s.read(buf))
            }
            // Not `suspend::read`: a Unix stream read may stop short at a
            // change of sender credentials (SO_PASSCRED) with more queued.
            Connection::Unix(mut s) => suspend::io(s.as_fd(), Interest::Read, || s.read(buf)),
            #[cfg(feature = "tls")]
            Connection::Tls(tls) => tls.read(buf),
        }
        .map_err(timed_out)
    }
}

impl Write for Connection<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match *self {
            Connection::Tcp(mut s) => suspend::io(s.as_fd(), Interest::Write, || s.write(buf)),
            Connection::Unix(mut s) => suspend::io(s.as_fd(), Interest::Write, || s.write(buf)),
            #[cfg(feature = "tls")]
            Connection::Tls(tls) => tls.write(buf),
        }
        .map_err(timed_out)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            #[cfg(feature = "tls")]
            Connection::Tls(tls) => tls.flush(),
            _ => Ok(()),
        }
    }
}

impl AsFd for Connection<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match *self {
            Connection::Tcp(s) => s.as_fd(),
            Connection::Unix(s) => s.as_fd(),
            #[cfg(feature = "tls")]
            Connection::Tls(tls) => tls.as_fd(),
        }
    }
}

impl AsRawFd for Connection<'_> {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// A stream handler's `wfile`: Python's `_SocketWriter` when `wbufsize` is 0
/// (the default), a buffered writer otherwise.
///
/// Unbuffered, [`write`](Write::write) sends *all* of its bytes before it
/// returns and returns their count (Python's `sendall`): a write is never
/// partial, and nothing waits for a flush. A signal arriving mid-write
/// (`EINTR`) does not cut it short. `write!(wfile, …)` formats the whole
/// text first and sends it with one write, as Python's
/// `wfile.write(f"…".encode())`.
#[derive(Debug)]
pub struct SocketWriter<'a> {
    connection: Connection<'a>,
    buffer: Vec<u8>,
    capacity: usize,
}

impl<'a> SocketWriter<'a> {
    pub(crate) fn new(connection: Connection<'a>, wbufsize: usize) -> Self {
        SocketWriter {
            connection,
            buffer: Vec::new(),
            capacity: wbufsize,
        }
    }

    /// Python's `wfile.fileno()`: the connection's descriptor.
    pub fn fileno(&self) -> RawFd {
        self.connection.as_raw_fd()
    }

    /// Bytes written but not yet sent (always 0 when `wbufsize` is 0).
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    fn send_buffer(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            self.connection.write_all(&self.buffer)?;
            self.buffer.clear();
        }
        Ok(())
    }
}

impl Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buffer.len() + buf.len() > self.capacity {
            self.send_buffer()?;
        }
        if buf.len() >= self.capacity {
            self.connection.write_all(buf)?;
        } else {
            self.buffer.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }

    /// `write!`/`writeln!` format first and write once: unbuffered, the
    /// default would send each piece of the format as its own segment.
    fn write_fmt(&mut self, args: std::fmt::Arguments<'_>) -> io::Result<()> {
        match args.as_str() {
            Some(text) => self.write_all(text.as_bytes()),
            None => self.write_all(args.to_string().as_bytes()),
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
        }
    }
}

/// What a stream server does with a connection before its handler runs:
/// read the PROXY protocol header, then the TLS handshake. Both happen on
/// the request's own thread.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct StreamSetup<'a> {
    pub(crate) proxy: crate::ProxyProtocol,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<&'a std::sync::Arc<rustls::ServerConfig>>,
    pub(crate) _server: std::marker::PhantomData<&'a ()>,
}

/// Python's `finish_request` for stream servers: the setup (PROXY header,
/// TLS handshake), the handler's options (`StreamRequestHandler.setup`),
/// then the handler; a TLS session ends with close_notify.
pub(crate) fn finish_stream_request(
    handler: &dyn RequestHandler<Stream>,
    connection: Connection<'_>,
    mut client_address: Address,
    server: &ServerHandle,
    setup: &StreamSetup<'_>,
) -> io::Result<()> {
    connection.prepare_for_coroutine()?;
    if let crate::ProxyProtocol::Required { timeout } = setup.proxy {
        if let Some(client) = crate::proxy::read_header(connection, timeout)? {
            client_address = Address::Inet(client);
        }
    }
    let options = handler.options();
    #[cfg(feature = "tls")]
    if let Some(config) = setup.tls {
        return run_tls(
            handler,
            config,
            connection,
            client_address,
            server,
            &options,
        );
    }
    run_on(handler, connection, client_address, server, &options)
}

/// The TLS branch of [`finish_stream_request`], out of line on purpose: a
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
    options: &StreamOptions,
) -> io::Result<()> {
    let timeout = options
        .timeout
        .unwrap_or(crate::tls::DEFAULT_HANDSHAKE_TIMEOUT);
    let tls = crate::tls::TlsStream::accept(config, connection, timeout)?;
    let result = run_on(
        handler,
        Connection::Tls(&tls),
        client_address,
        server,
        options,
    );
    let closed = tls.close();
    result.and(closed)
}

fn run_on(
    handler: &dyn RequestHandler<Stream>,
    connection: Connection<'_>,
    client_address: Address,
    server: &ServerHandle,
    options: &StreamOptions,
) -> io::Result<()> {
    connection.apply(options)?;
    let mut request = StreamRequest::new(connection, client_address, server, options);
    super::run_handler(handler, &mut request)
}
