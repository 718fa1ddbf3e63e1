//! `cargo run --example http_server -- [PORT] [DIRECTORY]` — Python's
//! `python -m http.server [PORT] --directory DIRECTORY`, ported
//! (docs/porting.md, "http.server"): serves the directory (default: the
//! current one) on 127.0.0.1:PORT (default 8000) until Ctrl-C. The
//! `socketserver http` command is the same with every option.
//!
//! The Python (`http.server.test`, shortened):
//!
//! ```python
//! import functools, sys
//! from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
//!
//! port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
//! directory = sys.argv[2] if len(sys.argv) > 2 else None
//! handler = functools.partial(SimpleHTTPRequestHandler, directory=directory)
//! with ThreadingHTTPServer(("127.0.0.1", port), handler) as httpd:
//!     host, port = httpd.socket.getsockname()[:2]
//!     print(f"Serving HTTP on {host} port {port} (http://{host}:{port}/) ...")
//!     try:
//!         httpd.serve_forever()
//!     except KeyboardInterrupt:
//!         print("\nKeyboard interrupt received, exiting.")
//! ```

use std::sync::Arc;

use socketserver::http::{SimpleHTTPRequestHandler, ThreadingHTTPServer};
use socketserver::BaseServer;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .map_or(Ok(8000), |p| p.parse())
        .map_err(std::io::Error::other)?;
    let directory = match args.next() {
        Some(directory) => directory.into(),
        None => std::env::current_dir()?,
    };
    let handler = SimpleHTTPRequestHandler::new(directory);
    let httpd = Arc::new(ThreadingHTTPServer::new(("127.0.0.1", port), handler)?);
    let address = httpd.server_address();
    println!(
        "Serving HTTP on {} port {} (http://{address}/) ...",
        address.ip(),
        address.port()
    );
    // Python's KeyboardInterrupt: Ctrl-C stops serve_forever, then `with`
    // closes the server, waiting for the requests in flight.
    let stop = httpd.shutdown_handle();
    ctrlc::set_handler(move || stop.request_shutdown()).map_err(std::io::Error::other)?;
    httpd.with(|httpd| httpd.serve_forever(None))?;
    println!("\nKeyboard interrupt received, exiting.");
    Ok(())
}
