//! [`Tcp`]: Python's `TCPServer`.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use socket2::{Domain, SockRef, Socket, Type};

use super::transport::{bind_inet, check_inherited, BindOptions, Transport};
use super::Server;
use crate::handler::{finish_stream_request, Connection, RequestHandler, Stream};
use crate::mixin::MixIn;
use crate::ServerHandle;

/// The TCP transport: `Server<Tcp, M>` is Python's `TCPServer` (with mix-in
/// `M`). IPv4 or IPv6, following the address it is given.
#[derive(Debug, Clone, Copy)]
pub struct Tcp;

impl Transport for Tcp {
    const CLASS: &'static str = "TCPServer";
    type Kind = Stream;
    type Socket = TcpListener;
    type Request = TcpStream;
    type Address = SocketAddr;

    fn socket(address: &SocketAddr) -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(*address), Type::STREAM, None)?;
        // Non-blocking so that a wake-up that another thread raced to (or a
        // connection reset before accept) cannot block the loop in accept().
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    }

    fn bind(
        socket: &TcpListener,
        address: &SocketAddr,
        options: BindOptions,
    ) -> io::Result<SocketAddr> {
        bind_inet(Self::CLASS, SockRef::from(socket), address, options)
    }

    fn adopt(socket: &TcpListener) -> io::Result<SocketAddr> {
        check_inherited(
            Self::CLASS,
            SockRef::from(socket),
            Type::STREAM,
            &[Domain::IPV4, Domain::IPV6],
        )?;
        socket.set_nonblocking(true)?;
        socket.local_addr()
    }

    fn take_inherited(
        fds: &mut listenfd::ListenFd,
        index: usize,
    ) -> io::Result<Option<TcpListener>> {
        fds.take_tcp_listener(index)
    }

    fn activate(socket: &TcpListener, request_queue_size: i32) -> io::Result<()> {
        SockRef::from(socket).listen(request_queue_size)
    }

    fn get_request(socket: &Arc<TcpListener>, _: usize) -> io::Result<(TcpStream, SocketAddr)> {
        // accept4(2) without SOCK_NONBLOCK: the connection is blocking, as a
        // handler expects, whatever the listener is.
        socket.accept()
    }

    fn readiness(request: &TcpStream) -> Option<BorrowedFd<'_>> {
        Some(request.as_fd())
    }

    fn shutdown_request(request: &TcpStream) {
        // Python: "explicitly shutdown; socket.close() merely releases the
        // socket and waits for GC" — and ENOTCONN when the peer left is fine.
        let _ = request.shutdown(Shutdown::Write);
    }

    fn finish_request(
        handler: &dyn RequestHandler<Stream>,
        request: &TcpStream,
        client_address: &SocketAddr,
        server: &ServerHandle,
    ) -> io::Result<()> {
        finish_stream_request(
            handler,
            Connection::Tcp(request),
            (*client_address).into(),
            server,
        )
    }
}

impl<M: MixIn + Default> Server<Tcp, M> {
    /// Python's `TCPServer(server_address, RequestHandlerClass)`: creates the
    /// socket, binds it and listens (`request_queue_size`, default SOMAXCONN).
    ///
    /// A host name resolves to its first IPv4 address if it has one (Python's
    /// `AF_INET` default), else its first address; an IPv6 literal gives an
    /// IPv6 server. Port 0 picks a free port: read it back with
    /// [`server_address`](crate::BaseServer::server_address).
    ///
    /// # Errors
    ///
    /// An error naming the address and the cause (address in use, permission
    /// denied below port 1024, …). The socket is closed on failure.
    ///
    /// ```
    /// use socketserver::{BaseServer, StreamRequest, TCPServer};
    /// let server = TCPServer::new("127.0.0.1:0", |_: &mut StreamRequest<'_>| Ok(()))?;
    /// assert_ne!(server.server_address().port(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(
        server_address: impl ToSocketAddrs,
        handler: impl RequestHandler<Stream>,
    ) -> io::Result<Self> {
        let server = Self::unbound(server_address, handler)?;
        crate::BaseServer::bind_and_activate(&server)?;
        Ok(server)
    }

    /// Python's `TCPServer(..., bind_and_activate=False)`: creates the socket
    /// only, so that attributes (`allow_reuse_address`, `request_queue_size`,
    /// …) can be set before [`bind_and_activate`](crate::BaseServer::bind_and_activate).
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
        server_address: impl ToSocketAddrs,
        handler: impl RequestHandler<Stream>,
    ) -> io::Result<Self> {
        let address = super::transport::resolve(Tcp::CLASS, server_address)?;
        Server::create(address, Box::new(handler))
    }
}
