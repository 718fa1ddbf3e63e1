//! The tutorial's message-and-file Transceiver over real loopback sockets,
//! against itself and against a faithful copy of the Python `Transceiver`
//! class.

mod util;

use std::fs;
use std::io::{self, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use socketserver::framing::{Checksum, FrameCodec};
use socketserver::transceiver::{plain_file_name, FileReceipt, Transceiver};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The tutorial's Python `Transceiver` class, as published (comments
/// translated, nothing else changed), and a client that uses it as the
/// tutorial's Python client does.
const SEED_PY: &str = r#"
import socket, sys
from os.path import getsize

class Transceiver:
    def __init__(self, conn, path='.', buffer=65536) -> None:
        self.conn = conn
        self.path = path
        self.buffer = buffer

    @staticmethod
    def pack(n: int) -> bytes:
        if n >= 4294967296 or n < 0:
            raise ValueError('The value is out of range.')
        values = ((0b11111111000000000000000000000000, 24),
                  (0b111111110000000000000000, 16), (0b1111111100000000, 8), (0b11111111, 0))
        ret = b''
        for i in values:
            x = (n & i[0]) >> i[1]
            x = x.to_bytes(length=1, byteorder='big')
            ret += x
        return ret

    @staticmethod
    def unpack(numlist: bytes) -> int:
        if len(numlist) != 4:
            raise ValueError('The bytes length must be 4.')
        values = (24, 16, 8, 0)
        ret = 0
        i = 0
        while i < 4:
            n = numlist[i]
            ret += n << values[i]
            i += 1
        return ret

    def send(self, message: str) -> None:
        if (type(message) is str):
            message = message.encode()
        self.conn.sendall(self.pack(len(message)))
        self.conn.sendall(message)

    @property
    def recv(self) -> str:
        length = self.unpack(self.conn.recv(4))
        return self.conn.recv(length).decode()

    def send_file(self, name: str) -> int:
        try:
            length = getsize(self.path + '/' + name)
            if length > 4294967295:
                return -2
            self.send(name + ',' + str(length))
            with open(self.path + '/' + name, mode='rb') as f:
                while length >= 0:
                    file = f.read(self.buffer)
                    self.conn.sendall(file)
                    length -= self.buffer
        except FileNotFoundError:
            return -1
        return 1

    def recv_file(self) -> int:
        try:
            name, length = self.recv.split(',')
            with open(self.path + '/' + name, mode='wb') as f:
                size = 0
                length = int(length)
                while length > size:
                    file = self.conn.recv(self.buffer)
                    f.write(file)
                    size += len(file)
        except FileNotFoundError:
            return -1
        return 1

mode, port, path, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.settimeout(10)
    s.connect(('127.0.0.1', port))
    m = Transceiver(s, path=path)
    if mode == 'send':
        m.send('你好,服务端')
        print(m.recv)
        m.send('file')
        print(m.send_file(name))
        m.send('q')
    else:
        print(m.recv)
        print(m.recv_file())
"#;

/// A connected loopback TCP pair, both ends with timeouts so no test hangs.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    for s in [&client, &server] {
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_write_timeout(Some(TIMEOUT)).unwrap();
    }
    (client, server)
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Plays a hand-written sender against a receiver in `dir`: the header
/// message, then `body` raw. Returns the receiver's result and its framed
/// reply, if any.
fn upload(
    dir: &Path,
    header: &str,
    body: &[u8],
    setup: impl FnOnce(&mut Transceiver<TcpStream>),
) -> (io::Result<FileReceipt>, Option<String>) {
    let (mut a, b) = tcp_pair();
    let (header, body) = (header.to_owned(), body.to_owned());
    let sender = thread::spawn(move || {
        FrameCodec::default()
            .write_frame(&mut a, header.as_bytes())
            .unwrap();
        // A receiver that refuses the header stops reading: that is not our failure.
        let _ = a
            .write_all(&body)
            .and_then(|()| a.shutdown(Shutdown::Write));
        match FrameCodec::default().read_frame(&mut a) {
            Ok(Some(reply)) => Some(String::from_utf8(reply).unwrap()),
            _ => None,
        }
    });
    let mut receiver = Transceiver::new(b, dir);
    setup(&mut receiver);
    let result = receiver.recv_file();
    // Half-close rather than drop: closing with the sender's bytes unread would
    // reset the connection, and the reply could be lost with it.
    receiver.get_ref().shutdown(Shutdown::Write).unwrap();
    (result, sender.join().unwrap())
}

