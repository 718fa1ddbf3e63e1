//! [`HTTPRequest`]: one request as a [`BaseHTTPRequestHandler`] sees it —
//! Python's instance attributes (`command`, `path`, `headers`, …) and the
//! methods that answer (`send_response`, `send_header`, `end_headers`,
//! `send_error`, …) — and [`ResponseWriter`], its `wfile`.

use std::fmt;
use std::io::{self, Write};
use std::time::SystemTime;

use ::http::header::{HeaderMap, HeaderName, HeaderValue};
use ::http::StatusCode;

use super::body::Body;
use super::handler::{BaseHTTPRequestHandler, HTTPOptions};
use super::log;
use super::server::ServerName;
use crate::{Address, Connection, ServerHandle};

/// Bytes gathered with the head before the first write: a response up to
/// this size leaves in one `write`, one segment when it fits.
const COALESCE: usize = 64 * 1024;

/// The response's `wfile`: the body goes to the client through it. The
/// head that [`end_headers`](HTTPRequest::end_headers) completed waits
/// here and leaves in one write with the first body bytes — no small
/// segment for Nagle's algorithm to hold back.
pub struct ResponseWriter<'r> {
    connection: Connection<'r>,
    head: Vec<u8>,
    /// The status line sent, if any.
    pub(crate) status: Option<u16>,
    /// A `Content-Length` or `Transfer-Encoding` header was sent: the
    /// client can tell where the body ends without the connection closing.
    pub(crate) framed: bool,
    /// Body bytes written.
    written: u64,
}

impl fmt::Debug for ResponseWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseWriter")
            .field("status", &self.status)
            .field("pending_head", &self.head.len())
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl<'r> ResponseWriter<'r> {
    pub(crate) fn new(connection: Connection<'r>) -> Self {
        ResponseWriter {
            connection,
            head: Vec::new(),
            status: None,
            framed: false,
            written: 0,
        }
    }

    /// Body bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Sends the rest of a file's bytes (`from` holds them, the head must
    /// have gone): on a plain TCP connection outside a coroutine through
    /// `std::io::copy`, which Linux turns into sendfile(2) (no copy into
    /// user space); else through `buffer`.
    pub(crate) fn send_file(
        &mut self,
        from: &mut std::io::Take<std::fs::File>,
        buffer: &mut [u8],
    ) -> io::Result<()> {
        self.send_head()?;
        if let Connection::Tcp(tcp) = self.connection {
            if !crate::mixin::suspend::in_coroutine() {
                let mut tcp = tcp;
                self.written += io::copy(from, &mut tcp)?;
                return Ok(());
            }
        }
        loop {
            let n = match io::Read::read(from, buffer) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.write_all(&buffer[..n])?;
        }
    }

    /// Sends the buffered head, if any.
    fn send_head(&mut self) -> io::Result<()> {
        if !self.head.is_empty() {
            let result = self.connection.write_all(&self.head);
            self.head.clear();
            result?;
        }
        Ok(())
    }
}

impl Write for ResponseWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.head.is_empty() {
            let n = self.connection.write(buf)?;
            self.written += n as u64;
            return Ok(n);
        }
        // The head and as much body as fits in one write.
        let take = buf
            .len()
            .min(COALESCE.saturating_sub(self.head.len()).max(1));
        self.head.extend_from_slice(&buf[..take]);
        self.send_head()?;
        self.written += take as u64;
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_head()?;
        self.connection.flush()
    }
}

