//! Signals to a `socketserver echo` process under load. SIGTERM or SIGINT:
//! the server stops accepting, lets every request in flight finish, and
//! exits with status 0; no client gets a truncated reply (each gets its
//! whole echo, or the connection closes before any byte of it). A second
//! signal while a request is still in flight forces the exit: status 130.
//!
//! Run with `-- --nocapture` for the figures of docs/reliability.md.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;
use util::{bounded, Running, CLIENT_TIMEOUT};

const LIMIT: Duration = Duration::from_secs(60);
/// Client threads of the load.
const CLIENTS: usize = 16;
/// Each request: this many bytes, echoed back in several chunks (the
/// server's reads are 8 KiB), so that a reply cut short would show.
const MESSAGE: usize = 64 * 1024;
/// The signal comes once every client has made this many requests.
const WARM: u64 = 20;

/// How one request ended, as its client saw it.
#[derive(Debug, Default)]
struct Outcomes {
    /// The whole echo, exact.
    answered: u64,
    /// Closed (EOF or reset) before any byte of the reply.
    closed_before_reply: u64,
    /// Refused: the server no longer listened.
    refused: u64,
    /// Some of the reply, then the end: what must never happen.
    truncated: u64,
    /// A reply that differs from the request.
    corrupt: u64,
}

/// One client thread: requests on fresh connections, one after another,
/// until the server refuses. Says when it has made `WARM` of them.
fn client(address: SocketAddr, seed: u64, warm: mpsc::Sender<()>) -> Outcomes {
    let mut outcomes = Outcomes::default();
    let mut n = 0u64;
    loop {
        n += 1;
        if n == WARM {
            let _ = warm.send(());
        }
        let mut stream = match TcpStream::connect(address) {
            Ok(stream) => stream,
            // A reset during the handshake, as the listener closes, is a
            // refusal too (seen once in a full suite run).
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
                ) =>
            {
                outcomes.refused += 1;
                return outcomes;
            }
            Err(e) => panic!("connect: {e}"),
        };
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let message = util::payload(seed * 1_000_000 + n, MESSAGE);
        // A write may fail when the server closed first: nothing was
        // answered, so nothing can be truncated.
        let wrote = stream.write_all(&message);
        let mut reply = Vec::with_capacity(MESSAGE);
        let read = (&stream).take(MESSAGE as u64).read_to_end(&mut reply);
        match (wrote, read) {
            (Ok(()), Ok(_)) if reply.len() == MESSAGE => {
                if reply == message {
                    outcomes.answered += 1;
                } else {
                    outcomes.corrupt += 1;
                }
            }
            _ if reply.is_empty() => outcomes.closed_before_reply += 1,
            (_, Err(e)) if e.kind() == ErrorKind::WouldBlock => {
                panic!("no reply within {CLIENT_TIMEOUT:?}")
            }
            _ => outcomes.truncated += 1,
        }
    }
}

/// Load, one request kept in flight by hand, `signal`: the request in
/// flight still gets its whole echo after the signal, the process exits 0,
/// and no reply was truncated.
fn graceful(mode: &str, signal: Signal) {
    let server = Running::start(&["echo", "--bind", "127.0.0.1:0", "--mode", mode]);
    let address = server.socket_addr();

    // The request in flight: half sent, half echoed, when the signal comes.
    let mut in_flight = TcpStream::connect(address).unwrap();
    in_flight.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let message = util::payload(u64::MAX, MESSAGE);
    let (first, second) = message.split_at(MESSAGE / 2);
    in_flight.write_all(first).unwrap();
    let mut reply = vec![0; MESSAGE];
    in_flight.read_exact(&mut reply[..first.len()]).unwrap();

    let (warm, warmed) = mpsc::channel();
    let clients: Vec<_> = (0..CLIENTS as u64)
        .map(|seed| {
            let warm = warm.clone();
            thread::spawn(move || client(address, seed, warm))
        })
        .collect();
    for _ in 0..CLIENTS {
        warmed.recv_timeout(CLIENT_TIMEOUT).unwrap();
    }
    server.signal(signal);
    server.log_line("shutting down");

    // After the signal, the request in flight is finished, not cut.
    in_flight.write_all(second).unwrap();
    in_flight.read_exact(&mut reply[first.len()..]).unwrap();
    assert!(reply == message, "{mode}: the request in flight, whole");
    drop(in_flight);

    let status = server.wait();
    let mut total = Outcomes::default();
    for client in clients {
        let o = client.join().unwrap();
        total.answered += o.answered;
        total.closed_before_reply += o.closed_before_reply;
        total.refused += o.refused;
        total.truncated += o.truncated;
        total.corrupt += o.corrupt;
    }
    eprintln!(
        "{signal:?} to echo --mode {mode} under load ({CLIENTS} clients, {MESSAGE}-byte \
         requests): {status}; {total:?}"
    );
    assert_eq!(status.code(), Some(0), "{mode}, {signal:?}: exit status");
    assert_eq!(total.truncated, 0, "{mode}, {signal:?}: truncated replies");
    assert_eq!(total.corrupt, 0, "{mode}, {signal:?}: corrupt replies");
    assert!(
        total.answered >= WARM * CLIENTS as u64 - CLIENTS as u64,
        "{mode}, {signal:?}: the load ran"
    );
    assert_eq!(
        total.refused, CLIENTS as u64,
        "{mode}, {signal:?}: every client ended on a refusal"
    );
}

#[test]
fn sigterm_under_load_exits_0_with_no_reply_truncated() {
    bounded(LIMIT, || {
        for mode in ["threading", "pool", "coroutine"] {
            graceful(mode, Signal::SIGTERM);
        }
    });
}

#[test]
fn sigint_under_load_exits_0_with_no_reply_truncated() {
    bounded(LIMIT, || {
        for mode in ["threading", "pool", "coroutine"] {
            graceful(mode, Signal::SIGINT);
        }
    });
}

/// A request in flight keeps the server running after the first signal
/// (graceful shutdown waits for it); a second signal forces the exit, with
/// status 130 (128 + SIGINT, as shells report Ctrl-C).
#[test]
fn second_signal_while_a_request_is_in_flight_forces_exit_130() {
    bounded(LIMIT, || {
        for (first, second) in [
            (Signal::SIGINT, Signal::SIGINT),
            (Signal::SIGTERM, Signal::SIGTERM),
            (Signal::SIGTERM, Signal::SIGINT),
        ] {
            let server = Running::start(&["echo", "--bind", "127.0.0.1:0"]);
            let mut stream = TcpStream::connect(server.socket_addr()).unwrap();
            stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            let mut echo = [0; 5];
            stream.write_all(b"hello").unwrap();
            stream.read_exact(&mut echo).unwrap();

            server.signal(first);
            server.log_line("shutting down");
            // Still running, still serving the request in flight.
            stream.write_all(b"again").unwrap();
            stream.read_exact(&mut echo).unwrap();
            assert_eq!(&echo, b"again");

            server.signal(second);
            server.log_line("forced exit");
            let status = server.wait();
            eprintln!("{first:?}, then {second:?} with a request in flight: {status}");
            assert_eq!(status.code(), Some(130), "{first:?} then {second:?}");
            // The connection went with the process.
            let mut rest = Vec::new();
            let end = stream.read_to_end(&mut rest);
            assert!(
                rest.is_empty()
                    && match &end {
                        Ok(_) => true,
                        Err(e) => e.kind() == ErrorKind::ConnectionReset,
                    },
                "the connection ends with the process, nothing more arrives: {end:?}"
            );
        }
    });
}
