//! The crate's panic hook chains to the one installed before it: a panic
//! outside a handler still reaches the program's own hook (an error
//! reporter, say), while a handler's panic is reported once, through
//! `handle_error`. A test binary of its own: the hook is process-wide.

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socketserver::{BaseServer, TCPServer};
use util::{bounded, panicky, Recorder};

static SEEN_BY_OURS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn the_previous_hook_sees_other_panics_and_handler_panics_go_to_handle_error() {
    bounded(Duration::from_secs(60), || {
        std::panic::set_hook(Box::new(|_| {
            SEEN_BY_OURS.fetch_add(1, Ordering::SeqCst);
        }));
        let server = Arc::new(Recorder::new(
            TCPServer::new("127.0.0.1:0", panicky).unwrap(),
        ));

        // A handler's panic: handle_error, not the program's hook.
        let mut client = TcpStream::connect(server.server_address()).unwrap();
        client.write_all(b"panic\n").unwrap();
        server.handle_request().unwrap();
        drop(client);
        assert_eq!(server.count("handle_error"), 1, "{:?}", server.calls());
        assert_eq!(SEEN_BY_OURS.load(Ordering::SeqCst), 0);

        // Any other panic: the program's hook, as before the server.
        let outside = std::thread::spawn(|| panic!("not a handler's")).join();
        assert!(outside.is_err());
        assert_eq!(SEEN_BY_OURS.load(Ordering::SeqCst), 1);
        server.server_close();
    });
}
