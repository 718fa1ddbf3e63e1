//! The thread-locals through which a coroutine worker and the coroutine it
//! is running talk, besides the values that cross each switch (a
//! [`Suspend`](super::suspend::Suspend) out, a
//! [`Resume`](super::suspend::Resume) in). The protocol — who sets what,
//! when, and what a coroutine may assume — is written down in the module
//! doc of [`coroutine`](super); every read and write of these thread-locals
//! is one of the functions here.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use corosensei::Yielder;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};

use super::suspend::{Interest, Resume, Suspend};
use super::worker::Job;

/// How many socket operations a coroutine may complete in a row, without
/// ever waiting, before it yields to the others on its worker (tokio's
/// cooperative budget, 128, for the same reason): a client that keeps the
/// socket always ready must not starve the worker's other requests.
pub(super) const BUDGET: u32 = 128;

/// Epoll reported the socket readable (data, or something to report).
pub(super) const READABLE: u8 = 1;
/// Epoll reported the peer's end or an error: stays set, a read will not
/// block again.
pub(super) const READ_CLOSED: u8 = 2;

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
    static POLLER: RefCell<Option<Arc<Epoll>>> = const { RefCell::new(None) };
    /// The descriptors this worker's tasks wait on or set timeouts for, with
    /// the task that did: a number reused by a later connection inherits
    /// neither registration nor timeouts.
    /// Indexed by descriptor number (small integers, reused lowest first).
    static DESCRIPTORS: RefCell<Vec<Option<Descriptor>>> = const { RefCell::new(Vec::new()) };
    /// The running coroutine's `Yielder`, through which it suspends; null
    /// when none runs.
    static YIELDER: Cell<*const Yielder<Resume, Suspend>> = const { Cell::new(ptr::null()) };
    /// The running coroutine's stack mapping, guard page included, as
    /// `(lowest address, top)`; `(0, 0)` when none runs. Read by the
    /// SIGSEGV handler (`overflow.rs`): a plain `Cell` of integers, which a
    /// signal handler may read.
    static RUNNING_STACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// Which worker this thread is (its name's number), for the overflow
    /// message; `usize::MAX` on any other thread.
    static WORKER_NUMBER: Cell<usize> = const { Cell::new(usize::MAX) };
    /// While the worker takes a datagram: its pool's id, and the request
    /// that pool's `submit` kept here for the worker to run (0 and none
    /// otherwise). One datagram makes one request at most; should a
    /// `process_request` of the user's submit more, the others go to the
    /// workers' inboxes as usual.
    static TAKEN: RefCell<(u64, Option<Job>)> = const { RefCell::new((0, None)) };
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

// The worker's side.

/// Makes the calling thread coroutine worker number `number`, waiting on
/// `epoll`.
pub(super) fn become_worker(number: usize, epoll: Arc<Epoll>) {
    POLLER.with(|p| *p.borrow_mut() = Some(epoll));
    WORKER_NUMBER.with(|n| n.set(number));
}

/// Whether the calling thread is a coroutine worker (running a coroutine
/// or not): one that must not wait for the workers to exit.
pub(crate) fn on_worker() -> bool {
    WORKER_NUMBER.with(Cell::get) != usize::MAX
}

/// Runs `take` (one datagram off the server's socket) with the request
/// that `pool` is given meanwhile kept on this thread
/// ([`keep_taken_job`]); returns what `take` returned and that request.
pub(super) fn taking_for<R>(pool: u64, take: impl FnOnce() -> R) -> (R, Option<Job>) {
    /// Forgets the pool even if `take` panics.
    struct Taking;
    impl Drop for Taking {
        fn drop(&mut self) {
            TAKEN.with(|t| t.borrow_mut().0 = 0);
        }
    }
    TAKEN.with(|t| t.borrow_mut().0 = pool);
    let taking = Taking;
    let taken = take();
    drop(taking);
    (taken, TAKEN.with(|t| t.borrow_mut().1.take()))
}

/// Keeps `job` for this thread's worker if it is taking a datagram for
/// `pool` and keeps none yet; gives it back otherwise.
pub(super) fn keep_taken_job(pool: u64, job: Job) -> Result<(), Job> {
    TAKEN.with(|t| match &mut *t.borrow_mut() {
        (taking, kept @ None) if *taking == pool => {
            *kept = Some(job);
            Ok(())
        }
        _ => Err(job),
    })
}

/// Called by the worker before each resumption of task `id`, with the read
/// readiness it has gathered for it and its stack's bounds; each
/// resumption starts with a full budget.
pub(super) fn enter_task(id: u64, readiness: u8, stack: (usize, usize)) {
    CURRENT_TASK.with(|c| c.set(id));
    BUDGET_LEFT.with(|b| b.set(BUDGET));
    READINESS.with(|r| r.set(readiness));
    RUNNING_STACK.with(|s| s.set(stack));
}