/// Waits for `child` at most [`TIMEOUT`]; its stdout.
fn finish(child: Child) -> String {
    let deadline = Instant::now() + TIMEOUT;
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("python3 did not finish in time");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Starts the tutorial's Python client in `mode` (its directory `path`, its
/// file `name`) against a new listener; the child and a transceiver over the
/// accepted connection, with `ours` for its directory. `None`, said visibly,
/// when python3 is missing.
fn python_seed(
    mode: &str,
    path: &Path,
    name: &str,
    ours: &Path,
) -> Option<(Child, Transceiver<TcpStream>)> {
    if !util::require_tool("python3") {
        return None;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let child = Command::new("python3")
        .args(["-c", SEED_PY, mode, &port, path.to_str().unwrap(), name])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("python3 never connected: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    Some((child, Transceiver::new(stream, ours)))
}

#[test]
fn messages_round_trip_including_chinese() {
    let (a, b) = tcp_pair();
    let dir = tempfile::tempdir().unwrap();
    let echo = thread::spawn(move || {
        let mut server = Transceiver::new(b, "unused");
        while let Some(data) = server.recv().unwrap() {
            server
                .send(&format!("服务端收到了你发来的“{data}”信息!"))
                .unwrap();
        }
    });
    let mut client = Transceiver::new(a, dir.path());
    for message in ["hello", "你好,世界", "", "q"] {
        client.send(message).unwrap();
        let reply = client.recv().unwrap().unwrap();
        assert_eq!(reply, format!("服务端收到了你发来的“{message}”信息!"));
    }
    client.get_ref().shutdown(Shutdown::Write).unwrap();
    echo.join().unwrap();
    assert_eq!(client.recv().unwrap(), None, "a clean close reads as None");
}

#[test]
fn recv_refuses_oversize_and_invalid_utf8() {
    let (mut a, b) = tcp_pair();
    let codec = FrameCodec::default();
    codec.write_frame(&mut a, b"\xff\xfe").unwrap();
    codec.write_frame(&mut a, b"123456789").unwrap();
    let mut receiver = Transceiver::new(b, "unused");
    receiver.max_message = 8;
    let err = receiver.recv().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("utf-8"), "{err}");
    let err = receiver.recv().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(
        err.to_string().contains("exceeds the maximum of 8"),
        "{err}"
    );
}

/// A file to send: two fresh directories, `from` and `to`, and in `from` a
/// file `source` of `len` bytes, `data`.
fn file_to_send(name: &str, len: usize) -> (TempDir, TempDir, Vec<u8>, PathBuf) {
    let from = tempfile::tempdir().unwrap();
    let to = tempfile::tempdir().unwrap();
    let data = util::payload(0x2545_F491_4F6C_DD1D, len);
    let source = from.path().join(name);
    fs::write(&source, &data).unwrap();
    (from, to, data, source)
}

/// The file at `path` holds `data` (without printing either when not).
fn assert_same_bytes(path: &Path, data: &[u8]) {
    assert!(fs::read(path).unwrap() == data, "bytes differ");
}

fn verified_round_trip(checksum: Checksum) {
    let (a, b) = tcp_pair();
    let (from, to, data, source) = file_to_send("数据.bin", 300 * 1024);

    let target = to.path().to_owned();
    let receiver = thread::spawn(move || {
        let mut t = Transceiver::new(b, target);
        t.chunk = 64 * 1024;
        t.recv_file().unwrap()
    });
    let mut sender = Transceiver::new(a, from.path());
    sender.checksum = checksum;
    let mut progress = Vec::new();
    let sent = sender
        .send_file(&source, true, &mut |n| progress.push(n))
        .unwrap();
    let received = receiver.join().unwrap();

    let expected = format!("{}:{}", checksum.name(), checksum.digest_hex(&data));
    assert_eq!(sent.checksum.as_deref(), Some(expected.as_str()));
    assert_eq!(received.checksum, sent.checksum);
    assert_eq!(
        (sent.size, received.size),
        (data.len() as u64, data.len() as u64)
    );
    assert_eq!(received.name, "数据.bin");
    assert_eq!(received.path, to.path().join("数据.bin"));
    assert_same_bytes(&received.path, &data);
    assert_eq!(entries(to.path()), ["数据.bin"]);
    assert_eq!(progress.len(), 5, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    assert_eq!(progress.last(), Some(&(data.len() as u64)));
}

#[test]
fn verified_file_round_trip_sha256() {
    verified_round_trip(Checksum::Sha256);
}

#[test]
fn verified_file_round_trip_md5() {
    verified_round_trip(Checksum::Md5);
}

#[test]
fn seed_form_file_round_trip() {
    let (a, b) = tcp_pair();
    let (from, to, data, source) = file_to_send("a.txt", 70_000);
    let target = to.path().to_owned();
    let receiver = thread::spawn(move || {
        let mut t = Transceiver::new(b, target);
        let receipt = t.recv_file().unwrap();
        // The Python form gets no reply: the next thing on the wire is the sender's.
        (receipt, t.recv().unwrap())
    });
    let mut sender = Transceiver::new(a, from.path());
    let sent = sender.send_file(&source, false, &mut |_| {}).unwrap();
    sender.send("q").unwrap();
    let (received, next) = receiver.join().unwrap();
    assert_eq!(sent.checksum, None);
    assert_eq!(received.size, 70_000);
    assert_eq!(next.as_deref(), Some("q"));
    assert_same_bytes(&to.path().join("a.txt"), &data);
}

#[test]
fn python_seed_client_sends_message_and_file_to_rust() {
    let (from, to, data, _) = file_to_send("报告.pdf", 200_000);
    let Some((child, mut server)) = python_seed("send", from.path(), "报告.pdf", to.path())
    else {
        return;
    };
    // The Python server's loop.
    let mut messages = Vec::new();
    loop {
        let data = server
            .recv()
            .unwrap()
            .expect("the client says q before closing");
        match data.as_str() {
            "q" | "Q" => break,
            "file" | "FILE" => messages.push(server.recv_file().unwrap().name),
            _ => {
                server
                    .send(&format!("服务端于今天收到了你发来的“{data}”信息!"))
                    .unwrap();
                messages.push(data);
            }
        }
    }
    let out = finish(child);
    assert_eq!(messages, ["你好,服务端", "报告.pdf"]);
    assert_eq!(out, "服务端于今天收到了你发来的“你好,服务端”信息!\n1\n");
    assert_same_bytes(&to.path().join("报告.pdf"), &data);
    assert_eq!(entries(to.path()), ["报告.pdf"]);
}

#[test]
fn python_seed_receives_a_file_from_rust() {
    let (from, to, data, source) = file_to_send("b.bin", 150_000);
    let Some((child, mut sender)) = python_seed("recv", to.path(), "unused", from.path()) else {
        return;
    };
    sender.send("文件来了").unwrap();
    sender.send_file(&source, false, &mut |_| {}).unwrap();
    assert_eq!(finish(child), "文件来了\n1\n");
    assert_same_bytes(&to.path().join("b.bin"), &data);
}

#[test]
fn plain_file_name_reduces_and_refuses() {
    for (sent, kept) in [
        ("../../etc/passwd", "passwd"),
        ("/abs/x", "x"),
        ("C:\\a\\b.txt", "b.txt"),
        ("a/b\\c", "c"),
        ("报告.pdf", "报告.pdf"),
        ("..hidden", "..hidden"),
        ("a,b.txt", "a,b.txt"),
    ] {
        assert_eq!(plain_file_name(sent).unwrap(), kept, "{sent:?}");
    }
    for refused in [
        "",
        ".",
        "..",
        "dir/",
        "a/..",
        "x\\.",
        "nul\0byte",
        "new\nline",
        "del\x7f",
    ] {
        let err = plain_file_name(refused).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{refused:?}");
    }
}

#[test]
fn traversal_names_land_inside_dir() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a").join("b");
    fs::create_dir_all(&dir).unwrap();
    for (header, body, kept) in [
        ("../../escape.txt,5", "first", "escape.txt"),
        ("/abs/x,4", "abso", "x"),
        ("C:\\a\\b.txt,3", "win", "b.txt"),
    ] {
        let (result, reply) = upload(&dir, header, body.as_bytes(), |_| {});
        assert_eq!(result.unwrap().name, kept);
        assert_eq!(reply, None, "the seed form gets no reply");
        assert_eq!(fs::read_to_string(dir.join(kept)).unwrap(), body);
    }
    assert_eq!(entries(&dir), ["b.txt", "escape.txt", "x"]);
    assert_eq!(entries(root.path()), ["a"]);
    assert_eq!(entries(&root.path().join("a")), ["b"]);

    let (result, _) = upload(&dir, "../..,5", b"first", |_| {});
    let err = result.unwrap_err();
    assert!(err.to_string().contains("refused file name"), "{err}");
    assert_eq!(entries(&dir), ["b.txt", "escape.txt", "x"]);
}

#[test]
fn size_over_limit_is_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    // Verified form: refused with a reply.
    let (result, reply) = upload(dir.path(), "big.bin,11,md5:00", &[0; 11], |t| {
        t.max_file_size = 10
    });
    let err = result.unwrap_err();
    assert_eq!(
        err.to_string(),
        "upload of big.bin refused: 11 bytes exceeds the limit of 10"
    );
    assert_eq!(reply, Some(format!("error: {err}")));

    // Python form: refused without one, at the Python class's own 4 GiB limit.
    let (result, reply) = upload(dir.path(), "report.pdf,5000000000", &[0; 100], |_| {});
    let err = result.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert_eq!(
        err.to_string(),
        "upload of report.pdf refused: 5000000000 bytes exceeds the limit of 4294967295"
    );
    assert_eq!(reply, None);

    for header in [
        "nolength",
        "x.bin,-1",
        "x.bin,12abc",
        "x.bin,99999999999999999999",
    ] {
        let (result, _) = upload(dir.path(), header, b"", |_| {});
        let err = result.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{header}: {err}");
    }
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn send_file_refuses_files_over_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    fs::write(&source, [0; 11]).unwrap();
    let (a, b) = tcp_pair();
    let mut sender = Transceiver::new(a, dir.path());
    sender.max_file_size = 10;
    let err = sender.send_file(&source, false, &mut |_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "big.bin not sent: 11 bytes exceeds the limit of 10"
    );
    drop(sender);
    let mut receiver = Transceiver::new(b, dir.path());
    assert_eq!(receiver.recv().unwrap(), None, "nothing was sent");
}

#[test]
fn upload_cut_halfway_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for header in ["half.bin,1000", "half.bin,1000,sha256:00"] {
        let (result, _) = upload(dir.path(), header, &[7; 500], |t| t.chunk = 128);
        let err = result.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        assert_eq!(
            err.to_string(),
            "upload of half.bin cut short: 500 of 1000 bytes received"
        );
        assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    }
}

