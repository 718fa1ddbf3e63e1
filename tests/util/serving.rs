//! A server serving on its own thread for the length of a test's
//! exchanges: started, then shut down with its loop's result checked.
//! Shared by the tests that hold a server serving while clients come.

use std::io;
use std::ops::Deref;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use socketserver::BaseServer;

/// `server` in `serve_forever` on its own thread (CPython's `run_server`).
pub struct Serving<S: BaseServer> {
    server: Arc<S>,
    thread: JoinHandle<io::Result<()>>,
}

impl<S: BaseServer> Serving<S> {
    pub fn start(server: S) -> Self {
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let thread = thread::spawn(move || serving.serve_forever(None));
        Serving { server, thread }
    }

    /// Shuts the server down and checks that its loop ended without error;
    /// the server, for what is checked after.
    pub fn stop(self) -> Arc<S> {
        self.server.shutdown().unwrap();
        self.thread.join().unwrap().unwrap();
        self.server
    }
}

impl<S: BaseServer> Deref for Serving<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.server
    }
}
