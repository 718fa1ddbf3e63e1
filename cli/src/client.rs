//! `socketserver client …`: the tutorials' clients, for each server. Messages
//! come from the command line, or, with none, one per line from stdin (the
//! Python clients' `input('>>: ')`).

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use socketserver::framing::{LengthPrefix, MessageCodec};
use socketserver::transceiver::Transceiver;

/// How long a client waits for a reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Send lines to `socketserver echo` and print what comes back.
    Echo {
        #[command(flatten)]
        to: Connect,
        /// Datagrams (UDP) instead of a stream.
        #[arg(long)]
        udp: bool,
        /// Connect to a Unix stream socket instead.
        #[arg(long, conflicts_with = "udp")]
        unix: Option<PathBuf>,
        /// Messages to send (none: read lines from stdin).
        messages: Vec<String>,
    },
    /// Ask `socketserver time` for the time, in strftime formats.
    Time {
        #[command(flatten)]
        to: Connect,
        /// Formats (an empty one means the server's default).
        formats: Vec<String>,
    },
    /// Run commands on `socketserver exec` (length + JSON header framing).
    Exec {
        #[command(flatten)]
        to: Connect,
        /// Command lines (none: read lines from stdin).
        commands: Vec<String>,
    },
    /// Talk to `socketserver files`: send messages, upload files.
    Files {
        #[command(flatten)]
        to: Connect,
        /// Upload this file (repeatable), after the messages.
        #[arg(long = "upload", value_name = "FILE")]
        uploads: Vec<PathBuf>,
        /// Send uploads in the Python Transceiver's exact form (no checksum, no
        /// reply), as the original Python server expects.
        #[arg(long)]
        compat: bool,
        /// Messages to send (none and no uploads: read lines from stdin).
        messages: Vec<String>,
    },
    /// Send chat messages to `socketserver chat`.
    Chat {
        #[command(flatten)]
        to: Connect,
        /// Messages (none: read lines from stdin).
        messages: Vec<String>,
    },
}

/// The server's address.
#[derive(Debug, Clone, Args)]
pub struct Connect {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:9999")]
    connect: String,
}

/// The messages given, or lines from stdin (with a prompt on a terminal).
fn messages(given: Vec<String>) -> Box<dyn Iterator<Item = String>> {
    if !given.is_empty() {
        return Box::new(given.into_iter());
    }
    let interactive = io::stdin().is_terminal();
    Box::new(std::iter::from_fn(move || {
        if interactive {
            eprint!(">>: ");
        }
        let mut line = String::new();
        match io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
        }
    }))
}

fn print_reply(reply: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(reply)?;
    if !reply.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// A stream echo exchange: the server echoes every chunk, so the reply is as
/// long as the message.
fn stream_echo(
    mut stream: impl Read + Write,
    items: Box<dyn Iterator<Item = String>>,
) -> io::Result<()> {
    for message in items {
        if message.is_empty() {
            continue; // the Python clients' `if not msg: continue`: TCP cannot carry an empty message
        }
        stream.write_all(message.as_bytes())?;
        let mut reply = vec![0; message.len()];
        stream.read_exact(&mut reply)?;
        print_reply(&reply)?;
    }
    Ok(())
}

fn udp_socket(server: &str) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(if server.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    })?;
    socket.set_read_timeout(Some(REPLY_TIMEOUT))?;
    socket.connect(server)?;
    Ok(socket)
}

fn udp_exchange(socket: &UdpSocket, message: &[u8]) -> io::Result<Vec<u8>> {
    socket.send(message)?;
    let mut buf = vec![0; 65536];
    let n = socket.recv(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn tcp(server: &str) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(server)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot connect to {server}: {e}")))?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    Ok(stream)
}

pub fn run(command: ClientCommand) -> io::Result<()> {
    match command {
        ClientCommand::Echo {
            to,
            udp: false,
            unix: None,
            messages: given,
        } => stream_echo(tcp(&to.connect)?, messages(given)),
        ClientCommand::Echo {
            unix: Some(path),
            messages: given,
            ..
        } => {
            let stream = UnixStream::connect(&path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot connect to {}: {e}", path.display()),
                )
            })?;
            stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
            stream_echo(stream, messages(given))
        }
        ClientCommand::Echo {
            to,
            udp: true,
            messages: given,
            ..
        } => {
            let socket = udp_socket(&to.connect)?;
            for message in messages(given) {
                print_reply(&udp_exchange(&socket, message.as_bytes())?)?;
            }
            Ok(())
        }
        ClientCommand::Time { to, formats } => {
            let socket = udp_socket(&to.connect)?;
            let formats = if formats.is_empty() {
                vec![String::new()]
            } else {
                formats
            };
            for format in formats {
                print_reply(&udp_exchange(&socket, format.as_bytes())?)?;
            }
            Ok(())
        }
        ClientCommand::Exec { to, commands } => {
            let mut stream = tcp(&to.connect)?;
            let codec = MessageCodec::new(LengthPrefix::NativeI32);
            for command in messages(commands) {
                if command.trim().is_empty() {
                    continue;
                }
                stream.write_all(command.as_bytes())?;
                let (_, body) = codec.read_message(&mut stream)?.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    )
                })?;
                io::stdout().write_all(&body)?;
            }
            Ok(())
        }
        ClientCommand::Files {
            to,
            uploads,
            compat,
            messages: given,
        } => {
            let stream = tcp(&to.connect)?;
            let mut transceiver = Transceiver::new(stream, ".");
            let items = if given.is_empty() && uploads.is_empty() {
                messages(given)
            } else {
                Box::new(given.into_iter())
            };
            for message in items {
                if message.is_empty() {
                    continue;
                }
                transceiver.send(&message)?;
                if message == "q" || message == "Q" {
                    return Ok(());
                }
                if message == "file" || message == "FILE" {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "use --upload FILE to send a file",
                    ));
                }
                let reply = transceiver.recv()?.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    )
                })?;
                println!("收到服务端发来的信息:{reply}");
            }
            for path in uploads {
                transceiver.send("file")?;
                let size = std::fs::metadata(&path)
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
                    })?
                    .len();
                let bar =
                    indicatif::ProgressBar::new(size).with_message(path.display().to_string());
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                let receipt =
                    transceiver.send_file(&path, !compat, &mut |sent| bar.set_position(sent))?;
                bar.finish_and_clear();
                println!(
                    "文件发送成功! {} ({} bytes{})",
                    receipt.name,
                    receipt.size,
                    receipt
                        .checksum
                        .map(|c| format!(", {c} verified by the server"))
                        .unwrap_or_default()
                );
            }
            transceiver.send("q")
        }
        ClientCommand::Chat {
            to,
            messages: given,
        } => {
            let socket = udp_socket(&to.connect)?;
            for message in messages(given) {
                if message.is_empty() {
                    continue; // the Python QQ chat client's `if not msg: continue`
                }
                let reply = udp_exchange(&socket, message.as_bytes())?;
                let from = socket.peer_addr()?.to_string();
                println!(
                    "{}",
                    crate::chat::incoming(
                        &from,
                        &String::from_utf8_lossy(&reply),
                        io::stdout().is_terminal()
                    )
                );
            }
            Ok(())
        }
    }
}
