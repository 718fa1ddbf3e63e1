//! [`SimpleHTTPRequestHandler`]: Python's, serving a directory — with
//! `Range`, `ETag` and a path translation that cannot be led out of the
//! directory nor into an open redirect.

use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ::http::header;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::handler::{BaseHTTPRequestHandler, HTTPOptions};
use super::response::{html_escape, HTTPRequest};

/// Python's `urllib.parse.quote` safe set: letters, digits, `_.-~` and `/`.
const QUOTE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b'/');

/// The buffer files are copied through where sendfile(2) cannot be used
/// (TLS, coroutines): large enough that a big file goes out in few system
/// calls.
const COPY_BUFFER: usize = 256 * 1024;

/// How much of a file goes out with the head, in its write.
const FIRST_CHUNK: usize = 60 * 1024;

/// Python's `SimpleHTTPRequestHandler`: serves the files under
/// [`directory`](Self::directory) for GET and HEAD.
///
/// As Python: `index.html` or `index.htm` for a directory, else a listing
/// (sorted, names HTML-escaped, links percent-encoded, `/` after a
/// directory and `@` after a symbolic link); a directory asked without its
/// trailing slash answered 301; `Last-Modified`, and `If-Modified-Since` →
/// 304. Beyond Python: one byte range (`Range: bytes=…` → 206, or 416),
/// `ETag` and `If-None-Match` → 304; paths with a backslash, NUL or an
/// encoded `/` in a segment are refused (404), as is a symbolic link to
/// outside the directory, and a redirect's `Location` is rebuilt from the
/// cleaned path, so it cannot start with `//` or `/\` (CVE-2021-28861).
///
/// ```
/// use socketserver::http::{HTTPServer, SimpleHTTPRequestHandler};
/// let handler = SimpleHTTPRequestHandler::new(std::env::temp_dir());
/// assert_eq!(handler.guess_type("a.tar.gz".as_ref()), "application/gzip");
/// assert_eq!(handler.guess_type("page.html".as_ref()), "text/html");
/// let server = HTTPServer::<socketserver::ThreadingMixIn>::new("127.0.0.1:0", handler)?;
/// # drop(server);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SimpleHTTPRequestHandler {
    /// Python's `directory`: what is served.
    pub directory: PathBuf,
    /// The class attributes; `server_version` defaults to
    /// `"SimpleHTTP/0.6"`, the rest to [`HTTPOptions::default`].
    pub options: HTTPOptions,
}

/// Where a request path leads.
#[derive(Debug)]
enum Target {
    /// Under the directory: the file path, the cleaned URL path, and
    /// whether the request path ended with `/`.
    Found(PathBuf, String, bool),
    /// Refused: leaves the directory or holds what no file name should.
    Refused,
}

impl SimpleHTTPRequestHandler {
    /// Python's `SimpleHTTPRequestHandler(directory=…)`.
    pub fn new(directory: impl Into<PathBuf>) -> Self {
        SimpleHTTPRequestHandler {
            directory: directory.into(),
            options: HTTPOptions {
                server_version: "SimpleHTTP/0.6".into(),
                ..HTTPOptions::default()
            },
        }
    }

    /// Python's `translate_path`: the file a URL path names, under
    /// [`directory`](Self::directory); `None` for a path that is refused —
    /// a segment with an (encoded) `/`, a backslash or NUL. The query and
    /// fragment are dropped; `.` and `..` are resolved without ever going
    /// above the directory. Symbolic links are checked when the file is
    /// opened.
    pub fn translate_path(&self, path: &str) -> Option<PathBuf> {
        match self.target(path) {
            Target::Found(path, ..) => Some(path),
            Target::Refused => None,
        }
    }

    fn target(&self, path: &str) -> Target {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let trailing_slash = path.ends_with('/');
        let mut segments: Vec<Vec<u8>> = Vec::new();
        for raw in path.split('/') {
            let segment: Vec<u8> = percent_decode_str(raw).collect();
            if segment.iter().any(|&b| b == b'/' || b == b'\\' || b == 0) {
                return Target::Refused;
            }
            match segment.as_slice() {
                b"" | b"." => {}
                b".." => {
                    segments.pop();
                }
                _ => segments.push(segment),
            }
        }
        let mut file = self.directory.clone();
        let mut url = String::new();
        for segment in &segments {
            file.push(OsStr::from_bytes(segment));
            url.push('/');
            url.extend(percent_encoding::percent_encode(segment, QUOTE));
        }
        if url.is_empty() {
            url.push('/');
        }
        Target::Found(file, url, trailing_slash)
    }

    /// Python's `guess_type`: the compression table, then mime_guess, else
    /// `application/octet-stream`.
    pub fn guess_type(&self, path: &Path) -> String {
        let extension = path.extension().and_then(OsStr::to_str).unwrap_or("");
        match extension {
            "gz" => "application/gzip".into(),
            "Z" => "application/octet-stream".into(),
            "bz2" => "application/x-bzip2".into(),
            "xz" => "application/x-xz".into(),
            _ => mime_guess::from_path(path)
                .first_or_octet_stream()
                .essence_str()
                .to_owned(),
        }
    }

