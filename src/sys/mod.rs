//! The system layer: the few descriptor and timeout primitives that the
//! request loop, the thread pool and the coroutine workers all wait with,
//! written once so that every wait wakes and rounds the same way.

mod readable;
mod timeout;
mod waker;

pub(crate) use readable::poll_readable;
pub(crate) use timeout::{epoll_timeout, poll_timeout, remaining};
pub(crate) use waker::Waker;
