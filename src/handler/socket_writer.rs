//! [`SocketWriter`]: a stream handler's `wfile` (Python's `_SocketWriter`).

use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};

use super::Connection;

/// A stream handler's `wfile`: Python's `_SocketWriter` when `wbufsize` is 0
/// (the default), a buffered writer otherwise.
///
/// Unbuffered, [`write`](Write::write) sends *all* of its bytes before it
/// returns and returns their count (Python's `sendall`): a write is never
/// partial, and nothing waits for a flush. A signal arriving mid-write
/// (`EINTR`) does not cut it short. `write!(wfile, …)` formats the whole
/// text first and sends it with one write, as Python's
/// `wfile.write(f"…".encode())`.
#[derive(Debug)]
pub struct SocketWriter<'a> {
    connection: Connection<'a>,
    buffer: Vec<u8>,
    capacity: usize,
}

impl<'a> SocketWriter<'a> {
    pub(crate) fn new(connection: Connection<'a>, wbufsize: usize) -> Self {
        SocketWriter {
            connection,
            buffer: Vec::new(),
            capacity: wbufsize,
        }
    }

    /// Python's `wfile.fileno()`: the connection's descriptor, as a number.
    /// To poll or wait on the connection, borrow it instead:
    /// `request.connection.as_fd()` (a `BorrowedFd` that cannot outlive the
    /// connection), or [`Connection::wait_readable`].
    pub fn fileno(&self) -> RawFd {
        self.connection.as_raw_fd()
    }

    /// Bytes written but not yet sent (always 0 when `wbufsize` is 0).
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    fn send_buffer(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            self.connection.write_all(&self.buffer)?;
            self.buffer.clear();
        }
        Ok(())
    }
}

impl Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buffer.len() + buf.len() > self.capacity {
            self.send_buffer()?;
        }
        if buf.len() >= self.capacity {
            self.connection.write_all(buf)?;
        } else {
            self.buffer.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }

    /// `write!`/`writeln!` format first and write once: unbuffered, the
    /// default would send each piece of the format as its own segment.
    fn write_fmt(&mut self, args: std::fmt::Arguments<'_>) -> io::Result<()> {
        match args.as_str() {
            Some(text) => self.write_all(text.as_bytes()),
            None => self.write_all(args.to_string().as_bytes()),
        }
    }
}
