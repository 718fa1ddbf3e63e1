//! [`Transport`]: what differs between TCP, UDP, Unix stream and Unix
//! datagram servers — Python's `TCPServer`/`UDPServer` method overrides and
//! `address_family`/`socket_type` attributes.

use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;

use socket2::SockRef;

use crate::error::bind_error;
use crate::handler::RequestKind;
use crate::Address;

mod tcp;
mod udp;
mod unix_datagram;
mod unix_stream;

pub use tcp::Tcp;
pub use udp::Udp;
pub use unix_datagram::UnixDgram;
pub use unix_stream::Unix;

/// One kind of server socket: [`Tcp`](crate::Tcp), [`Udp`](crate::Udp),
/// [`Unix`](crate::Unix) or [`UnixDgram`](crate::UnixDgram).
///
/// Sealed: its methods are the crate's own. What a user can change is the
/// [`BaseServer`](crate::BaseServer) hooks that call them.
pub trait Transport: private::Sealed + Send + Sync + Sized + 'static {
    /// Python's class name, for messages: `"TCPServer"`, `"UDPServer"`, …
    const CLASS: &'static str;
    /// The kind of handler it runs: [`Stream`](crate::Stream) or
    /// [`Datagram`](crate::Datagram).
    type Kind: RequestKind;
    /// The listening socket (`TcpListener`, `UdpSocket`, …).
    type Socket: AsFd + From<std::os::fd::OwnedFd> + Send + Sync + 'static;
    /// What `get_request` returns (Python's `request`): a connected stream,
    /// or a [`Packet`](crate::Packet).
    type Request: Send + 'static;
    /// Server and client addresses: `SocketAddr`, or `PathBuf` for Unix.
    type Address: Clone + Into<Address> + fmt::Debug + Send + Sync + 'static;

    #[doc(hidden)]
    fn socket(address: &Self::Address) -> io::Result<Self::Socket>;
    #[doc(hidden)]
    fn bind(
        socket: &Self::Socket,
        address: &Self::Address,
        options: BindOptions,
    ) -> io::Result<Self::Address>;
    /// Checks that an inherited socket is of this transport's kind (and,
    /// for a stream, listening), sets it up as `socket` would have, and
    /// returns its address.
    #[doc(hidden)]
    fn adopt(socket: &Self::Socket) -> io::Result<Self::Address>;
    /// Takes socket `index` passed by systemd (LISTEN_FDS).
    #[doc(hidden)]
    #[cfg(feature = "systemd")]
    fn take_inherited(
        fds: &mut listenfd::ListenFd,
        index: usize,
    ) -> io::Result<Option<Self::Socket>>;
    #[doc(hidden)]
    fn activate(socket: &Self::Socket, request_queue_size: i32) -> io::Result<()>;
    #[doc(hidden)]
    fn get_request(
        socket: &Arc<Self::Socket>,
        max_packet_size: usize,
    ) -> io::Result<(Self::Request, Self::Address)>;
    /// The request as its kind's glue sees it (a [`Connection`](crate::Connection)
    /// for streams): everything after `get_request` is written once per
    /// kind, not once per transport.
    #[doc(hidden)]
    fn view(request: &Self::Request) -> <Self::Kind as RequestKind>::View<'_>;
    /// The file `bind` creates (a Unix socket's path), to remove on close.
    #[doc(hidden)]
    fn socket_file(address: &Self::Address) -> Option<&std::path::Path> {
        let _ = address;
        None
    }
}

/// The attributes `server_bind` applies before `bind(2)`.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct BindOptions {
    pub(crate) reuse_address: bool,
    pub(crate) reuse_port: bool,
    pub(crate) dual_stack: bool,
}

/// `server_bind` for Internet sockets: SO_REUSEADDR and SO_REUSEPORT as
/// asked, IPV6_V6ONLY off for a dual-stack IPv6 socket, `bind(2)`, then the
/// real address (port 0 resolved).
pub(crate) fn bind_inet(
    class: &str,
    socket: SockRef<'_>,
    address: &std::net::SocketAddr,
    options: BindOptions,
) -> io::Result<std::net::SocketAddr> {
    let fail = |err| bind_error(class, address, err);
    socket
        .set_reuse_address(options.reuse_address)
        .map_err(fail)?;
    if options.reuse_port {
        socket.set_reuse_port(true).map_err(fail)?;
    }
    if options.dual_stack && address.is_ipv6() {
        socket.set_only_v6(false).map_err(fail)?;
    }
    socket.bind(&(*address).into()).map_err(fail)?;
    socket
        .local_addr()
        .map_err(fail)?
        .as_socket()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "bound address is not an Internet address",
            )
        })
}

