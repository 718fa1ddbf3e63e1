//! The coroutine runtime behind [`CoroutineMixIn`]: the mix-in and its
//! workers (`worker.rs`), and the socket I/O that suspends a coroutine
//! (`suspend.rs`).

pub(crate) mod suspend;
mod worker;

pub use worker::{CoroutineMixIn, DEFAULT_COROUTINE_STACK_SIZE};
