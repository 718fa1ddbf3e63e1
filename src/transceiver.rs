//! The Python socket tutorial's `Transceiver` class: messages and files over
//! one stream, wire compatible with that Python class.
//!
//! The protocol, as the Python class defines it:
//!
//! - a **message** is a 4-byte big-endian length (the class's hand-written
//!   `pack`, Python's `struct.pack('!I', n)`), then that many bytes of UTF-8;
//! - a **file** is a message `"name,length"`, then exactly `length` raw bytes.
//!
//! Between Rust peers a file may be *verified*: the header message becomes
//! `"name,length,<algorithm>:<hex>"` (`md5` or `sha256`) and the receiver
//! answers with a message, `"ok"` or `"error: <reason>"`. A Python peer (the
//! tutorial's class) never sends the third field and never reads a reply, and
//! it gets none.
//!
//! A received file is streamed to a temporary file in [`Transceiver::dir`]
//! and renamed into place only once it is complete (and its checksum, if
//! sent, matches): an interrupted upload leaves nothing behind. The peer's
//! file name is reduced to a plain name ([`plain_file_name`]), so a peer
//! cannot write outside that directory.
//!
//! ```
//! use socketserver::transceiver::Transceiver;
//! use std::os::unix::net::UnixStream;
//!
//! let dir = std::env::temp_dir();
//! let (client, server) = UnixStream::pair()?;
//! let peer = std::thread::spawn(move || -> std::io::Result<Option<String>> {
//!     let mut server = Transceiver::new(server, std::env::temp_dir());
//!     let message = server.recv()?;
//!     server.send("收到了")?;
//!     Ok(message)
//! });
//! let mut client = Transceiver::new(client, dir);
//! client.send("你好")?;
//! assert_eq!(client.recv()?.as_deref(), Some("收到了"));
//! assert_eq!(peer.join().unwrap()?.as_deref(), Some("你好"));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::framing::{Checksum, FrameCodec};

/// The default chunk in which files are read, sent and written: 64 KiB, the
/// Python class's `buffer=65536`.
pub const DEFAULT_CHUNK: usize = 64 * 1024;

/// The default largest file sent or accepted: 4294967295 bytes, the Python
/// class's limit (its `pack` carries no more).
pub const DEFAULT_MAX_FILE: u64 = 4 * 1024 * 1024 * 1024 - 1;

/// The default largest message sent or accepted: 1 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 1024 * 1024;

/// Tells apart the temporary files of concurrent uploads in one process.
static TEMPORARY: AtomicU64 = AtomicU64::new(0);

/// How many existing temporary names to skip before giving up.
const TEMPORARY_ATTEMPTS: u32 = 1000;

/// The Python tutorial's `Transceiver` class: sends and receives messages and
/// files over a stream (a socket, usually).
///
/// The settings are public fields, each with a default, as the Python class's
/// constructor arguments were.
#[derive(Debug)]
pub struct Transceiver<S> {
    stream: S,
    /// Where received files go (the Python class's `path`).
    pub dir: PathBuf,
    /// Bytes per read and write of a file (the Python class's `buffer`).
    /// Defaults to [`DEFAULT_CHUNK`].
    pub chunk: usize,
    /// The largest file sent or accepted. Defaults to [`DEFAULT_MAX_FILE`].
    pub max_file_size: u64,
    /// The algorithm of verified sends. Defaults to [`Checksum::Md5`].
    pub checksum: Checksum,
    /// The largest message sent or accepted. Defaults to
    /// [`DEFAULT_MAX_MESSAGE`].
    pub max_message: usize,
}

/// What [`Transceiver::send_file`] sent or [`Transceiver::recv_file`]
/// received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileReceipt {
    /// The file name on the wire (reduced to a plain name when received).
    pub name: String,
    /// The local file: the one sent, or where the received one now is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its checksum as `"<algorithm>:<hex>"` (`"md5:5d41…"`) when computed.
    pub checksum: Option<String>,
}

/// A file offer parsed from a header message.
struct Offer {
    name: String,
    size: u64,
    /// The algorithm and the expected hex, for a verified upload.
    expected: Option<(Checksum, String)>,
}

