//! [`InFlight`]: counts requests still running, so that `server_close` can
//! wait for them (`block_on_close`), with an optional deadline.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

#[derive(Debug, Default)]
pub(crate) struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

impl InFlight {
    /// One more running until the guard drops. Taken before a thread is
    /// spawned and moved into it, so that `server_close` cannot miss a
    /// thread that has not started yet.
    pub(crate) fn start(self: &Arc<Self>) -> Running {
        *self.count.lock() += 1;
        Running {
            in_flight: Arc::clone(self),
        }
    }

    pub(crate) fn count(&self) -> usize {
        *self.count.lock()
    }

    /// Waits until at most `allowed` still run (the caller itself, when it is
    /// one of them) or the deadline passes; returns how many still run.
    pub(crate) fn wait_idle(&self, deadline: Option<Instant>, allowed: usize) -> usize {
        let mut count = self.count.lock();
        while *count > allowed {
            match deadline {
                None => self.idle.wait(&mut count),
                Some(deadline) => {
                    if self.idle.wait_until(&mut count, deadline).timed_out() {
                        break;
                    }
                }
            }
        }
        *count
    }
}

pub(crate) struct Running {
    in_flight: Arc<InFlight>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut count = self.in_flight.count.lock();
        *count -= 1;
        self.in_flight.idle.notify_all();
    }
}
