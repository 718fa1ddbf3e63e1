//! The helpers of the library's integration tests (tests/util), shared rather
//! than copied, plus [`Running`]: a `socketserver` server process for the
//! tests that drive the command-line program.
#![allow(dead_code, unused_imports)] // each test file uses a different subset

#[path = "../../../tests/util/mod.rs"]
mod shared;
pub use shared::*;

mod running;
pub use running::{echo_args, log_line, Running, BIN};
