//! Framing: round trips, byte-exact agreement with Python's `struct` and
//! `json.dumps` (as the tutorials' remote-command server and file
//! transceiver use them), and hostile input.

#[path = "util/chunked.rs"]
mod chunked;
mod util;

use std::io::{self, Cursor, Read};

use chunked::Chunked;
use proptest::prelude::*;
use socketserver::framing::{
    header_for, Checksum, FrameCodec, FrameError, Header, LengthPrefix, MessageCodec,
};

const PREFIXES: [LengthPrefix; 2] = [LengthPrefix::BigEndianU32, LengthPrefix::NativeI32];

/// A reader that hands out at most 7 bytes per read, as a slow socket does.
struct Trickle<R>(R);

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(7);
        self.0.read(&mut buf[..n])
    }
}

#[test]
fn frames_round_trip_with_both_prefixes() {
    let big = vec![0xA5; 200 * 1024];
    let payloads: [&[u8]; 4] = [b"hello", b"", "世界".as_bytes(), &big];
    for prefix in PREFIXES {
        let codec = FrameCodec::new(prefix);
        let mut wire = Vec::new();
        for payload in payloads {
            codec.write_frame(&mut wire, payload).unwrap();
        }
        assert_eq!(
            wire.len(),
            payloads.iter().map(|p| 4 + p.len()).sum::<usize>()
        );
        let mut reader = Trickle(Cursor::new(wire));
        for payload in payloads {
            assert_eq!(
                codec.read_frame(&mut reader).unwrap().as_deref(),
                Some(payload)
            );
        }
        assert!(codec.read_frame(&mut reader).unwrap().is_none());
    }
}

/// `prefix` encodes each of `lengths` as Python's `struct.pack(format, n)`.
fn assert_prefix_is_python_struct(prefix: LengthPrefix, format: &str, lengths: &[usize]) {
    if !util::require_tool("python3") {
        return;
    }
    let codec = FrameCodec::new(prefix).with_max_frame(usize::MAX);
    let ours: Vec<u8> = lengths
        .iter()
        .flat_map(|&n| codec.encode_length(n).unwrap())
        .collect();
    let theirs = util::python_with_input(
        &format!("import struct,sys; sys.stdout.buffer.write(b''.join(struct.pack('{format}', n) for n in {lengths:?}))"),
        &[],
        b"",
    );
    assert_eq!(ours, theirs);
}

#[test]
fn big_endian_prefix_is_python_struct_bang_i() {
    assert_eq!(
        FrameCodec::default(),
        FrameCodec::new(LengthPrefix::BigEndianU32)
    );
    assert_prefix_is_python_struct(
        LengthPrefix::BigEndianU32,
        "!I",
        &[0, 1, 255, 256, 65_535, 1 << 24, 4_294_967_295],
    );
}

#[test]
fn native_prefix_is_python_struct_i() {
    assert_prefix_is_python_struct(
        LengthPrefix::NativeI32,
        "i",
        &[0, 1, 255, 256, 65_535, 1 << 24, 2_147_483_647],
    );
}

#[test]
fn seed_000_message_is_byte_identical_to_python() {
    if !util::require_tool("python3") {
        return;
    }
    // The remote-command server's final version: struct.pack('i', len(head_bytes)),
    // json.dumps(header), body.
    let script = r#"
import hashlib, json, struct, sys
body = sys.stdin.buffer.read()
for header in ({'filename': 'a.txt', 'total_size': len(body), 'md5': 'xxxxxx'},
               {'filename': '报告\x7f"\\.txt', 'total_size': len(body),
                'md5': hashlib.md5(body).hexdigest(), 'error': 'é', 'status': 200}):
    head = json.dumps(header).encode('utf-8')
    sys.stdout.buffer.write(struct.pack('i', len(head)) + head + body)
"#;
    let body = "total 0\n日志".as_bytes();
    let theirs = util::python_with_input(script, &[], body);

    let codec = MessageCodec::default();
    let mut ours = Vec::new();
    let seed = Header {
        filename: Some("a.txt".into()),
        total_size: body.len() as u64,
        md5: Some("xxxxxx".into()),
        ..Header::default()
    };
    codec.write_message(&mut ours, &seed, body).unwrap();
    let mut fancy = header_for(body);
    fancy.filename = Some("报告\x7f\"\\.txt".into());
    fancy.extra.insert("status".into(), 200.into());
    fancy.extra.insert("error".into(), "é".into());
    codec.write_message(&mut ours, &fancy, body).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&theirs)
    );
    assert_eq!(ours, theirs);

    // And we read Python's bytes back into the same headers.
    let mut reader = Cursor::new(theirs);
    assert_eq!(
        codec.read_message(&mut reader).unwrap(),
        Some((seed, body.to_vec()))
    );
    assert_eq!(
        codec.read_message(&mut reader).unwrap(),
        Some((fancy, body.to_vec()))
    );
    assert_eq!(codec.read_message(&mut reader).unwrap(), None);
}

