//! [`InFlight`]: counts the threads still running requests, so that
//! `server_close` can wait for them (`block_on_close`), with an optional
//! deadline — and knows when it is called from one of them.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ServerHandle;

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

impl InFlight {
    /// A bounded stop's wait: [`wait_idle`](InFlight::wait_idle) until
    /// `close_timeout` has passed; then the requests still running are
    /// stopped (their connections shut down) and waited for up to
    /// [`STOP_GRACE`](crate::STOP_GRACE) more. Returns how many still run.
    pub(crate) fn drain(
        self: &Arc<Self>,
        close_timeout: Option<Duration>,
        server: &ServerHandle,
    ) -> usize {
        let left = self.wait_idle(close_timeout.map(|t| Instant::now() + t));
        if left == 0 {
            return 0;
        }
        server.stop_requests();
        self.wait_idle(Some(Instant::now() + crate::STOP_GRACE))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    /// How long a test waits for something that should happen at once
    /// before it fails rather than hangs.
    const BOUND: Duration = Duration::from_secs(10);

    /// Runs `wait_idle` on a thread of its own; its answer arrives on the
    /// receiver.
    fn wait_idle_elsewhere(
        in_flight: &Arc<InFlight>,
        running: Option<Running>,
        deadline: Option<Instant>,
    ) -> mpsc::Receiver<usize> {
        let (tx, rx) = mpsc::channel();
        let in_flight = Arc::clone(in_flight);
        thread::spawn(move || {
            if let Some(running) = &running {
                running.enter();
            }
            let _ = tx.send(in_flight.wait_idle(deadline));
            drop(running);
        });
        rx
    }

    #[test]
    fn start_counts_until_the_guard_drops() {
        let in_flight = Arc::new(InFlight::default());
        assert_eq!(in_flight.count(), 0);
        let first = in_flight.start();
        assert_eq!(in_flight.count(), 1);
        let second = in_flight.start();
        assert_eq!(in_flight.count(), 2);
        // Entering a thread does not count it again.
        first.enter();
        assert_eq!(in_flight.count(), 2);
        drop(first);
        assert_eq!(in_flight.count(), 1);
        // A guard dropped on another thread counts there as here.
        thread::spawn(move || drop(second)).join().unwrap();
        assert_eq!(in_flight.count(), 0);
    }

    #[test]
    fn wait_idle_returns_at_once_when_none_runs() {
        let in_flight = Arc::new(InFlight::default());
        assert_eq!(in_flight.wait_idle(None), 0);
        assert_eq!(in_flight.wait_idle(Some(Instant::now())), 0);
        drop(in_flight.start());
        assert_eq!(in_flight.wait_idle(None), 0);
    }

    #[test]
    fn wait_idle_without_a_deadline_waits_for_the_last_to_finish() {
        let in_flight = Arc::new(InFlight::default());
        let first = in_flight.start();
        let second = in_flight.start();
        let idle = wait_idle_elsewhere(&in_flight, None, None);
        assert_eq!(idle.try_recv(), Err(mpsc::TryRecvError::Empty));
        drop(first);
        assert_eq!(in_flight.count(), 1);
        drop(second);
        // Without a deadline it returns only once none runs, and says how
        // many do: 0 can only come after both drops, so it waited for them.
        assert_eq!(idle.recv_timeout(BOUND), Ok(0));
    }

    #[test]
    fn wait_idle_gives_up_at_its_deadline_and_says_how_many_still_run() {
        let in_flight = Arc::new(InFlight::default());
        let _first = in_flight.start();
        let _second = in_flight.start();
        let deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(in_flight.wait_idle(Some(deadline)), 2);
        assert!(Instant::now() >= deadline, "returned before its deadline");
        // A deadline already past: no wait at all.
        assert_eq!(in_flight.wait_idle(Some(Instant::now())), 2);
    }

    #[test]
    fn wait_idle_with_a_deadline_returns_when_idle_before_it() {
        let in_flight = Arc::new(InFlight::default());
        let running = in_flight.start();
        let idle = wait_idle_elsewhere(&in_flight, None, Some(Instant::now() + 2 * BOUND));
        drop(running);
        // Well before the deadline: it was woken, not timed out.
        assert_eq!(idle.recv_timeout(BOUND), Ok(0));
    }

    #[test]
    fn is_current_thread_inside_only_on_an_entered_thread() {
        let in_flight = Arc::new(InFlight::default());
        let other = Arc::new(InFlight::default());
        let running = in_flight.start();
        let inside = {
            let (in_flight, other) = (Arc::clone(&in_flight), Arc::clone(&other));
            thread::spawn(move || {
                let before = in_flight.is_current_thread_inside();
                running.enter();
                let after = in_flight.is_current_thread_inside();
                let in_other = other.is_current_thread_inside();
                drop(running);
                // Still marked after its request (see wait_idle).
                let after_drop = in_flight.is_current_thread_inside();
                (before, after, in_other, after_drop)
            })
            .join()
            .unwrap()
        };
        assert_eq!(inside, (false, true, false, true));
        // This thread never entered.
        assert!(!in_flight.is_current_thread_inside());
        assert!(!other.is_current_thread_inside());
    }

    #[test]
    fn a_counted_thread_waits_for_the_others_not_for_itself() {
        let in_flight = Arc::new(InFlight::default());
        let mine = in_flight.start();
        let other = in_flight.start();
        let idle = wait_idle_elsewhere(&in_flight, Some(mine), None);
        assert_eq!(idle.try_recv(), Err(mpsc::TryRecvError::Empty));
        drop(other);
        assert_eq!(idle.recv_timeout(BOUND), Ok(0));
    }

    #[test]
    fn a_counted_thread_at_its_deadline_counts_only_the_others() {
        let in_flight = Arc::new(InFlight::default());
        let mine = in_flight.start();
        let _other = in_flight.start();
        let deadline = Instant::now() + Duration::from_millis(50);
        let idle = wait_idle_elsewhere(&in_flight, Some(mine), Some(deadline));
        assert_eq!(idle.recv_timeout(BOUND), Ok(1));
    }

    #[test]
    fn counted_threads_closing_at_once_do_not_wait_for_each_other() {
        let in_flight = Arc::new(InFlight::default());
        let waits: Vec<_> = (0..3)
            .map(|_| {
                let running = in_flight.start();
                wait_idle_elsewhere(&in_flight, Some(running), None)
            })
            .collect();
        for idle in waits {
            assert_eq!(idle.recv_timeout(BOUND), Ok(0));
        }
    }

    #[test]
    fn a_thread_whose_request_is_over_does_not_wait_for_itself() {
        // Marked inside but no longer counted (it dropped its guard, then
        // the last handle to the server): the count must not underflow.
        let in_flight = Arc::new(InFlight::default());
        let (tx, rx) = mpsc::channel();
        let thread_in_flight = Arc::clone(&in_flight);
        let running = in_flight.start();
        thread::spawn(move || {
            running.enter();
            drop(running);
            let _ = tx.send(thread_in_flight.wait_idle(None));
        });
        assert_eq!(rx.recv_timeout(BOUND), Ok(0));
        assert_eq!(in_flight.count(), 0);
    }
}
