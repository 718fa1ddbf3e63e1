//! `cargo run --release --example bench_framed_server -- --bind 127.0.0.1:0
//! [--mode threading|coroutine]` — the benchmark's CPU-bound handler
//! (benches/servers.rs, scenario g): the framed protocol of the tutorials'
//! remote-command server (header length, JSON header, body) on a
//! `ThreadingTCPServer` or a `CoroutineTCPServer`.
//!
//! The client sends messages of a native `i32` header length, a JSON header
//! `{"total_size": N, "md5": "…"}` and N body bytes
//! ([`MessageCodec`]); for each, the server checks the body's MD5 and answers
//! with a header alone, `{"total_size": 0, "ok": true}` (`false` on a
//! mismatch). The Python twin is `FRAMED_SERVER` in
//! benches/servers/python.rs. Prints `listening on ADDR`; exits 0 on SIGTERM.

#[path = "bench/args.rs"]
mod args;

use std::io;
use std::sync::Arc;

use socketserver::framing::{Checksum, Header, MessageCodec};
use socketserver::{BaseServer, CoroutineMixIn, MixIn, Server, StreamRequest, Tcp, ThreadingMixIn};

fn handle(request: &mut StreamRequest<'_>) -> io::Result<()> {
    let codec = MessageCodec::default();
    while let Some((header, body)) = codec.read_message(&mut request.rfile)? {
        let ok = header.md5.as_deref() == Some(Checksum::Md5.digest_hex(&body).as_str());
        let mut reply = Header::default();
        reply.extra.insert("ok".into(), ok.into());
        codec.write_header(&mut request.wfile, &reply)?;
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let args::Args { bind, mode, .. } = args::parse(&["--mode"], "threading");
    match mode.as_str() {
        "threading" => serve::<ThreadingMixIn>(&bind),
        "coroutine" => serve::<CoroutineMixIn>(&bind),
        other => panic!("unknown mode {other}"),
    }
}

fn serve<M: MixIn + Default>(bind: &str) -> io::Result<()> {
    let server = Arc::new(Server::<Tcp, M>::new(bind, handle)?);
    let shutdown = server.shutdown_handle();
    ctrlc::set_handler(move || shutdown.request_shutdown()).map_err(io::Error::other)?;
    println!("listening on {}", server.server_address());
    server.serve_forever(None)?;
    server.server_close();
    Ok(())
}
