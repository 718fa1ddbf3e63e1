//! Restart on SIGHUP: a `socketserver` server starts its program again,
//! hands the new process its listening socket, and stops only once the new
//! one is ready — so that no client notices. Under load, across several
//! restarts in a row, with exchanges that span each restart: no failure; and
//! a negative control (stop, then start again on the same port), in the same
//! test, that must count failures, proving the test can see them. A new
//! process that fails leaves the old one serving; an upgraded executable
//! takes over; a Unix socket file stays; systemd learns the new main pid.
//!
//! Every server process of a test writes to the same stdout and stderr (a
//! new process inherits them), so its `listening on` lines and logs are read
//! from one place. The test process is made a child subreaper, so that the
//! old processes, orphaned when their own parent exits, are its children
//! and it can wait for them.
//!
//! Run with `-- --nocapture` for the figures of docs/reliability.md.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use util::{bounded, BIN, CLIENT_TIMEOUT};

const LIMIT: Duration = Duration::from_secs(120);
/// The servers' --drain-timeout: an old process is gone within it (and the
/// grace after it) once a new one took over.
const DRAIN: &str = "5";
/// How long an old process may take to exit after the takeover: the drain,
/// the grace after it, and room for a loaded machine.
const GONE_WITHIN: Duration = Duration::from_secs(20);

/// The servers started by one test: the first, which the test started, and
/// each new process a restart started, in order. SIGKILLed and waited for
/// when dropped.
struct Family {
    /// The first process, until it was waited for.
    first: Option<Child>,
    /// Every server process, oldest first; the last one serves.
    pids: Vec<Pid>,
    /// How many of `pids`, from the first, have been waited for.
    reaped: usize,
    /// What the first printed after `listening on `.
    address: String,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Family {
    /// Starts `program ARGS…` and waits for its `listening on` line.
    fn start(program: &Path, args: &[&str]) -> Family {
        Self::spawn(Command::new(program).args(args))
    }

    fn spawn(command: &mut Command) -> Family {
        adopt_orphans();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // ETXTBSY: a test's private copy of the program was just written,
        // and a child that another test thread forked meanwhile holds the
        // descriptor it was written through until that child execs (the
        // known race of writing an executable in a threaded process). It
        // passes within microseconds: try again, a bounded number of times.
        let mut busy = 0;
        let mut first = loop {
            match command.spawn() {
                Err(err) if err.kind() == std::io::ErrorKind::ExecutableFileBusy && busy < 100 => {
                    busy += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                spawned => break spawned.unwrap(),
            }
        };
        let stdout = lines(first.stdout.take().unwrap());
        let stderr = lines(first.stderr.take().unwrap());
        let pid = Pid::from_raw(first.id() as i32);
        let mut family = Family {
            first: Some(first),
            pids: vec![pid],
            reaped: 0,
            address: String::new(),
            stdout,
            stderr,
        };
        family.address = family.listening();
        family
    }

    /// Waits for the next `listening on` line and returns its address.
    fn listening(&self) -> String {
        let line = self
            .stdout
            .recv_timeout(CLIENT_TIMEOUT)
            .unwrap_or_else(|_| {
                let log: Vec<String> = self.stderr.try_iter().collect();
                panic!("no `listening on` line; log: {log:#?}")
            });
        line.strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("not a `listening on` line: {line:?}"))
            .to_owned()
    }

    /// Waits for a log line (of any of the processes) containing `needle`.
    fn log_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        util::log_line(&self.stderr, needle, || {
            deadline.saturating_duration_since(Instant::now())
        })
    }

    /// The warnings and errors logged so far (and not yet read), for a
    /// failure's message.
    fn troubles(&self) -> Vec<String> {
        self.stderr
            .try_iter()
            .filter(|line| line.contains("WARN") || line.contains("ERROR"))
            .collect()
    }

    /// The process that serves now.
    fn current(&self) -> Pid {
        *self.pids.last().unwrap()
    }

    fn socket_addr(&self) -> SocketAddr {
        self.address.parse().unwrap()
    }

    /// SIGHUP to the serving process; waits until a new one took over and
    /// printed the same `listening on` line. Returns the time from the
    /// signal to the takeover.
    fn restart(&mut self) -> Duration {
        let signalled = Instant::now();
        self.signal(Signal::SIGHUP);
        let line = self.log_line("took over in");
        let took = signalled.elapsed();
        let pid = pid_between(&line, "restart: process ", ' ');
        assert_eq!(self.listening(), self.address, "the same address");
        self.pids.push(pid);
        took
    }