/// Called by the worker after each resumption: the task's read readiness
/// as its reads have left it.
pub(super) fn leave_task() -> u8 {
    CURRENT_TASK.with(|c| c.set(0));
    YIELDER.with(|y| y.set(ptr::null()));
    RUNNING_STACK.with(|s| s.set((0, 0)));
    READINESS.with(Cell::get)
}

/// For the SIGSEGV handler: when `address` lies in the running
/// coroutine's stack mapping (so in its guard page: the rest is writable),
/// this worker's number. Touches only `Cell`s of integers.
pub(super) fn overflowed_worker(address: usize) -> Option<usize> {
    let (low, top) = RUNNING_STACK.with(Cell::get);
    (low <= address && address < top).then(|| WORKER_NUMBER.with(Cell::get))
}

/// Called by the worker when task `id` is over: forget what it left about
/// the descriptors it waited on.
pub(super) fn forget_task(id: u64, fds: &[RawFd]) {
    DESCRIPTORS.with(|d| {
        let mut table = d.borrow_mut();
        for &fd in fds {
            if Descriptor::get(&table, fd, id).is_some() {
                table[fd as usize] = None;
            }
        }
    });
}

// The coroutine's side.

/// Called first thing on a new coroutine, with the `Yielder` its closure
/// was given.
pub(super) fn start_coroutine(yielder: &Yielder<Resume, Suspend>) {
    YIELDER.with(|y| y.set(yielder));
}

/// Suspends the running coroutine with `what` for its worker; returns what
/// the worker resumes it with.
///
/// # Panics
///
/// When no coroutine runs (callers check [`in_coroutine`] first).
// The one raw pointer of the coroutine runtime: see the SAFETY note.
#[allow(unsafe_code)]
pub(super) fn suspend(what: Suspend) -> Resume {
    let yielder = YIELDER.with(Cell::get);
    assert!(!yielder.is_null(), "suspend outside a coroutine");
    // SAFETY: YIELDER is non-null only while a coroutine runs, and then it
    // is that coroutine's own Yielder: set when the coroutine starts
    // (start_coroutine) and again each time it is resumed (below, after
    // the switch back), nulled by the worker whenever it gets control back
    // (leave_task). A Yielder lives in its coroutine's root frame, which
    // outlives every call the coroutine makes, this one included. A
    // reference cannot be kept instead: corosensei hands it only to the
    // coroutine's closure, and the reads that suspend are deep inside the
    // handler it calls.
    let resumed = unsafe { &*yielder }.suspend(what);
    // Other coroutines ran meanwhile and set their own.
    YIELDER.with(|y| y.set(yielder));
    resumed
}

/// Whether this code runs on a coroutine of a [`CoroutineMixIn`] worker.
///
/// [`CoroutineMixIn`]: crate::CoroutineMixIn
pub(crate) fn in_coroutine() -> bool {
    CURRENT_TASK.with(Cell::get) != 0
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

/// The timeout the current coroutine set for `fd` and `interest`.
pub(super) fn timeout_of(fd: RawFd, interest: Interest) -> Option<Duration> {
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

/// Whether the current coroutine has added `fd` to its worker's epoll set,
/// so that epoll's reports on it reach [`readiness`].
pub(super) fn is_registered(fd: RawFd) -> bool {
    DESCRIPTORS.with(|d| {
        Descriptor::get(&d.borrow(), fd, CURRENT_TASK.with(Cell::get)).is_some_and(|e| e.registered)
    })
}

/// Adds `fd` to the worker's epoll set for the current task, once:
/// edge-triggered for reading and writing both, so that a connection costs
/// one epoll_ctl in its life, not one per wait.
pub(super) fn register(fd: BorrowedFd<'_>) -> io::Result<()> {
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

/// The running task's read readiness: 0 when its last read found the
/// socket empty and epoll has reported nothing since.
pub(super) fn readiness() -> u8 {
    READINESS.with(Cell::get)
}

/// Notes that the running task's socket has no more to read now.
pub(super) fn forget_readable() {
    READINESS.with(|r| r.set(r.get() & !READABLE));
}

/// Counts one completed operation against the running coroutine's budget;
/// `true` when the budget is spent and the coroutine should yield to the
/// others on its worker. Outside a coroutine it counts nothing.
pub(super) fn spend_budget() -> bool {
    in_coroutine() && BUDGET_LEFT.with(|b| b.replace(b.get().saturating_sub(1))) <= 1
}
