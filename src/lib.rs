//! Python's `socketserver`, in Rust: the same classes, the same hooks, the
//! same call order — with instant shutdown, a bounded thread pool, and a
//! request loop that survives panics, slow clients and descriptor exhaustion.
//!
//! # Hello, world!
//!
//! Python's first example, a TCP server that upper-cases a line:
//!
//! ```
//! use socketserver::{BaseServer, StreamRequest, ThreadingTCPServer};
//! use std::io::{BufRead, Read, Write};
//! use std::sync::Arc;
//!
//! fn handle(request: &mut StreamRequest<'_>) -> std::io::Result<()> {
//!     let mut line = Vec::new();
//!     request.rfile.read_until(b'\n', &mut line)?;
//!     request.wfile.write_all(&line.to_ascii_uppercase())
//! }
//!
//! let server = Arc::new(ThreadingTCPServer::new("127.0.0.1:0", handle)?);
//! let serving = std::thread::spawn({
//!     let server = Arc::clone(&server);
//!     move || server.serve_forever(None)
//! });
//!
//! let mut client = std::net::TcpStream::connect(server.server_address())?;
//! client.write_all(b"hello world\n")?;
//! let mut reply = String::new();
//! client.read_to_string(&mut reply)?;
//! assert_eq!(reply, "HELLO WORLD\n");
//!
//! server.shutdown()?; // serve_forever returns at once
//! serving.join().unwrap()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Servers
//!
//! Python's class names are kept: [`TCPServer`], [`UDPServer`],
//! [`UnixStreamServer`], [`UnixDatagramServer`], and with a mix-in
//! [`ThreadingTCPServer`], [`ForkingUDPServer`], … They are aliases of one
//! struct, [`Server<T, M>`](Server), with a transport `T` ([`Tcp`], [`Udp`],
//! [`Unix`], [`UnixDgram`]) and a mix-in `M` ([`Synchronous`],
//! [`ThreadingMixIn`], [`ThreadPoolMixIn`], [`CoroutineMixIn`],
//! [`ForkingMixIn`]). Python's
//! attributes are public fields (`server.allow_reuse_address = true`); set
//! them on a server made with `unbound` (Python's `bind_and_activate=False`),
//! then call [`bind_and_activate`](BaseServer::bind_and_activate).
//!
//! ```text
//! +------------+
//! | BaseServer |  trait: serve_forever, handle_request, shutdown and the hooks
//! +------------+
//!       |
//!       v
//! +-----------+        +------------------+
//! | TCPServer |------->| UnixStreamServer |   Server<Tcp, M>, Server<Unix, M>
//! +-----------+        +------------------+
//!       |
//!       v
//! +-----------+        +--------------------+
//! | UDPServer |------->| UnixDatagramServer |   Server<Udp, M>, Server<UnixDgram, M>
//! +-----------+        +--------------------+
//! ```
//!
//! # Handlers
//!
//! A handler implements [`RequestHandler`] (`setup`, `handle`, `finish`), or
//! is a closure. Stream handlers get a [`StreamRequest`] with a buffered
//! `rfile` and an unbuffered `wfile` whose writes return only when all is sent
//! (Python's `StreamRequestHandler`); datagram handlers get a
//! [`DatagramRequest`] whose `wfile` goes back to the client as one datagram —
//! an empty one if nothing was written, as in Python.
//!
//! # Overriding hooks (subclassing)
//!
//! Python subclasses a server and overrides methods. Rust wraps a server in a
//! struct, returns it from [`BaseServer::base`], and overrides trait methods;
//! `self.base().hook()` is `super().hook()`, and a handler reaches the
//! struct's fields with [`request.server.downcast()`](ServerHandle::downcast)
//! (Python's `self.server.x`). Every default calls hooks
//! through `self`, so overrides run wherever the request goes: a thread, a
//! pool worker, a forked child. See [`BaseServer`] for the numbered call order
//! and an example, and docs/porting.md for every Python name.
//!
//! # Concurrency
//!
//! | mix-in | Python | a request runs | at overload |
//! |---|---|---|---|
//! | [`Synchronous`] | plain `TCPServer` | in the serving thread | waits in the listen backlog |
//! | [`ThreadingMixIn`] | `ThreadingMixIn` | on a new thread | more threads, no bound |
//! | [`ThreadPoolMixIn`] | — | on one of N workers, once readable | waits or is refused ([`mixin::Overload`]) |
//! | [`CoroutineMixIn`] | — (gevent's model) | on a coroutine; a worker thread per core runs them all, switching whenever one would block | more coroutines (a few KiB each) |
//! | [`ForkingMixIn`] | `ForkingMixIn` | in a child process | waits at `max_children` |
//!
//! # Shutdown
//!
//! [`BaseServer::shutdown`] (or a [`ServerHandle`] from
//! [`shutdown_handle`](BaseServer::shutdown_handle), for signal handlers)
//! wakes `serve_forever` at once: it polls an eventfd beside the socket, so
//! there is no `poll_interval` to wait out, and an idle server never wakes.
//! Called from the serving thread it returns an error instead of
//! deadlocking. [`BaseServer::server_close`] closes the socket and waits for
//! requests in flight, as `block_on_close` says; [`BaseServer::with`] is
//! Python's `with server:` block, which ends with it. Dropping the last
//! `Arc` of a server calls it too — but request threads hold clones, so
//! where requests may be in flight, call it (or use `with`).
//!
//! # Errors and panics
//!
//! Socket operations return [`std::io::Result`], with the address or path in
//! the message where it helps (`TCPServer could not bind 127.0.0.1:80:
//! permission denied …`). A handler's error or panic goes to
//! [`BaseServer::handle_error`] as a [`RequestError`]; the connection is
//! closed and the server carries on. To report a panic once, the first server
//! built installs a panic hook that keeps handler panics for `handle_error`
//! instead of printing them, and hands every other panic to the previous hook.
//!
//! The library logs through the `log` crate and never installs a logger:
//! install one (e.g. `env_logger`) to see `handle_error`'s reports.
//!
//! # Deploying
//!
//! [`Server::from_systemd`] (socket activation), [`Server::from_socket`] and
//! [`Server::from_fd`] (inherited sockets), `allow_reuse_port` (several
//! workers on one port), [`ProxyProtocol`] (the real client's address
//! behind HAProxy), `dual_stack` (IPv4 and IPv6 on one listener) and, with
//! the `tls` feature, [`Server::tls`] (rustls, handshakes on each
//! connection's own thread). [`restart`] hands the listening sockets to a
//! new process of the program (an upgraded binary, say) and waits until it
//! is ready before the old one stops accepting: a restart that refuses no
//! connection. docs/deploy.md puts them together.
//!
//! # Framing
//!
//! TCP is a stream: two sends may arrive as one receive (粘包, "sticky
//! packets", as the Chinese Python socket tutorials this crate ports call it).
//! [`framing`] has length-prefixed frames and header+body messages, and
//! [`transceiver`] the tutorials' message-and-file transceiver (its Python
//! `Transceiver` class).
//!
//! # HTTP
//!
//! With the `http` feature, [`http`] is Python's `http.server` on these
//! servers: `HTTPServer`, `ThreadingHTTPServer`, `BaseHTTPRequestHandler`
//! (`do_GET`, `send_response`, …) and `SimpleHTTPRequestHandler` (a
//! directory, as `python -m http.server`). docs/http.md is its guide.
//!
//! # Features
//!
//! All on by default; with `default-features = false` the crate is the
//! socket core alone (socket2, nix, crossbeam-channel, parking_lot, log).
//!
//! | feature | brings | enables |
//! |---|---|---|
//! | `tls` | rustls | `Server::tls`, module `tls` |
//! | `framing` | serde, serde_json, md-5, sha2 | modules `framing` and `transceiver` |
//! | `coroutine` | corosensei | `CoroutineMixIn`, `Coroutine*Server` |
//! | `proxy` | ppp | `ProxyProtocol`, `Server::proxy_protocol` |
//! | `systemd` | listenfd | `Server::from_systemd` |
//! | `http` | httparse, http, httpdate, percent-encoding, mime_guess | module `http` |
#![deny(unsafe_code)]