    fn signal(&self, signal: Signal) {
        kill(self.current(), signal).unwrap();
    }

    /// Waits for every process but the serving one to exit (each within
    /// [`GONE_WITHIN`]), oldest first, and checks it exited with status 0
    /// and is gone.
    fn wait_old(&mut self) {
        while self.reaped + 1 < self.pids.len() {
            let status = self.wait_next();
            let pid = self.pids[self.reaped - 1];
            assert_eq!(status, WaitStatus::Exited(pid, 0), "old process {pid}");
            assert_eq!(kill(pid, None), Err(Errno::ESRCH), "{pid} is gone");
        }
    }

    /// SIGTERM to the serving process; waits for it to exit 0.
    fn stop(&mut self) {
        self.wait_old();
        self.signal(Signal::SIGTERM);
        let pid = self.current();
        assert_eq!(self.wait_next(), WaitStatus::Exited(pid, 0));
    }

    /// Waits for the oldest process not yet waited for, at most
    /// [`GONE_WITHIN`]. Oldest first: by then its parent (the one before
    /// it) has exited, so it is this process's child (the subreaper's).
    fn wait_next(&mut self) -> WaitStatus {
        let index = self.reaped;
        let pid = self.pids[index];
        let (done, status) = mpsc::channel();
        if index == 0 {
            // std's Child: it must know the process was waited for.
            let mut first = self.first.take().unwrap();
            thread::spawn(move || {
                let status = first.wait().unwrap();
                use std::os::unix::process::ExitStatusExt;
                let status = match status.code() {
                    Some(code) => WaitStatus::Exited(pid, code),
                    None => WaitStatus::Signaled(
                        pid,
                        Signal::try_from(status.signal().unwrap()).unwrap(),
                        false,
                    ),
                };
                let _ = done.send(status);
            });
        } else {
            thread::spawn(move || {
                let _ = done.send(waitpid(pid, None).unwrap());
            });
        }
        let status = status
            .recv_timeout(GONE_WITHIN)
            .unwrap_or_else(|_| panic!("process {pid} still runs {GONE_WITHIN:?} after"));
        self.reaped += 1;
        status
    }
}

impl Drop for Family {
    fn drop(&mut self) {
        for &pid in &self.pids[self.reaped..] {
            let _ = kill(pid, Signal::SIGKILL);
        }
        if let Some(first) = &mut self.first {
            let _ = first.wait();
        }
        for &pid in &self.pids[self.reaped.max(1)..] {
            let _ = waitpid(pid, None);
        }
    }
}

/// The pid in `line` after `before`, up to `end`.
fn pid_between(line: &str, before: &str, end: char) -> Pid {
    line.split(before)
        .nth(1)
        .and_then(|rest| rest.split(end).next())
        .and_then(|pid| pid.parse().ok())
        .map(Pid::from_raw)
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

/// Makes this process the child subreaper of its descendants: a server
/// process orphaned by the exit of the one that started it becomes a child
/// of the test, which can then wait for it.
fn adopt_orphans() {
    nix::sys::prctl::set_child_subreaper(true).unwrap();
}

/// The lines read from `pipe`, on a thread of their own (which also keeps
/// the pipe drained, so that no server blocks on it).
fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    use std::io::BufRead;
    let (send, receive) = mpsc::channel();
    thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                // Nobody reads any more: keep draining.
                continue;
            }
        }
    });
    receive
}

/// How exchanges ended, as the clients saw them.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// The whole line back, exact.
    answered: u64,
    /// Connection refused: nobody listened.
    refused: u64,
    /// Reset or broken pipe.
    reset: u64,
    /// No reply within the client's timeout.
    timed_out: u64,
    /// A reply that was short or not the line.
    bad_reply: u64,
}

impl Tally {
    fn failed(&self) -> u64 {
        self.refused + self.reset + self.timed_out + self.bad_reply
    }

    fn exchanges(&self) -> u64 {
        self.answered + self.failed()
    }

    fn add(&mut self, other: Tally) {
        self.answered += other.answered;
        self.refused += other.refused;
        self.reset += other.reset;
        self.timed_out += other.timed_out;
        self.bad_reply += other.bad_reply;
    }

