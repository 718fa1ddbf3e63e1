//! Length-prefixed frames and header+body messages: the Python socket
//! tutorials' answer to 粘包.
//!
//! TCP carries a stream of bytes, not messages: two quick `send`s may arrive
//! as one `recv`, and one `send` may arrive as two. This is 粘包 ("sticky
//! packets"). The cure is to say, before each message, how long it is:
//!
//! | Python (the tutorials)                               | Rust                                    |
//! |------------------------------------------------------|-----------------------------------------|
//! | `struct.pack('!I', n)` + payload (the message-and-file transceiver's hand-written `pack`) | [`FrameCodec`] with [`LengthPrefix::BigEndianU32`] |
//! | `struct.pack('i', n)` + payload (the remote-command server's first fix: output length, then output) | [`FrameCodec`] with [`LengthPrefix::NativeI32`]    |
//! | `struct.pack('i', len(h))` + `json.dumps(header)` + body (the remote-command server's final version) | [`MessageCodec`] and [`Header`] |
//!
//! Every length read from the peer is checked against a maximum *before*
//! anything is allocated for it, so a peer that announces four gigabytes
//! gets an error, not an out-of-memory abort.
//!
//! # Example: two sends, one recv
//!
//! ```
//! use socketserver::framing::FrameCodec;
//! use std::io::Cursor;
//!
//! let codec = FrameCodec::default();
//! let mut wire = Vec::new();
//! codec.write_frame(&mut wire, b"hello")?;
//! codec.write_frame(&mut wire, "世界".as_bytes())?;
//!
//! // The receiver gets both frames glued together, yet reads them apart.
//! let mut received = Cursor::new(wire);
//! assert_eq!(codec.read_frame(&mut received)?, Some(b"hello".to_vec()));
//! assert_eq!(codec.read_frame(&mut received)?, Some("世界".as_bytes().to_vec()));
//! assert_eq!(codec.read_frame(&mut received)?, None);
//! # Ok::<(), socketserver::framing::FrameError>(())
//! ```

use std::fmt;
use std::io::{self, Read, Write};

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// [`FrameCodec`]'s default maximum frame: 16 MiB. Large enough for any
/// message a chat or command protocol sends, small enough that a hostile or
/// confused peer cannot make a server hold much memory per connection; bulk
/// data belongs in a [`MessageCodec`] body or a streamed file.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// [`MessageCodec`]'s default maximum JSON header: 64 KiB, a thousand times
/// the remote-command server's header.
pub const DEFAULT_MAX_HEADER: usize = 64 * 1024;

/// [`MessageCodec`]'s default maximum body: 1 GiB, held in memory by
/// [`MessageCodec::read_message`].
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024 * 1024;

/// Writes no larger than this go out in one `write_all`, header and payload
/// together, so that Nagle's algorithm does not hold back the second half.
const COALESCE: usize = 64 * 1024;

/// How a frame's 4-byte length is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LengthPrefix {
    /// Unsigned 32-bit big-endian, Python's `struct.pack('!I', n)` and the
    /// file transceiver's hand-written `pack`: lengths from 0 to 4294967295.
    /// The default.
    #[default]
    BigEndianU32,
    /// Signed 32-bit in the machine's byte order, Python's
    /// `struct.pack('i', n)` as the tutorials' remote-command server uses it:
    /// little-endian on x86 and ARM, so both ends must share a byte order.
    /// Lengths from 0 to 2147483647; a negative length read is an error.
    NativeI32,
}

impl LengthPrefix {
    /// The largest length this prefix can carry.
    fn limit(self) -> u64 {
        match self {
            LengthPrefix::BigEndianU32 => u32::MAX.into(),
            LengthPrefix::NativeI32 => i32::MAX as u64,
        }
    }
}

