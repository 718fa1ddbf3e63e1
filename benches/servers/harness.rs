//! The benchmark's harness: server processes and the load generator.
//!
//! Shared by benches/servers.rs and cli/tests/bench_smoke.rs (which
//! includes this file with `#[path]`), so it depends only on crates both
//! packages have (hdrhistogram, nix, socket2) and on nothing else in
//! benches/.
//!
//! - [`ServerSpec`] / [`ServerProcess`]: a server as its own process on
//!   loopback, its address read from its one `listening on ADDR` line, its
//!   CPU time, resident memory and descriptors read from outside, and a
//!   guard that SIGKILLs and reaps it whatever happens.
//! - The load generator: a few threads, each multiplexing its share of the
//!   connections with epoll (never a blocking thread per connection), so it
//!   holds 10,000 connections as easily as 1. Its clock runs around the
//!   measured window only: connections are made and warmed up first.

#![allow(clippy::new_without_default)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::errno::Errno;
use nix::libc;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use socket2::{Domain, Socket, Type};

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// How to start one server: a program, its arguments and environment.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The name the tables use, e.g. `socketserver threading`.
    pub name: String,
    /// The program to run.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Whether it runs a thread per connection: then its thread count says
    /// how many connections it holds (else its descriptor count does).
    pub thread_per_connection: bool,
    /// How many connections the idle scenario may have waiting to be
    /// accepted at once: below the server's listen backlog, so that none
    /// is dropped while connecting (CPython's backlog is 5).
    pub accept_window: usize,
}

impl ServerSpec {
    /// A server named `name`, run as `program args…`.
    pub fn new(name: &str, program: impl Into<PathBuf>, args: &[&str]) -> Self {
        ServerSpec {
            name: name.to_owned(),
            program: program.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: Vec::new(),
            thread_per_connection: false,
            accept_window: 64,
        }
    }

    /// The same server, marked as running a thread per connection.
    pub fn threads_per_connection(mut self) -> Self {
        self.thread_per_connection = true;
        self
    }

    /// The same server with another accept window (see the field).
    pub fn with_accept_window(mut self, window: usize) -> Self {
        self.accept_window = window;
        self
    }

    /// The same server with one more environment variable.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The same server with more arguments.
    pub fn with_args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Starts the server and waits (up to 20 s) for its `listening on ADDR`
    /// line. Its stderr goes to /dev/null unless `BENCH_SERVER_STDERR` is
    /// set. The process is killed if anything goes wrong.
    pub fn start(&self) -> io::Result<ServerProcess> {
        let mut command = Command::new(&self.program);
        // SAFETY: prctl is async-signal-safe. The server gets SIGKILL if
        // the thread that started it dies, so that even a benchmark killed
        // by a signal (no Drop runs) leaves no server behind.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("BENCH_SERVER_STDERR").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        let mut child = command.spawn().map_err(|err| {
            io::Error::new(
                err.kind(),
                format!(
                    "cannot start {} ({}): {err}",
                    self.name,
                    self.program.display()
                ),
            )
        })?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut process = ServerProcess {
            name: self.name.clone(),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            exited: false,
            thread_per_connection: self.thread_per_connection,
            accept_window: self.accept_window,
        };
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            // Keep draining, so that a server that prints more never blocks.
            let _ = io::copy(&mut reader, &mut io::sink());
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(line)) => line,
            Ok(Err(err)) => return Err(err),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} did not print `listening on` within 20 s", self.name),
                ))
            }
        };
        process.addr = listening_address(&line).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: expected `listening on ADDR`, got {line:?}", self.name),
            )
        })?;
        Ok(process)
    }
}

/// The address in a server's first line: `listening on ADDR`, or the line
/// of `python3 -m http.server` (`Serving HTTP on HOST port PORT (…) ...`),
/// which the HTTP scenario runs as its users do, on port 0 (its stdout
/// unbuffered, `-u`, so that the line arrives at once).
fn listening_address(line: &str) -> Option<SocketAddr> {
    let line = line.trim();
    if let Some(addr) = line.strip_prefix("listening on ") {
        return addr.parse().ok();
    }
    let mut words = line.strip_prefix("Serving HTTP on ")?.split_whitespace();
    let host: std::net::IpAddr = words.next()?.parse().ok()?;
    let port = match (words.next(), words.next()) {
        (Some("port"), Some(port)) => port.parse().ok()?,
        _ => return None,
    };
    Some(SocketAddr::new(host, port))
}

/// A running server. Dropping it SIGKILLs and reaps the process, so that no
/// server outlives the benchmark, even on a panic.
#[derive(Debug)]
pub struct ServerProcess {
    /// The name from its [`ServerSpec`].
    pub name: String,
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    exited: bool,
    thread_per_connection: bool,
    accept_window: usize,
}

