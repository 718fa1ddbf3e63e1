//! [`BaseHTTPRequestHandler`]: Python's class of the same name — its
//! `do_*` methods and overridable hooks — and [`HTTPOptions`], its class
//! attributes.

use std::fmt;
use std::io;
use std::time::Duration;

use super::HTTPRequest;

/// Python's `DEFAULT_ERROR_MESSAGE`, with `{code}`, `{message}` and
/// `{explain}` where Python has `%(code)d`, `%(message)s`, `%(explain)s`.
pub const DEFAULT_ERROR_MESSAGE: &str = "<!DOCTYPE HTML>
<html lang=\"en\">
    <head>
        <meta charset=\"utf-8\">
        <title>Error response</title>
    </head>
    <body>
        <h1>Error response</h1>
        <p>Error code: {code}</p>
        <p>Message: {message}.</p>
        <p>Error code explanation: {code} - {explain}.</p>
    </body>
</html>
";

/// Python's `DEFAULT_ERROR_CONTENT_TYPE`.
pub const DEFAULT_ERROR_CONTENT_TYPE: &str = "text/html;charset=utf-8";

/// The class attributes of a [`BaseHTTPRequestHandler`], read once when the
/// server is made.
///
/// ```
/// use socketserver::http::HTTPOptions;
/// let options = HTTPOptions { protocol_version: "HTTP/1.1".into(), ..HTTPOptions::default() };
/// assert_eq!(options.server_version, "BaseHTTP/0.6");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HTTPOptions {
    /// Python's `protocol_version`: `"HTTP/1.1"` keeps connections alive
    /// between requests (the handler must then send `Content-Length`, or
    /// the connection is closed after the response). Defaults to
    /// `"HTTP/1.0"`, as Python: one request per connection.
    pub protocol_version: String,
    /// Python's `server_version`, first word of the `Server` header.
    /// Defaults to `"BaseHTTP/0.6"`.
    pub server_version: String,
    /// Python's `sys_version`, second word of the `Server` header. Defaults
    /// to `"socketserver/<crate version>"` (Python: `Python/3.x.y`).
    pub sys_version: String,
    /// Python's `error_message_format`, the body of [`send_error`]: `{code}`,
    /// `{message}` and `{explain}` are replaced (HTML-escaped). Defaults to
    /// [`DEFAULT_ERROR_MESSAGE`].
    ///
    /// [`send_error`]: HTTPRequest::send_error
    pub error_message_format: String,
    /// Python's `error_content_type`. Defaults to
    /// [`DEFAULT_ERROR_CONTENT_TYPE`].
    pub error_content_type: String,
    /// Python's `timeout` — here a deadline for each whole request head, so
    /// that a client trickling bytes cannot hold the connection longer
    /// (slowloris), and the timeout of each read or write after it.
    /// Defaults to `None`: wait for ever, as Python.
    pub timeout: Option<Duration>,
    /// The largest request body a handler may read through
    /// [`rfile`](HTTPRequest::rfile): a larger `Content-Length` is answered
    /// 413 before the handler runs, a longer chunked body fails the read
    /// with [`BodyTooLarge`](super::BodyTooLarge) (then 413 if nothing was
    /// sent yet). Not in Python, which leaves bodies to the handler.
    /// Defaults to 16 MiB.
    pub max_body_size: u64,
    /// Python's `disable_nagle_algorithm`. Defaults to `false`: not needed,
    /// since a response's head leaves in one write with its first body
    /// bytes (Python's stalls 40 ms per kept request on the delayed ACK).
    pub disable_nagle_algorithm: bool,
}

impl Default for HTTPOptions {
    fn default() -> Self {
        HTTPOptions {
            protocol_version: "HTTP/1.0".into(),
            server_version: "BaseHTTP/0.6".into(),
            sys_version: concat!("socketserver/", env!("CARGO_PKG_VERSION")).into(),
            error_message_format: DEFAULT_ERROR_MESSAGE.into(),
            error_content_type: DEFAULT_ERROR_CONTENT_TYPE.into(),
            timeout: None,
            max_body_size: 16 << 20,
            disable_nagle_algorithm: false,
        }
    }
}

