//! A real browser against `socketserver http`: Debian's headless Chromium
//! loads a directory listing and a page from the server, on loopback, and
//! the test reads what it rendered (`--dump-dom`: the document after
//! parsing and scripts, as the browser holds it), not the bytes sent.
//!
//! - The listing: every file is a link whose text is the file's name and
//!   whose target, once the browser has resolved it, is that name —
//!   including a name with a space and `&` (HTML-escaped text,
//!   percent-encoded link) and a non-ASCII one.
//! - The page: a directory's index.html, asked for without its slash (the
//!   server's 301 adds it), whose script fetches a second file from the
//!   server (a synchronous XMLHttpRequest, so the result is in the DOM when
//!   Chromium dumps it) and writes it into the page.
//!
//! Both under HTTP/1.0 (the default) and HTTP/1.1 (kept connections).
//!
//! Chromium runs in a process group of its own and is killed with it after
//! 60 s. Without chromium the test says SKIPPED (and fails in CI, which
//! installs it: .ci/run). `HTTP_BROWSER_SCREENSHOT=/tmp/listing.png` also
//! saves a 1024×768 screenshot of the listing, to look at.

mod util;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use util::{bounded, Running, BIN};

/// How long one Chromium run may take before it is killed.
const BROWSER_LIMIT: Duration = Duration::from_secs(60);

/// Runs headless Chromium on `url` with `action` (`--dump-dom`, or
/// `--screenshot=…`), each run with a fresh profile; its stdout.
fn chromium(action: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            // As root (CI) Chromium refuses to start with its sandbox.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            // No traffic but the page's: no first-run pages, no update,
            // sync or other background requests.
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(action)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so that its renderer and helper processes are
        // killed with it if it hangs.
        .process_group(0)
        .spawn()
        .unwrap();
    let group = Pid::from_raw(child.id() as i32);
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    // Chromium logs D-Bus complaints on a machine without a session bus:
    // read (so that it never blocks), shown only if the run fails.
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BROWSER_LIMIT {
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            panic!(
                "chromium took more than {} s on {url}",
                BROWSER_LIMIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Helpers that outlived it (none should) go too.
    let _ = killpg(group, Signal::SIGKILL);
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    assert!(status.success(), "chromium {status} on {url}: {stderr}");
    stdout
}

fn dump_dom(url: &str) -> String {
    chromium(&["--dump-dom"], url)
}

/// `%XX` escapes decoded (as UTF-8).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("percent escapes of UTF-8")
}

/// The few entities a serialized DOM uses in text and attributes.
fn html_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Every `<a href="…">…</a>` of a serialized DOM: (the target
/// percent-decoded, the text), both HTML-unescaped.
fn links(dom: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = dom;
    while let Some(start) = rest.find("<a href=\"") {
        rest = &rest[start + "<a href=\"".len()..];
        let Some(end) = rest.find('"') else { break };
        let href = &rest[..end];
        let Some(open_end) = rest.find('>') else {
            break;
        };
        let Some(close) = rest.find("</a>") else {
            break;
        };
        let text = &rest[open_end + 1..close];
        found.push((
            percent_decode(&html_unescape(href)),
            html_unescape(text).trim().to_owned(),
        ));
        rest = &rest[close..];
    }
    found
}

/// Whether this build has the `http` command (issue 13 brings it).
fn has_http_command() -> bool {
    Command::new(BIN)
        .args(["http", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const PAGE: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>A page</title></head>
<body>
<h1>Hello from socketserver</h1>
<p id="fetched">not fetched</p>
<script>
  var request = new XMLHttpRequest();
  request.open("GET", "data.txt", false);
  request.send();
  document.getElementById("fetched").textContent =
    "status " + request.status + ": " + request.responseText.trim();
</script>
</body></html>
"#;

fn files(root: &Path) {
    std::fs::write(root.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(root.join("a b&c.txt"), "awkward\n").unwrap();
    std::fs::write(root.join("café.txt"), "non-ASCII\n").unwrap();
    std::fs::create_dir(root.join("site")).unwrap();
    std::fs::write(root.join("site/index.html"), PAGE).unwrap();
    std::fs::write(root.join("site/data.txt"), "second request, same server\n").unwrap();
}

#[test]
fn chromium_renders_a_listing_and_a_page() {
    if !util::require_tool("chromium") {
        return;
    }
    if !has_http_command() {
        util::skipped("this build of socketserver has no `http` command");
        return;
    }
    bounded(Duration::from_secs(4 * 60), || {
        let root = tempfile::tempdir().unwrap();
        files(root.path());
        // HTTP/1.0 (the command's default, Python's) closes each connection;
        // under HTTP/1.1 Chromium keeps its connection for the page's
        // second request and the favicon.
        for protocol in ["HTTP/1.0", "HTTP/1.1"] {
            let server = Running::start(&[
                "http",
                "--directory",
                root.path().to_str().unwrap(),
                "--bind",
                "127.0.0.1:0",
                "--protocol",
                protocol,
            ]);
            let base = format!("http://{}", server.address);

            let listing = dump_dom(&format!("{base}/"));
            let found = links(&listing);
            for name in ["hello.txt", "a b&c.txt", "café.txt", "site/"] {
                assert!(
                    found
                        .iter()
                        .any(|(href, text)| href == name && text == name),
                    "{protocol}: no link to {name:?} in the listing Chromium rendered: {found:?}\n{listing}"
                );
            }
            assert!(
                listing.contains("Directory listing for /"),
                "{protocol}: Chromium rendered no listing title:\n{listing}"
            );

            // Without the slash: the server's 301 must take the browser to
            // /site/, or the script's relative "data.txt" misses.
            let page = dump_dom(&format!("{base}/site"));
            assert!(
                page.contains("<h1>Hello from socketserver</h1>"),
                "{protocol}: Chromium did not render index.html:\n{page}"
            );
            assert!(
                page.contains("status 200: second request, same server"),
                "{protocol}: the page's script did not get data.txt from the server:\n{page}"
            );
        }

        let server = Running::start(&[
            "http",
            "--directory",
            root.path().to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ]);
        let base = format!("http://{}", server.address);
        if let Some(path) = std::env::var_os("HTTP_BROWSER_SCREENSHOT") {
            let path = Path::new(&path).to_owned();
            let _ = std::fs::remove_file(&path);
            chromium(
                &[
                    &format!("--screenshot={}", path.display()),
                    "--window-size=1024,768",
                    "--hide-scrollbars",
                ],
                &format!("{base}/"),
            );
            let png = std::fs::read(&path).unwrap();
            assert!(png.starts_with(b"\x89PNG"), "{} is no PNG", path.display());
        }
    });
}