/// One HTTP request: Python's `BaseHTTPRequestHandler` instance
/// attributes, and its methods that answer.
///
/// | Python | Rust |
/// |---|---|
/// | `self.command`, `self.path`, `self.request_version`, `self.requestline` | the fields of the same names |
/// | `self.headers['Content-Type']` | `request.headers.get("content-type")` (case-insensitive, several values per name: [`HeaderMap`]) |
/// | `self.rfile.read(n)` | [`request.rfile`](HTTPRequest::rfile) (the body only, `Content-Length` or chunked) |
/// | `self.wfile.write(b)` | `request.wfile.write_all(b)?` |
/// | `self.client_address`, `self.server` | `request.client_address`, `request.server` |
/// | `self.close_connection` | `request.close_connection` |
#[non_exhaustive]
pub struct HTTPRequest<'r> {
    /// The method: `"GET"`, `"POST"`, … (empty if the request line could
    /// not be parsed).
    pub command: String,
    /// The request target as sent (`/a%20b?q=1`), a leading `//` collapsed
    /// to `/` (gh-87389).
    pub path: String,
    /// `"HTTP/1.0"` or `"HTTP/1.1"`.
    pub request_version: String,
    /// The request line, for the log.
    pub requestline: String,
    /// The request's headers: case-insensitive, in order, several values
    /// per name.
    pub headers: HeaderMap,
    /// The request body: end of file at its end.
    pub rfile: Body<'r>,
    /// Where the response body goes (after
    /// [`end_headers`](HTTPRequest::end_headers)).
    pub wfile: ResponseWriter<'r>,
    /// The client's address.
    pub client_address: Address,
    /// The server, to shut it down or [`downcast`](ServerHandle::downcast).
    pub server: &'r ServerHandle,
    /// Whether the connection closes after this request: set from the
    /// request (`Connection`, version) and by a `Connection` header sent
    /// with [`send_header`](HTTPRequest::send_header).
    pub close_connection: bool,
    pub(crate) handler: &'r dyn BaseHTTPRequestHandler,
    pub(crate) options: &'r HTTPOptions,
    pub(crate) names: &'r ServerName,
}

impl fmt::Debug for HTTPRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HTTPRequest")
            .field("requestline", &self.requestline)
            .field("headers", &self.headers)
            .field("client_address", &self.client_address)
            .field("close_connection", &self.close_connection)
            .finish_non_exhaustive()
    }
}

/// Python's `BaseHTTPRequestHandler.responses` long messages, for the codes
/// this module sends itself and the common ones (`http.HTTPStatus`
/// descriptions).
fn explanation(code: u16) -> &'static str {
    match code {
        100 => "Request received, please continue",
        200 => "Request fulfilled, document follows",
        204 => "Request fulfilled, nothing follows",
        206 => "Partial content follows",
        301 => "Object moved permanently -- see URI list",
        304 => "Document has not changed since given time",
        400 => "Bad request syntax or unsupported method",
        401 => "No permission -- see authorization schemes",
        403 => "Request forbidden -- authorization will not help",
        404 => "Nothing matches the given URI",
        405 => "Specified method is invalid for this resource",
        408 => "Request timed out; try again later",
        411 => "Client must specify Content-Length",
        413 => "Entity is too large",
        414 => "URI is too long",
        416 => "Cannot satisfy request range",
        417 => "Expect condition could not be satisfied",
        431 => {
            "The server is unwilling to process the request because its header fields are too large"
        }
        500 => "Server got itself in trouble",
        501 => "Server does not support this operation",
        505 => "Cannot fulfill request",
        _ => "???",
    }
}

/// `html.escape(s, quote=False)`.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

impl<'r> HTTPRequest<'r> {
    /// Python's `send_response(code)`: logs the request, then sends the
    /// status line, `Server` and `Date`. The reason phrase is the code's
    /// canonical one.
    pub fn send_response(&mut self, code: u16) -> io::Result<()> {
        self.send_response_message(code, None)
    }

    /// Python's `send_response(code, message)`: as
    /// [`send_response`](Self::send_response) with a reason phrase of your
    /// own (refused if it holds a control character).
    pub fn send_response_message(&mut self, code: u16, message: Option<&str>) -> io::Result<()> {
        self.log_request(code, None);
        self.send_response_message_only(code, message)?;
        let server = self.version_string();
        self.send_header("Server", server)?;
        self.send_header("Date", self.date_time_string())
    }

    /// Python's `send_response_only(code)`: the status line alone, with no
    /// log line and no `Server` or `Date` (used for `100 Continue`).
    pub fn send_response_only(&mut self, code: u16) -> io::Result<()> {
        self.send_response_message_only(code, None)
    }

