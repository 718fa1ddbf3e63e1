//! Regressions found in review, one test each: what went wrong, now pinned.

#[path = "util/serving.rs"]
mod serving;
mod util;

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serving::Serving;
use socketserver::mixin::{Dispatch, Overload};
use socketserver::{
    AddressOf, BaseServer, DatagramOptions, DatagramRequest, Refusal, RequestHandler, RequestOf,
    StreamRequest, ThreadPoolTCPServer, ThreadingTCPServer, UnixDatagramServer, UnixStreamServer,
};
use socketserver::{Tcp, ThreadPoolMixIn, ThreadingMixIn};
use util::{
    bounded, hold_echo, line_echo, serve, tcp_exchange, unix_path, Counting, CLIENT_TIMEOUT,
    TEST_STR,
};

const LIMIT: Duration = Duration::from_secs(60);

/// A pool server whose `reject_request` panics.
struct PanickyReject {
    base: ThreadPoolTCPServer,
}

impl BaseServer for PanickyReject {
    type Transport = Tcp;
    type MixIn = ThreadPoolMixIn;
    fn base(&self) -> &ThreadPoolTCPServer {
        &self.base
    }
    fn reject_request(&self, _: RequestOf<Self>, _: AddressOf<Self>, _: Refusal) {
        panic!("reject_request blew up");
    }
}

/// A panicking hook on the pool's readiness thread used to kill it: later
/// connections were never dispatched and `server_close` hung.
#[test]
fn panicking_reject_hook_does_not_kill_the_pool() {
    bounded(LIMIT, || {
        let (handler, hold) = hold_echo();
        let mut base = util::pool_server(1, handler);
        base.mixin.queue_size = 1;
        base.mixin.overload = Overload::Reject;
        let server = Serving::start(PanickyReject { base });
        let address = server.server_address();
        let holder = std::thread::spawn(move || tcp_exchange(address, b"hold\n"));
        hold.entered(); // the one worker is busy
        let filler = std::thread::spawn(move || tcp_exchange(address, b"fill\n"));
        while server.base.mixin.stats().queued == 0 {
            std::thread::yield_now(); // until the one queue slot is taken
        }
        // Refused on the readiness thread, by a hook that panics.
        let victim = util::client(address);
        (&victim).write_all(b"x\n").unwrap();
        let mut rest = Vec::new();
        match (&victim).read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "refused, not served"),
            Err(err) => assert_eq!(err.kind(), io::ErrorKind::ConnectionReset),
        }
        assert_eq!(server.base.mixin.stats().rejected, 1);
        hold.release();
        assert_eq!(holder.join().unwrap(), b"hold\n");
        assert_eq!(filler.join().unwrap(), b"fill\n");
        assert_eq!(
            tcp_exchange(address, TEST_STR),
            TEST_STR,
            "still dispatching"
        );
        let server = server.stop();
        server.server_close(); // used to hang
    });
}

/// A silent connection waiting in the pool used to keep a dropped server
/// alive (and accepting); `server_close` waited for it up to the idle timeout.
#[test]
fn silent_connections_neither_keep_the_server_alive_nor_delay_close() {
    bounded(LIMIT, || {
        let server = Serving::start(ThreadPoolTCPServer::new("127.0.0.1:0", line_echo).unwrap());
        let address = server.server_address();
        let silent = util::client(address);
        assert_eq!(tcp_exchange(address, TEST_STR), TEST_STR); // the silent one is in by now
        assert_eq!(server.mixin.stats().waiting, 1);
        let server = server.stop();
        let started = Instant::now();
        drop(server); // the last handle: server_close
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited for a silent client"
        );
        assert!(util::read_to_end(&silent).is_empty(), "closed at once");
        assert_eq!(
            TcpStream::connect(address).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
    });
}

/// With `Overload::Wait` and a full pool, a handler calling `shutdown()`
/// waited for the loop while the loop waited for that very worker.
#[test]
fn shutdown_from_a_handler_of_a_full_pool_does_not_deadlock() {
    bounded(LIMIT, || {
        let (entered, in_handler) = mpsc::channel();
        let entered = Mutex::new(entered);
        let (go, go_rx) = mpsc::channel::<()>();
        let go_rx = Mutex::new(go_rx);
        let mut server =
            ThreadPoolTCPServer::new("127.0.0.1:0", move |r: &mut StreamRequest<'_>| {
                let mut line = Vec::new();
                r.rfile.read_until(b'\n', &mut line)?;
                if line == b"stop\n" {
                    entered.lock().send(()).unwrap();
                    go_rx.lock().recv().unwrap();
                    r.server.shutdown()?; // the loop is blocked on the full queue
                }
                r.wfile.write_all(&line)
            })
            .unwrap();
        server.mixin.workers = 1;
        server.mixin.queue_size = 1;
        server.mixin.dispatch = Dispatch::Immediately;
        let server = Arc::new(server);
        let serving = serve(&server, None); // the handler shuts it down
        let address = server.server_address();
        let stopper = std::thread::spawn(move || tcp_exchange(address, b"stop\n"));
        in_handler.recv().unwrap();
        let queued = TcpStream::connect(address).unwrap(); // fills the queue
        let blocked = util::client(address); // the loop waits for room
        while server.mixin.stats().queued == 0 {
            std::thread::yield_now();
        }
        go.send(()).unwrap();
        assert_eq!(stopper.join().unwrap(), b"stop\n");
        serving.join().unwrap().unwrap();
        assert!(
            util::read_to_end(&blocked).is_empty(),
            "refused when shutdown came"
        );
        assert_eq!(server.mixin.stats().rejected, 1);
        drop(queued);
    });
}