    /// Whether `path` (existing) lies inside the directory once symbolic
    /// links are resolved.
    fn inside(&self, path: &Path) -> bool {
        match (fs::canonicalize(&self.directory), fs::canonicalize(path)) {
            (Ok(root), Ok(path)) => path.starts_with(root),
            _ => false,
        }
    }

    /// Python's `list_directory`: the HTML listing of `path`, sent; `None`
    /// if it cannot be read (404 sent).
    pub fn list_directory(&self, request: &mut HTTPRequest<'_>, path: &Path) -> io::Result<()> {
        let entries = match fs::read_dir(path) {
            Ok(entries) => entries,
            Err(_) => {
                return request.send_error_message(
                    404,
                    Some("No permission to list directory"),
                    None,
                )
            }
        };
        let mut names: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        names.sort_by_key(|n| n.to_string_lossy().to_lowercase());
        let display =
            String::from_utf8_lossy(&percent_decode_str(&request.path).collect::<Vec<u8>>())
                .into_owned();
        let title = format!("Directory listing for {}", html_escape(&display));
        let mut html = format!(
            "<!DOCTYPE HTML>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>{title}</title>\n</head>\n<body>\n<h1>{title}</h1>\n<hr>\n<ul>\n"
        );
        for name in names {
            let full = path.join(&name);
            let mut display = name.to_string_lossy().into_owned();
            let mut link: Vec<u8> = name.as_bytes().to_vec();
            if full.is_dir() {
                display.push('/');
                link.push(b'/');
            }
            if full.is_symlink() {
                display.push('@');
            }
            let link: String = percent_encoding::percent_encode(&link, QUOTE).collect();
            html.push_str(&format!(
                "<li><a href=\"{link}\">{}</a></li>\n",
                html_escape(&display)
            ));
        }
        html.push_str("</ul>\n<hr>\n</body>\n</html>\n");
        request.send_response(200)?;
        request.send_header("Content-Type", "text/html; charset=utf-8")?;
        request.send_header("Content-Length", html.len())?;
        request.end_headers();
        if request.command != "HEAD" {
            request.wfile.write_all(html.as_bytes())?;
        }
        Ok(())
    }

    /// Python's `send_head`, and `copyfile` for GET.
    fn serve(&self, request: &mut HTTPRequest<'_>, with_body: bool) -> io::Result<()> {
        let (mut path, url, trailing_slash) = match self.target(&request.path) {
            Target::Found(path, url, trailing_slash) => (path, url, trailing_slash),
            Target::Refused => {
                return request.send_error_message(404, Some("File not found"), None)
            }
        };
        if path.exists() && !self.inside(&path) {
            return request.send_error_message(404, Some("File not found"), None);
        }
        if path.is_dir() {
            if !trailing_slash {
                // The Location is the cleaned path, not the request's: it
                // starts with one `/` and a segment, never `//` or `/\`.
                let query = request
                    .path
                    .split_once('?')
                    .map(|(_, q)| q.split('#').next().unwrap_or(""))
                    .map(|q| format!("?{}", utf8_percent_encode(q, QUERY)))
                    .unwrap_or_default();
                let location = if url == "/" { url } else { format!("{url}/") };
                request.send_response(301)?;
                request.send_header("Location", format!("{location}{query}"))?;
                request.send_header("Content-Length", "0")?;
                request.end_headers();
                return Ok(());
            }
            match ["index.html", "index.htm"]
                .iter()
                .map(|index| path.join(index))
                .find(|index| index.is_file())
            {
                Some(index) if self.inside(&index) => path = index,
                Some(_) => return request.send_error_message(404, Some("File not found"), None),
                None => return self.list_directory(request, &path),
            }
        } else if trailing_slash {
            return request.send_error_message(404, Some("File not found"), None);
        }
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(_) => return request.send_error_message(404, Some("File not found"), None),
        };
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            return request.send_error_message(404, Some("File not found"), None);
        }
        let len = metadata.len();
        let modified = metadata.modified().unwrap_or(UNIX_EPOCH);
        let last_modified = httpdate::fmt_http_date(modified);
        let etag = etag(&metadata, modified);
        if not_modified(request, &etag, modified) {
            request.send_response(304)?;
            request.send_header("ETag", etag.as_str())?;
            request.send_header("Last-Modified", last_modified.as_str())?;
            request.end_headers();
            return Ok(());
        }
        let range = match range(request, len, &etag, &last_modified) {
            Ok(range) => range,
            Err(()) => {
                request.send_response(416)?;
                request.send_header("Content-Range", format!("bytes */{len}"))?;
                request.send_header("Content-Length", "0")?;
                request.end_headers();
                return Ok(());
            }
        };
        let (start, count) = match range {
            Some((start, end)) => {
                request.send_response(206)?;
                request.send_header("Content-Range", format!("bytes {start}-{end}/{len}"))?;
                (start, end - start + 1)
            }
            None => {
                request.send_response(200)?;
                (0, len)
            }
        };
        request.send_header("Content-Type", self.guess_type(&path))?;
        request.send_header("Content-Length", count)?;
        request.send_header("Last-Modified", last_modified.as_str())?;
        request.send_header("ETag", etag.as_str())?;
        request.send_header("Accept-Ranges", "bytes")?;
        request.end_headers();
        if with_body {
            file.seek(SeekFrom::Start(start))?;
            let mut body = file.take(count);
            // The head leaves with the file's first bytes, in one write.
            let mut buffer = vec![0; COPY_BUFFER.min(count as usize).max(1)];
            let first = read_some(&mut body, &mut buffer[..FIRST_CHUNK.min(count as usize)])?;
            request.wfile.write_all(&buffer[..first])?;
            request.wfile.send_file(&mut body, &mut buffer)?;
        }
        Ok(())
    }
}