    /// Python's `send_response_only(code, message)`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a code outside 100–999 or a message with a
    /// control character (CR, LF: header injection); nothing is buffered.
    pub fn send_response_message_only(
        &mut self,
        code: u16,
        message: Option<&str>,
    ) -> io::Result<()> {
        let status = StatusCode::from_u16(code)
            .map_err(|_| invalid_input(format!("bad status code {code}")))?;
        let message = message.unwrap_or_else(|| status.canonical_reason().unwrap_or(""));
        if message.chars().any(|c| c.is_control()) {
            return Err(invalid_input(format!(
                "control character in reason phrase {message:?}"
            )));
        }
        let line = format!("{} {} {}\r\n", self.options.protocol_version, code, message);
        self.wfile.head.extend_from_slice(line.as_bytes());
        if code >= 200 {
            self.wfile.status = Some(code);
            self.wfile.framed = false;
        }
        Ok(())
    }

    /// Python's `send_header(keyword, value)`: adds a header to the head.
    /// A `Connection: close` (or `keep-alive`) header also sets
    /// [`close_connection`](Self::close_connection).
    ///
    /// The name and value are [`HeaderName`] and [`HeaderValue`], or
    /// anything that converts to them (`&str`, `String`, integers): a
    /// value with CR, LF or another control character is refused with
    /// `InvalidInput` and nothing is written — header injection is closed
    /// by type (Python writes it as given, gh-150679).
    ///
    /// ```
    /// # use socketserver::http::HTTPRequest;
    /// # fn f(request: &mut HTTPRequest<'_>) -> std::io::Result<()> {
    /// request.send_header("Content-Length", 12)?;
    /// assert!(request.send_header("X-Name", "a\r\nSet-Cookie: x").is_err());
    /// # Ok(()) }
    /// ```
    pub fn send_header<K, V>(&mut self, keyword: K, value: V) -> io::Result<()>
    where
        K: TryInto<HeaderName>,
        K::Error: Into<::http::Error>,
        V: TryInto<HeaderValue>,
        V::Error: Into<::http::Error>,
    {
        let name: HeaderName = keyword
            .try_into()
            .map_err(|e| invalid_input(format!("bad header name: {}", e.into())))?;
        let value: HeaderValue = value
            .try_into()
            .map_err(|e| invalid_input(format!("bad header value for {name}: {}", e.into())))?;
        let head = &mut self.wfile.head;
        // HeaderName is lower case; the wire gets the usual capitals
        // (`Content-Length`), as Python's clients and logs show them.
        let mut upper = true;
        head.extend(name.as_str().bytes().map(|b| {
            let b = if upper { b.to_ascii_uppercase() } else { b };
            upper = b == b'-';
            b
        }));
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
        if name == ::http::header::CONNECTION {
            if value.as_bytes().eq_ignore_ascii_case(b"close") {
                self.close_connection = true;
            } else if value.as_bytes().eq_ignore_ascii_case(b"keep-alive") {
                self.close_connection = false;
            }
        } else if name == ::http::header::CONTENT_LENGTH
            || name == ::http::header::TRANSFER_ENCODING
        {
            self.wfile.framed = true;
        }
        Ok(())
    }

    /// Python's `end_headers`: ends the head. Unlike Python, the head is
    /// not written yet: it leaves with the first body bytes, at
    /// [`flush_headers`](Self::flush_headers), or when the request ends.
    pub fn end_headers(&mut self) {
        self.wfile.head.extend_from_slice(b"\r\n");
    }

    /// Python's `flush_headers`: sends the head now.
    pub fn flush_headers(&mut self) -> io::Result<()> {
        self.wfile.flush()
    }

    /// Python's `send_error(code)`: logs the error, and answers with the
    /// status, `Connection: close` and, except for HEAD requests and 1xx,
    /// 204, 205 and 304, an HTML body from
    /// [`error_message_format`](HTTPOptions::error_message_format).
    pub fn send_error(&mut self, code: u16) -> io::Result<()> {
        self.send_error_message(code, None, None)
    }

