//! Datagram requests: Python's `DatagramRequestHandler`.

use std::cell::Cell;
use std::io::{self, Cursor};
use std::net::UdpSocket;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;

use nix::sys::socket::MsgFlags;
use socket2::{SockAddr, SockRef};

use super::{RequestHandler, RequestKind};
use crate::mixin::{suspend, MixIn};
use crate::{Address, Refusal, Server, ServerHandle, Transport};

/// The datagram kind of request (UDP and Unix datagram servers):
/// `RequestHandler<Datagram>` is Python's `DatagramRequestHandler`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Datagram;

impl RequestKind for Datagram {
    type Request<'a> = DatagramRequest<'a>;
    type Options = DatagramOptions;
    type View<'a> = DatagramView<'a>;

    /// Python's `finish_request` for datagram servers: run the handler over
    /// the packet, then send `wfile` back.
    fn finish_request<T: Transport<Kind = Datagram>, M: MixIn>(
        server: &Server<T, M>,
        view: DatagramView<'_>,
        client_address: Address,
    ) -> io::Result<()> {
        let handler = server.request_handler();
        let options = handler.options();
        let mut request = DatagramRequest {
            reply: options.reply,
            rfile: Cursor::new(view.data),
            wfile: Vec::new(),
            client_address,
            server: server.handle(),
            socket: view.socket,
            sent: Cell::new(false),
        };
        super::run_handler(handler, &mut request)
    }

    /// Python's `UDPServer.shutdown_request`: nothing to shut down (the
    /// socket is the server's).
    fn shutdown_request(_: DatagramView<'_>) {}

    fn refused(handler: &dyn RequestHandler<Self>, _: DatagramView<'_>, reason: Refusal) {
        handler.refused(None, reason);
    }

    fn readiness<'a>(_: Self::View<'a>) -> Option<BorrowedFd<'a>> {
        None
    }

    /// Python's `DatagramRequestHandler.finish`: send `wfile` back to the
    /// client, **even when it is empty** (the client then receives an empty
    /// datagram, exactly as from Python) — unless the handler's options say
    /// [`reply: false`](DatagramOptions::reply).
    ///
    /// An empty `wfile` is not sent when the handler already replied with
    /// [`sendto`](DatagramRequest::sendto): a ported `BaseRequestHandler`
    /// that calls `socket.sendto` sends one datagram, as in Python.
    fn send_reply(request: &mut DatagramRequest<'_>) -> io::Result<()> {
        if !request.reply || (request.wfile.is_empty() && request.sent.get()) {
            return Ok(());
        }
        request
            .socket
            .send_to_address(&request.wfile, &request.client_address)
            .map(drop)
    }
}

/// A datagram handler's options.
///
/// ```
/// use socketserver::DatagramOptions;
/// // Python's BaseRequestHandler on a UDP server: the handler replies itself
/// // (with `request.sendto`), nothing is sent after `finish`.
/// let raw = DatagramOptions { reply: false };
/// assert!(DatagramOptions::default().reply);
/// # let _ = raw;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramOptions {
    /// Send `wfile` back after `finish` (Python's `DatagramRequestHandler`).
    /// `false` is Python's plain `BaseRequestHandler` on a UDP server, whose
    /// handler calls `socket.sendto` itself — as the socketserver docs'
    /// UDP example does. Defaults to `true`.
    pub reply: bool,
}

impl Default for DatagramOptions {
    fn default() -> Self {
        DatagramOptions { reply: true }
    }
}

/// The raw request of a datagram server (Python's `(data, socket)` tuple):
/// what `get_request`, `verify_request` and `process_request` see.
#[derive(Debug)]
pub struct Packet<S> {
    data: Vec<u8>,
    socket: Arc<S>,
}

impl<S> Packet<S> {
    pub(crate) fn new(data: Vec<u8>, socket: Arc<S>) -> Self {
        Packet { data, socket }
    }

