//! The `socketserver` program, driven the way its users drive it: each
//! server started with `--bind 127.0.0.1:0`, its `listening on` line read,
//! the tutorials' own Python clients (standard library only, written as the
//! tutorials write them) talking to it, bad input thrown at it, SIGTERM to end it.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use util::{bounded, python, Running, BIN, CLIENT_TIMEOUT};

const LIMIT: Duration = Duration::from_secs(60);

/// The tutorials' phone-call client: `phone.send(msg.encode('utf-8'))`,
/// `data = phone.recv(1024)`.
const PHONE_CLIENT: &str = r#"
import socket, sys
phone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
phone.settimeout(10)
phone.connect(('127.0.0.1', int(sys.argv[1])))
for msg in ['hello', 'feng', '你好']:
    phone.send(msg.encode('utf-8'))
    data = phone.recv(1024)
    print(data.decode('utf-8'))
phone.close()
"#;

/// Runs the program with `args`, then python3's `client` with the port it
/// listens on; the program must exit 0 on SIGTERM after. What the client
/// printed, and the address the program listened on.
fn python_client_against(args: &[&str], client: &str) -> (String, String) {
    let server = Running::start(args);
    let out = python(client, &[&server.port()]);
    let address = server.address.clone();
    assert!(
        server.terminate().success(),
        "{args:?}: exit status 0 after SIGTERM"
    );
    (out, address)
}

#[test]
fn python_phone_client_against_echo_upper() {
    bounded(LIMIT, || {
        for mode in ["sync", "threading", "pool", "coroutine", "forking"] {
            let (out, _) = python_client_against(
                &["echo", "--bind", "127.0.0.1:0", "--upper", "--mode", mode],
                PHONE_CLIENT,
            );
            assert_eq!(out, "HELLO\nFENG\n你好\n", "mode {mode}");
        }
    });
}

/// The tutorials' UDP echo client: `sendto(msg.encode('utf-8'), ip_port)`,
/// `msg, addr = recvfrom(1024)`.
const UDP_CLIENT: &str = r#"
import socket, sys
client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client.settimeout(10)
for msg in ['hello', 'udp']:
    client.sendto(msg.encode('utf-8'), ('127.0.0.1', int(sys.argv[1])))
    msg, server_addr = client.recvfrom(1024)
    print(msg.decode('utf-8'))
"#;

#[test]
fn python_udp_client_against_udp_echo() {
    bounded(LIMIT, || {
        let (out, _) = python_client_against(
            &["echo", "--bind", "127.0.0.1:0", "--udp", "--upper"],
            UDP_CLIENT,
        );
        assert_eq!(out, "HELLO\nUDP\n");
    });
}

/// The tutorials' UDP time client: an empty datagram gets `%Y-%m-%d %X`.
const TIME_CLIENT: &str = r#"
import socket, sys, time
tcp_client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tcp_client.settimeout(10)
ip_port = ('127.0.0.1', int(sys.argv[1]))
for msg in ['', '%Y', '%H:%M']:
    tcp_client.sendto(msg.encode('utf-8'), ip_port)
    data = tcp_client.recv(1024)
    print(data.decode('utf-8'))
print(time.strftime('%Y'))
"#;

#[test]
fn python_time_client_against_time_server() {
    bounded(LIMIT, || {
        let (out, _) = python_client_against(&["time", "--bind", "127.0.0.1:0"], TIME_CLIENT);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(
            chrono::NaiveDateTime::parse_from_str(lines[0], "%Y-%m-%d %H:%M:%S").is_ok(),
            "{out}"
        );
        assert_eq!(
            lines[1], lines[3],
            "the year, as Python's strftime gives it"
        );
        assert_eq!(lines[2].len(), 5, "{out}");
    });
}

