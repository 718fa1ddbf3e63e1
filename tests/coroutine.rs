//! What the coroutine mix-in promises beyond the server tests it shares with
//! the other mix-ins (tests/concurrency.rs): a read or a write that would
//! block suspends only its request, timeouts still apply, and the PROXY
//! header is read the same way. Every test runs on one worker thread, where
//! a request that blocked its thread would stall all the others.
//!
//! Its failures are contained: a stack that cannot be mapped (the address
//! space capped with RLIMIT_AS) refuses only its request, and a stack
//! overflow aborts the process with a message. Both run in a child process
//! (this test binary again, told which by `CHILD`): one caps its own
//! address space, the other dies.
#![cfg(feature = "coroutine")]

mod util;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

#[cfg(feature = "proxy")]
use socketserver::ProxyProtocol;
use socketserver::{
    AddressOf, BaseServer, CoroutineMixIn, CoroutineTCPServer, CoroutineUDPServer,
    CoroutineUnixDatagramServer, RequestOf, StreamRequest, Udp,
};
use util::{bounded, line_echo, payload, serve, Recorder, TimedEcho, CLIENT_TIMEOUT};

const LIMIT: Duration = Duration::from_secs(60);

fn one_worker(server: CoroutineTCPServer) -> Arc<CoroutineTCPServer> {
    let mut server = server;
    server.mixin.workers = 1;
    Arc::new(server)
}

/// 100 connections open at once, served in the reverse of the order they
/// were accepted: the first ones wait, suspended, while the later ones are
/// answered. A worker blocked in the first connection's read would never
/// get to the others.
#[test]
fn one_worker_serves_connections_side_by_side() {
    bounded(LIMIT, || {
        let server = one_worker(CoroutineTCPServer::new("127.0.0.1:0", line_echo).unwrap());
        let serving = serve(&server, None);
        let clients: Vec<TcpStream> = (0..100)
            .map(|_| util::client(server.server_address()))
            .collect();
        for (i, stream) in clients.iter().enumerate().rev() {
            let line = format!("client {i}\n");
            (&*stream).write_all(line.as_bytes()).unwrap();
            assert_eq!(util::read_to_end(stream), line.as_bytes());
        }
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        server.server_close();
        assert_eq!(server.mixin.active_requests(), 0);
    });
}

const BIG: usize = 64 * 1024 * 1024;

/// "big" gets 64 MiB, more than the socket buffers hold; anything else its
/// echo.
fn big_or_echo(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut line = Vec::new();
    request.rfile.read_until(b'\n', &mut line)?;
    if line == b"big\n" {
        request.wfile.write_all(&payload(7, BIG))
    } else {
        request.wfile.write_all(&line)
    }
}

