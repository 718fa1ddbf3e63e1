//! What a stack overflow on a request's coroutine does: the process aborts
//! with a message, as Rust does when a thread overflows its stack.
//!
//! Each coroutine stack ends in a guard page (corosensei maps one below
//! it), so an overflow is a SIGSEGV in that page. Rust's own handler
//! recognises only the guard page of the thread's stack; for any other
//! address it restores the default action and the process dies of the
//! signal without a word. So the first worker installs a handler that
//! recognises the running coroutine's guard page, writes
//! `thread 'socketserver-coroutines-N' has overflowed a request coroutine's
//! stack` and aborts; every other fault goes to the handler that was there
//! before (Rust's, usually), exactly as if this one did not exist.
//!
//! Aborting, rather than abandoning the request and going on, because an
//! overflow leaves the frames on that stack neither finished nor dropped:
//! a lock one of them held stays locked, a count stays counted. A thread's
//! overflow is fatal for the same reason. A handler that recurses deeply
//! needs a larger `CoroutineMixIn::stack_size`.
//!
//! `unsafe` is allowed here, for what only libc offers: sigaction,
//! sigaltstack, write and abort in a signal handler, and calling the
//! previous handler. Each block says why it holds.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::mem;
use std::ptr;
use std::sync::{Once, OnceLock};

use nix::libc;

use super::thread_locals;

/// The actions SIGSEGV and SIGBUS had before ours, to pass other faults on.
static PREVIOUS: OnceLock<[libc::sigaction; 2]> = OnceLock::new();
static INSTALL: Once = Once::new();
const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// Installs the handler, once per process. Called by each worker as it
/// starts, with [`alternate_stack`] on that thread.
pub(super) fn install_handler() {
    INSTALL.call_once(|| {
        // SAFETY: sigaction with a null new action only reads the current
        // one into a zeroed struct of the right type.
        let previous = SIGNALS.map(|signal| unsafe {
            let mut old: libc::sigaction = mem::zeroed();
            libc::sigaction(signal, ptr::null(), &mut old);
            old
        });
        if PREVIOUS.set(previous).is_err() {
            return;
        }
        for signal in SIGNALS {
            // SAFETY: a zeroed sigaction with a handler of the SA_SIGINFO
            // signature, an emptied mask, run on the alternate stack (the
            // overflowed stack has no room left).
            unsafe {
                let mut action: libc::sigaction = mem::zeroed();
                action.sa_sigaction = on_fault as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, ptr::null_mut());
            }
        }
    });
}

/// Gives the calling thread an alternate signal stack if it has none (std
/// gives one to the threads it spawns when its own handler is installed,
/// which is not always so), for the handler to run on when the stack it
/// interrupted is full. Kept until the returned value drops.
pub(super) fn alternate_stack() -> Option<AlternateStack> {
    // SAFETY: reading the current alternate stack into a zeroed stack_t.
    let current = unsafe {
        let mut current: libc::stack_t = mem::zeroed();
        libc::sigaltstack(ptr::null(), &mut current);
        current
    };
    if current.ss_flags & libc::SS_DISABLE == 0 {
        return None;
    }
    let mut memory = vec![0u8; 64 * 1024].into_boxed_slice();
    let stack = libc::stack_t {
        ss_sp: memory.as_mut_ptr().cast(),
        ss_flags: 0,
        ss_size: memory.len(),
    };
    // SAFETY: the memory outlives its use as this thread's signal stack:
    // AlternateStack disables it before freeing it.
    if unsafe { libc::sigaltstack(&stack, ptr::null_mut()) } != 0 {
        return None;
    }
    Some(AlternateStack { _memory: memory })
}

/// An alternate signal stack set up by [`alternate_stack`].
#[derive(Debug)]
pub(super) struct AlternateStack {
    _memory: Box<[u8]>,
}

impl Drop for AlternateStack {
    fn drop(&mut self) {
        let disable = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disables this thread's alternate stack before its memory
        // is freed; no handler runs on it now (we are not in one).
        unsafe { libc::sigaltstack(&disable, ptr::null_mut()) };
    }
}

/// The SIGSEGV and SIGBUS handler. Only async-signal-safe calls: reads of
/// integer thread-locals, write(2), abort(3).
extern "C" fn on_fault(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t.
    let address = unsafe { (*info).si_addr() } as usize;
    if let Some(worker) = thread_locals::overflowed_worker(address) {
        let mut number = [0u8; 20];
        let parts: [&[u8]; 3] = [
            b"\nthread 'socketserver-coroutines-",
            decimal(worker, &mut number),
            b"' has overflowed a request coroutine's stack (CoroutineMixIn::stack_size)\n\
              fatal runtime error: stack overflow, aborting\n",
        ];
        for part in parts {
            // SAFETY: write(2) of a valid buffer to stderr; its result is
            // of no use here.
            unsafe { libc::write(libc::STDERR_FILENO, part.as_ptr().cast(), part.len()) };
        }
        // SAFETY: abort is async-signal-safe and does not return.
        unsafe { libc::abort() };
    }
    pass_on(signal, info, context);
}

/// Hands a fault that is not a coroutine overflow to the previous action.
fn pass_on(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    let index = usize::from(signal != libc::SIGSEGV);
    let previous = PREVIOUS.get().map(|p| p[index]);
    match previous {
        Some(previous)
            if previous.sa_sigaction != libc::SIG_DFL && previous.sa_sigaction != libc::SIG_IGN =>
        {
            if previous.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: with SA_SIGINFO the handler has this signature;
                // it is called as the kernel would have called it.
                let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
                    unsafe { mem::transmute(previous.sa_sigaction) };
                handler(signal, info, context);
            } else {
                // SAFETY: without SA_SIGINFO, the one-argument signature.
                let handler: extern "C" fn(libc::c_int) =
                    unsafe { mem::transmute(previous.sa_sigaction) };
                handler(signal);
            }
        }
        // The default action: restore it and return; the faulting
        // instruction runs again and the signal kills the process.
        _ => {
            // SAFETY: signal(2) is async-signal-safe.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
    }
}

/// `n` in decimal, in `buffer`, without allocating.
fn decimal(mut n: usize, buffer: &mut [u8; 20]) -> &[u8] {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buffer[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn decimal_writes_every_digit() {
        let mut buffer = [0; 20];
        assert_eq!(decimal(0, &mut buffer), b"0");
        assert_eq!(decimal(7, &mut buffer), b"7");
        assert_eq!(decimal(1230, &mut buffer), b"1230");
        assert_eq!(
            decimal(usize::MAX, &mut buffer),
            usize::MAX.to_string().as_bytes()
        );
    }
}