impl<S: Read + Write> Transceiver<S> {
    /// Wraps `stream`; received files go to `dir`.
    pub fn new(stream: S, dir: impl Into<PathBuf>) -> Self {
        Transceiver {
            stream,
            dir: dir.into(),
            chunk: DEFAULT_CHUNK,
            max_file_size: DEFAULT_MAX_FILE,
            checksum: Checksum::default(),
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream, to set a timeout say. Reading or writing it directly may
    /// desynchronise the protocol.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Gives the stream back.
    pub fn into_inner(self) -> S {
        self.stream
    }

    fn codec(&self) -> FrameCodec {
        FrameCodec::default().with_max_frame(self.max_message)
    }

    /// Sends a message (the Python `send`): its UTF-8 length as 4 big-endian
    /// bytes, then the bytes.
    pub fn send(&mut self, message: &str) -> io::Result<()> {
        self.codec()
            .write_frame(&mut self.stream, message.as_bytes())?;
        self.stream.flush()
    }

    /// Receives a message (the Python `recv`); `Ok(None)` if the peer closed
    /// the connection between messages.
    ///
    /// A message longer than [`max_message`](Transceiver::max_message) is
    /// refused before anything is allocated for it; one that is not UTF-8
    /// fails with [`io::ErrorKind::InvalidData`].
    pub fn recv(&mut self) -> io::Result<Option<String>> {
        let Some(bytes) = self.codec().read_frame(&mut self.stream)? else {
            return Ok(None);
        };
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| invalid(format!("message is not valid utf-8: {e}")))
    }

    /// Sends the file at `path` (the Python `send_file`) and calls `progress`
    /// with the bytes sent so far after each chunk. The name sent is the
    /// path's last component.
    ///
    /// With `verified` false this is exactly the Python class's form, which
    /// its `recv_file` reads: a `"name,length"` message, then the bytes.
    /// With `verified` true (a Rust receiver) the message carries a third
    /// field, the file's [`checksum`](Transceiver::checksum), computed in a
    /// first pass over the file, and the receiver's reply is awaited: `"ok"`,
    /// or an error whose message is the receiver's `"error: …"` — also when
    /// the receiver gave up and hung up before the file was all sent.
    ///
    /// A file larger than [`max_file_size`](Transceiver::max_file_size) is
    /// refused before anything is sent (the Python `send_file` returns `-2`).
    ///
    /// ```no_run
    /// use socketserver::transceiver::Transceiver;
    /// use std::{net::TcpStream, path::Path};
    ///
    /// let mut t = Transceiver::new(TcpStream::connect("127.0.0.1:50007")?, ".");
    /// t.send("file")?;
    /// let receipt = t.send_file(Path::new("report.pdf"), false, &mut |sent| {
    ///     eprint!("\r{sent} bytes");
    /// })?;
    /// println!("sent {} ({} bytes)", receipt.name, receipt.size);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_file(
        &mut self,
        path: &Path,
        verified: bool,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<FileReceipt> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| invalid(format!("{} has no UTF-8 file name to send", path.display())))?;
        plain_file_name(name)?;
        let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let mut file = File::open(path).map_err(context)?;
        let (size, checksum) = if verified {
            // Hash in a first pass: the checksum travels in the header, before the
            // bytes. The size is what was hashed, not what stat said earlier.
            let mut hasher = self.checksum.hasher();
            let size = copy_chunks(&mut file, u64::MAX, self.chunk, |chunk| {
                hasher.update(chunk);
                Ok(())
            })
            .map_err(context)?;
            file.rewind().map_err(context)?;
            (
                size,
                Some(format!("{}:{}", self.checksum.name(), hasher.finish_hex())),
            )
        } else {
            (file.metadata().map_err(context)?.len(), None)
        };
        if size > self.max_file_size {
            return Err(invalid(format!(
                "{name} not sent: {size} bytes exceeds the limit of {}",
                self.max_file_size
            )));
        }
        let header = match &checksum {
            Some(checksum) => format!("{name},{size},{checksum}"),
            None => format!("{name},{size}"),
        };
        self.send(&header)?;
        let stream = &mut self.stream;
        let mut sent = 0;
        let copied = match copy_chunks(&mut file, size, self.chunk, |chunk| {
            stream.write_all(chunk)?;
            sent += chunk.len() as u64;
            progress(sent);
            Ok(())
        }) {
            Ok(copied) => copied,
            // A verified receiver that fails mid-file (a full disk, a size it
            // refuses) answers "error: …" and hangs up on the rest, so a
            // write then fails (EPIPE, ECONNRESET) with that answer already
            // in our receive buffer: the answer says why, the write error
            // does not.
            Err(e)
                if verified
                    && matches!(
                        e.kind(),
                        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                    ) =>
            {
                return Err(match self.recv() {
                    Ok(Some(reply)) if reply.starts_with("error: ") => io::Error::other(reply),
                    _ => e,
                });
            }
            Err(e) => return Err(e),
        };
        if copied < size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name} shrank while being sent: {copied} of {size} bytes"),
            ));
        }
        self.stream.flush()?;
        if verified {
            match self.recv()?.as_deref() {
                Some("ok") => {}
                Some(reply) if reply.starts_with("error: ") => return Err(io::Error::other(reply)),
                Some(reply) => {
                    return Err(invalid(format!("unexpected reply to {name}: {reply:?}")))
                }
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("connection closed before the receiver confirmed {name}"),
                    ))
                }
            }
        }
        Ok(FileReceipt {
            name: name.to_owned(),
            path: path.to_owned(),
            size,
            checksum,
        })
    }

    /// Receives a file (the Python `recv_file`) into
    /// [`dir`](Transceiver::dir), under the sender's name reduced by
    /// [`plain_file_name`]. An existing file of that name is replaced.
    ///
    /// Reads a header message, `"name,length"` (a Python sender) or
    /// `"name,length,<algorithm>:<hex>"` (a verified sender, which is then
    /// answered `"ok"` or `"error: <reason>"`), then `length` bytes in
    /// chunks of [`chunk`](Transceiver::chunk), never the whole file in
    /// memory. The bytes go to a new temporary file in `dir`, renamed into
    /// place once complete and verified; on any failure (a refused name or
    /// size, a connection cut short, a checksum mismatch, a full disk) it is
    /// removed and nothing is left behind.
    ///
    /// After an error the stream is out of step (the peer's bytes cannot be
    /// skipped safely): close the connection. An error sending the `"ok"` is
    /// returned too, but the file, complete, stays.
    pub fn recv_file(&mut self) -> io::Result<FileReceipt> {
        let header = self.recv()?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a file header",
            )
        })?;
        // A length never holds ':', so a last field that does is a checksum.
        let (offer, verified) = match header.rsplit_once(',') {
            Some((rest, digest)) if digest.contains(':') => (parse_offer(rest, Some(digest)), true),
            _ => (parse_offer(&header, None), false),
        };
        let result = offer.and_then(|offer| self.receive(offer));
        if let Err(e) = &result {
            log::warn!("file upload failed: {e}");
        }
        if verified {
            match &result {
                Ok(_) => self.send("ok")?,
                Err(e) => {
                    // Only the peer's own mistakes are spelled out: a local
                    // failure's message would show the peer our paths.
                    let reply = match e.kind() {
                        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
                            format!("error: {e}")
                        }
                        _ => "error: the receiver could not store the file".to_owned(),
                    };
                    // The peer may be gone (that may be the very error): the
                    // error already being returned matters more than this one.
                    if let Err(reply) = self.send(&reply) {
                        log::debug!("could not reply to a failed upload: {reply}");
                    }
                }
            }
        }
        result
    }

    fn receive(&mut self, offer: Offer) -> io::Result<FileReceipt> {
        let Offer {
            name,
            size,
            expected,
        } = offer;
        if size > self.max_file_size {
            return Err(invalid(format!(
                "upload of {name} refused: {size} bytes exceeds the limit of {}",
                self.max_file_size
            )));
        }
        let algorithm = expected
            .as_ref()
            .map_or(self.checksum, |(algorithm, _)| *algorithm);
        let mut hasher = algorithm.hasher();
        let (mut temporary, mut file) = Temporary::create(&self.dir, &name)?;
        let write_context = |e: io::Error| {
            io::Error::new(e.kind(), format!("writing {}: {e}", temporary.0.display()))
        };
        let got = copy_chunks(&mut self.stream, size, self.chunk, |chunk| {
            hasher.update(chunk);
            file.write_all(chunk).map_err(write_context)
        })?;
        if got < size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("upload of {name} cut short: {got} of {size} bytes received"),
            ));
        }
        // Flushed to disk before the rename, so that a crash never leaves a
        // short file under the final name.
        file.sync_all().map_err(write_context)?;
        let actual = hasher.finish_hex();
        if let Some((_, hex)) = &expected {
            if !hex.eq_ignore_ascii_case(&actual) {
                return Err(invalid(format!(
                    "upload of {name} corrupted: {} is {actual}, the sender said {hex}",
                    algorithm.name()
                )));
            }
        }
        let path = self.dir.join(&name);
        // rename replaces a symlink at `path`; it never writes through it.
        fs::rename(&temporary.0, &path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot move {name} into {}: {e}", self.dir.display()),
            )
        })?;
        temporary.0 = PathBuf::new();
        log::info!("received {name} ({size} bytes) into {}", path.display());
        Ok(FileReceipt {
            name,
            path,
            size,
            checksum: Some(format!("{}:{actual}", algorithm.name())),
        })
    }
}

