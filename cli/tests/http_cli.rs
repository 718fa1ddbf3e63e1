//! `socketserver http`, Python's `python -m http.server`: serves a
//! directory in every mode, logs each request to stderr as Python does,
//! holds a kept connection across requests, serves HTTPS, and stops
//! gracefully on SIGTERM with a kept connection open.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use nix::sys::signal::Signal;
use util::{bounded, Running, CLIENT_TIMEOUT};

const LIMIT: Duration = Duration::from_secs(120);

fn get(server: &Running, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.socket_addr()).unwrap();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream.write_all(request).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hello from http\n").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    dir
}

#[test]
fn serves_a_directory_in_every_mode_and_logs_as_python() {
    bounded(LIMIT, || {
        let dir = site();
        let path = dir.path().to_str().unwrap();
        for mode in ["sync", "threading", "pool", "coroutine", "forking"] {
            let server = Running::start(&[
                "http",
                "--directory",
                path,
                "--bind",
                "127.0.0.1:0",
                "--mode",
                mode,
                "--protocol",
                "HTTP/1.1",
            ]);
            let reply = get(
                &server,
                b"GET /hello.txt HTTP/1.1\r\n\r\nGET /sub HTTP/1.1\r\n\r\n",
            );
            assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{mode}: {reply}");
            assert!(
                reply.contains("\r\n\r\nhello from http\nHTTP/1.1 301"),
                "{mode}: {reply}"
            );
            let line = server.log_line("\"GET /hello.txt HTTP/1.1\" 200 -");
            assert!(line.starts_with("127.0.0.1 - - ["), "{mode}: {line}");
            server.log_line("\"GET /sub HTTP/1.1\" 301 -");
            // A control character in the request is escaped in the log.
            get(&server, b"GET /\x1b[2J HTTP/1.1\r\n\r\n");
            let line = server.log_line("code 400");
            assert!(!line.contains('\x1b'), "{line:?}");
            assert!(server.terminate().success(), "{mode}");
        }
    });
}

#[test]
fn default_directory_is_the_current_one() {
    bounded(LIMIT, || {
        let dir = site();
        let server = Running::start_in(&["http", "--bind", "127.0.0.1:0"], Some(dir.path()));
        let reply = get(&server, b"GET / HTTP/1.0\r\n\r\n");
        assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"), "{reply}");
        assert!(
            reply.contains("<a href=\"hello.txt\">hello.txt</a>"),
            "{reply}"
        );
        assert!(server.terminate().success());
    });
}

#[test]
fn sigterm_with_a_kept_connection_open_exits_0() {
    bounded(LIMIT, || {
        let dir = site();
        let path = dir.path().to_str().unwrap();
        for mode in ["threading", "pool", "sync"] {
            let server = Running::start(&[
                "--drain-timeout",
                "1",
                "http",
                "--directory",
                path,
                "--bind",
                "127.0.0.1:0",
                "--protocol",
                "HTTP/1.1",
                "--mode",
                mode,
            ]);
            let mut kept = TcpStream::connect(server.socket_addr()).unwrap();
            kept.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            kept.write_all(b"GET /hello.txt HTTP/1.1\r\n\r\n").unwrap();
            let mut buf = [0; 4096];
            let n = kept.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).ends_with("hello from http\n"));
            server.signal(Signal::SIGTERM);
            // The kept connection is closed (end of file), and the process
            // exits cleanly within the drain and its grace.
            assert_eq!(kept.read(&mut buf).unwrap_or(0), 0, "{mode}");
            assert!(server.wait().success(), "{mode}");
        }
    });
}

#[test]
fn https_with_tls_cert_and_key() {
    if !util::require_tool("curl") {
        return;
    }
    bounded(LIMIT, || {
        let dir = site();
        let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let private = dir.path().join("key.pem");
        std::fs::write(&cert, key.cert.pem()).unwrap();
        std::fs::write(&private, key.signing_key.serialize_pem()).unwrap();
        let server = Running::start(&[
            "http",
            "--directory",
            dir.path().to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            private.to_str().unwrap(),
        ]);
        let url = format!("https://localhost:{}/hello.txt", server.port());
        let resolve = format!("localhost:{}:127.0.0.1", server.port());
        let output = util::http::curl(&[
            "--cacert",
            cert.to_str().unwrap(),
            "--resolve",
            &resolve,
            &url,
        ]);
        assert_eq!(output, b"hello from http\n");
        assert!(server.terminate().success());
    });
}

/// Python's HTTPServer sets allow_reuse_address: stopped after serving
/// (HTTP/1.0 leaves the server's side of each connection in TIME_WAIT),
/// the command starts again on the same port at once.
#[test]
fn restarts_on_the_same_port_despite_time_wait() {
    bounded(LIMIT, || {
        let dir = site();
        let path = dir.path().to_str().unwrap();
        let first = Running::start(&["http", "--directory", path, "--bind", "127.0.0.1:0"]);
        let address = first.address.clone();
        // The server closes first (HTTP/1.0, and the client does not shut
        // down its side): the server's side stays in TIME_WAIT.
        let mut stream = TcpStream::connect(first.socket_addr()).unwrap();
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream
            .write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"));
        assert!(first.terminate().success());
        let again = Running::start(&["http", "--directory", path, "--bind", &address]);
        assert_eq!(again.address, address);
        assert!(get(&again, b"GET /hello.txt HTTP/1.0\r\n\r\n").ends_with("hello from http\n"));
        assert!(again.terminate().success());
    });
}
