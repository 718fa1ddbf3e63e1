//! Servers: the [`BaseServer`] trait, the [`Server`] struct behind Python's
//! class names, the request loop and the shutdown handle.

mod base;
pub(crate) mod connections;
mod handle;
mod open_requests;
mod selector;
mod serve;
pub(crate) mod socket_file;
pub(crate) mod stats;
// Named for the one type it holds, as the transports' files are.
#[allow(clippy::module_inception)]
mod server;

pub use base::{AddressOf, BaseServer, RequestOf};
pub use handle::ServerHandle;
pub use server::Server;
pub use stats::{Refusal, ServerStats};
