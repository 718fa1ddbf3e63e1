//! The stream handler that reads HTTP requests and calls a
//! [`BaseHTTPRequestHandler`]: Python's `handle` and `handle_one_request`.
//!
//! A wrapper, not a blanket impl: `impl RequestHandler for F where F: Fn(…)`
//! already covers closures, and a second blanket impl would overlap it.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;

use ::http::header;

use super::body::{Body, BodyTooLarge, Framing};
use super::handler::{BaseHTTPRequestHandler, HTTPOptions};
use super::request::{self, Head, HeadError};
use super::response::{HTTPRequest, ResponseWriter};
use super::server::ServerName;
use crate::handler::deadline::Deadline;
use crate::{Connection, Refusal, RequestHandler, StreamOptions, StreamRequest};

/// Body bytes a handler left unread that are read and dropped to keep the
/// connection; past this it is closed instead.
const DRAIN_LIMIT: u64 = 64 * 1024;

/// A [`BaseHTTPRequestHandler`] as a stream [`RequestHandler`]: what
/// [`HTTPServer`](super::HTTPServer) serves. Each call serves one request;
/// with keep-alive it asks to be called again
/// ([`StreamRequest::serve_again`]), so that on a pool an idle kept
/// connection holds no worker.
pub struct HTTPHandler<H> {
    handler: H,
    options: HTTPOptions,
    pub(crate) names: Arc<ServerName>,
}

impl<H: BaseHTTPRequestHandler> HTTPHandler<H> {
    /// Wraps `handler`, reading its [`options`](BaseHTTPRequestHandler::options) once.
    pub fn new(handler: H) -> Self {
        let options = handler.options();
        HTTPHandler {
            handler,
            options,
            names: Arc::default(),
        }
    }

    /// The wrapped handler.
    pub fn get_ref(&self) -> &H {
        &self.handler
    }
}

impl<H> std::fmt::Debug for HTTPHandler<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HTTPHandler")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<H: BaseHTTPRequestHandler> RequestHandler for HTTPHandler<H> {
    fn options(&self) -> StreamOptions {
        StreamOptions {
            timeout: self.options.timeout,
            disable_nagle_algorithm: self.options.disable_nagle_algorithm,
            // Responses go out through ResponseWriter, which gathers the
            // head with the body itself.
            wbufsize: 0,
            ..StreamOptions::default()
        }
    }

    fn handle(&self, request: &mut StreamRequest<'_>) -> io::Result<()> {
        if handle_one_request(&self.handler, &self.options, &self.names, request)? {
            request.serve_again();
        }
        Ok(())
    }

    /// A connection the server refuses ([`Server::max_connections`](crate::Server::max_connections),
    /// [`Server::max_per_ip`](crate::Server::max_per_ip), a full pool) is
    /// answered `503 Service Unavailable` with `Retry-After: 1`, if its
    /// socket takes it at once.
    fn refused(&self, connection: Option<Connection<'_>>, reason: Refusal) {
        if let Some(connection) = connection {
            answer_unavailable(connection.fd(), reason);
        }
    }
}

