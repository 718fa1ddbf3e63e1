//! `cargo bench --bench servers [-- --quick] [-- SCENARIO…]`: this crate's
//! servers side by side with a hand-written std server, tokio and CPython's
//! socketserver, every server its own process on loopback.
//!
//! Scenarios (see docs/benchmarks.md): `pingpong` (a), `churn` (b), `burst`
//! (c), `idle` (d), `shutdown` (e), `udp` (f), `framed` (g). Within a
//! scenario the servers alternate (A B C A B C …) for several rounds and the
//! median is reported, so that a drifting machine does not favour one.
//!
//! A filter may name one ping-pong configuration: `pingpong-4096-500`.
//! `BENCH_ROUNDS=N` overrides the number of rounds.
//!
//! `BENCH_BASELINE=path/to/another/socketserver` adds that build's sync,
//! threading, pool and coroutine modes as "baseline …" rows, for before/after
//! comparisons of a change.
//!
//! A full run writes docs/benchmarks.md (between its generated-results
//! markers) and docs/bench/*.svg; `--quick` (fewer rounds, shorter windows,
//! 1,000 idle connections only) or a scenario filter writes to
//! target/bench/ instead, unless `--out DIR` says otherwise.

// Shared with cli/tests/bench_smoke.rs, which uses a part of it.
#[allow(dead_code)]
#[path = "servers/harness.rs"]
mod harness;
#[path = "servers/http.rs"]
mod http;
#[path = "servers/python.rs"]
mod python;
#[path = "servers/report.rs"]
mod report;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{Burst, Churn, Idle, Measured, PingPong, ServerSpec, Shutdown, UdpEcho};
use report::{Cell, Figure, Panel, Series, Table};

const STD: &str = "std threads";
const TOKIO: &str = "tokio";
const CPYTHON: &str = "CPython";
const SYNC: &str = "socketserver sync";
const THREADING: &str = "socketserver threading";
const POOL: &str = "socketserver pool";
const COROUTINE: &str = "socketserver coroutine";
// axum is the HTTP scenario's anchor only (no echo table has its row).
const ANCHORS: [&str; 4] = [STD, TOKIO, http::AXUM, CPYTHON];

/// What a run measures, and for how long.
#[derive(Debug, Clone)]
struct Config {
    quick: bool,
    rounds: usize,
    warmup: Duration,
    window: Duration,
    sizes: Vec<usize>,
    connections: Vec<usize>,
    churn_clients: usize,
    burst: usize,
    burst_deadline: Duration,
    idle: Vec<usize>,
    idle_rounds: usize,
    busy_clients: usize,
    grace: Duration,
    udp_sockets: usize,
    framed_connections: usize,
    framed_bodies: Vec<usize>,
    /// wrk's measured run, whole seconds (wrk takes no less).
    http_seconds: u64,
    /// An unmeasured wrk run first, seconds.
    http_warmup: Option<u64>,
    filters: Vec<String>,
    out: Option<PathBuf>,
}

impl Config {
    fn from_args() -> Config {
        let mut quick = false;
        let mut filters = Vec::new();
        let mut out = None;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                "--out" => out = args.next().map(PathBuf::from),
                // cargo bench passes --bench; libtest options mean nothing here.
                a if a.starts_with("--") => {}
                a => filters.push(a.to_owned()),
            }
        }
        if quick {
            Config {
                quick,
                rounds: 1,
                warmup: Duration::from_millis(100),
                window: Duration::from_millis(250),
                sizes: vec![64, 4096],
                connections: vec![1, 50, 500],
                churn_clients: 8,
                burst: 2000,
                burst_deadline: Duration::from_millis(2500),
                idle: vec![1000],
                idle_rounds: 1,
                busy_clients: 100,
                grace: Duration::from_millis(500),
                udp_sockets: 32,
                framed_connections: 16,
                framed_bodies: vec![16 * 1024, 1024],
                http_seconds: 1,
                http_warmup: None,
                filters,
                out,
            }
        } else {
            Config {
                quick,
                rounds: 3,
                warmup: Duration::from_millis(150),
                window: Duration::from_millis(600),
                sizes: vec![64, 4096],
                connections: vec![1, 50, 500],
                churn_clients: 8,
                burst: 2000,
                burst_deadline: Duration::from_secs(3),
                idle: vec![1000, 10_000],
                idle_rounds: 2,
                busy_clients: 100,
                grace: Duration::from_secs(1),
                udp_sockets: 32,
                framed_connections: 16,
                framed_bodies: vec![16 * 1024, 1024],
                http_seconds: 4,
                http_warmup: Some(1),
                filters,
                out,
            }
        }
    }

    fn wants(&self, scenario: &str) -> bool {
        self.filters.is_empty()
            || self
                .filters
                .iter()
                .any(|f| scenario.contains(f.as_str()) || f.starts_with(scenario))
    }

    /// Whether a ping-pong configuration runs: all of them, unless a filter
    /// names some (`pingpong-4096-500`).
    fn wants_config(&self, id: &str) -> bool {
        let named: Vec<&String> = self
            .filters
            .iter()
            .filter(|f| f.starts_with("pingpong-"))
            .collect();
        named.is_empty() || named.iter().any(|f| f.as_str() == id)
    }

    fn with_env(mut self) -> Config {
        if let Some(rounds) = std::env::var("BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
        {
            self.rounds = rounds;
        }
        self
    }

    fn out_dir(&self) -> PathBuf {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        match &self.out {
            Some(dir) => dir.clone(),
            None if self.quick || !self.filters.is_empty() => target_dir().join("bench"),
            None => manifest.join("docs"),
        }
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The programs under test.
#[derive(Debug)]
struct Bins {
    socketserver: PathBuf,
    std: PathBuf,
    tokio: PathBuf,
    framed: PathBuf,
    /// The HTTP scenario's anchors.
    axum_http: PathBuf,
    tiny_http: PathBuf,
    python: Option<PathBuf>,
    /// Another build of the `socketserver` program (`BENCH_BASELINE`), run
    /// beside this one as "baseline …": before/after comparisons.
    baseline: Option<PathBuf>,
}

/// Builds the servers in release mode (cargo bench has built the bench
/// itself, not the binary and examples it runs).
fn build() -> io::Result<Bins> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    eprintln!("building the servers (cargo build --release) …");
    let status = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--release",
            // The program is the workspace's cli package; the examples are
            // this package's.
            "-p",
            "socketserver-cli",
            "--bin",
            "socketserver",
            "-p",
            "socketserver",
            "--example",
            "bench_std_server",
            "--example",
            "bench_tokio_server",
            "--example",
            "bench_framed_server",
            "--example",
            "bench_axum_http",
            "--example",
            "bench_tiny_http",
        ])
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!("cargo build failed: {status}")));
    }
    let release = target_dir().join("release");
    let python = Command::new("python3")
        .args(["-c", "import socketserver"])
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| PathBuf::from("python3"));
    if python.is_none() {
        eprintln!("python3 not found: the CPython columns stay empty");
    }
    Ok(Bins {
        socketserver: release.join("socketserver"),
        std: release.join("examples/bench_std_server"),
        tokio: release.join("examples/bench_tokio_server"),
        framed: release.join("examples/bench_framed_server"),
        axum_http: release.join("examples/bench_axum_http"),
        tiny_http: release.join("examples/bench_tiny_http"),
        python,
        baseline: std::env::var_os("BENCH_BASELINE").map(PathBuf::from),
    })
}

