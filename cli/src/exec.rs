//! `socketserver exec`: the tutorials' remote command runner ("简单的 ssh"),
//! with the final version of its 粘包 fix: each reply is a 4-byte header
//! length (`struct.pack('i', …)`), a JSON header with `total_size`, then
//! stdout and stderr.
//!
//! Safe by default, unlike the Python servers'
//! `subprocess.Popen(cmd, shell=True)`: loopback only, no shell, and only
//! allow-listed programs; `--any` lifts the list (and the loopback rule), with
//! a warning.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clap::Args;
use socketserver::framing::{Header, LengthPrefix, MessageCodec};
use socketserver::{RequestHandler, StreamRequest, ThreadingTCPServer};

use crate::run::{new_server, serve};

/// The programs allowed without `--allow`: they print and change nothing
/// (`date` and `hostname` with the arguments [`READ_ONLY_ARGUMENTS`] allows).
pub const DEFAULT_ALLOWED: &[&str] = &[
    "ls", "pwd", "whoami", "date", "echo", "uname", "id", "hostname",
];

/// The only arguments `date` and `hostname` take under an allow-list. Both
/// also *change* things when run as root: `date -s …`, `date MMDDhhmm`
/// and `hostname NAME` (or `-F FILE`, `-b`, `-y NAME`) set the clock or the
/// machine's names, and `date -f FILE` prints each line of FILE in its
/// error messages (/etc/shadow included). Each argument must be one of
/// these; one ending in `*` is a prefix (`+*` is any `+FORMAT`). `--any`
/// lifts this with the allow-list.
pub const READ_ONLY_ARGUMENTS: &[(&str, &[&str])] = &[
    (
        "date",
        &[
            "+*",
            "-u",
            "--utc",
            "--universal",
            "-R",
            "--rfc-email",
            "-I*",
            "--iso-8601*",
            "--rfc-3339=*",
            "--date=*",
        ],
    ),
    (
        "hostname",
        &[
            "-s",
            "--short",
            "-f",
            "--fqdn",
            "--long",
            "-d",
            "--domain",
            "-i",
            "--ip-address",
            "-I",
            "--all-ip-addresses",
            "-A",
            "--all-fqdns",
            "-a",
            "--alias",
        ],
    ),
];

/// Refuses an argument that [`READ_ONLY_ARGUMENTS`] does not allow
/// `program` (programs not listed there take any).
pub fn check_arguments(program: &str, args: &[String]) -> Result<(), String> {
    let Some((_, allowed)) = READ_ONLY_ARGUMENTS.iter().find(|(p, _)| *p == program) else {
        return Ok(());
    };
    let fits = |arg: &str| {
        allowed
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => arg.starts_with(prefix),
                None => arg == *pattern,
            })
    };
    match args.iter().find(|arg| !fits(arg)) {
        None => Ok(()),
        Some(arg) => Err(format!(
            "{program} {arg}: not allowed ({program} may only print: {})",
            allowed.join(" ")
        )),
    }
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Address to listen on (loopback unless --any).
    #[arg(long, default_value = "127.0.0.1:8090")]
    bind: String,
    /// Allow this program (repeatable); replaces the default list. `date`
    /// and `hostname` take only arguments that print (see
    /// READ_ONLY_ARGUMENTS in exec.rs).
    #[arg(long = "allow", value_name = "CMD")]
    allow: Vec<String>,
    /// Allow every program and any bind address. Dangerous: anyone who can
    /// connect runs programs as this user.
    #[arg(long)]
    any: bool,
    /// Kill a command still running after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    command_timeout: f64,
    /// Keep at most this many bytes of a command's output.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    max_output: usize,
}

/// What may run, and for how long.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `None`: anything (`--any`).
    pub allowed: Option<BTreeSet<String>>,
    pub timeout: Duration,
    pub max_output: usize,
}

