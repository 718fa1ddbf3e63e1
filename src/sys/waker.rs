//! [`Waker`]: a descriptor one thread makes readable to end another's
//! poll(2) or epoll_wait(2) — `shutdown()` waking `serve_forever`, a new
//! connection waking the pool's readiness gate, a new task waking a
//! coroutine worker.
//!
//! All of them need the same thing (a level-triggered "look again", emptied
//! by the waiter), so one type provides it: an eventfd on Linux, and on
//! other Unix systems the classic self-pipe.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
#[cfg(any(target_os = "linux", target_os = "android"))]
use nix::sys::eventfd::{EfdFlags, EventFd};

/// Ends a poll(2) or epoll wait from another thread: the waiter polls
/// [`as_fd`](AsFd::as_fd) for readability beside its other descriptors,
/// anyone calls [`wake`](Waker::wake), and the waiter, once woken, calls
/// [`reset`](Waker::reset) before it looks at what it was woken for.
///
/// Wakes coalesce and carry nothing: any number of them before a reset make
/// the waker readable once. What happened lives in the caller's own state (a
/// flag, a queue), which the waker only tells the waiter to look at.
///
/// Readiness is level-triggered: the waker stays readable until reset, so a
/// wake that comes before the waiter starts to wait is not lost.
#[derive(Debug)]
pub(crate) struct Waker {
    kind: Kind,
}

/// The descriptor behind a [`Waker`].
#[derive(Debug)]
enum Kind {
    /// Linux's own: one descriptor, and a counter that never fills up.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    EventFd(EventFd),
    /// Every Unix has pipes: a byte in `write` makes `read` readable.
    Pipe { read: OwnedFd, write: OwnedFd },
}

impl Waker {
    /// An eventfd on Linux (one descriptor, not two), a self-pipe elsewhere.
    pub(crate) fn new() -> io::Result<Waker> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            Waker::eventfd_or_pipe(EventFd::from_flags(
                EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
            ))
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            Waker::pipe()
        }
    }

    /// The eventfd just made, or a self-pipe when the system refuses the
    /// eventfd itself rather than the resources for it: a seccomp filter may
    /// answer eventfd2 with ENOSYS or EPERM while it allows pipe2, and a
    /// server should start there all the same. Running out of descriptors or
    /// memory is an error either way, and is reported as such.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn eventfd_or_pipe(made: nix::Result<EventFd>) -> io::Result<Waker> {
        match made {
            Ok(eventfd) => Ok(Waker {
                kind: Kind::EventFd(eventfd),
            }),
            Err(Errno::ENOSYS | Errno::EPERM | Errno::EACCES | Errno::ENODEV) => Waker::pipe(),
            Err(errno) => Err(errno.into()),
        }
    }

    /// A self-pipe waker, whatever the system: what [`new`](Waker::new)
    /// makes without an eventfd, and what the tests make on Linux so that
    /// this path is exercised where the crate is developed.
    pub(crate) fn pipe() -> io::Result<Waker> {
        let (read, write) = nonblocking_cloexec_pipe()?;
        Ok(Waker {
            kind: Kind::Pipe { read, write },
        })
    }

    /// Makes the waker readable until the next [`reset`](Waker::reset).
    ///
    /// Never blocks and never fails: a full pipe (or an eventfd counter at
    /// its ceiling) is readable already, which is all a wake promises. Safe
    /// from any thread. It makes write(2) calls only — no lock, no
    /// allocation — so it may also be called from a signal handler, which
    /// must save and restore `errno` around it as around any write(2).
    pub(crate) fn wake(&self) {
        loop {
            let written = match &self.kind {
                #[cfg(any(target_os = "linux", target_os = "android"))]
                Kind::EventFd(eventfd) => eventfd.write(1),
                Kind::Pipe { write, .. } => nix::unistd::write(write, &[1]),
            };
            // EAGAIN: full, hence readable. Anything else would mean a
            // descriptor this type owns had gone bad, and there is no one to
            // tell from a signal handler.
            if written != Err(Errno::EINTR) {
                return;
            }
        }
    }

    /// Empties the waker after it woke the waiter, so that the next wait
    /// blocks again instead of spinning. Returns at once if it is empty.
    ///
    /// Call it before looking at the state the wake announced, never after:
    /// a wake between the look and the reset would be drained unseen.
    pub(crate) fn reset(&self) {
        match &self.kind {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Kind::EventFd(eventfd) => {
                // One read zeroes the counter, however many wakes it holds;
                // EAGAIN means it was zero already.
                while eventfd.read() == Err(Errno::EINTR) {}
            }
            Kind::Pipe { read, .. } => {
                // Each wake left a byte: read until none is left (a short
                // read or EAGAIN), so that one reset drains them all.
                let mut bytes = [0; 256];
                loop {
                    match nix::unistd::read(read, &mut bytes) {
                        Ok(n) if n == bytes.len() => {}
                        Err(Errno::EINTR) => {}
                        _ => return,
                    }
                }
            }
        }
    }
}

