//! Catching handler panics, reported once through `handle_error`.
//!
//! `catch_unwind` alone would leave Rust's default hook printing every
//! handler panic to stderr besides `handle_error`'s report. So the first
//! server installs a panic hook that, on threads running a handler, keeps the
//! message (with its location) for `handle_error` instead of printing it, and
//! passes every other panic to the hook that was there before.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs the hook; called when a server is built, never while panicking.
pub(crate) fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            // With panic = "abort" nothing is caught: print as usual.
            // try_with: a panic during thread teardown, after the
            // thread-locals are gone, is passed on, not a second panic.
            if cfg!(panic = "unwind") && CAPTURING.try_with(Cell::get).unwrap_or(false) {
                let location = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let message = format!("{}{location}", payload_message(info.payload()));
                let _ = MESSAGE.try_with(|m| *m.borrow_mut() = Some(message));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into its message.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    // A message left by a panic the handler caught itself is not this one's.
    MESSAGE.with(|m| m.borrow_mut().take());
    let outer = CAPTURING.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CAPTURING.with(|c| c.set(outer));
    result.map_err(|payload| {
        MESSAGE
            .with(|m| m.borrow_mut().take())
            .unwrap_or_else(|| payload_message(&*payload))
    })
}

/// Marks the current thread as one that runs only handlers (a coroutine
/// worker): its panics are captured for `handle_error` even between the
/// nested `catch` calls of coroutines that interleave on it.
#[cfg(feature = "coroutine")]
pub(crate) fn capture_on_this_thread() {
    CAPTURING.with(|c| c.set(true));
}

/// A panic payload as text.
pub(crate) fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
