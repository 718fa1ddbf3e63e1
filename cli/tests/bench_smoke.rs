//! The benchmark's harness (benches/servers/harness.rs) runs end to end: a
//! `socketserver echo` process, its `listening on` line, a 0.2 s ping-pong
//! window over two connections, the server's CPU time, and the guard that
//! kills the process. Results are never asserted, only that the machinery
//! works: requests were answered, none failed.

// Only a part of the harness is used here.
#[allow(dead_code)]
#[path = "../../benches/servers/harness.rs"]
mod harness;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use harness::{PingPong, ServerSpec};

#[test]
fn ping_pong_against_the_echo_program() {
    let (done, finished) = mpsc::channel();
    let body = thread::spawn(move || {
        let spec = ServerSpec::new(
            "socketserver threading",
            env!("CARGO_BIN_EXE_socketserver"),
            &["echo", "--bind", "127.0.0.1:0", "--mode", "threading"],
        )
        .with_env("RUST_LOG", "warn");
        let server = spec
            .start()
            .expect("the server starts and says where it listens");
        let pid = server.pid();
        let load = PingPong {
            warmup: Duration::from_millis(20),
            ..PingPong::echo(2, 64)
        };
        let measured = load
            .start(server.addr)
            .expect("two connections answer")
            .measure(Duration::from_millis(200), Some(&server))
            .expect("the window is measured");
        assert!(measured.completed > 0, "no request answered: {measured:?}");
        assert_eq!(measured.errors, 0, "{measured:?}");
        assert!(
            measured.server_cpu.is_some(),
            "the server's CPU time is read"
        );
        drop(server);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the guard kills and reaps the server"
        );
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(20)) {
        Ok(()) => body.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = body.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the smoke test took more than 20 s"),
    }
}