    fn count(&mut self, outcome: Result<(), std::io::Error>) {
        match outcome {
            Ok(()) => self.answered += 1,
            Err(err) => match err.kind() {
                ErrorKind::ConnectionRefused => self.refused += 1,
                ErrorKind::ConnectionReset
                | ErrorKind::BrokenPipe
                | ErrorKind::ConnectionAborted => self.reset += 1,
                ErrorKind::WouldBlock | ErrorKind::TimedOut => self.timed_out += 1,
                ErrorKind::InvalidData | ErrorKind::UnexpectedEof => self.bad_reply += 1,
                _ => panic!("unexpected client error: {err}"),
            },
        }
    }
}

/// One exchange begun: connected, the first half of the line sent.
struct Exchange<S> {
    stream: S,
    line: Vec<u8>,
}

/// What both stream kinds offer the client.
trait Stream: Read + Write + Sized {
    fn shutdown_write(&self) -> std::io::Result<()>;
}

impl Stream for TcpStream {
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Stream for UnixStream {
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl<S: Stream> Exchange<S> {
    /// Sends the first half of `line` on `stream`.
    fn begin(mut stream: S, line: Vec<u8>) -> std::io::Result<Self> {
        stream.write_all(&line[..line.len() / 2])?;
        Ok(Exchange { stream, line })
    }

    /// Sends the rest, and checks the echo: the whole line, exactly.
    fn finish(mut self) -> std::io::Result<()> {
        self.stream.write_all(&self.line[self.line.len() / 2..])?;
        self.stream.shutdown_write()?;
        let mut reply = Vec::new();
        self.stream.read_to_end(&mut reply)?;
        if reply != self.line {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!("sent {} bytes, got back {}", self.line.len(), reply.len()),
            ));
        }
        Ok(())
    }
}

fn tcp(address: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&address, CLIENT_TIMEOUT)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    Ok(stream)
}

fn tcp_exchange(address: SocketAddr, line: Vec<u8>) -> std::io::Result<()> {
    Exchange::begin(tcp(address)?, line)?.finish()
}

/// The line client `id` sends in its exchange `n`: unique, so that a reply
/// meant for another connection would show.
fn line(id: usize, n: u64) -> Vec<u8> {
    format!(
        "client {id} exchange {n} {}\n",
        "x".repeat(40 + (n % 64) as usize)
    )
    .into_bytes()
}

/// Client threads, each making exchanges on new connections one after
/// another until told to stop.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<thread::JoinHandle<Tally>>,
    /// A message every [`PROGRESS`] exchanges of a client.
    progress: mpsc::Receiver<()>,
}

/// See [`Load::progress`].
const PROGRESS: u64 = 20;

impl Load {
    fn start(address: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (progress, progressed) = mpsc::channel();
        let clients = (0..clients)
            .map(|id| {
                let (stop, progress) = (Arc::clone(&stop), progress.clone());
                thread::spawn(move || {
                    let mut tally = Tally::default();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        tally.count(tcp_exchange(address, line(id, n)));
                        if n % PROGRESS == 0 {
                            let _ = progress.send(());
                        }
                    }
                    tally
                })
            })
            .collect();
        Load {
            stop,
            clients,
            progress: progressed,
        }
    }

    /// Waits until the clients have made `n` × [`PROGRESS`] more exchanges.
    fn progressed(&self, n: usize) {
        for _ in 0..n {
            self.progress
                .recv_timeout(CLIENT_TIMEOUT)
                .expect("the clients make progress");
        }
    }

    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for client in self.clients {
            total.add(client.join().unwrap());
        }
        total
    }
}

/// Client threads of the load.
const CLIENTS: usize = 8;
/// SIGHUPs in a row.
const RESTARTS: usize = 5;
/// Exchanges begun before each SIGHUP and finished after the takeover.
const SPANNING: usize = 8;

/// Restarts `RESTARTS` times in a row a `socketserver echo --mode MODE`
/// under the load of [`CLIENTS`] client threads, with [`SPANNING`]
/// exchanges begun before each SIGHUP and finished after the takeover;
/// waits for every old process to exit 0. Returns the server (the last
/// process serving), the load's tally, the spanning exchanges' and the time
/// from each SIGHUP to the takeover.
fn restart_under_load(mode: &str, restarts: usize) -> (Family, Tally, Tally, Vec<Duration>) {
    let mut servers = Family::start(Path::new(BIN), &util::echo_args(mode, DRAIN));
    let address = servers.socket_addr();
    let load = Load::start(address, CLIENTS);
    let mut spanning = Tally::default();
    let mut took = Vec::new();
    for restart in 0..restarts {
        load.progressed(BETWEEN * CLIENTS);
        let begun: Vec<_> = (0..SPANNING)
            .map(|i| Exchange::begin(tcp(address).unwrap(), line(100 + i, restart as u64)).unwrap())
            .collect();
        took.push(servers.restart());
        for exchange in begun {
            spanning.count(exchange.finish());
        }
    }
    load.progressed(BETWEEN * CLIENTS);
    let tally = load.finish();
    servers.wait_old();
    assert_eq!(servers.pids.len(), restarts + 1);
    (servers, tally, spanning, took)
}

