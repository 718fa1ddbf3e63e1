//! Durations as poll(2) and epoll_wait(2) take them: whole milliseconds in
//! an `i32`, -1 for ever.
//!
//! Every wait in the crate converts here, so that all of them round the same
//! way: up. Rounding down would turn a 0.3 ms wait into 0, a poll that
//! returns at once; its caller, the deadline not yet passed, would poll again
//! and again until it has — a busy spin of up to a millisecond per wait.

use std::time::{Duration, Instant};

use nix::poll::PollTimeout;
use nix::sys::epoll::EpollTimeout;

/// `Duration` counts in nanoseconds, poll(2) in milliseconds.
const NANOS_PER_MILLI: u128 = 1_000_000;

/// The poll(2) timeout that waits at least `timeout` (`None`: for ever).
///
/// Rounded up to the next millisecond so that a short wait never becomes a
/// spin (see the module's doc). Saturates at `i32::MAX` ms (24.8 days): a
/// longer wait returns early, as a timeout, which callers with a deadline
/// already handle by looking at the clock again.
pub(crate) fn poll_timeout(timeout: Option<Duration>) -> PollTimeout {
    match timeout {
        None => PollTimeout::NONE,
        Some(timeout) => PollTimeout::try_from(timeout.as_nanos().div_ceil(NANOS_PER_MILLI))
            .unwrap_or(PollTimeout::MAX),
    }
}

/// [`poll_timeout`] for epoll_wait(2), which takes the same milliseconds.
///
/// nix 0.31 makes `EpollTimeout` an alias of `PollTimeout`; the epoll call
/// sites still ask for an `EpollTimeout` by name, so that a nix which tells
/// the two apart breaks the build here, once, rather than at each of them.
pub(crate) fn epoll_timeout(timeout: Option<Duration>) -> EpollTimeout {
    poll_timeout(timeout)
}

/// How long until `deadline`: zero once it has passed, never negative, so
/// that a waiter woken late polls without waiting instead of failing.
pub(crate) fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(timeout: Option<Duration>) -> i32 {
        let polled = i32::from(poll_timeout(timeout));
        assert_eq!(
            i32::from(epoll_timeout(timeout)),
            polled,
            "poll and epoll round {timeout:?} alike"
        );
        polled
    }

    #[test]
    fn none_waits_for_ever() {
        assert_eq!(millis(None), -1);
        assert_eq!(poll_timeout(None), PollTimeout::NONE);
    }

    #[test]
    fn zero_returns_at_once() {
        assert_eq!(millis(Some(Duration::ZERO)), 0);
    }

    #[test]
    fn a_fraction_of_a_millisecond_rounds_up() {
        assert_eq!(millis(Some(Duration::from_nanos(1))), 1);
        assert_eq!(millis(Some(Duration::from_micros(1))), 1);
        assert_eq!(millis(Some(Duration::from_micros(300))), 1);
        assert_eq!(millis(Some(Duration::from_micros(999))), 1);
        assert_eq!(millis(Some(Duration::from_nanos(1_000_001))), 2);
        assert_eq!(millis(Some(Duration::from_micros(1_500_001))), 1_501);
    }

    #[test]
    fn whole_milliseconds_are_unchanged() {
        assert_eq!(millis(Some(Duration::from_millis(1))), 1);
        assert_eq!(millis(Some(Duration::from_millis(1500))), 1500);
        assert_eq!(millis(Some(Duration::from_secs(60))), 60_000);
        let max = Duration::from_millis(i32::MAX as u64);
        assert_eq!(millis(Some(max)), i32::MAX);
    }

    #[test]
    fn huge_timeouts_saturate() {
        let max = Duration::from_millis(i32::MAX as u64);
        assert_eq!(millis(Some(max + Duration::from_nanos(1))), i32::MAX);
        assert_eq!(millis(Some(Duration::from_secs(u64::MAX))), i32::MAX);
        assert_eq!(millis(Some(Duration::MAX)), i32::MAX);
        assert_eq!(poll_timeout(Some(Duration::MAX)), PollTimeout::MAX);
    }

    #[test]
    fn remaining_counts_down_to_zero_and_stays_there() {
        let past = Instant::now();
        assert_eq!(remaining(past), Duration::ZERO);
        assert_eq!(millis(Some(remaining(past))), 0);
        let hour = Duration::from_secs(3600);
        let left = remaining(Instant::now() + hour);
        assert!(
            left <= hour && left > hour - Duration::from_secs(60),
            "{left:?}"
        );
    }
}