#[test]
fn python_reads_our_frames_and_messages() {
    if !util::require_tool("python3") {
        return;
    }
    let mut wire = Vec::new();
    FrameCodec::default()
        .write_frame(&mut wire, "你好".as_bytes())
        .unwrap();
    FrameCodec::new(LengthPrefix::NativeI32)
        .write_frame(&mut wire, b"ls")
        .unwrap();
    let mut header = header_for(b"body!");
    header.filename = Some("文件.bin".into());
    MessageCodec::default()
        .write_message(&mut wire, &header, b"body!")
        .unwrap();
    let script = r#"
import json, struct, sys
data = sys.stdin.buffer.read()
n, = struct.unpack('!I', data[:4]); first = data[4:4 + n]; data = data[4 + n:]
n, = struct.unpack('i', data[:4]); second = data[4:4 + n]; data = data[4 + n:]
n, = struct.unpack('i', data[:4]); header = json.loads(data[4:4 + n].decode('utf-8')); body = data[4 + n:]
assert len(body) == header['total_size']
print(first.decode(), second.decode(), header['filename'], header['md5'], body.decode())
"#;
    let out = String::from_utf8(util::python_with_input(script, &[], &wire)).unwrap();
    assert_eq!(
        out.trim_end(),
        format!("你好 ls 文件.bin {} body!", header.md5.unwrap())
    );
}

#[test]
fn oversize_length_fails_after_reading_only_the_prefix() {
    let codec = FrameCodec::default().with_max_frame(1024 * 1024);
    let mut reader = Cursor::new([&[0xFF; 4][..], &[0; 64]].concat());
    match codec.read_frame(&mut reader) {
        Err(FrameError::Oversize { len, max }) => {
            assert_eq!((len, max), (0xFFFF_FFFF, 1024 * 1024));
        }
        other => panic!("expected Oversize, got {other:?}"),
    }
    assert_eq!(reader.position(), 4);
}

#[test]
fn huge_header_length_is_refused_before_allocation() {
    let codec = MessageCodec::default();
    let mut reader = Cursor::new([&i32::MAX.to_ne_bytes()[..], b"{}"].concat());
    let err = codec.read_message(&mut reader).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Oversize {
                len: 2_147_483_647,
                max: 65_536
            }
        ),
        "{err:?}"
    );
    assert_eq!(reader.position(), 4);
}

#[test]
fn body_over_max_body_is_refused_before_reading_it() {
    let codec = MessageCodec {
        max_body: 10,
        ..MessageCodec::default()
    };
    let mut wire = Vec::new();
    let header = Header {
        total_size: 11,
        ..Header::default()
    };
    codec.write_header(&mut wire, &header).unwrap();
    let header_len = wire.len() as u64;
    wire.extend_from_slice(&[0; 11]);
    let mut reader = Cursor::new(wire);
    let err = codec.read_message(&mut reader).unwrap_err();
    assert!(
        matches!(err, FrameError::Oversize { len: 11, max: 10 }),
        "{err:?}"
    );
    assert_eq!(reader.position(), header_len);
}