/// `server_bind` for Unix sockets. SO_REUSEPORT is never set on them (Linux
/// 6.12.9 rejects it: CPython gh-128916), and SO_REUSEADDR means nothing
/// there. A path that exists already is refused, naming the path.
pub(crate) fn bind_unix(class: &str, socket: SockRef<'_>, path: &Path) -> io::Result<()> {
    let address =
        socket2::SockAddr::unix(path).map_err(|err| bind_error(class, &path.display(), err))?;
    socket.bind(&address).map_err(|err| {
        if err.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                err.kind(),
                format!(
                    "{class} could not bind {}: the file exists already — another server is \
                     using it, or an earlier run left it behind (remove it if stale) ({err})",
                    path.display()
                ),
            )
        } else {
            bind_error(class, &path.display(), err)
        }
    })
}

mod private {
    pub trait Sealed {}
    impl Sealed for crate::Tcp {}
    impl Sealed for crate::Udp {}
    impl Sealed for crate::Unix {}
    impl Sealed for crate::UnixDgram {}
}

/// Resolves a bind address: a host name gives its first IPv4 address if it
/// has one (Python's `AF_INET` default), else its first address.
pub(crate) fn resolve(
    class: &str,
    address: impl std::net::ToSocketAddrs,
) -> io::Result<std::net::SocketAddr> {
    let candidates: Vec<_> = address
        .to_socket_addrs()
        .map_err(|err| io::Error::new(err.kind(), format!("{class}: bad server address: {err}")))?
        .collect();
    candidates
        .iter()
        .find(|a| a.is_ipv4())
        .or(candidates.first())
        .copied()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{class}: the server address resolved to nothing"),
            )
        })
}

/// recvfrom(2) with MSG_DONTWAIT, for datagram servers. Their sockets stay
/// blocking, so that a reply waits for room as Python's does (a Unix
/// datagram client that reads slowly would otherwise get EAGAIN), while the
/// loop's read, made after poll(2) said ready, still never blocks. At most
/// `max_packet_size` bytes are kept; the rest of a longer datagram is dropped
/// by the kernel, as Python's `recvfrom(max_packet_size)`.
pub(crate) fn recv_datagram<A: nix::sys::socket::SockaddrLike>(
    socket: &impl AsFd,
    max_packet_size: usize,
) -> io::Result<(Vec<u8>, A)> {
    use nix::sys::socket::{recvmsg, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut data = vec![0; max_packet_size];
    let (len, address) = {
        let mut iov = [io::IoSliceMut::new(&mut data)];
        let message = recvmsg::<A>(
            socket.as_fd().as_raw_fd(),
            &mut iov,
            None,
            MsgFlags::MSG_DONTWAIT,
        )?;
        (message.bytes, message.address)
    };
    data.truncate(len);
    let address =
        address.ok_or_else(|| io::Error::other("a datagram came with no sender address"))?;
    Ok((data, address))
}

/// `adopt` for Unix sockets of either type: checked as
/// [`check_inherited`] does, made (non-)blocking as the transport's own
/// sockets are, and its path (empty for an unnamed socket) returned.
pub(crate) fn adopt_unix(
    class: &str,
    socket: &impl AsFd,
    kind: socket2::Type,
    nonblocking: bool,
) -> io::Result<std::path::PathBuf> {
    check_inherited(class, SockRef::from(socket), kind, &[socket2::Domain::UNIX])?;
    let socket = SockRef::from(socket);
    socket.set_nonblocking(nonblocking)?;
    let address = socket.local_addr()?;
    Ok(address
        .as_pathname()
        .map(Path::to_path_buf)
        .unwrap_or_default())
}

/// Checks an inherited socket's type, family and (for streams) that it
/// listens, so that a wrong descriptor fails here, clearly, rather than at
/// the first accept.
pub(crate) fn check_inherited(
    class: &str,
    socket: SockRef<'_>,
    kind: socket2::Type,
    families: &[socket2::Domain],
) -> io::Result<()> {
    let wrong = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{class}: the inherited socket {what}"),
        )
    };
    let actual = socket.r#type()?;
    if actual != kind {
        return Err(wrong(format!("is of type {actual:?}, not {kind:?}")));
    }
    let domain = socket.domain()?;
    if !families.contains(&domain) {
        return Err(wrong(format!("is of family {domain:?}, not {families:?}")));
    }
    if kind == socket2::Type::STREAM && !socket.is_listener()? {
        return Err(wrong("is not listening (call listen first)".into()));
    }
    Ok(())
}

