//! The benchmark servers' command line (examples/bench_*_server.rs, driven
//! by benches/servers.rs): `--bind ADDR` (127.0.0.1:0 by default), and, for
//! the servers that take them, `--udp`, `--mode MODE` and `--directory DIR`. Not an example of
//! its own: Cargo builds only the files directly in examples/.

pub struct Args {
    pub bind: String,
    /// `--udp`: serve datagrams instead of a stream.
    #[allow(dead_code)] // not every server takes it
    pub udp: bool,
    /// `--mode MODE`, `default_mode` when not given.
    #[allow(dead_code)] // not every server takes it
    pub mode: String,
    /// `--directory DIR`: what an HTTP anchor serves (`.` when not given).
    #[allow(dead_code)] // not every server takes it
    pub directory: std::path::PathBuf,
}

/// The command line; `takes` names the options beyond `--bind` this server
/// accepts (any other argument panics).
pub fn parse(takes: &[&str], default_mode: &str) -> Args {
    let mut parsed = Args {
        bind: "127.0.0.1:0".to_owned(),
        udp: false,
        mode: default_mode.to_owned(),
        directory: ".".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bind" => parsed.bind = args.next().expect("--bind ADDR"),
            "--udp" if takes.contains(&"--udp") => parsed.udp = true,
            "--mode" if takes.contains(&"--mode") => {
                parsed.mode = args.next().expect("--mode MODE");
            }
            "--directory" if takes.contains(&"--directory") => {
                parsed.directory = args.next().expect("--directory DIR").into();
            }
            other => panic!("unknown argument {other}"),
        }
    }
    parsed
}
