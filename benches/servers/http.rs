//! (h) HTTP: static files over keep-alive connections, driven by wrk.
//!
//! The load generator here is wrk (Debian's package), not the bench's own:
//! an HTTP client that parses responses, keeps connections alive and
//! records latencies is what the peers are measured with, and the figures
//! then compare with anyone else's wrk figures. wrk's Lua `done` hook
//! prints the run's totals and percentiles in one line that this file reads
//! (wrk's own text rounds and changes units).
//!
//! Each server serves the same temporary directory; every turn checks once
//! that the server answers the file byte for byte before wrk runs.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{ServerProcess, ServerSpec};
use crate::report::{self, Cell, Figure, Table};
use crate::{alternate, cells, Bins, Config, Extract, Results};

pub const AXUM: &str = "axum";
/// wrk's connections, on its two threads (`wrk -t2 -c50`).
pub const CONNECTIONS: usize = 50;
pub const TINY_HTTP: &str = "tiny_http";

/// The modes run, with the pool's workers: the pool lends a worker to a
/// connection while it has a request in progress, and 64 workers cover the
/// 50 connections even where a kept connection holds one.
pub const MODES: [(&str, &str, Option<usize>); 3] = [
    (crate::THREADING, "threading", None),
    (crate::POOL, "pool", Some(64)),
    (crate::COROUTINE, "coroutine", None),
];

/// The files served: a small page (headers and body fit one segment, so
/// per-request costs dominate) and a large one (copying dominates).
pub const FILES: [(&str, usize); 2] = [("small.bin", 1300), ("large.bin", 1024 * 1024)];

/// How a row that did not run starts.
const SKIPPED: &str = "skipped:";

/// The one line wrk's `done` hook prints: whole numbers only (latencies in
/// microseconds, the duration too).
const REPORT_LUA: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d bytes=%d p50_us=%d p99_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"#;

/// What one wrk run measured.
#[derive(Debug, Clone)]
pub struct WrkRun {
    /// Responses completed.
    pub requests: u64,
    /// wrk's own clock over the run.
    pub elapsed: Duration,
    /// Bytes read, headers included.
    pub bytes: u64,
    /// Latency percentiles, µs.
    pub p50_us: f64,
    pub p99_us: f64,
    /// Socket errors (connect, read, write) and timeouts.
    pub errors: u64,
    /// Responses whose status was not 2xx or 3xx.
    pub bad_status: u64,
    /// The server's CPU time (user + system) over the run.
    pub server_cpu: Option<Duration>,
}

impl WrkRun {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn cpu_us_per_request(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.requests > 0).then(|| cpu.as_secs_f64() * 1e6 / self.requests as f64)
    }

    fn parse(output: &str) -> Option<WrkRun> {
        let line = output.lines().find_map(|l| l.strip_prefix("WRK "))?;
        let field = |name: &str| -> Option<u64> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
                .parse()
                .ok()
        };
        Some(WrkRun {
            requests: field("requests")?,
            elapsed: Duration::from_micros(field("duration_us")?),
            bytes: field("bytes")?,
            p50_us: field("p50_us")? as f64,
            p99_us: field("p99_us")? as f64,
            errors: field("connect")? + field("read")? + field("write")? + field("timeout")?,
            bad_status: field("status")?,
            server_cpu: None,
        })
    }
}

/// wrk and its report script.
#[derive(Debug)]
pub struct Wrk {
    program: PathBuf,
    script: PathBuf,
}

impl Wrk {
    /// wrk from PATH, or `None` (and the reason printed) when it is missing.
    pub fn find(scratch: &Path) -> Option<Wrk> {
        let found = Command::new("wrk")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            // wrk --version prints its usage and exits 1: it ran.
            .is_ok();
        if !found {
            return None;
        }
        let script = scratch.join("report.lua");
        std::fs::write(&script, REPORT_LUA).ok()?;
        Some(Wrk {
            program: PathBuf::from("wrk"),
            script,
        })
    }

