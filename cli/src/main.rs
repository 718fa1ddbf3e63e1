//! `socketserver`: the Python socket tutorials' programs (echo, time, remote
//! exec, file transfer, chat) as servers and clients on this library, wire-compatible with the
//! original Python programs. With no arguments, a guided demo of the server
//! hierarchy.

mod chat;
mod client;
mod demo;
mod echo;
mod exec;
mod files;
mod http;
mod run;
mod time;
mod whoami;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Python's socketserver, in Rust: the socket tutorials' programs as servers
/// and clients.
#[derive(Debug, Parser)]
#[command(name = "socketserver", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// On Ctrl-C or SIGTERM, how long requests in flight may take to finish
    /// before their connections are shut down (a server then exits within
    /// this and about a second, silent clients or not). A second signal
    /// exits at once.
    #[arg(long, global = true, value_name = "SECS", default_value_t = run::DEFAULT_DRAIN_SECS)]
    drain_timeout: f64,
    /// On SIGHUP a server restarts without refusing a connection: it starts
    /// its program again (the same path, so an upgraded binary takes over;
    /// the same arguments) and hands it the listening socket; once the new
    /// process is ready, this one stops accepting and finishes its requests
    /// within --drain-timeout. This is how long the new process has to be
    /// ready: past it, it is killed and this one serves on.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 60.0)]
    restart_timeout: f64,
    /// Stream servers: at most N connections open at once; one more is
    /// refused as it is accepted (the HTTP server answers 503), and
    /// connections are accepted again as others close. Default: no cap.
    #[arg(long, global = true, value_name = "N")]
    max_connections: Option<usize>,
    /// Stream servers: at most N open connections per client IP address,
    /// refused as with --max-connections. Behind a load balancer this is
    /// the balancer's address, even with --proxy-protocol.
    #[arg(long, global = true, value_name = "N")]
    max_per_ip: Option<usize>,
    /// Stream servers: a deadline for each request, from when its handler
    /// starts (a kept connection's starts again with each request); past
    /// it the connection is cut. --timeout bounds each read only.
    #[arg(long, global = true, value_name = "SECS")]
    request_timeout: Option<f64>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Echo every chunk back (the phone-call and link/communication-loop
    /// programs; UDP echo with --udp).
    Echo(echo::EchoArgs),
    /// The UDP time server: the datagram is a strftime format.
    Time(time::TimeArgs),
    /// The remote command server with the 粘包 fix (length + JSON header).
    Exec(exec::ExecArgs),
    /// The message and file server (the tutorial's Python Transceiver protocol).
    Files(files::FilesArgs),
    /// Serve a directory over HTTP (Python's `python -m http.server`).
    Http(http::HttpArgs),
    /// The UDP "QQ chat" server: replies from stdin, or automatically.
    Chat(chat::ChatArgs),
    /// Reply with the client's address as the server sees it (behind a
    /// load balancer with --proxy-protocol).
    Whoami(whoami::WhoamiArgs),
    /// The matching clients.
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// The guided demo (also what runs with no arguments).
    Demo,
}

/// How the server runs requests (the mix-in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One at a time (Python's TCPServer).
    Sync,
    /// A thread per request (ThreadingMixIn).
    Threading,
    /// A bounded pool of --workers threads (ThreadPoolMixIn).
    Pool,
    /// A coroutine per request on --workers threads, one per core by default
    /// (CoroutineMixIn).
    Coroutine,
    /// A child process per request (ForkingMixIn).
    Forking,
}

/// Where a server listens: an Internet address or a Unix socket path.
#[derive(Debug, Clone, Args)]
pub struct Listen {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:9999")]
    pub bind: String,
    /// Listen on this Unix socket path instead.
    #[arg(long, conflicts_with = "bind")]
    pub unix: Option<PathBuf>,
    /// Permissions of the --unix socket file, in octal (600: only this user
    /// may connect). Set before the server listens. Default: as the umask
    /// leaves them.
    // Checked by hand, not with `requires = "unix"`: clap excuses a missing
    // required argument when one it conflicts with (--bind) is given.
    #[arg(long, value_name = "MODE", value_parser = run::parse_mode)]
    pub unix_mode: Option<u32>,
    /// If the --unix path is a socket file nobody listens on (connecting is
    /// refused: a server that died left it behind), remove it before
    /// binding. A live server's socket, or any other file, is left alone.
    #[arg(long)]
    pub unix_replace_stale: bool,
    /// Serve on this inherited, listening TCP socket (descriptor 3 or
    /// more) instead of binding. Under systemd socket activation the socket
    /// is picked up without this option.
    #[arg(long, value_name = "FD")]
    pub listen_fd: Option<u32>,
    /// Set SO_REUSEPORT: several processes may serve one port, the kernel
    /// spreading connections across them.
    #[arg(long)]
    pub reuse_port: bool,
    /// Speak TLS (TCP), with this PEM certificate chain …
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// … and this PEM private key.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    let result = run::init_restart(cli.restart_timeout)
        .and_then(|()| run::set_drain_timeout(cli.drain_timeout))
        .and_then(|()| run::set_limits(cli.max_connections, cli.max_per_ip, cli.request_timeout))
        .and_then(|()| match cli.command {
            None | Some(Command::Demo) => demo::run(),
            Some(Command::Echo(args)) => echo::run(args),
            Some(Command::Time(args)) => time::run(args),
            Some(Command::Exec(args)) => exec::run(args),
            Some(Command::Files(args)) => files::run(args),
            Some(Command::Http(args)) => http::run(args),
            Some(Command::Chat(args)) => chat::run(args),
            Some(Command::Whoami(args)) => whoami::run(args),
            Some(Command::Client(command)) => client::run(command),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("socketserver: {err}");
            ExitCode::FAILURE
        }
    }
}
