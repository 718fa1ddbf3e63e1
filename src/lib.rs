//! Python's `socketserver`, in Rust.
#![deny(unsafe_code)]

mod address;
mod error;
pub mod framing;
mod handler;
pub mod mixin;
mod panic;
mod server;
pub mod transceiver;

pub use address::Address;
pub use error::RequestError;
pub use handler::{
    Connection, Datagram, DatagramOptions, DatagramRequest, Packet, RequestHandler, RequestKind,
    SocketWriter, Stream, StreamOptions, StreamRequest,
};
pub use mixin::{ForkingMixIn, MixIn, Synchronous, ThreadPoolMixIn, ThreadingMixIn};
pub use server::{
    AddressOf, BaseServer, RequestOf, Reuse, Root, Server, ServerHandle, Tcp, Transport, Udp, Unix,
    UnixDgram,
};

/// Python's `TCPServer`: TCP, one request at a time.
pub type TCPServer = Server<Tcp, Synchronous>;
/// Python's `UDPServer`: UDP, one datagram at a time.
pub type UDPServer = Server<Udp, Synchronous>;
/// Python's `UnixStreamServer`: Unix stream socket, one request at a time.
pub type UnixStreamServer = Server<Unix, Synchronous>;
/// Python's `UnixDatagramServer`: Unix datagram socket, one datagram at a time.
pub type UnixDatagramServer = Server<UnixDgram, Synchronous>;

/// Python's `ThreadingTCPServer`: a thread per connection.
pub type ThreadingTCPServer = Server<Tcp, ThreadingMixIn>;
/// Python's `ThreadingUDPServer`: a thread per datagram.
pub type ThreadingUDPServer = Server<Udp, ThreadingMixIn>;
/// Python's `ThreadingUnixStreamServer`.
pub type ThreadingUnixStreamServer = Server<Unix, ThreadingMixIn>;
/// Python's `ThreadingUnixDatagramServer`.
pub type ThreadingUnixDatagramServer = Server<UnixDgram, ThreadingMixIn>;

/// Python's `ForkingTCPServer`: a child process per connection.
pub type ForkingTCPServer = Server<Tcp, ForkingMixIn>;
/// Python's `ForkingUDPServer`: a child process per datagram.
pub type ForkingUDPServer = Server<Udp, ForkingMixIn>;
/// Python's `ForkingUnixStreamServer` (Python 3.12+).
pub type ForkingUnixStreamServer = Server<Unix, ForkingMixIn>;
/// Python's `ForkingUnixDatagramServer` (Python 3.12+).
pub type ForkingUnixDatagramServer = Server<UnixDgram, ForkingMixIn>;

/// A TCP server on a bounded [`ThreadPoolMixIn`] (not in Python).
pub type ThreadPoolTCPServer = Server<Tcp, ThreadPoolMixIn>;
/// A UDP server on a bounded [`ThreadPoolMixIn`] (not in Python).
pub type ThreadPoolUDPServer = Server<Udp, ThreadPoolMixIn>;
/// A Unix stream server on a bounded [`ThreadPoolMixIn`] (not in Python).
pub type ThreadPoolUnixStreamServer = Server<Unix, ThreadPoolMixIn>;
/// A Unix datagram server on a bounded [`ThreadPoolMixIn`] (not in Python).
pub type ThreadPoolUnixDatagramServer = Server<UnixDgram, ThreadPoolMixIn>;
