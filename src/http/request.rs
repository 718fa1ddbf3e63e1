//! Reading and parsing a request head: Python's `parse_request` with its
//! limits, on httparse, and with an answer that has a status line for
//! every refusal.

use std::io::{self, BufRead, BufReader};

use ::http::header::{HeaderMap, HeaderName, HeaderValue};

use super::deadline::Deadline;
use crate::Connection;

/// Python's `readline(65537)` limit: a request line or a header line longer
/// than this is refused (414, 431).
pub(crate) const MAX_LINE: usize = 65536;
/// Python's `http.client._MAXHEADERS`: more header lines than this → 431.
pub(crate) const MAX_HEADERS: usize = 100;
/// Blank lines tolerated before a request line (RFC 9112 §2.2 asks to
/// ignore at least one, left over from a previous body's CRLF).
const MAX_LEADING_BLANK_LINES: usize = 4;

/// Why a head could not be read or parsed, with the status that answers
/// it.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The connection ended or failed before a single byte of the request:
    /// the keep-alive ending normally, no answer.
    Closed,
    /// The connection failed partway (reset, timeout): `TimedOut` is
    /// answered with 408, the rest not at all.
    Io(io::Error),
    /// A refusal: status, short message, and the request line as far as
    /// known (for the log).
    Refused(u16, String, String),
}

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) requestline: String,
    pub(crate) command: String,
    pub(crate) path: String,
    pub(crate) request_version: String,
    pub(crate) version: (u32, u32),
    pub(crate) headers: HeaderMap,
}

enum Line {
    Complete,
    Eof,
    TooLong,
}

