//! bpo-37193 at scale: after 10,000 sequential connections a threading
//! server tracks only running threads, and the process's OS threads are back
//! to where they were. Alone in its file: it counts the process's threads.

mod util;

use std::sync::Arc;
use std::time::Duration;

use socketserver::{BaseServer, ThreadingTCPServer};
use util::{bounded, line_echo, os_threads, serve, tcp_exchange, wait_for_os_threads, TEST_STR};

/// How long the kernel may take to retire the joined threads.
const RETIRE: Duration = Duration::from_secs(10);

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
        // Every request thread is joined, but the kernel may not have retired
        // the last ones yet: wait (bounded) for the count, not a guess.
        let after = wait_for_os_threads(baseline, RETIRE);
        assert_eq!(
            after, baseline,
            "OS threads not back to baseline {RETIRE:?} after server_close"
        );
    });
}