    /// `wrk -t THREADS -c CONNECTIONS -d SECONDS --latency URL`, with the
    /// server's CPU time read when wrk starts and when it has exited (so
    /// the connects and the ramp-up are in it; they are a small part of a
    /// run of seconds). wrk is killed if it runs 15 s past its duration.
    pub fn run(
        &self,
        url: &str,
        threads: usize,
        connections: usize,
        seconds: u64,
        server: Option<&ServerProcess>,
    ) -> io::Result<WrkRun> {
        let cpu_before = server.and_then(ServerProcess::cpu_time);
        let mut child = Command::new(&self.program)
            .args([
                "-t",
                &threads.to_string(),
                "-c",
                &connections.to_string(),
                "-d",
                &format!("{seconds}s"),
                // A response later than this counts as a timeout error.
                "--timeout",
                "5s",
                "--latency",
                "-s",
            ])
            .arg(&self.script)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let limit = Instant::now() + Duration::from_secs(seconds + 15);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= limit {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("wrk ran 15 s past its {seconds} s"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let cpu_after = server.and_then(ServerProcess::cpu_time);
        let mut stdout = String::new();
        let mut stderr = String::new();
        child
            .stdout
            .take()
            .map(|mut o| o.read_to_string(&mut stdout));
        child
            .stderr
            .take()
            .map(|mut e| e.read_to_string(&mut stderr));
        let mut run = WrkRun::parse(&stdout).ok_or_else(|| {
            io::Error::other(format!(
                "wrk ({status}) printed no report: {} {}",
                stdout.trim(),
                stderr.trim()
            ))
        })?;
        run.server_cpu = cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b));
        Ok(run)
    }
}

/// The served directory: FILES, with deterministic contents.
pub fn make_files(dir: &Path) -> io::Result<()> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for (name, size) in FILES {
        let data: Vec<u8> = (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(dir.join(name), data)?;
    }
    Ok(())
}

/// One `GET` on a fresh connection: the status and the body must be the
/// file's, so that no server is measured answering something else (an
/// error page, a listing).
pub fn check_once(addr: SocketAddr, name: &str, expected: &[u8]) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /{name} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(io::Error::other(format!("GET /{name}: {status}")));
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(&response[split + 4..])?
    } else {
        response[split + 4..].to_vec()
    };
    if body != expected {
        return Err(io::Error::other(format!(
            "GET /{name}: the body is not the file's ({} bytes, want {})",
            body.len(),
            expected.len()
        )));
    }
    Ok(())
}

/// A chunked body's data (tiny_http sends a file over 32 KiB in chunks to
/// an HTTP/1.1 client). Trailers are ignored.
fn dechunk(mut body: &[u8]) -> io::Result<Vec<u8>> {
    let bad = || io::Error::other("a malformed chunked body");
    let mut data = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|_| bad())?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(data);
        }
        if body.len() < size + 2 {
            return Err(bad());
        }
        data.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// Whether `program` has the `http` command (it arrives on its own branch).
