//! What a handler sees of one request: shared by tests/conformance.rs and
//! tests/concurrency.rs, which look at a request from inside its handler.

use std::net::TcpStream;
use std::sync::Arc;

use parking_lot::Mutex;
use socketserver::{BaseServer, MixIn, Server, StreamRequest, Tcp};

/// What `observe` makes of the one request a TCP server with the mix-in `M`
/// handles: a client connects and closes at once, `handle_request` serves
/// it, and the server is closed (its request threads joined) before the
/// answer is read.
pub fn one_request<M, T>(observe: impl Fn(&mut StreamRequest<'_>) -> T + Send + Sync + 'static) -> T
where
    M: MixIn + Default,
    T: Send + 'static,
{
    let seen = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen);
    let server = Arc::new(
        Server::<Tcp, M>::new("127.0.0.1:0", move |r: &mut StreamRequest<'_>| {
            *record.lock() = Some(observe(r));
            Ok(())
        })
        .unwrap(),
    );
    drop(TcpStream::connect(server.server_address()).unwrap());
    server.handle_request().unwrap();
    server.server_close();
    let answer = seen.lock().take();
    answer.expect("the handler ran")
}
