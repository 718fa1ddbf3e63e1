//! The CPython anchors: Python's own `socketserver` classes, run with
//! `python3 -c SCRIPT ARG`. Each prints `listening on HOST:PORT` and leaves on
//! SIGTERM the way a Python program does after Ctrl-C: the signal handler
//! raises `SystemExit` out of `serve_forever`, and the `with` block calls
//! `server_close` (which, as `block_on_close` is true, joins the threads of
//! connections still open).

/// `ThreadingTCPServer` (`tcp`) or `UDPServer` (`udp`) echo. The stream
/// handler is the tutorials' communication loop (`recv`, `sendall`) with an 8 KiB
/// read, as the Rust servers read.
pub const ECHO_SERVER: &str = r#"
import signal, socketserver, sys

class StreamEcho(socketserver.BaseRequestHandler):
    def handle(self):
        conn = self.request
        while True:
            data = conn.recv(8192)
            if not data:
                break
            conn.sendall(data)

class DatagramEcho(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data, self.client_address)

def stop(*_):
    raise SystemExit(0)

signal.signal(signal.SIGTERM, stop)
if sys.argv[1] == 'udp':
    server = socketserver.UDPServer(('127.0.0.1', 0), DatagramEcho)
else:
    server = socketserver.ThreadingTCPServer(('127.0.0.1', 0), StreamEcho)
with server:
    print('listening on %s:%d' % server.server_address, flush=True)
    server.serve_forever()
"#;

/// The tutorials' framed remote-command protocol (header length, JSON header,
/// body) on a `ThreadingTCPServer` (scenario g), the twin of
/// examples/bench_framed_server.rs: `struct.unpack('i')` for the header
/// length, `json.loads` for the header, `hashlib.md5` over the body, and a
/// header-only reply `{"total_size": 0, "ok": true}`.
pub const FRAMED_SERVER: &str = r#"
import hashlib, json, signal, socketserver, struct

class Framed(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            head = self.rfile.read(4)
            if len(head) < 4:
                break
            header_len = struct.unpack('i', head)[0]
            header = json.loads(self.rfile.read(header_len).decode())
            body = self.rfile.read(header['total_size'])
            ok = hashlib.md5(body).hexdigest() == header.get('md5')
            reply = json.dumps({'total_size': 0, 'ok': ok}).encode()
            self.wfile.write(struct.pack('i', len(reply)) + reply)

def stop(*_):
    raise SystemExit(0)

signal.signal(signal.SIGTERM, stop)
with socketserver.ThreadingTCPServer(('127.0.0.1', 0), Framed) as server:
    print('listening on %s:%d' % server.server_address, flush=True)
    server.serve_forever()
"#;
