//! Helpers shared by the integration tests: a time bound for every test,
//! fresh Unix socket paths, a serving thread, Python clients. The command-line
//! program's tests (cli/tests) include this module too, through
//! cli/tests/util/mod.rs, which adds a running `socketserver` program.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use socketserver::{BaseServer, StreamRequest};

/// CPython's `TEST_STR`.
pub const TEST_STR: &[u8] = b"hello world\n";

/// How long a client waits for any one reply before the test fails.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a test body on its own thread and fails the test if it takes longer
/// than `limit` (so that a hung server fails instead of hanging CI).
pub fn bounded<F: FnOnce() + Send + 'static>(limit: Duration, body: F) {
    let _ = env_logger::builder().is_test(true).try_init();
    let (done, finished) = mpsc::channel();
    let worker = thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    match finished.recv_timeout(limit) {
        Ok(()) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The body panicked: re-raise its panic as the test's.
            if let Err(payload) = worker.join() {
                std::panic::resume_unwind(payload);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test did not finish within {limit:?}"),
    }
}

/// A fresh, unused Unix socket path in a directory of this process's own.
pub fn unix_path(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("socketserver-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let path = dir.join(format!("{tag}-{n}.sock"));
    let _ = std::fs::remove_file(&path);
    path
}

/// Starts `serve_forever` on its own thread, as CPython's `run_server`.
pub fn serve<S: BaseServer>(
    server: &Arc<S>,
    poll_interval: Option<Duration>,
) -> JoinHandle<io::Result<()>> {
    let server = Arc::clone(server);
    thread::spawn(move || server.serve_forever(poll_interval))
}

/// [`line_echo`] with a read and write timeout (`StreamOptions::timeout`).
pub struct TimedEcho(pub Duration);

impl socketserver::RequestHandler for TimedEcho {
    fn options(&self) -> socketserver::StreamOptions {
        socketserver::StreamOptions {
            timeout: Some(self.0),
            ..socketserver::StreamOptions::default()
        }
    }

    fn handle(&self, request: &mut StreamRequest<'_>) -> io::Result<()> {
        line_echo(request)
    }
}

/// CPython's `MyHandler.handle`: echo one line.
pub fn line_echo(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut line = Vec::new();
    request.rfile.read_until(b'\n', &mut line)?;
    request.wfile.write_all(&line)
}

/// CPython's `stream_examine` over TCP: send TEST_STR, read back a line.
pub fn tcp_exchange(address: SocketAddr, message: &[u8]) -> Vec<u8> {
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    (&stream).write_all(message).unwrap();
    let mut reply = Vec::new();
    BufReader::new(&stream)
        .read_until(b'\n', &mut reply)
        .unwrap();
    reply
}

/// Reads until the peer closes.
pub fn read_to_end(mut stream: impl Read) -> Vec<u8> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    all
}

/// Runs a Python 3 program (standard library only), failing the test with
/// its stderr if it fails.
pub fn python(program: &str, args: &[&str]) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python3 must be installed to run the interoperability tests");
    assert!(
        output.status.success(),
        "python3 failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The number of descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A server that extends another and records which hooks ran: the Rust
/// shape of CPython's test subclasses (`MyServer`, `BaseErrorTestServer`).
pub struct Recorder<B> {
    pub base: B,
    pub calls: parking_lot::Mutex<Vec<String>>,
    /// What `verify_request` answers.
    pub verify: bool,
}

impl<B> Recorder<B> {
    pub fn new(base: B) -> Self {
        Recorder {
            base,
            calls: parking_lot::Mutex::new(Vec::new()),
            verify: true,
        }
    }

    pub fn count(&self, hook: &str) -> usize {
        self.calls
            .lock()
            .iter()
            .filter(|c| c.starts_with(hook))
            .count()
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().clone()
    }

    fn record(&self, call: String) {
        self.calls.lock().push(call);
    }
}

impl<B: socketserver::Root + BaseServer<Base = B>> BaseServer for Recorder<B> {
    type Base = B;
    fn base(&self) -> &B {
        &self.base
    }

    fn verify_request(
        &self,
        _: &socketserver::RequestOf<Self>,
        _: &socketserver::AddressOf<Self>,
    ) -> bool {
        self.record("verify_request".into());
        self.verify
    }

    fn shutdown_request(&self, request: socketserver::RequestOf<Self>) {
        self.record("shutdown_request".into());
        self.base().shutdown_request(request);
    }

    fn handle_error(
        &self,
        _: &socketserver::RequestOf<Self>,
        client_address: &socketserver::AddressOf<Self>,
        error: &socketserver::RequestError,
    ) {
        self.record(format!("handle_error {client_address:?}: {error}"));
    }

    fn handle_timeout(&self) {
        self.record("handle_timeout".into());
    }

    fn service_actions(&self) {
        self.record("service_actions".into());
        self.base().service_actions();
    }
}

/// CPython's `MyHandler` on a `DatagramRequestHandler`: echo one line.
pub fn datagram_line_echo(request: &mut socketserver::DatagramRequest<'_>) -> io::Result<()> {
    let mut line = Vec::new();
    request.rfile.read_until(b'\n', &mut line)?;
    request.wfile.write_all(&line)
}

/// CPython's `run_server`: serve_forever(poll_interval=0.01) on a thread,
/// examine three times, shutdown, server_close, and the socket is closed.
pub fn run_server<S: BaseServer>(server: S, examine: impl Fn(socketserver::AddressOf<S>)) {
    let server = Arc::new(server);
    let serving = serve(&server, Some(Duration::from_millis(10)));
    for _ in 0..3 {
        examine(server.server_address());
    }
    server.shutdown().unwrap();
    serving.join().unwrap().unwrap();
    server.server_close();
    assert_eq!(server.fileno(), -1, "server_close closes the socket");
}

/// Deterministic bytes from a seed (xorshift), different at every position:
/// a lost, altered, reordered or shifted byte cannot go unnoticed.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
