//! Out of descriptors: with RLIMIT_NOFILE lowered until accept fails with
//! EMFILE, the server neither exits nor spins, logs once per burst, and
//! serves again as soon as descriptors free up. Alone in its file: it lowers
//! the process's descriptor limit.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use parking_lot::{Condvar, Mutex};
use socketserver::{BaseServer, ThreadingTCPServer};
use util::{bounded, line_echo, open_fds, serve, tcp_exchange, TEST_STR};

/// A logger that keeps every record, so the test can wait for one and count
/// them.
struct Capture {
    records: Mutex<Vec<String>>,
    arrived: Condvar,
}

static CAPTURE: Capture = Capture {
    records: Mutex::new(Vec::new()),
    arrived: Condvar::new(),
};

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.records
                .lock()
                .push(format!("{} {}", record.level(), record.args()));
            self.arrived.notify_all();
        }
    }
    fn flush(&self) {}
}

impl Capture {
    fn count(&self, needle: &str) -> usize {
        self.records
            .lock()
            .iter()
            .filter(|r| r.contains(needle))
            .count()
    }

    fn wait_for(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut records = self.records.lock();
        while !records.iter().any(|r| r.contains(needle)) {
            assert!(
                !self.arrived.wait_until(&mut records, deadline).timed_out(),
                "no log record with {needle:?}"
            );
        }
    }
}

/// CPU time (user + system) this process has used, from /proc/self/stat,
/// opened beforehand: there is no descriptor to spare when it is read.
fn cpu_time(stat: &std::fs::File) -> Duration {
    use std::os::unix::fs::FileExt;
    let mut buf = [0; 4096];
    let n = stat.read_at(&mut buf, 0).unwrap();
    let stat = std::str::from_utf8(&buf[..n]).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Holds 100 client connections in a separate process (its descriptors are
/// its own), opening them on "go" and closing them on "close".
const CLIENTS: &str = r#"
import socket, sys
port = int(sys.argv[1])
sys.stdin.readline()
socks = []
for _ in range(100):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    socks.append(s)
print("connected", flush=True)
sys.stdin.readline()
for s in socks:
    s.close()
print("closed", flush=True)
sys.stdin.readline()
"#;

#[test]
fn accept_survives_fd_exhaustion() {
    if !util::require_tool("python3") {
        return;
    }
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    bounded(Duration::from_secs(60), || {
        let server = Arc::new(ThreadingTCPServer::new("127.0.0.1:0", line_echo).unwrap());
        let serving = serve(&server, None);
        let mut clients = Command::new("python3")
            .args(["-c", CLIENTS, &server.server_address().port().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed for this test");
        let mut to_clients = clients.stdin.take().unwrap();
        let mut from_clients = BufReader::new(clients.stdout.take().unwrap());
        let mut line = String::new();

        let stat = std::fs::File::open("/proc/self/stat").unwrap();
        // Room for 16 more descriptors: the server accepts a few of the 100
        // connections, then accept fails with EMFILE.
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, open_fds() as u64 + 16, hard).unwrap();
        writeln!(to_clients, "go").unwrap();
        from_clients.read_line(&mut line).unwrap();
        assert_eq!(line, "connected\n");
        CAPTURE.wait_for("backing off", Duration::from_secs(10));

        let (cpu, wall) = (cpu_time(&stat), Instant::now());
        std::thread::sleep(Duration::from_secs(2)); // the exhausted window being measured
        let share = (cpu_time(&stat) - cpu).as_secs_f64() / wall.elapsed().as_secs_f64();
        eprintln!(
            "CPU while out of descriptors: {:.1}% of a core",
            share * 100.0
        );
        assert!(
            share < 0.10,
            "the accept loop spins: {:.1}% of a core",
            share * 100.0
        );
        assert_eq!(
            CAPTURE.count("get_request failed"),
            1,
            "logged once per burst"
        );

        // Free the descriptors: the clients go, their handlers end.
        let freed = Instant::now();
        writeln!(to_clients, "close").unwrap();
        line.clear();
        from_clients.read_line(&mut line).unwrap();
        CAPTURE.wait_for("accepting again", Duration::from_secs(10));
        eprintln!(
            "accepting again {:?} after the clients closed",
            freed.elapsed()
        );
        // Recovered under the lowered limit (the log line above). The server
        // is still taking the closed connections left in its backlog, so the
        // test's own client gets its descriptor back first.
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
        assert_eq!(
            tcp_exchange(server.server_address(), TEST_STR),
            TEST_STR,
            "serves again"
        );
        writeln!(to_clients, "exit").unwrap();
        clients.wait().unwrap();
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}
