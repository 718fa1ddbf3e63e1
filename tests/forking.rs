//! The Forking variants of CPython's server and error-handler tests, and
//! forking's own rules: only the server's children are reaped, and
//! `server_close` waits for them.
//!
//! A forked child inherits only the forking thread; a lock another test's
//! thread held would stay held in it. So these tests run one at a time.

mod util;

use std::fs::OpenOptions;
use std::io::{self, BufRead, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use socketserver::{
    AddressOf, BaseServer, ForkingTCPServer, ForkingUDPServer, ForkingUnixDatagramServer,
    ForkingUnixStreamServer, RequestError, RequestOf, StreamRequest,
};
use socketserver::{ForkingMixIn, Server, Tcp, Transport};
use util::{
    bounded, datagram_line_echo, hammer, line_echo, panicky, serve, tcp_examine, tcp_exchange,
    udp_examine, unix_dgram_examine, unix_path, unix_stream_examine, TEST_STR,
};

const LIMIT: Duration = Duration::from_secs(120);

/// A forking server that may fork here: the test harness runs other
/// threads (its own and the other tests'), none of which holds a lock the
/// child needs while these tests run one at a time.
fn forking<T: Transport>(mut server: Server<T, ForkingMixIn>) -> Server<T, ForkingMixIn> {
    server.mixin.fork_with_threads = true;
    server
}

static ONE_AT_A_TIME: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// CPython's `simple_subprocess`: a child of the test's own, exiting with
/// 72, whose status must survive the forking server (Issue 1540386). The
/// child is `sh`: without it, `body` is skipped (see `util::require_tool`).
fn with_foreign_child(body: impl FnOnce()) {
    if !util::require_tool("sh") {
        return;
    }
    let mut child = Command::new("sh").args(["-c", "exit 72"]).spawn().unwrap();
    body();
    let status = child
        .wait()
        .expect("the server reaped a child that was not its own");
    assert_eq!(status.code(), Some(72));
}

/// CPython's `run_server` for forking servers: also asserts that
/// `server_close` waited for every child (bpo-31151).
macro_rules! run_forking {
    ($server:expr, $examine:expr) => {{
        let server = Arc::new($server);
        let serving = serve(&server, Some(Duration::from_millis(10)));
        for _ in 0..3 {
            $examine(server.server_address());
        }
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        server.server_close();
        assert_eq!(server.fileno(), -1);
        assert!(
            server.mixin.active_children().is_empty(),
            "server_close waits for children"
        );
    }};
}

/// CPython: `test_ForkingTCPServer`, inside `simple_subprocess`.
#[test]
fn test_forking_tcp_server() {
    let _one = ONE_AT_A_TIME.lock();
    bounded(LIMIT, || {
        with_foreign_child(|| {
            let server = forking(ForkingTCPServer::new("127.0.0.1:0", line_echo).unwrap());
            assert_eq!(
                server.timeout,
                Some(Duration::from_secs(300)),
                "Python's ForkingMixIn.timeout"
            );
            run_forking!(server, tcp_examine);
        });
    });
}

/// CPython: `test_ForkingUnixStreamServer`.
#[test]
fn test_forking_unix_stream_server() {
    let _one = ONE_AT_A_TIME.lock();
    bounded(LIMIT, || {
        with_foreign_child(|| {
            let server = forking(ForkingUnixStreamServer::new(unix_path("fs"), line_echo).unwrap());
            run_forking!(server, unix_stream_examine);
        });
    });
}

/// CPython: `test_ForkingUDPServer`.
#[test]
fn test_forking_udp_server() {
    let _one = ONE_AT_A_TIME.lock();
    bounded(LIMIT, || {
        with_foreign_child(|| {
            let server = forking(ForkingUDPServer::new("127.0.0.1:0", datagram_line_echo).unwrap());
            run_forking!(server, udp_examine);
        });
    });
}

/// CPython: `test_ForkingUnixDatagramServer`.
#[test]
fn test_forking_unix_datagram_server() {
    let _one = ONE_AT_A_TIME.lock();
    bounded(LIMIT, || {
        let server =
            forking(ForkingUnixDatagramServer::new(unix_path("fd"), datagram_line_echo).unwrap());
        run_forking!(server, unix_dgram_examine);
    });
}

/// A forking server whose `handle_error` appends to a file: a child's memory
/// is its own, so the record must go through the file system (as CPython's
/// `ForkingErrorTestServer`).
struct FileLogged {
    base: ForkingTCPServer,
    log: PathBuf,
}

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

impl BaseServer for FileLogged {
    type Transport = Tcp;
    type MixIn = ForkingMixIn;
    fn base(&self) -> &ForkingTCPServer {
        &self.base
    }
    fn handle_error(&self, _: &RequestOf<Self>, _: &AddressOf<Self>, _: &RequestError) {
        append(&self.log, "Error handled\n");
    }
}

/// CPython: `ErrorHandlerTest.test_forking_handled` and, a panic being
/// Python's ordinary exception here, `test_forking_not_handled`'s Rust
/// counterpart: the child reports through `handle_error`, and the parent's
/// `server_close` waits for the child, so the log is complete.
#[test]
fn test_forking_handled() {
    let _one = ONE_AT_A_TIME.lock();
    bounded(LIMIT, || {
        for (n, fail) in [
            || Err(io::Error::other("Test error")),
            || -> io::Result<()> { panic!("Test error") },
        ]
        .into_iter()
        .enumerate()
        {
            let log = unix_path(&format!("forking-log-{n}")).with_extension("txt");
            let handler_log = log.clone();
            let handler = move |_: &mut StreamRequest<'_>| {
                append(&handler_log, "Handler called\n");
                fail()
            };
            let server = Arc::new(FileLogged {
                base: forking(ForkingTCPServer::new("127.0.0.1:0", handler).unwrap()),
                log: log.clone(),
            });
            drop(TcpStream::connect(server.server_address()).unwrap());
            server.handle_request().unwrap();
            server.server_close();
            assert_eq!(
                std::fs::read_to_string(&log).unwrap(),
                "Handler called\nError handled\n"
            );
            std::fs::remove_file(log).unwrap();
        }
    });
}

