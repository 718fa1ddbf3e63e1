//! [`Udp`]: Python's `UDPServer`.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;

use nix::sys::socket::SockaddrStorage;
use socket2::{Domain, SockRef, Socket, Type};

use super::transport::{bind_inet, check_inherited, recv_datagram, BindOptions, Transport};
use super::Server;
use crate::handler::{finish_datagram_request, Datagram, Packet, RequestHandler};
use crate::mixin::MixIn;
use crate::ServerHandle;

/// The UDP transport: `Server<Udp, M>` is Python's `UDPServer`.
#[derive(Debug, Clone, Copy)]
pub struct Udp;

impl Transport for Udp {
    const CLASS: &'static str = "UDPServer";
    type Kind = Datagram;
    type Socket = UdpSocket;
    type Request = Packet<UdpSocket>;
    type Address = SocketAddr;

    fn socket(address: &SocketAddr) -> io::Result<UdpSocket> {
        // Blocking: see recv_datagram.
        Ok(Socket::new(Domain::for_address(*address), Type::DGRAM, None)?.into())
    }

    fn bind(
        socket: &UdpSocket,
        address: &SocketAddr,
        options: BindOptions,
    ) -> io::Result<SocketAddr> {
        bind_inet(Self::CLASS, SockRef::from(socket), address, options)
    }

    fn adopt(socket: &UdpSocket) -> io::Result<SocketAddr> {
        check_inherited(
            Self::CLASS,
            SockRef::from(socket),
            Type::DGRAM,
            &[Domain::IPV4, Domain::IPV6],
        )?;
        socket.set_nonblocking(false)?; // see recv_datagram
        socket.local_addr()
    }

    fn take_inherited(fds: &mut listenfd::ListenFd, index: usize) -> io::Result<Option<UdpSocket>> {
        fds.take_udp_socket(index)
    }

    /// Python's `UDPServer.server_activate`: nothing (no listen).
    fn activate(_: &UdpSocket, _: i32) -> io::Result<()> {
        Ok(())
    }

    fn get_request(
        socket: &Arc<UdpSocket>,
        max_packet_size: usize,
    ) -> io::Result<(Packet<UdpSocket>, SocketAddr)> {
        let (data, address) = recv_datagram::<SockaddrStorage>(&**socket, max_packet_size)?;
        let address = inet_address(&address)?;
        Ok((Packet::new(data, Arc::clone(socket)), address))
    }

    /// Python's `UDPServer.shutdown_request`: nothing to shut down.
    fn shutdown_request(_: &Packet<UdpSocket>) {}

    fn finish_request(
        handler: &dyn RequestHandler<Datagram>,
        request: &Packet<UdpSocket>,
        client_address: &SocketAddr,
        server: &ServerHandle,
    ) -> io::Result<()> {
        finish_datagram_request(handler, request, (*client_address).into(), server)
    }
}

impl<M: MixIn + Default> Server<Udp, M> {
    /// Python's `UDPServer(server_address, RequestHandlerClass)`: creates the
    /// socket and binds it.
    ///
    /// ```
    /// use socketserver::{BaseServer, DatagramRequest, UDPServer};
    /// use std::io::Write;
    /// let server = UDPServer::new("127.0.0.1:0", |r: &mut DatagramRequest<'_>| {
    ///     let upper = r.packet().to_ascii_uppercase();
    ///     r.wfile.write_all(&upper)
    /// })?;
    /// assert_eq!(server.max_packet_size, 8192);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(
        server_address: impl ToSocketAddrs,
        handler: impl RequestHandler<Datagram>,
    ) -> io::Result<Self> {
        let server = Self::unbound(server_address, handler)?;
        crate::BaseServer::bind_and_activate(&server)?;
        Ok(server)
    }

    /// Python's `UDPServer(..., bind_and_activate=False)`.
    pub fn unbound(
        server_address: impl ToSocketAddrs,
        handler: impl RequestHandler<Datagram>,
    ) -> io::Result<Self> {
        let address = super::transport::resolve(Udp::CLASS, server_address)?;
        Server::create(address, Box::new(handler))
    }
}

/// A sender's address as a `SocketAddr`.
fn inet_address(address: &SockaddrStorage) -> io::Result<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        Ok(SocketAddr::from(*v4))
    } else if let Some(v6) = address.as_sockaddr_in6() {
        Ok(SocketAddr::from(*v6))
    } else {
        Err(io::Error::other(
            "a UDP datagram came from a non-Internet address",
        ))
    }
}