impl Bins {
    fn crate_server(
        &self,
        name: &str,
        mode: &str,
        udp: bool,
        workers: Option<usize>,
    ) -> ServerSpec {
        Self::echo_program(&self.socketserver, name, mode, udp, workers)
    }

    fn echo_program(
        program: &Path,
        name: &str,
        mode: &str,
        udp: bool,
        workers: Option<usize>,
    ) -> ServerSpec {
        let mut spec = ServerSpec::new(
            name,
            program,
            &["echo", "--bind", "127.0.0.1:0", "--mode", mode],
        )
        // The echo program logs each connection at info level; the other
        // servers log nothing, so neither does it here.
        .with_env("RUST_LOG", "warn");
        if udp {
            spec = spec.with_args(&["--udp"]);
        }
        if let Some(workers) = workers {
            spec = spec.with_args(&["--workers", &workers.to_string()]);
        }
        if mode == "threading" {
            spec = spec.threads_per_connection();
        }
        spec
    }

    /// The echo servers: this crate's modes, then the anchors. `workers`
    /// sizes the pool (a pool worker serves one connection for as long as
    /// it stays open).
    fn echo_servers(&self, udp: bool, sync: bool, workers: Option<usize>) -> Vec<ServerSpec> {
        let mut specs = Vec::new();
        if sync {
            specs.push(self.crate_server(SYNC, "sync", udp, None));
        }
        specs.push(self.crate_server(THREADING, "threading", udp, None));
        specs.push(self.crate_server(POOL, "pool", udp, workers));
        specs.push(self.crate_server(COROUTINE, "coroutine", udp, None));
        if let Some(baseline) = &self.baseline {
            if sync {
                specs.push(Self::echo_program(
                    baseline,
                    "baseline sync",
                    "sync",
                    udp,
                    None,
                ));
            }
            specs.push(Self::echo_program(
                baseline,
                "baseline threading",
                "threading",
                udp,
                None,
            ));
            specs.push(Self::echo_program(
                baseline,
                "baseline pool",
                "pool",
                udp,
                workers,
            ));
            specs.push(Self::echo_program(
                baseline,
                "baseline coroutine",
                "coroutine",
                udp,
                None,
            ));
        }
        let udp_arg: &[&str] = if udp { &["--udp"] } else { &[] };
        specs.push(
            ServerSpec::new(STD, &self.std, &["--bind", "127.0.0.1:0"])
                .with_args(udp_arg)
                .threads_per_connection(),
        );
        specs.push(
            ServerSpec::new(TOKIO, &self.tokio, &["--bind", "127.0.0.1:0"]).with_args(udp_arg),
        );
        if let Some(python) = &self.python {
            let kind = if udp { "udp" } else { "tcp" };
            specs.push(
                ServerSpec::new(CPYTHON, python, &["-c", python::ECHO_SERVER, kind])
                    .threads_per_connection()
                    // Python < 3.15 listens with a backlog of 5.
                    .with_accept_window(4),
            );
        }
        specs
    }
}

/// Runs `measure` for every server, `rounds` times, alternating servers
/// within each round. Returns each server's results, in `specs` order.
fn alternate<T>(
    label: &str,
    rounds: usize,
    specs: &[ServerSpec],
    mut measure: impl FnMut(&ServerSpec) -> io::Result<T>,
    mut describe: impl FnMut(&T) -> String,
) -> Vec<Vec<Result<T, String>>> {
    let mut results: Vec<Vec<Result<T, String>>> = specs.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (spec, slot) in specs.iter().zip(results.iter_mut()) {
            let started = Instant::now();
            let result = measure(spec).map_err(|e| e.to_string());
            match &result {
                Ok(r) => eprintln!(
                    "  {label} | {:<24} | round {} | {} ({:.1} s)",
                    spec.name,
                    round + 1,
                    describe(r),
                    started.elapsed().as_secs_f64()
                ),
                Err(e) => eprintln!(
                    "  {label} | {:<24} | round {} | failed: {e}",
                    spec.name,
                    round + 1
                ),
            }
            slot.push(result);
        }
    }
    results
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

type Extract<'a, T> = &'a dyn Fn(&T) -> Option<f64>;