/// At `max_children` the server waits for one of its own children, never
/// for another's (Python's `waitpid(-1)` there could take the 72).
#[test]
fn max_children_waits_only_for_own_children() {
    let _one = ONE_AT_A_TIME.lock();
    bounded(LIMIT, || {
        with_foreign_child(|| {
            let mut server = forking(ForkingTCPServer::new("127.0.0.1:0", line_echo).unwrap());
            server.mixin.max_children = 2;
            let server = Arc::new(server);
            let serving = serve(&server, None);
            for i in 0..20 {
                let message = format!("{i}\n");
                assert_eq!(
                    tcp_exchange(server.server_address(), message.as_bytes()),
                    message.as_bytes()
                );
                assert!(server.mixin.active_children().len() <= 2);
            }
            server.shutdown().unwrap();
            serving.join().unwrap().unwrap();
            server.server_close();
            assert!(server.mixin.active_children().is_empty());
        });
    });
}

/// Panic isolation in forking mode: 10,000 requests, every other one
/// panicking in its child; every good one answered, every panic reported.
#[test]
fn panic_isolation_forking() {
    const TOTAL: usize = 10_000;
    let _one = ONE_AT_A_TIME.lock();
    bounded(LIMIT, || {
        let log = unix_path("forking-panics").with_extension("txt");
        let server = Arc::new(FileLogged {
            base: forking(ForkingTCPServer::new("127.0.0.1:0", panicky).unwrap()),
            log: log.clone(),
        });
        let serving = serve(&server, None);
        // One client, one request after another: a child per request.
        assert_eq!(hammer(server.server_address(), TOTAL, 1), TOTAL / 2);
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        server.server_close();
        let reported = std::fs::read_to_string(&log).unwrap().lines().count();
        assert_eq!(reported, TOTAL / 2);
        std::fs::remove_file(log).unwrap();
    });
}