#[test]
fn checksum_mismatch_is_answered_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = Checksum::Md5.digest_hex(b"something else");
    for algorithm in ["md5", "sha256"] {
        let header = format!("f.txt,5,{algorithm}:{wrong}");
        let (result, reply) = upload(dir.path(), &header, b"hello", |_| {});
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
        let reply = reply.unwrap();
        assert!(
            reply.starts_with("error: upload of f.txt corrupted"),
            "{reply}"
        );
        assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    }
    let (result, reply) = upload(dir.path(), "f.txt,5,crc32:00", b"hello", |_| {});
    assert!(result.is_err());
    assert!(reply.unwrap().contains("unknown checksum"));
    assert!(entries(dir.path()).is_empty());
}

/// Sends a file `name` holding `contents` to a receiver that fails early (a
/// full disk): it reads the file's header and the first `len` bytes of its
/// body, replies "error: disk full" and hangs up, with whatever more was
/// sent unread (a reset). What `send_file` reported, the header and the
/// bytes the receiver read.
fn send_to_failing_receiver(name: &str, contents: &[u8], len: usize) -> (String, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join(name);
    fs::write(&source, contents).unwrap();
    let (a, b) = tcp_pair();
    let receiver = thread::spawn(move || {
        let mut t = Transceiver::new(b, "unused");
        let header = t.recv().unwrap().unwrap();
        let mut body = vec![0; len];
        io::Read::read_exact(t.get_mut(), &mut body).unwrap();
        t.send("error: disk full").unwrap();
        drop(t);
        (header, body)
    });
    let err = Transceiver::new(a, dir.path())
        .send_file(&source, true, &mut |_| {})
        .unwrap_err();
    let (header, body) = receiver.join().unwrap();
    (err.to_string(), header, body)
}

