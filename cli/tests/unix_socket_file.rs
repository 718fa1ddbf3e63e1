//! The Unix socket file of `socketserver echo --unix PATH`: its mode
//! (`--unix-mode`), its removal on exit (after SIGTERM and SIGINT too),
//! what a stale file left by a killed server does (the next server refuses
//! to start, naming the path), and `--unix-replace-stale`, which removes a
//! socket file only if nobody listens on it — never a live server's.

mod util;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use util::{bounded, python, unix_path, Running, BIN, CLIENT_TIMEOUT};

const LIMIT: Duration = Duration::from_secs(60);

/// An echo exchange over the Unix stream socket at `path`.
fn stream_echo(path: &Path, message: &[u8]) -> Vec<u8> {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream.write_all(message).unwrap();
    let mut reply = vec![0; message.len()];
    stream.read_exact(&mut reply).unwrap();
    reply
}

/// An echo exchange with the Unix datagram server at `path`.
fn datagram_echo(path: &Path, message: &[u8]) -> Vec<u8> {
    let me = unix_path("client");
    let socket = UnixDatagram::bind(&me).unwrap();
    socket.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    socket.send_to(message, path).unwrap();
    let mut reply = vec![0; 1024];
    let n = socket.recv(&mut reply).unwrap();
    reply.truncate(n);
    std::fs::remove_file(me).unwrap();
    reply
}

fn echo(path: &Path, datagram: bool, message: &[u8]) -> Vec<u8> {
    if datagram {
        datagram_echo(path, message)
    } else {
        stream_echo(path, message)
    }
}

/// Starts `socketserver echo --unix PATH` (with `--udp` for datagrams).
fn start(path: &Path, datagram: bool, extra: &[&str]) -> Running {
    let mut args = vec!["echo", "--unix", path.to_str().unwrap()];
    if datagram {
        args.push("--udp");
    }
    args.extend_from_slice(extra);
    Running::start(&args)
}

/// Runs `socketserver ARGS…` to its end: exit code and stderr.
fn run_to_end(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether user `nobody` (65534) may connect to the socket at `path`: a
/// Python child that drops to that user tries. `None` when this process
/// cannot change user (not root).
fn nobody_may_connect(path: &Path, datagram: bool) -> Option<bool> {
    // /proc/self belongs to the process's effective user.
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        return None;
    }
    const TRY: &str = r#"
import os, socket, sys
os.setgid(65534)
os.setuid(65534)
kind = socket.SOCK_DGRAM if sys.argv[2] == "dgram" else socket.SOCK_STREAM
s = socket.socket(socket.AF_UNIX, kind)
try:
    s.connect(sys.argv[1])
    print("connected")
except PermissionError:
    print("denied")
"#;
    let kind = if datagram { "dgram" } else { "stream" };
    let out = python(TRY, &[path.to_str().unwrap(), kind]);
    Some(match out.trim() {
        "connected" => true,
        "denied" => false,
        other => panic!("unexpected: {other}"),
    })
}

/// `--unix-mode 600` makes a socket only its owner may use; `666` one that
/// anybody may. The file is gone after SIGTERM.
#[test]
fn unix_mode_sets_the_socket_files_permissions() {
    bounded(LIMIT, || {
        for datagram in [false, true] {
            for (mode, others_allowed) in [("600", false), ("0660", false), ("666", true)] {
                let path = unix_path("mode");
                let server = start(&path, datagram, &["--unix-mode", mode]);
                let bits = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(
                    bits,
                    u32::from_str_radix(mode, 8).unwrap(),
                    "--unix-mode {mode}"
                );
                assert_eq!(echo(&path, datagram, b"owner"), b"owner");
                if let Some(allowed) = nobody_may_connect(&path, datagram) {
                    assert_eq!(
                        allowed, others_allowed,
                        "--unix-mode {mode}: may another user connect?"
                    );
                }
                assert!(server.terminate().success());
                assert!(!path.exists(), "removed after SIGTERM");
            }
        }
    });
}

