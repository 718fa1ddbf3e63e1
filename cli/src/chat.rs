//! `socketserver chat`: the tutorials' UDP "QQ chat" server. Each message is
//! printed as the Python server prints it; the reply is typed at the prompt, or, when
//! stdin is not a terminal, an automatic acknowledgement (so it can be
//! scripted).

use std::io::{self, BufRead, IsTerminal, Write};

use clap::Args;
use socketserver::{Datagram, DatagramRequest, RequestHandler, UDPServer};

use crate::run::{new_server, serve};

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Address to listen on (UDP).
    #[arg(long, default_value = "127.0.0.1:8081")]
    bind: String,
}

/// The Python server's line, coloured on a terminal: `来自[ip:port]的一条消息:…`.
pub fn incoming(from: &str, message: &str, colour: bool) -> String {
    if colour {
        format!("来自[{from}]的一条消息:\x1b[1;44m{message}\x1b[0m")
    } else {
        format!("来自[{from}]的一条消息:{message}")
    }
}

#[derive(Debug)]
struct ChatHandler {
    interactive: bool,
}

impl RequestHandler<Datagram> for ChatHandler {
    fn handle(&self, request: &mut DatagramRequest<'_>) -> io::Result<()> {
        let message = String::from_utf8_lossy(request.packet()).into_owned();
        let from = request.client_address.to_string();
        println!("{}", incoming(&from, &message, io::stdout().is_terminal()));
        let reply = if self.interactive {
            print!("回复消息: ");
            io::stdout().flush()?;
            let mut line = String::new();
            io::stdin().lock().read_line(&mut line)?;
            line.trim().to_owned()
        } else {
            format!("已收到 (received): {message}")
        };
        request.wfile = reply.into_bytes();
        Ok(())
    }
}

pub fn run(args: ChatArgs) -> io::Result<()> {
    let interactive = io::stdin().is_terminal();
    let server: UDPServer = new_server(args.bind.as_str(), ChatHandler { interactive })?;
    serve(server)
}
