//! The coroutine runtime behind [`CoroutineMixIn`] (feature `coroutine`):
//! each request on a coroutine, a few worker threads running them all —
//! blocking handlers, event-driven underneath.
//!
//! | file | what is in it |
//! |---|---|
//! | `mixin.rs` | [`CoroutineMixIn`] and its settings: hands requests to the workers (or has them take a datagram socket's), waits for them on close |
//! | `worker.rs` | `Workers` (the threads, a request to each in turn) and `Worker` (one thread's loop: resume what is ready, take datagrams, sleep in epoll_wait; what it does when something fails) |
//! | `stacks.rs` | `Stacks`: a worker's coroutine stacks, finished ones kept for reuse |
//! | `overflow.rs` | the SIGSEGV handler that turns a coroutine stack overflow into a loud abort |
//! | `slab.rs` | `Slab`: a worker's coroutines by id |
//! | `suspend.rs` | the socket I/O that `Connection` and the PROXY reader call: a read, write or wait that would block yields the coroutine |
//! | `thread_locals.rs` | the thread-locals below, and the only functions that touch them |
//!
//! # The thread-local protocol
//!
//! A worker and the coroutine it runs share one thread. What crosses each
//! switch as a value is small: a coroutine yields a `Suspend` (wait for
//! this descriptor until this deadline, or let the others run, or done) and
//! is resumed with a `Resume` (ready, or timed out). Everything else a
//! read deep inside a handler needs — which task it is, where to register
//! its socket, how to suspend — it finds in thread-locals of its worker's
//! thread:
//!
//! | thread-local | what it holds | set by | when |
//! |---|---|---|---|
//! | `POLLER` | the worker's epoll set | the worker (`become_worker`) | once, when the worker thread starts; never cleared |
//! | `CURRENT_TASK` | the running coroutine's id; 0 when none runs | the worker (`enter_task`, `leave_task`) | before and after each resumption |
//! | `BUDGET_LEFT` | operations the coroutine may still complete before it yields (of 128) | the worker refills it (`enter_task`); the coroutine's I/O counts down (`spend_budget`) | each resumption; each completed operation |
//! | `READINESS` | the coroutine's read readiness (`READABLE`, `READ_CLOSED`) | the worker copies it in and out (`enter_task`, `leave_task`), having added what epoll reported; the coroutine's reads clear `READABLE` (`forget_readable`) | each resumption; each read that finds the socket empty |
//! | `DESCRIPTORS` | by descriptor number: the task that last used it, whether it is in `POLLER`, its timeouts | the coroutine (`set_timeouts`, `register`); the worker clears a finished task's entries (`forget_task`) | on `Connection::set_timeout` and a socket's first wait; when the coroutine ends |
//! | `YIELDER` | a raw pointer to the running coroutine's corosensei `Yielder`, through which it suspends; null when none runs | the coroutine (`start_coroutine`, and `suspend` after each switch back); the worker nulls it (`leave_task`) | when a coroutine starts and each time it is resumed; after each resumption |
//! | `RUNNING_STACK` | the running coroutine's stack mapping, for the SIGSEGV handler to recognise its guard page | the worker (`enter_task`, `leave_task`) | before and after each resumption |
//! | `WORKER_NUMBER` | the worker's number, for the overflow message; `usize::MAX` on other threads (`on_worker`) | the worker (`become_worker`) | once |
//! | `TAKEN` | while the worker takes a datagram: its pool, and the request `Workers::submit` kept for it to run | the worker (`taking_for`); `submit` (`keep_taken_job`) | around each datagram taken |
//!
//! What a coroutine may assume:
//!
//! * `CURRENT_TASK != 0` ([`in_coroutine`](suspend::in_coroutine)) if and
//!   only if it runs on a coroutine. On every other thread (a threading or
//!   pool worker, the serving thread) all keep their initial values,
//!   and every function of `suspend` is the plain blocking call.
//! * From one resumption to its next yield the thread-locals are its own:
//!   nothing else runs on the thread. Across a yield they are not — other
//!   coroutines ran — but the worker restores `CURRENT_TASK` and
//!   `READINESS` and refills `BUDGET_LEFT` before resuming it. So no borrow
//!   of a thread-local is held across a yield (each function here borrows
//!   and returns).
//! * It stays on the worker that started it (a coroutine never moves to
//!   another thread), so `POLLER` is the epoll set that will resume it.
//! * Its id is unique on its worker for the worker's life, never 0 (the
//!   waker's token): epoll reports a registered socket under that id, and
//!   reports or deadlines of a coroutine gone are ignored ([`slab`]).
//! * Its socket is non-blocking (`Connection::prepare_for_coroutine`), so
//!   SO_RCVTIMEO and SO_SNDTIMEO no longer apply: the timeouts it set are
//!   in `DESCRIPTORS`, read by each wait. An entry left by another task (a
//!   descriptor number reused) counts as absent.
//! * Resumed after `Suspend::Wait` with `Resume::Ready`, its socket *may*
//!   be ready (edge-triggered epoll reports changes, for reading and
//!   writing both): it retries the operation. With `Resume::TimedOut` the
//!   deadline passed.
//! * A socket in `POLLER` stays there until it is closed: registered once,
//!   on its first wait, not once per wait.
//! * `YIELDER` is its own `Yielder` whenever it runs (set when it starts and
//!   after each switch back), so a read deep inside its handler can suspend
//!   it without a `Yielder` passed down.

mod mixin;
mod overflow;
mod slab;
mod stacks;
pub(crate) mod suspend;
mod thread_locals;
mod worker;

pub(crate) use mixin::TakingDatagrams;
pub use mixin::{CoroutineMixIn, DEFAULT_COROUTINE_STACK_SIZE};