impl ServerProcess {
    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The CPU time (user + system, all threads, dead ones included) the
    /// process has used so far: the sum behind utime + stime in
    /// /proc/PID/stat, read at nanosecond resolution through the process's
    /// CPU-time clock (clock_getcpuclockid(3)); /proc/PID/stat's 10 ms ticks
    /// are the fallback.
    pub fn cpu_time(&self) -> Option<Duration> {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: plain FFI calls with valid out-pointers.
        unsafe {
            if libc::clock_getcpuclockid(self.pid(), &mut clock) == 0 {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                if libc::clock_gettime(clock, &mut ts) == 0 {
                    return Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                }
            }
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
    }

    /// Resident memory (VmRSS), KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_field("VmRSS:")
    }

    /// Open descriptors (entries of /proc/PID/fd).
    pub fn fd_count(&self) -> Option<usize> {
        Some(
            std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
                .ok()?
                .count(),
        )
    }

    /// Threads (the Threads: line of /proc/PID/status).
    pub fn threads(&self) -> Option<usize> {
        self.status_field("Threads:")
    }

    /// The number after `field` in /proc/PID/status.
    fn status_field<T: std::str::FromStr>(&self, field: &str) -> Option<T> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(field))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Context switches (voluntary and not) of each of its threads alive
    /// now, by thread id.
    pub fn context_switches(&self) -> Option<Vec<(u32, u64)>> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid())).ok()?;
        let mut counts = Vec::new();
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
                continue; // the thread ended meanwhile
            };
            let switches = status
                .lines()
                .filter(|l| {
                    l.starts_with("voluntary_ctxt_switches:")
                        || l.starts_with("nonvoluntary_ctxt_switches:")
                })
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            counts.push((tid, switches));
        }
        counts.sort_unstable();
        Some(counts)
    }

    /// How many connections it holds, plus a constant: its threads if it
    /// runs a thread per connection, else its descriptors.
    pub fn holding(&self) -> usize {
        if self.thread_per_connection {
            self.threads().unwrap_or(0)
        } else {
            self.fd_count().unwrap_or(0)
        }
    }

    /// Sends SIGTERM and returns when it was sent.
    pub fn terminate(&self) -> Instant {
        let sent = Instant::now();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
        sent
    }

    /// Waits up to `limit` for the process to exit; returns when it was seen
    /// gone (polled every 50 µs), or `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.exited = true;
                return Some(Instant::now());
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_micros(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Raises this process's soft descriptor limit to the hard limit (servers
/// spawned afterwards inherit it). Returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 0,
    }
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// A latency histogram in nanoseconds, 1 ns to 100 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("histogram bounds")
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

fn epoll() -> io::Result<Epoll> {
    Ok(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?)
}

fn wait(epoll: &Epoll, events: &mut [EpollEvent], millis: u16) -> io::Result<usize> {
    match epoll.wait(events, millis) {
        Ok(n) => Ok(n),
        Err(Errno::EINTR) => Ok(0),
        Err(errno) => Err(errno.into()),
    }
}

/// A non-blocking TCP socket with a connect under way (or done).
fn start_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(err) => return Err(err),
    }
    Ok(socket.into())
}

// Phase 0 (the default) is the warm-up.
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// The phase the load generator is in; the main thread moves it on.
#[derive(Debug, Default)]
struct Phase {
    phase: AtomicU8,
    /// Connections that have completed at least one exchange.
    warmed: AtomicUsize,
}

impl Phase {
    fn get(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }
    fn set(&self, phase: u8) {
        self.phase.store(phase, Ordering::Release)
    }
}

/// What a load thread counted during the measured window.
#[derive(Debug)]
struct Tally {
    completed: u64,
    errors: u64,
    lost: u64,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            completed: 0,
            errors: 0,
            lost: 0,
            latency: histogram(),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.completed += other.completed;
        self.errors += other.errors;
        self.lost += other.lost;
        self.latency.add(other.latency).expect("same bounds");
    }
}

/// The figures of one measured window.
#[derive(Debug)]
pub struct Measured {
    /// Exchanges (requests, connections, datagrams) completed in the window.
    pub completed: u64,
    /// Connections lost to an error or an unexpected end, in the window.
    pub errors: u64,
    /// Datagrams sent whose echo never came back (UDP only).
    pub lost: u64,
    /// The window's length.
    pub elapsed: Duration,
    /// Latency of each completed exchange, ns.
    pub latency: Histogram<u64>,
    /// Server CPU time spent in the window.
    pub server_cpu: Option<Duration>,
    /// Server context switches in the window (threads alive at both ends;
    /// a few milliseconds around the window are counted too).
    pub server_switches: Option<u64>,
}

