//! The benchmark servers' command line (examples/bench_*_server.rs, driven
//! by benches/servers.rs): `--bind ADDR` (127.0.0.1:0 by default), and, for
//! the servers that take them, `--udp` and `--mode MODE`. Not an example of
//! its own: Cargo builds only the files directly in examples/.

pub struct Args {
    pub bind: String,
    /// `--udp`: serve datagrams instead of a stream.
    #[allow(dead_code)] // not every server takes it
    pub udp: bool,
    /// `--mode MODE`, `default_mode` when not given.
    #[allow(dead_code)] // not every server takes it
    pub mode: String,
}

/// The command line; `takes` names the options beyond `--bind` this server
/// accepts (any other argument panics).
pub fn parse(takes: &[&str], default_mode: &str) -> Args {
    let mut parsed = Args {
        bind: "127.0.0.1:0".to_owned(),
        udp: false,
        mode: default_mode.to_owned(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bind" => parsed.bind = args.next().expect("--bind ADDR"),
            "--udp" if takes.contains(&"--udp") => parsed.udp = true,
            "--mode" if takes.contains(&"--mode") => {
                parsed.mode = args.next().expect("--mode MODE");
            }
            other => panic!("unknown argument {other}"),
        }
    }
    parsed
}
