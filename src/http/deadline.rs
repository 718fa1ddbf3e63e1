//! A deadline for a whole exchange (the head of a request), not for each
//! read: a client that trickles one byte before every per-read timeout
//! (slowloris) still runs out of time.

use std::io;
use std::time::{Duration, Instant};

use crate::Connection;

/// Ends at `at`; `None` waits for ever.
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

    /// Call before each read that may block: gives the connection's read
    /// timeout the time left, or fails with `TimedOut` when none is.
    pub(crate) fn before_read(&self, connection: &Connection<'_>) -> io::Result<()> {
        let Some(at) = self.at else { return Ok(()) };
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        connection.set_timeout(Some(left))
    }

    /// Whether a deadline is set.
    pub(crate) fn is_set(&self) -> bool {
        self.at.is_some()
    }
}
