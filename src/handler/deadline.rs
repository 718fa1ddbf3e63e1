//! Deadlines for a whole phase of a connection (a PROXY header, a TLS
//! handshake, an HTTP request head), not for each read: a client that
//! trickles one byte just before every per-read timeout (slowloris) still
//! runs out of time.

use std::io;
#[cfg(any(feature = "tls", feature = "proxy"))]
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::Connection;

/// Ends at a point in time; `None` waits for ever.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Option<Instant>,
}

impl Deadline {
    /// A deadline `timeout` from now; `None`: none.
    pub(crate) fn after(timeout: Option<Duration>) -> Self {
        Deadline {
            at: timeout.map(|t| Instant::now() + t),
        }
    }

    /// Call before each read or write that may block: gives the
    /// connection's timeout the time left (under `CoroutineMixIn`, the
    /// suspension's too), or fails with `TimedOut` when none is.
    pub(crate) fn before_io(&self, connection: &Connection<'_>) -> io::Result<()> {
        let Some(at) = self.at else { return Ok(()) };
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        connection.set_timeout(Some(left))
    }

    /// Whether a deadline is set.
    #[cfg(feature = "http")]
    pub(crate) fn is_set(&self) -> bool {
        self.at.is_some()
    }
}

/// A connection whose every read and write gets the time left before
/// `deadline` (the handshakes').
#[cfg(any(feature = "tls", feature = "proxy"))]
#[derive(Debug)]
pub(crate) struct WithDeadline<'a> {
    pub(crate) connection: Connection<'a>,
    pub(crate) deadline: Deadline,
}

#[cfg(any(feature = "tls", feature = "proxy"))]
impl Read for WithDeadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.deadline.before_io(&self.connection)?;
        self.connection.read(buf)
    }
}

#[cfg(any(feature = "tls", feature = "proxy"))]
impl Write for WithDeadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.deadline.before_io(&self.connection)?;
        self.connection.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.connection.flush()
    }
}

#[cfg(all(test, any(feature = "tls", feature = "proxy")))]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// A peer that sends a byte every 50 ms never lets one read wait 200
    /// ms, yet a 200 ms deadline cuts the whole at about 200 ms.
    #[test]
    fn a_trickle_is_cut_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let trickle = std::thread::spawn(move || {
            for _ in 0..100 {
                if (&client).write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50)); // the trickle's pace: the input
            }
        });
        let started = Instant::now();
        let mut reader = WithDeadline {
            connection: Connection::Tcp(&server),
            deadline: Deadline::after(Some(Duration::from_millis(200))),
        };
        let mut all = Vec::new();
        let err = reader.read_to_end(&mut all).unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(!all.is_empty(), "bytes came meanwhile");
        assert!(
            took < Duration::from_secs(2),
            "cut at the deadline, not later: {took:?}"
        );
        drop(server);
        trickle.join().unwrap();
    }
}
