//! The production limits from the command line, in every stream mode:
//! `--max-connections N` with N+k silent clients closes exactly k and
//! holds the rest, and serves a new client once one leaves;
//! `--max-per-ip` caps one loopback source address while another is
//! served; `--request-timeout` cuts a client that trickles a byte well
//! within each read's `--timeout`. SIGUSR1 logs the counters, checked
//! against what each test did.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use socket2::{Domain, Socket, Type};
use util::{bounded, Running, CLIENT_TIMEOUT};

const LIMIT: Duration = Duration::from_secs(90);
const MODES: [&str; 4] = ["threading", "pool", "coroutine", "forking"];

/// A client from loopback address `source` (127.0.0.x: every one is local).
fn connect_from(source: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect(&server.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream
}

/// Whether the server serves `client`: its line comes back (held), or the
/// connection is closed at once (refused: end-of-file or a reset).
fn served(client: &mut TcpStream) -> bool {
    if client.write_all(b"hi\n").is_err() {
        return false;
    }
    let mut echo = [0; 3];
    match client.read_exact(&mut echo) {
        Ok(()) => {
            assert_eq!(&echo, b"hi\n");
            true
        }
        Err(err) => {
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ),
                "refused means closed at once, not {err}"
            );
            false
        }
    }
}

/// The counters the server logs on SIGUSR1.
fn stats(server: &Running) -> String {
    server.signal(Signal::SIGUSR1);
    server.log_line("stats: ")
}

/// Tries new clients from `source` until one is served (others leaving
/// frees room as their handlers end); how many were refused meanwhile.
fn refused_until_served(source: [u8; 4], address: SocketAddr) -> (TcpStream, u64) {
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut refused = 0;
    loop {
        let mut client = connect_from(source, address);
        if served(&mut client) {
            return (client, refused);
        }
        refused += 1;
        assert!(Instant::now() < deadline, "room never came back");
    }
}

#[test]
fn max_connections_refuses_exactly_the_surplus_and_serves_again() {
    bounded(LIMIT, || {
        for mode in MODES {
            let server = Running::start(&[
                "echo",
                "--bind",
                "127.0.0.1:0",
                "--mode",
                mode,
                "--max-connections",
                "3",
            ]);
            let address = server.socket_addr();
            // One at a time, each checked before the next connects: the
            // order of accepting is the order of connecting.
            let mut held = Vec::new();
            let mut refused = 0;
            for _ in 0..5 {
                let mut client = connect_from([127, 0, 0, 1], address);
                if served(&mut client) {
                    held.push(client);
                } else {
                    refused += 1;
                }
            }
            assert_eq!((held.len(), refused), (3, 2), "{mode}: 3 held, 2 closed");
            // The held ones are still served.
            for client in &mut held {
                assert!(served(client), "{mode}: a held client lost its connection");
            }
            drop(held.remove(0));
            let (newcomer, waited) = refused_until_served([127, 0, 0, 1], address);
            held.push(newcomer);
            let line = stats(&server);
            let accepted = 5 + waited + 1;
            let expected = format!(
                "open 3, accepted {accepted}, refused {r} (max_connections {r}, max_per_ip 0, \
                 verify 0, overload 0)",
                r = 2 + waited
            );
            eprintln!("{mode}: {line}");
            assert!(
                line.contains(&expected),
                "{mode}: {line}\nexpected {expected}"
            );
            drop(held);
            assert!(server.terminate().success());
        }
    });
}

#[test]
fn max_per_ip_caps_one_address_while_another_is_served() {
    bounded(LIMIT, || {
        for mode in MODES {
            let server = Running::start(&[
                "echo",
                "--bind",
                "127.0.0.1:0",
                "--mode",
                mode,
                "--max-per-ip",
                "2",
            ]);
            let address = server.socket_addr();
            let mut capped = Vec::new();
            for _ in 0..3 {
                let mut client = connect_from([127, 0, 0, 2], address);
                capped.push((served(&mut client), client));
            }
            let outcomes: Vec<bool> = capped.iter().map(|(served, _)| *served).collect();
            assert_eq!(
                outcomes,
                [true, true, false],
                "{mode}: 127.0.0.2 capped at 2"
            );
            let mut others: Vec<TcpStream> = (0..2)
                .map(|_| connect_from([127, 0, 0, 3], address))
                .collect();
            for client in &mut others {
                assert!(served(client), "{mode}: 127.0.0.3 is served meanwhile");
            }
            let line = stats(&server);
            eprintln!("{mode}: {line}");
            assert!(
                line.contains("open 4, accepted 5, refused 1 (max_connections 0, max_per_ip 1,"),
                "{mode}: {line}"
            );
            drop((capped, others));
            assert!(server.terminate().success());
        }
    });
}

#[test]
fn request_timeout_cuts_a_client_trickling_within_each_read_timeout() {
    bounded(LIMIT, || {
        for mode in ["sync", "threading", "pool", "coroutine", "forking"] {
            let server = Running::start(&[
                "echo",
                "--bind",
                "127.0.0.1:0",
                "--mode",
                mode,
                "--timeout",
                "1",
                "--request-timeout",
                "1",
            ]);
            let mut client = connect_from([127, 0, 0, 1], server.socket_addr());
            let started = Instant::now();
            // A byte every 300 ms, each echoed: no read ever waits 1 s.
            let mut echoed = 0;
            let cut_after = loop {
                let mut byte = [0];
                let alive =
                    client.write_all(b"x").is_ok() && matches!(client.read(&mut byte), Ok(1));
                if !alive {
                    break started.elapsed();
                }
                echoed += 1;
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "{mode}: never cut"
                );
                std::thread::sleep(Duration::from_millis(300)); // the trickle's pace: the input
            };
            eprintln!("{mode}: trickling client cut after {cut_after:?} ({echoed} bytes echoed)");
            assert!(echoed >= 2, "{mode}: served before the deadline");
            assert!(
                cut_after < Duration::from_secs(4),
                "{mode}: cut at the 1 s deadline, not later: {cut_after:?}"
            );
            server.log_line("ran past its request_timeout of 1s");
            if mode != "forking" {
                // A forked child's watchdog counts in the child.
                let line = stats(&server);
                assert!(line.contains("timed out 1"), "{mode}: {line}");
            }
            assert!(server.terminate().success());
        }
    });
}
