//! Helpers shared by the integration tests: a time bound for every test,
//! fresh Unix socket paths, a serving thread, CPython's clients and
//! handlers, Python clients (and a visible skip when a tool is missing), the
//! process's own counts. The command-line program's tests (cli/tests)
//! include this module too, through cli/tests/util/mod.rs, which adds a
//! running `socketserver` program.
#![allow(dead_code)] // each test file uses a different subset

pub mod http;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socketserver::{BaseServer, StreamRequest};

/// A self-signed certificate for "localhost", written as PEM files (the
/// chain and its private key) in a temporary directory that lives as long as
/// the value.
pub struct Certificate {
    _dir: tempfile::TempDir,
    pub chain: PathBuf,
    pub key: PathBuf,
    pub cert: rcgen::Certificate,
}

impl Certificate {
    /// The command line's options that serve TLS with this certificate.
    pub fn options(&self) -> [&str; 4] {
        [
            "--tls-cert",
            self.chain.to_str().unwrap(),
            "--tls-key",
            self.key.to_str().unwrap(),
        ]
    }
}

/// A fresh [`Certificate`].
pub fn certificate() -> Certificate {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (chain, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&chain, cert.pem()).unwrap();
    std::fs::write(&key, signing_key.serialize_pem()).unwrap();
    Certificate {
        _dir: dir,
        chain,
        key,
        cert,
    }
}

/// A [`ThreadPoolTCPServer`](socketserver::ThreadPoolTCPServer) bound to a
/// free local port, with a pool of `workers` threads.
pub fn pool_server(
    workers: usize,
    handler: impl socketserver::RequestHandler,
) -> socketserver::ThreadPoolTCPServer {
    let mut server = socketserver::ThreadPoolTCPServer::new("127.0.0.1:0", handler).unwrap();
    server.mixin.workers = workers;
    server
}

/// [`bounded`], if `tool` is installed: a test that needs a real client
/// first checks for it with [`require_tool`] (which says when it skips).
pub fn bounded_with<F: FnOnce() + Send + 'static>(tool: &str, limit: Duration, body: F) {
    if require_tool(tool) {
        bounded(limit, body);
    }
}

/// CPython's `TEST_STR`.
pub const TEST_STR: &[u8] = b"hello world\n";

/// How long a client waits for any one reply before the test fails.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a test body on its own thread (named after the test's) and fails
/// the test if it takes longer than `limit` (so that a hung server fails
/// instead of hanging CI).
pub fn bounded<F: FnOnce() + Send + 'static>(limit: Duration, body: F) {
    let _ = env_logger::builder().is_test(true).try_init();
    let (done, finished) = mpsc::channel();
    let mut worker = thread::Builder::new();
    if let Some(test) = thread::current().name() {
        worker = worker.name(test.to_owned());
    }
    let worker = worker
        .spawn(move || {
            body();
            let _ = done.send(());
        })
        .unwrap();
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

/// A TCP connection to `address` whose reads wait at most
/// [`CLIENT_TIMEOUT`].
pub fn client(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream
}

/// CPython's `stream_examine` over TCP: send `message`, read back a line.
pub fn tcp_exchange(address: SocketAddr, message: &[u8]) -> Vec<u8> {
    line_exchange(&client(address), message)
}

/// Sends `message` on a connected stream and reads back a line.
fn line_exchange<S>(stream: &S, message: &[u8]) -> Vec<u8>
where
    for<'a> &'a S: Read + Write,
{
    let mut writer = stream;
    writer.write_all(message).unwrap();
    let mut reply = Vec::new();
    BufReader::new(stream)
        .read_until(b'\n', &mut reply)
        .unwrap();
    reply
}

/// CPython's `stream_examine` over TCP, as `run_server`'s examine: TEST_STR
/// comes back.
pub fn tcp_examine(address: SocketAddr) {
    assert_eq!(tcp_exchange(address, TEST_STR), TEST_STR);
}

/// CPython's `stream_examine` over a Unix stream socket: TEST_STR comes back.
pub fn unix_stream_examine(address: PathBuf) {
    let stream = UnixStream::connect(address).unwrap();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    assert_eq!(line_exchange(&stream, TEST_STR), TEST_STR);
}

/// CPython's `dgram_examine` over UDP: TEST_STR comes back, from the
/// server's own address.
pub fn udp_examine(address: SocketAddr) {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    client.send_to(TEST_STR, address).unwrap();
    let mut buf = [0; 100];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], TEST_STR);
    assert_eq!(from, address, "the reply comes from the server's address");
}

