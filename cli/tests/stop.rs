//! A bounded stop in every mode: `socketserver echo` with clients that
//! connected, were answered once and then fell silent, gets SIGTERM — and
//! exits 0 within `--drain-timeout` and a little, each client seeing its
//! connection closed; forked children are gone with their parent. And an
//! idle forking server reaps its children without waiting for a request.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use util::{bounded, Running, CLIENT_TIMEOUT};

const LIMIT: Duration = Duration::from_secs(60);
const DRAIN: Duration = Duration::from_secs(1);
/// What "a little" may be beyond the drain: the library's STOP_GRACE (1 s)
/// at most, process exit, and a loaded machine's scheduling.
const SLACK: Duration = Duration::from_secs(4);

/// The pids of `pid`'s children (all its threads'), from /proc.
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        found.extend(list.split_whitespace().map(|p| p.parse::<u32>().unwrap()));
    }
    found
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|s| !s.starts_with(" Z"))
    })
}

fn stop_with_silent_clients(mode: &str) {
    let drain = format!("{}", DRAIN.as_secs_f64());
    let server = Running::start(&util::echo_args(mode, &drain));
    let address = server.socket_addr();
    // A synchronous server takes one client at a time: the others wait in
    // the listen backlog, connected and unanswered.
    let answered = if mode == "sync" { 1 } else { 3 };
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut client = TcpStream::connect(address).unwrap();
        client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        if i < answered {
            client.write_all(b"hi\n").unwrap();
            let mut echo = [0; 3];
            client.read_exact(&mut echo).unwrap();
            assert_eq!(&echo, b"hi\n");
        }
        clients.push(client); // and silent from now on
    }
    let forked = children(server.pid().as_raw() as u32);
    if mode == "forking" {
        assert_eq!(forked.len(), answered, "one child per client: {forked:?}");
    }
    let start = Instant::now();
    server.signal(Signal::SIGTERM);
    let status = server.wait();
    let took = start.elapsed();
    assert!(status.success(), "{mode}: exit status {status:?}");
    assert!(
        took < DRAIN + SLACK,
        "{mode}: exited {took:?} after SIGTERM, drain {DRAIN:?}"
    );
    assert!(
        took >= DRAIN.mul_f64(0.9),
        "{mode}: {took:?}: requests in flight were given their drain time"
    );
    for (i, mut client) in clients.into_iter().enumerate().take(answered) {
        let mut rest = Vec::new();
        let end = client.read_to_end(&mut rest);
        assert!(
            matches!(end, Ok(0))
                || end.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{mode}: client {i} was not closed"
        );
    }
    for child in forked {
        assert!(!alive(child), "{mode}: child {child} outlived its parent");
    }
    println!("{mode}: SIGTERM to exit with 3 silent clients: {took:?} (drain {DRAIN:?})");
}

#[test]
fn sigterm_with_silent_clients_stops_every_mode_within_the_drain() {
    bounded(LIMIT, || {
        for mode in ["sync", "threading", "pool", "coroutine", "forking"] {
            stop_with_silent_clients(mode);
        }
    });
}

/// Children that have exited are reaped while the server is idle: no
/// zombie waits for the next request.
#[test]
fn idle_forking_server_reaps_its_children() {
    bounded(LIMIT, || {
        let server = Running::start(&["echo", "--bind", "127.0.0.1:0", "--mode", "forking"]);
        let pid = server.pid().as_raw() as u32;
        for _ in 0..3 {
            let mut client = TcpStream::connect(server.socket_addr()).unwrap();
            client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            client.write_all(b"hi\n").unwrap();
            let mut echo = [0; 3];
            client.read_exact(&mut echo).unwrap();
        } // each client closes: its child exits
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = children(pid);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "children not reaped while idle: {left:?} (zombies: {:?})",
                left.iter().filter(|&&c| !alive(c)).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(server.terminate().success());
    });
}