/// Length-prefixed frames: a 4-byte length, then that many bytes.
///
/// ```
/// use socketserver::framing::{FrameCodec, LengthPrefix};
/// let codec = FrameCodec::new(LengthPrefix::NativeI32).with_max_frame(1024);
/// let mut wire = Vec::new();
/// codec.write_frame(&mut wire, b"ls -l")?;
/// assert_eq!(wire[..4], 5i32.to_ne_bytes());
/// assert_eq!(codec.read_frame(&mut &wire[..])?.as_deref(), Some(&b"ls -l"[..]));
/// # Ok::<(), socketserver::framing::FrameError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    /// How the length is encoded. Defaults to [`LengthPrefix::BigEndianU32`].
    pub prefix: LengthPrefix,
    /// The largest payload written or accepted. Defaults to
    /// [`DEFAULT_MAX_FRAME`].
    pub max_frame: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(LengthPrefix::default())
    }
}

impl FrameCodec {
    /// A codec for `prefix` with the default maximum frame.
    pub fn new(prefix: LengthPrefix) -> Self {
        FrameCodec {
            prefix,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }

    /// Sets the largest payload written or accepted.
    pub fn with_max_frame(self, max_frame: usize) -> Self {
        FrameCodec { max_frame, ..self }
    }

    /// The 4 bytes announcing a payload of `len` bytes.
    ///
    /// Fails with [`FrameError::Oversize`] if `len` exceeds `max_frame` or
    /// what the prefix can carry.
    pub fn encode_length(&self, len: usize) -> Result<[u8; 4], FrameError> {
        let max = self.prefix.limit().min(self.max_frame as u64);
        if len as u64 > max {
            return Err(FrameError::Oversize {
                len: len as u64,
                max,
            });
        }
        // Both conversions are lossless: `len` was checked against the limit.
        Ok(match self.prefix {
            LengthPrefix::BigEndianU32 => (len as u32).to_be_bytes(),
            LengthPrefix::NativeI32 => (len as i32).to_ne_bytes(),
        })
    }

    /// Writes one frame: the length, then `payload`.
    pub fn write_frame<W: Write + ?Sized>(
        &self,
        w: &mut W,
        payload: &[u8],
    ) -> Result<(), FrameError> {
        write_prefixed(w, &self.encode_length(payload.len())?, payload)
    }

    /// Reads a frame's length.
    ///
    /// Returns `Ok(None)` if the stream ends before the first byte (the peer
    /// closed cleanly between frames), [`FrameError::Truncated`] if it ends
    /// inside the 4 bytes, [`FrameError::Negative`] for a negative
    /// [`NativeI32`](LengthPrefix::NativeI32) and [`FrameError::Oversize`]
    /// above `max_frame`. Nothing past the 4 bytes is read.
    pub fn read_length<R: Read + ?Sized>(&self, r: &mut R) -> Result<Option<usize>, FrameError> {
        let mut bytes = [0; 4];
        let got = read_full(r, &mut bytes)?;
        if got == 0 {
            return Ok(None);
        }
        if got < bytes.len() {
            return Err(FrameError::Truncated {
                expected: 4,
                got: got as u64,
            });
        }
        let len = match self.prefix {
            LengthPrefix::BigEndianU32 => u32::from_be_bytes(bytes).into(),
            LengthPrefix::NativeI32 => {
                let n = i32::from_ne_bytes(bytes);
                u64::try_from(n).map_err(|_| FrameError::Negative(n.into()))?
            }
        };
        check_limit(len, self.max_frame as u64).map(Some)
    }

    /// Reads one frame's payload; `Ok(None)` at a clean end of stream.
    ///
    /// The length is checked against `max_frame` before anything is
    /// allocated, and the buffer grows with the bytes that actually arrive,
    /// so a peer that announces more than it sends costs no more memory than
    /// it sent. Fails with [`FrameError::Truncated`] if the stream ends early.
    pub fn read_frame<R: Read + ?Sized>(&self, r: &mut R) -> Result<Option<Vec<u8>>, FrameError> {
        match self.read_length(r)? {
            Some(len) => read_body(r, len).map(Some),
            None => Ok(None),
        }
    }
}

/// The remote-command server's message header, `{"filename": "a.txt",
/// "total_size": N, "md5": "…"}`.
///
/// Fields other than these are kept in [`extra`](Header::extra).
///
/// ```
/// use socketserver::framing::Header;
/// let header: Header = serde_json::from_str(r#"{"total_size": 3, "status": 200}"#)?;
/// assert_eq!(header.total_size, 3);
/// assert_eq!(header.filename, None);
/// assert_eq!(header.extra["status"], 200);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Header {
    /// The file the body holds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The body's length in bytes.
    pub total_size: u64,
    /// The body's MD5, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// The body's SHA-256, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Any other fields (`"error"`, `"status"`, …), written after the named
    /// ones in key order.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A header for `body`: its `total_size` and `md5` (lowercase hex).
///
/// ```
/// let header = socketserver::framing::header_for(b"hello");
/// assert_eq!(header.total_size, 5);
/// assert_eq!(header.md5.as_deref(), Some("5d41402abc4b2a76b9719d911017c592"));
/// ```
pub fn header_for(body: &[u8]) -> Header {
    Header {
        total_size: body.len() as u64,
        md5: Some(Checksum::Md5.digest_hex(body)),
        ..Header::default()
    }
}

/// Header+body messages, the final protocol of the tutorials' remote-command
/// server: a length-prefixed JSON header, then
/// [`total_size`](Header::total_size) bytes of body.
///
/// Headers are written exactly as Python's `json.dumps(header).encode()`
/// writes them (`", "` and `": "` separators, non-ASCII as `\uXXXX`), so the
/// bytes match the Python remote-command server's byte for byte.
///
/// ```
/// use socketserver::framing::{header_for, MessageCodec};
/// let codec = MessageCodec::default();
/// let mut wire = Vec::new();
/// codec.write_message(&mut wire, &header_for(b"total 0\n"), b"total 0\n")?;
/// let (header, body) = codec.read_message(&mut &wire[..])?.unwrap();
/// assert_eq!(body, b"total 0\n");
/// assert_eq!(header.total_size, 8);
/// # Ok::<(), socketserver::framing::FrameError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageCodec {
    /// How the header's length is encoded. Defaults to
    /// [`LengthPrefix::NativeI32`], the remote-command server's
    /// `struct.pack('i', …)`.
    pub prefix: LengthPrefix,
    /// The largest JSON header written or accepted. Defaults to
    /// [`DEFAULT_MAX_HEADER`].
    pub max_header: usize,
    /// The largest body accepted. Defaults to [`DEFAULT_MAX_BODY`] (1 GiB):
    /// [`read_message`](MessageCodec::read_message) holds the body in memory.
    pub max_body: u64,
}

