//! [`HTTPServer`]: Python's `HTTPServer(socketserver.TCPServer)`, its
//! threading and HTTPS variants, and any other mix-in through `M`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};

use super::adapter::HTTPHandler;
use super::handler::BaseHTTPRequestHandler;
use crate::mixin::MixIn;
use crate::{BaseServer, Server, ServerAddress, Synchronous, Tcp, ThreadingMixIn};

/// What `server_bind` records, shared with the handler (Python's
/// `self.server.server_name`): set once, after binding.
#[derive(Debug, Default)]
pub(crate) struct ServerName {
    name: OnceLock<String>,
    port: OnceLock<u16>,
}

impl ServerName {
    pub(crate) fn server_name(&self) -> &str {
        self.name.get().map_or("", String::as_str)
    }

    pub(crate) fn server_port(&self) -> u16 {
        self.port.get().copied().unwrap_or(0)
    }
}

/// Python's `HTTPServer`: a TCP server (with mix-in `M`) that serves a
/// [`BaseHTTPRequestHandler`]. It sets `allow_reuse_address` and, once
/// bound, records [`server_name`](HTTPServer::server_name) and
/// [`server_port`](HTTPServer::server_port), as Python's `server_bind`
/// override does.
///
/// It dereferences to the [`Server<Tcp, M>`](Server) it wraps, for the
/// settings (`server.mixin.workers`, `server.tls`, …), and implements
/// [`BaseServer`]: `serve_forever`, `shutdown`, `server_close` as on any
/// server. [`into_base`](HTTPServer::into_base) hands the plain server
/// to code written for `Server<Tcp, M>`.
///
/// ```
/// use socketserver::http::{BaseHTTPRequestHandler, HTTPRequest, ThreadingHTTPServer};
/// use socketserver::BaseServer;
/// use std::io::{Read, Write};
/// use std::sync::Arc;
///
/// struct Hello;
/// impl BaseHTTPRequestHandler for Hello {
///     fn do_GET(&self, request: &mut HTTPRequest<'_>) -> std::io::Result<()> {
///         request.send_response(200)?;
///         request.send_header("Content-Length", 6)?;
///         request.end_headers();
///         request.wfile.write_all(b"hello\n")
///     }
///     fn log_message(&self, _: &HTTPRequest<'_>, _: std::fmt::Arguments<'_>) {}
/// }
///
/// let server = Arc::new(ThreadingHTTPServer::new("127.0.0.1:0", Hello)?);
/// assert_eq!(server.server_name(), "localhost");
/// let serving = std::thread::spawn({
///     let server = Arc::clone(&server);
///     move || server.serve_forever(None)
/// });
/// let mut client = std::net::TcpStream::connect(server.server_address())?;
/// client.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
/// let mut reply = String::new();
/// client.read_to_string(&mut reply)?;
/// assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"));
/// assert!(reply.ends_with("\r\n\r\nhello\n"));
/// server.shutdown()?;
/// serving.join().unwrap()?;
/// server.server_close();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct HTTPServer<M: MixIn = Synchronous> {
    base: Server<Tcp, M>,
    names: Arc<ServerName>,
}

/// Python's `ThreadingHTTPServer`: a thread per connection.
pub type ThreadingHTTPServer = HTTPServer<ThreadingMixIn>;

/// Python 3.14's `HTTPSServer`: an [`HTTPServer`] whose `tls` is set;
/// make it with [`HTTPServer::new_tls`]. Feature `tls`.
#[cfg(feature = "tls")]
pub type HTTPSServer<M = Synchronous> = HTTPServer<M>;

/// Python 3.14's `ThreadingHTTPSServer`. Feature `tls`.
#[cfg(feature = "tls")]
pub type ThreadingHTTPSServer = HTTPServer<ThreadingMixIn>;

impl<M: MixIn + Default> HTTPServer<M> {
    /// Python's `HTTPServer(server_address, RequestHandlerClass)`: binds
    /// (with SO_REUSEADDR) and listens.
    pub fn new(
        server_address: impl ServerAddress<Tcp>,
        handler: impl BaseHTTPRequestHandler,
    ) -> io::Result<Self> {
        let server = Self::unbound(server_address, handler)?;
        server.bind_and_activate()?;
        Ok(server)
    }

    /// Python's `bind_and_activate=False`: set attributes through
    /// `DerefMut`, then call
    /// [`bind_and_activate`](BaseServer::bind_and_activate).
    pub fn unbound(
        server_address: impl ServerAddress<Tcp>,
        handler: impl BaseHTTPRequestHandler,
    ) -> io::Result<Self> {
        let handler = HTTPHandler::new(handler);
        let names = Arc::clone(&handler.names);
        let mut base = Server::unbound(server_address, handler)?;
        base.allow_reuse_address = true; // Python: allow_reuse_address = 1
        Ok(HTTPServer { base, names })
    }

    /// Python 3.14's `HTTPSServer(server_address, handler, certfile=…,
    /// keyfile=…)`: serves HTTPS, with a rustls configuration such as
    /// [`tls::server_config_from_pem`](crate::tls::server_config_from_pem)
    /// makes. Feature `tls`.
    #[cfg(feature = "tls")]
    pub fn new_tls(
        server_address: impl ServerAddress<Tcp>,
        handler: impl BaseHTTPRequestHandler,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<Self> {
        let mut server = Self::unbound(server_address, handler)?;
        server.base.tls = Some(config);
        server.bind_and_activate()?;
        Ok(server)
    }
}

impl<M: MixIn> HTTPServer<M> {
    /// Python's `server_name`: the host the server is bound to
    /// (`localhost` for a loopback address; Python asks `getfqdn`, a DNS
    /// lookup this does not make). Empty before binding.
    pub fn server_name(&self) -> &str {
        self.names.server_name()
    }

    /// Python's `server_port`: the port bound to (the real one for port 0).
    pub fn server_port(&self) -> u16 {
        self.names.server_port()
    }

    /// The plain `Server<Tcp, M>` (its handler still serves HTTP, and still
    /// knows the server's name).
    pub fn into_base(self) -> Server<Tcp, M> {
        self.base
    }
}

impl<M: MixIn> Deref for HTTPServer<M> {
    type Target = Server<Tcp, M>;
    fn deref(&self) -> &Server<Tcp, M> {
        &self.base
    }
}

impl<M: MixIn> DerefMut for HTTPServer<M> {
    fn deref_mut(&mut self) -> &mut Server<Tcp, M> {
        &mut self.base
    }
}

impl<M: MixIn> BaseServer for HTTPServer<M> {
    type Transport = Tcp;
    type MixIn = M;
    fn base(&self) -> &Server<Tcp, M> {
        &self.base
    }

    /// Python's `HTTPServer.server_bind`: binds, then records
    /// `server_name` and `server_port`.
    fn server_bind(&self) -> io::Result<()> {
        self.base.server_bind()?;
        let address: SocketAddr = self.server_address();
        let _ = self.names.name.set(host_name(address.ip()));
        let _ = self.names.port.set(address.port());
        Ok(())
    }
}

impl<M: MixIn + std::fmt::Debug> std::fmt::Debug for HTTPServer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HTTPServer")
            .field("base", &self.base)
            .field("server_name", &self.server_name())
            .field("server_port", &self.server_port())
            .finish()
    }
}

/// Python's `socket.getfqdn(host)` without its reverse DNS lookup.
fn host_name(host: IpAddr) -> String {
    if host.is_loopback() {
        "localhost".to_owned()
    } else {
        host.to_string()
    }
}
