//! [`Running`]: a `socketserver` server process, started the way its users
//! start it, for the tests that drive the command-line program.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::CLIENT_TIMEOUT;

/// The `socketserver` program under test, which Cargo builds for this
/// package's tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_socketserver");

/// The first of the `lines` (a server's log) that contains `needle`, each
/// waited for at most `wait()`; a test fails if none comes.
pub fn log_line(
    lines: &mpsc::Receiver<String>,
    needle: &str,
    mut wait: impl FnMut() -> Duration,
) -> String {
    loop {
        let line = lines
            .recv_timeout(wait())
            .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

/// The arguments of an echo server on a free local port in `mode` (threading,
/// pool, …), that drains for `drain` seconds when asked to stop.
pub fn echo_args<'a>(mode: &'a str, drain: &'a str) -> [&'a str; 7] {
    [
        "echo",
        "--bind",
        "127.0.0.1:0",
        "--mode",
        mode,
        "--drain-timeout",
        drain,
    ]
}

/// A running `socketserver` server: started, its `listening on` line read;
/// SIGKILLed and waited for when dropped.
pub struct Running {
    child: Child,
    /// What the server printed after `listening on `.
    pub address: String,
    stderr: mpsc::Receiver<String>,
    /// Waited for: its pid may belong to another process now.
    reaped: bool,
}

impl Running {
    /// Starts `socketserver ARGS…` and waits for its `listening on` line.
    pub fn start(args: &[&str]) -> Running {
        Self::start_in(args, None)
    }

    /// The same, in the working directory `dir`.
    pub fn start_in(args: &[&str], dir: Option<&Path>) -> Running {
        let mut command = Command::new(BIN);
        command.args(args);
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        Self::spawn(command)
    }

    /// Starts `command` (a `socketserver` server, perhaps through a wrapper)
    /// and waits for its `listening on` line.
    pub fn spawn(mut command: Command) -> Running {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (lines, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let Some(address) = line.strip_prefix("listening on ") else {
            let err: Vec<String> = stderr.try_iter().collect();
            let _ = child.kill();
            panic!("first line: {line:?}; stderr: {err:?}");
        };
        let address = address.trim().to_owned();
        // Keep draining both pipes so the server never blocks on a full one.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Running {
            child,
            address,
            stderr,
            reaped: false,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> String {
        self.address.rsplit(':').next().unwrap().to_owned()
    }

    /// The address it listens on (an Internet server).
    pub fn socket_addr(&self) -> SocketAddr {
        self.address.parse().unwrap()
    }

    /// Its process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// The next log line, waiting at most `wait`.
    pub fn next_log_line(&self, wait: Duration) -> Option<String> {
        self.stderr.recv_timeout(wait).ok()
    }

    /// Waits for a log line containing `needle`, and returns it.
    pub fn log_line(&self, needle: &str) -> String {
        log_line(&self.stderr, needle, || CLIENT_TIMEOUT)
    }

    /// A number from its /proc/PID/status (`VmRSS:` and `VmHWM:` in KiB,
    /// `Threads:`).
    pub fn status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        super::status_field(&status, field)
    }

    /// Its resident memory now, KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status("VmRSS:")
    }

    /// Its peak resident memory so far (`VmHWM`), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status("VmHWM:")
    }

    /// Its OS threads now.
    pub fn threads(&self) -> u64 {
        self.status("Threads:")
    }

    /// Sends it `signal`.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    /// Waits for it to exit.
    pub fn wait(mut self) -> ExitStatus {
        let status = self.child.wait().unwrap();
        self.reaped = true;
        status
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        let _ = kill(self.pid(), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
