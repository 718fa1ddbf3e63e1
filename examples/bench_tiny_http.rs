//! `cargo run --release --example bench_tiny_http -- --directory DIR --bind 127.0.0.1:0`
//! — the HTTP benchmark's tiny_http anchor (benches/servers/http.rs): a
//! static-file server as tiny_http 0.12's documentation shows one —
//! `Response::from_file` for a file of the directory, four threads calling
//! `server.recv()` (the crate's own example of a multi-threaded server;
//! tiny_http itself reads each connection on a thread of its elastic pool).
//! Prints `listening on ADDR`; the bench ends it with SIGKILL.

#[path = "bench/args.rs"]
mod args;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use tiny_http::{Header, Response, Server, StatusCode};

/// The file under `root` that `url` names, if it is one: percent-escapes
/// are not decoded (the bench asks for plain names), and a name that
/// resolves outside `root` is refused the way rouille does it
/// (canonicalize, then `starts_with`).
fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next()?.trim_start_matches('/');
    let full = root.join(path).canonicalize().ok()?;
    (full.starts_with(root) && full.is_file()).then_some(full)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn main() {
    let args::Args {
        bind, directory, ..
    } = args::parse(&["--directory"], "");
    let root = directory.canonicalize().expect("the directory exists");
    let server = Arc::new(Server::http(&bind).expect("bind"));
    let addr = server.server_addr().to_ip().expect("an IP listener");
    println!("listening on {addr}");
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let server = Arc::clone(&server);
            let root = root.clone();
            thread::spawn(move || {
                for request in server.incoming_requests() {
                    let file = resolve(&root, request.url())
                        .and_then(|path| Some((File::open(&path).ok()?, content_type(&path))));
                    // A failed respond is a client that left: nothing to do.
                    let _ = match file {
                        Some((file, kind)) => {
                            let header = Header::from_bytes(&b"Content-Type"[..], kind.as_bytes())
                                .expect("a valid header");
                            request.respond(Response::from_file(file).with_header(header))
                        }
                        None => request.respond(Response::empty(StatusCode(404))),
                    };
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}
