//! TLS (feature `tls`): a rustls client and Python's ssl module against a
//! TLS echo server with a self-signed certificate; a client that stalls in
//! its handshake does not stall anyone else (the handshake runs on the
//! request's own thread, not the accept loop's); a bad handshake is an error;
//! `request_timeout` cuts a client silent after its handshake.
#![cfg(feature = "tls")]

mod util;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
#[cfg(feature = "coroutine")]
use socketserver::CoroutineMixIn;
use socketserver::{tls, BaseServer, MixIn, Server, Tcp, ThreadingTCPServer};
use util::{bounded, certificate, line_echo, python, serve, Certificate, CLIENT_TIMEOUT, TEST_STR};

const LIMIT: Duration = Duration::from_secs(60);

fn tls_server(certificate: &Certificate) -> Arc<ThreadingTCPServer> {
    tls_server_in(certificate)
}

fn tls_server_in<M: MixIn + Default>(certificate: &Certificate) -> Arc<Server<Tcp, M>> {
    let mut server = Server::<Tcp, M>::new("127.0.0.1:0", line_echo).unwrap();
    server.tls = Some(tls::server_config_from_pem(&certificate.chain, &certificate.key).unwrap());
    Arc::new(server)
}

/// A rustls client connected to `address`, trusting `root`.
fn rustls_client(
    address: SocketAddr,
    root: &CertificateDer<'static>,
) -> io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let session =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let socket = TcpStream::connect(address)?;
    socket.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    Ok(rustls::StreamOwned::new(session, socket))
}

/// A rustls client exchange: send a line, read the echo to the end.
fn rustls_exchange(
    address: SocketAddr,
    root: &CertificateDer<'static>,
    message: &[u8],
) -> io::Result<Vec<u8>> {
    let mut stream = rustls_client(address, root)?;
    stream.write_all(message)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    Ok(reply)
}

