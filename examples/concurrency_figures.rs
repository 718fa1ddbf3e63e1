//! `cargo run --release --example concurrency_figures` — the figures in
//! docs/concurrency.md: memory per idle connection and time per short
//! request in each mode, on this machine. Loopback only.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socketserver::{
    BaseServer, ForkingTCPServer, MixIn, Server, StreamRequest, TCPServer, Tcp,
    ThreadPoolTCPServer, ThreadingTCPServer,
};

fn echo(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let mut line = Vec::new();
    request.rfile.read_until(b'\n', &mut line)?;
    request.wfile.write_all(&line)
}

fn status_kib(field: &str, pid: Option<u32>) -> u64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/smaps_rollup"),
        None => "/proc/self/status".into(),
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens `n` connections that send nothing, waits until the server holds
/// them all, and returns the resident memory they added, per connection.
fn idle_memory<M: MixIn>(
    server: Server<Tcp, M>,
    n: usize,
    held: impl Fn(&Server<Tcp, M>) -> usize,
) -> f64 {
    let server = Arc::new(server);
    let serving = {
        let server = Arc::clone(&server);
        std::thread::spawn(move || server.serve_forever(None))
    };
    let before = status_kib("VmRSS:", None);
    let clients: Vec<_> = (0..n)
        .map(|_| TcpStream::connect(server.server_address()).unwrap())
        .collect();
    wait_until(|| held(&server) >= n);
    let after = status_kib("VmRSS:", None);
    drop(clients);
    server.shutdown().unwrap();
    serving.join().unwrap().unwrap();
    server.server_close();
    (after.saturating_sub(before)) as f64 / n as f64
}

/// Time per request with a new connection for each, `n` in a row.
fn churn(address: SocketAddr, n: usize) -> f64 {
    let started = Instant::now();
    for _ in 0..n {
        let stream = TcpStream::connect(address).unwrap();
        (&stream).write_all(b"ping\n").unwrap();
        let mut reply = String::new();
        BufReader::new(&stream).read_line(&mut reply).unwrap();
        assert_eq!(reply, "ping\n");
    }
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// A forking server allowed to fork from this program, whose other thread
/// (the clients') holds no lock a child needs: glibc's fork takes the
/// allocator's locks around the fork itself.
fn forking_here(mut server: ForkingTCPServer) -> ForkingTCPServer {
    server.mixin.fork_with_threads = true;
    server
}

fn churn_server<M: MixIn>(server: Server<Tcp, M>, n: usize) -> f64 {
    let server = Arc::new(server);
    let serving = {
        let server = Arc::clone(&server);
        std::thread::spawn(move || server.serve_forever(None))
    };
    churn(server.server_address(), 200); // warm-up
    let micros = churn(server.server_address(), n);
    server.shutdown().unwrap();
    serving.join().unwrap().unwrap();
    micros
}

/// One measurement, run in a process of its own so that memory freed by one
/// mode is not reused by the next.
fn measure(what: &str) -> io::Result<String> {
    const IDLE: usize = 1000;
    const FORKED: usize = 100;
    const CHURN: usize = 3000;
    let stack =
        |name: &str| -> usize { name.rsplit('-').next().unwrap().parse::<usize>().unwrap() * 1024 };
    Ok(match what {
        w if w.starts_with("idle-threading-") => {
            let mut server = ThreadingTCPServer::new("127.0.0.1:0", echo)?;
            server.mixin.stack_size = stack(w);
            server.mixin.block_on_close = false;
            let kib = idle_memory(server, IDLE, |s| s.mixin.active_threads());
            format!("{kib:.1} KiB per idle connection")
        }
        "idle-pool" => {
            let mut pool = ThreadPoolTCPServer::new("127.0.0.1:0", echo)?;
            pool.mixin.block_on_close = false;
            let kib = idle_memory(pool, IDLE, |s| s.mixin.stats().waiting);
            format!(
                "{kib:.1} KiB per idle connection (silent connections wait outside the 64 workers)"
            )
        }
        "idle-forking" => {
            let mut forking = forking_here(ForkingTCPServer::new("127.0.0.1:0", echo)?);
            forking.mixin.max_children = FORKED + 1;
            forking.mixin.block_on_close = false;
            let forking = Arc::new(forking);
            let serving = {
                let server = Arc::clone(&forking);
                std::thread::spawn(move || server.serve_forever(None))
            };
            let clients: Vec<_> = (0..FORKED)
                .map(|_| TcpStream::connect(forking.server_address()).unwrap())
                .collect();
            wait_until(|| forking.mixin.active_children().len() >= FORKED);
            let pss: u64 = forking
                .mixin
                .active_children()
                .iter()
                .map(|&pid| status_kib("Pss:", Some(pid)))
                .sum();
            // Every child holds copies of the clients made before it forked,
            // so closing ours ends nothing: finish each request instead.
            for client in &clients {
                (&*client).write_all(b"done\n")?;
            }
            drop(clients);
            forking.shutdown()?;
            serving.join().unwrap()?;
            forking.server_close();
            format!(
                "{:.1} KiB proportional set size per child ({FORKED} idle children)",
                pss as f64 / FORKED as f64
            )
        }
        "churn-sync" => format!(
            "{:.1} µs",
            churn_server(TCPServer::new("127.0.0.1:0", echo)?, CHURN)
        ),
        w if w.starts_with("churn-threading-") => {
            let mut server = ThreadingTCPServer::new("127.0.0.1:0", echo)?;
            server.mixin.stack_size = stack(w);
            format!("{:.1} µs", churn_server(server, CHURN))
        }
        "churn-pool" => format!(
            "{:.1} µs",
            churn_server(ThreadPoolTCPServer::new("127.0.0.1:0", echo)?, CHURN)
        ),
        "churn-forking" => format!(
            "{:.1} µs",
            churn_server(
                forking_here(ForkingTCPServer::new("127.0.0.1:0", echo)?),
                CHURN
            )
        ),
        other => return Err(io::Error::other(format!("unknown measurement {other}"))),
    })
}

fn main() -> io::Result<()> {
    if let Some(what) = std::env::args().nth(1) {
        println!("{}", measure(&what)?);
        return Ok(());
    }
    let me = std::env::current_exe()?;
    let run = |what: &str| -> io::Result<String> {
        let out = std::process::Command::new(&me).arg(what).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    println!("| measurement | result |\n|---|---|");
    for what in [
        "idle-threading-64",
        "idle-threading-256",
        "idle-threading-2048",
        "idle-pool",
        "idle-forking",
        "churn-sync",
        "churn-threading-64",
        "churn-threading-256",
        "churn-threading-2048",
        "churn-pool",
        "churn-forking",
    ] {
        println!("| {what} | {} |", run(what)?);
    }
    Ok(())
}