impl Measured {
    /// Exchanges per second.
    pub fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU time per exchange, µs.
    pub fn cpu_us_per_op(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.completed > 0).then(|| cpu.as_secs_f64() * 1e6 / self.completed as f64)
    }

    /// Server context switches per exchange.
    pub fn switches_per_op(&self) -> Option<f64> {
        let switches = self.server_switches?;
        (self.completed > 0).then(|| switches as f64 / self.completed as f64)
    }

    /// A latency quantile, µs.
    pub fn latency_us(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Context switches between two samples, over the threads in both.
fn switches_delta(before: &[(u32, u64)], after: &[(u32, u64)]) -> u64 {
    after
        .iter()
        .filter_map(|(tid, a)| {
            let i = before.binary_search_by_key(tid, |(t, _)| *t).ok()?;
            Some(a.saturating_sub(before[i].1))
        })
        .sum()
}

/// A running load: threads exchanging with a server until stopped.
#[derive(Debug)]
pub struct Load {
    phase: Arc<Phase>,
    workers: Vec<JoinHandle<io::Result<Tally>>>,
}

impl Load {
    /// Starts a load thread named `name` on each of `shares`, running `run`
    /// on its share, and warms up: until `want` connections have each
    /// completed an exchange and at least `warmup` has passed.
    fn start<T: Send + 'static>(
        name: &str,
        shares: Vec<T>,
        want: usize,
        warmup: Duration,
        run: impl Fn(T, &Phase) -> io::Result<Tally> + Clone + Send + 'static,
    ) -> io::Result<Self> {
        let phase = Arc::new(Phase::default());
        let workers = shares
            .into_iter()
            .map(|share| {
                let phase = Arc::clone(&phase);
                let run = run.clone();
                thread::Builder::new()
                    .name(name.into())
                    .spawn(move || run(share, &phase))
                    .expect("spawn a load thread")
            })
            .collect();
        let load = Load { phase, workers };
        load.warm_up(want, warmup, Duration::from_secs(30))?;
        Ok(load)
    }

    /// Waits until `want` connections have each completed an exchange and at
    /// least `min` has passed, for at most `limit`.
    fn warm_up(&self, want: usize, min: Duration, limit: Duration) -> io::Result<()> {
        let started = Instant::now();
        loop {
            let warmed = self.phase.warmed.load(Ordering::Relaxed);
            let elapsed = started.elapsed();
            if warmed >= want && elapsed >= min {
                return Ok(());
            }
            if elapsed >= limit {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("only {warmed} of {want} connections answered during warm-up"),
                ));
            }
            if self.workers.iter().any(JoinHandle::is_finished) {
                return Err(io::Error::other("a load thread ended during warm-up"));
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Measures for `window`: the clock, and the server's CPU time if a
    /// server is given, are read at its two ends only. Then stops the load.
    pub fn measure(self, window: Duration, server: Option<&ServerProcess>) -> io::Result<Measured> {
        let switches_before = server.and_then(ServerProcess::context_switches);
        let cpu_before = server.and_then(ServerProcess::cpu_time);
        let started = Instant::now();
        self.phase.set(MEASURE);
        thread::sleep(window);
        self.phase.set(STOP);
        let elapsed = started.elapsed();
        let cpu_after = server.and_then(ServerProcess::cpu_time);
        let switches_after = server.and_then(ServerProcess::context_switches);
        let tally = self.join()?;
        Ok(Measured {
            completed: tally.completed,
            errors: tally.errors,
            lost: tally.lost,
            elapsed,
            latency: tally.latency,
            server_cpu: cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b)),
            server_switches: switches_before
                .zip(switches_after)
                .map(|(before, after)| switches_delta(&before, &after)),
        })
    }

    /// Stops the load and closes its connections.
    pub fn stop(self) -> io::Result<()> {
        self.phase.set(STOP);
        self.join().map(|_| ())
    }

    fn join(mut self) -> io::Result<Tally> {
        self.phase.set(STOP);
        let mut total = Tally::new();
        let mut failure = None;
        for worker in std::mem::take(&mut self.workers) {
            match worker.join() {
                Ok(Ok(tally)) => total.merge(tally),
                Ok(Err(err)) => failure = Some(err),
                Err(_) => failure = Some(io::Error::other("a load thread panicked")),
            }
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(total),
        }
    }
}

