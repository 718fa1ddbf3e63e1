//! [`InFlight`]: counts the threads still running requests, so that
//! `server_close` can wait for them (`block_on_close`), with an optional
//! deadline — and knows when it is called from one of them.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

thread_local! {
    /// The `InFlight` whose thread this is (request thread, pool worker), as
    /// an address; 0 for any other thread.
    static INSIDE: Cell<usize> = const { Cell::new(0) };
}

#[derive(Debug, Default)]
pub(crate) struct InFlight {
    count: Mutex<Count>,
    idle: Condvar,
}

#[derive(Debug, Default)]
struct Count {
    running: usize,
    /// Of those running, how many are inside `wait_idle` themselves.
    waiting: usize,
}

impl InFlight {
    /// One more running until the guard drops. Taken before a thread is
    /// spawned and moved into it, so that `server_close` cannot miss a
    /// thread that has not started yet.
    pub(crate) fn start(self: &Arc<Self>) -> Running {
        self.count.lock().running += 1;
        Running {
            in_flight: Arc::clone(self),
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.count.lock().running
    }

    fn address(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

    /// Whether the current thread is one of those counted here.
    pub(crate) fn is_current_thread_inside(self: &Arc<Self>) -> bool {
        INSIDE.with(Cell::get) == self.address()
    }

    /// Waits until none runs (the deadline passing first), and returns how
    /// many still do. Called from one of the counted threads, it waits until
    /// every other one is waiting here too: several request threads closing
    /// the server at once must not wait for each other.
    pub(crate) fn wait_idle(self: &Arc<Self>, deadline: Option<Instant>) -> usize {
        let inside = self.is_current_thread_inside();
        let mut count = self.count.lock();
        if inside {
            count.waiting += 1;
            self.idle.notify_all();
        }
        // Saturating: a thread that has left its request (and then dropped
        // the last handle to the server) is still marked inside, but no
        // longer counted as running.
        let busy = |c: &Count| {
            if inside {
                c.running.saturating_sub(c.waiting)
            } else {
                c.running
            }
        };
        while busy(&count) > 0 {
            match deadline {
                None => self.idle.wait(&mut count),
                Some(deadline) => {
                    if self.idle.wait_until(&mut count, deadline).timed_out() {
                        break;
                    }
                }
            }
        }
        let others = busy(&count);
        if inside {
            count.waiting -= 1;
        }
        others
    }
}

pub(crate) struct Running {
    in_flight: Arc<InFlight>,
}

impl Running {
    /// Marks the current thread as one of those counted (call on it).
    pub(crate) fn enter(&self) {
        INSIDE.with(|inside| inside.set(self.in_flight.address()));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.in_flight.count.lock().running -= 1;
        self.in_flight.idle.notify_all();
    }
}