impl AsFd for Waker {
    /// The descriptor to poll for readability: the eventfd, or the pipe's
    /// read end.
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Kind::EventFd(eventfd) => eventfd.as_fd(),
            Kind::Pipe { read, .. } => read.as_fd(),
        }
    }
}

/// A pipe whose ends are non-blocking (a wake must not block on a full pipe,
/// nor a reset on an empty one) and close-on-exec (a child that execs must
/// not inherit them), both set atomically by pipe2. (macOS has no pipe2; the
/// crate's pool and coroutine workers need epoll, so it builds on Linux
/// only for now, and this is where a port would set the flags by fcntl.)
fn nonblocking_cloexec_pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;
    use std::thread;

    use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    /// Every kind of waker this system can make, the pipe included on Linux.
    fn every_kind() -> Vec<(&'static str, Waker)> {
        vec![
            ("new", Waker::new().unwrap()),
            ("pipe", Waker::pipe().unwrap()),
        ]
    }

    fn readable(waker: &Waker, timeout: PollTimeout) -> bool {
        let mut fds = [PollFd::new(waker.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, timeout).unwrap() == 1
    }

    /// The descriptors a waker owns.
    fn descriptors(waker: &Waker) -> Vec<BorrowedFd<'_>> {
        match &waker.kind {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Kind::EventFd(eventfd) => vec![eventfd.as_fd()],
            Kind::Pipe { read, write } => vec![read.as_fd(), write.as_fd()],
        }
    }

    #[test]
    fn a_wake_makes_it_readable() {
        for (kind, waker) in every_kind() {
            assert!(!readable(&waker, PollTimeout::ZERO), "{kind}: new");
            waker.wake();
            assert!(readable(&waker, PollTimeout::ZERO), "{kind}: woken");
            assert!(
                readable(&waker, PollTimeout::ZERO),
                "{kind}: still readable until reset"
            );
        }
    }

    #[test]
    fn a_reset_empties_it() {
        for (kind, waker) in every_kind() {
            waker.reset(); // empty: returns at once
            assert!(!readable(&waker, PollTimeout::ZERO), "{kind}: empty");
            waker.wake();
            waker.reset();
            assert!(!readable(&waker, PollTimeout::ZERO), "{kind}: reset");
            waker.wake();
            assert!(readable(&waker, PollTimeout::ZERO), "{kind}: woken again");
        }
    }

    #[test]
    fn many_wakes_even_past_a_full_pipe_drain_in_one_reset() {
        // Four times a Linux pipe's default 64 KiB: the pipe fills up, and
        // the wakes after that must neither block nor fail.
        const WAKES: usize = 256 * 1024;
        for (kind, waker) in every_kind() {
            for _ in 0..WAKES {
                waker.wake();
            }
            if let Kind::Pipe { write, .. } = &waker.kind {
                assert_eq!(
                    nix::unistd::write(write, &[1]),
                    Err(Errno::EAGAIN),
                    "{kind}: the pipe is full"
                );
            }
            assert!(readable(&waker, PollTimeout::ZERO), "{kind}: woken");
            waker.reset();
            assert!(!readable(&waker, PollTimeout::ZERO), "{kind}: drained");
        }
    }

    #[test]
    fn a_wake_from_another_thread_ends_a_wait_here() {
        for (kind, waker) in every_kind() {
            let waker = Arc::new(waker);
            let waking = thread::spawn({
                let waker = Arc::clone(&waker);
                move || waker.wake()
            });
            // Bounded, so that a lost wake fails the test instead of hanging it.
            assert!(
                readable(&waker, PollTimeout::from(10_000u16)),
                "{kind}: woken from another thread"
            );
            waking.join().unwrap();
            waker.reset();
            assert!(!readable(&waker, PollTimeout::ZERO), "{kind}: reset");
        }
    }

    #[test]
    fn descriptors_are_non_blocking_and_close_on_exec() {
        for (kind, waker) in every_kind() {
            for fd in descriptors(&waker) {
                let fd_flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD).unwrap());
                assert!(fd_flags.contains(FdFlag::FD_CLOEXEC), "{kind}: {fd:?}");
                let fl_flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).unwrap());
                assert!(fl_flags.contains(OFlag::O_NONBLOCK), "{kind}: {fd:?}");
            }
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn linux_uses_an_eventfd_and_a_pipe_without_one() {
        assert!(matches!(Waker::new().unwrap().kind, Kind::EventFd(_)));
        for refused in [Errno::ENOSYS, Errno::EPERM] {
            let waker = Waker::eventfd_or_pipe(Err(refused)).unwrap();
            assert!(matches!(waker.kind, Kind::Pipe { .. }), "{refused}");
        }
        let err = Waker::eventfd_or_pipe(Err(Errno::EMFILE)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(Errno::EMFILE as i32));
    }
}