mod address;
mod error;
#[cfg(feature = "framing")]
pub mod framing;
mod handler;
#[cfg(feature = "http")]
pub mod http;
pub mod mixin;
mod panic;
#[cfg(feature = "proxy")]
mod proxy;
pub mod restart;
mod server;
mod sys;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "framing")]
pub mod transceiver;
mod transport;

pub use address::Address;
pub use error::RequestError;
pub use handler::{
    Connection, Datagram, DatagramOptions, DatagramRequest, Packet, RequestHandler, RequestKind,
    SocketWriter, Stream, StreamOptions, StreamRequest,
};
#[cfg(feature = "coroutine")]
pub use mixin::CoroutineMixIn;
pub use mixin::{ForkingMixIn, MixIn, Synchronous, ThreadPoolMixIn, ThreadingMixIn};
#[cfg(feature = "proxy")]
pub use proxy::ProxyProtocol;
pub use server::{AddressOf, BaseServer, Refusal, RequestOf, Server, ServerHandle, ServerStats};
pub use transport::{BindOptions, ServerAddress, Tcp, Transport, Udp, Unix, UnixDgram};

/// How long a bounded stop waits for the requests it cut off (their
/// connections shut down after the drain deadline) to end: their handlers
/// see end-of-file at once, so this only bounds a handler that ignores it.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

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

/// A TCP server on a [`CoroutineMixIn`]: a coroutine per connection, a
/// worker thread per core (not in Python; gevent's model). Feature
/// `coroutine`.
#[cfg(feature = "coroutine")]
pub type CoroutineTCPServer = Server<Tcp, CoroutineMixIn>;
/// A UDP server on a [`CoroutineMixIn`] (not in Python). Feature `coroutine`.
#[cfg(feature = "coroutine")]
pub type CoroutineUDPServer = Server<Udp, CoroutineMixIn>;
/// A Unix stream server on a [`CoroutineMixIn`] (not in Python). Feature
/// `coroutine`.
#[cfg(feature = "coroutine")]
pub type CoroutineUnixStreamServer = Server<Unix, CoroutineMixIn>;
/// A Unix datagram server on a [`CoroutineMixIn`] (not in Python). Feature
/// `coroutine`.
#[cfg(feature = "coroutine")]
pub type CoroutineUnixDatagramServer = Server<UnixDgram, CoroutineMixIn>;

/// README.md's code, compiled as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