/// The tutorials' remote-command client, final version (粘包 fixed): struct
/// 'i' header length, JSON header, then `total_size` bytes.
const EXEC_CLIENT: &str = r#"
import socket, struct, json, sys
phone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
phone.settimeout(10)
phone.connect(('127.0.0.1', int(sys.argv[1])))
for cmd in sys.argv[2:]:
    phone.send(cmd.encode('utf-8'))
    header_res = phone.recv(4)
    header_size = struct.unpack('i', header_res)[0]
    head_bytes = b''
    while len(head_bytes) < header_size:
        head_bytes += phone.recv(header_size - len(head_bytes))
    head_dic = json.loads(head_bytes.decode('utf-8'))
    cmd_res = b''
    recv_size = 0
    total_size = head_dic['total_size']
    while recv_size < total_size:
        recv_data = phone.recv(1024)
        cmd_res += recv_data
        recv_size += len(recv_data)
    print(json.dumps({'error': head_dic.get('error'), 'out': cmd_res.decode('utf-8')}))
phone.close()
"#;

#[test]
fn python_exec_client_against_exec_server() {
    bounded(LIMIT, || {
        let server = Running::start(&["exec", "--bind", "127.0.0.1:0"]);
        let long = format!("echo {}", "x".repeat(900));
        let out = python(
            EXEC_CLIENT,
            &[
                &server.port(),
                "echo hello 粘包",
                "pwd",
                &long,
                "rm -rf /tmp/nothing",
                "ls; id",
                "echo $(id)",
                "nosuch",
            ],
        );
        let replies: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(replies[0]["out"], "hello 粘包\n");
        assert!(replies[0]["error"].is_null());
        assert!(replies[1]["out"].as_str().unwrap().starts_with('/'));
        assert_eq!(
            replies[2]["out"].as_str().unwrap().len(),
            901,
            "a long reply arrives whole"
        );
        for refused in &replies[3..] {
            let error = refused["error"]
                .as_str()
                .unwrap_or_else(|| panic!("refused: {refused}"));
            assert!(
                refused["out"].as_str().unwrap().starts_with("error: "),
                "{refused}"
            );
            assert!(
                error.contains("not allowed") || error.contains("without a shell"),
                "{error}"
            );
        }
        assert!(server.terminate().success());
    });
}

/// A non-UTF-8 command gets a framed error, and the connection goes on.
#[test]
fn exec_refuses_non_utf8_with_a_framed_error() {
    bounded(LIMIT, || {
        let server = Running::start(&["exec", "--bind", "127.0.0.1:0"]);
        let mut stream = TcpStream::connect(server.socket_addr()).unwrap();
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let codec = socketserver::framing::MessageCodec::new(
            socketserver::framing::LengthPrefix::NativeI32,
        );
        stream.write_all(&[0xff, 0xfe, b'l', b's']).unwrap();
        let (header, body) = codec.read_message(&mut stream).unwrap().unwrap();
        assert!(header.extra["error"]
            .as_str()
            .unwrap()
            .contains("not UTF-8"));
        assert!(String::from_utf8(body).unwrap().starts_with("error: "));
        stream.write_all(b"echo still here").unwrap();
        let (_, body) = codec.read_message(&mut stream).unwrap().unwrap();
        assert_eq!(body, b"still here\n");
        server.log_line("refused");
    });
}

