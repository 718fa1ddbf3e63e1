//! Rust servers driven by Python 3 standard-library clients: CPython's
//! `stream_examine` and `dgram_examine` ("hello world\n" echoed), run by
//! python3 against the Rust server.

mod util;

use std::io::{self, BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use socketserver::{BaseServer, DatagramRequest, TCPServer, UDPServer, UnixStreamServer};
use util::{line_echo, python, serve, unix_path};

const LIMIT: Duration = Duration::from_secs(60);

/// CPython's `stream_examine`, with its `receive` helper (select, 30 s).
const STREAM_EXAMINE: &str = r#"
import socket, sys, select
TEST_STR = b"hello world\n"
family = socket.AF_UNIX if sys.argv[1] == "unix" else socket.AF_INET
addr = sys.argv[2] if family == socket.AF_UNIX else ("127.0.0.1", int(sys.argv[2]))
for _ in range(3):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.connect(addr)
        s.sendall(TEST_STR)
        buf = data = b""
        while data and b"\n" not in buf or not buf:
            r, _, _ = select.select([s], [], [], 30)
            if not r:
                raise RuntimeError("timed out")
            data = s.recv(100)
            buf += data
        assert buf == TEST_STR, buf
print("ok")
"#;

/// CPython's `dgram_examine`.
const DGRAM_EXAMINE: &str = r#"
import socket, sys
TEST_STR = b"hello world\n"
for _ in range(3):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(30)
        s.sendto(TEST_STR, ("127.0.0.1", int(sys.argv[1])))
        buf, _ = s.recvfrom(100)
        assert buf == TEST_STR, buf
print("ok")
"#;

/// Serves `server` while python3 runs `program` with `args` against it,
/// which must print "ok".
fn python_client_against<S: BaseServer>(server: S, program: &str, args: &[&str]) {
    let server = Arc::new(server);
    let serving = serve(&server, None);
    assert_eq!(python(program, args), "ok\n");
    server.shutdown().unwrap();
    serving.join().unwrap().unwrap();
}

#[test]
fn python_stream_client_against_tcp_server() {
    util::bounded_with("python3", LIMIT, || {
        let server = TCPServer::new("127.0.0.1:0", line_echo).unwrap();
        let port = server.server_address().port().to_string();
        python_client_against(server, STREAM_EXAMINE, &["inet", &port]);
    });
}

#[test]
fn python_stream_client_against_unix_server() {
    util::bounded_with("python3", LIMIT, || {
        let path = unix_path("py");
        let server = UnixStreamServer::new(&path, line_echo).unwrap();
        python_client_against(server, STREAM_EXAMINE, &["unix", path.to_str().unwrap()]);
    });
}

#[test]
fn python_datagram_client_against_udp_server() {
    util::bounded_with("python3", LIMIT, || {
        let server = UDPServer::new(
            "127.0.0.1:0",
            |r: &mut DatagramRequest<'_>| -> io::Result<()> {
                let mut line = Vec::new();
                r.rfile.read_until(b'\n', &mut line)?;
                r.wfile.write_all(&line)
            },
        )
        .unwrap();
        let port = server.server_address().port().to_string();
        python_client_against(server, DGRAM_EXAMINE, &[&port]);
    });
}
