//! Faults against a running `socketserver echo` process, threading and pool
//! alike: a client that resets mid-request, one that half-closes, ones that
//! connect and vanish, one that trickles a byte a second, one that sends
//! 1 GiB without reading, and UDP datagrams longer than `max_packet_size`.
//! After each, the server still serves a connection that was open all along
//! (the bystander) and a new one, its threads are back to what they were,
//! and its memory did not grow past a bound.
//!
//! The server is a separate process, so that its /proc/PID/status measures
//! the server alone. Run with `-- --nocapture` for the figures of
//! docs/reliability.md.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use socket2::SockRef;
use util::{bounded, payload, Running, CLIENT_TIMEOUT};

const LIMIT: Duration = Duration::from_secs(120);

/// The modes where a fault costs something different: a thread per
/// connection, a bounded pool that waits for readiness, or coroutines on
/// a thread per core.
const MODES: [&str; 3] = ["threading", "pool", "coroutine"];

/// How much the server's peak resident memory may exceed what it was
/// before the faults: its stacks and buffers for a handful of connections
/// are a few hundred KiB; buffering a client's data would be megabytes.
const RSS_BOUND_KIB: u64 = 16 * 1024;

/// A running echo server, the bystander connection, and what the server
/// looked like before the faults.
struct Fixture {
    server: Running,
    mode: &'static str,
    bystander: TcpStream,
    exchanges: u64,
    threads: u64,
    rss_kib: u64,
    faults: u64,
}

impl Fixture {
    fn start(mode: &'static str, extra: &[&str]) -> Fixture {
        let mut args = vec!["echo", "--bind", "127.0.0.1:0", "--mode", mode];
        args.extend_from_slice(extra);
        let server = Running::start(&args);
        let bystander = TcpStream::connect(server.socket_addr()).unwrap();
        bystander.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let mut fixture = Fixture {
            server,
            mode,
            bystander,
            exchanges: 0,
            threads: 0,
            rss_kib: 0,
            faults: 0,
        };
        fixture.bystander_exchange();
        // The pool's workers start with the first request: count after it.
        fixture.threads = fixture.server.threads();
        fixture.rss_kib = fixture.server.rss_kib();
        fixture
    }

    /// The connection open all along gets its echo, exactly.
    fn bystander_exchange(&mut self) {
        self.exchanges += 1;
        let message = payload(self.exchanges, 1000 + self.exchanges as usize);
        self.bystander.write_all(&message).unwrap();
        let mut reply = vec![0; message.len()];
        self.bystander.read_exact(&mut reply).unwrap();
        assert!(
            reply == message,
            "{}: the bystander's echo differs",
            self.mode
        );
    }

    /// A new connection gets its echo and a clean end.
    fn newcomer_exchange(&self) {
        let mut stream = TcpStream::connect(self.server.socket_addr()).unwrap();
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let message = payload(7, 5000);
        stream.write_all(&message).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        assert!(
            util::read_to_end(&stream) == message,
            "{}: a new client's echo differs",
            self.mode
        );
        let me = stream.local_addr().unwrap().to_string();
        self.server.log_line(&format!("{me} disconnected"));
    }

    /// After a fault: everyone else is still served, and the server's
    /// threads come back to what they were (the OS retires a finished
    /// thread a moment after its last log line: wait for it, bounded).
    fn still_serving(&mut self, fault: &str, faults: u64) {
        self.faults += faults;
        self.bystander_exchange();
        self.newcomer_exchange();
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        let mut threads = self.server.threads();
        while threads != self.threads && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            threads = self.server.threads();
        }
        assert_eq!(
            threads, self.threads,
            "{}: after {fault}, the server's threads are back to what they were",
            self.mode
        );
    }

    /// The server's peak memory stayed within the bound; SIGTERM ends it
    /// with status 0.
    fn finish(self, fault: &str) {
        let peak = self.server.peak_rss_kib();
        let grown = peak.saturating_sub(self.rss_kib);
        eprintln!(
            "{fault}, {}: {} faults survived; server RSS {} KiB before, peak {peak} KiB (+{grown} \
             KiB), {} KiB after; threads {} before, {} after; bystander {} exchanges",
            self.mode,
            self.faults,
            self.rss_kib,
            self.server.rss_kib(),
            self.threads,
            self.server.threads(),
            self.exchanges
        );
        assert!(
            grown < RSS_BOUND_KIB,
            "{}: {fault} grew the server's memory by {grown} KiB",
            self.mode
        );
        drop(self.bystander);
        assert!(
            self.server.terminate().success(),
            "{}: exit status",
            self.mode
        );
    }
}