/// Median of each figure over a server's successful rounds; the first
/// error when every round failed.
fn cells<T>(rounds: &[Result<T, String>], figures: &[Extract<'_, T>]) -> Vec<Cell> {
    let ok: Vec<&T> = rounds.iter().filter_map(|r| r.as_ref().ok()).collect();
    if ok.is_empty() {
        let error = rounds
            .iter()
            .find_map(|r| r.as_ref().err())
            .map_or("not run".to_owned(), |e| format!("failed: {}", short(e)));
        return figures.iter().map(|_| Cell::Text(error.clone())).collect();
    }
    figures
        .iter()
        .map(|f| match median(ok.iter().filter_map(|r| f(r)).collect()) {
            Some(v) => Cell::Value(v),
            None => Cell::Text("–".into()),
        })
        .collect()
}

fn short(error: &str) -> String {
    let e: String = error.chars().take(60).collect();
    e.replace('|', "/")
}

/// A line of the ping-pong charts: (connections, req/s, p99 µs) points.
type Line = Vec<(f64, f64, f64)>;

/// Everything a run produced.
#[derive(Debug, Default)]
struct Results {
    tables: Vec<(String, Table)>,
    /// (size, server) → [(connections, req/s, p99 µs)].
    pingpong: Vec<(usize, String, Line)>,
    /// server → [(idle connections, KiB per connection)].
    idle: Vec<(String, Vec<(f64, f64)>)>,
    /// framed body size → what its MD5 alone costs.
    md5: Vec<(usize, String)>,
}

impl Results {
    fn table(&self, id: &str) -> Option<&Table> {
        self.tables.iter().find(|(i, _)| i == id).map(|(_, t)| t)
    }
}

fn ping_pong_figures() -> Vec<Figure> {
    vec![
        Figure::ratio("req/s"),
        Figure::ratio("p50 µs"),
        Figure::ratio("p99 µs"),
        Figure::ratio("p99.9 µs"),
        Figure::ratio("server CPU µs/req"),
        Figure::plain("server context switches/req"),
        Figure::plain("errors"),
    ]
}

fn measured_extracts<'a>() -> [Extract<'a, Measured>; 7] {
    [
        &|m: &Measured| Some(m.rate()),
        &|m: &Measured| Some(m.latency_us(0.5)),
        &|m: &Measured| Some(m.latency_us(0.99)),
        &|m: &Measured| Some(m.latency_us(0.999)),
        &|m: &Measured| m.cpu_us_per_op(),
        &|m: &Measured| m.switches_per_op(),
        &|m: &Measured| Some(m.errors as f64),
    ]
}

fn describe_measured(m: &Measured) -> String {
    format!(
        "{:.0}/s, p99 {:.0} µs, CPU {} µs/op, {} switches/op, errors {}",
        m.rate(),
        m.latency_us(0.99),
        m.cpu_us_per_op().map_or("?".into(), |c| format!("{c:.2}")),
        m.switches_per_op()
            .map_or("?".into(), |c| format!("{c:.2}")),
        m.errors
    )
}

