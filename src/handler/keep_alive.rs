//! Keep-alive between a stream handler and the pool: a handler that asks
//! to serve the connection again ([`StreamRequest::serve_again`]) while
//! nothing more has arrived is *parked* — handed back to the pool's
//! readiness gate, holding no worker until the client sends its next
//! request.
//!
//! The two sides meet on the worker's thread: the pool allows parking
//! around the request it runs ([`allowing_parking`]), the stream kind parks
//! when allowed ([`park`]). A thread-local, because between them runs
//! `finish_request`, a user hook whose signature carries no such flag.
//!
//! [`StreamRequest::serve_again`]: super::StreamRequest::serve_again

use std::cell::Cell;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parking {
    /// Not on a pool worker (or no gate): a handler asking to serve again
    /// is called again at once, on its own thread.
    NotHere,
    /// A pool worker with a readiness gate runs this request.
    Allowed,
    /// The request asked to be parked: do not close the connection.
    Parked,
}

thread_local! {
    static PARKING: Cell<Parking> = const { Cell::new(Parking::NotHere) };
}

/// Runs `f` (a request) with parking allowed; returns its result and
/// whether the request parked its connection.
pub(crate) fn allowing_parking<R>(f: impl FnOnce() -> R) -> (R, bool) {
    let outer = PARKING.with(|p| p.replace(Parking::Allowed));
    let result = f();
    let parked = PARKING.with(|p| p.replace(outer)) == Parking::Parked;
    (result, parked)
}

/// Parks the current request if this thread allows it; `false` means the
/// caller serves the connection again itself.
pub(crate) fn park() -> bool {
    PARKING.with(|p| {
        let allowed = p.get() == Parking::Allowed;
        if allowed {
            p.set(Parking::Parked);
        }
        allowed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parks_only_where_allowed() {
        assert!(!park(), "no pool worker here");
        let (_, parked) = allowing_parking(|| ());
        assert!(!parked);
        let (allowed, parked) = allowing_parking(park);
        assert!(allowed && parked);
        assert!(!park(), "allowed only inside");
    }
}