    /// The packet as the datagram glue sees it, whatever the transport.
    pub(crate) fn view(&self) -> DatagramView<'_>
    where
        S: ReplySocket,
    {
        DatagramView {
            data: &self.data,
            socket: &*self.socket,
        }
    }

    /// The datagram's bytes (at most the server's `max_packet_size`).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The server's socket, shared by every request (Python's `request[1]`).
    pub fn socket(&self) -> &S {
        &self.socket
    }
}

/// A datagram and the socket to reply on: a [`Packet`] of any transport.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct DatagramView<'a> {
    data: &'a [u8],
    socket: &'a dyn ReplySocket,
}

impl std::fmt::Debug for DatagramView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramView")
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

/// A socket a datagram reply can go out of.
pub(crate) trait ReplySocket: Send + Sync + 'static {
    /// The socket, to send on.
    fn fd(&self) -> BorrowedFd<'_>;

    /// The client address as `sendto(2)` takes it, if this socket can
    /// reach it.
    fn destination(&self, address: &Address) -> io::Result<SockAddr>;

    /// `sendto(2)` to a client address of either family. On a request's
    /// coroutine the send does not block its worker: one that would
    /// suspends the coroutine instead (`suspend::send_datagram`); the
    /// server's socket itself stays blocking for the serving thread.
    fn send_to_address(&self, data: &[u8], address: &Address) -> io::Result<usize> {
        let destination = self.destination(address)?;
        let fd = self.fd();
        let socket = SockRef::from(&fd);
        suspend::send_datagram(|nonblocking| {
            let flags = if nonblocking {
                MsgFlags::MSG_DONTWAIT.bits()
            } else {
                0
            };
            socket.send_to_with_flags(data, &destination, flags)
        })
    }
}

impl ReplySocket for UdpSocket {
    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn destination(&self, address: &Address) -> io::Result<SockAddr> {
        match address {
            Address::Inet(addr) => Ok(SockAddr::from(*addr)),
            Address::Unix(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a UDP socket cannot send to a Unix address",
            )),
        }
    }
}

impl ReplySocket for UnixDatagram {
    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn destination(&self, address: &Address) -> io::Result<SockAddr> {
        match address {
            Address::Unix(path) if !path.as_os_str().is_empty() => SockAddr::unix(path),
            Address::Unix(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot reply to an unnamed Unix datagram client: the client must bind a path",
            )),
            Address::Inet(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a Unix datagram socket cannot send to an Internet address",
            )),
        }
    }
}

/// One datagram request, as a datagram handler sees it: Python's
/// `DatagramRequestHandler` instance attributes.
#[non_exhaustive]
pub struct DatagramRequest<'a> {
    /// The datagram's bytes, to read (Python's `self.rfile`, a `BytesIO`).
    pub rfile: Cursor<&'a [u8]>,
    /// The reply, sent as one datagram after `finish` (Python's `self.wfile`).
    pub wfile: Vec<u8>,
    /// The client's address (Python's `self.client_address`).
    pub client_address: Address,
    /// The server that received the datagram (Python's `self.server`).
    pub server: &'a ServerHandle,
    socket: &'a dyn ReplySocket,
    reply: bool,
    /// Whether `sendto` sent something.
    sent: Cell<bool>,
}

impl DatagramRequest<'_> {
    /// The datagram's bytes, whole (Python's `self.request[0]`).
    pub fn packet(&self) -> &[u8] {
        self.rfile.get_ref()
    }

    /// Sends one more datagram to `address` from the server's socket
    /// (Python's `self.request[1].sendto(data, address)`).
    pub fn sendto(&self, data: &[u8], address: &Address) -> io::Result<usize> {
        let sent = self.socket.send_to_address(data, address)?;
        self.sent.set(true);
        Ok(sent)
    }
}

impl std::fmt::Debug for DatagramRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramRequest")
            .field("rfile", &self.rfile)
            .field("wfile", &self.wfile)
            .field("client_address", &self.client_address)
            .finish_non_exhaustive()
    }
}