/// The exec server refuses to listen beyond loopback unless `--any`.
#[test]
fn exec_is_loopback_only_by_default() {
    let out = Command::new(BIN)
        .args(["exec", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback only"));
}

/// The message-and-file client (the tutorial's Python `Transceiver` class, as
/// written there).
const TRANSCEIVER_CLIENT: &str = r#"
import socket, sys
from os.path import getsize

class Transceiver:
    def __init__(self, conn, path='.', buffer=65536):
        self.conn = conn; self.path = path; self.buffer = buffer
    @staticmethod
    def pack(n):
        if n >= 4294967296 or n < 0:
            raise ValueError('The value is out of range.')
        values = ((0b11111111000000000000000000000000, 24), (0b111111110000000000000000, 16), (0b1111111100000000, 8), (0b11111111, 0))
        ret = b''
        for i in values:
            ret += ((n & i[0]) >> i[1]).to_bytes(length=1, byteorder='big')
        return ret
    @staticmethod
    def unpack(numlist):
        values = (24, 16, 8, 0); ret = 0
        for i in range(4):
            ret += numlist[i] << values[i]
        return ret
    def send(self, message):
        if type(message) is str:
            message = message.encode()
        self.conn.sendall(self.pack(len(message)))
        self.conn.sendall(message)
    @property
    def recv(self):
        length = self.unpack(self.conn.recv(4))
        return self.conn.recv(length).decode()
    def send_file(self, name):
        length = getsize(self.path + '/' + name)
        self.send(name + ',' + str(length))
        with open(self.path + '/' + name, mode='rb') as f:
            while length >= 0:
                self.conn.sendall(f.read(self.buffer))
                length -= self.buffer
        return 1

with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.settimeout(10)
    s.connect(('127.0.0.1', int(sys.argv[1])))
    m = Transceiver(s, path=sys.argv[2])
    m.send('你好')
    print(m.recv)
    m.send('file')
    m.send_file(sys.argv[3])
    m.send('after the file')
    print(m.recv)
    m.send('q')
"#;

#[test]
fn python_transceiver_client_against_files_server() {
    bounded(LIMIT, || {
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("source");
        std::fs::create_dir(&source).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
        std::fs::write(source.join("report.bin"), &data).unwrap();
        let server = Running::start_in(&["files", "--bind", "127.0.0.1:0"], Some(work.path()));
        let out = python(
            TRANSCEIVER_CLIENT,
            &[&server.port(), source.to_str().unwrap(), "report.bin"],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("服务端于") && lines[0].ends_with("收到了你发来的“你好”信息!"),
            "{out}"
        );
        assert!(lines[1].contains("“after the file”"), "{out}");
        server.log_line("received report.bin");
        assert_eq!(
            std::fs::read(work.path().join("received/report.bin")).unwrap(),
            data
        );
        assert!(server.terminate().success());
    });
}

/// A Transceiver frame header to the files server.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Sends a message and reads the acknowledgement: the server still serves.
fn still_serving(address: SocketAddr) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream.write_all(&frame("ping".as_bytes())).unwrap();
    let mut len = [0; 4];
    stream.read_exact(&mut len).unwrap();
    let mut reply = vec![0; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut reply).unwrap();
    assert!(String::from_utf8(reply).unwrap().contains("“ping”"));
}

/// Bad input to the files server: an oversize length header, an upload cut
/// halfway, a path-traversal name. Each is refused and logged, no partial
/// file remains, nothing lands outside the directory, memory does not jump,
/// and the server keeps serving.
#[test]
fn files_server_survives_bad_input() {
    bounded(LIMIT, || {
        let work = tempfile::tempdir().unwrap();
        let server = Running::start_in(&["files", "--bind", "127.0.0.1:0"], Some(work.path()));
        let address = server.socket_addr();
        let received = work.path().join("received");
        let rss_before = server.rss_kib();

        // A length header claiming 4 GiB: refused before any allocation.
        let mut stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
        assert!(
            util::read_to_end(&stream).is_empty(),
            "the connection is closed"
        );
        server.log_line("exceeds");
        still_serving(address);

        // An upload cut halfway: no file, no temporary file left.
        let mut stream = TcpStream::connect(address).unwrap();
        stream.write_all(&frame(b"file")).unwrap();
        stream.write_all(&frame(b"half.bin,100000")).unwrap();
        stream.write_all(&[1; 50_000]).unwrap();
        drop(stream);
        server.log_line("half.bin");
        still_serving(address);

        // A name that climbs out of the directory lands inside it.
        let mut stream = TcpStream::connect(address).unwrap();
        stream.write_all(&frame(b"file")).unwrap();
        stream.write_all(&frame(b"../../escaped.txt,5")).unwrap();
        stream.write_all(b"hello").unwrap();
        stream.write_all(&frame(b"q")).unwrap();
        server.log_line("received escaped.txt");
        drop(stream);

        let names: Vec<String> = std::fs::read_dir(&received)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names,
            ["escaped.txt"],
            "no partial or temporary file remains"
        );
        assert!(!work.path().join("escaped.txt").exists());
        let grown = server.rss_kib().saturating_sub(rss_before);
        assert!(grown < 16 * 1024, "memory jumped by {grown} KiB");
        assert!(server.terminate().success());
    });
}