/// Reads one line into `out` (with its `\n`), at most `max + 1` bytes.
fn read_line(
    rfile: &mut BufReader<Connection<'_>>,
    out: &mut Vec<u8>,
    max: usize,
    deadline: &Deadline,
) -> io::Result<Line> {
    loop {
        if rfile.buffer().is_empty() {
            deadline.before_read(rfile.get_ref())?;
        }
        let available = match rfile.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(Line::Eof);
        }
        let room = max + 1 - out.len();
        let (take, complete) = match available.iter().take(room).position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len().min(room), false),
        };
        out.extend_from_slice(&available[..take]);
        rfile.consume(take);
        if complete {
            return Ok(if out.len() > max {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
        if out.len() > max {
            return Ok(Line::TooLong);
        }
    }
}

/// Reads a request head — request line, header lines, blank line — within
/// `deadline`, and parses it.
pub(crate) fn read_head(
    rfile: &mut BufReader<Connection<'_>>,
    deadline: &Deadline,
) -> Result<Head, HeadError> {
    let mut line = Vec::with_capacity(256);
    let mut blank = 0;
    loop {
        line.clear();
        match read_line(rfile, &mut line, MAX_LINE, deadline) {
            Err(e) if line.is_empty() => {
                return Err(match e.kind() {
                    io::ErrorKind::TimedOut => HeadError::Io(e),
                    _ => HeadError::Closed,
                })
            }
            Err(e) => return Err(HeadError::Io(e)),
            Ok(Line::Eof) if line.is_empty() => return Err(HeadError::Closed),
            Ok(Line::Eof) => return Err(refused(400, "Bad request syntax", &line)),
            Ok(Line::TooLong) => {
                return Err(HeadError::Refused(414, String::new(), String::new()));
            }
            Ok(Line::Complete) => {}
        }
        if line == b"\r\n" || line == b"\n" {
            blank += 1;
            if blank > MAX_LEADING_BLANK_LINES {
                return Err(refused(400, "Bad request syntax", &line));
            }
            continue;
        }
        break;
    }
    let requestline = String::from_utf8_lossy(trim_eol(&line)).into_owned();
    // The header block, kept whole for httparse.
    let mut block = Vec::with_capacity(512);
    let mut count = 0;
    loop {
        let start = block.len();
        match read_line(rfile, &mut block, start + MAX_LINE, deadline) {
            Err(e) => return Err(HeadError::Io(e)),
            Ok(Line::Eof) => return Err(refused(400, "Bad request syntax", &line)),
            Ok(Line::TooLong) => {
                return Err(HeadError::Refused(
                    431,
                    "Line too long".into(),
                    requestline.clone(),
                ))
            }
            Ok(Line::Complete) => {}
        }
        let this = &block[start..];
        if this == b"\r\n" || this == b"\n" {
            break;
        }
        count += 1;
        if count > MAX_HEADERS {
            return Err(HeadError::Refused(
                431,
                "Too many headers".into(),
                requestline.clone(),
            ));
        }
    }
    parse(requestline, &block, count)
}

fn refused(code: u16, message: &str, line: &[u8]) -> HeadError {
    HeadError::Refused(
        code,
        message.into(),
        String::from_utf8_lossy(trim_eol(line)).into_owned(),
    )
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Python's `parse_request`, on a request line and its header block.
fn parse(requestline: String, block: &[u8], count: usize) -> Result<Head, HeadError> {
    let bad = |code: u16, message: String| HeadError::Refused(code, message, requestline.clone());
    let words: Vec<&str> = requestline.split(' ').collect();
    if words.len() != 3 || words.iter().any(|w| w.is_empty()) {
        return Err(bad(
            400,
            format!("Bad request syntax ({})", py_repr(&requestline)),
        ));
    }
    let (command, target, request_version) = (words[0], words[1], words[2]);
    let version = parse_version(request_version).ok_or_else(|| {
        bad(
            400,
            format!("Bad request version ({})", py_repr(request_version)),
        )
    })?;
    if version.0 >= 2 {
        return Err(bad(
            505,
            format!("Invalid HTTP version ({})", &request_version[5..]),
        ));
    }
    if version.0 != 1 {
        return Err(bad(
            400,
            format!("Bad request version ({})", py_repr(request_version)),
        ));
    }
    if ::http::Method::from_bytes(command.as_bytes()).is_err() {
        return Err(bad(
            400,
            format!("Bad request syntax ({})", py_repr(&requestline)),
        ));
    }
    if target
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b >= 0x7f)
    {
        return Err(bad(
            400,
            format!("Bad request syntax ({})", py_repr(&requestline)),
        ));
    }
    // gh-87389 (CVE-2021-28861): `//host/…` would later be taken for a
    // network path; collapse the leading slashes as Python does.
    let path = if target.starts_with("//") {
        format!("/{}", target.trim_start_matches('/'))
    } else {
        target.to_owned()
    };
    let mut parsed = vec![httparse::EMPTY_HEADER; count];
    let headers = match httparse::parse_headers(block, &mut parsed) {
        Ok(httparse::Status::Complete((_, headers))) => headers,
        _ => return Err(bad(400, "Bad header syntax".into())),
    };
    let mut map = HeaderMap::with_capacity(headers.len());
    for header in headers {
        let name = HeaderName::from_bytes(header.name.as_bytes());
        let value = HeaderValue::from_bytes(header.value);
        match (name, value) {
            (Ok(name), Ok(value)) => {
                map.append(name, value);
            }
            _ => return Err(bad(400, "Bad header syntax".into())),
        }
    }
    Ok(Head {
        command: command.to_owned(),
        path,
        request_version: request_version.to_owned(),
        version,
        headers: map,
        requestline,
    })
}

/// Python's `repr` of a string, as its error messages quote the request:
/// single quotes, backslash escapes for quotes, backslashes and controls.
pub(crate) fn py_repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `HTTP/<digits>.<digits>`, at most 10 digits each (gh-103204): Python's
/// version check, which refuses signs, underscores and spaces that `int()`
/// would take.
pub(crate) fn parse_version(word: &str) -> Option<(u32, u32)> {
    let number = word.strip_prefix("HTTP/")?;
    let (major, minor) = number.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_python_reads_them() {
        assert_eq!(parse_version("HTTP/1.1"), Some((1, 1)));
        assert_eq!(parse_version("HTTP/2.0"), Some((2, 0)));
        for bad in [
            "HTTP/1.-1",
            "HTTP/+1.1",
            "HTTP/1_1.1",
            "HTTP/11111111111.1",
            "HTTP/1.11111111111",
            "http/1.1",
            "HTTP/1",
            "HTTP/٣.٣",
        ] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_and_collapses_leading_slashes() {
        let head = parse(
            "GET //evil.com/x HTTP/1.1".into(),
            b"Host: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
            3,
        )
        .unwrap();
        assert_eq!(head.path, "/evil.com/x");
        assert_eq!(head.headers.get_all("X-A").iter().count(), 2);
    }

    #[test]
    fn refusals() {
        let code = |line: &str| match parse(line.into(), b"\r\n", 0) {
            Err(HeadError::Refused(code, ..)) => code,
            _ => 0,
        };
        assert_eq!(code("GET / HTTP/2.0"), 505);
        assert_eq!(code("GET / HTTP/0.9"), 400);
        assert_eq!(code("GET /"), 400);
        assert_eq!(code("GET  / HTTP/1.1"), 400);
        assert_eq!(code("G(T / HTTP/1.1"), 400);
        assert_eq!(code("GET /\x01 HTTP/1.1"), 400);
    }
}
