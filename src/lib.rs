//! Python's `socketserver`, in Rust.
#![deny(unsafe_code)]

mod address;
mod error;
mod handler;
pub mod mixin;
mod panic;
mod server;

pub use address::Address;
pub use error::RequestError;
pub use handler::{
    Connection, Datagram, DatagramOptions, DatagramRequest, Packet, RequestHandler, RequestKind,
    SocketWriter, Stream, StreamOptions, StreamRequest,
};
pub use mixin::{MixIn, Synchronous};
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