/// Not a mode, or a mode without --unix: refused before anything starts.
#[test]
fn bad_unix_modes_are_refused() {
    bounded(LIMIT, || {
        let path = unix_path("never");
        let path = path.to_str().unwrap();
        for (args, code, needle) in [
            (
                &["--unix", path, "--unix-mode", "999"][..],
                2,
                "not a file mode",
            ),
            (&["--unix", path, "--unix-mode", "1777"], 2, "at most 777"),
            (&["--unix", path, "--unix-mode", "rw"], 2, "octal"),
            (&["--unix-mode", "600"], 1, "a --unix socket only"),
            (
                &["--bind", "127.0.0.1:0", "--unix-mode", "600"],
                1,
                "a --unix socket only",
            ),
            (
                &["--bind", "127.0.0.1:0", "--unix-replace-stale"],
                1,
                "a --unix socket only",
            ),
        ] {
            let mut all = vec!["echo"];
            all.extend_from_slice(args);
            let (status, stderr) = run_to_end(&all);
            assert_eq!(status, Some(code), "{args:?}: {stderr}");
            assert!(stderr.contains(needle), "{args:?}: {stderr}");
            assert!(!Path::new(path).exists());
        }
    });
}

/// The socket file goes with the server whichever signal ends it, stream
/// or datagram.
#[test]
fn socket_file_is_removed_after_sigterm_and_sigint() {
    bounded(LIMIT, || {
        for datagram in [false, true] {
            for signal in [Signal::SIGTERM, Signal::SIGINT] {
                let path = unix_path("signal");
                let server = start(&path, datagram, &[]);
                assert_eq!(echo(&path, datagram, b"hi"), b"hi");
                server.signal(signal);
                assert!(server.wait().success(), "{signal:?}: exit status 0");
                assert!(!path.exists(), "{signal:?}, datagram {datagram}: removed");
            }
        }
    });
}

/// A server killed with SIGKILL cannot remove its socket file. The next
/// server on that path refuses to start, and says which file and why.
#[test]
fn stale_socket_file_is_refused_with_its_path() {
    bounded(LIMIT, || {
        for datagram in [false, true] {
            let path = unix_path("stale");
            let killed = start(&path, datagram, &[]);
            killed.signal(Signal::SIGKILL);
            killed.wait();
            assert!(path.exists(), "SIGKILL leaves the file behind");

            let mut args = vec!["echo", "--unix", path.to_str().unwrap()];
            if datagram {
                args.push("--udp");
            }
            let (code, stderr) = run_to_end(&args);
            assert_eq!(code, Some(1), "{stderr}");
            let path_text = path.display().to_string();
            for needle in [path_text.as_str(), "exists already", "remove it if stale"] {
                assert!(stderr.contains(needle), "{needle:?} missing: {stderr}");
            }
            assert!(
                path.exists(),
                "nothing removed without --unix-replace-stale"
            );
            std::fs::remove_file(&path).unwrap();
        }
    });
}

/// `--unix-replace-stale` removes a dead server's socket file and starts;
/// with a live server on the path it removes nothing and fails as without
/// the flag, and the live server goes on serving; a file that is not a
/// socket is never removed.
#[test]
fn replace_stale_removes_only_a_dead_socket() {
    bounded(LIMIT, || {
        for datagram in [false, true] {
            let path = unix_path("replace");
            let path_text = path.to_str().unwrap();
            let flag = ["--unix-replace-stale"];

            // Dead: replaced.
            let killed = start(&path, datagram, &[]);
            killed.signal(Signal::SIGKILL);
            killed.wait();
            assert!(path.exists());
            let server = start(&path, datagram, &flag);
            server.log_line("removing the stale socket file");
            assert_eq!(echo(&path, datagram, b"replaced"), b"replaced");

            // Live: untouched, still serving.
            let inode = std::fs::metadata(&path).unwrap().ino();
            let mut args = vec!["echo", "--unix", path_text, "--unix-replace-stale"];
            if datagram {
                args.push("--udp");
            }
            let (code, stderr) = run_to_end(&args);
            assert_eq!(code, Some(1), "{stderr}");
            assert!(stderr.contains("exists already"), "{stderr}");
            assert!(!stderr.contains("removing"), "{stderr}");
            assert_eq!(
                std::fs::metadata(&path).unwrap().ino(),
                inode,
                "the live server's socket file is the same file"
            );
            assert_eq!(echo(&path, datagram, b"still live"), b"still live");
            assert!(server.terminate().success());
            assert!(!path.exists());

            // Not a socket: untouched.
            std::fs::write(&path, b"precious").unwrap();
            let (code, stderr) = run_to_end(&args);
            assert_eq!(code, Some(1), "{stderr}");
            assert!(stderr.contains("exists already"), "{stderr}");
            assert_eq!(std::fs::read(&path).unwrap(), b"precious");
            std::fs::remove_file(&path).unwrap();
        }
    });
}