#[test]
fn encode_length_refuses_what_cannot_be_sent() {
    let small = FrameCodec::default().with_max_frame(10);
    assert!(small.encode_length(10).is_ok());
    assert!(matches!(
        small.encode_length(11),
        Err(FrameError::Oversize { len: 11, max: 10 })
    ));
    let native = FrameCodec::new(LengthPrefix::NativeI32).with_max_frame(usize::MAX);
    assert!(matches!(
        native.encode_length(1 << 31),
        Err(FrameError::Oversize {
            max: 2_147_483_647,
            ..
        })
    ));
    let mut wire = Vec::new();
    assert!(small.write_frame(&mut wire, &[0; 11]).is_err());
    assert!(wire.is_empty(), "nothing is written for a refused frame");
}

#[test]
fn truncated_prefix_and_body() {
    let codec = FrameCodec::default();
    let err = codec.read_frame(&mut &[0u8, 0][..]).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Truncated {
                expected: 4,
                got: 2
            }
        ),
        "{err:?}"
    );
    let err = codec
        .read_frame(&mut &[0u8, 0, 0, 10, 1, 2, 3][..])
        .unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Truncated {
                expected: 10,
                got: 3
            }
        ),
        "{err:?}"
    );

    let messages = MessageCodec::default();
    let mut wire = Vec::new();
    messages
        .write_message(&mut wire, &header_for(b"0123456789"), b"0123456789")
        .unwrap();
    wire.truncate(wire.len() - 4);
    let err = messages.read_message(&mut Cursor::new(wire)).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Truncated {
                expected: 10,
                got: 6
            }
        ),
        "{err:?}"
    );
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn negative_native_length_is_an_error() {
    let codec = FrameCodec::new(LengthPrefix::NativeI32);
    let err = codec
        .read_frame(&mut &(-5i32).to_ne_bytes()[..])
        .unwrap_err();
    assert!(matches!(err, FrameError::Negative(-5)), "{err:?}");
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::InvalidData);
}

#[test]
fn garbage_json_is_malformed() {
    let codec = MessageCodec::default();
    for json in [
        &b"not json"[..],
        b"{}",
        br#"{"total_size": -1}"#,
        b"\xff\xfe",
    ] {
        let mut wire = Vec::new();
        FrameCodec::new(LengthPrefix::NativeI32)
            .write_frame(&mut wire, json)
            .unwrap();
        match codec.read_header(&mut Cursor::new(wire)) {
            Err(FrameError::Malformed(reason)) => assert!(reason.contains("json"), "{reason}"),
            other => panic!("expected Malformed for {json:?}, got {other:?}"),
        }
    }
}

#[test]
fn write_message_requires_a_matching_total_size() {
    let mut wire = Vec::new();
    let err = MessageCodec::default()
        .write_message(&mut wire, &header_for(b"abc"), b"abcd")
        .unwrap_err();
    assert!(matches!(err, FrameError::Malformed(_)), "{err:?}");
    assert!(wire.is_empty());
}

#[test]
fn empty_frame_and_empty_body_are_valid() {
    let codec = FrameCodec::default();
    let mut reader = &[0u8, 0, 0, 0][..];
    assert_eq!(codec.read_frame(&mut reader).unwrap(), Some(Vec::new()));
    assert_eq!(codec.read_frame(&mut reader).unwrap(), None);

    let messages = MessageCodec::default();
    let mut wire = Vec::new();
    messages
        .write_message(&mut wire, &header_for(b""), b"")
        .unwrap();
    let (header, body) = messages
        .read_message(&mut Cursor::new(wire))
        .unwrap()
        .unwrap();
    assert_eq!((header.total_size, body.len()), (0, 0));
}

#[test]
fn clean_end_of_stream_is_none() {
    for prefix in PREFIXES {
        assert!(FrameCodec::new(prefix)
            .read_frame(&mut io::empty())
            .unwrap()
            .is_none());
        assert!(MessageCodec::new(prefix)
            .read_message(&mut io::empty())
            .unwrap()
            .is_none());
    }
}

#[test]
fn header_keeps_unknown_fields() {
    let json = r#"{"total_size": 0, "error": "no such file", "status": 404, "sha256": "ab"}"#;
    let header: Header = serde_json::from_str(json).unwrap();
    assert_eq!(header.sha256.as_deref(), Some("ab"));
    assert_eq!(header.extra["error"], "no such file");
    assert_eq!(header.extra["status"], 404);
    let again: Header = serde_json::from_str(&serde_json::to_string(&header).unwrap()).unwrap();
    assert_eq!(again, header);
}

