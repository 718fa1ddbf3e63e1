//! The PROXY protocol, v1 and v2: the handler sees the client's address
//! from the header; the payload after it arrives intact; a missing, late or
//! malformed header fails the request before the handler runs.
#![cfg(feature = "proxy")]

mod util;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use socketserver::{BaseServer, ProxyProtocol, StreamRequest, TCPServer};
use util::{bounded, Recorder};

const LIMIT: Duration = Duration::from_secs(60);

/// A server that replies "ADDRESS LINE" and records what it saw.
fn whoami(timeout: Duration) -> (Arc<Recorder<TCPServer>>, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let mut server = TCPServer::new("127.0.0.1:0", move |r: &mut StreamRequest<'_>| {
        let mut line = String::new();
        io::BufRead::read_line(&mut r.rfile, &mut line)?;
        let reply = format!("{} {}", r.client_address, line);
        record.lock().push(reply.clone());
        r.wfile.write_all(reply.as_bytes())
    })
    .unwrap();
    server.proxy_protocol = ProxyProtocol::Required { timeout };
    (Arc::new(Recorder::new(server)), seen)
}

/// Sends `parts` as separate writes and returns the whole reply.
fn exchange(address: SocketAddr, parts: &[&[u8]]) -> Vec<u8> {
    let stream = util::client(address);
    stream.set_nodelay(true).unwrap();
    for part in parts {
        (&stream).write_all(part).unwrap();
    }
    util::read_to_end(&stream)
}

fn v2_header(source: [u8; 4], port: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&source);
    header.extend_from_slice(&[127, 0, 0, 1]);
    header.extend_from_slice(&port.to_be_bytes());
    header.extend_from_slice(&443u16.to_be_bytes());
    header
}

#[test]
fn v1_and_v2_give_the_clients_address_and_keep_the_payload() {
    bounded(LIMIT, || {
        let (server, _) = whoami(Duration::from_secs(5));
        let address = server.server_address();
        let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
            // header and payload in one write: not one payload byte lost
            (
                vec![b"PROXY TCP4 192.0.2.1 127.0.0.1 56324 443\r\nhello\n".to_vec()],
                "192.0.2.1:56324 hello\n",
            ),
            // the header split over writes, the CR and LF apart
            (
                vec![
                    b"PROXY TCP6 2001:db8::1 ::1 4000 443\r".to_vec(),
                    b"\nsplit\n".to_vec(),
                ],
                "[2001:db8::1]:4000 split\n",
            ),
            (
                vec![[v2_header([192, 0, 2, 7], 8080), b"binary\n".to_vec()].concat()],
                "192.0.2.7:8080 binary\n",
            ),
            // a health check (UNKNOWN) keeps the peer's address
            (vec![b"PROXY UNKNOWN\r\nping\n".to_vec()], "127.0.0.1:"),
        ];
        for (parts, expected) in cases {
            let client = std::thread::spawn(move || {
                let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                exchange(address, &parts)
            });
            server.handle_request().unwrap();
            let reply = String::from_utf8(client.join().unwrap()).unwrap();
            assert!(
                reply.starts_with(expected),
                "{reply:?} should start with {expected:?}"
            );
        }
        assert_eq!(server.count("handle_error"), 0, "{:?}", server.calls());
    });
}

#[test]
fn missing_malformed_or_late_headers_are_refused() {
    bounded(LIMIT, || {
        let (server, seen) = whoami(Duration::from_millis(300));
        let address = server.server_address();
        let cases: [(&[u8], &str); 3] = [
            (b"GET / HTTP/1.0\r\n\r\n", "no PROXY protocol header"),
            (b"PROXY TCP4 not.an.address 127.0.0.1 1 2\r\n", "malformed"),
            (b"", "within"), // says nothing: the timeout
        ];
        for (sent, error) in cases {
            let client = std::thread::spawn(move || exchange(address, &[sent]));
            server.handle_request().unwrap();
            assert!(client.join().unwrap().is_empty(), "closed without a reply");
            let errors = server.calls_to("handle_error");
            let last = errors.last().unwrap();
            assert!(last.contains(error), "{last} should mention {error:?}");
        }
        assert!(seen.lock().is_empty(), "the handler never ran");
        assert_eq!(server.count("handle_error"), 3);
    });
}

/// "ADDRESS LINE" back to the client.
fn whoami_handler(r: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut line = String::new();
    io::BufRead::read_line(&mut r.rfile, &mut line)?;
    r.wfile
        .write_all(format!("{} {}", r.client_address, line).as_bytes())
}

/// The header has a deadline, not a per-read timeout: clients trickling a
/// v1 header a byte every 300 ms (each byte well within the 1 s timeout)
/// hold a pool of 2 — and a sync server — only until the deadline; then a
/// balancer's real connection is served. (With a per-read timeout the
/// 45-byte trickle held them for 13 s.)
#[test]
fn a_trickled_header_is_cut_at_its_deadline() {
    bounded(LIMIT, || {
        let required = ProxyProtocol::Required {
            timeout: Duration::from_secs(1),
        };
        let mut pool =
            socketserver::ThreadPoolTCPServer::new("127.0.0.1:0", whoami_handler).unwrap();
        pool.mixin.workers = 2;
        pool.proxy_protocol = required;
        let mut sync = TCPServer::new("127.0.0.1:0", whoami_handler).unwrap();
        sync.proxy_protocol = required;
        let (pool, sync) = (Arc::new(pool), Arc::new(sync));
        let servings = [util::serve(&pool, None), util::serve(&sync, None)];
        let header = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n";
        util::trickled_phase_is_cut(
            "headers",
            [
                ("pool of 2", pool.server_address(), 2),
                ("sync", sync.server_address(), 1),
            ],
            || header.to_vec(),
            |address| {
                let reply = exchange(address, &[header, b"hello\n"]);
                assert_eq!(reply, b"203.0.113.7:5555 hello\n");
            },
        );
        pool.shutdown().unwrap();
        sync.shutdown().unwrap();
        for serving in servings {
            serving.join().unwrap().unwrap();
        }
    });
}