pub fn has_http_command(program: &Path) -> bool {
    Command::new(program)
        .args(["http", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The servers, this crate's modes first.
pub fn servers(bins: &Bins, dir: &Path) -> Vec<ServerSpec> {
    let dir = dir.to_str().expect("a UTF-8 temporary path");
    let mut specs = Vec::new();
    for (name, mode, workers) in MODES {
        let mut spec = ServerSpec::new(
            name,
            &bins.socketserver,
            &[
                "http",
                "--protocol",
                "HTTP/1.1",
                "--directory",
                dir,
                "--bind",
                "127.0.0.1:0",
                "--mode",
                mode,
            ],
        );
        if let Some(workers) = workers {
            spec = spec.with_args(&["--workers", &workers.to_string()]);
        }
        specs.push(spec);
    }
    specs.push(ServerSpec::new(
        AXUM,
        &bins.axum_http,
        &["--directory", dir, "--bind", "127.0.0.1:0"],
    ));
    specs.push(ServerSpec::new(
        TINY_HTTP,
        &bins.tiny_http,
        &["--directory", dir, "--bind", "127.0.0.1:0"],
    ));
    if let Some(python) = &bins.python {
        // The command its users run; port 0 picks a free port, and the
        // harness reads the `Serving HTTP on HOST port PORT` line.
        specs.push(ServerSpec::new(
            crate::CPYTHON,
            python,
            &[
                "-u",
                "-m",
                "http.server",
                "--protocol",
                "HTTP/1.1",
                "--bind",
                "127.0.0.1",
                "--directory",
                dir,
                "0",
            ],
        ));
    }
    specs
}

fn figures() -> Vec<Figure> {
    vec![
        Figure::ratio("req/s"),
        Figure::ratio("p50 µs"),
        Figure::ratio("p99 µs"),
        Figure::ratio("server CPU µs/req"),
        Figure::plain("MiB/s"),
        Figure::plain("errors"),
    ]
}

pub fn table_id(size: usize) -> String {
    format!("http-{size}")
}

pub fn size_words(size: usize) -> String {
    if size >= 1024 * 1024 {
        format!("{} MiB", size / (1024 * 1024))
    } else {
        format!("{} B", report::format_value(size as f64))
    }
}

/// (h) HTTP static files.
pub fn http(config: &Config, bins: &Bins, results: &mut Results) {
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!("(h) HTTP: no temporary directory: {err}");
            return;
        }
    };
    let www = scratch.path().join("www");
    if let Err(err) = std::fs::create_dir(&www).and_then(|_| make_files(&www)) {
        eprintln!("(h) HTTP: cannot write the files: {err}");
        return;
    }
    let specs = servers(bins, &www);
    let wrk = Wrk::find(scratch.path());
    let skipped = |why: &str| -> Vec<Vec<Result<WrkRun, String>>> {
        specs.iter().map(|_| vec![Err(why.to_owned())]).collect()
    };
    if wrk.is_none() {
        eprintln!(
            "(h) HTTP: SKIPPED — wrk not found on PATH (apt-get install wrk); the HTTP rows stay empty"
        );
    }
    let http_command = has_http_command(&bins.socketserver);
    if !http_command {
        eprintln!(
            "(h) HTTP: `socketserver http` does not exist in this build: its rows are skipped, the anchors run"
        );
    }
    let is_crate = |spec: &ServerSpec| MODES.iter().any(|(name, _, _)| *name == spec.name);
    for (name, size) in FILES {
        let label = format!(
            "(h) HTTP {} file × {} connections",
            size_words(size),
            CONNECTIONS
        );
        eprintln!("{label}");
        let expected = std::fs::read(www.join(name)).unwrap_or_default();
        let rounds = match &wrk {
            None => skipped(&format!("{SKIPPED} wrk not found on PATH")),
            Some(wrk) => alternate(
                &label,
                config.rounds,
                &specs,
                |spec| {
                    if is_crate(spec) && !http_command {
                        return Err(io::Error::other(format!(
                            "{SKIPPED} no `http` command in this build"
                        )));
                    }
                    let server = spec.start()?;
                    check_once(server.addr, name, &expected)?;
                    let url = format!("http://{}/{name}", server.addr);
                    if let Some(warmup) = config.http_warmup {
                        wrk.run(&url, 2, CONNECTIONS, warmup, None)?;
                    }
                    wrk.run(&url, 2, CONNECTIONS, config.http_seconds, Some(&server))
                },
                |r: &WrkRun| {
                    format!(
                        "{:.0}/s, p99 {:.0} µs, CPU {} µs/req, errors {} + {} bad status",
                        r.rate(),
                        r.p99_us,
                        r.cpu_us_per_request()
                            .map_or("?".into(), |c| format!("{c:.2}")),
                        r.errors,
                        r.bad_status
                    )
                },
            ),
        };
        let mut table = Table::new(
            &format!(
                "(h) HTTP: GET of a {} file, {} keep-alive connections (wrk)",
                size_words(size),
                CONNECTIONS
            ),
            &format!(
                "`wrk -t2 -c{} -d{}s --latency` on one file, HTTP/1.1 keep-alive{}. Latency is wrk's (request written to response read). Server CPU is the server process's user + system time over the wrk run, connects included, per response. MiB/s counts headers too. Errors: wrk's socket errors and timeouts plus non-2xx/3xx responses.",
                CONNECTIONS,
                config.http_seconds,
                match config.http_warmup {
                    Some(s) => format!(", after an unmeasured {s} s run on the same server"),
                    None => String::new(),
                }
            ),
            figures(),
        );
        let extracts: [Extract<'_, WrkRun>; 6] = [
            &|r| Some(r.rate()),
            &|r| Some(r.p50_us),
            &|r| Some(r.p99_us),
            &|r| r.cpu_us_per_request(),
            &|r| Some(r.bytes as f64 / r.elapsed.as_secs_f64().max(1e-9) / (1024.0 * 1024.0)),
            &|r| Some((r.errors + r.bad_status) as f64),
        ];
        for (spec, rounds) in specs.iter().zip(&rounds) {
            let skip = rounds.iter().find_map(|r| match r {
                Err(e) if e.starts_with(SKIPPED) => Some(e.clone()),
                _ => None,
            });
            let row = match skip {
                // Said once, not in every column.
                Some(why) if rounds.iter().all(Result::is_err) => {
                    let mut row = vec![Cell::Text(why)];
                    row.resize(extracts.len(), Cell::Text("–".into()));
                    row
                }
                _ => cells(rounds, &extracts),
            };
            table.rows.push((spec.name.clone(), row));
        }
        results.tables.push((table_id(size), table));
    }
}

/// The HTTP targets: the best mode's req/s ≥ 1.0× axum's and ≥ 10× CPython's.
pub fn targets(results: &Results, rows: &mut Vec<[String; 5]>) {
    let fmt = |v: Option<f64>| v.map_or("–".to_owned(), report::format_ratio);
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "holds".to_owned(),
        Some(false) => "**misses**".to_owned(),
        None => "not measured".to_owned(),
    };
    for (_, size) in FILES {
        let Some(t) = results.table(&table_id(size)) else {
            continue;
        };
        let value = |server: &str, column: usize| {
            t.get(server, column)
                .map_or("–".to_owned(), report::format_value)
        };
        for (anchor, wanted, wanted_text) in
            [(AXUM, 1.0, "≥ 1.0×"), (crate::CPYTHON, 10.0, "≥ 10×")]
        {
            let best = MODES
                .iter()
                .filter_map(|(m, _, _)| Some((*m, t.get(m, 0)? / t.get(anchor, 0)?)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            // What the fastest peer reaches puts a CPython ratio in scale
            // (a 1 MiB response is bound by copying, in every server).
            let peer = match (anchor == crate::CPYTHON, t.get(AXUM, 0), t.get(anchor, 0)) {
                (true, Some(a), Some(c)) => format!("; axum ÷ CPython {}", fmt(Some(a / c))),
                _ => String::new(),
            };
            let note = match best {
                Some((m, _)) => format!(
                    "{} vs {} req/s; CPU/req {} vs {} µs; p99 {} vs {} µs{peer}",
                    value(m, 0),
                    value(anchor, 0),
                    value(m, 3),
                    value(anchor, 3),
                    value(m, 2),
                    value(anchor, 2)
                ),
                None => t
                    .rows
                    .iter()
                    .find_map(|(_, c)| match c.first() {
                        Some(Cell::Text(text)) => Some(text.clone()),
                        _ => None,
                    })
                    .unwrap_or_default(),
            };
            rows.push([
                format!(
                    "HTTP req/s, best mode{} ÷ {anchor}, {} file × {CONNECTIONS}",
                    best.map_or(String::new(), |(m, _)| format!(
                        " ({})",
                        m.trim_start_matches("socketserver ")
                    )),
                    size_words(size),
                ),
                fmt(best.map(|b| b.1)),
                wanted_text.to_owned(),
                verdict(best.map(|b| b.1 >= wanted)),
                note,
            ]);
        }
    }
}
