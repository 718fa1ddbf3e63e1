//! bpo-37193 at scale: after 10,000 sequential connections a threading
//! server tracks only running threads, and the process's OS threads are back
//! to where they were. Alone in its file: it counts the process's threads.

mod util;

use std::sync::Arc;
use std::time::Duration;

use socketserver::{BaseServer, ThreadingTCPServer};
use util::{bounded, line_echo, serve, tcp_exchange, TEST_STR};

fn os_threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line["Threads:".len()..].trim().parse().unwrap()
}

#[test]
fn threads_reaped_after_10000_connections() {
    bounded(Duration::from_secs(120), || {
        let baseline = os_threads();
        let server = Arc::new(ThreadingTCPServer::new("127.0.0.1:0", line_echo).unwrap());
        let serving = serve(&server, None);
        let mut most_tracked = 0;
        let mut most_os = 0;
        for i in 0..10_000 {
            assert_eq!(tcp_exchange(server.server_address(), TEST_STR), TEST_STR);
            if i % 100 == 0 {
                most_tracked = most_tracked.max(server.mixin.tracked_threads());
                most_os = most_os.max(os_threads());
            }
        }
        let tracked = server.mixin.tracked_threads();
        eprintln!(
            "baseline {baseline} OS threads; during: at most {most_os} OS threads, {most_tracked} \
             tracked; after 10,000 connections: {tracked} tracked"
        );
        assert!(tracked < 10, "{tracked} threads still tracked");
        assert!(
            most_os < baseline + 20,
            "{most_os} OS threads (baseline {baseline})"
        );
        server.shutdown().unwrap();
        serving.join().unwrap().unwrap();
        server.server_close(); // joins what still runs
        assert_eq!(server.mixin.tracked_threads(), 0);
        assert_eq!(os_threads(), baseline, "OS threads back to baseline");
    });
}