    /// Python's `send_error(code, message, explain)`: `message` becomes the
    /// reason phrase and, HTML-escaped (bpo-1100201), part of the body;
    /// `explain` the body's explanation. Control characters in `message`
    /// are replaced by spaces in the status line.
    pub fn send_error_message(
        &mut self,
        code: u16,
        message: Option<&str>,
        explain: Option<&str>,
    ) -> io::Result<()> {
        let short = StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("???");
        let message = message.unwrap_or(short);
        let explain = explain.unwrap_or_else(|| explanation(code));
        let handler = self.handler;
        handler.log_error(self, format_args!("code {code}, message {message}"));
        let reason: String = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.send_response_message(code, Some(&reason))?;
        self.send_header("Connection", "close")?;
        let body = if code >= 200 && !matches!(code, 204 | 205 | 304) {
            let body = self
                .options
                .error_message_format
                .replace("{message}", &html_escape(message))
                .replace("{explain}", &html_escape(explain))
                .replace("{code}", &code.to_string());
            let content_type = self.options.error_content_type.clone();
            self.send_header("Content-Type", content_type)?;
            self.send_header("Content-Length", body.len())?;
            Some(body)
        } else {
            None
        };
        self.end_headers();
        match body {
            Some(body) if self.command != "HEAD" => self.wfile.write_all(body.as_bytes()),
            _ => self.flush_headers(),
        }
    }

    /// The 501 of a method without a `do_*`.
    pub(crate) fn send_unsupported(&mut self) -> io::Result<()> {
        let message = format!(
            "Unsupported method ({})",
            super::request::py_repr(&self.command)
        );
        self.send_error_message(501, Some(&message), None)
    }

    /// Python's `log_request(code)`: through the handler's
    /// [`log_request`](BaseHTTPRequestHandler::log_request).
    pub fn log_request(&self, code: u16, size: Option<u64>) {
        self.handler.log_request(self, code, size);
    }

    /// Python's `log_error(format, *args)`: through the handler's
    /// [`log_error`](BaseHTTPRequestHandler::log_error).
    pub fn log_error(&self, message: fmt::Arguments<'_>) {
        self.handler.log_error(self, message);
    }

    /// Python's `log_message(format, *args)`: through the handler's
    /// [`log_message`](BaseHTTPRequestHandler::log_message).
    pub fn log_message(&self, message: fmt::Arguments<'_>) {
        self.handler.log_message(self, message);
    }

    /// The line Python's `log_message` writes (without its newline):
    /// `address - - [date] message`, control characters escaped.
    pub fn format_log_line(&self, message: fmt::Arguments<'_>) -> String {
        format!(
            "{} - - [{}] {}",
            self.address_string(),
            self.log_date_time_string(),
            log::escape_controls(&message.to_string())
        )
    }

    /// Python's `address_string`: the client's host (its IP address; no
    /// reverse lookup, as Python since 3.3).
    pub fn address_string(&self) -> String {
        match &self.client_address {
            Address::Inet(address) => address.ip().to_string(),
            other => other.to_string(),
        }
    }

    /// Python's `version_string`: `server_version sys_version`.
    pub fn version_string(&self) -> String {
        format!(
            "{} {}",
            self.options.server_version, self.options.sys_version
        )
    }

    /// Python's `date_time_string()`: now, in the HTTP date format
    /// (`Thu, 03 Dec 2026 06:35:01 GMT`).
    pub fn date_time_string(&self) -> String {
        httpdate::fmt_http_date(SystemTime::now())
    }

    /// Python's `log_date_time_string`: `03/Dec/2026 06:35:01`, in UTC.
    pub fn log_date_time_string(&self) -> String {
        log::log_date_time_string(SystemTime::now())
    }

    /// Python's `server.server_name`, as the [`HTTPServer`](super::HTTPServer)
    /// recorded it when it bound.
    pub fn server_name(&self) -> &str {
        self.names.server_name()
    }

    /// Python's `server.server_port`.
    pub fn server_port(&self) -> u16 {
        self.names.server_port()
    }

    /// The handler's class attributes.
    pub fn options(&self) -> &HTTPOptions {
        self.options
    }
}