impl Drop for Load {
    /// Stops the threads and waits for them (they close their connections).
    fn drop(&mut self) {
        self.phase.set(STOP);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

// ---------------------------------------------------------------------------
// (a, g) Ping-pong: a fixed set of connections, each sending a request and
// waiting for the whole reply before sending the next.
// ---------------------------------------------------------------------------

/// A ping-pong load.
#[derive(Debug, Clone)]
pub struct PingPong {
    /// Connections held open.
    pub connections: usize,
    /// What each connection sends, again and again.
    pub request: Arc<Vec<u8>>,
    /// How many bytes make a whole reply (for an echo, the request's length).
    pub reply_len: usize,
    /// The reply expected, checked on the first exchange of each connection.
    pub expect: Option<Arc<Vec<u8>>>,
    /// Load threads (each multiplexes its share of the connections).
    pub threads: usize,
    /// Shortest warm-up (every connection answers at least once first).
    pub warmup: Duration,
}

impl PingPong {
    /// An echo of `size`-byte messages over `connections` connections.
    pub fn echo(connections: usize, size: usize) -> Self {
        let request: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        PingPong {
            connections,
            reply_len: size,
            expect: Some(Arc::new(request.clone())),
            request: Arc::new(request),
            threads: 2,
            warmup: Duration::from_millis(150),
        }
    }

    /// Connects (one at a time, each completing one exchange, so that no
    /// listen backlog overflows while connecting), starts the load threads
    /// and warms up. The clock has not started yet.
    pub fn start(&self, addr: SocketAddr) -> io::Result<Load> {
        let timeout = Duration::from_secs(10);
        let mut streams = Vec::with_capacity(self.connections);
        let mut reply = vec![0; self.reply_len];
        for i in 0..self.connections {
            let fail = |what: &str, err: io::Error| {
                io::Error::new(err.kind(), format!("connection {i}: {what}: {err}"))
            };
            let stream =
                TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail("connect", e))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(timeout))?;
            (&stream)
                .write_all(&self.request)
                .map_err(|e| fail("write", e))?;
            (&stream)
                .read_exact(&mut reply)
                .map_err(|e| fail("read", e))?;
            if let Some(expect) = &self.expect {
                if reply != **expect {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "unexpected reply {:?}",
                            String::from_utf8_lossy(&reply[..reply.len().min(80)])
                        ),
                    ));
                }
            }
            stream.set_nonblocking(true)?;
            streams.push(stream);
        }
        let threads = self.threads.clamp(1, self.connections.max(1));
        let mut shares: Vec<Vec<TcpStream>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, stream) in streams.into_iter().enumerate() {
            shares[i % threads].push(stream);
        }
        let (request, reply_len) = (Arc::clone(&self.request), self.reply_len);
        Load::start(
            "load",
            shares,
            self.connections,
            self.warmup,
            move |share, phase| ping_pong_thread(share, &request, reply_len, phase),
        )
    }
}

struct Flow {
    stream: TcpStream,
    written: usize,
    read: usize,
    started: Instant,
    warmed: bool,
}

