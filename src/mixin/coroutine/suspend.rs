//! Blocking socket I/O that suspends a coroutine instead of its thread.
//!
//! Under [`CoroutineMixIn`](crate::CoroutineMixIn) a handler runs on a
//! coroutine (a stack of its own, switched in user space) and its connection
//! is non-blocking. A read or write on [`Connection`](crate::Connection) that
//! would block does not block the worker thread: it yields the coroutine with
//! what it waits for, the worker runs other handlers, and resumes this one
//! when epoll says the socket is ready (or its timeout passes). The handler's
//! code is the same blocking code as under threads — what gevent does for
//! Python's socketserver, without monkey-patching.
//!
//! Outside a coroutine every function here is the plain blocking call.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use std::rc::Rc;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};

use crate::sys;

/// What a suspended coroutine waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// What a coroutine yields to its worker.
#[derive(Debug)]
pub(crate) enum Suspend {
    /// Resume me once `fd` may be ready (either way: the retried operation
    /// tells), or at `deadline`.
    Wait {
        fd: RawFd,
        deadline: Option<Instant>,
    },
    /// Resume me after the others that are ready: I have run
    /// [`BUDGET`] operations without waiting.
    Yield,
    /// The request is over (the coroutine's return value).
    Done,
}

/// What the worker sends back when it resumes a coroutine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// The socket reported readiness (or may have: retry the operation).
    Ready,
    /// The deadline passed first.
    TimedOut,
}

/// How many socket operations a coroutine may complete in a row, without
/// ever waiting, before it yields to the others on its worker (tokio's
/// cooperative budget, 128, for the same reason): a client that keeps the
/// socket always ready must not starve the worker's other requests.
pub(crate) const BUDGET: u32 = 128;

thread_local! {
    /// Operations left in the running coroutine's budget.
    static BUDGET_LEFT: Cell<u32> = const { Cell::new(BUDGET) };
    /// The running task's read readiness ([`READABLE`], [`READ_CLOSED`]):
    /// what its worker's epoll has reported since a read last found the
    /// socket empty.
    static READINESS: Cell<u8> = const { Cell::new(0) };
    /// The task the worker is running now (0 on any other thread).
    static CURRENT_TASK: Cell<u64> = const { Cell::new(0) };
    /// The worker's epoll set, which its coroutines add their sockets to.
    static POLLER: RefCell<Option<Rc<Epoll>>> = const { RefCell::new(None) };
    /// The descriptors this worker's tasks wait on or set timeouts for, with
    /// the task that did: a number reused by a later connection inherits
    /// neither registration nor timeouts.
    /// Indexed by descriptor number (small integers, reused lowest first).
    static DESCRIPTORS: RefCell<Vec<Option<Descriptor>>> = const { RefCell::new(Vec::new()) };
}

#[derive(Debug, Clone, Copy)]
struct Descriptor {
    task: u64,
    registered: bool,
    timeouts: Timeouts,
}

impl Descriptor {
    /// The entry of `fd` for `task`, fresh if it was another task's.
    fn of(table: &mut Vec<Option<Descriptor>>, fd: RawFd, task: u64) -> &mut Descriptor {
        let index = usize::try_from(fd).unwrap_or(0);
        if table.len() <= index {
            table.resize(index + 1, None);
        }
        let fresh = Descriptor {
            task,
            registered: false,
            timeouts: Timeouts::default(),
        };
        let entry = table[index].get_or_insert(fresh);
        if entry.task != task {
            *entry = fresh;
        }
        entry
    }

