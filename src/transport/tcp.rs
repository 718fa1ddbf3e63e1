//! [`Tcp`]: Python's `TCPServer`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use socket2::{Domain, SockRef, Socket, Type};

use super::{bind_inet, check_inherited, BindOptions, Transport};
use crate::handler::{Connection, Stream};

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

    #[cfg(feature = "systemd")]
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

    fn view(request: &TcpStream) -> Connection<'_> {
        Connection::Tcp(request)
    }
}
