//! CPython: `SocketServerTest.test_tcpserver_bind_leak` (Issue #22435) — a
//! failed bind closes the socket, so 1024 failures in a row leak nothing.
//! Alone in its file: it counts the process's descriptors.

mod util;

use std::io;
use std::time::Duration;

use socketserver::{BaseServer, TCPServer, UnixStreamServer};
use util::{bounded, line_echo, open_fds, unix_path};

#[test]
fn test_tcpserver_bind_leak() {
    bounded(Duration::from_secs(60), || {
        let taken = TCPServer::new("127.0.0.1:0", line_echo).unwrap();
        let address = taken.server_address();
        let before = open_fds();
        for _ in 0..1024 {
            let err = TCPServer::new(address, line_echo).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
            let message = err.to_string();
            assert!(message.contains(&address.to_string()), "{message}");
            assert!(message.contains("in use"), "{message}");
        }
        // Python's version passes port -1; Rust's port is a u16, so the
        // nearest is a malformed address, refused before any socket exists.
        for _ in 0..1024 {
            let err = TCPServer::new("127.0.0.1:-1", line_echo).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        let path = unix_path("leak");
        let owner = UnixStreamServer::new(&path, line_echo).unwrap();
        for _ in 0..1024 {
            let err = UnixStreamServer::new(&path, line_echo).unwrap_err();
            assert!(err.to_string().contains(&path.display().to_string()));
        }
        assert!(
            path.exists(),
            "a failed bind must not remove another server's file"
        );
        drop(owner);
        assert_eq!(open_fds(), before, "failed binds leaked descriptors");
        drop(taken);
    });
}