/// Splits a command line into words, with '…', "…" and backslash quoting,
/// and refuses shell syntax: without a shell it would not mean what the
/// sender thinks (`ls; rm -rf ~` must not become `ls` with odd arguments).
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => w.push(chars.next().ok_or("unterminated \" quote")?),
                        Some('$' | '`') => return Err(shell_syntax(c)),
                        Some(c) => w.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => word
                .get_or_insert_with(String::new)
                .push(chars.next().ok_or("trailing backslash")?),
            ';' | '|' | '&' | '<' | '>' | '`' | '$' | '(' | ')' | '\n' | '\r' => {
                return Err(shell_syntax(c))
            }
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

fn shell_syntax(c: char) -> String {
    format!("shell syntax ({c:?}) is refused: this server runs one program, without a shell")
}

/// Runs one command line; `Err` is the message for a refused or failed one.
pub fn execute(line: &str, policy: &Policy) -> Result<(Vec<u8>, Option<i32>), String> {
    let words = split_command(line)?;
    let Some((program, args)) = words.split_first() else {
        return Err("empty command".into());
    };
    if let Some(allowed) = &policy.allowed {
        if program.contains('/') || !allowed.contains(program) {
            let list: Vec<&str> = allowed.iter().map(String::as_str).collect();
            return Err(format!(
                "{program}: not allowed (allowed: {})",
                list.join(", ")
            ));
        }
        check_arguments(program, args)?;
    }
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => format!("{program}: command not found"),
            _ => format!("{program}: cannot start: {e}"),
        })?;
    // Read both pipes at once (a full pipe would stall the child), and stop
    // waiting at the time limit: the Python servers' `top` would never return.
    let (done, finished) = mpsc::channel();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|pipe| {
        let done = done.clone();
        let max = policy.max_output as u64;
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.take(max).read_to_end(&mut out);
            let _ = done.send(());
            out
        })
    })
    .collect();
    drop(done);
    let mut timed_out = false;
    for _ in 0..readers.len() {
        if finished.recv_timeout(policy.timeout).is_err() {
            timed_out = true;
            let _ = child.kill();
            break;
        }
    }
    let status = child.wait().map_err(|e| format!("{program}: {e}"))?;
    let mut output: Vec<u8> = readers
        .into_iter()
        .flat_map(|r| r.join().unwrap_or_default())
        .collect();
    output.truncate(policy.max_output);
    if timed_out {
        return Err(format!("{program}: killed after {:?}", policy.timeout));
    }
    Ok((output, status.code()))
}

/// The Python server's reply: header length (struct 'i'), JSON header, body.
pub fn reply(line: &str, result: Result<(Vec<u8>, Option<i32>), String>) -> (Header, Vec<u8>) {
    let (body, status, error) = match result {
        Ok((output, status)) => (output, status, None),
        Err(message) => (
            format!("error: {message}\n").into_bytes(),
            None,
            Some(message),
        ),
    };
    let mut header = socketserver::framing::header_for(&body);
    header.extra.insert("command".into(), line.into());
    header.extra.insert("status".into(), status.into());
    if let Some(error) = error {
        header.extra.insert("error".into(), error.into());
    }
    (header, body)
}

#[derive(Debug)]
struct ExecHandler {
    policy: Policy,
}

impl RequestHandler for ExecHandler {
    fn handle(&self, request: &mut StreamRequest<'_>) -> io::Result<()> {
        let codec = MessageCodec::new(LengthPrefix::NativeI32);
        let mut buf = [0; 1024];
        loop {
            // The Python server's `cmd = conn.recv(1024)`: one read is one command.
            let n = request.rfile.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            let (line, result) = match std::str::from_utf8(&buf[..n]) {
                Ok(text) => {
                    let line = text.trim().to_owned();
                    let result = execute(&line, &self.policy);
                    (line, result)
                }
                Err(_) => (String::new(), Err("the command is not UTF-8".to_owned())),
            };
            match &result {
                Ok((output, status)) => {
                    log::info!(
                        "{}: {line:?} → status {status:?}, {} bytes",
                        request.client_address,
                        output.len()
                    )
                }
                Err(message) => {
                    log::warn!("{}: {line:?} refused: {message}", request.client_address)
                }
            }
            let (header, body) = reply(&line, result);
            codec.write_message(&mut request.wfile, &header, &body)?;
        }
    }
}