#[test]
fn send_file_returns_the_receivers_error() {
    let (err, header, body) = send_to_failing_receiver("c.txt", b"hello", 5);
    assert_eq!(err, "error: disk full");
    assert_eq!(
        header,
        format!("c.txt,5,md5:{}", Checksum::Md5.digest_hex(b"hello"))
    );
    assert_eq!(body, b"hello");
}

/// A receiver that fails early (a full disk) replies and hangs up while the
/// sender is still sending: the sender's next write fails, and it reports
/// the receiver's reply, not "Broken pipe" (it did before, found by
/// tests/attacks.rs under load).
#[test]
fn send_file_returns_the_receivers_error_when_it_hangs_up_mid_file() {
    // Far more than the socket buffers hold: the sender is mid-file when the
    // receiver hangs up.
    let (err, header, _) = send_to_failing_receiver("big.bin", &vec![7u8; 32 << 20], 1000);
    assert!(header.starts_with("big.bin,33554432,md5:"), "{header}");
    assert_eq!(err, "error: disk full");
}

#[test]
fn symlink_at_the_final_name_is_replaced_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("uploads");
    fs::create_dir(&dir).unwrap();
    let outside = root.path().join("secret.txt");
    fs::write(&outside, "secret").unwrap();
    symlink(&outside, dir.join("target.txt")).unwrap();

    upload(&dir, "target.txt,6", b"upload", |_| {}).0.unwrap();
    assert_eq!(fs::read_to_string(&outside).unwrap(), "secret");
    let target = dir.join("target.txt");
    assert!(!fs::symlink_metadata(&target)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_to_string(&target).unwrap(), "upload");
}