/// A client that stops reading leaves its request suspended in the middle
/// of a write; another client is served meanwhile, and the first then gets
/// every byte, in order.
#[test]
fn a_blocked_write_suspends_only_its_request() {
    bounded(LIMIT, || {
        let server = one_worker(CoroutineTCPServer::new("127.0.0.1:0", big_or_echo).unwrap());
        let serving = serve(&server, None);
        let reader = util::client(server.server_address());
        (&reader).write_all(b"big\n").unwrap();
        // The first byte arrives once the handler is writing; it then fills
        // the buffers and must wait for this client, which does not read.
        let mut first = [0; 1];
        (&reader).read_exact(&mut first).unwrap();

        let other = util::client(server.server_address());
        (&other).write_all(b"meanwhile\n").unwrap();
        assert_eq!(util::read_to_end(&other), b"meanwhile\n");

        let mut reply = first.to_vec();
        reply.extend(util::read_to_end(&reader));
        assert_eq!(reply.len(), BIG);
        assert!(reply == payload(7, BIG), "every byte, in order");
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

/// `StreamOptions::timeout` applies to a suspended read as to a blocking
/// one: a silent client is cut off once it passes, with a `TimedOut` error
/// for handle_error; a talkative one on the same worker is served meanwhile.
#[test]
fn timeouts_apply_to_suspended_reads() {
    bounded(LIMIT, || {
        let timeout = Duration::from_millis(300);
        let mut base = CoroutineTCPServer::new("127.0.0.1:0", TimedEcho(timeout)).unwrap();
        base.mixin.workers = 1;
        let server = Arc::new(Recorder::new(base));
        let serving = serve(&server, None);
        let started = Instant::now();
        let silent = util::client(server.server_address());
        assert_eq!(
            util::tcp_exchange(server.server_address(), b"talkative\n"),
            b"talkative\n"
        );
        assert!(util::read_to_end(&silent).is_empty(), "closed unanswered");
        assert!(
            started.elapsed() >= timeout,
            "not before the timeout: {:?}",
            started.elapsed()
        );
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        server.server_close();
        let errors = server.calls_to("handle_error");
        assert_eq!(errors.len(), 1, "{:?}", server.calls());
        assert!(errors[0].contains("timed out"), "{errors:?}");
    });
}

/// The PROXY v1 header is found by peeking at what has arrived: with the
/// header cut in two, the first peek would block and the coroutine waits
/// for the rest.
#[test]
#[cfg(feature = "proxy")]
fn a_split_proxy_header_is_read_whole() {
    bounded(LIMIT, || {
        let mut base = CoroutineTCPServer::new("127.0.0.1:0", |r: &mut StreamRequest<'_>| {
            let mut line = String::new();
            r.rfile.read_line(&mut line)?;
            write!(r.wfile, "{} {line}", r.client_address)
        })
        .unwrap();
        base.mixin.workers = 1;
        base.proxy_protocol = ProxyProtocol::Required {
            timeout: CLIENT_TIMEOUT,
        };
        let server = Arc::new(base);
        let serving = serve(&server, None);
        let stream = util::client(server.server_address());
        stream.set_nodelay(true).unwrap();
        (&stream)
            .write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 56324")
            .unwrap();
        // Another client is served while the first header is incomplete.
        let other = util::client(server.server_address());
        (&other)
            .write_all(b"PROXY TCP4 192.0.2.2 127.0.0.1 1000 443\r\nsecond\n")
            .unwrap();
        assert_eq!(util::read_to_end(&other), b"192.0.2.2:1000 second\n");
        (&stream).write_all(b" 443\r\nfirst\n").unwrap();
        assert_eq!(util::read_to_end(&stream), b"192.0.2.1:56324 first\n");
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

/// A request whose socket is always ready never has to wait, so it never
/// suspends on its own: after a budget of operations it yields to the
/// others on its worker. Here one request spins on writes that always
/// succeed (empty ones) until a second request, on the same single worker,
/// tells it to stop; without the budget the second would never run.
#[test]
fn an_always_ready_request_yields_to_the_others() {
    bounded(LIMIT, || {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spins = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (stop_in, spins_in) = (Arc::clone(&stop), Arc::clone(&spins));
        let server = one_worker(
            CoroutineTCPServer::new("127.0.0.1:0", move |r: &mut StreamRequest<'_>| {
                let mut line = Vec::new();
                r.rfile.read_until(b'\n', &mut line)?;
                if line == b"spin\n" {
                    let mut connection = r.connection;
                    while !stop_in.load(std::sync::atomic::Ordering::SeqCst) {
                        assert_eq!(connection.write(b"")?, 0);
                        spins_in.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    r.wfile.write_all(b"stopped\n")
                } else {
                    stop_in.store(true, std::sync::atomic::Ordering::SeqCst);
                    r.wfile.write_all(b"stop sent\n")
                }
            })
            .unwrap(),
        );
        let serving = serve(&server, None);
        let spinner = util::client(server.server_address());
        (&spinner).write_all(b"spin\n").unwrap();
        while spins.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        assert_eq!(
            util::tcp_exchange(server.server_address(), b"stop\n"),
            b"stop sent\n"
        );
        assert_eq!(util::read_to_end(&spinner), b"stopped\n");
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

/// A datagram reply that cannot go out (the client's queue is full: it does
/// not read) suspends its coroutine instead of blocking the worker: another
/// client on the same single worker is answered meanwhile, and the first
/// gets every reply once it reads. A Unix datagram client holds 10 unread
/// datagrams (net.unix.max_dgram_qlen); its 20 requests overflow that.
#[test]
fn a_datagram_reply_that_would_block_suspends_only_its_request() {
    bounded(LIMIT, || {
        let path = util::unix_path("coroutine-dgram");
        let mut base =
            CoroutineUnixDatagramServer::new(path.clone(), util::datagram_line_echo).unwrap();
        base.mixin.workers = 1;
        let server = Arc::new(base);
        let serving = serve(&server, None);
        let client = |tag: &str| {
            let own = util::unix_path(tag);
            let socket = UnixDatagram::bind(&own).unwrap();
            socket.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            // Not connected: a socket connected to the server takes any
            // number of its datagrams; the queue limit is for the others.
            (socket, own)
        };
        let (silent, silent_path) = client("coroutine-dgram-silent");
        const SENT: usize = 20;
        for i in 0..SENT {
            silent
                .send_to(format!("silent {i}\n").as_bytes(), &path)
                .unwrap();
        }
        let (other, other_path) = client("coroutine-dgram-other");
        other.send_to(b"other\n", &path).unwrap();
        let mut reply = [0; 64];
        let n = other
            .recv(&mut reply)
            .expect("answered while the other's replies wait");
        assert_eq!(&reply[..n], b"other\n");
        let mut replies: Vec<String> = (0..SENT)
            .map(|_| {
                let n = silent.recv(&mut reply).unwrap();
                String::from_utf8_lossy(&reply[..n]).into_owned()
            })
            .collect();
        replies.sort();
        let mut expected: Vec<String> = (0..SENT).map(|i| format!("silent {i}\n")).collect();
        expected.sort();
        assert_eq!(replies, expected, "every reply, once read");
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        server.server_close();
        for own in [silent_path, other_path, path] {
            let _ = std::fs::remove_file(own);
        }
    });
}

/// The environment variable that makes this test binary, run again by a
/// test below, the child process of that test.
const CHILD: &str = "SOCKETSERVER_COROUTINE_TEST_CHILD";

/// In the child process of the test `name`, runs `child` and returns
/// `None`; in the test itself, runs the child process and returns what it
/// printed and how it ended.
fn child_or_parent(name: &str, child: fn()) -> Option<Output> {
    if std::env::var(CHILD).is_ok_and(|running| running == name) {
        child();
        return None;
    }
    Some(run_child(name, LIMIT))
}

/// Runs the test `name` of this binary again in a child process with
/// `CHILD` set to `name`, and returns what it printed and how it ended;
/// kills it and fails if it has not ended within `limit`.
fn run_child(name: &str, limit: Duration) -> Output {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    match ended.recv_timeout(limit) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("the child running {name} did not end within {limit:?}");
        }
    }
}

/// Greets, then echoes one line: a request that holds its coroutine (and
/// its stack) while its client is silent.
fn greet_then_echo(request: &mut StreamRequest<'_>) -> io::Result<()> {
    request.wfile.write_all(b"hello\n")?;
    request.wfile.flush()?;
    let mut line = String::new();
    request.rfile.read_line(&mut line)?;
    request.wfile.write_all(line.as_bytes())
}

/// A client of [`greet_then_echo`] that has its greeting, or `None` when
/// the server closed the connection instead.
fn greeted(address: SocketAddr) -> Option<BufReader<TcpStream>> {
    let stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    match reader.read_line(&mut greeting) {
        Ok(_) if greeting == "hello\n" => Some(reader),
        _ => None,
    }
}

/// A client that has its greeting sends a line and gets its echo.
fn echoed(client: &mut BufReader<TcpStream>, line: &str) -> bool {
    if client.get_mut().write_all(line.as_bytes()).is_err() {
        return false;
    }
    let mut reply = String::new();
    client.read_line(&mut reply).is_ok() && reply == line
}

/// With the address space capped (RLIMIT_AS) 48 MiB above what the server
/// uses, silent clients each hold a coroutine stack until one cannot be
/// mapped: that client's request is refused — handle_error with the error,
/// the connection closed — and the worker goes on. The clients already
/// served are answered; once they have left, new clients are served again,
/// and the server stops cleanly with no request left counted. The generator
/// crate panicked outside the worker's guard here, and the worker was gone
/// for good.
#[test]
fn a_stack_that_cannot_be_mapped_refuses_only_its_request() {
    let name = "a_stack_that_cannot_be_mapped_refuses_only_its_request";
    let Some(output) = child_or_parent(name, address_space_cap_child) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    // On the line where libtest names the test.
    let report = stdout
        .lines()
        .find_map(|l| l.find("cap:").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no report from the child:\n{stdout}\n{stderr}"));
    println!("{report}");
}

fn address_space_cap_child() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let mut base = CoroutineTCPServer::new("127.0.0.1:0", greet_then_echo).unwrap();
    base.mixin.workers = 1;
    let server = Arc::new(Recorder::new(base));
    let serving = serve(&server, None);
    let address = server.server_address();
    // The worker started, with its first stack mapped and kept.
    let mut first = greeted(address).expect("served before the cap");
    assert!(echoed(&mut first, "first\n"));
    // Enough descriptors for every client and its server side.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard.min(65536), hard).unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let used = util::status_field(&status, "VmSize:") * 1024;
    let (_, hard) = getrlimit(Resource::RLIMIT_AS).unwrap();
    setrlimit(Resource::RLIMIT_AS, used + (48 << 20), hard).unwrap();

    // Silent clients until one is refused: 48 MiB hold under 200 stacks
    // of 256 KiB.
    let mut held = Vec::new();
    let mut refused = 0;
    while refused == 0 {
        assert!(held.len() < 5000, "no stack failed in 5000 clients");
        match greeted(address) {
            Some(client) => held.push(client),
            None => refused += 1,
        }
    }
    // handle_error ran before the connection was closed.
    let errors = server.calls_to("handle_error");
    assert_eq!(errors.len(), refused, "{errors:?}");
    assert!(
        errors[0].contains("cannot map a coroutine stack"),
        "{errors:?}"
    );
    // The worker carries on: every request it holds is answered.
    let mut answered = 0;
    for (i, client) in held.iter_mut().enumerate() {
        answered += usize::from(echoed(client, &format!("held {i}\n")));
    }
    assert_eq!(answered, held.len(), "every held client answered");
    let held_count = held.len();
    drop(held);
    // Their stacks freed, new clients are served again.
    let served_after = (0..6)
        .filter(|i| greeted(address).is_some_and(|mut c| echoed(&mut c, &format!("after {i}\n"))))
        .count();
    assert_eq!(served_after, 6);
    server.shutdown().unwrap();
    serving.join().unwrap().unwrap();
    server.server_close();
    assert_eq!(server.base.mixin.active_requests(), 0);
    println!(
        "cap: RLIMIT_AS {} MiB ({} MiB in use + 48): {held_count} silent clients held a stack, \
         the next refused ({}), all {held_count} answered after, 6/6 new clients served, \
         clean stop",
        (used + (48 << 20)) >> 20,
        used >> 20,
        errors[0]
    );
}

/// Unbounded recursion in a handler: the process aborts with the message
/// Rust prints for a thread's overflow, naming the worker — never a
/// silent death by SIGSEGV, never a request left half-done while the
/// server goes on.
#[test]
fn a_stack_overflow_in_a_handler_aborts_loudly() {
    let name = "a_stack_overflow_in_a_handler_aborts_loudly";
    let Some(output) = child_or_parent(name, stack_overflow_child) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(nix::sys::signal::Signal::SIGABRT as i32),
        "{:?}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        stderr.contains(
            "thread 'socketserver-coroutines-0' has overflowed a request coroutine's stack"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("fatal runtime error: stack overflow, aborting"),
        "{stderr}"
    );
}

fn stack_overflow_child() {
    // Recursing for ever is the point.
    #[allow(unconditional_recursion)]
    fn deeper(depth: u64) -> u64 {
        let frame = std::hint::black_box([depth; 32]);
        frame[0] + deeper(std::hint::black_box(depth + 1))
    }
    // The abort is expected: no core file for it.
    nix::sys::prctl::set_dumpable(false).unwrap();
    let mut base = CoroutineTCPServer::new("127.0.0.1:0", |r: &mut StreamRequest<'_>| {
        let mut line = String::new();
        r.rfile.read_line(&mut line)?;
        write!(r.wfile, "{}", deeper(0))
    })
    .unwrap();
    base.mixin.workers = 1;
    base.mixin.stack_size = 64 * 1024;
    let server = Arc::new(base);
    let _serving = serve(&server, None);
    let client = util::client(server.server_address());
    (&client).write_all(b"recurse\n").unwrap();
    // The process ends here: the read would see the reply otherwise.
    let reply = util::read_to_end(&client);
    panic!("the overflow did not abort: {reply:?}");
}

/// A coroutine UDP server that records the thread each `verify_request`
/// runs on.
struct ThreadsSeen {
    base: CoroutineUDPServer,
    seen: parking_lot::Mutex<Vec<String>>,
}

impl BaseServer for ThreadsSeen {
    type Transport = Udp;
    type MixIn = CoroutineMixIn;
    fn base(&self) -> &CoroutineUDPServer {
        &self.base
    }
    fn verify_request(&self, _: &RequestOf<Self>, _: &AddressOf<Self>) -> bool {
        let thread = std::thread::current();
        self.seen
            .lock()
            .push(thread.name().unwrap_or("unnamed").to_owned());
        true
    }
}

/// Under serve_forever the workers read a datagram server's socket
/// themselves (the request loop runs on them); once serve_forever has
/// returned they take nothing more: a datagram sent then waits for the next
/// handle_request.
#[test]
fn datagrams_are_taken_by_the_workers_until_serve_forever_returns() {
    bounded(LIMIT, || {
        let mut base = CoroutineUDPServer::new("127.0.0.1:0", util::datagram_line_echo).unwrap();
        base.mixin.workers = 2;
        let server = Arc::new(ThreadsSeen {
            base,
            seen: parking_lot::Mutex::new(Vec::new()),
        });
        let serving = serve(&server, None);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        client.connect(server.server_address()).unwrap();
        let mut reply = [0; 64];
        for i in 0..20 {
            let line = format!("datagram {i}\n");
            client.send(line.as_bytes()).unwrap();
            let n = client.recv(&mut reply).unwrap();
            assert_eq!(&reply[..n], line.as_bytes());
        }
        {
            let seen = server.seen.lock();
            assert_eq!(seen.len(), 20);
            assert!(
                seen.iter()
                    .all(|thread| thread.starts_with("socketserver-coroutines-")),
                "verify_request ran on {seen:?}"
            );
        }
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        // serve_forever has returned: this one is left in the socket's queue
        // for the caller's handle_request, on this thread.
        client.send(b"after\n").unwrap();
        server.handle_request().unwrap();
        let n = client.recv(&mut reply).unwrap();
        assert_eq!(&reply[..n], b"after\n");
        let here = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        assert_eq!(server.seen.lock().last(), Some(&here));
        server.server_close();
    });
}
