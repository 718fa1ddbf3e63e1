//! [`Connections`]: the stream connections a server holds open, counted
//! from `get_request` to `shutdown_request` — for
//! [`Server::max_connections`](crate::Server::max_connections),
//! [`Server::max_per_ip`](crate::Server::max_per_ip) and
//! [`ServerStats::open`](crate::ServerStats::open).
//!
//! A request is a bare `TcpStream` (or `UnixStream`), closed by whatever
//! drops it, so the table is keyed by its descriptor: the framework takes a
//! connection out ([`leave`](Connections::leave)) just before it hands the
//! request to `shutdown_request` or `reject_request`. Should a connection
//! be closed some other way (a user's `process_request` that drops it), the
//! kernel hands its number to a later connection, and
//! [`admit`](Connections::admit) then knows the old one is gone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::RawFd;

use parking_lot::Mutex;

use super::stats::Refusal;

/// The limits [`Connections::admit`] applies.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Limits {
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_per_ip: Option<usize>,
}

/// The open connections, by descriptor, and how many per client IP.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The connections of this process, with the client IP each counts
    /// against (none when `max_per_ip` was off as it came).
    by_fd: HashMap<RawFd, Option<IpAddr>>,
    /// Counted connections held elsewhere (forked children).
    elsewhere: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Inner {
    fn open(&self) -> usize {
        self.by_fd.len() + self.elsewhere
    }

    fn forget_ip(&mut self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        if let Some(count) = self.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

impl Connections {
    /// Counts a connection just accepted on descriptor `fd` from `ip`, or
    /// says why it may not stay.
    pub(crate) fn admit(
        &self,
        fd: RawFd,
        ip: Option<IpAddr>,
        limits: Limits,
    ) -> Result<(), Refusal> {
        let mut inner = self.inner.lock();
        // A number still recorded belonged to a connection closed unseen.
        if let Some(stale) = inner.by_fd.remove(&fd) {
            inner.forget_ip(stale);
        }
        if limits
            .max_connections
            .is_some_and(|max| inner.open() >= max)
        {
            return Err(Refusal::MaxConnections);
        }
        let ip = ip.filter(|_| limits.max_per_ip.is_some());
        if let (Some(ip), Some(max)) = (ip, limits.max_per_ip) {
            let count = inner.per_ip.entry(ip).or_insert(0);
            if *count >= max {
                return Err(Refusal::MaxPerIp);
            }
            *count += 1;
        }
        inner.by_fd.insert(fd, ip);
        Ok(())
    }

    /// The connection on `fd` is about to close: it counts no more.
    pub(crate) fn leave(&self, fd: RawFd) {
        let mut inner = self.inner.lock();
        if let Some(ip) = inner.by_fd.remove(&fd) {
            inner.forget_ip(ip);
        }
    }

    /// The connection on `fd` goes on in another process (a forked child):
    /// it stays counted, no longer by its descriptor, until the returned
    /// value is given to [`left_elsewhere`](Connections::left_elsewhere).
    /// `None`: it was not counted.
    pub(crate) fn move_elsewhere(&self, fd: RawFd) -> Option<Elsewhere> {
        let mut inner = self.inner.lock();
        let ip = inner.by_fd.remove(&fd)?;
        inner.elsewhere += 1;
        Some(Elsewhere { ip })
    }

    /// A connection moved elsewhere has closed.
    pub(crate) fn left_elsewhere(&self, elsewhere: Elsewhere) {
        let mut inner = self.inner.lock();
        inner.elsewhere -= 1;
        inner.forget_ip(elsewhere.ip);
    }

    /// How many are open.
    pub(crate) fn open(&self) -> usize {
        self.inner.lock().open()
    }
}

/// A counted connection held by another process: see
/// [`Connections::move_elsewhere`].
#[derive(Debug)]
pub(crate) struct Elsewhere {
    ip: Option<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_connections: Some(3),
        max_per_ip: Some(2),
    };

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn per_ip_and_total_caps_and_release() {
        let table = Connections::default();
        assert_eq!(table.admit(10, ip(1), LIMITS), Ok(()));
        assert_eq!(table.admit(11, ip(1), LIMITS), Ok(()));
        assert_eq!(table.admit(12, ip(1), LIMITS), Err(Refusal::MaxPerIp));
        assert_eq!(table.admit(12, ip(2), LIMITS), Ok(()));
        assert_eq!(table.admit(13, ip(3), LIMITS), Err(Refusal::MaxConnections));
        assert_eq!(table.open(), 3);
        table.leave(10);
        table.leave(10); // twice: harmless
        assert_eq!(table.open(), 2);
        assert_eq!(
            table.admit(13, ip(1), LIMITS),
            Ok(()),
            "room for 127.0.0.1 again"
        );
    }

    #[test]
    fn a_reused_descriptor_releases_its_stale_entry() {
        let table = Connections::default();
        assert_eq!(table.admit(7, ip(1), LIMITS), Ok(()));
        assert_eq!(table.admit(8, ip(1), LIMITS), Ok(()));
        // 7 was closed without `leave`, and the kernel gave 7 out again.
        assert_eq!(table.admit(7, ip(1), LIMITS), Ok(()));
        assert_eq!(table.open(), 2);
    }

    #[test]
    fn connections_moved_elsewhere_count_until_they_leave() {
        let table = Connections::default();
        assert_eq!(table.admit(7, ip(1), LIMITS), Ok(()));
        let child = table.move_elsewhere(7).expect("counted");
        assert!(table.move_elsewhere(7).is_none(), "moved once");
        assert_eq!(table.admit(7, ip(1), LIMITS), Ok(()), "the number is free");
        assert_eq!(table.admit(8, ip(1), LIMITS), Err(Refusal::MaxPerIp));
        assert_eq!(table.open(), 2);
        table.left_elsewhere(child);
        assert_eq!(table.open(), 1);
        assert_eq!(table.admit(8, ip(1), LIMITS), Ok(()));
    }
}
