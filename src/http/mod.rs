//! Python's `http.server`: [`HTTPServer`], [`BaseHTTPRequestHandler`],
//! [`SimpleHTTPRequestHandler`] — the same names, on this crate's servers,
//! built on httparse (parsing), http (methods, status codes, header
//! types), httpdate, percent-encoding and mime_guess. Feature `http`.
//!
//! What it does better than Python's: every refusal has a status line (400,
//! 408, 413, 414, 431, 505); chunked request bodies are decoded and a body
//! limited ([`HTTPOptions::max_body_size`]); a request with both
//! `Content-Length` and `Transfer-Encoding` is refused (smuggling); a
//! header with CR or LF cannot be sent; a response's head and body leave in
//! one write (no 40 ms Nagle stall per kept request); the handler's
//! `timeout` bounds a whole request head (slowloris); a kept connection
//! between requests holds no pool worker; [`SimpleHTTPRequestHandler`]
//! answers `Range` and `If-None-Match` and refuses the open redirects of
//! CVE-2021-28861 and its `/\` variant.
//!
//! docs/http.md is the guide; docs/porting.md maps every name.
//!
//! ```
//! use socketserver::http::{HTTPServer, SimpleHTTPRequestHandler};
//! use socketserver::ThreadPoolMixIn;
//!
//! // python -m http.server --bind 127.0.0.1 --directory . 0
//! let server = HTTPServer::<ThreadPoolMixIn>::new(
//!     "127.0.0.1:0",
//!     SimpleHTTPRequestHandler::new("."),
//! )?;
//! # drop(server);
//! # Ok::<(), std::io::Error>(())
//! ```

mod adapter;
mod body;
mod deadline;
mod handler;
mod log;
mod request;
mod response;
mod server;
mod simple;

/// The `http` crate's types that this module's API takes and returns.
pub use ::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
pub use adapter::HTTPHandler;
pub use body::{Body, BodyTooLarge};
pub use handler::{
    BaseHTTPRequestHandler, HTTPOptions, DEFAULT_ERROR_CONTENT_TYPE, DEFAULT_ERROR_MESSAGE,
};
pub use response::{HTTPRequest, ResponseWriter};
#[cfg(feature = "tls")]
pub use server::{HTTPSServer, ThreadingHTTPSServer};
pub use server::{HTTPServer, ThreadingHTTPServer};
pub use simple::SimpleHTTPRequestHandler;

/// docs/http.md's code, compiled as doctests so that the guide stays true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/http.md")]
pub struct HttpGuideDoctests;