#[test]
fn symlinks_at_temporary_names_are_skipped_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("uploads");
    fs::create_dir(&dir).unwrap();
    // Every temporary name this test process can reach first: the counter is
    // shared by all tests in the binary, which make far fewer than 200 uploads.
    let pid = std::process::id();
    let outside = root.path().join("outside.txt");
    fs::write(&outside, "untouched").unwrap();
    for n in 0..200 {
        symlink(&outside, dir.join(format!(".t.bin.part-{pid}-{n}"))).unwrap();
    }
    upload(&dir, "t.bin,3", b"new", |_| {}).0.unwrap();
    assert_eq!(fs::read_to_string(&outside).unwrap(), "untouched");
    assert_eq!(fs::read_to_string(dir.join("t.bin")).unwrap(), "new");
    let names = entries(&dir);
    assert_eq!(names.len(), 201, "only the symlinks and the upload remain");
    assert!(names
        .iter()
        .filter(|n| n.starts_with('.'))
        .all(|n| fs::symlink_metadata(dir.join(n))
            .unwrap()
            .file_type()
            .is_symlink()));
}

#[test]
fn local_failures_are_reported_without_local_paths() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("missing");
    let header = format!("g.txt,5,md5:{}", Checksum::Md5.digest_hex(b"hello"));
    let (result, reply) = upload(&missing, &header, b"hello", |_| {});
    let err = result.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");
    assert_eq!(
        reply.as_deref(),
        Some("error: the receiver could not store the file")
    );
    assert_eq!(entries(root.path()), Vec::<String>::new());
}
