//! The PROXY protocol (v1 and v2): the real client's address, from a load
//! balancer (HAProxy, nginx's stream module, a cloud L4 balancer) that
//! speaks first on each connection. Not in Python.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use nix::sys::socket::{recv, MsgFlags};
use ppp::{v1, v2, HeaderResult};

use crate::handler::deadline::{Deadline, WithDeadline};
use crate::handler::Connection;
use crate::mixin::suspend::{self, Interest};
use crate::Address;

/// Whether a stream server expects a PROXY protocol header before each
/// connection's data. Feature `proxy` (on by default; it brings the `ppp`
/// crate).
///
/// ```
/// use socketserver::{ProxyProtocol, StreamRequest, TCPServer};
/// use std::time::Duration;
/// let mut server = TCPServer::new("127.0.0.1:0", |r: &mut StreamRequest<'_>| {
///     // r.client_address is the client's, not the balancer's
///     Ok(())
/// })?;
/// server.proxy_protocol = ProxyProtocol::Required { timeout: Duration::from_secs(5) };
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProxyProtocol {
    /// No header: `client_address` is the peer's. The default.
    #[default]
    Off,
    /// Every connection starts with a v1 or v2 header, read on the
    /// connection's own thread (never the accept loop's) within `timeout`;
    /// the handler's `client_address` is the one it carries. A connection
    /// whose header is missing, late or malformed fails (`handle_error`)
    /// and is closed before the handler runs. Accept it only from the
    /// balancer: anyone else could claim any address.
    Required {
        /// How long the header may take to arrive.
        timeout: Duration,
    },
}

impl ProxyProtocol {
    /// The client's address on `connection`, whose peer is `peer`: the one
    /// the PROXY header carries when a header is required (read here, on
    /// the connection's own thread), else `peer` — also for a health check
    /// (v1 UNKNOWN, v2 LOCAL), which carries none.
    pub(crate) fn client_address(
        self,
        connection: Connection<'_>,
        peer: Address,
    ) -> io::Result<Address> {
        match self {
            ProxyProtocol::Off => Ok(peer),
            ProxyProtocol::Required { timeout } => {
                Ok(read_header(connection, timeout)?.map_or(peer, Address::Inet))
            }
        }
    }
}

/// v2's signature: the first 12 bytes of a binary header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included.
const V1_MAX: usize = 107;
/// The longest v2 header accepted (16 bytes and the addresses and TLVs).
const V2_MAX: usize = 16 + 4096;

/// Reads the header from `connection`, consuming exactly its bytes, and
/// returns the client address it carries (`None` for a health check:
/// v1 UNKNOWN, v2 LOCAL or unspecified).
fn read_header(connection: Connection<'_>, timeout: Duration) -> io::Result<Option<SocketAddr>> {
    // The whole header within `timeout`: each read gets the time left, so
    // a balancer (or anyone) trickling it is cut.
    let mut reader = WithDeadline {
        connection,
        deadline: Deadline::after(Some(timeout)),
    };
    let header = read_header_bytes(&mut reader).map_err(|err| match err.kind() {
        io::ErrorKind::TimedOut => io::Error::new(
            err.kind(),
            format!("no PROXY protocol header within {timeout:?}"),
        ),
        _ => err,
    });
    connection.set_timeout(None)?;
    parse(&header?)
}

fn read_header_bytes(reader: &mut WithDeadline<'_>) -> io::Result<Vec<u8>> {
    let connection = reader.connection;
    // v1 is at least 15 bytes, v2's signature 12: these 12 are header either way.
    let mut header = vec![0; V2_SIGNATURE.len()];
    reader.read_exact(&mut header).map_err(truncated)?;
    if header == V2_SIGNATURE {
        let mut rest = [0; 4];
        reader.read_exact(&mut rest).map_err(truncated)?;
        header.extend_from_slice(&rest);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if 16 + len > V2_MAX {
            return Err(malformed(format!("a v2 header of {} bytes", 16 + len)));
        }
        let start = header.len();
        header.resize(start + len, 0);
        reader.read_exact(&mut header[start..]).map_err(truncated)?;
        return Ok(header);
    }
    if !header.starts_with(b"PROXY ") {
        return Err(malformed(
            "no PROXY protocol header (the connection did not start with one)".into(),
        ));
    }
    // v1 ends at CRLF: peek at what has arrived, take up to the CRLF if it is
    // there, else all of it (all header), and look again.
    let mut buf = [0; V1_MAX];
    loop {
        let window = V1_MAX - header.len();
        reader.deadline.before_io(&connection)?;
        let available = suspend::io(connection.as_fd(), Interest::Read, || {
            recv(
                connection.as_raw_fd(),
                &mut buf[..window],
                MsgFlags::MSG_PEEK,
            )
            .map_err(io::Error::from)
        })
        .map_err(|err| match err {
            err if err.kind() == io::ErrorKind::WouldBlock => {
                io::Error::new(io::ErrorKind::TimedOut, "timed out")
            }
            err => err,
        })?;
        if available == 0 {
            return Err(truncated(io::ErrorKind::UnexpectedEof.into()));
        }
        let seen = &buf[..available];
        let end = if header.ends_with(b"\r") && seen[0] == b'\n' {
            Some(1)
        } else {
            seen.windows(2).position(|w| w == b"\r\n").map(|i| i + 2)
        };
        let take = end.unwrap_or(available);
        let start = header.len();
        header.resize(start + take, 0);
        reader.read_exact(&mut header[start..])?;
        if end.is_some() {
            return Ok(header);
        }
        if header.len() >= V1_MAX {
            return Err(malformed(format!("a v1 header longer than {V1_MAX} bytes")));
        }
    }
}

fn parse(header: &[u8]) -> io::Result<Option<SocketAddr>> {
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(header)) => Ok(match header.addresses {
            v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(header)) => Ok(match (header.command, header.addresses) {
            (v2::Command::Local, _) => None,
            (_, v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            (_, v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            (_, v2::Addresses::Unix(_) | v2::Addresses::Unspecified) => None,
        }),
        HeaderResult::V1(Err(err)) => Err(malformed(format!("{err:?}"))),
        HeaderResult::V2(Err(err)) => Err(malformed(format!("{err:?}"))),
    }
}

fn malformed(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed PROXY protocol header: {what}"),
    )
}

fn truncated(err: io::Error) -> io::Error {
    match err.kind() {
        io::ErrorKind::UnexpectedEof => malformed("the connection ended inside the header".into()),
        _ => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2_addresses() {
        let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
        assert_eq!(parse(v1).unwrap(), Some("192.0.2.1:56324".parse().unwrap()));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), None);
        let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n";
        assert_eq!(
            parse(v6).unwrap(),
            Some("[2001:db8::1]:4000".parse().unwrap())
        );
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[
            0x21, 0x11, 0, 12, 192, 0, 2, 7, 198, 51, 100, 2, 0x1f, 0x90, 0x01, 0xbb,
        ]);
        assert_eq!(parse(&v2).unwrap(), Some("192.0.2.7:8080".parse().unwrap()));
        assert!(parse(b"PROXY TCP4 not an address\r\n").is_err());
    }
}
