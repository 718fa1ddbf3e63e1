//! `cargo run --example thread_limited` — the tutorials' thread-limited
//! server ("服务端多线程提供服务", with `max_connect = 5`): it counted threads
//! (`if len(threading.enumerate()) < max_connect`) and silently dropped the
//! connections over the limit. A bounded pool does it properly: five
//! workers, the rest wait their turn in the queue instead of being lost.

use std::io::{self, BufRead, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use socketserver::{BaseServer, StreamRequest, ThreadPoolTCPServer};

fn main() -> io::Result<()> {
    let busy = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (b, m) = (Arc::clone(&busy), Arc::clone(&most));
    let mut server = ThreadPoolTCPServer::new("127.0.0.1:0", move |r: &mut StreamRequest<'_>| {
        let now = b.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(now, Ordering::SeqCst);
        let mut data = String::new();
        r.rfile.read_line(&mut data)?;
        std::thread::sleep(std::time::Duration::from_millis(50)); // some work
        b.fetch_sub(1, Ordering::SeqCst);
        r.wfile
            .write_all(format!("服务端收到了你发来的“{}”信息!\n", data.trim()).as_bytes())
    })?;
    server.mixin.workers = 5; // the Python server's max_connect
    let server = Arc::new(server);
    let serving = {
        let server = Arc::clone(&server);
        std::thread::spawn(move || server.serve_forever(None))
    };
    let address = server.server_address();
    let clients: Vec<_> = (0..12)
        .map(|i| {
            std::thread::spawn(move || -> io::Result<String> {
                let mut s = TcpStream::connect(address)?;
                writeln!(s, "client {i}")?;
                let mut reply = String::new();
                io::BufReader::new(&s).read_line(&mut reply)?;
                Ok(reply)
            })
        })
        .collect();
    for c in clients {
        print!("{}", c.join().unwrap()?);
    }
    println!(
        "12 clients served, at most {} at once",
        most.load(Ordering::SeqCst)
    );
    println!("pool counters: {:?}", server.mixin.stats());
    server.shutdown()?;
    serving.join().unwrap()?;
    Ok(())
}
