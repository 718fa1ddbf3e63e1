//! The command line's deployment options: SO_REUSEPORT workers (two
//! processes on one port, both taking connections), an inherited socket
//! (`--listen-fd`, and systemd activation picked up without options), TLS.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use util::{bounded, tcp_exchange, TEST_STR};
use util::{Running, BIN};

const LIMIT: Duration = Duration::from_secs(60);

/// Counts the "ADDR connected" lines the server has logged, waiting at most
/// `wait` for the first.
fn count_connections(server: &Running, wait: Duration) -> usize {
    let mut seen = 0;
    let mut wait = wait;
    while let Some(line) = server.next_log_line(wait) {
        seen += usize::from(line.contains(" connected"));
        wait = Duration::ZERO;
    }
    seen
}

#[test]
fn reuse_port_processes_both_take_connections() {
    bounded(LIMIT, || {
        let first = Running::start(&["echo", "--bind", "127.0.0.1:0", "--reuse-port"]);
        let bind = first.address.clone();
        let second = Running::start(&["echo", "--bind", &bind, "--reuse-port"]);
        assert_eq!(second.address, bind);
        let address = first.socket_addr();
        for _ in 0..100 {
            assert_eq!(tcp_exchange(address, TEST_STR), TEST_STR);
        }
        // Each logs "ADDR connected" before it reads: wait for all 100.
        let (mut a, mut b) = (0, 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while a + b < 100 && std::time::Instant::now() < deadline {
            a += count_connections(&first, Duration::from_millis(10));
            b += count_connections(&second, Duration::from_millis(10));
        }
        let total = a + b;
        eprintln!("SO_REUSEPORT split 100 connections between two processes: {a} / {b}");
        assert_eq!(total, 100);
        assert!(a > 0 && b > 0, "{a} / {b}");
        let err = Command::new(BIN)
            .args(["echo", "--bind", &bind])
            .output()
            .unwrap();
        assert!(
            !err.status.success(),
            "without --reuse-port the port is taken"
        );
    });
}

/// A listening socket at fd 3 (made by python3, as a supervisor would),
/// then exec: once with `--listen-fd 3`, once with systemd's variables only.
const INHERIT: &str = r#"
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0)); s.listen(16)
print("port", s.getsockname()[1], flush=True)
os.dup2(s.fileno(), 3); os.set_inheritable(3, True)
if sys.argv[2] == "systemd":
    os.environ["LISTEN_FDS"] = "1"; os.environ["LISTEN_PID"] = str(os.getpid())
    os.execv(sys.argv[1], [sys.argv[1], "echo"])
os.execv(sys.argv[1], [sys.argv[1], "echo", "--listen-fd", "3"])
"#;

#[test]
fn inherited_socket_from_the_command_line() {
    bounded(LIMIT, || {
        for how in ["listen-fd", "systemd"] {
            let mut command = Command::new("python3");
            command
                .args(["-c", INHERIT, BIN, how])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            let mut child = command.spawn().unwrap();
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            let port: u16 = line.trim().strip_prefix("port ").unwrap().parse().unwrap();
            line.clear();
            out.read_line(&mut line).unwrap();
            assert_eq!(
                line.trim(),
                format!("listening on 127.0.0.1:{port}"),
                "{how}"
            );
            let address = format!("127.0.0.1:{port}").parse().unwrap();
            assert_eq!(tcp_exchange(address, TEST_STR), TEST_STR, "{how}");
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
            assert!(child.wait().unwrap().success(), "{how}");
        }
        let err = Command::new(BIN)
            .args(["echo", "--listen-fd", "1"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&err.stderr).contains("start at descriptor 3"));
    });
}

#[cfg(feature = "tls")]
#[test]
fn tls_echo_from_the_command_line() {
    bounded(LIMIT, || {
        let certificate = util::certificate();
        let server = Running::start(
            &[
                &["echo", "--bind", "127.0.0.1:0"][..],
                &certificate.options(),
            ]
            .concat(),
        );
        let out = util::python(
            r#"
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"over tls\n")
        print(s.recv(100).decode(), end="")
"#,
            &[&server.port(), certificate.chain.to_str().unwrap()],
        );
        assert_eq!(out, "over tls\n");
        assert!(server.terminate().success());
    });
}