/// Runs `fault` against a fresh echo server (with the `extra` arguments) in
/// each of MODES, then the fixture's last checks under the name `fault`,
/// within the time limit.
fn in_every_mode(
    extra: &'static [&'static str],
    fault: &'static str,
    run: impl Fn(&mut Fixture) + Send + 'static,
) {
    bounded(LIMIT, move || {
        for mode in MODES {
            let mut fixture = Fixture::start(mode, extra);
            run(&mut fixture);
            fixture.finish(fault);
        }
    });
}

/// Closes `stream` with a reset (SO_LINGER 0) instead of a FIN.
fn reset(stream: TcpStream) {
    SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

/// A client sends 1 MiB, reads none of the echo, and resets the connection
/// mid-request (SO_LINGER 0, close). The server's handler gets the reset as
/// an error, reports it (`handle_error`), and closes the connection.
#[test]
fn client_resets_mid_request() {
    in_every_mode(&[], "reset mid-request ×20", move |fixture| {
        let mode = fixture.mode;
        for round in 0..20 {
            let mut stream = TcpStream::connect(fixture.server.socket_addr()).unwrap();
            let me = stream.local_addr().unwrap().to_string();
            stream.write_all(&payload(round, 1 << 20)).unwrap();
            reset(stream);
            // The handler ran, then got the reset.
            fixture.server.log_line(&format!("{me} connected"));
            let line = fixture
                .server
                .log_line(&format!("processing of request from {me}:"));
            assert!(
                line.contains("reset") || line.contains("Broken pipe"),
                "{mode}: the reset is reported: {line}"
            );
            fixture.still_serving("a reset mid-request", 1);
        }
    });
}

/// A client sends 4 MiB and shuts its write side (half-close): the server
/// echoes all of it, then closes. A one-byte message the same.
#[test]
fn half_closed_client_gets_its_whole_reply() {
    in_every_mode(&[], "half-close (4 MiB, 1 B, 100 kB)", move |fixture| {
        let mode = fixture.mode;
        for (round, len) in [(1u64, 4 << 20), (2, 1), (3, 100_000)] {
            let stream = TcpStream::connect(fixture.server.socket_addr()).unwrap();
            stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            let message = payload(round, len);
            // Writing 4 MiB before reading any would fill both ways'
            // buffers: a thread writes while this one reads.
            let writer = {
                let (mut stream, message) = (stream.try_clone().unwrap(), message.clone());
                std::thread::spawn(move || {
                    stream.write_all(&message).unwrap();
                    stream.shutdown(Shutdown::Write).unwrap();
                })
            };
            let reply = util::read_to_end(&stream);
            writer.join().unwrap();
            assert_eq!(reply.len(), message.len(), "{mode}: the whole echo");
            assert!(reply == message, "{mode}: the echo is exact");
            fixture.still_serving("a half-close", 1);
        }
    });
}

/// 100 clients connect and close at once without a byte (FIN), 100 reset
/// at once, and 100 connect and stay silent. Each costs the threading
/// server a thread only until the handler sees the end; the silent ones
/// cost the pool no thread at all (they wait outside the workers).
#[test]
fn clients_that_connect_and_vanish() {
    in_every_mode(
        &[],
        "connect and vanish (100 FIN, 100 RST, 100 silent)",
        move |fixture| {
            let mode = fixture.mode;
            let address = fixture.server.socket_addr();
            let mut names = Vec::new();
            for _ in 0..100 {
                let stream = TcpStream::connect(address).unwrap();
                names.push(stream.local_addr().unwrap().to_string());
                drop(stream);
            }
            for _ in 0..100 {
                reset(TcpStream::connect(address).unwrap());
            }
            // Every FIN-closed connection was handled to its end.
            let mut waiting: std::collections::HashSet<String> =
                names.iter().map(|n| format!("{n} disconnected")).collect();
            while !waiting.is_empty() {
                let line = fixture.server.log_line("disconnected");
                waiting.retain(|n| !line.ends_with(n.as_str()));
            }
            fixture.still_serving("200 clients that vanished", 200);

            let silent: Vec<TcpStream> = (0..100)
                .map(|_| TcpStream::connect(address).unwrap())
                .collect();
            fixture.bystander_exchange();
            fixture.newcomer_exchange();
            let expected = match mode {
                // A thread each, blocked in read (until a --timeout, if
                // one is given, or the client's end).
                "threading" => fixture.threads + 100,
                // None: they wait outside the workers until readable (or
                // the pool's idle timeout, 60 s, closes them), or as
                // suspended coroutines.
                _ => fixture.threads,
            };
            let deadline = Instant::now() + CLIENT_TIMEOUT;
            while fixture.server.threads() != expected && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(
                fixture.server.threads(),
                expected,
                "{mode}: threads with 100 silent connections"
            );
            drop(silent);
            fixture.still_serving("100 silent clients", 100);
        },
    );
}

/// A client trickles one byte a second; the handler's timeout (0.8 s,
/// `--timeout`) cuts it off after the first silence, while the bystander,
/// which speaks every tenth of a second meanwhile, is not cut off.
#[test]
fn trickling_client_is_cut_off_by_the_timeout() {
    in_every_mode(
        &["--timeout", "0.8"],
        "trickle, 1 B/s against --timeout 0.8",
        move |fixture| {
            let mode = fixture.mode;
            let mut stream = TcpStream::connect(fixture.server.socket_addr()).unwrap();
            stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            let me = stream.local_addr().unwrap().to_string();
            let started = Instant::now();
            let mut sent = 0;
            let cut_off = loop {
                assert!(sent < 10, "{mode}: still connected after {sent} bytes");
                if stream.write_all(b"x").is_err() {
                    break started.elapsed();
                }
                sent += 1;
                let mut echo = [0; 1];
                match stream.read(&mut echo) {
                    Ok(1) => assert_eq!(&echo, b"x"),
                    Ok(_) | Err(_) => break started.elapsed(),
                }
                // The behaviour under test: a byte a second.
                for _ in 0..10 {
                    std::thread::sleep(Duration::from_millis(100));
                    fixture.bystander_exchange();
                }
            };
            let line = fixture
                .server
                .log_line(&format!("processing of request from {me}:"));
            assert!(line.contains("timed out"), "{mode}: {line}");
            eprintln!("trickle, {mode}: cut off after {sent} bytes, {cut_off:.1?}");
            // The first silence cuts it off: the second byte finds the
            // connection closed (a third, should the server's thread have
            // been too slow to wake in time on a loaded machine).
            assert!(
                sent <= 3,
                "{mode}: cut off after the first silence, not {sent} bytes"
            );
            fixture.still_serving("a trickling client", 1);
        },
    );
}

/// The most a client can push into an echo server that never gets to write
/// back: the kernel's socket buffers, both ways (tcp_wmem and tcp_rmem
/// maxima for each end), and the handler's 8 KiB.
fn kernel_buffers() -> u64 {
    let max = |name: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
            .unwrap()
            .split_whitespace()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap()
    };
    2 * (max("tcp_wmem") + max("tcp_rmem")) + 8 * 1024
}

