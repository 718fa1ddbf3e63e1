//! Servers: the [`BaseServer`] trait, the [`Server`] struct behind Python's
//! class names, and the four transports.

mod base;
mod handle;
mod root;
mod selector;
mod serve;
mod tcp;
mod transport;
mod udp;
mod unix_datagram;
mod unix_stream;

pub use base::{AddressOf, BaseServer, RequestOf};
pub use handle::ServerHandle;
pub use root::{Root, Server};
pub use tcp::Tcp;
pub use transport::{BindOptions, ServerAddress, Transport};
pub use udp::Udp;
pub use unix_datagram::UnixDgram;
pub use unix_stream::Unix;
