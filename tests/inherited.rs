//! Servers on sockets made elsewhere: a std listener, an inherited
//! descriptor, systemd socket activation; SO_REUSEPORT siblings; one
//! dual-stack IPv6 listener for IPv4 clients too.

mod util;

use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socketserver::{BaseServer, StreamRequest, TCPServer, ThreadingTCPServer, UDPServer};
use util::{bounded, line_echo, serve, tcp_exchange, TEST_STR};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn server_on_a_std_listener() {
    bounded(LIMIT, || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = Arc::new(TCPServer::from_socket(listener, line_echo).unwrap());
        assert_eq!(server.server_address(), address);
        let serving = serve(&server, None);
        assert_eq!(tcp_exchange(address, TEST_STR), TEST_STR);
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}

#[test]
fn inherited_descriptor_of_the_wrong_kind_is_refused() {
    bounded(LIMIT, || {
        let udp = OwnedFd::from(UdpSocket::bind("127.0.0.1:0").unwrap());
        let err = TCPServer::from_fd(udp, line_echo).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("DGRAM"), "{err}");

        let unbound =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let err = TCPServer::from_fd(OwnedFd::from(unbound), line_echo).unwrap_err();
        assert!(err.to_string().contains("not listening"), "{err}");

        let tcp = OwnedFd::from(TcpListener::bind("127.0.0.1:0").unwrap());
        let err = UDPServer::from_fd(tcp, |_: &mut socketserver::DatagramRequest<'_>| Ok(()))
            .unwrap_err();
        assert!(err.to_string().contains("STREAM"), "{err}");
    });
}

#[test]
#[cfg(feature = "systemd")]
fn from_systemd_without_activation_says_so() {
    let err = TCPServer::from_systemd(0, line_echo).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("LISTEN_FDS"), "{err}");
}

/// systemd's protocol, played by python3: a listening socket at fd 3,
/// LISTEN_FDS=1, LISTEN_PID = the process's own pid, then exec.
#[cfg(feature = "systemd")]
const ACTIVATE: &str = r#"
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
os.dup2(s.fileno(), 3); os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"; os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[1], [sys.argv[1]])
"#;

#[test]
#[cfg(feature = "systemd")]
fn socket_activation_serves_on_the_passed_socket() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    util::bounded_with("python3", LIMIT, || {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/debug/examples/socket_activation");
        let built = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--example", "socket_activation"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(built.success());
        let mut child = Command::new("python3")
            .args(["-c", ACTIVATE, example.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port: u16 = line.trim().parse().unwrap();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(
            line,
            format!("listening on 127.0.0.1:{port} (from systemd)\n")
        );
        let address = format!("127.0.0.1:{port}").parse().unwrap();
        assert_eq!(tcp_exchange(address, TEST_STR), TEST_STR);
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        assert!(child.wait().unwrap().success());
    });
}

/// SO_REUSEPORT: two servers on one port, and the kernel spreads
/// connections over both.
#[test]
fn reuse_port_siblings_both_take_connections() {
    bounded(LIMIT, || {
        let counts: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::default()).collect();
        let make = |count: Arc<AtomicUsize>, address: &str| {
            let mut server =
                ThreadingTCPServer::unbound(address, move |r: &mut StreamRequest<'_>| {
                    count.fetch_add(1, Ordering::SeqCst);
                    line_echo(r)
                })
                .unwrap();
            server.allow_reuse_port = true;
            server.bind_and_activate().unwrap();
            Arc::new(server)
        };
        let first = make(Arc::clone(&counts[0]), "127.0.0.1:0");
        let address = first.server_address();
        let second = make(Arc::clone(&counts[1]), &address.to_string());
        let servings = [serve(&first, None), serve(&second, None)];
        for _ in 0..200 {
            assert_eq!(tcp_exchange(address, TEST_STR), TEST_STR);
        }
        let (a, b) = (
            counts[0].load(Ordering::SeqCst),
            counts[1].load(Ordering::SeqCst),
        );
        eprintln!("SO_REUSEPORT split 200 connections {a} / {b}");
        assert!(a > 0 && b > 0 && a + b == 200, "{a} / {b}");
        first.shutdown().unwrap();
        second.shutdown().unwrap();
        for serving in servings {
            serving.join().unwrap().unwrap();
        }
    });
}

/// `dual_stack`: one IPv6 listener also serves IPv4 clients.
#[test]
fn dual_stack_serves_ipv4_and_ipv6() {
    bounded(LIMIT, || {
        let mut server = match TCPServer::unbound("[::]:0", line_echo) {
            Ok(server) => server,
            Err(err) => return util::skipped(&format!("no IPv6 here ({err})")),
        };
        server.dual_stack = true;
        if let Err(err) = server.bind_and_activate() {
            return util::skipped(&format!("cannot bind [::] ({err})"));
        }
        let server = Arc::new(server);
        let port = server.server_address().port();
        let serving = serve(&server, None);
        assert_eq!(
            tcp_exchange(format!("127.0.0.1:{port}").parse().unwrap(), TEST_STR),
            TEST_STR
        );
        if std::net::TcpStream::connect(format!("[::1]:{port}")).is_ok() {
            assert_eq!(
                tcp_exchange(format!("[::1]:{port}").parse().unwrap(), TEST_STR),
                TEST_STR
            );
        }
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
    });
}
