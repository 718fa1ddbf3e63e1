//! [`RequestError`], and the context added to socket errors so that a person
//! can act on them.

use std::error::Error;
use std::fmt;
use std::io;

/// Why a request failed: what [`BaseServer::handle_error`] is told.
///
/// Python's `handle_error` reads the exception from `sys.exc_info()`; Rust
/// passes it. A handler that returns an error and a handler that panics are
/// both Python's "`Exception` subclass" case: reported, the connection closed,
/// the server carries on.
///
/// [`BaseServer::handle_error`]: crate::BaseServer::handle_error
#[derive(Debug)]
#[non_exhaustive]
pub enum RequestError {
    /// The handler's `setup`, `handle` or `finish` returned this error.
    Handler(io::Error),
    /// The handler panicked; the message and where it happened.
    Panic(String),
    /// The mix-in could not run the request: no thread or process could be
    /// started (EAGAIN at the thread or process limit, ENOMEM).
    Process(io::Error),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Handler(err) => write!(f, "handler failed: {err}"),
            RequestError::Panic(msg) => write!(f, "handler panicked: {msg}"),
            RequestError::Process(err) => write!(f, "could not process the request: {err}"),
        }
    }
}

impl Error for RequestError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RequestError::Handler(err) | RequestError::Process(err) => Some(err),
            RequestError::Panic(_) => None,
        }
    }
}

/// Wraps a failed `bind(2)` in words that name the address and what to do,
/// keeping the original [`io::ErrorKind`].
pub(crate) fn bind_error(class: &str, address: &dyn fmt::Display, err: io::Error) -> io::Error {
    let hint = match err.kind() {
        io::ErrorKind::AddrInUse => {
            "the address is in use: another process is listening there, or the port is \
             still in TIME_WAIT (set allow_reuse_address)"
        }
        io::ErrorKind::PermissionDenied => {
            "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE, and a \
             Unix socket needs write access to its directory"
        }
        io::ErrorKind::AddrNotAvailable => "the address is not one of this machine's",
        io::ErrorKind::NotFound => "the directory does not exist",
        _ => "",
    };
    let message = if hint.is_empty() {
        format!("{class} could not bind {address}: {err}")
    } else {
        format!("{class} could not bind {address}: {hint} ({err})")
    };
    io::Error::new(err.kind(), message)
}

/// Adds the operation and the address to an error, keeping its kind.
pub(crate) fn context(err: io::Error, what: fmt::Arguments<'_>) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}
