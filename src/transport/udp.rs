//! [`Udp`]: Python's `UDPServer`.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use nix::sys::socket::SockaddrStorage;
use socket2::{Domain, SockRef, Socket, Type};

use super::{bind_inet, check_inherited, recv_datagram, BindOptions, Transport};
use crate::handler::{Datagram, DatagramView, Packet};

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

    #[cfg(feature = "systemd")]
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

    fn view(request: &Packet<UdpSocket>) -> DatagramView<'_> {
        request.view()
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
