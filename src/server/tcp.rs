//! [`Tcp`]: Python's `TCPServer`.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use socket2::{Domain, SockRef, Socket, Type};

use super::transport::{bind_inet, check_inherited, BindOptions, Transport};
use crate::handler::{finish_stream_request, Connection, RequestHandler, Stream, StreamSetup};
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
        setup: &StreamSetup<'_>,
    ) -> io::Result<()> {
        finish_stream_request(
            handler,
            Connection::Tcp(request),
            (*client_address).into(),
            server,
            setup,
        )
    }
}