pub fn run(args: ExecArgs) -> io::Result<()> {
    let allowed = if args.any {
        log::warn!("--any: every program may run, from any client that can connect");
        None
    } else {
        let address: SocketAddr = args.bind.parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad --bind {}: {e}", args.bind),
            )
        })?;
        if !address.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("exec listens on loopback only ({address} is not); --any lifts this"),
            ));
        }
        let list: Vec<String> = if args.allow.is_empty() {
            DEFAULT_ALLOWED.iter().map(|s| s.to_string()).collect()
        } else {
            args.allow
        };
        Some(list.into_iter().collect())
    };
    let timeout = crate::run::seconds(Some(args.command_timeout))?.unwrap_or_default();
    let policy = Policy {
        allowed,
        timeout,
        max_output: args.max_output,
    };
    let server: ThreadingTCPServer = new_server(args.bind.as_str(), ExecHandler { policy })?;
    serve(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words_and_quotes() {
        assert_eq!(
            split_command("ls -l  'a b' \"c d\" e\\ f").unwrap(),
            ["ls", "-l", "a b", "c d", "e f"]
        );
        assert_eq!(split_command("   ").unwrap(), Vec::<String>::new());
        assert_eq!(split_command("echo ''").unwrap(), ["echo", ""]);
    }

    #[test]
    fn refuses_shell_syntax() {
        for line in [
            "ls; rm -rf ~",
            "ls | sh",
            "echo $(id)",
            "echo `id`",
            "ls > x",
            "a && b",
            "echo \"$HOME\"",
        ] {
            let err = split_command(line).unwrap_err();
            assert!(err.contains("without a shell"), "{line}: {err}");
        }
        assert!(split_command("echo 'unterminated").is_err());
    }

    #[test]
    fn allow_list_is_enforced() {
        let policy = Policy {
            allowed: Some(["echo".to_owned()].into()),
            timeout: Duration::from_secs(10),
            max_output: 1024,
        };
        assert_eq!(
            execute("echo hi", &policy).unwrap(),
            (b"hi\n".to_vec(), Some(0))
        );
        assert!(execute("rm -rf /tmp/x", &policy)
            .unwrap_err()
            .contains("not allowed"));
        assert!(execute("/bin/echo hi", &policy)
            .unwrap_err()
            .contains("not allowed"));
    }

    /// Checked without running anything: were the check broken, running
    /// these as root would set the clock or the host name.
    #[test]
    fn date_and_hostname_may_only_print() {
        let args = |line: &str| -> Vec<String> { split_command(line).unwrap() };
        for line in [
            "-s 2000-01-01",
            "--set=2000-01-01",
            "--set 2000-01-01",
            "--se=2000-01-01",
            "010100002000",
            "-f /etc/shadow",
            "--file=/etc/shadow",
            "-uf /etc/shadow",
            "-r /etc/shadow",
            "+%Y -s 2000-01-01",
        ] {
            let err = check_arguments("date", &args(line)).unwrap_err();
            assert!(err.contains("not allowed"), "date {line}: {err}");
        }
        for line in [
            "evil",
            "-F /etc/shadow",
            "--file /x",
            "-b evil",
            "-y nis",
            "-s evil",
        ] {
            assert!(
                check_arguments("hostname", &args(line)).is_err(),
                "hostname {line}"
            );
        }
        for line in [
            "",
            "+%Y-%m-%d",
            "-u +%s",
            "-R",
            "-Iseconds",
            "--rfc-3339=date",
            "--date=@0",
        ] {
            assert_eq!(check_arguments("date", &args(line)), Ok(()), "date {line}");
        }
        for line in ["", "-s", "-f", "-I", "--fqdn"] {
            assert_eq!(
                check_arguments("hostname", &args(line)),
                Ok(()),
                "hostname {line}"
            );
        }
        assert_eq!(check_arguments("echo", &args("-s --set anything")), Ok(()));
    }

    #[test]
    fn slow_commands_are_killed_and_output_capped() {
        let policy = Policy {
            allowed: None,
            timeout: Duration::from_millis(200),
            max_output: 4,
        };
        assert!(execute("sleep 5", &policy).unwrap_err().contains("killed"));
        assert_eq!(execute("echo 123456789", &policy).unwrap().0, b"1234");
    }
}