/// Python's `BaseHTTPRequestHandler`: one `do_<METHOD>` per HTTP method,
/// each answering with [`send_response`](HTTPRequest::send_response),
/// [`send_header`](HTTPRequest::send_header),
/// [`end_headers`](HTTPRequest::end_headers) and writes to
/// [`wfile`](HTTPRequest::wfile) — or [`send_error`](HTTPRequest::send_error).
///
/// Python's handler object is the request; here, as for every handler in
/// this crate, the handler is one value per server (its fields shared by
/// all requests) and the request's state is the [`HTTPRequest`] passed to
/// each method: `self.path` becomes `request.path`, `self.send_response(200)`
/// becomes `request.send_response(200)?`.
///
/// Serve it with [`HTTPServer`](super::HTTPServer) (or any mix-in:
/// `HTTPServer<ThreadPoolMixIn>`), which wraps it in the stream handler
/// that reads requests.
///
/// # The call order, per request
///
/// ```text
/// read and parse the head (refusals answered 400, 414, 431, 505, 413, 408)
///   → handle_expect_100           (Expect: 100-continue, HTTP/1.1 both sides)
///   → do_GET / do_POST / …        (do_method for any other method; default 501)
///   → the head is flushed, the unread body drained, and with keep-alive the
///     next request is read (on a pool the connection waits without a worker)
/// ```
///
/// # Methods that may be overridden
/// every `do_*`, [`do_method`](Self::do_method),
/// [`handle_expect_100`](Self::handle_expect_100),
/// [`log_message`](Self::log_message), [`log_request`](Self::log_request),
/// [`log_error`](Self::log_error), [`options`](Self::options).
///
/// # Example
///
/// ```
/// use socketserver::http::{BaseHTTPRequestHandler, HTTPRequest};
/// use std::io::{self, Write};
///
/// struct Hello;
///
/// impl BaseHTTPRequestHandler for Hello {
///     fn do_GET(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
///         let body = format!("hello, {}\n", request.path);
///         request.send_response(200)?;
///         request.send_header("Content-Type", "text/plain")?;
///         request.send_header("Content-Length", body.len())?;
///         request.end_headers();
///         request.wfile.write_all(body.as_bytes())
///     }
/// }
/// ```
// Python's method names (do_GET) are kept on purpose: the crate is for porting.
#[allow(non_snake_case)]
pub trait BaseHTTPRequestHandler: Send + Sync + 'static {
    /// The handler's class attributes, read once when the server is made.
    /// Defaults to [`HTTPOptions::default`].
    fn options(&self) -> HTTPOptions {
        HTTPOptions::default()
    }

    /// Serves a `GET`. Defaults to 501, as a missing method in Python.
    fn do_GET(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
        request.send_unsupported()
    }
    /// Serves a `HEAD`. Defaults to 501.
    fn do_HEAD(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
        request.send_unsupported()
    }
    /// Serves a `POST`. Defaults to 501.
    fn do_POST(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
        request.send_unsupported()
    }
    /// Serves a `PUT`. Defaults to 501.
    fn do_PUT(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
        request.send_unsupported()
    }
    /// Serves a `DELETE`. Defaults to 501.
    fn do_DELETE(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
        request.send_unsupported()
    }
    /// Serves an `OPTIONS`. Defaults to 501.
    fn do_OPTIONS(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
        request.send_unsupported()
    }
    /// Serves a `PATCH`. Defaults to 501.
    fn do_PATCH(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
        request.send_unsupported()
    }
    /// Serves a `TRACE`. Defaults to 501.
    fn do_TRACE(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
        request.send_unsupported()
    }
    /// Serves a `CONNECT`. Defaults to 501.
    fn do_CONNECT(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
        request.send_unsupported()
    }
    /// Serves any other method (`request.command` says which): Python's
    /// `getattr(self, 'do_' + command)`. Defaults to 501.
    fn do_method(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
        request.send_unsupported()
    }

    /// Python's `handle_expect_100`: called for `Expect: 100-continue`
    /// when both sides speak HTTP/1.1, before the `do_*` method; `false`
    /// ends the request there (after sending, say, 417). Defaults to
    /// sending `100 Continue` at once and returning `true`.
    fn handle_expect_100(&self, request: &mut HTTPRequest<'_>) -> io::Result<bool> {
        request.send_response_only(100)?;
        request.end_headers();
        request.flush_headers()?;
        Ok(true)
    }

    /// Python's `log_message`: writes `address - - [date] message` to
    /// stderr, control characters escaped (gh-100001). Override it to log
    /// elsewhere (through the `log` crate, say).
    fn log_message(&self, request: &HTTPRequest<'_>, message: fmt::Arguments<'_>) {
        eprintln!("{}", request.format_log_line(message));
    }

    /// Python's `log_request`: `"requestline" code size`, called by
    /// [`send_response`](HTTPRequest::send_response). `size` is `None`
    /// for Python's `'-'`.
    fn log_request(&self, request: &HTTPRequest<'_>, code: u16, size: Option<u64>) {
        let size = size.map_or_else(|| "-".to_owned(), |s| s.to_string());
        self.log_message(
            request,
            format_args!("\"{}\" {} {}", request.requestline, code, size),
        );
    }

    /// Python's `log_error`, called by [`send_error`](HTTPRequest::send_error)
    /// and on timeouts. Defaults to [`log_message`](Self::log_message).
    fn log_error(&self, request: &HTTPRequest<'_>, message: fmt::Arguments<'_>) {
        self.log_message(request, message);
    }
}