impl Default for MessageCodec {
    fn default() -> Self {
        MessageCodec::new(LengthPrefix::NativeI32)
    }
}

impl MessageCodec {
    /// A codec for `prefix` with the default maxima.
    pub fn new(prefix: LengthPrefix) -> Self {
        MessageCodec {
            prefix,
            max_header: DEFAULT_MAX_HEADER,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    fn header_codec(&self) -> FrameCodec {
        FrameCodec::new(self.prefix).with_max_frame(self.max_header)
    }

    /// The header's length prefix and JSON, ready to send.
    fn encode_header(&self, header: &Header) -> Result<Vec<u8>, FrameError> {
        let mut json = Vec::new();
        header
            .serialize(&mut serde_json::Serializer::with_formatter(
                &mut json,
                PythonFormatter,
            ))
            .map_err(|e| FrameError::Malformed(format!("header cannot be encoded: {e}")))?;
        let mut out = self.header_codec().encode_length(json.len())?.to_vec();
        out.append(&mut json);
        Ok(out)
    }

    /// Writes a header alone; the caller then writes its `total_size` body
    /// bytes (streaming a file, say).
    pub fn write_header<W: Write + ?Sized>(
        &self,
        w: &mut W,
        header: &Header,
    ) -> Result<(), FrameError> {
        Ok(w.write_all(&self.encode_header(header)?)?)
    }

    /// Writes a header and its body.
    ///
    /// `header.total_size` must equal `body.len()` ([`header_for`] fills it
    /// in); otherwise nothing is written and the result is
    /// [`FrameError::Malformed`].
    pub fn write_message<W: Write + ?Sized>(
        &self,
        w: &mut W,
        header: &Header,
        body: &[u8],
    ) -> Result<(), FrameError> {
        if header.total_size != body.len() as u64 {
            return Err(FrameError::Malformed(format!(
                "header announces {} bytes but the body has {}",
                header.total_size,
                body.len()
            )));
        }
        let head = self.encode_header(header)?;
        write_prefixed(w, &head, body)
    }

    /// Reads a header; `Ok(None)` at a clean end of stream.
    ///
    /// Fails with [`FrameError::Oversize`] if the header is longer than
    /// `max_header` (checked before allocating) or announces a body longer
    /// than `max_body`, and [`FrameError::Malformed`] if it is not the JSON
    /// of a [`Header`].
    pub fn read_header<R: Read + ?Sized>(&self, r: &mut R) -> Result<Option<Header>, FrameError> {
        let Some(json) = self.header_codec().read_frame(r)? else {
            return Ok(None);
        };
        let header: Header = serde_json::from_slice(&json)
            .map_err(|e| FrameError::Malformed(format!("bad json header: {e}")))?;
        check_limit(header.total_size, self.max_body)?;
        Ok(Some(header))
    }

    /// Reads a header and its whole body; `Ok(None)` at a clean end of
    /// stream. Fails with [`FrameError::Truncated`] if the body ends early.
    pub fn read_message<R: Read + ?Sized>(
        &self,
        r: &mut R,
    ) -> Result<Option<(Header, Vec<u8>)>, FrameError> {
        let Some(header) = self.read_header(r)? else {
            return Ok(None);
        };
        let len = check_limit(header.total_size, usize::MAX as u64)?;
        let body = read_body(r, len)?;
        Ok(Some((header, body)))
    }
}

/// Writes `head` then `body`, in one `write_all` when small.
fn write_prefixed<W: Write + ?Sized>(
    w: &mut W,
    head: &[u8],
    body: &[u8],
) -> Result<(), FrameError> {
    if head.len() + body.len() <= COALESCE {
        w.write_all(&[head, body].concat())?;
    } else {
        w.write_all(head)?;
        w.write_all(body)?;
    }
    Ok(())
}

fn check_limit(len: u64, max: u64) -> Result<usize, FrameError> {
    match usize::try_from(len) {
        Ok(n) if len <= max => Ok(n),
        _ => Err(FrameError::Oversize { len, max }),
    }
}

/// Reads until `buf` is full or the stream ends; returns the count read.
fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads exactly `len` bytes. Allocating `len` at once would be safe (it is
/// already within the maximum) but wasteful when the peer lies: instead the
/// buffer doubles as bytes arrive, from [`COALESCE`] and capped at `len`, so
/// it never holds more than `len` nor more than twice what really arrived.
fn read_body<R: Read + ?Sized>(r: &mut R, len: usize) -> Result<Vec<u8>, FrameError> {
    let mut body = Vec::new();
    while body.len() < len {
        let filled = body.len();
        let target = len.min(filled.max(COALESCE / 2) * 2);
        body.reserve_exact(target - filled);
        body.resize(target, 0);
        let got = read_full(r, &mut body[filled..])?;
        if filled + got < target {
            return Err(FrameError::Truncated {
                expected: len as u64,
                got: (filled + got) as u64,
            });
        }
    }
    Ok(body)
}

/// Writes JSON as Python's `json.dumps` does by default: `", "` and `": "`
/// separators and `ensure_ascii`, so that headers match the Python
/// remote-command server's bytes.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: Write + ?Sized>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        w.write_all(if first { b"" } else { b", " })
    }

    fn begin_object_key<W: Write + ?Sized>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        w.write_all(if first { b"" } else { b", " })
    }

