//! [`Address`]: a client or server address of any family, as handlers see it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// A client or server address of any family: what a handler sees as
/// `client_address`.
///
/// Python gives a `(host, port)` tuple for Internet sockets and a path string
/// for Unix sockets (`''` when the peer never bound one). Rust keeps both in
/// one enum so that one handler serves TCP and Unix servers alike, as a Python
/// `StreamRequestHandler` does.
///
/// ```
/// use socketserver::Address;
/// let a = Address::from("127.0.0.1:8080".parse::<std::net::SocketAddr>().unwrap());
/// assert_eq!(a.to_string(), "127.0.0.1:8080");
/// assert_eq!(a.as_inet().unwrap().port(), 8080);
/// let u = Address::from(std::path::PathBuf::new());
/// assert_eq!(u.to_string(), "(unnamed)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// An IPv4 or IPv6 address and port (Python's `AF_INET`/`AF_INET6` tuple).
    Inet(SocketAddr),
    /// A Unix socket path (Python's `AF_UNIX` string); empty when the peer is
    /// unnamed, as Python's `''`.
    Unix(PathBuf),
}

impl Address {
    /// The Internet address, if this is one.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            Address::Inet(addr) => Some(*addr),
            Address::Unix(_) => None,
        }
    }

    /// The IP address, for an Internet address: Python's
    /// `client_address[0]` on a TCP or UDP server.
    ///
    /// ```
    /// use socketserver::Address;
    /// let a = Address::from("127.0.0.1:8080".parse::<std::net::SocketAddr>().unwrap());
    /// assert_eq!(a.ip(), Some([127, 0, 0, 1].into()));
    /// assert_eq!(a.port(), Some(8080));
    /// ```
    pub fn ip(&self) -> Option<IpAddr> {
        self.as_inet().map(|addr| addr.ip())
    }

    /// The port, for an Internet address: Python's `client_address[1]`.
    pub fn port(&self) -> Option<u16> {
        self.as_inet().map(|addr| addr.port())
    }

    /// The Unix socket path, if this is one (empty for an unnamed peer).
    pub fn as_unix(&self) -> Option<&Path> {
        match self {
            Address::Unix(path) => Some(path),
            Address::Inet(_) => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Inet(addr) => addr.fmt(f),
            Address::Unix(path) if path.as_os_str().is_empty() => f.write_str("(unnamed)"),
            Address::Unix(path) => path.display().fmt(f),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address::Inet(addr)
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Self {
        Address::Unix(path)
    }
}
