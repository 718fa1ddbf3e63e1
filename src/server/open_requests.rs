//! [`OpenRequests`]: the connections of the stream requests in flight, so
//! that a bounded stop can shut them down — a handler blocked in a read
//! then sees end-of-file (or an error), returns, and its `finish` and
//! `shutdown_request` run.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::sys::socket::{shutdown, Shutdown};
use parking_lot::Mutex;

/// The descriptors of the connections whose requests are being handled.
#[derive(Debug, Default)]
pub(crate) struct OpenRequests {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// One slot per open request; `None` once it has ended.
    fds: Vec<Option<RawFd>>,
    free: Vec<usize>,
    /// `stop` was called: a request that opens later is cut at once.
    stopping: bool,
}

/// A request's place in [`OpenRequests`], given up when dropped — which
/// must happen before the request's socket is closed.
#[derive(Debug)]
pub(crate) struct OpenRequest<'a> {
    registry: &'a OpenRequests,
    slot: usize,
}

impl OpenRequests {
    /// Records a request's connection for as long as the returned guard
    /// lives.
    pub(crate) fn open<'a>(&'a self, connection: BorrowedFd<'_>) -> OpenRequest<'a> {
        let fd = connection.as_raw_fd();
        let mut inner = self.inner.lock();
        if inner.stopping {
            cut(fd);
        }
        let slot = match inner.free.pop() {
            Some(slot) => {
                inner.fds[slot] = Some(fd);
                slot
            }
            None => {
                inner.fds.push(Some(fd));
                inner.fds.len() - 1
            }
        };
        OpenRequest {
            registry: self,
            slot,
        }
    }

    /// Shuts down every open request's connection, and those of requests
    /// that open from now on. Returns how many were open.
    pub(crate) fn stop(&self) -> usize {
        let mut inner = self.inner.lock();
        inner.stopping = true;
        let open: Vec<RawFd> = inner.fds.iter().flatten().copied().collect();
        // Under the lock: a request gives up its slot (taking this lock)
        // before its socket is closed, so every descriptor here is still
        // that request's open socket, never a number reused by another file.
        for &fd in &open {
            cut(fd);
        }
        open.len()
    }

    /// Serving again after a stop: requests are no longer cut as they open.
    pub(crate) fn resume(&self) {
        self.inner.lock().stopping = false;
    }
}

/// shutdown(2) both ways: the peer sees the end, and a read or write
/// blocked on the socket in this process returns.
fn cut(fd: RawFd) {
    // ENOTCONN: the peer left already, which is all we wanted.
    let _ = shutdown(fd, Shutdown::Both);
}

impl Drop for OpenRequest<'_> {
    fn drop(&mut self) {
        let mut inner = self.registry.inner.lock();
        inner.fds[self.slot] = None;
        inner.free.push(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn stop_cuts_open_requests_and_later_ones() {
        let registry = OpenRequests::default();
        let (mut client, server) = pair();
        let open = registry.open(server.as_fd());
        assert_eq!(registry.stop(), 1);
        // The server side reads end-of-file at once, the client too.
        assert_eq!((&server).read(&mut [0; 8]).unwrap(), 0);
        assert_eq!(client.read(&mut [0; 8]).unwrap(), 0);
        drop(open);

        let (_client, late) = pair();
        let _late = registry.open(late.as_fd());
        assert_eq!((&late).read(&mut [0; 8]).unwrap(), 0, "cut as it opens");
    }

    #[test]
    fn ended_requests_are_not_cut_and_slots_are_reused() {
        let registry = OpenRequests::default();
        let (mut client, server) = pair();
        let first = registry.open(server.as_fd());
        drop(first);
        let (_other_client, other) = pair();
        let second = registry.open(other.as_fd());
        assert_eq!(second.slot, 0, "the freed slot is reused");
        drop(second);
        assert_eq!(registry.stop(), 0);
        // `server` was not cut: it still carries data.
        client.write_all(b"x").unwrap();
        assert_eq!((&server).read(&mut [0; 8]).unwrap(), 1);
        registry.resume();
        let (_c, third) = pair();
        let _third = registry.open(third.as_fd());
        third.set_nonblocking(true).unwrap();
        let err = (&third).read(&mut [0; 8]).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::WouldBlock,
            "not cut after resume"
        );
    }
}