/// The tutorials' QQ chat client: the scripted server acknowledges automatically.
const CHAT_CLIENT: &str = r#"
import socket, sys
udp_client_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp_client_socket.settimeout(10)
qq_name_dic = {'狗哥alex': ('127.0.0.1', int(sys.argv[1]))}
for msg in ['在吗', 'hello']:
    udp_client_socket.sendto(msg.encode('utf-8'), qq_name_dic['狗哥alex'])
    back_msg, addr = udp_client_socket.recvfrom(1024)
    print('来自[%s:%s]的一条消息:%s' % (addr[0], addr[1], back_msg.decode('utf-8')))
"#;

#[test]
fn python_chat_client_against_chat_server() {
    bounded(LIMIT, || {
        let (out, address) = python_client_against(&["chat", "--bind", "127.0.0.1:0"], CHAT_CLIENT);
        assert_eq!(
            out,
            format!("来自[{0}]的一条消息:已收到 (received): 在吗\n来自[{0}]的一条消息:已收到 (received): hello\n", address)
        );
    });
}

/// The Rust clients against the Rust servers, as README shows them.
#[test]
fn rust_clients_against_rust_servers() {
    bounded(LIMIT, || {
        let client = |args: &[&str]| {
            let out = Command::new(BIN)
                .arg("client")
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let echo = Running::start(&["echo", "--bind", "127.0.0.1:0"]);
        assert_eq!(
            client(&["echo", "--connect", &echo.address, "one", "two"]),
            "one\ntwo\n"
        );
        let exec = Running::start(&["exec", "--bind", "127.0.0.1:0"]);
        assert_eq!(
            client(&["exec", "--connect", &exec.address, "echo framed"]),
            "framed\n"
        );

        let work = tempfile::tempdir().unwrap();
        let upload = work.path().join("upload.bin");
        std::fs::write(&upload, vec![42u8; 150_000]).unwrap();
        let files = Running::start_in(&["files", "--bind", "127.0.0.1:0"], Some(work.path()));
        let out = client(&[
            "files",
            "--connect",
            &files.address,
            "--upload",
            upload.to_str().unwrap(),
            "hi",
        ]);
        assert!(
            out.contains("“hi”") && out.contains("verified by the server"),
            "{out}"
        );
        assert_eq!(
            std::fs::read(work.path().join("received/upload.bin")).unwrap(),
            vec![42u8; 150_000]
        );
    });
}

/// `socketserver` with no arguments: the guided demo runs and exits 0.
#[test]
fn demo_runs_and_exits_cleanly() {
    bounded(LIMIT, || {
        let out = Command::new(BIN).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        for needle in [
            "ThreadingMixIn.process_request",
            "HELLO FROM CLIENT 3",
            "serve_forever returned",
            "fileno() is now -1",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    });
}

/// Unix sockets from the command line: the socket file goes with the server.
#[test]
fn unix_echo_removes_its_socket_file() {
    bounded(LIMIT, || {
        let path = util::unix_path("cli");
        let server = Running::start(&["echo", "--unix", path.to_str().unwrap()]);
        assert_eq!(server.address, path.display().to_string());
        let out = Command::new(BIN)
            .args([
                "client",
                "echo",
                "--unix",
                path.to_str().unwrap(),
                "over unix",
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "over unix\n");
        assert!(server.terminate().success());
        assert!(!path.exists());
    });
}
