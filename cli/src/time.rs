//! `socketserver time`: the tutorials' UDP time server ("NTP 服务"): the
//! datagram is a strftime format, empty means `%Y-%m-%d %X`; the reply is the
//! local time in that format.

use std::fmt::Write as _;
use std::io;

use chrono::format::{Item, StrftimeItems};
use clap::Args;
use socketserver::{Datagram, DatagramRequest, RequestHandler, UDPServer};

use crate::run::{new_server, serve};

#[derive(Debug, Args)]
pub struct TimeArgs {
    /// Address to listen on (UDP).
    #[arg(long, default_value = "127.0.0.1:9000")]
    bind: String,
}

/// The Python server's default format when the datagram is empty.
pub const DEFAULT_FORMAT: &str = "%Y-%m-%d %X";

/// Formats the local time; a format chrono cannot read is an error message,
/// not a crash (Python's strftime passes unknown directives through).
pub fn strftime(format: &str) -> Result<String, String> {
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    if items.iter().any(|item| matches!(item, Item::Error)) {
        return Err(format!("error: bad time format {format:?}"));
    }
    let mut out = String::new();
    write!(
        out,
        "{}",
        chrono::Local::now().format_with_items(items.into_iter())
    )
    .map_err(|_| format!("error: cannot format the time with {format:?}"))?;
    Ok(out)
}

#[derive(Debug)]
struct TimeHandler;

impl RequestHandler<Datagram> for TimeHandler {
    fn handle(&self, request: &mut DatagramRequest<'_>) -> io::Result<()> {
        log::info!(
            "===> {:?} from {}",
            String::from_utf8_lossy(request.packet()),
            request.client_address
        );
        let reply = match std::str::from_utf8(request.packet()) {
            Ok("") => strftime(DEFAULT_FORMAT),
            Ok(format) => strftime(format),
            Err(_) => Err("error: the format is not UTF-8".to_owned()),
        };
        request.wfile = reply.unwrap_or_else(|message| message).into_bytes();
        Ok(())
    }
}

pub fn run(args: TimeArgs) -> io::Result<()> {
    let server: UDPServer = new_server(args.bind.as_str(), TimeHandler)?;
    serve(server)
}