/// CPython's `dgram_examine` over a Unix datagram socket: the client binds a
/// path of its own so that the server can reply, and TEST_STR comes back.
pub fn unix_dgram_examine(address: PathBuf) {
    let client_path = unix_path("dgram-client");
    let client = UnixDatagram::bind(&client_path).unwrap();
    client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    client.send_to(TEST_STR, address).unwrap();
    let mut buf = [0; 100];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], TEST_STR);
    std::fs::remove_file(client_path).unwrap();
}

/// Reads until the peer closes.
pub fn read_to_end(mut stream: impl Read) -> Vec<u8> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    all
}

/// Runs a Python 3 program (standard library only), failing the test with
/// its stderr if it fails. A test calling this first checks
/// [`require_tool`]`("python3")`.
pub fn python(program: &str, args: &[&str]) -> String {
    String::from_utf8(python_with_input(program, args, b"")).unwrap()
}

/// [`python`] with `input` on the program's stdin; its stdout as bytes.
pub fn python_with_input(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed to run this test (see require_tool)");
    // Dropped at the end of the statement: the program sees end of input.
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python3 failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Whether the external program `tool` is on `PATH`, for a test that needs
/// it to call first: `if !util::require_tool("python3") { return; }`.
///
/// A missing tool never passes silently. Outside CI the test is skipped and
/// says so on the terminal, even from a passing test (see [`skipped`]). In
/// CI (`CI` set, and not to `false` or `0`) it fails: there every test must
/// run.
pub fn require_tool(tool: &str) -> bool {
    if on_path(tool) {
        return true;
    }
    if in_ci() {
        panic!("{tool} not found on PATH, and CI is set: CI must run every test");
    }
    skipped(&format!(
        "{tool} not found on PATH (with CI=true this fails)"
    ));
    false
}

/// Whether this run is CI's, where no test may be skipped for a missing tool.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether an executable file named `tool` is in a `PATH` directory.
fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Says that the current test skips its checks, and why, as a line
/// `SKIPPED test_name: why` on the process's stderr. Written to the file
/// descriptor directly: the test harness captures `eprintln!` and shows it
/// only for a failed test, and a skip must show when the test "passes".
pub fn skipped(why: &str) {
    let current = thread::current();
    let test = current.name().unwrap_or("a test");
    // One write, so that the line stays whole among the harness's output.
    let line = format!("SKIPPED {test}: {why}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

/// The number of descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A number from the text of a /proc/PID/status: `Threads:`, or `VmRSS:` and
/// `VmHWM:` (KiB).
pub fn status_field(status: &str, field: &str) -> u64 {
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line[field.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The number of OS threads this process has now.
pub fn os_threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status_field(&status, "Threads:") as usize
}

/// Waits until this process has `expected` OS threads, or `limit` has
/// passed, and returns the count last seen. A joined thread has finished its
/// work, but the kernel may take a moment more to retire it: the count is
/// the condition waited for, checked every millisecond.
pub fn wait_for_os_threads(expected: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let now = os_threads();
        if now == expected || Instant::now() >= deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(1));
    }
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

    /// The recorded calls of `hook`, in order.
    pub fn calls_to(&self, hook: &str) -> Vec<String> {
        self.calls
            .lock()
            .iter()
            .filter(|c| c.starts_with(hook))
            .cloned()
            .collect()
    }

    fn record(&self, call: String) {
        self.calls.lock().push(call);
    }
}

impl<B: BaseServer> BaseServer for Recorder<B> {
    type Transport = B::Transport;
    type MixIn = B::MixIn;
    fn base(&self) -> &socketserver::Server<B::Transport, B::MixIn> {
        self.base.base()
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

/// Records each accepted request (`verify_request`), so that a test knows
/// when all are in: one message on the channel [`Counting::new`] returns per
/// request.
pub struct Counting<B> {
    pub base: B,
    accepted: parking_lot::Mutex<mpsc::Sender<()>>,
}

impl<B> Counting<B> {
    pub fn new(base: B) -> (Self, mpsc::Receiver<()>) {
        let (accepted, accepted_rx) = mpsc::channel();
        let counting = Counting {
            base,
            accepted: parking_lot::Mutex::new(accepted),
        };
        (counting, accepted_rx)
    }
}

impl<B: BaseServer> BaseServer for Counting<B> {
    type Transport = B::Transport;
    type MixIn = B::MixIn;
    fn base(&self) -> &socketserver::Server<B::Transport, B::MixIn> {
        self.base.base()
    }
    fn verify_request(
        &self,
        _: &socketserver::RequestOf<Self>,
        _: &socketserver::AddressOf<Self>,
    ) -> bool {
        self.accepted.lock().send(()).unwrap();
        true
    }
}

/// A line echo that, given "hold\n", says it has entered and waits for
/// [`Hold::release`] before it echoes: it keeps a worker busy for as long as
/// the test needs. Made by [`hold_echo`].
pub struct HoldEcho {
    entered: parking_lot::Mutex<mpsc::Sender<()>>,
    release: Arc<Barrier>,
}

/// The test's side of a [`HoldEcho`].
pub struct Hold {
    entered: mpsc::Receiver<()>,
    release: Arc<Barrier>,
}

impl Hold {
    /// Waits until a "hold" request is in the handler.
    pub fn entered(&self) {
        self.entered.recv().unwrap();
    }

    /// Lets the "hold" request go on to its echo.
    pub fn release(&self) {
        self.release.wait();
    }
}

/// A [`HoldEcho`] handler and the [`Hold`] that controls it.
pub fn hold_echo() -> (HoldEcho, Hold) {
    let (entered, entered_rx) = mpsc::channel();
    let release = Arc::new(Barrier::new(2));
    let handler = HoldEcho {
        entered: parking_lot::Mutex::new(entered),
        release: Arc::clone(&release),
    };
    let hold = Hold {
        entered: entered_rx,
        release,
    };
    (handler, hold)
}

impl socketserver::RequestHandler for HoldEcho {
    fn handle(&self, request: &mut StreamRequest<'_>) -> io::Result<()> {
        let mut line = Vec::new();
        request.rfile.read_until(b'\n', &mut line)?;
        if line == b"hold\n" {
            self.entered.lock().send(()).unwrap();
            self.release.wait();
        }
        request.wfile.write_all(&line)
    }
}

/// A line echo that panics ("asked to panic") when the line is "panic\n".
pub fn panicky(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut line = Vec::new();
    request.rfile.read_until(b'\n', &mut line)?;
    if line == b"panic\n" {
        panic!("asked to panic");
    }
    request.wfile.write_all(&line)
}

/// Sends `total` requests to a [`panicky`] server from `clients` threads,
/// one connection each, every other one "panic\n": checks that every good
/// one gets its echo and every panicking one is closed unanswered, and
/// returns how many were answered.
pub fn hammer(address: SocketAddr, total: usize, clients: usize) -> usize {
    let answered = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let answered = Arc::clone(&answered);
            thread::spawn(move || {
                for i in (c..total).step_by(clients) {
                    let stream = TcpStream::connect(address).unwrap();
                    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
                    let good = i % 2 == 0;
                    let message = if good {
                        format!("ok {i}\n")
                    } else {
                        "panic\n".to_owned()
                    };
                    (&stream).write_all(message.as_bytes()).unwrap();
                    let reply = read_to_end(&stream);
                    if good {
                        assert_eq!(reply, message.as_bytes(), "request {i}");
                        answered.fetch_add(1, Ordering::SeqCst);
                    } else {
                        assert!(reply.is_empty(), "a panicking request is closed unanswered");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    answered.load(Ordering::SeqCst)
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

/// A client sending `bytes` one every `pace` (the attack's input), until
/// the server cuts it; returns how long after connecting it was cut.
pub fn trickle(address: SocketAddr, bytes: Vec<u8>, pace: Duration) -> JoinHandle<Duration> {
    let stream = TcpStream::connect(address).unwrap();
    thread::spawn(move || {
        let started = Instant::now();
        for byte in bytes {
            if (&stream).write_all(&[byte]).is_err() {
                return started.elapsed();
            }
            thread::sleep(pace);
        }
        panic!("the whole trickle was taken: no deadline");
    })
}

/// The deadline test of a connection's first phase (a TLS handshake, a
/// PROXY header): on each `(name, address, tricklers)` server, `tricklers`
/// clients trickle `attack()` a byte every 300 ms (each byte well within a
/// 1 s timeout) while a real client's exchange, `real(address)`, must be
/// served well before the trickle could end: the phase's deadline, not a
/// per-read timeout, frees the server. Prints both times.
pub fn trickled_phase_is_cut(
    phase: &str,
    servers: [(&str, SocketAddr, usize); 2],
    attack: impl Fn() -> Vec<u8>,
    real: impl Fn(SocketAddr),
) {
    for (name, address, tricklers) in servers {
        let trickling: Vec<_> = (0..tricklers)
            .map(|_| trickle(address, attack(), Duration::from_millis(300)))
            .collect();
        let started = Instant::now();
        real(address);
        let served_after = started.elapsed();
        let cut_after: Vec<_> = trickling.into_iter().map(|t| t.join().unwrap()).collect();
        eprintln!("{name}: trickled {phase} cut after {cut_after:?}; a real client served after {served_after:?}");
        assert!(
            served_after < Duration::from_secs(5),
            "{name}: served once the deadline freed the server, not after the trickle: {served_after:?}"
        );
    }
}
