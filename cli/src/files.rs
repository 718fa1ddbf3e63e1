//! `socketserver files`: the tutorials' message and file server (its Python
//! `Transceiver` class). A message is answered with a timestamped
//! acknowledgement, "file" starts an upload (stored in --dir), "q" ends the
//! session. The Python server limited itself to five threads
//! (`if len(threading.enumerate()) <= max_connect`); this runs on a pool of
//! five workers.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use socketserver::transceiver::Transceiver;
use socketserver::{RequestHandler, StreamOptions, StreamRequest, ThreadPoolTCPServer};

use crate::run::{new_server, serve};

#[derive(Debug, Args)]
pub struct FilesArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50007")]
    bind: String,
    /// Where uploads are stored (created if missing).
    #[arg(long, default_value = "received")]
    dir: PathBuf,
    /// Sessions served at once (the Python server's max_connect).
    #[arg(long, default_value_t = 5)]
    workers: usize,
    /// Largest upload accepted, in bytes.
    #[arg(long)]
    max_file_size: Option<u64>,
    /// Drop a session that sends nothing (and reads nothing) for this many
    /// seconds; 0: wait for ever.
    #[arg(long, default_value_t = 300.0)]
    timeout: f64,
}

/// The Python server's acknowledgement of a message.
pub fn acknowledgement(message: &str) -> String {
    let now = chrono::Local::now().format("%Y年%m月%d日%H时%M分%S秒");
    format!("服务端于{now}收到了你发来的“{message}”信息!")
}

#[derive(Debug)]
struct FilesHandler {
    dir: PathBuf,
    max_file_size: Option<u64>,
    timeout: Option<Duration>,
}

impl RequestHandler for FilesHandler {
    /// A session holds one of the few workers for as long as it lasts: one
    /// that stalls mid-message (or whose client vanished without a FIN)
    /// must not hold it for ever, or five of them stop the server.
    fn options(&self) -> StreamOptions {
        StreamOptions {
            timeout: self.timeout,
            ..StreamOptions::default()
        }
    }

    fn handle(&self, request: &mut StreamRequest<'_>) -> io::Result<()> {
        let client = request.client_address.clone();
        let mut transceiver = Transceiver::new(request.connection, &self.dir);
        if let Some(max) = self.max_file_size {
            transceiver.max_file_size = max;
        }
        while let Some(message) = transceiver.recv()? {
            match message.as_str() {
                "q" | "Q" => break,
                "file" | "FILE" => {
                    // A failed upload ends the session: the rest of its bytes
                    // may still be on the way, and would read as messages.
                    let receipt = transceiver.recv_file()?;
                    log::info!(
                        "{client}: received {} ({} bytes) into {}",
                        receipt.name,
                        receipt.size,
                        receipt.path.display()
                    );
                }
                _ => {
                    log::info!("{client}: {message}");
                    transceiver.send(&acknowledgement(&message))?;
                }
            }
        }
        Ok(())
    }
}

pub fn run(args: FilesArgs) -> io::Result<()> {
    std::fs::create_dir_all(&args.dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot create the upload directory {}: {e}",
                args.dir.display()
            ),
        )
    })?;
    let timeout = match args.timeout {
        0.0 => None,
        seconds => crate::run::seconds(Some(seconds))?,
    };
    let handler = FilesHandler {
        dir: args.dir,
        max_file_size: args.max_file_size,
        timeout,
    };
    let mut server: ThreadPoolTCPServer = new_server(args.bind.as_str(), handler)?;
    server.mixin.workers = args.workers;
    serve(server)
}