/// Rounds of [`PROGRESS`] exchanges per client between two restarts.
const BETWEEN: usize = 4;

/// TcpExt's ListenOverflows and ListenDrops, machine-wide (nstat's).
fn listen_drops() -> (u64, u64) {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return (0, 0);
    };
    let field = |name: &str| {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    (field("ListenOverflows"), field("ListenDrops"))
}

#[test]
fn restart_under_load_loses_nothing_and_stop_start_does() {
    bounded(LIMIT, || {
        let drops = listen_drops();
        let (mut servers, tally, spanning, took) = restart_under_load("threading", RESTARTS);
        let drops_after = listen_drops();
        let took_ms: Vec<u128> = took.iter().map(Duration::as_millis).collect();
        eprintln!(
            "restart under load: {CLIENTS} clients, {RESTARTS} restarts: {} exchanges, {} failed \
             ({tally:?}); {} spanning a restart, {} failed; SIGHUP to takeover: {took_ms:?} ms; \
             TcpExt ListenOverflows/ListenDrops {drops:?} -> {drops_after:?} (machine-wide)",
            tally.exchanges(),
            tally.failed(),
            spanning.exchanges(),
            spanning.failed(),
        );
        assert_eq!(tally.failed(), 0, "{tally:?}");
        assert_eq!(
            spanning.answered,
            (RESTARTS * SPANNING) as u64,
            "{spanning:?}"
        );

        // The negative control: stop, then start on the same port. The same
        // load must see it.
        let address = servers.socket_addr();
        let load = Load::start(address, CLIENTS);
        load.progressed(CLIENTS);
        servers.stop();
        let bind = address.to_string();
        let again = Family::start(Path::new(BIN), &["echo", "--bind", &bind]);
        assert_eq!(again.address, bind);
        load.progressed(BETWEEN * CLIENTS);
        let control = load.finish();
        eprintln!(
            "negative control (SIGTERM, then a new process on the same port): {} exchanges, \
             {} failed ({control:?})",
            control.exchanges(),
            control.failed()
        );
        assert!(
            control.failed() > 0,
            "the test must see a stop: {control:?}"
        );
    });
}

#[test]
fn restart_under_load_in_every_other_mode() {
    bounded(LIMIT, || {
        for mode in ["sync", "pool", "coroutine", "forking"] {
            let (mut servers, tally, spanning, took) = restart_under_load(mode, 2);
            eprintln!(
                "--mode {mode}: 2 restarts: {} exchanges, {} failed; {} spanning, {} failed; \
                 SIGHUP to takeover: {:?}",
                tally.exchanges(),
                tally.failed(),
                spanning.exchanges(),
                spanning.failed(),
                took
            );
            assert_eq!(
                tally.failed(),
                0,
                "--mode {mode}: {tally:?}; {:#?}",
                servers.troubles()
            );
            assert_eq!(
                spanning.answered,
                (2 * SPANNING) as u64,
                "--mode {mode}: {spanning:?}"
            );
            servers.stop();
        }
    });
}

/// Copies the program under test to a directory of its own, so that the
/// test can replace it there as an upgrade would.
fn private_copy(dir: &Path) -> PathBuf {
    let program = dir.join("socketserver");
    std::fs::copy(BIN, &program).unwrap();
    program
}

/// Replaces `program` with a shell script, as an upgrade does: written
/// beside it, then renamed over it (the running process's file is
/// unlinked, not changed).
fn replace_with_script(program: &Path, script: &str) {
    let new = program.with_extension("new");
    std::fs::write(&new, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&new, program).unwrap();
}

