//! [`ThreadPoolMixIn`]: a bounded pool of worker threads (not in Python).
//!
//! Python's `ThreadingMixIn` starts a thread per request with no upper bound;
//! tiny_http's pool grows without bound too (its users have asked for a
//! bound since 2022). This pool has `workers` threads, a queue of
//! `queue_size` requests, and a policy for when both are full
//! (`mixin.rs`).
//!
//! A connection reaches the queue only once it is readable (nginx's rule):
//! silent connections wait in an epoll set, costing a descriptor and no
//! worker, so fifty clients that never send a byte cannot starve a pool of
//! four (slowloris). That epoll set and its thread are the gate
//! (`gate.rs`).

mod gate;
mod mixin;

pub use mixin::{Dispatch, Overload, PoolStats, ThreadPoolMixIn};