/// Parses `"name,length"` and the optional `"<algorithm>:<hex>"`.
fn parse_offer(name_and_size: &str, digest: Option<&str>) -> io::Result<Offer> {
    let (name, size) = name_and_size.rsplit_once(',').ok_or_else(|| {
        invalid(format!(
            "malformed file header {name_and_size:?}: expected name,length"
        ))
    })?;
    let name = plain_file_name(name)?;
    let size = size
        .parse()
        .map_err(|_| invalid(format!("upload of {name} refused: bad length {size:?}")))?;
    let expected = digest
        .map(|digest| {
            let (algorithm, hex) = digest.split_once(':').unwrap_or_default();
            Checksum::parse(algorithm)
                .map(|algorithm| (algorithm, hex.to_owned()))
                .ok_or_else(|| {
                    invalid(format!(
                        "upload of {name} refused: unknown checksum {algorithm:?}"
                    ))
                })
        })
        .transpose()?;
    Ok(Offer {
        name,
        size,
        expected,
    })
}

/// Reduces a name sent by a peer to a plain file name: the part after the
/// last `/` or `\`. Refuses (with [`io::ErrorKind::InvalidData`]) what is
/// left if it is empty, `.` or `..`, or holds a control character (NUL
/// included).
///
/// ```
/// use socketserver::transceiver::plain_file_name;
/// assert_eq!(plain_file_name("../../etc/passwd")?, "passwd");
/// assert_eq!(plain_file_name(r"C:\a\b.txt")?, "b.txt");
/// assert!(plain_file_name("dir/..").is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn plain_file_name(name: &str) -> io::Result<String> {
    let plain = name.rsplit(['/', '\\']).next().unwrap_or_default();
    if matches!(plain, "" | "." | "..") || plain.chars().any(char::is_control) {
        return Err(invalid(format!(
            "refused file name {name:?}: not a plain file name"
        )));
    }
    Ok(plain.to_owned())
}