#[test]
fn a_new_process_that_fails_leaves_the_old_one_serving() {
    bounded(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let program = private_copy(dir.path());
        let mut servers = Family::start(
            &program,
            &["echo", "--bind", "127.0.0.1:0", "--restart-timeout", "1"],
        );
        let address = servers.socket_addr();
        let first = servers.current();
        tcp_exchange(address, line(0, 0)).unwrap();

        // One that exits at once.
        replace_with_script(&program, "exit 3");
        servers.signal(Signal::SIGHUP);
        let why = servers.log_line("serves on");
        assert!(why.contains("exited before it was ready"), "{why}");
        assert!(why.contains("exit status: 3"), "{why}");
        tcp_exchange(address, line(0, 1)).unwrap();

        // One that never reports ready; a second SIGHUP meanwhile is ignored.
        replace_with_script(&program, "exec sleep 60");
        servers.signal(Signal::SIGHUP);
        servers.log_line("restarting: starting");
        servers.signal(Signal::SIGHUP);
        servers.log_line("SIGHUP ignored: a restart is under way");
        let why = servers.log_line("serves on");
        assert!(why.contains("did not report ready within 1s"), "{why}");
        let sleeper = pid_between(&why, "(pid ", ')');
        assert_eq!(
            kill(sleeper, None),
            Err(Errno::ESRCH),
            "the late process was killed and reaped"
        );
        tcp_exchange(address, line(0, 2)).unwrap();
        assert_eq!(servers.current(), first);
        assert_eq!(kill(first, None), Ok(()));

        // A working program again: the restart goes through.
        replace_with_script(&program, &format!("exec '{BIN}' \"$@\""));
        servers.restart();
        tcp_exchange(address, line(0, 3)).unwrap();
        servers.stop();
    });
}

/// SIGTERM while the new process starts: the old one stops accepting at
/// once, and the new one, once ready, is stopped too — no process serves on.
#[test]
fn a_stop_during_a_restart_stops_the_new_process_too() {
    bounded(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let program = private_copy(dir.path());
        let gate = dir.path().join("gate");
        nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut servers = Family::start(&program, &["echo", "--bind", "127.0.0.1:0"]);
        // The new program waits for the test before it starts.
        replace_with_script(
            &program,
            &format!("read go < '{}'; exec '{BIN}' \"$@\"", gate.display()),
        );
        servers.signal(Signal::SIGHUP);
        servers.log_line("restarting: starting");
        servers.signal(Signal::SIGTERM);
        servers.log_line("shutting down");
        std::fs::write(&gate, "go\n").unwrap();
        let line = servers.log_line("stopping the new process");
        let new = pid_between(&line, "stopping the new process ", ' ');
        assert_eq!(
            servers.listening(),
            servers.address,
            "the new one was ready"
        );
        servers.pids.push(new);
        let old = servers.wait_next();
        assert!(matches!(old, WaitStatus::Exited(_, 0)), "{old:?}");
        assert_eq!(
            servers.wait_next(),
            WaitStatus::Exited(new, 0),
            "the new one stopped"
        );
        assert_eq!(
            TcpStream::connect(servers.socket_addr())
                .unwrap_err()
                .kind(),
            ErrorKind::ConnectionRefused
        );
    });
}

#[test]
fn an_upgraded_executable_takes_over() {
    bounded(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let program = private_copy(dir.path());
        let mut servers = Family::start(&program, &["echo", "--bind", "127.0.0.1:0"]);
        let address = servers.socket_addr();
        let ask = |text: &[u8]| {
            let mut stream = tcp(address).unwrap();
            stream.write_all(text).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            util::read_to_end(stream)
        };
        assert_eq!(ask(b"hello\n"), b"hello\n");

        // The upgrade: a program that behaves otherwise (it upper-cases),
        // renamed over the running one's file.
        replace_with_script(&program, &format!("exec '{BIN}' \"$@\" --upper"));
        let exe = std::fs::read_link(format!("/proc/{}/exe", servers.current())).unwrap();
        assert!(
            exe.to_string_lossy().ends_with(" (deleted)"),
            "/proc/PID/exe names the replaced file: {exe:?}"
        );
        servers.restart();
        // Until the old process's loop sees the stop, either may accept.
        servers.wait_old();
        assert_eq!(ask(b"hello\n"), b"HELLO\n", "the new program answers");
        servers.stop();
    });
}

