//! Behind a real HAProxy (Debian's package; .ci/run installs it): two
//! `socketserver whoami --proxy-protocol` backends behind one haproxy with
//! `send-proxy-v2`, all on loopback. Both backends must take traffic, and
//! each must see the client's real address, not haproxy's.
//!
//! Ignored by a plain `cargo test`; .ci/run installs haproxy and runs it:
//! `cargo test --test haproxy -- --ignored`. Without haproxy the test says
//! so and passes, except in CI (CI=true), where a missing haproxy is a
//! failure.

mod util;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use util::{bounded, CLIENT_TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_socketserver");

fn haproxy() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("haproxy"))
        .find(|candidate| candidate.is_file())
}

/// A child process killed and reaped when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts whoami backend `n`, whose log lines go to `log` tagged with `n`.
fn backend(n: usize, log: &mpsc::Sender<(usize, String)>) -> (Process, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["whoami", "--bind", "127.0.0.1:0", "--proxy-protocol"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    let (lines, stderr) = (log.clone(), child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send((n, line));
        }
    });
    (Process(child), address)
}

/// A port nobody listens on now (haproxy binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
#[ignore = "needs haproxy installed; .ci/run installs it and runs this test with --ignored"]
fn both_backends_see_the_real_client_behind_haproxy() {
    let Some(haproxy) = haproxy() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must install haproxy (.ci/run does)"
        );
        eprintln!("skipped: haproxy is not installed (apt-get install haproxy to run this test)");
        return;
    };
    bounded(Duration::from_secs(60), move || {
        let (log, lines) = mpsc::channel();
        let (a, a_address) = backend(0, &log);
        let (b, b_address) = backend(1, &log);
        let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = format!(
            "global\n    maxconn 256\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 10s\n    timeout server 10s\n\
             frontend front\n    bind {front}\n    default_backend back\n\
             backend back\n    balance roundrobin\n\
             \x20   server a {a_address} send-proxy-v2\n\
             \x20   server b {b_address} send-proxy-v2\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("haproxy.cfg");
        std::fs::write(&config_path, &config).unwrap();
        let proxy = Process(
            Command::new(&haproxy)
                .args(["-db", "-f"])
                .arg(&config_path)
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );

        // haproxy prints nothing when ready: wait until its port answers.
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(front).is_err() {
            assert!(
                Instant::now() < deadline,
                "haproxy did not start listening on {front}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }

        // Every client (the probe above aside) is answered with its own address.
        const CLIENTS: usize = 20;
        for _ in 0..CLIENTS {
            let client = TcpStream::connect(front).unwrap();
            client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            let me = client.local_addr().unwrap();
            let seen = util::read_to_end(&client);
            assert_eq!(
                String::from_utf8(seen).unwrap(),
                format!("{me}\n"),
                "the backend saw haproxy, not the client"
            );
        }

        // Which backend answered whom: their logs (each logs before replying).
        let mut per_backend = [0, 0];
        let mut total = 0;
        while total < CLIENTS {
            let (n, line) = lines
                .recv_timeout(CLIENT_TIMEOUT)
                .expect("a backend's log line");
            if line.contains("whoami: 127.0.0.1:") {
                per_backend[n] += 1;
                total += 1;
            }
        }
        eprintln!(
            "haproxy spread {total} connections: {} / {}",
            per_backend[0], per_backend[1]
        );
        assert!(per_backend[0] > 0 && per_backend[1] > 0, "{per_backend:?}");
        drop((proxy, a, b));
    });
}