/// The query as sent, re-encoded where it holds what a header may not.
const QUERY: &AsciiSet = &percent_encoding::CONTROLS.add(b' ');

/// A strong validator from the modification time and the size.
fn etag(metadata: &Metadata, modified: SystemTime) -> String {
    let nanos = modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("\"{nanos:x}-{:x}\"", metadata.len())
}

/// `If-None-Match` (any tag matching, or `*`), else Python's
/// `If-Modified-Since` (whole seconds).
fn not_modified(request: &HTTPRequest<'_>, etag: &str, modified: SystemTime) -> bool {
    if let Some(tags) = request.headers.get(header::IF_NONE_MATCH) {
        let tags = tags.to_str().unwrap_or("");
        return tags
            .split(',')
            .map(|t| t.trim())
            .any(|t| t == "*" || t.trim_start_matches("W/") == etag);
    }
    let Some(since) = request
        .headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    else {
        return false;
    };
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    secs(modified) <= secs(since)
}

/// One byte range (`Ok(Some((first, last)))`), none (`Ok(None)`: the whole
/// file — also for several ranges or a stale `If-Range`), or unsatisfiable
/// (`Err`).
fn range(
    request: &HTTPRequest<'_>,
    len: u64,
    etag: &str,
    last_modified: &str,
) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = request
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    if let Some(validator) = request
        .headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
    {
        if validator != etag && validator != last_modified {
            return Ok(None);
        }
    }
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first, last) {
        ("", suffix) => match number(suffix) {
            Some(0) => Err(()),
            Some(n) if len > 0 => Ok(Some((len.saturating_sub(n), len - 1))),
            Some(_) => Err(()),
            None => Ok(None),
        },
        (first, "") => match number(first) {
            Some(first) if first < len => Ok(Some((first, len - 1))),
            Some(_) => Err(()),
            None => Ok(None),
        },
        (first, last) => match (number(first), number(last)) {
            (Some(first), Some(last)) if first <= last => {
                if first < len {
                    Ok(Some((first, last.min(len - 1))))
                } else {
                    Err(())
                }
            }
            _ => Ok(None),
        },
    }
}

/// Reads until `buffer` is full or the end: the file's first bytes, to
/// go with the head.
fn read_some(from: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match from.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

// Python's method names are kept on purpose: the crate is for porting.
#[allow(non_snake_case)]
impl BaseHTTPRequestHandler for SimpleHTTPRequestHandler {
    fn options(&self) -> HTTPOptions {
        self.options.clone()
    }

    /// Python's `do_GET`: the file, the index or the listing.
    fn do_GET(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
        self.serve(request, true)
    }

    /// Python's `do_HEAD`: as GET, without the body.
    fn do_HEAD(&self, request: &mut HTTPRequest<'_>) -> io::Result<()> {
        self.serve(request, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translate_path_stays_inside() {
        let h = SimpleHTTPRequestHandler::new("/srv");
        let t = |p: &str| h.translate_path(p);
        assert_eq!(t("/a/b.txt?x=1#f"), Some("/srv/a/b.txt".into()));
        assert_eq!(t("/../../etc/passwd"), Some("/srv/etc/passwd".into()));
        assert_eq!(
            t("/%2e%2e/%2e%2e/etc/passwd"),
            Some("/srv/etc/passwd".into())
        );
        assert_eq!(t("/a%20b"), Some("/srv/a b".into()));
        assert_eq!(t("/..%2f..%2fetc/passwd"), None);
        assert_eq!(t("/..%5c..%5cetc"), None);
        assert_eq!(t("/a\\..\\b"), None);
        assert_eq!(t("/a%00b"), None);
    }
}