    /// The entry of `fd` if it is `task`'s.
    fn get(table: &[Option<Descriptor>], fd: RawFd, task: u64) -> Option<&Descriptor> {
        let entry = table.get(usize::try_from(fd).ok()?)?.as_ref()?;
        (entry.task == task).then_some(entry)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Timeouts {
    read: Option<Duration>,
    write: Option<Duration>,
}

/// Whether this code runs on a coroutine of a [`CoroutineMixIn`] worker.
///
/// [`CoroutineMixIn`]: crate::CoroutineMixIn
pub(crate) fn in_coroutine() -> bool {
    CURRENT_TASK.with(Cell::get) != 0
}

/// Makes the calling thread a coroutine worker waiting on `epoll`.
pub(crate) fn become_worker(epoll: Rc<Epoll>) {
    POLLER.with(|p| *p.borrow_mut() = Some(epoll));
}

/// Epoll reported the socket readable (data, or something to report).
pub(crate) const READABLE: u8 = 1;
/// Epoll reported the peer's end or an error: stays set, a read will not
/// block again.
pub(crate) const READ_CLOSED: u8 = 2;

/// Called by the worker before each resumption of task `id`, with the read
/// readiness it has gathered for it; each resumption starts with a full
/// budget.
pub(crate) fn enter_task(id: u64, readiness: u8) {
    CURRENT_TASK.with(|c| c.set(id));
    BUDGET_LEFT.with(|b| b.set(BUDGET));
    READINESS.with(|r| r.set(readiness));
}

/// Called by the worker after each resumption: the task's read readiness
/// as its reads have left it.
pub(crate) fn leave_task() -> u8 {
    CURRENT_TASK.with(|c| c.set(0));
    READINESS.with(Cell::get)
}

/// Called by the worker when task `id` is over: forget what it left about
/// the descriptors it waited on.
pub(crate) fn forget_task(id: u64, fds: &[RawFd]) {
    DESCRIPTORS.with(|d| {
        let mut table = d.borrow_mut();
        for &fd in fds {
            if Descriptor::get(&table, fd, id).is_some() {
                table[fd as usize] = None;
            }
        }
    });
}

/// Records `fd`'s timeouts for the current coroutine (the socket is
/// non-blocking there, so SO_RCVTIMEO and SO_SNDTIMEO no longer apply).
pub(crate) fn set_timeouts(fd: RawFd, read: Option<Duration>, write: Option<Duration>) {
    let task = CURRENT_TASK.with(Cell::get);
    if task != 0 {
        DESCRIPTORS.with(|d| {
            Descriptor::of(&mut d.borrow_mut(), fd, task).timeouts = Timeouts { read, write };
        });
    }
}

fn timeout_of(fd: RawFd, interest: Interest) -> Option<Duration> {
    let task = CURRENT_TASK.with(Cell::get);
    DESCRIPTORS.with(|d| {
        let table = d.borrow();
        let timeouts = Descriptor::get(&table, fd, task)?.timeouts;
        match interest {
            Interest::Read => timeouts.read,
            Interest::Write => timeouts.write,
        }
    })
}

/// Adds `fd` to the worker's epoll set for the current task, once:
/// edge-triggered for reading and writing both, so that a connection costs
/// one epoll_ctl in its life, not one per wait.
fn register(fd: BorrowedFd<'_>) -> io::Result<()> {
    let task = CURRENT_TASK.with(Cell::get);
    let raw = fd.as_raw_fd();
    let fresh = DESCRIPTORS.with(|d| {
        let mut table = d.borrow_mut();
        let entry = Descriptor::of(&mut table, raw, task);
        !std::mem::replace(&mut entry.registered, true)
    });
    if !fresh {
        return Ok(());
    }
    let flags =
        EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
    let mut event = EpollEvent::new(flags, task);
    let added = POLLER.with(|p| match &*p.borrow() {
        Some(epoll) => match epoll.add(fd, event) {
            // Still registered through a duplicate of the descriptor that an
            // earlier task kept open: take the registration over.
            Err(Errno::EEXIST) => epoll.modify(fd, &mut event),
            other => other,
        },
        None => Err(Errno::EINVAL),
    });
    if let Err(errno) = added {
        DESCRIPTORS.with(|d| d.borrow_mut()[raw as usize] = None);
        return Err(io::Error::new(
            io::Error::from(errno).kind(),
            format!("cannot wait for descriptor {raw} in the coroutine worker: {errno}"),
        ));
    }
    Ok(())
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out")
}

/// Runs a socket operation; inside a coroutine, each time it would block,
/// suspends until `fd` is ready for `interest` (failing with
/// [`io::ErrorKind::TimedOut`] after the timeout set for `fd`) and retries.
#[inline]
pub(crate) fn io<T>(
    fd: BorrowedFd<'_>,
    interest: Interest,
    op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let result = retry(fd, interest, op);
    spend_budget();
    result
}

/// A TCP read of up to `len` bytes through `op`, as [`io`] does it, but
/// without the read that could only fail with EAGAIN: a TCP read returns
/// less than asked only when the socket had no more, so after a short read
/// the next one waits for epoll's next report first — unless one has come
/// since, or the peer has closed (both are kept per task, as tokio keeps
/// readiness per socket). One system call less per request.
#[inline]
pub(crate) fn read(
    fd: BorrowedFd<'_>,
    len: usize,
    op: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    if !in_coroutine() {
        return retry(fd, Interest::Read, op);
    }
    let registered = DESCRIPTORS.with(|d| {
        Descriptor::get(&d.borrow(), fd.as_raw_fd(), CURRENT_TASK.with(Cell::get))
            .is_some_and(|e| e.registered)
    });
    // Known empty: only a registered socket has its reports come here.
    if registered && READINESS.with(Cell::get) == 0 {
        wait(fd, Interest::Read)?;
    }
    let result = retry(fd, Interest::Read, op);
    if matches!(result, Ok(n) if 0 < n && n < len) {
        forget_readable();
    }
    // After the readiness is settled: a yield lets the worker report more.
    spend_budget();
    result
}

/// The retry loop of [`io`] and [`read`]: a read that would block also
/// tells that the socket is empty, until epoll reports it again.
#[inline]
fn retry<T>(
    fd: BorrowedFd<'_>,
    interest: Interest,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    loop {
        match op() {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock && in_coroutine() => {
                if interest == Interest::Read {
                    forget_readable();
                }
                wait(fd, interest)?;
            }
            result => return result,
        }
    }
}

/// Suspends until `fd` may be ready for `interest`, within its timeout.
fn wait(fd: BorrowedFd<'_>, interest: Interest) -> io::Result<()> {
    let deadline = timeout_of(fd.as_raw_fd(), interest).map(|t| Instant::now() + t);
    suspend_until_ready(fd, deadline)
}

fn forget_readable() {
    READINESS.with(|r| r.set(r.get() & !READABLE));
}

/// Counts one completed operation against the running coroutine's budget,
/// yielding to the others on its worker when the budget is spent.
#[inline]
fn spend_budget() {
    if in_coroutine() && BUDGET_LEFT.with(|b| b.replace(b.get().saturating_sub(1))) <= 1 {
        yield_to_others();
    }
}

/// Lets the worker run the other ready coroutines before this one goes on.
fn yield_to_others() {
    // See suspend_until_ready for the deprecated free function.
    #[allow(deprecated)]
    let _ = generator::yield_::<Resume, Suspend>(Suspend::Yield);
}

/// Waits until `fd` is readable (data, end of file or an error for the next
/// read to report), at most `timeout`, then fails with
/// [`io::ErrorKind::TimedOut`]. Suspends only the coroutine when in one;
/// poll(2) otherwise.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    let deadline = timeout.map(|t| Instant::now() + t);
    if in_coroutine() {
        // Edge-triggered readiness only says "something changed": check.
        while !poll_readable(fd, Some(Instant::now()))? {
            suspend_until_ready(fd, deadline)?;
        }
        return Ok(());
    }
    if poll_readable(fd, deadline)? {
        Ok(())
    } else {
        Err(timed_out())
    }
}

/// poll(2) for readability until `deadline` (for ever without one).
fn poll_readable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let wait = sys::poll_timeout(deadline.map(sys::remaining));
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, wait) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Yields the current coroutine until its worker sees `fd` ready or
/// `deadline` passes.
fn suspend_until_ready(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<()> {
    register(fd)?;
    let fd = fd.as_raw_fd();
    // generator's free `yield_` is deprecated in favour of a `Scope` passed
    // to the coroutine's closure, which cannot reach a read deep inside a
    // handler without a raw pointer in a thread-local (unsafe); the free
    // function finds the running coroutine itself.
    #[allow(deprecated)]
    let resumed = generator::yield_::<Resume, Suspend>(Suspend::Wait { fd, deadline });
    match resumed {
        Some(Resume::TimedOut) => Err(timed_out()),
        _ => Ok(()),
    }
}
