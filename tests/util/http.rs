//! Helpers for the HTTP tests: curl as a client.

use std::process::Command;

/// Runs `curl -sS --max-time 10 ARGS…` and returns its output, failing the
/// test with curl's stderr if it fails. A test calling this first checks
/// [`require_tool`](super::require_tool)`("curl")`.
pub fn curl(args: &[&str]) -> Vec<u8> {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl must be installed to run this test (see require_tool)");
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