/// A client tries to send 1 GiB and reads none of the echo. The echo
/// handler writes each chunk back before reading the next, so once the
/// client's receive buffer and the server's send buffer are full, the
/// server blocks in write and stops reading: the client's sends stall after
/// what the kernel buffers hold, and the server's memory stays flat.
#[test]
fn client_sending_1gib_without_reading_is_held_back() {
    const GIB: u64 = 1 << 30;
    let bound = kernel_buffers();
    in_every_mode(&[], "1 GiB without reading", move |fixture| {
        let mode = fixture.mode;
        let mut stream = TcpStream::connect(fixture.server.socket_addr()).unwrap();
        let me = stream.local_addr().unwrap().to_string();
        // A write that makes no progress for a second is a stall.
        stream
            .set_write_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let chunk = payload(1, 64 * 1024);
        let started = Instant::now();
        let mut pushed: u64 = 0;
        while pushed < GIB {
            match stream.write(&chunk) {
                Ok(n) => pushed += n as u64,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => panic!("{mode}: {e}"),
            }
        }
        let stalled = started.elapsed();
        let peak = fixture.server.peak_rss_kib();
        let grown = peak.saturating_sub(fixture.rss_kib);
        eprintln!(
            "1 GiB without reading, {mode}: stalled after {pushed} bytes ({:.1} MiB) in \
             {stalled:.1?} (kernel buffers at most {bound} bytes); server RSS +{grown} KiB",
            pushed as f64 / 1048576.0
        );
        assert!(
            pushed < bound,
            "{mode}: the client pushed {pushed} bytes, more than the kernel buffers \
             ({bound}): the server buffers what it cannot send"
        );
        assert!(
            grown < RSS_BOUND_KIB,
            "{mode}: the server grew by {grown} KiB"
        );
        // Still stalled: the server is blocked in write, not reading.
        assert!(
            matches!(stream.write(&chunk), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
            "{mode}: the stall lasts"
        );
        fixture.bystander_exchange();
        // Closing with unread data resets: the blocked write fails.
        drop(stream);
        fixture
            .server
            .log_line(&format!("processing of request from {me}:"));
        fixture.still_serving("a client that sends without reading", 1);
    });
}

/// Datagrams of 65,507 bytes (the most UDP carries over IPv4) to a UDP
/// echo server whose `max_packet_size` is 8192: each is truncated to 8192
/// bytes (Python's `recvfrom(max_packet_size)`), and the server goes on.
#[test]
fn oversize_datagrams_are_truncated_and_the_server_goes_on() {
    bounded(LIMIT, || {
        for mode in ["sync", "threading", "pool"] {
            let server =
                Running::start(&["echo", "--bind", "127.0.0.1:0", "--udp", "--mode", mode]);
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            client.connect(server.socket_addr()).unwrap();
            let exchange = |message: &[u8]| -> Vec<u8> {
                client.send(message).unwrap();
                let mut buf = vec![0; 65536];
                let n = client.recv(&mut buf).unwrap();
                buf.truncate(n);
                buf
            };
            assert_eq!(exchange(b"before"), b"before");
            let rss = server.rss_kib();
            for round in 0..100 {
                let big = payload(round, 65_507);
                let reply = exchange(&big);
                assert_eq!(reply.len(), 8192, "{mode}: truncated to max_packet_size");
                assert!(reply == big[..8192], "{mode}: the first 8192 bytes");
            }
            assert_eq!(exchange(b"after"), b"after", "{mode}: still serving");
            let grown = server.peak_rss_kib().saturating_sub(rss);
            eprintln!("oversize datagrams, {mode}: 100 × 65,507 bytes, each echoed as 8,192; server RSS +{grown} KiB");
            assert!(grown < RSS_BOUND_KIB, "{mode}: grew by {grown} KiB");
            assert!(server.terminate().success());
        }
    });
}
