//! `FrameCodec::read_frame` on arbitrary bytes, both length prefixes, a
//! small maximum, the stream cut into reads of any size: never a panic,
//! never a frame above the maximum, and each frame consumes exactly its
//! 4-byte length and its payload (a refused length: the 4 bytes only).
#![no_main]

use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use socketserver::framing::{FrameCodec, FrameError, LengthPrefix};

/// Hands out at most `chunk` bytes per read, as a socket may.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    // Byte 0: the prefix (bit 0) and the maximum frame (0..=127); byte 1:
    // the read size (1..=256); the rest: the stream.
    let [choice, chunk, stream @ ..] = data else {
        return;
    };
    let prefix = if choice & 1 == 0 {
        LengthPrefix::BigEndianU32
    } else {
        LengthPrefix::NativeI32
    };
    let max = usize::from(choice >> 1);
    let codec = FrameCodec::new(prefix).with_max_frame(max);
    let mut reader = Chunked {
        data: stream,
        chunk: usize::from(*chunk) + 1,
    };
    loop {
        let before = reader.data.len();
        match codec.read_frame(&mut reader) {
            Ok(Some(frame)) => {
                assert!(frame.len() <= max, "a frame of {} > {max}", frame.len());
                assert_eq!(before - reader.data.len(), 4 + frame.len());
            }
            Ok(None) => {
                assert_eq!(before, 0, "a clean end only at the end");
                break;
            }
            Err(FrameError::Oversize { len, max: limit }) => {
                assert!(len > limit && limit <= max as u64);
                assert_eq!(before - reader.data.len(), 4);
                break;
            }
            Err(FrameError::Negative(n)) => {
                assert!(prefix == LengthPrefix::NativeI32 && n < 0);
                assert_eq!(before - reader.data.len(), 4);
                break;
            }
            Err(FrameError::Truncated { expected, got }) => {
                assert!(got < expected);
                assert_eq!(reader.data.len(), 0, "truncated only at the end");
                break;
            }
            Err(e) => panic!("unexpected error from an in-memory stream: {e}"),
        }
    }
});
