//! [`Connection`]: a connected stream socket, TCP, Unix or TLS — what a
//! stream handler reads and writes, and where its I/O meets the coroutine
//! runtime.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::StreamOptions;
use crate::mixin::suspend::{self, Interest};
use crate::Address;

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
    pub(crate) fn prepare_for_coroutine(&self) -> io::Result<()> {
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

impl<'a> Connection<'a> {
    /// The socket's descriptor, for as long as the socket is borrowed (not
    /// only as long as this copy of the `Connection`).
    pub(crate) fn fd(self) -> BorrowedFd<'a> {
        match self {
            Connection::Tcp(s) => s.as_fd(),
            Connection::Unix(s) => s.as_fd(),
            #[cfg(feature = "tls")]
            Connection::Tls(tls) => tls.as_fd(),
        }
    }
}

impl AsFd for Connection<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }
}

impl AsRawFd for Connection<'_> {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}
