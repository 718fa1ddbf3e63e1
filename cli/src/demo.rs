//! `socketserver` with no arguments: a guided tour of the hierarchy. A
//! ThreadingTCPServer, extended to narrate each hook as it runs, serves three
//! clients at once, then shuts down.

use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use socketserver::{AddressOf, BaseServer, RequestOf, StreamRequest, ThreadingTCPServer};
use socketserver::{Tcp, ThreadingMixIn};

/// A ThreadingTCPServer that says what each hook does (Python: a subclass
/// overriding the hooks and calling `super()`).
struct Narrated {
    base: ThreadingTCPServer,
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("?").to_owned()
}

impl BaseServer for Narrated {
    type Transport = Tcp;
    type MixIn = ThreadingMixIn;
    fn base(&self) -> &ThreadingTCPServer {
        &self.base
    }

    fn get_request(&self) -> io::Result<(RequestOf<Self>, AddressOf<Self>)> {
        let (request, address) = self.base().get_request()?;
        println!(
            "  [{}] TCPServer.get_request: accepted {address}",
            thread_name()
        );
        Ok((request, address))
    }

    fn verify_request(&self, request: &RequestOf<Self>, address: &AddressOf<Self>) -> bool {
        let ok = self.base().verify_request(request, address);
        println!(
            "  [{}] BaseServer.verify_request({address}) → {ok}",
            thread_name()
        );
        ok
    }

    fn process_request(&self, request: RequestOf<Self>, address: AddressOf<Self>) {
        println!(
            "  [{}] ThreadingMixIn.process_request: a new thread for {address}",
            thread_name()
        );
        self.base().process_request(request, address);
    }

    fn finish_request(
        &self,
        request: &RequestOf<Self>,
        address: &AddressOf<Self>,
    ) -> io::Result<()> {
        println!(
            "  [{}] BaseServer.finish_request: the handler runs setup → handle → finish",
            thread_name()
        );
        self.base().finish_request(request, address)
    }

    fn shutdown_request(&self, request: RequestOf<Self>) {
        println!(
            "  [{}] TCPServer.shutdown_request: SHUT_WR, then close_request",
            thread_name()
        );
        self.base().shutdown_request(request);
    }
}

/// The handler: Python's `MyTCPHandler`, upper-casing a line.
fn handle(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut line = String::new();
    request.rfile.read_line(&mut line)?;
    let reply = line.to_uppercase();
    println!(
        "  [{}] handler.handle: read {:?}, writing {:?}",
        thread_name(),
        line.trim_end(),
        reply.trim_end()
    );
    request.wfile.write_all(reply.as_bytes())
}

fn client(address: SocketAddr, n: usize) -> io::Result<String> {
    let mut stream = TcpStream::connect(address)?;
    stream.write_all(format!("hello from client {n}\n").as_bytes())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply.trim_end().to_owned())
}

pub fn run() -> io::Result<()> {
    println!("socketserver demo: Python's socketserver hierarchy, in Rust\n");
    println!("1. ThreadingTCPServer::new(\"127.0.0.1:0\", handle)");
    println!("   = Server<Tcp, ThreadingMixIn>: socket() → server_bind() → server_activate()");
    let server = Arc::new(Narrated {
        base: ThreadingTCPServer::new("127.0.0.1:0", handle)?,
    });
    let address = server.server_address();
    println!(
        "   bound to {address} (port 0 resolved), listening with a backlog of {}\n",
        server.base.request_queue_size
    );

    println!("2. serve_forever() on its own thread: poll(2) on the socket and a wake-up eventfd");
    let serving = {
        let server = Arc::clone(&server);
        std::thread::Builder::new()
            .name("serve_forever".into())
            .spawn(move || server.serve_forever(None))?
    };

    println!("3. three clients connect at once; each request gets its own thread:");
    let clients: Vec<_> = (1..=3)
        .map(|n| std::thread::spawn(move || client(address, n)))
        .collect();
    for (n, c) in clients.into_iter().enumerate() {
        let reply = c
            .join()
            .map_err(|_| io::Error::other("client thread panicked"))??;
        println!("  client {}: got {reply:?}", n + 1);
    }

    println!("\n4. shutdown() from the main thread: the eventfd wakes the loop at once");
    let started = Instant::now();
    server.shutdown()?;
    serving
        .join()
        .map_err(|_| io::Error::other("serving thread panicked"))??;
    println!(
        "   serve_forever returned {:?} after shutdown() was called",
        started.elapsed()
    );

    println!(
        "\n5. server_close(): the socket is closed and request threads joined (block_on_close)"
    );
    server.server_close();
    println!("   fileno() is now {}\n", server.fileno());
    println!("Next: `socketserver echo --help`, `socketserver client --help`, docs/tutorial.md");
    Ok(())
}