    fn begin_object_value<W: Write + ?Sized>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: Write + ?Sized>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Python escapes everything outside printable ASCII, DEL included,
        // as UTF-16 code units.
        for c in fragment.chars() {
            if matches!(c, ' '..='~') {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Why a frame or message could not be written or read.
#[derive(Debug)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream failed.
    Io(io::Error),
    /// A length above the allowed maximum (or above what the prefix can
    /// carry), refused before anything was allocated for it.
    Oversize {
        /// The length announced or asked for.
        len: u64,
        /// The maximum in force.
        max: u64,
    },
    /// The stream ended inside a length, header or body.
    Truncated {
        /// Bytes announced.
        expected: u64,
        /// Bytes received before the end.
        got: u64,
    },
    /// A negative [`NativeI32`](LengthPrefix::NativeI32) length.
    Negative(i64),
    /// A header that is not valid JSON, or a message that contradicts its
    /// header.
    Malformed(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
            FrameError::Oversize { len, max } => write!(
                f,
                "frame of {len} bytes exceeds the maximum of {max} (raise the limit if the peer is trusted)"
            ),
            FrameError::Truncated { expected, got } => write!(
                f,
                "stream ended after {got} of {expected} bytes (the peer closed mid-message)"
            ),
            FrameError::Negative(n) => write!(
                f,
                "negative length {n} (the peer speaks another protocol or byte order)"
            ),
            FrameError::Malformed(reason) => write!(f, "malformed message: {reason}"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

impl From<FrameError> for io::Error {
    fn from(e: FrameError) -> Self {
        let kind = match e {
            FrameError::Io(e) => return e,
            FrameError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

/// A checksum algorithm for message bodies and files.
///
/// ```
/// use socketserver::framing::Checksum;
/// let mut hasher = Checksum::Sha256.hasher();
/// hasher.update(b"hel");
/// hasher.update(b"lo");
/// assert_eq!(hasher.finish_hex(), Checksum::Sha256.digest_hex(b"hello"));
/// assert_eq!(Checksum::parse("MD5"), Some(Checksum::Md5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checksum {
    /// MD5, what the tutorials use (Python's `hashlib.md5`). The default. Catches
    /// corruption, not tampering.
    #[default]
    Md5,
    /// SHA-256 (Python's `hashlib.sha256`).
    Sha256,
}

impl Checksum {
    /// The algorithm's name on the wire: `"md5"` or `"sha256"`.
    pub fn name(&self) -> &'static str {
        match self {
            Checksum::Md5 => "md5",
            Checksum::Sha256 => "sha256",
        }
    }

    /// The algorithm named `name` (as [`name`](Checksum::name) spells it, any
    /// case).
    pub fn parse(name: &str) -> Option<Self> {
        [Checksum::Md5, Checksum::Sha256]
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// A hasher to feed data in pieces.
    pub fn hasher(&self) -> Hasher {
        Hasher(match self {
            Checksum::Md5 => State::Md5(Md5::new()),
            Checksum::Sha256 => State::Sha256(Sha256::new()),
        })
    }

    /// The checksum of `data`, lowercase hex (Python's `hexdigest()`).
    pub fn digest_hex(&self, data: &[u8]) -> String {
        let mut hasher = self.hasher();
        hasher.update(data);
        hasher.finish_hex()
    }
}

/// A checksum being computed; from [`Checksum::hasher`].
pub struct Hasher(State);

enum State {
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            State::Md5(h) => h.update(data),
            State::Sha256(h) => h.update(data),
        }
    }

    /// The checksum of everything fed, lowercase hex.
    pub fn finish_hex(self) -> String {
        let bytes = match self.0 {
            State::Md5(h) => h.finalize().to_vec(),
            State::Sha256(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithm = match self.0 {
            State::Md5(_) => Checksum::Md5,
            State::Sha256(_) => Checksum::Sha256,
        };
        f.debug_tuple("Hasher").field(&algorithm).finish()
    }
}
