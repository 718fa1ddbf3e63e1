//! `cargo run --example http_json_api` — a typical `BaseHTTPRequestHandler`
//! JSON API, ported (docs/porting.md, "http.server"): `GET /items` lists,
//! `POST /items` appends the JSON body, anything else is 404; HTTP/1.1
//! keep-alive. Runs a client against itself and exits;
//! `cargo run --example http_json_api -- 127.0.0.1:8000` serves until
//! Ctrl-C.
//!
//! The Python:
//!
//! ```python
//! import json, threading
//! from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
//!
//! items, lock = [], threading.Lock()
//!
//! class Api(BaseHTTPRequestHandler):
//!     protocol_version = "HTTP/1.1"
//!
//!     def send_json(self, code, value):
//!         body = json.dumps(value).encode()
//!         self.send_response(code)
//!         self.send_header("Content-Type", "application/json")
//!         self.send_header("Content-Length", str(len(body)))
//!         self.end_headers()
//!         self.wfile.write(body)
//!
//!     def do_GET(self):
//!         if self.path != "/items":
//!             return self.send_error(404, "No such resource")
//!         with lock:
//!             self.send_json(200, items)
//!
//!     def do_POST(self):
//!         if self.path != "/items":
//!             return self.send_error(404, "No such resource")
//!         length = int(self.headers.get("Content-Length", 0))
//!         try:
//!             item = json.loads(self.rfile.read(length))
//!         except ValueError:
//!             return self.send_error(400, "Body is not JSON")
//!         with lock:
//!             items.append(item)
//!             self.send_json(201, {"count": len(items)})
//!
//! ThreadingHTTPServer(("127.0.0.1", 8000), Api).serve_forever()
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use socketserver::http::{BaseHTTPRequestHandler, HTTPOptions, HTTPRequest, ThreadingHTTPServer};
use socketserver::BaseServer;

/// Python: `class Api(BaseHTTPRequestHandler)`; `items` and `lock` are its
/// fields, shared by every request.
#[derive(Default)]
struct Api {
    items: Mutex<Vec<Value>>,
}

/// Python's `send_json` helper.
fn send_json(request: &mut HTTPRequest<'_>, code: u16, value: &Value) -> io::Result<()> {
    let body = value.to_string();
    request.send_response(code)?;
    request.send_header("Content-Type", "application/json")?;
    request.send_header("Content-Length", body.len())?;
    request.end_headers();
    request.wfile.write_all(body.as_bytes())
}

impl BaseHTTPRequestHandler for Api {
    fn options(&self) -> HTTPOptions {
        HTTPOptions {
            protocol_version: "HTTP/1.1".into(), // Python: protocol_version = "HTTP/1.1"
            ..HTTPOptions::default()
        }
    }

    fn do_GET(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
        if request.path != "/items" {
            return request.send_error_message(404, Some("No such resource"), None);
        }
        let items = Value::from(self.items.lock().unwrap().clone());
        send_json(request, 200, &items)
    }

    fn do_POST(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
        if request.path != "/items" {
            return request.send_error_message(404, Some("No such resource"), None);
        }
        // Content-Length or chunked, limited to HTTPOptions::max_body_size.
        let body = request.rfile.read_all()?;
        let Ok(item) = serde_json::from_slice::<Value>(&body) else {
            return request.send_error_message(400, Some("Body is not JSON"), None);
        };
        let count = {
            let mut items = self.items.lock().unwrap();
            items.push(item);
            items.len()
        };
        send_json(request, 201, &json!({ "count": count }))
    }
}

fn main() -> io::Result<()> {
    if let Some(address) = std::env::args().nth(1) {
        let server = Arc::new(ThreadingHTTPServer::new(address.as_str(), Api::default())?);
        println!("listening on {}", server.server_address());
        return server.serve_forever(None);
    }
    let server = Arc::new(ThreadingHTTPServer::new("127.0.0.1:0", Api::default())?);
    let serving = std::thread::spawn({
        let server = Arc::clone(&server);
        move || server.serve_forever(None)
    });
    // One kept connection for every request, as a browser or requests.Session.
    let mut client = TcpStream::connect(server.server_address())?;
    client.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut replies = BufReader::new(client.try_clone()?);
    let mut call = |method: &str, path: &str, body: &str| -> io::Result<(u16, String)> {
        write!(
            client,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let (mut status, mut length, mut line) = (0, 0, String::new());
        while replies.read_line(&mut line)? > 2 {
            if status == 0 {
                status = line.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            line.clear();
        }
        let mut reply = vec![0; length];
        replies.read_exact(&mut reply)?;
        Ok((status, String::from_utf8_lossy(&reply).into_owned()))
    };
    println!("{:?}", call("GET", "/items", "")?);
    println!("{:?}", call("POST", "/items", r#"{"name": "spam"}"#)?);
    println!("{:?}", call("POST", "/items", r#"{"name": "eggs"}"#)?);
    println!("{:?}", call("GET", "/items", "")?);
    let (status, _) = call("GET", "/nothing", "")?;
    println!("GET /nothing: {status}");
    assert_eq!(status, 404);
    server.shutdown()?;
    serving.join().unwrap()?;
    server.server_close();
    Ok(())
}