#[test]
fn a_unix_server_keeps_its_socket_file() {
    bounded(LIMIT, || {
        let path = util::unix_path("restart");
        let mut servers = Family::start(
            Path::new(BIN),
            &[
                "echo",
                "--unix",
                path.to_str().unwrap(),
                "--unix-mode",
                "600",
            ],
        );
        assert_eq!(servers.address, path.display().to_string());
        let file = std::fs::metadata(&path).unwrap();
        let unix = || {
            let stream = UnixStream::connect(&path).unwrap();
            stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            stream
        };
        for restart in 0..2 {
            let begun = Exchange::begin(unix(), line(0, restart)).unwrap();
            servers.restart();
            begun.finish().unwrap();
            servers.wait_old();
            let now = std::fs::metadata(&path).expect("the socket file stays");
            assert_eq!((now.dev(), now.ino()), (file.dev(), file.ino()));
            assert_eq!(now.mode() & 0o777, 0o600);
            Exchange::begin(unix(), line(1, restart))
                .unwrap()
                .finish()
                .unwrap();
        }
        // The last process took the file over: it removes it when it stops.
        servers.stop();
        assert!(!path.exists(), "the last server removes the socket file");
    });
}

#[test]
fn a_datagram_server_restarts_too() {
    bounded(LIMIT, || {
        let mut servers =
            Family::start(Path::new(BIN), &["echo", "--udp", "--bind", "127.0.0.1:0"]);
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        client.connect(servers.socket_addr()).unwrap();
        let mut buf = [0; 64];
        for n in 0..3 {
            let text = format!("datagram {n}");
            client.send(text.as_bytes()).unwrap();
            let len = client.recv(&mut buf).unwrap();
            assert_eq!(&buf[..len], text.as_bytes());
            if n < 2 {
                servers.restart();
            }
        }
        servers.wait_old();
        servers.stop();
    });
}

/// The other commands, which make their servers otherwise: `time` (UDP),
/// `whoami` (TCP), and a Unix datagram `echo`. Each serves before and after.
#[test]
fn the_other_server_commands_restart_too() {
    bounded(LIMIT, || {
        let mut time = Family::start(Path::new(BIN), &["time", "--bind", "127.0.0.1:0"]);
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        client.connect(time.socket_addr()).unwrap();
        let mut buf = [0; 64];
        for _ in 0..2 {
            client.send(b"%Y").unwrap();
            let len = client.recv(&mut buf).unwrap();
            assert_eq!(len, 4, "a year: {:?}", &buf[..len]);
            time.restart();
        }
        time.stop();

        let mut whoami = Family::start(Path::new(BIN), &["whoami", "--bind", "127.0.0.1:0"]);
        for _ in 0..2 {
            let stream = tcp(whoami.socket_addr()).unwrap();
            let me = stream.local_addr().unwrap();
            assert_eq!(util::read_to_end(stream), format!("{me}\n").as_bytes());
            whoami.restart();
        }
        whoami.stop();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dgram.sock");
        let mut echo = Family::start(
            Path::new(BIN),
            &["echo", "--udp", "--unix", path.to_str().unwrap()],
        );
        let client = UnixDatagram::bind(dir.path().join("client.sock")).unwrap();
        client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        for n in 0..2 {
            let text = format!("datagram {n}");
            client.send_to(text.as_bytes(), &path).unwrap();
            let len = client.recv(&mut buf).unwrap();
            assert_eq!(&buf[..len], text.as_bytes());
            echo.restart();
            echo.wait_old();
            assert!(path.exists(), "the socket file stays");
        }
        echo.stop();
        assert!(!path.exists(), "the last server removes the socket file");
    });
}

/// Under systemd (`Type=notify`), the service manager hears READY=1 from the
/// first process, then, at each restart, the new main pid from the old one.
#[test]
fn systemd_learns_the_new_main_pid() {
    bounded(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let socket_path = dir.path().join("notify");
        let systemd = UnixDatagram::bind(&socket_path).unwrap();
        systemd.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let heard = || {
            let mut buf = [0; 256];
            let len = systemd.recv(&mut buf).expect("a notification");
            String::from_utf8(buf[..len].to_vec()).unwrap()
        };
        let mut servers = Family::spawn(
            Command::new(BIN)
                .args(["echo", "--bind", "127.0.0.1:0"])
                .env("NOTIFY_SOCKET", &socket_path),
        );
        assert_eq!(heard(), "READY=1");
        servers.restart();
        assert_eq!(heard(), format!("MAINPID={}\nREADY=1", servers.current()));
        servers.stop();
        assert_eq!(heard(), "STOPPING=1");
    });
}