#[test]
fn errors_convert_to_io_errors_and_explain_themselves() {
    let oversize = FrameError::Oversize {
        len: 5_000_000_000,
        max: 16_777_216,
    };
    assert_eq!(
        oversize.to_string(),
        "frame of 5000000000 bytes exceeds the maximum of 16777216 (raise the limit if the peer is trusted)"
    );
    assert_eq!(io::Error::from(oversize).kind(), io::ErrorKind::InvalidData);
    let io_err = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
    let back = io::Error::from(FrameError::from(io_err));
    assert_eq!(back.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(back.to_string(), "reset");
    let malformed = io::Error::from(FrameError::Malformed("bad".into()));
    assert_eq!(malformed.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn checksums_match_known_digests() {
    assert_eq!(
        Checksum::Md5.digest_hex(b"hello"),
        "5d41402abc4b2a76b9719d911017c592"
    );
    assert_eq!(
        Checksum::Sha256.digest_hex(b"hello"),
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert_eq!(Checksum::parse("SHA256"), Some(Checksum::Sha256));
    assert_eq!(Checksum::parse("crc32"), None);
    for checksum in [Checksum::Md5, Checksum::Sha256] {
        assert_eq!(Checksum::parse(checksum.name()), Some(checksum));
    }
}

/// Reads frames until the end, an error or a panic; returns the lengths.
fn drain_frames(codec: FrameCodec, input: &[u8]) -> Vec<usize> {
    let mut reader = input;
    let mut lengths = Vec::new();
    while let Ok(Some(frame)) = codec.read_frame(&mut reader) {
        lengths.push(frame.len());
    }
    lengths
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_yield_an_oversize_frame(
        input in prop::collection::vec(any::<u8>(), 0..128),
        native in any::<bool>(),
    ) {
        let prefix = if native { LengthPrefix::NativeI32 } else { LengthPrefix::BigEndianU32 };
        for len in drain_frames(FrameCodec::new(prefix).with_max_frame(16), &input) {
            prop_assert!(len <= 16);
        }
    }

    #[test]
    fn plausible_lengths_never_yield_an_oversize_frame(
        len in 0u32..40,
        rest in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let input = [&len.to_be_bytes()[..], &rest].concat();
        let lengths = drain_frames(FrameCodec::default().with_max_frame(16), &input);
        for &n in &lengths {
            prop_assert!(n <= 16);
        }
        if len <= 16 && rest.len() >= len as usize {
            prop_assert_eq!(lengths.first().copied(), Some(len as usize));
        }
    }

    #[test]
    fn arbitrary_messages_respect_the_maxima(
        size in 0u64..24,
        extra in "(, \"[a-z]{1,3}\": \"[a-z]{0,20}\")?",
        rest in prop::collection::vec(any::<u8>(), 0..64),
        garble in any::<bool>(),
    ) {
        let json = format!("{{\"total_size\": {size}{extra}}}");
        let codec = MessageCodec { max_header: 48, max_body: 16, ..MessageCodec::default() };
        let mut input = (json.len() as i32).to_ne_bytes().to_vec();
        input.extend_from_slice(json.as_bytes());
        input.extend_from_slice(&rest);
        if garble {
            input.reverse();
        }
        let mut reader = &input[..];
        while let Ok(Some((header, body))) = codec.read_message(&mut reader) {
            prop_assert!(body.len() as u64 <= 16);
            prop_assert_eq!(header.total_size, body.len() as u64);
        }
    }
}

/// What reading frames from `input`, `chunk` bytes per read, gives: the
/// frames, then how it ended, and how many bytes were left unread.
fn frames_read(codec: FrameCodec, input: &[u8], chunk: usize) -> (Vec<Vec<u8>>, String, usize) {
    let mut reader = Chunked { data: input, chunk };
    let mut frames = Vec::new();
    loop {
        let before = reader.data.len();
        match codec.read_frame(&mut reader) {
            Ok(Some(frame)) => {
                // A frame consumes its 4 bytes of length and itself, no more.
                assert_eq!(before - reader.data.len(), 4 + frame.len());
                frames.push(frame);
            }
            Ok(None) => return (frames, "end".into(), reader.data.len()),
            Err(e) => {
                if let FrameError::Oversize { .. } | FrameError::Negative(_) = e {
                    // Refused after the 4 bytes of length, nothing past them.
                    assert_eq!(before - reader.data.len(), 4);
                }
                return (frames, e.to_string(), reader.data.len());
            }
        }
    }
}

proptest! {
    /// The same frames, the same error, the same bytes consumed, whether
    /// the stream arrives whole or a few bytes per read.
    #[test]
    fn decoding_does_not_depend_on_how_the_stream_is_cut(
        input in prop::collection::vec(any::<u8>(), 0..96),
        native in any::<bool>(),
        max in 0usize..24,
        chunk in 1usize..9,
    ) {
        let prefix = if native { LengthPrefix::NativeI32 } else { LengthPrefix::BigEndianU32 };
        let codec = FrameCodec::new(prefix).with_max_frame(max);
        let whole = frames_read(codec, &input, usize::MAX);
        let cut = frames_read(codec, &input, chunk);
        prop_assert_eq!(&whole, &cut);
        for frame in &whole.0 {
            prop_assert!(frame.len() <= max);
        }
    }

    /// Any frames written (each within the maximum) read back identical,
    /// in order, then a clean end, however the stream is cut.
    #[test]
    fn written_frames_read_back_identical(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8),
        native in any::<bool>(),
        chunk in 1usize..9,
    ) {
        let prefix = if native { LengthPrefix::NativeI32 } else { LengthPrefix::BigEndianU32 };
        let codec = FrameCodec::new(prefix).with_max_frame(40);
        let mut wire = Vec::new();
        for payload in &payloads {
            codec.write_frame(&mut wire, payload).unwrap();
        }
        let (frames, end, left) = frames_read(codec, &wire, chunk);
        prop_assert_eq!(frames, payloads);
        prop_assert_eq!(end, "end");
        prop_assert_eq!(left, 0);
    }

    /// A frame above the maximum is refused by the writer, and by the
    /// reader before any of its payload is read.
    #[test]
    fn oversize_frames_are_refused_both_ways(len in 17usize..64, native in any::<bool>()) {
        let prefix = if native { LengthPrefix::NativeI32 } else { LengthPrefix::BigEndianU32 };
        let small = FrameCodec::new(prefix).with_max_frame(16);
        let oversize = matches!(
            small.write_frame(&mut Vec::new(), &vec![0; len]),
            Err(FrameError::Oversize { .. })
        );
        prop_assert!(oversize);
        let mut wire = Vec::new();
        FrameCodec::new(prefix).write_frame(&mut wire, &vec![1; len]).unwrap();
        let (frames, end, left) = frames_read(small, &wire, 3);
        prop_assert!(frames.is_empty());
        prop_assert!(end.contains("exceeds the maximum of 16"), "{}", end);
        prop_assert_eq!(left, len);
    }

    /// Headers with any extra fields (any text, non-ASCII included, as
    /// Python's json.dumps escapes it) and any bodies read back identical.
    #[test]
    fn written_messages_read_back_identical(
        messages in prop::collection::vec(
            (prop::collection::btree_map("[a-z_]{1,8}", "\\PC{0,12}", 0..4),
             prop::collection::vec(any::<u8>(), 0..48)),
            0..5,
        ),
        chunk in 1usize..9,
    ) {
        let codec = MessageCodec::default();
        let mut wire = Vec::new();
        let mut sent = Vec::new();
        for (extra, body) in messages {
            let mut header = header_for(&body);
            // Extra fields, not the named ones (a second "md5" would
            // make JSON with a duplicate key).
            for (key, value) in extra {
                if !matches!(key.as_str(), "filename" | "md5") {
                    header.extra.insert(key, value.into());
                }
            }
            codec.write_message(&mut wire, &header, &body).unwrap();
            sent.push((header, body));
        }
        let mut reader = Chunked { data: &wire, chunk };
        for (header, body) in &sent {
            let (got_header, got_body) = codec.read_message(&mut reader).unwrap().unwrap();
            prop_assert_eq!(&got_header, header);
            prop_assert_eq!(&got_body, body);
        }
        prop_assert!(codec.read_message(&mut reader).unwrap().is_none());
    }
}