/// Copies up to `limit` bytes of `from`, `chunk` at a time, to `to`; returns
/// the count, less than `limit` if `from` ended first.
fn copy_chunks<R: Read + ?Sized>(
    from: &mut R,
    limit: u64,
    chunk: usize,
    mut to: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut buf = vec![0; chunk.max(1)];
    let mut copied = 0;
    while copied < limit {
        let want = buf
            .len()
            .min(usize::try_from(limit - copied).unwrap_or(usize::MAX));
        match from.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => {
                to(&buf[..n])?;
                copied += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(copied)
}

/// A temporary file, removed on drop unless its path was taken (emptied).
struct Temporary(PathBuf);

impl Temporary {
    /// Creates `dir/.{name}.part-{pid}-{n}` with `create_new`, so that an
    /// existing file or symlink of that name is skipped, never opened.
    fn create(dir: &Path, name: &str) -> io::Result<(Temporary, File)> {
        // Keeps the temporary name within NAME_MAX for long names.
        let stem: String = name.chars().take(100).collect();
        for _ in 0..TEMPORARY_ATTEMPTS {
            let n = TEMPORARY.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".{stem}.part-{}-{n}", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok((Temporary(path), file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "cannot create a temporary file for {name} in {}: {e}",
                            dir.display()
                        ),
                    ))
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "cannot create a temporary file for {name} in {}: all names taken",
                dir.display()
            ),
        ))
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if self.0.as_os_str().is_empty() {
            return;
        }
        if let Err(e) = fs::remove_file(&self.0) {
            log::warn!("could not remove {}: {e}", self.0.display());
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}
