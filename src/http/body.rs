//! The request body: Python leaves `rfile` to the handler, which must read
//! exactly `Content-Length` bytes itself and cannot read a chunked body at
//! all. [`Body`] reads up to the end of this request's body — by
//! `Content-Length` or decoding `Transfer-Encoding: chunked` — and no
//! further, so the next request on a kept connection starts where it
//! should.

use std::fmt;
use std::io::{self, BufRead, Read};

/// The body was longer than the handler's
/// [`max_body_size`](super::HTTPOptions::max_body_size): the error a
/// [`Body`] read fails with (inside an [`io::Error`] of kind `InvalidData`).
/// If no response was started, the server answers 413.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTooLarge {
    /// The limit that was passed.
    pub limit: u64,
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request body larger than {} bytes", self.limit)
    }
}

impl std::error::Error for BodyTooLarge {}

/// The longest chunk-size line accepted (size, extensions, CRLF).
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (no `Content-Length`, no `Transfer-Encoding`).
    Empty,
    /// `Content-Length` bytes left.
    Length(u64),
    /// Chunked: bytes left in the current chunk; `None` before a size line.
    Chunked(Option<u64>),
    /// The body has been read to its end (for chunked, trailers included).
    Done,
}

/// The request body, as a reader: `Content-Length` bytes, or a chunked
/// body decoded; end of file at the body's end. Python's `self.rfile` as a
/// handler reads a body from it
/// (`self.rfile.read(int(self.headers['Content-Length']))`).
pub struct Body<'r> {
    rfile: &'r mut dyn BufRead,
    framing: Framing,
    read: u64,
    limit: u64,
}

impl fmt::Debug for Body<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("framing", &self.framing)
            .field("read", &self.read)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl<'r> Body<'r> {
    pub(crate) fn new(rfile: &'r mut dyn BufRead, framing: Framing, limit: u64) -> Self {
        Body {
            rfile,
            framing,
            read: 0,
            limit,
        }
    }

    /// Reads the whole body (Python:
    /// `self.rfile.read(int(self.headers['Content-Length']))`).
    ///
    /// # Errors
    ///
    /// [`BodyTooLarge`] past the limit, `InvalidData` for a malformed
    /// chunked body, `UnexpectedEof` if the client left early.
    pub fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        self.read_to_end(&mut body)?;
        Ok(body)
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        matches!(self.framing, Framing::Empty | Framing::Done)
    }

    /// Reads and drops what is left of the body, up to `at_most` bytes;
    /// `false` if more was left (the connection cannot be kept).
    pub(crate) fn discard(&mut self, at_most: u64) -> bool {
        let mut sink = io::sink();
        match io::copy(&mut self.by_ref().take(at_most), &mut sink) {
            Ok(_) => self.is_done(),
            Err(_) => false,
        }
    }

    fn count(&mut self, n: usize) -> io::Result<usize> {
        self.read += n as u64;
        if self.read > self.limit {
            self.framing = Framing::Done;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                BodyTooLarge { limit: self.limit },
            ));
        }
        Ok(n)
    }

    /// Reads one CRLF-terminated line of at most `max` bytes.
    fn line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        (&mut self.rfile)
            .take(max as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Err(if line.len() > max {
                invalid("chunk line too long")
            } else {
                io::Error::new(io::ErrorKind::UnexpectedEof, "body cut short")
            });
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(line)
    }

    /// Reads a chunk-size line: hex digits, then optional `;extensions`.
    fn chunk_size(&mut self) -> io::Result<u64> {
        let line = self.line(MAX_CHUNK_LINE)?;
        let digits = line.split(|&b| b == b';').next().unwrap_or_default();
        let digits = digits.strip_suffix(b" ").unwrap_or(digits);
        // At most 15 hex digits: no overflow, and no `+`, `-` or `0x`
        // that a lenient parser would take (request smuggling).
        if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(invalid("bad chunk size"));
        }
        let text = std::str::from_utf8(digits).map_err(|_| invalid("bad chunk size"))?;
        u64::from_str_radix(text, 16).map_err(|_| invalid("bad chunk size"))
    }

    /// Reads at most `left` bytes (what the framing still allows) into
    /// `buf`; end of file here means the client left mid-body.
    fn read_within(&mut self, buf: &mut [u8], left: u64) -> io::Result<usize> {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.rfile.read(&mut buf[..want])?;
        if n == 0 {
            self.framing = Framing::Done;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "body cut short",
            ));
        }
        Ok(n)
    }

    fn trailers(&mut self) -> io::Result<()> {
        for _ in 0..=super::request::MAX_HEADERS {
            if self.line(super::request::MAX_LINE)?.is_empty() {
                return Ok(());
            }
        }
        Err(invalid("too many trailers"))
    }
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.framing {
                Framing::Empty | Framing::Done => return Ok(0),
                Framing::Length(0) => self.framing = Framing::Done,
                Framing::Length(left) => {
                    let n = self.read_within(buf, left)?;
                    self.framing = Framing::Length(left - n as u64);
                    return self.count(n);
                }
                Framing::Chunked(None) => {
                    let size = self.chunk_size().inspect_err(|_| {
                        self.framing = Framing::Done;
                    })?;
                    if size == 0 {
                        self.framing = Framing::Done;
                        self.trailers()?;
                        return Ok(0);
                    }
                    self.framing = Framing::Chunked(Some(size));
                }
                Framing::Chunked(Some(0)) => {
                    if !self.line(2).is_ok_and(|l| l.is_empty()) {
                        self.framing = Framing::Done;
                        return Err(invalid("chunk not followed by CRLF"));
                    }
                    self.framing = Framing::Chunked(None);
                }
                Framing::Chunked(Some(left)) => {
                    let n = self.read_within(buf, left)?;
                    self.framing = Framing::Chunked(Some(left - n as u64));
                    return self.count(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(framing: Framing, input: &[u8], limit: u64) -> io::Result<Vec<u8>> {
        let mut rfile = io::BufReader::new(input);
        Body::new(&mut rfile, framing, limit).read_all()
    }

    #[test]
    fn content_length_stops_at_the_body_end() {
        assert_eq!(read(Framing::Length(3), b"abcdef", 10).unwrap(), b"abc");
        assert_eq!(
            read(Framing::Length(9), b"abc", 10).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn chunked_decoded_with_extensions_and_trailers() {
        let input = b"4;x=y\r\nWiki\r\n5\r\npedia\r\n0\r\nT: 1\r\n\r\nNEXT";
        assert_eq!(
            read(Framing::Chunked(None), input, 100).unwrap(),
            b"Wikipedia"
        );
    }

    #[test]
    fn bad_chunk_sizes_refused() {
        for input in [
            &b"-1\r\nx\r\n0\r\n\r\n"[..],
            b"+4\r\nWiki\r\n0\r\n\r\n",
            b"0x4\r\nWiki\r\n0\r\n\r\n",
            b"fffffffffffffffff\r\n",
            b"zz\r\n",
            b"4\r\nWikiXX0\r\n\r\n",
        ] {
            let err = read(Framing::Chunked(None), input, 100).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{input:?}");
        }
    }

    #[test]
    fn limit_is_enforced() {
        let err = read(Framing::Length(10), b"0123456789", 4).unwrap_err();
        assert!(err
            .get_ref()
            .is_some_and(|e| e.downcast_ref::<BodyTooLarge>().is_some()));
    }
}