/// What a server's address may be given as: for TCP and UDP a
/// `"host:port"` string, a `(host, port)` pair or a socket address
/// (`"127.0.0.1:0"`, `("localhost", 8080)`, `("", 8000)` — Python's every
/// interface, as is `":8000"` — `([127, 0, 0, 1], 0)`, a `SocketAddr`); a
/// path for Unix sockets.
pub trait ServerAddress<T: Transport> {
    /// The address to bind, or an error naming what is wrong with it.
    fn server_address(self) -> io::Result<T::Address>;
}

/// Python's empty host, `("", 8000)`: every interface (INADDR_ANY).
fn any_host(host: &str) -> &str {
    if host.is_empty() {
        "0.0.0.0"
    } else {
        host
    }
}

/// `"host:port"` with Python's empty host: `":8000"` is every interface.
fn resolve_str(class: &str, address: &str) -> io::Result<std::net::SocketAddr> {
    match address.strip_prefix(':') {
        Some(port) => resolve(class, format!("0.0.0.0:{port}").as_str()),
        None => resolve(class, address),
    }
}

/// The Internet address forms, for TCP and UDP alike: a `"host:port"`
/// string, a `(host, port)` pair (Python's tuple, `""` meaning every
/// interface), or a socket address.
macro_rules! inet_server_address {
    ($($transport:ty),*) => {$(
        impl ServerAddress<$transport> for &str {
            fn server_address(self) -> io::Result<std::net::SocketAddr> {
                resolve_str(<$transport>::CLASS, self)
            }
        }
        impl ServerAddress<$transport> for String {
            fn server_address(self) -> io::Result<std::net::SocketAddr> {
                resolve_str(<$transport>::CLASS, &self)
            }
        }
        impl ServerAddress<$transport> for &String {
            fn server_address(self) -> io::Result<std::net::SocketAddr> {
                resolve_str(<$transport>::CLASS, self)
            }
        }
        impl ServerAddress<$transport> for (&str, u16) {
            fn server_address(self) -> io::Result<std::net::SocketAddr> {
                resolve(<$transport>::CLASS, (any_host(self.0), self.1))
            }
        }
        impl ServerAddress<$transport> for (String, u16) {
            fn server_address(self) -> io::Result<std::net::SocketAddr> {
                resolve(<$transport>::CLASS, (any_host(&self.0), self.1))
            }
        }
        socket_address!($transport:
            std::net::SocketAddr, std::net::SocketAddrV4, std::net::SocketAddrV6,
            (std::net::IpAddr, u16), (std::net::Ipv4Addr, u16), (std::net::Ipv6Addr, u16),
            ([u8; 4], u16), ([u8; 16], u16), ([u16; 8], u16));
    )*};
}

/// The forms that are a socket address already: no resolving.
macro_rules! socket_address {
    ($transport:ty: $($address:ty),*) => {$(
        impl ServerAddress<$transport> for $address {
            fn server_address(self) -> io::Result<std::net::SocketAddr> {
                Ok(self.into())
            }
        }
    )*};
}

inet_server_address!(crate::Tcp, crate::Udp);

impl<P: AsRef<Path>> ServerAddress<crate::Unix> for P {
    fn server_address(self) -> io::Result<std::path::PathBuf> {
        Ok(self.as_ref().to_path_buf())
    }
}

impl<P: AsRef<Path>> ServerAddress<crate::UnixDgram> for P {
    fn server_address(self) -> io::Result<std::path::PathBuf> {
        Ok(self.as_ref().to_path_buf())
    }
}