fn ping_pong_thread(
    streams: Vec<TcpStream>,
    request: &[u8],
    reply_len: usize,
    phase: &Phase,
) -> io::Result<Tally> {
    let epoll = epoll()?;
    let mut flows: Vec<Option<Flow>> = Vec::with_capacity(streams.len());
    for (i, stream) in streams.into_iter().enumerate() {
        epoll.add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
        flows.push(Some(Flow {
            stream,
            written: 0,
            read: 0,
            started: Instant::now(),
            warmed: false,
        }));
    }
    let mut tally = Tally::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut events = vec![EpollEvent::empty(); 1024];
    // Sends what is left of the request; false if the connection failed.
    let send = |epoll: &Epoll, index: usize, flow: &mut Flow| -> bool {
        while flow.written < request.len() {
            match (&flow.stream).write(&request[flow.written..]) {
                Ok(n) => flow.written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    let mut event =
                        EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT, index as u64);
                    return epoll.modify(&flow.stream, &mut event).is_ok();
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    };
    for (index, slot) in flows.iter_mut().enumerate() {
        let flow = slot.as_mut().expect("fresh flow");
        flow.started = Instant::now();
        if !send(&epoll, index, flow) {
            *slot = None;
            tally.errors += 1;
        }
    }
    while phase.get() != STOP {
        let n = wait(&epoll, &mut events, 10)?;
        for event in &events[..n] {
            let index = event.data() as usize;
            let Some(flow) = flows[index].as_mut() else {
                continue;
            };
            let mut failed = false;
            if event.events().contains(EpollFlags::EPOLLOUT) && flow.written < request.len() {
                failed = !send(&epoll, index, flow);
                if !failed && flow.written == request.len() {
                    let mut event = EpollEvent::new(EpollFlags::EPOLLIN, index as u64);
                    failed = epoll.modify(&flow.stream, &mut event).is_err();
                }
            }
            if !failed
                && event
                    .events()
                    .intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR)
            {
                match (&flow.stream).read(&mut buf) {
                    Ok(0) => failed = true,
                    Ok(got) => {
                        flow.read += got;
                        if flow.read > reply_len {
                            failed = true;
                        } else if flow.read == reply_len {
                            let now = Instant::now();
                            if phase.get() == MEASURE {
                                tally.completed += 1;
                                tally.latency.saturating_record(nanos(now - flow.started));
                            }
                            if !flow.warmed {
                                flow.warmed = true;
                                phase.warmed.fetch_add(1, Ordering::Relaxed);
                            }
                            flow.read = 0;
                            flow.written = 0;
                            flow.started = now;
                            failed = !send(&epoll, index, flow);
                        }
                    }
                    Err(err)
                        if matches!(
                            err.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => failed = true,
                }
            }
            if failed {
                if phase.get() == MEASURE {
                    tally.errors += 1;
                }
                flows[index] = None;
            }
        }
    }
    Ok(tally)
}

// ---------------------------------------------------------------------------
// (b) Churn: a new connection per request.
// ---------------------------------------------------------------------------

/// A churn load: `concurrency` clients, each connecting, sending `request`,
/// reading the echo and closing, again and again.
#[derive(Debug, Clone)]
pub struct Churn {
    /// Clients at once.
    pub concurrency: usize,
    /// Load threads.
    pub threads: usize,
    /// The request each connection sends (echoed).
    pub request: Arc<Vec<u8>>,
    /// Warm-up before the clock starts.
    pub warmup: Duration,
}

impl Churn {
    /// Starts the clients and warms up.
    pub fn start(&self, addr: SocketAddr) -> io::Result<Load> {
        let threads = self.threads.clamp(1, self.concurrency.max(1));
        let shares: Vec<usize> = (0..threads)
            .map(|t| (self.concurrency + threads - 1 - t) / threads)
            .collect();
        let request = Arc::clone(&self.request);
        Load::start(
            "churn",
            shares,
            self.concurrency,
            self.warmup,
            move |clients, phase| churn_thread(addr, clients, &request, phase),
        )
    }
}

struct ChurnClient {
    stream: TcpStream,
    connected: bool,
    read: usize,
    started: Instant,
}

fn churn_thread(
    addr: SocketAddr,
    clients: usize,
    request: &[u8],
    phase: &Phase,
) -> io::Result<Tally> {
    let epoll = epoll()?;
    let mut tally = Tally::new();
    let mut warmed = vec![false; clients];
    let open = |epoll: &Epoll, index: usize| -> io::Result<ChurnClient> {
        let started = Instant::now();
        let stream = start_connect(addr)?;
        epoll.add(&stream, EpollEvent::new(EpollFlags::EPOLLOUT, index as u64))?;
        Ok(ChurnClient {
            stream,
            connected: false,
            read: 0,
            started,
        })
    };
    let mut slots: Vec<Option<ChurnClient>> = (0..clients).map(|i| open(&epoll, i).ok()).collect();
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = vec![EpollEvent::empty(); 256];
    while phase.get() != STOP {
        // Reopen slots whose connection failed to start (a server gone).
        for (index, slot) in slots.iter_mut().enumerate() {
            if slot.is_none() {
                *slot = open(&epoll, index).ok();
            }
        }
        let n = wait(&epoll, &mut events, 10)?;
        for event in &events[..n] {
            let index = event.data() as usize;
            let Some(client) = slots[index].as_mut() else {
                continue;
            };
            let mut done = false;
            let mut failed = false;
            if !client.connected {
                match client.stream.take_error() {
                    Ok(None) => {
                        client.connected = true;
                        // 64-byte requests always fit the empty send buffer.
                        match (&client.stream).write(request) {
                            Ok(n) if n == request.len() => {
                                let mut ev = EpollEvent::new(EpollFlags::EPOLLIN, index as u64);
                                failed = epoll.modify(&client.stream, &mut ev).is_err();
                            }
                            _ => failed = true,
                        }
                    }
                    _ => failed = true,
                }
            } else {
                match (&client.stream).read(&mut buf) {
                    Ok(0) => failed = true,
                    Ok(got) => {
                        client.read += got;
                        if client.read >= request.len() {
                            done = true;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => failed = true,
                }
            }
            if done || failed {
                let now = Instant::now();
                if phase.get() == MEASURE {
                    if done {
                        tally.completed += 1;
                        tally.latency.saturating_record(nanos(now - client.started));
                    } else {
                        tally.errors += 1;
                    }
                }
                if done && !warmed[index] {
                    warmed[index] = true;
                    phase.warmed.fetch_add(1, Ordering::Relaxed);
                }
                // Dropping the stream closes it (and takes it out of epoll).
                slots[index] = open(&epoll, index).ok();
            }
        }
    }
    Ok(tally)
}

// ---------------------------------------------------------------------------
// (c) Simultaneous connects.
// ---------------------------------------------------------------------------

/// What became of `attempted` simultaneous connects.
#[derive(Debug, Clone, Default)]
pub struct Burst {
    /// Connects started.
    pub attempted: usize,
    /// Echoed within a second of the connect.
    pub ok: usize,
    /// Echoed, but only after a second or more: the SYN (or the handshake's
    /// last ACK) was dropped by a full listen backlog and retransmitted.
    pub late: usize,
    /// ECONNREFUSED.
    pub refused: usize,
    /// ECONNRESET, or closed by the server before the echo.
    pub reset: usize,
    /// No echo before the deadline.
    pub timed_out: usize,
    /// Any other error.
    pub other: usize,
    /// From the first connect until the last outcome.
    pub elapsed: Duration,
}

/// Starts `n` non-blocking connects at once; each connection that completes
/// sends one byte and waits for its echo, then closes. Outcomes are counted
/// until `deadline` after the first connect.
pub fn connect_burst(addr: SocketAddr, n: usize, deadline: Duration) -> io::Result<Burst> {
    enum State {
        Connecting,
        Echoing,
    }
    let epoll = epoll()?;
    let mut result = Burst {
        attempted: n,
        ..Burst::default()
    };
    let started = Instant::now();
    let mut conns: Vec<Option<(TcpStream, State)>> = Vec::with_capacity(n);
    for i in 0..n {
        match start_connect(addr) {
            Ok(stream) => {
                epoll.add(&stream, EpollEvent::new(EpollFlags::EPOLLOUT, i as u64))?;
                conns.push(Some((stream, State::Connecting)));
            }
            Err(err) => {
                match err.raw_os_error() {
                    Some(libc::ECONNREFUSED) => result.refused += 1,
                    Some(libc::ECONNRESET) => result.reset += 1,
                    _ => result.other += 1,
                }
                conns.push(None);
            }
        }
    }
    let mut pending = conns.iter().filter(|c| c.is_some()).count();
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut byte = [0u8; 16];
    while pending > 0 {
        let left = deadline.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        let millis = left.as_millis().clamp(1, 100) as u16;
        let got = wait(&epoll, &mut events, millis)?;
        for event in &events[..got] {
            let index = event.data() as usize;
            let Some((stream, state)) = conns[index].as_mut() else {
                continue;
            };
            let mut outcome: Option<&mut usize> = None;
            match state {
                State::Connecting => match stream.take_error() {
                    Ok(None) => match (&*stream).write(b"x") {
                        Ok(1) => {
                            *state = State::Echoing;
                            let mut ev = EpollEvent::new(EpollFlags::EPOLLIN, index as u64);
                            epoll.modify(&*stream, &mut ev)?;
                        }
                        Err(err) if err.raw_os_error() == Some(libc::ECONNRESET) => {
                            outcome = Some(&mut result.reset)
                        }
                        _ => outcome = Some(&mut result.other),
                    },
                    Ok(Some(err)) | Err(err) => {
                        outcome = Some(match err.raw_os_error() {
                            Some(libc::ECONNREFUSED) => &mut result.refused,
                            Some(libc::ECONNRESET) => &mut result.reset,
                            Some(libc::ETIMEDOUT) => &mut result.timed_out,
                            _ => &mut result.other,
                        })
                    }
                },
                State::Echoing => match (&*stream).read(&mut byte) {
                    Ok(0) => outcome = Some(&mut result.reset),
                    Ok(_) => {
                        outcome = Some(if started.elapsed() >= Duration::from_secs(1) {
                            &mut result.late
                        } else {
                            &mut result.ok
                        })
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(err) if err.raw_os_error() == Some(libc::ECONNRESET) => {
                        outcome = Some(&mut result.reset)
                    }
                    Err(_) => outcome = Some(&mut result.other),
                },
            }
            if let Some(count) = outcome {
                *count += 1;
                pending -= 1;
                conns[index] = None; // closes it
            }
        }
    }
    result.timed_out += pending;
    result.elapsed = started.elapsed();
    Ok(result)
}

// ---------------------------------------------------------------------------
// (d) Idle connections.
// ---------------------------------------------------------------------------

/// Opens `n` connections that never send anything. At most `window` may
/// be connected but not yet taken by the server (`held()` says how many it
/// has taken so far), so that its listen backlog never overflows; each
/// connect is given `timeout`. Returns the connections made and the count
/// that failed.
pub fn connect_idle(
    addr: SocketAddr,
    n: usize,
    window: usize,
    timeout: Duration,
    held: &dyn Fn() -> usize,
) -> io::Result<(Vec<TcpStream>, usize)> {
    const IN_FLIGHT: usize = 256;
    const STALL: Duration = Duration::from_secs(2);
    let epoll = epoll()?;
    let mut done = Vec::with_capacity(n);
    let mut failed = 0;
    let mut pending: Vec<Option<(TcpStream, Instant)>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut live = 0;
    let mut started = 0;
    let mut accepted = held();
    let mut progress = Instant::now();
    let mut events = vec![EpollEvent::empty(); 1024];
    while done.len() + failed < n {
        if started < n && (done.len() + live).saturating_sub(accepted) >= window {
            let now = held();
            if now != accepted {
                accepted = now;
                progress = Instant::now();
            } else if live == 0 && progress.elapsed() > STALL {
                // The server stopped accepting (a pool at `max_waiting`):
                // the connections not started count as failed.
                failed += n - started;
                break;
            }
        }
        while started < n
            && live < IN_FLIGHT
            && (done.len() + live).saturating_sub(accepted) < window
        {
            started += 1;
            match start_connect(addr) {
                Ok(stream) => {
                    let index = free.pop().unwrap_or_else(|| {
                        pending.push(None);
                        pending.len() - 1
                    });
                    epoll.add(&stream, EpollEvent::new(EpollFlags::EPOLLOUT, index as u64))?;
                    pending[index] = Some((stream, Instant::now()));
                    live += 1;
                }
                Err(_) => failed += 1,
            }
        }
        let got = wait(&epoll, &mut events, 1)?;
        for event in &events[..got] {
            let index = event.data() as usize;
            if let Some((stream, _)) = pending[index].take() {
                live -= 1;
                free.push(index);
                epoll.delete(&stream)?;
                match stream.take_error() {
                    Ok(None) => done.push(stream),
                    _ => failed += 1,
                }
            }
        }
        let now = Instant::now();
        for (index, slot) in pending.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|(_, t)| now - *t > timeout) {
                *slot = None;
                live -= 1;
                failed += 1;
                free.push(index);
            }
        }
    }
    Ok((done, failed))
}

/// A server's resident memory with idle connections.
#[derive(Debug, Clone)]
pub struct Idle {
    /// Connections asked for.
    pub requested: usize,
    /// Connections the client made.
    pub connected: usize,
    /// Connections the server holds (its new descriptors).
    pub held: usize,
    /// Server RSS before, KiB.
    pub rss_before_kib: u64,
    /// Server RSS with the connections, KiB.
    pub rss_after_kib: u64,
}

impl Idle {
    /// RSS added per held connection, KiB.
    pub fn kib_per_connection(&self) -> Option<f64> {
        (self.held > 0).then(|| {
            self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64 / self.held as f64
        })
    }
}

/// Opens `n` idle connections to `server`, waits until it holds them (its
/// descriptor count stops growing) and its RSS settles, and measures.
pub fn idle_memory(server: &ServerProcess, n: usize, limit: Duration) -> io::Result<Idle> {
    let base = server.holding();
    let rss_before = server.rss_kib().unwrap_or(0);
    let started = Instant::now();
    let held_now = || server.holding().saturating_sub(base);
    let (streams, _failed) = connect_idle(
        server.addr,
        n,
        server.accept_window,
        Duration::from_secs(10),
        &held_now,
    )?;
    // Wait until the server holds them all, or its count stops moving.
    let mut last = (0, Instant::now());
    let held = loop {
        let held = held_now();
        if held >= streams.len() || started.elapsed() > limit {
            break held;
        }
        if held != last.0 {
            last = (held, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break held;
        }
        thread::sleep(Duration::from_millis(20));
    };
    // Then let RSS settle (threads reach their blocking read).
    let mut rss = server.rss_kib().unwrap_or(0);
    for _ in 0..50 {
        thread::sleep(Duration::from_millis(40));
        let now = server.rss_kib().unwrap_or(0);
        if now == rss {
            break;
        }
        rss = now;
    }
    let result = Idle {
        requested: n,
        connected: streams.len(),
        held,
        rss_before_kib: rss_before,
        rss_after_kib: rss,
    };
    drop(streams);
    Ok(result)
}

// ---------------------------------------------------------------------------
// (e) Shutdown latency.
// ---------------------------------------------------------------------------

/// How long a server took to exit after SIGTERM.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shutdown {
    /// SIGTERM to exit, if it exited while its clients were still there
    /// (idle: no clients).
    pub after_signal: Option<Duration>,
    /// If it waited for its clients: from the moment they closed their
    /// connections to exit.
    pub after_clients_left: Option<Duration>,
}

/// SIGTERM to exit of an idle server (one exchange first, so it is serving).
pub fn shutdown_idle(spec: &ServerSpec) -> io::Result<Shutdown> {
    let mut server = spec.start()?;
    PingPong::echo(1, 1).start(server.addr)?.stop()?;
    thread::sleep(Duration::from_millis(50));
    let sent = server.terminate();
    let exited = server.wait_exit(Duration::from_secs(5));
    Ok(Shutdown {
        after_signal: exited.map(|t| t - sent),
        after_clients_left: None,
    })
}

/// SIGTERM to exit while `clients` connections ping-pong. The clients go
/// on for `grace`; if the server has not exited by then, they close their
/// connections and the time from then to exit is measured too.
pub fn shutdown_busy(spec: &ServerSpec, clients: usize, grace: Duration) -> io::Result<Shutdown> {
    let mut server = spec.start()?;
    let load = PingPong::echo(clients, 64).start(server.addr)?;
    thread::sleep(Duration::from_millis(100));
    let sent = server.terminate();
    if let Some(exited) = server.wait_exit(grace) {
        let _ = load.stop();
        return Ok(Shutdown {
            after_signal: Some(exited - sent),
            after_clients_left: None,
        });
    }
    let left = Instant::now();
    let _ = load.stop();
    let exited = server.wait_exit(Duration::from_secs(5));
    Ok(Shutdown {
        after_signal: None,
        after_clients_left: exited.map(|t| t - left),
    })
}

// ---------------------------------------------------------------------------
// (f) UDP echo.
// ---------------------------------------------------------------------------

/// A UDP echo load: `sockets` clients, each with one datagram in flight; a
/// datagram not echoed within `timeout` counts as lost and the client sends
/// the next.
#[derive(Debug, Clone)]
pub struct UdpEcho {
    /// Client sockets.
    pub sockets: usize,
    /// Load threads.
    pub threads: usize,
    /// Datagram size (at least 8: a sequence number leads it).
    pub size: usize,
    /// How long a datagram may go unanswered before it counts as lost.
    pub timeout: Duration,
    /// Warm-up before the clock starts.
    pub warmup: Duration,
}

impl UdpEcho {
    /// Starts the clients and warms up.
    pub fn start(&self, addr: SocketAddr) -> io::Result<Load> {
        let threads = self.threads.clamp(1, self.sockets.max(1));
        let mut shares: Vec<Vec<UdpSocket>> = (0..threads).map(|_| Vec::new()).collect();
        for i in 0..self.sockets {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.connect(addr)?;
            socket.set_nonblocking(true)?;
            shares[i % threads].push(socket);
        }
        let (size, timeout) = (self.size.max(8), self.timeout);
        Load::start(
            "udp",
            shares,
            self.sockets,
            self.warmup,
            move |share, phase| udp_thread(share, size, timeout, phase),
        )
    }
}

fn udp_thread(
    sockets: Vec<UdpSocket>,
    size: usize,
    timeout: Duration,
    phase: &Phase,
) -> io::Result<Tally> {
    struct Client {
        socket: UdpSocket,
        seq: u64,
        sent: Instant,
        warmed: bool,
    }
    let epoll = epoll()?;
    let mut tally = Tally::new();
    let mut datagram = vec![b'u'; size];
    let mut buf = vec![0u8; 65536];
    let mut clients = Vec::with_capacity(sockets.len());
    for (i, socket) in sockets.into_iter().enumerate() {
        epoll.add(&socket, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
        clients.push(Client {
            socket,
            seq: 0,
            sent: Instant::now(),
            warmed: false,
        });
    }
    let send = |client: &mut Client, datagram: &mut [u8]| {
        client.seq += 1;
        datagram[..8].copy_from_slice(&client.seq.to_le_bytes());
        client.sent = Instant::now();
        // A full socket buffer or a refused port: the timeout resends.
        let _ = client.socket.send(datagram);
    };
    for client in &mut clients {
        send(client, &mut datagram);
    }
    let mut events = vec![EpollEvent::empty(); 256];
    let tick = (timeout.as_millis() / 4).clamp(1, 50) as u16;
    while phase.get() != STOP {
        let n = wait(&epoll, &mut events, tick)?;
        for event in &events[..n] {
            let client = &mut clients[event.data() as usize];
            loop {
                match client.socket.recv(&mut buf) {
                    Ok(got) => {
                        let seq =
                            (got >= 8).then(|| u64::from_le_bytes(buf[..8].try_into().unwrap()));
                        if seq == Some(client.seq) && got == size {
                            if phase.get() == MEASURE {
                                tally.completed += 1;
                                tally
                                    .latency
                                    .saturating_record(nanos(client.sent.elapsed()));
                            }
                            if !client.warmed {
                                client.warmed = true;
                                phase.warmed.fetch_add(1, Ordering::Relaxed);
                            }
                            send(client, &mut datagram);
                        }
                        // Anything else is the late echo of a datagram
                        // already counted lost.
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        // ECONNREFUSED from an ICMP error: count and go on.
                        if phase.get() == MEASURE {
                            tally.errors += 1;
                        }
                        break;
                    }
                }
            }
        }
        let now = Instant::now();
        for client in &mut clients {
            if now - client.sent > timeout {
                if phase.get() == MEASURE {
                    tally.lost += 1;
                }
                send(client, &mut datagram);
            }
        }
    }
    Ok(tally)
}

/// CPU time the whole machine has spent busy (all cores; /proc/stat).
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(busy * 1_000_000_000 / hz))
}

/// CPU time of this process and of its reaped children (the servers).
pub fn own_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    [UsageWho::RUSAGE_SELF, UsageWho::RUSAGE_CHILDREN]
        .into_iter()
        .filter_map(|who| getrusage(who).ok())
        .map(|u| {
            let micros = |t: nix::sys::time::TimeVal| {
                Duration::from_micros((t.tv_sec() * 1_000_000 + t.tv_usec()).max(0) as u64)
            };
            micros(u.user_time()) + micros(u.system_time())
        })
        .sum()
}

/// The local machine, for the report: cores, kernel, CPU model.
pub fn machine() -> (usize, String, String) {
    let cores = thread::available_parallelism().map_or(1, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    (cores, kernel, cpu)
}