/// Writes a 503 for `reason` if the socket takes it without waiting, then
/// reads what the client sent so far: closing a socket with unread bytes
/// sends a reset, which may destroy the answer before the client reads it.
fn answer_unavailable(fd: BorrowedFd<'_>, reason: Refusal) {
    use nix::sys::socket::{recv, send, MsgFlags};
    let body = format!("503 Service Unavailable: {reason}\n");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nDate: {}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        body.len()
    );
    let fd = fd.as_raw_fd();
    let _ = send(
        fd,
        answer.as_bytes(),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
    );
    let mut sink = [0; 4096];
    for _ in 0..16 {
        match recv(fd, &mut sink, MsgFlags::MSG_DONTWAIT) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

/// Python's `handle_one_request`; `true` to keep the connection.
fn handle_one_request(
    handler: &dyn BaseHTTPRequestHandler,
    options: &HTTPOptions,
    names: &ServerName,
    stream: &mut StreamRequest<'_>,
) -> io::Result<bool> {
    let connection = stream.connection;
    let deadline = Deadline::after(options.timeout);
    let head = request::read_head(&mut stream.rfile, &deadline);
    if deadline.is_set() {
        // Back to the per-read timeout for the body and the response.
        connection.set_timeout(options.timeout)?;
    }
    let mut refusal = None;
    let mut timed_out = None;
    let (head, framing) = match head {
        Ok(head) => match framing(&head, options) {
            Ok(framing) => (Some(head), framing),
            Err(refused) => {
                refusal = Some(refused);
                (Some(head), Framing::Empty)
            }
        },
        Err(HeadError::Closed) => return Ok(false),
        Err(HeadError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
            timed_out = Some(e);
            (None, Framing::Empty)
        }
        Err(HeadError::Io(_)) => return Ok(false),
        Err(HeadError::Refused(code, message, line)) => {
            refusal = Some((code, message));
            let head = Head {
                requestline: line,
                command: String::new(),
                path: String::new(),
                request_version: "HTTP/1.0".into(),
                version: (1, 0),
                headers: header::HeaderMap::new(),
            };
            (Some(head), Framing::Empty)
        }
    };
    let head = head.unwrap_or(Head {
        requestline: String::new(),
        command: String::new(),
        path: String::new(),
        request_version: "HTTP/1.0".into(),
        version: (1, 0),
        headers: header::HeaderMap::new(),
    });
    let server_is_1_1 = options.protocol_version.as_str() >= "HTTP/1.1";
    let mut request = HTTPRequest {
        command: head.command,
        path: head.path,
        request_version: head.request_version,
        requestline: head.requestline,
        headers: head.headers,
        rfile: Body::new(&mut stream.rfile, framing, options.max_body_size),
        wfile: ResponseWriter::new(connection),
        client_address: stream.client_address.clone(),
        server: stream.server,
        close_connection: !(head.version >= (1, 1) && server_is_1_1),
        handler,
        options,
        names,
    };
    if let Some(e) = timed_out {
        // Python: log_error("Request timed out: %r"), then close; the
        // client is told, with a status line.
        request.log_error(format_args!("Request timed out: {e}"));
        let _ = request.send_error(408);
        return Ok(false);
    }
    if let Some((code, message)) = refusal {
        let message = (!message.is_empty()).then_some(message.as_str());
        request.send_error_message(code, message, None)?;
        return Ok(false);
    }
    if let Some(connection) = request.headers.get(header::CONNECTION) {
        let connection = connection.as_bytes();
        if connection.eq_ignore_ascii_case(b"close") {
            request.close_connection = true;
        } else if connection.eq_ignore_ascii_case(b"keep-alive") && server_is_1_1 {
            request.close_connection = false;
        }
    }
    let expects_100 = request
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_100
        && server_is_1_1
        && request.request_version.as_str() >= "HTTP/1.1"
        && !handler.handle_expect_100(&mut request)?
    {
        request.flush_headers()?;
        return Ok(false);
    }
    let result = match request.command.as_str() {
        "GET" => handler.do_GET(&mut request),
        "HEAD" => handler.do_HEAD(&mut request),
        "POST" => handler.do_POST(&mut request),
        "PUT" => handler.do_PUT(&mut request),
        "DELETE" => handler.do_DELETE(&mut request),
        "OPTIONS" => handler.do_OPTIONS(&mut request),
        "PATCH" => handler.do_PATCH(&mut request),
        "TRACE" => handler.do_TRACE(&mut request),
        "CONNECT" => handler.do_CONNECT(&mut request),
        _ => handler.do_method(&mut request),
    };
    if let Err(e) = result {
        return answer_failure(&mut request, e).map(|()| false);
    }
    request.wfile.flush()?;
    if let Some(code) = request.wfile.status {
        let has_body = request.command != "HEAD" && code >= 200 && !matches!(code, 204 | 304);
        if has_body && !request.wfile.framed {
            // Neither Content-Length nor Transfer-Encoding: the client
            // reads the body up to end of file. (Python leaves the
            // connection open and the client waiting.)
            request.close_connection = true;
        }
    }
    if !request.close_connection && !request.rfile.discard(DRAIN_LIMIT) {
        request.close_connection = true;
    }
    Ok(!request.close_connection)
}

/// A `do_*` failed: a body too large or malformed is answered (413, 400)
/// if no response was started, a timeout logged (as Python); anything else
/// goes on to the server's `handle_error`.
fn answer_failure(request: &mut HTTPRequest<'_>, e: io::Error) -> io::Result<()> {
    let too_large = e
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<BodyTooLarge>().is_some());
    let started = request.wfile.status.is_some();
    match e.kind() {
        _ if too_large && !started => request.send_error(413),
        io::ErrorKind::InvalidData if !started => {
            request.send_error_message(400, Some(&format!("Bad request body ({e})")), None)
        }
        io::ErrorKind::TimedOut => {
            request.log_error(format_args!("Request timed out: {e}"));
            Ok(())
        }
        _ => Err(e),
    }
}

/// How the request's body is framed, or why it is refused: Python does
/// not read bodies; this refuses what would let a request smuggle another.
fn framing(head: &Head, options: &HTTPOptions) -> Result<Framing, (u16, String)> {
    let headers = &head.headers;
    let lengths: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    let encodings: Vec<_> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    if !encodings.is_empty() {
        if !lengths.is_empty() {
            return Err((400, "Content-Length with Transfer-Encoding".into()));
        }
        if head.version < (1, 1) {
            return Err((400, "Transfer-Encoding in an HTTP/1.0 request".into()));
        }
        let codings: Vec<String> = encodings
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        return match codings.as_slice() {
            [only] if only == "chunked" => Ok(Framing::Chunked(None)),
            [.., last] if last == "chunked" => Err((501, "Unsupported Transfer-Encoding".into())),
            _ => Err((400, "Bad Transfer-Encoding".into())),
        };
    }
    let mut length = None;
    for value in lengths {
        let digits = value.as_bytes();
        if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
            return Err((400, "Bad Content-Length".into()));
        }
        let value: u64 = value
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if length.is_some_and(|l| l != value) {
            return Err((400, "Conflicting Content-Length".into()));
        }
        length = Some(value);
    }
    match length {
        Some(length) if length > options.max_body_size => Err((413, String::new())),
        Some(0) | None => Ok(Framing::Empty),
        Some(length) => Ok(Framing::Length(length)),
    }
}