/// `Overload::Wait` with readiness dispatch used to accept without bound:
/// now at `max_waiting` silent connections the accept loop waits.
#[test]
fn waiting_connections_are_bounded() {
    bounded(LIMIT, || {
        let mut base = ThreadPoolTCPServer::new("127.0.0.1:0", line_echo).unwrap();
        base.mixin.max_waiting = 10;
        let (server, accepted_rx) = Counting::new(base);
        let server = Serving::start(server);
        let silent: Vec<_> = (0..30)
            .map(|_| TcpStream::connect(server.server_address()).unwrap())
            .collect();
        for _ in 0..11 {
            accepted_rx.recv().unwrap(); // ten wait, the eleventh waits for room
        }
        // The window being measured: nothing more is taken from the backlog.
        assert!(accepted_rx
            .recv_timeout(Duration::from_millis(300))
            .is_err());
        assert_eq!(server.base.mixin.stats().waiting, 10);
        drop(silent); // they close: readable, served (empty), room again
        server.stop();
    });
}

/// A server whose `finish_request` closes the server, from request threads.
struct ClosingFromInside {
    base: ThreadingTCPServer,
}

impl BaseServer for ClosingFromInside {
    type Transport = Tcp;
    type MixIn = ThreadingMixIn;
    fn base(&self) -> &ThreadingTCPServer {
        &self.base
    }
    fn finish_request(
        &self,
        request: &RequestOf<Self>,
        address: &AddressOf<Self>,
    ) -> io::Result<()> {
        let result = self.base().finish_request(request, address);
        self.server_close();
        result
    }
}

/// Two request threads calling `server_close` at once used to wait for
/// each other for ever.
#[test]
fn server_close_from_two_request_threads() {
    bounded(LIMIT, || {
        let both = Arc::new(Barrier::new(2));
        let meet = Arc::clone(&both);
        let server = Arc::new(ClosingFromInside {
            base: ThreadingTCPServer::new("127.0.0.1:0", move |r: &mut StreamRequest<'_>| {
                meet.wait();
                line_echo(r)
            })
            .unwrap(),
        });
        let address = server.server_address();
        let clients: Vec<_> = (0..2)
            .map(|_| std::thread::spawn(move || tcp_exchange(address, TEST_STR)))
            .collect();
        server.handle_request().unwrap();
        server.handle_request().unwrap();
        for client in clients {
            assert_eq!(client.join().unwrap(), TEST_STR);
        }
        server.server_close();
        assert_eq!(server.base.mixin.active_threads(), 0);
    });
}

/// A Unix server removed the file at its path on close even when that path
/// had since become another server's socket.
#[test]
fn unix_server_removes_only_its_own_socket_file() {
    bounded(LIMIT, || {
        let path = unix_path("owned");
        let first = UnixStreamServer::new(&path, line_echo).unwrap();
        std::fs::remove_file(&path).unwrap();
        let second = UnixStreamServer::new(&path, line_echo).unwrap();
        drop(first);
        assert!(path.exists(), "the second server's socket was removed");
        drop(second);
        assert!(!path.exists());
    });
}

/// Datagram replies went out on a non-blocking socket and failed with EAGAIN
/// when a Unix datagram client read slowly; they now wait, as Python's.
#[test]
fn datagram_replies_wait_for_a_slow_reader() {
    bounded(LIMIT, || {
        let failures = Arc::new(AtomicUsize::new(0));
        struct Echo;
        impl RequestHandler<socketserver::Datagram> for Echo {
            fn handle(&self, r: &mut DatagramRequest<'_>) -> io::Result<()> {
                r.wfile = r.packet().to_vec();
                Ok(())
            }
        }
        let path = unix_path("slow-reader");
        let server = Serving::start(util::Recorder::new(
            UnixDatagramServer::new(&path, Echo).unwrap(),
        ));
        let client_path = unix_path("slow-reader-client");
        let client = Arc::new(UnixDatagram::bind(&client_path).unwrap());
        client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        const N: usize = 2000;
        let sender = {
            let (client, path) = (Arc::clone(&client), path.clone());
            std::thread::spawn(move || {
                for i in 0..N {
                    client.send_to(format!("{i}").as_bytes(), &path).unwrap();
                }
            })
        };
        // The slow reader being tested: its queue fills while it sleeps, and
        // the server's replies must wait rather than fail.
        std::thread::sleep(Duration::from_millis(300));
        let mut buf = [0; 16];
        for i in 0..N {
            let n = client.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], format!("{i}").as_bytes());
        }
        sender.join().unwrap();
        let server = server.stop();
        failures.fetch_add(server.count("handle_error"), Ordering::SeqCst);
        assert_eq!(failures.load(Ordering::SeqCst), 0);
        std::fs::remove_file(client_path).unwrap();
    });
}

/// Python's `BaseRequestHandler` on a UDP server replies by itself; with
/// `reply: false` no empty datagram follows.
#[test]
fn datagram_handler_may_reply_by_itself() {
    bounded(LIMIT, || {
        struct SendsItself;
        impl RequestHandler<socketserver::Datagram> for SendsItself {
            fn options(&self) -> DatagramOptions {
                DatagramOptions { reply: false }
            }
            fn handle(&self, r: &mut DatagramRequest<'_>) -> io::Result<()> {
                r.sendto(&r.packet().to_ascii_uppercase(), &r.client_address)
                    .map(drop)
            }
        }
        let server = Arc::new(socketserver::UDPServer::new("127.0.0.1:0", SendsItself).unwrap());
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"once", server.server_address()).unwrap();
        server.handle_request().unwrap();
        client.send_to(b"twice", server.server_address()).unwrap();
        server.handle_request().unwrap();
        client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let mut buf = [0; 16];
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ONCE");
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"TWICE", "no empty datagram in between");
    });
}
