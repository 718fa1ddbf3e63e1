//! TLS for stream servers, on rustls (feature `tls`). Not in Python's
//! socketserver (there, `ssl.wrap_socket` in `get_request`, which does the
//! handshake on the accept thread — as tiny_http does: one slow client then
//! stalls every other). Here the handshake runs on the request's own thread
//! (its worker, its child), before the handler.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

use crate::handler::deadline::{Deadline, WithDeadline};
use crate::handler::Connection;

/// How long a TLS handshake may take when the handler sets no timeout.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A rustls server configuration from a PEM certificate chain and a PEM
/// private key (PKCS#8, PKCS#1 or SEC1), with rustls's safe defaults
/// (TLS 1.2 and 1.3, ring). Set it as a server's [`tls`](crate::Server::tls).
///
/// # Errors
///
/// A file cannot be read, holds no certificate or key, or the key does not
/// match — each naming the file.
pub fn server_config_from_pem(
    certificate_chain: impl AsRef<Path>,
    private_key: impl AsRef<Path>,
) -> io::Result<Arc<ServerConfig>> {
    let (chain, key) = (certificate_chain.as_ref(), private_key.as_ref());
    let bad = |path: &Path, what: &dyn fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("TLS: {}: {what}", path.display()),
        )
    };
    let certificates = CertificateDer::pem_file_iter(chain)
        .map_err(|e| bad(chain, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(chain, &e))?;
    if certificates.is_empty() {
        return Err(bad(chain, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|e| bad(private_key.as_ref(), &e))?;
    Ok(Arc::new(config))
}

/// A TLS session over one connection: what a handler's `rfile` and
/// `wfile` read and write through (as [`Connection::Tls`]).
pub struct TlsStream {
    session: RefCell<ServerConnection>,
    /// The connection's socket (a duplicate descriptor: the session outlives
    /// no borrow, and the server still owns and closes the original).
    socket: Socket,
}

enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream").finish_non_exhaustive()
    }
}

impl TlsStream {
    /// The handshake, within `timeout`, on the calling thread.
    pub(crate) fn accept(
        config: &Arc<ServerConfig>,
        connection: Connection<'_>,
        timeout: Duration,
    ) -> io::Result<Self> {
        let socket = match connection {
            Connection::Tcp(s) => Socket::Tcp(s.try_clone()?),
            Connection::Unix(s) => Socket::Unix(s.try_clone()?),
            Connection::Tls(_) => return Err(io::Error::other("TLS inside TLS")),
        };
        let session = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        let stream = TlsStream {
            session: RefCell::new(session),
            socket,
        };
        // The whole handshake within `timeout`: each read and write gets
        // the time left, so a client trickling its ClientHello is cut.
        let mut transport = WithDeadline {
            connection: stream.transport(),
            deadline: Deadline::after(Some(timeout)),
        };
        let mut session = stream.session.borrow_mut();
        while session.is_handshaking() {
            session
                .complete_io(&mut transport)
                .map_err(|err| match err.kind() {
                    io::ErrorKind::TimedOut => io::Error::new(
                        err.kind(),
                        format!("TLS handshake not done within {timeout:?}"),
                    ),
                    _ => io::Error::new(err.kind(), format!("TLS handshake failed: {err}")),
                })?;
        }
        drop(session);
        transport.connection.set_timeout(None)?;
        Ok(stream)
    }

    /// The connection under the TLS session.
    pub(crate) fn transport(&self) -> Connection<'_> {
        match &self.socket {
            Socket::Tcp(s) => Connection::Tcp(s),
            Socket::Unix(s) => Connection::Unix(s),
        }
    }

    fn stream<R>(
        &self,
        f: impl FnOnce(&mut rustls::Stream<'_, ServerConnection, Connection<'_>>) -> R,
    ) -> R {
        let mut session = self.session.borrow_mut();
        let mut transport = self.transport();
        f(&mut rustls::Stream::new(&mut *session, &mut transport))
    }

    /// Sends close_notify, so the client can tell an end from a cut.
    pub(crate) fn close(&self) -> io::Result<()> {
        self.session.borrow_mut().send_close_notify();
        self.flush()
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stream(|s| s.read(buf)) {
            // A client that closes without close_notify: not a clean end of
            // file, since an attacker who cuts the connection could make a
            // request or an upload look whole. Said so, as rustls does.
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the TLS peer closed the connection without close_notify: what was read may be truncated",
            )),
            result => result,
        }
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.stream(|s| s.write(buf))
    }

    pub(crate) fn flush(&self) -> io::Result<()> {
        self.stream(|s| s.flush())
    }
}

impl std::os::fd::AsFd for TlsStream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.socket {
            Socket::Tcp(s) => s.as_fd(),
            Socket::Unix(s) => s.as_fd(),
        }
    }
}