fn size_name(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// (a) Ping-pong echo.
fn ping_pong(config: &Config, bins: &Bins, results: &mut Results) {
    for &size in &config.sizes {
        let mut lines: Vec<(String, Line)> = Vec::new();
        for &connections in &config.connections {
            if !config.wants_config(&format!("pingpong-{size}-{connections}")) {
                continue;
            }
            let label = format!("(a) ping-pong {} × {connections}", size_name(size));
            eprintln!("{label}");
            // Sync serves one connection at a time: only one connection
            // would ever be answered.
            let sync = connections == 1;
            let specs = bins.echo_servers(false, sync, Some(connections.max(64)));
            let load = PingPong {
                warmup: config.warmup,
                ..PingPong::echo(connections, size)
            };
            let rounds = alternate(
                &label,
                config.rounds,
                &specs,
                |spec| {
                    let server = spec.start()?;
                    load.start(server.addr)?
                        .measure(config.window, Some(&server))
                },
                describe_measured,
            );
            let mut table = Table::new(
                &format!(
                    "(a) Ping-pong echo, {} messages, {connections} connection{}",
                    size_name(size),
                    if connections == 1 { "" } else { "s" }
                ),
                "",
                ping_pong_figures(),
            );
            if !sync {
                table.rows.push((
                    SYNC.into(),
                    vec![Cell::Text("n/a: one connection at a time".into())],
                ));
            }
            let extracts = measured_extracts();
            for (spec, rounds) in specs.iter().zip(&rounds) {
                let cells = cells(rounds, &extracts);
                if let (Some(rate), Some(p99)) = (cells[0].value(), cells[2].value()) {
                    match lines.iter_mut().find(|(n, _)| *n == spec.name) {
                        Some((_, points)) => points.push((connections as f64, rate, p99)),
                        None => {
                            lines.push((spec.name.clone(), vec![(connections as f64, rate, p99)]))
                        }
                    }
                }
                table.rows.push((spec.name.clone(), cells));
            }
            results
                .tables
                .push((format!("pingpong-{size}-{connections}"), table));
        }
        for (name, points) in lines {
            results.pingpong.push((size, name, points));
        }
    }
}

/// (b) Connection churn.
fn churn(config: &Config, bins: &Bins, results: &mut Results) {
    let label = format!("(b) churn, {} clients", config.churn_clients);
    eprintln!("{label}");
    let specs = bins.echo_servers(false, true, None);
    let load = Churn {
        concurrency: config.churn_clients,
        threads: 2,
        request: Arc::new(vec![b'c'; 64]),
        warmup: config.warmup,
    };
    let rounds = alternate(
        &label,
        config.rounds,
        &specs,
        |spec| {
            let server = spec.start()?;
            load.start(server.addr)?
                .measure(config.window, Some(&server))
        },
        describe_measured,
    );
    let mut table = Table::new(
        "(b) Connection churn: a new connection per 64-byte echo",
        &format!(
            "{} clients at once, each connecting, sending 64 bytes, reading the echo and closing. Latency is connect to echo.",
            config.churn_clients
        ),
        vec![
            Figure::ratio("connections/s"),
            Figure::ratio("p50 µs"),
            Figure::ratio("p99 µs"),
            Figure::ratio("server CPU µs/conn"),
            Figure::plain("errors"),
        ],
    );
    let extracts: [Extract<'_, Measured>; 5] = [
        &|m| Some(m.rate()),
        &|m| Some(m.latency_us(0.5)),
        &|m| Some(m.latency_us(0.99)),
        &|m| m.cpu_us_per_op(),
        &|m| Some(m.errors as f64),
    ];
    for (spec, rounds) in specs.iter().zip(&rounds) {
        table
            .rows
            .push((spec.name.clone(), cells(rounds, &extracts)));
    }
    results.tables.push(("churn".into(), table));
}

/// (c) Simultaneous connects.
fn burst(config: &Config, bins: &Bins, results: &mut Results) {
    let label = format!("(c) {} simultaneous connects", config.burst);
    eprintln!("{label}");
    let specs = bins.echo_servers(false, true, None);
    let rounds = alternate(
        &label,
        config.rounds,
        &specs,
        |spec| {
            let server = spec.start()?;
            harness::connect_burst(server.addr, config.burst, config.burst_deadline)
        },
        |b: &Burst| {
            format!(
                "ok {}, late {}, refused {}, reset {}, timed out {}, other {} in {:.0} ms",
                b.ok,
                b.late,
                b.refused,
                b.reset,
                b.timed_out,
                b.other,
                b.elapsed.as_secs_f64() * 1e3
            )
        },
    );
    let mut table = Table::new(
        &format!("(c) {} simultaneous connects", config.burst),
        &format!(
            "All connects started at once, non-blocking; each connection sends a byte and waits for its echo. \"Late\" means echoed only after a second or more: the listen backlog was full, the SYN dropped and retransmitted. Deadline {} s.",
            config.burst_deadline.as_secs_f64()
        ),
        vec![
            Figure::plain("echoed < 1 s"),
            Figure::plain("late (SYN retried)"),
            Figure::plain("refused"),
            Figure::plain("reset"),
            Figure::plain("timed out"),
            Figure::ratio("all done, ms"),
        ],
    );
    let extracts: [Extract<'_, Burst>; 6] = [
        &|b| Some(b.ok as f64),
        &|b| Some(b.late as f64),
        &|b| Some(b.refused as f64),
        &|b| Some((b.reset + b.other) as f64),
        &|b| Some(b.timed_out as f64),
        &|b| Some(b.elapsed.as_secs_f64() * 1e3),
    ];
    for (spec, rounds) in specs.iter().zip(&rounds) {
        table
            .rows
            .push((spec.name.clone(), cells(rounds, &extracts)));
    }
    results.tables.push(("burst".into(), table));
}

/// (d) Idle memory.
fn idle(config: &Config, bins: &Bins, results: &mut Results) {
    let specs = bins.echo_servers(false, false, None);
    let mut figures = Vec::new();
    let mut columns: Vec<Vec<Cell>> = specs.iter().map(|_| Vec::new()).collect();
    for &n in &config.idle {
        let label = format!("(d) {n} idle connections");
        eprintln!("{label}");
        let limit = Duration::from_secs(if n > 2000 { 90 } else { 30 });
        let rounds = alternate(
            &label,
            config.idle_rounds,
            &specs,
            |spec| {
                let server = spec.start()?;
                harness::idle_memory(&server, n, limit)
            },
            |i: &Idle| {
                format!(
                    "held {}/{}, RSS {} → {} KiB, {:.1} KiB/conn",
                    i.held,
                    i.requested,
                    i.rss_before_kib,
                    i.rss_after_kib,
                    i.kib_per_connection().unwrap_or(f64::NAN)
                )
            },
        );
        figures.push(Figure::ratio(&format!(
            "KiB/conn @ {}",
            report::format_value(n as f64)
        )));
        figures.push(Figure::plain(&format!(
            "held @ {}",
            report::format_value(n as f64)
        )));
        let extracts: [Extract<'_, Idle>; 2] =
            [&|i| i.kib_per_connection(), &|i| Some(i.held as f64)];
        for ((spec, rounds), column) in specs.iter().zip(&rounds).zip(columns.iter_mut()) {
            let c = cells(rounds, &extracts);
            if let Some(kib) = c[0].value() {
                match results.idle.iter_mut().find(|(name, _)| *name == spec.name) {
                    Some((_, points)) => points.push((n as f64, kib)),
                    None => results
                        .idle
                        .push((spec.name.clone(), vec![(n as f64, kib)])),
                }
            }
            column.extend(c);
        }
    }
    let mut table = Table::new(
        "(d) Idle connections: server memory",
        "Connections that never send a byte. KiB/conn is the server's RSS growth divided by the connections it holds (its new descriptors). The pool keeps silent connections out of its workers, up to `max_waiting` (4,096); beyond that it stops accepting and the rest wait in the listen backlog, outside the server.",
        figures,
    );
    table.rows.push((
        SYNC.into(),
        vec![Cell::Text("n/a: one connection at a time".into())],
    ));
    for (spec, column) in specs.iter().zip(columns) {
        table.rows.push((spec.name.clone(), column));
    }
    results.tables.push(("idle".into(), table));
}

/// (e) Shutdown latency.
fn shutdown(config: &Config, bins: &Bins, results: &mut Results) {
    let label = "(e) shutdown, idle";
    eprintln!("{label}");
    let specs = bins.echo_servers(false, true, Some(config.busy_clients.max(64)));
    let describe = |s: &Shutdown| {
        format!(
            "after signal {:?}, after clients left {:?}",
            s.after_signal, s.after_clients_left
        )
    };
    let idle = alternate(
        label,
        config.rounds,
        &specs,
        harness::shutdown_idle,
        describe,
    );
    let label = format!("(e) shutdown, {} busy clients", config.busy_clients);
    eprintln!("{label}");
    let busy = alternate(
        &label,
        config.rounds,
        &specs,
        |spec| {
            if spec.name == SYNC {
                return Err(io::Error::other("n/a: one connection at a time"));
            }
            harness::shutdown_busy(spec, config.busy_clients, config.grace)
        },
        describe,
    );
    let mut table = Table::new(
        "(e) Shutdown: SIGTERM to exit (waitpid)",
        &format!(
            "Idle: after one exchange. Busy: {} connections ping-ponging; they go on for {} ms after the signal, and if the server has not exited by then they close, and the time from their leaving to the exit is given instead. Graceful servers (this crate, Python's `block_on_close`) finish the connections they serve before exiting; the std server dies of the signal, tokio drops its tasks.",
            config.busy_clients,
            config.grace.as_millis()
        ),
        vec![
            Figure::ratio("idle, ms"),
            Figure::plain("busy, ms"),
            Figure::plain("busy: after clients left, ms"),
        ],
    );
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
    for (spec, (idle, busy)) in specs.iter().zip(idle.iter().zip(&busy)) {
        let mut row = cells(idle, &[&|s: &Shutdown| ms(s.after_signal)]);
        let busy_ok: Vec<&Shutdown> = busy.iter().filter_map(|r| r.as_ref().ok()).collect();
        if busy_ok.is_empty() {
            let text = busy
                .iter()
                .find_map(|r| r.as_ref().err())
                .map_or("–".to_owned(), |e| short(e));
            row.push(Cell::Text(text.clone()));
            row.push(Cell::Text(text));
        } else {
            let exited: Vec<f64> = busy_ok.iter().filter_map(|s| ms(s.after_signal)).collect();
            let waited: Vec<f64> = busy_ok
                .iter()
                .filter_map(|s| ms(s.after_clients_left))
                .collect();
            row.push(if exited.len() * 2 > busy_ok.len() {
                Cell::Value(median(exited).unwrap_or(f64::NAN))
            } else {
                Cell::Text(format!(
                    "waits for its clients (> {} ms)",
                    config.grace.as_millis()
                ))
            });
            row.push(match median(waited) {
                Some(v) => Cell::Value(v),
                None => Cell::Text("–".into()),
            });
        }
        table.rows.push((spec.name.clone(), row));
    }
    results.tables.push(("shutdown".into(), table));
}

/// (f) UDP echo.
fn udp(config: &Config, bins: &Bins, results: &mut Results) {
    let label = format!("(f) UDP echo, {} sockets", config.udp_sockets);
    eprintln!("{label}");
    let specs = bins.echo_servers(true, true, None);
    let load = UdpEcho {
        sockets: config.udp_sockets,
        threads: 2,
        size: 64,
        timeout: Duration::from_millis(100),
        warmup: config.warmup,
    };
    let rounds = alternate(
        &label,
        config.rounds,
        &specs,
        |spec| {
            let server = spec.start()?;
            load.start(server.addr)?
                .measure(config.window, Some(&server))
        },
        |m: &Measured| format!("{}, lost {}", describe_measured(m), m.lost),
    );
    let mut table = Table::new(
        "(f) UDP echo, 64-byte datagrams",
        &format!(
            "{} client sockets, one datagram in flight each; a datagram not echoed within 100 ms counts as lost and the next is sent. The threading mode starts a thread per datagram, as Python's `ThreadingUDPServer`; the CPython row is the plain `UDPServer`.",
            config.udp_sockets
        ),
        vec![
            Figure::ratio("datagrams/s"),
            Figure::plain("loss %"),
            Figure::ratio("p50 µs"),
            Figure::ratio("p99 µs"),
            Figure::ratio("server CPU µs/datagram"),
        ],
    );
    let extracts: [Extract<'_, Measured>; 5] = [
        &|m| Some(m.rate()),
        &|m| Some(100.0 * m.lost as f64 / (m.lost + m.completed).max(1) as f64),
        &|m| Some(m.latency_us(0.5)),
        &|m| Some(m.latency_us(0.99)),
        &|m| m.cpu_us_per_op(),
    ];
    for (spec, rounds) in specs.iter().zip(&rounds) {
        table
            .rows
            .push((spec.name.clone(), cells(rounds, &extracts)));
    }
    results.tables.push(("udp".into(), table));
}

/// The framed request of scenario (g), and the reply the server sends.
fn framed_messages(body_len: usize) -> (Vec<u8>, Vec<u8>) {
    use socketserver::framing::{header_for, Header, MessageCodec};
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let body: Vec<u8> = (0..body_len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let codec = MessageCodec::default();
    let mut request = Vec::new();
    codec
        .write_message(&mut request, &header_for(&body), &body)
        .expect("encode the request");
    let mut ok = Header::default();
    ok.extra.insert("ok".into(), true.into());
    let mut reply = Vec::new();
    codec
        .write_header(&mut reply, &ok)
        .expect("encode the reply");
    (request, reply)
}

/// What the MD5 of one `body`-byte body costs alone, in Rust (md-5, as
/// the server) and in Python (hashlib, OpenSSL): the floor under both
/// servers' CPU per request.
fn md5_costs(bins: &Bins, body: usize) -> String {
    let data = vec![0x5a_u8; body];
    let rounds = 2000;
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(
            socketserver::framing::Checksum::Md5.digest_hex(std::hint::black_box(&data)),
        );
    }
    let rust = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let python = bins.python.as_ref().and_then(|python| {
        let script = format!(
            "import hashlib, time\nb = bytes({body})\nn = {rounds}\nt = time.perf_counter()\nfor _ in range(n): hashlib.md5(b).hexdigest()\nprint((time.perf_counter() - t) / n * 1e6)"
        );
        let out = Command::new(python).args(["-c", &script]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse::<f64>().ok()
    });
    match python {
        Some(p) => format!("Rust {rust:.2} µs, Python {p:.2} µs"),
        None => format!("Rust {rust:.2} µs"),
    }
}

/// (g) The CPU-bound framed handler.
fn framed(config: &Config, bins: &Bins, results: &mut Results) {
    let mut specs = vec![
        ServerSpec::new(
            THREADING,
            &bins.framed,
            &["--bind", "127.0.0.1:0", "--mode", "threading"],
        ),
        ServerSpec::new(
            COROUTINE,
            &bins.framed,
            &["--bind", "127.0.0.1:0", "--mode", "coroutine"],
        ),
    ];
    if let Some(python) = &bins.python {
        specs.push(ServerSpec::new(
            CPYTHON,
            python,
            &["-c", python::FRAMED_SERVER],
        ));
    }
    for &body in &config.framed_bodies {
        let md5 = md5_costs(bins, body);
        results.md5.push((body, md5.clone()));
        let label = format!(
            "(g) framed md5, {} body, {} connections",
            size_name(body),
            config.framed_connections
        );
        eprintln!("{label}");
        let (request, reply) = framed_messages(body);
        let load = PingPong {
            connections: config.framed_connections,
            reply_len: reply.len(),
            expect: Some(Arc::new(reply)),
            request: Arc::new(request),
            threads: 2,
            warmup: config.warmup,
        };
        let rounds = alternate(
            &label,
            config.rounds,
            &specs,
            |spec| {
                let server = spec.start()?;
                load.start(server.addr)?
                    .measure(config.window, Some(&server))
            },
            describe_measured,
        );
        let mut table = Table::new(
            &format!(
                "(g) CPU-bound handler: framed messages with a {} body, MD5-checked",
                size_name(body)
            ),
            &format!(
                "The tutorials' framed remote-command protocol: `struct.pack('i')` header length, JSON header `{{\"total_size\", \"md5\"}}`, body; the server checks the MD5 and answers `{{\"total_size\": 0, \"ok\": true}}`. {} connections. Rust: examples/bench_framed_server.rs (`ThreadingTCPServer` and `CoroutineTCPServer`, `MessageCodec`); Python: `ThreadingTCPServer`, `StreamRequestHandler`, `json`, `hashlib.md5`. The MD5 of one body alone, in a loop, in-process: {}.",
                config.framed_connections, md5
            ),
            ping_pong_figures(),
        );
        let extracts = measured_extracts();
        for (spec, rounds) in specs.iter().zip(&rounds) {
            table
                .rows
                .push((spec.name.clone(), cells(rounds, &extracts)));
        }
        results.tables.push((format!("framed-{body}"), table));
    }
}

/// The targets of the issue, evaluated on this run, with what the run
/// itself says about a miss.
fn targets(results: &Results) -> String {
    let mut rows: Vec<[String; 5]> = Vec::new();
    let fmt = |v: Option<f64>| v.map_or("–".to_owned(), report::format_ratio);
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "holds".to_owned(),
        Some(false) => "**misses**".to_owned(),
        None => "not measured".to_owned(),
    };
    let get = |id: &str, server: &str, column: usize| results.table(id)?.get(server, column);
    let ratio = |id: &str, a: &str, b: &str, column: usize| -> Option<f64> {
        Some(get(id, a, column)? / get(id, b, column)?)
    };
    let mode = |m: &str| m.trim_start_matches("socketserver ").to_owned();
    let cpu = |id: &str, server: &str, column: usize| {
        get(id, server, column).map_or("–".to_owned(), |v| format!("{v:.2}"))
    };
    // CPU per request, threading vs std.
    for (id, what, column) in [
        ("pingpong-64-50", "ping-pong 64 B × 50", 4),
        ("pingpong-4096-50", "ping-pong 4 KiB × 50", 4),
        ("pingpong-64-500", "ping-pong 64 B × 500", 4),
        ("pingpong-4096-500", "ping-pong 4 KiB × 500", 4),
        ("churn", "churn (per connection)", 3),
    ] {
        let r = ratio(id, THREADING, STD, column);
        rows.push([
            format!("server CPU per request, threading ÷ std: {what}"),
            fmt(r),
            "≤ 1.05×".into(),
            verdict(r.map(|r| r <= 1.05)),
            format!(
                "{} vs {} µs",
                cpu(id, THREADING, column),
                cpu(id, STD, column)
            ),
        ]);
    }
    // Best mode vs tokio at 50 connections.
    for size in [64, 4096] {
        let id = format!("pingpong-{size}-50");
        let best = [THREADING, POOL, COROUTINE]
            .iter()
            .filter_map(|m| Some((*m, ratio(&id, m, TOKIO, 0)?)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let note = best.map_or(String::new(), |(m, _)| {
            format!(
                "CPU/req {} vs {} µs; context switches/req {} vs {}; std threads ÷ tokio {}",
                cpu(&id, m, 4),
                cpu(&id, TOKIO, 4),
                cpu(&id, m, 5),
                cpu(&id, TOKIO, 5),
                fmt(ratio(&id, STD, TOKIO, 0))
            )
        });
        rows.push([
            format!(
                "req/s at 50 connections, best mode{} ÷ tokio, {}",
                best.map_or(String::new(), |(m, _)| format!(" ({})", mode(m))),
                size_name(size)
            ),
            fmt(best.map(|b| b.1)),
            "≥ 1.0×".into(),
            verdict(best.map(|b| b.1 >= 1.0)),
            note,
        ]);
    }
    // Simultaneous connects.
    if let Some(t) = results.table("burst") {
        for m in [THREADING, POOL, COROUTINE, SYNC] {
            let lost = t.get(m, 2).zip(t.get(m, 3)).map(|(a, b)| a + b);
            rows.push([
                format!("2,000 simultaneous connects: refused + reset, {}", mode(m)),
                lost.map_or("–".into(), |l| format!("{l:.0}")),
                "0".into(),
                verdict(lost.map(|l| l == 0.0)),
                format!(
                    "late (SYN retried) {}, timed out {}; std threads late {}",
                    t.get(m, 1).map_or("–".into(), |v| format!("{v:.0}")),
                    t.get(m, 4).map_or("–".into(), |v| format!("{v:.0}")),
                    t.get(STD, 1).map_or("–".into(), |v| format!("{v:.0}")),
                ),
            ]);
        }
    }
    // Idle memory.
    if let Some(t) = results.table("idle") {
        for (i, fig) in t.figures.iter().enumerate().filter(|(_, f)| f.ratio) {
            let v = t.get(THREADING, i);
            rows.push([
                format!("idle memory, threading, {}", fig.name),
                v.map_or("–".into(), |v| format!("{v:.1} KiB")),
                "≤ 16 KiB".into(),
                verdict(v.map(|v| v <= 16.0)),
                format!(
                    "std threads {}, tokio {} KiB",
                    t.get(STD, i).map_or("–".into(), |v| format!("{v:.1}")),
                    t.get(TOKIO, i).map_or("–".into(), |v| format!("{v:.1}"))
                ),
            ]);
        }
    }
    // Shutdown.
    if let Some(t) = results.table("shutdown") {
        for m in [THREADING, POOL, COROUTINE, SYNC] {
            let v = t.get(m, 0);
            rows.push([
                format!("shutdown when idle, SIGTERM to exit, {}", mode(m)),
                v.map_or("–".into(), |v| format!("{v:.2} ms")),
                "< 10 ms".into(),
                verdict(v.map(|v| v < 10.0)),
                format!(
                    "CPython {} ms",
                    t.get(CPYTHON, 0).map_or("–".into(), |v| format!("{v:.1}"))
                ),
            ]);
        }
    }
    // Against CPython.
    for (size, connections) in [
        (64, 1),
        (64, 50),
        (64, 500),
        (4096, 1),
        (4096, 50),
        (4096, 500),
    ] {
        let id = format!("pingpong-{size}-{connections}");
        let Some(t) = results.table(&id) else {
            continue;
        };
        let best = [SYNC, THREADING, POOL, COROUTINE]
            .iter()
            .filter_map(|m| Some((*m, ratio(&id, m, CPYTHON, 0)?)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let note = if connections == 1 {
            let rates: Vec<f64> = t.rows.iter().filter_map(|(_, c)| c[0].value()).collect();
            let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = rates.iter().copied().fold(0.0, f64::max);
            format!(
                "one connection waits on each round trip: every server {}–{} req/s",
                report::format_value(lo),
                report::format_value(hi)
            )
        } else {
            best.map_or(String::new(), |(m, _)| {
                format!("CPU/req {} vs {} µs", cpu(&id, m, 4), cpu(&id, CPYTHON, 4))
            })
        };
        rows.push([
            format!(
                "echo req/s, best mode{} ÷ CPython, {} × {connections}",
                best.map_or(String::new(), |(m, _)| format!(" ({})", mode(m))),
                size_name(size)
            ),
            fmt(best.map(|b| b.1)),
            "≥ 2×".into(),
            verdict(best.map(|b| b.1 >= 2.0)),
            note,
        ]);
    }
    for body in [16384, 1024] {
        let id = format!("framed-{body}");
        if results.table(&id).is_none() {
            continue;
        }
        let md5 = results
            .md5
            .iter()
            .find(|(b, _)| *b == body)
            .map_or(String::new(), |(_, m)| m.clone());
        for (column, what) in [(0, "req/s"), (4, "server CPU per request, CPython ÷ Rust")] {
            // Rates: Rust ÷ Python; CPU: Python ÷ Rust. Higher is better both ways.
            let best = [THREADING, COROUTINE]
                .iter()
                .filter_map(|m| {
                    let r = if column == 0 {
                        ratio(&id, m, CPYTHON, column)
                    } else {
                        ratio(&id, CPYTHON, m, column)
                    };
                    Some((*m, r?))
                })
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let m = best.map_or(THREADING, |b| b.0);
            rows.push([
                format!(
                    "CPU-bound framed handler, best mode ({}), {} body, {what}",
                    mode(m),
                    size_name(body)
                ),
                fmt(best.map(|b| b.1)),
                "≥ 10×".into(),
                verdict(best.map(|b| b.1 >= 10.0)),
                format!(
                    "CPU/req {} vs {} µs; MD5 alone: {md5}",
                    cpu(&id, m, 4),
                    cpu(&id, CPYTHON, 4)
                ),
            ]);
        }
    }
    http::targets(results, &mut rows);
    let mut out = String::from(
        "| target | measured | wanted | | from the same run |\n|---|---:|---:|---|---|\n",
    );
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

const BEGIN: &str = "<!-- BEGIN GENERATED RESULTS (cargo bench --bench servers) -->";
const END: &str = "<!-- END GENERATED RESULTS -->";

fn write_report(
    config: &Config,
    results: &Results,
    started: Instant,
    before: (Option<Duration>, Duration),
) -> io::Result<PathBuf> {
    let out = config.out_dir();
    let plots = out.join("bench");
    std::fs::create_dir_all(&plots)?;
    let (cores, kernel, cpu) = harness::machine();
    let mut md = String::new();
    md.push_str(BEGIN);
    md.push_str("\n\n## Results\n\n");
    md.push_str(&format!(
        "{} on {cores} cores ({cpu}), Linux {kernel}, {}. {} run: {} round{} per scenario, medians; {} ms windows after a {} ms warm-up; {:.0} s in all (after the build).\n\n",
        if config.quick { "Quick run" } else { "Full run" },
        chrono::Local::now().format("%Y-%m-%d %H:%M"),
        if config.quick { "`cargo bench --bench servers -- --quick`" } else { "`cargo bench --bench servers`" },
        config.rounds,
        if config.rounds == 1 { "" } else { "s" },
        config.window.as_millis(),
        config.warmup.as_millis(),
        started.elapsed().as_secs_f64()
    ));
    // What else ran: the machine's busy time less the bench's and its
    // servers', as a share of all cores over the run.
    let wall = started.elapsed().as_secs_f64() * cores as f64;
    if let (Some(busy_before), Some(busy_after)) = (before.0, harness::machine_busy()) {
        let others = busy_after
            .saturating_sub(busy_before)
            .saturating_sub(harness::own_cpu().saturating_sub(before.1));
        md.push_str(&format!(
            "Other processes used {:.0}% of the machine's CPU during the run.\n\n",
            100.0 * others.as_secs_f64() / wall
        ));
    }
    md.push_str("Ratios (÷) are this server's figure divided by the anchor's: above 1 is better for rates, below 1 is better for latencies, CPU and memory.\n\n");
    md.push_str("### Targets\n\n");
    md.push_str(&targets(results));
    md.push('\n');
    let mut previous = ' ';
    for (_, table) in &results.tables {
        let letter = table.title.chars().nth(1).unwrap_or(' ');
        if letter != previous && previous == 'a' {
            md.push_str("![requests/s against connections](bench/pingpong_rps.svg)\n\n");
            md.push_str("![p99 latency against connections](bench/pingpong_p99.svg)\n\n");
        }
        previous = letter;
        md.push_str(&table.markdown(&ANCHORS));
        md.push('\n');
        if table.title.starts_with("(d)") {
            md.push_str("![RSS per idle connection](bench/idle_rss.svg)\n\n");
        }
    }
    md.push_str(END);
    md.push('\n');

    // Charts.
    if !results.pingpong.is_empty() {
        let panels = |y: &str, log: bool, pick: fn(&(f64, f64, f64)) -> f64| -> Vec<Panel> {
            config
                .sizes
                .iter()
                .map(|&size| Panel {
                    title: format!("ping-pong echo, {} messages", size_name(size)),
                    x_label: "connections".into(),
                    y_label: y.into(),
                    x_log: true,
                    y_log: log,
                    series: results
                        .pingpong
                        .iter()
                        .filter(|(s, _, _)| *s == size)
                        .map(|(_, name, points)| Series {
                            name: name.clone(),
                            points: points.iter().map(|p| (p.0, pick(p))).collect(),
                        })
                        .collect(),
                })
                .collect()
        };
        chart(
            &plots.join("pingpong_rps.svg"),
            &panels("requests/s", false, |p| p.1),
        );
        chart(
            &plots.join("pingpong_p99.svg"),
            &panels("p99 latency, µs", true, |p| p.2),
        );
    }
    if !results.idle.is_empty() {
        let bars = report::Bars {
            title: "server RSS per idle connection".into(),
            x_label: "KiB per connection".into(),
            groups: config
                .idle
                .iter()
                .map(|n| format!("@ {}", report::format_value(*n as f64)))
                .collect(),
            rows: results
                .idle
                .iter()
                .map(|(name, points)| {
                    let values = config
                        .idle
                        .iter()
                        .map(|n| points.iter().find(|p| p.0 == *n as f64).map(|p| p.1))
                        .collect();
                    (name.clone(), values)
                })
                .collect(),
        };
        if let Err(err) = report::bar_chart(&plots.join("idle_rss.svg"), &bars) {
            eprintln!("could not draw idle_rss.svg: {err}");
        }
    }

    // Keep the hand-written text around the generated part.
    let path = out.join("benchmarks.md");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    let text = match (existing.find(BEGIN), existing.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!(
                "{}{}{}",
                &existing[..b],
                md,
                existing[e + END.len()..].trim_start_matches('\n')
            )
        }
        _ if existing.is_empty() => format!("# Benchmarks\n\n{md}"),
        _ => format!("{}\n{md}", existing.trim_end()),
    };
    std::fs::write(&path, text)?;
    Ok(path)
}

fn chart(path: &Path, panels: &[Panel]) {
    if let Err(err) = report::chart(path, panels) {
        eprintln!("could not draw {}: {err}", path.display());
    }
}

fn main() {
    let config = Config::from_args().with_env();
    let limit = harness::raise_fd_limit();
    // The load generator holds the client ends; each server its own.
    if limit < config.idle.iter().copied().max().unwrap_or(0) as u64 + 1000 {
        eprintln!(
            "note: descriptor limit {limit} is low for {:?} idle connections",
            config.idle
        );
    }
    let bins = match build() {
        Ok(bins) => bins,
        Err(err) => {
            eprintln!("cannot build the servers: {err}");
            std::process::exit(1);
        }
    };
    let before = (harness::machine_busy(), harness::own_cpu());
    let started = Instant::now();
    let mut results = Results::default();
    type Scenario = fn(&Config, &Bins, &mut Results);
    let scenarios: [(&str, Scenario); 8] = [
        ("pingpong", ping_pong),
        ("churn", churn),
        ("burst", burst),
        ("idle", idle),
        ("shutdown", shutdown),
        ("udp", udp),
        ("framed", framed),
        ("http", http::http),
    ];
    for (name, run) in scenarios {
        if config.wants(name) {
            let t = Instant::now();
            run(&config, &bins, &mut results);
            eprintln!("{name}: {:.1} s", t.elapsed().as_secs_f64());
        }
    }
    for (_, table) in &results.tables {
        println!("{}", table.markdown(&ANCHORS));
    }
    println!("### Targets\n\n{}", targets(&results));
    match write_report(&config, &results, started, before) {
        Ok(path) => eprintln!(
            "wrote {} and its charts; {:.0} s in all",
            path.display(),
            started.elapsed().as_secs_f64()
        ),
        Err(err) => eprintln!("could not write the report: {err}"),
    }
}