#[test]
fn rustls_client_gets_its_echo() {
    bounded(LIMIT, || {
        let certificate = certificate();
        let server = tls_server(&certificate);
        let serving = serve(&server, None);
        for _ in 0..3 {
            let reply =
                rustls_exchange(server.server_address(), certificate.cert.der(), TEST_STR).unwrap();
            assert_eq!(
                reply, TEST_STR,
                "and the session ended with close_notify (no UnexpectedEof)"
            );
        }
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

/// Under the coroutine mix-in the handshake and the session's reads and
/// writes suspend the request's coroutine, not its worker: with one worker, a
/// client that never starts its handshake does not keep others waiting.
#[test]
#[cfg(feature = "coroutine")]
fn coroutine_server_speaks_tls_and_a_stalled_handshake_stalls_nobody() {
    bounded(LIMIT, || {
        let certificate = certificate();
        let mut server = tls_server_in::<CoroutineMixIn>(&certificate);
        Arc::get_mut(&mut server).unwrap().mixin.workers = 1;
        let serving = serve(&server, None);
        let stalled = TcpStream::connect(server.server_address()).unwrap();
        for _ in 0..3 {
            let reply =
                rustls_exchange(server.server_address(), certificate.cert.der(), TEST_STR).unwrap();
            assert_eq!(reply, TEST_STR);
        }
        drop(stalled);
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

/// Python's ssl module, verifying the certificate as a browser would.
const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"hello world\n")
        print(s.recv(100).decode(), end="")
        print(s.version())
"#;

#[test]
fn python_ssl_client_gets_its_echo() {
    util::bounded_with("python3", LIMIT, || {
        let certificate = certificate();
        let server = tls_server(&certificate);
        let serving = serve(&server, None);
        let port = server.server_address().port().to_string();
        let out = python(PYTHON_CLIENT, &[&port, certificate.chain.to_str().unwrap()]);
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("hello world"));
        assert!(lines.next().unwrap().starts_with("TLS"), "{out}");
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

/// A client that connects and never starts its handshake holds only its
/// own thread: another client is served meanwhile (tiny_http does the
/// handshake on the accept thread, so there one slow client stalls all).
#[test]
fn a_stalled_handshake_stalls_nobody_else() {
    bounded(LIMIT, || {
        let certificate = certificate();
        let server = tls_server(&certificate);
        let serving = serve(&server, None);
        let stalled = TcpStream::connect(server.server_address()).unwrap();
        let reply = rustls_exchange(
            server.server_address(),
            certificate.cert.der(),
            b"behind a stalled one\n",
        )
        .unwrap();
        assert_eq!(reply, b"behind a stalled one\n");
        drop(stalled);
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

/// Plain text to a TLS server: the handshake fails, the request goes to
/// `handle_error`, the client gets no echo, and the server goes on.
#[test]
fn plain_text_to_a_tls_server_fails_the_handshake() {
    bounded(LIMIT, || {
        let certificate = certificate();
        let base = ThreadingTCPServer::new("127.0.0.1:0", line_echo).unwrap();
        let mut recorder = util::Recorder::new(base);
        recorder.base.tls =
            Some(tls::server_config_from_pem(&certificate.chain, &certificate.key).unwrap());
        let server = Arc::new(recorder);
        let serving = serve(&server, None);
        let plain = util::client(server.server_address());
        (&plain).write_all(TEST_STR).unwrap();
        let mut line = String::new();
        let _ = BufReader::new(&plain).read_line(&mut line);
        assert!(
            !line.contains("hello world"),
            "no echo in plain text: {line:?}"
        );
        let reply =
            rustls_exchange(server.server_address(), certificate.cert.der(), TEST_STR).unwrap();
        assert_eq!(reply, TEST_STR, "still serving");
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        server.server_close();
        let errors = server.calls_to("handle_error");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("TLS handshake failed"), "{errors:?}");
    });
}

#[test]
fn missing_or_bad_pem_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = tls::server_config_from_pem(&missing, &missing).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate").unwrap();
    let err = tls::server_config_from_pem(&empty, &empty).unwrap_err();
    assert!(err.to_string().contains("empty.pem"), "{err}");
}

/// The first flight of a real rustls client: a ClientHello's bytes.
fn client_hello() -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let mut session =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut hello = Vec::new();
    session.write_tls(&mut hello).unwrap();
    hello
}

/// The handshake has a deadline, not a per-read timeout: two clients
/// trickling a ClientHello a byte every 300 ms (each byte well within the
/// 1 s timeout) hold a pool of 2 — and a sync server — only until the
/// deadline; then a real client is served. (With a per-read timeout the
/// ~250-byte trickle held both workers for over a minute.)
#[test]
fn a_trickled_handshake_is_cut_at_its_deadline() {
    bounded(LIMIT, || {
        let certificate = certificate();
        let config = tls::server_config_from_pem(&certificate.chain, &certificate.key).unwrap();
        let mut pool = socketserver::ThreadPoolTCPServer::new(
            "127.0.0.1:0",
            util::TimedEcho(Duration::from_secs(1)),
        )
        .unwrap();
        pool.mixin.workers = 2;
        pool.tls = Some(Arc::clone(&config));
        let mut sync =
            socketserver::TCPServer::new("127.0.0.1:0", util::TimedEcho(Duration::from_secs(1)))
                .unwrap();
        sync.tls = Some(config);
        let (pool, sync) = (Arc::new(pool), Arc::new(sync));
        let servings = [serve(&pool, None), serve(&sync, None)];
        util::trickled_phase_is_cut(
            "handshakes",
            [
                ("pool of 2", pool.server_address(), 2),
                ("sync", sync.server_address(), 1),
            ],
            client_hello,
            |address| {
                let reply = rustls_exchange(address, certificate.cert.der(), TEST_STR).unwrap();
                assert_eq!(reply, TEST_STR);
            },
        );
        pool.shutdown().unwrap();
        sync.shutdown().unwrap();
        for serving in servings {
            serving.join().unwrap().unwrap();
        }
    });
}

/// A TLS connection cut without close_notify is not a clean end of file:
/// the handler's read fails with `UnexpectedEof`, saying so (an attacker who
/// cuts a connection must not make a partial request look whole).
#[test]
fn a_cut_without_close_notify_reads_as_truncated() {
    bounded(LIMIT, || {
        let certificate = certificate();
        let mut base = socketserver::TCPServer::new("127.0.0.1:0", line_echo).unwrap();
        base.tls = Some(tls::server_config_from_pem(&certificate.chain, &certificate.key).unwrap());
        let server = Arc::new(util::Recorder::new(base));
        let address = server.server_address();
        let client = std::thread::spawn({
            let root = certificate.cert.der().clone();
            move || {
                let mut stream = rustls_client(address, &root).unwrap();
                // Half a line, sent once the handshake is done; then the
                // TCP connection is cut, with no close_notify.
                stream.write_all(b"half a li").unwrap();
                while stream.conn.wants_write() || stream.conn.is_handshaking() {
                    stream.conn.complete_io(&mut stream.sock).unwrap();
                }
                stream.sock.shutdown(std::net::Shutdown::Both).unwrap();
            }
        });
        server.handle_request().unwrap();
        client.join().unwrap();
        let errors = server.calls_to("handle_error");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("without close_notify"), "{errors:?}");
        server.server_close();
    });
}

/// `request_timeout` bounds a TLS request too, from the handshake's end: a
/// client that completes its handshake and then says nothing is cut at the
/// deadline (the watchdog knows the accepted socket, which the session
/// reads through a duplicate of).
#[test]
fn request_timeout_cuts_a_silent_tls_client() {
    bounded(LIMIT, || {
        let certificate = certificate();
        let mut base = ThreadingTCPServer::new("127.0.0.1:0", line_echo).unwrap();
        base.tls = Some(tls::server_config_from_pem(&certificate.chain, &certificate.key).unwrap());
        base.request_timeout = Some(Duration::from_millis(300));
        let server = Arc::new(base);
        let serving = serve(&server, None);
        let mut stream = rustls_client(server.server_address(), certificate.cert.der()).unwrap();
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        let silent = Instant::now();
        let mut reply = Vec::new();
        // The server's cut ends the connection without close_notify: an
        // error for this client, or an end of file; either way no echo,
        // and long before the client's own 10 s timeout.
        let ended = stream.read_to_end(&mut reply);
        let cut_after = silent.elapsed();
        assert!(reply.is_empty(), "{reply:?}");
        assert!(
            !matches!(&ended, Err(err) if err.kind() == io::ErrorKind::WouldBlock),
            "not cut: {ended:?}"
        );
        assert!(cut_after < Duration::from_secs(5), "{cut_after:?}");
        assert_eq!(server.stats().timed_out, 1);
        eprintln!("silent TLS client cut after {cut_after:?} ({ended:?})");
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}