/// A forking server whose `shutdown_request` panics in the child.
struct PanickyChild {
    base: ForkingTCPServer,
    parent: u32,
}

impl BaseServer for PanickyChild {
    type Transport = Tcp;
    type MixIn = ForkingMixIn;
    fn base(&self) -> &ForkingTCPServer {
        &self.base
    }
    fn shutdown_request(&self, request: RequestOf<Self>) {
        if std::process::id() != self.parent {
            panic!("shutdown_request blew up in the child");
        }
        self.base().shutdown_request(request);
    }
}

/// A panic escaping a hook in the child used to send the child back into
/// `serve_forever` as a second server; the child now always exits, so
/// `server_close` (which waits for every child) returns.
#[test]
fn a_child_always_exits() {
    let _one = ONE_AT_A_TIME.lock();
    bounded(LIMIT, || {
        let server = Arc::new(PanickyChild {
            base: forking(ForkingTCPServer::new("127.0.0.1:0", line_echo).unwrap()),
            parent: std::process::id(),
        });
        let serving = serve(&server, None);
        for _ in 0..5 {
            assert_eq!(tcp_exchange(server.server_address(), TEST_STR), TEST_STR);
        }
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        server.server_close();
        assert!(server.base.mixin.active_children().is_empty());
    });
}

/// At `max_children`, the first child to exit frees its place: the server
/// no longer waits for one particular child (the oldest, or the lowest pid).
#[test]
fn max_children_frees_the_first_place_to_come_free() {
    let _one = ONE_AT_A_TIME.lock();
    bounded(LIMIT, || {
        // Each child echoes its first line once a second line ("go") comes.
        let mut server = forking(
            ForkingTCPServer::new("127.0.0.1:0", |r: &mut StreamRequest<'_>| {
                let mut line = Vec::new();
                r.rfile.read_until(b'\n', &mut line)?;
                if line != b"now\n" {
                    r.rfile.read_until(b'\n', &mut line)?;
                }
                r.wfile.write_all(&line)
            })
            .unwrap(),
        );
        server.mixin.max_children = 2;
        let server = Arc::new(server);
        let serving = serve(&server, None);
        let address = server.server_address();
        let held = |name: &str| {
            let stream = util::client(address);
            (&stream).write_all(format!("{name}\n").as_bytes()).unwrap();
            stream
        };
        let (older, younger) = (held("older"), held("younger"));
        while server.mixin.active_children().len() < 2 {
            std::thread::yield_now();
        }
        // At the limit: the third request waits for a place.
        let third = std::thread::spawn(move || tcp_exchange(address, b"now\n"));
        (&younger).write_all(b"go\n").unwrap(); // the younger child exits first
        assert_eq!(util::read_to_end(&younger), b"younger\ngo\n");
        assert_eq!(
            third.join().unwrap(),
            b"now\n",
            "served while the older child still runs"
        );
        (&older).write_all(b"go\n").unwrap();
        assert_eq!(util::read_to_end(&older), b"older\ngo\n");
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

/// Without `fork_with_threads`, a process running other threads (this
/// test harness does) does not fork: the request is reported to
/// `handle_error` with the reason, and the client sees its connection
/// closed, unanswered; no child is left.
#[test]
fn a_threaded_process_does_not_fork_unless_it_opts_in() {
    let _one = ONE_AT_A_TIME.lock();
    bounded(LIMIT, || {
        let server = Arc::new(util::Recorder::new(
            ForkingTCPServer::new("127.0.0.1:0", line_echo).unwrap(),
        ));
        assert!(
            !server.base.mixin.fork_with_threads,
            "refusing is the default"
        );
        let client = util::client(server.server_address());
        (&client).write_all(b"hello\n").unwrap();
        server.handle_request().unwrap();
        assert!(
            util::read_to_end(&client).is_empty(),
            "no echo: nothing forked"
        );
        assert!(server.base.mixin.active_children().is_empty());
        let errors = server.calls_to("handle_error");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("refusing to fork a process that runs")
                && errors[0].contains("fork_with_threads"),
            "{errors:?}"
        );
        server.server_close();
    });
}
