//! `FrameCodec::read_frame` on arbitrary bytes, both length prefixes, a
//! small maximum, the stream cut into reads of any size: never a panic,
//! never a frame above the maximum, and each frame consumes exactly its
//! 4-byte length and its payload (a refused length: the 4 bytes only).
#![no_main]

use libfuzzer_sys::fuzz_target;
use socketserver::framing::{FrameCodec, FrameError, LengthPrefix};

#[path = "../../tests/util/chunked.rs"]
mod chunked;
mod input;

use chunked::Chunked;

fuzz_target!(|data: &[u8]| {
    // The maximum is the maximum frame; the setting, the read size (1..=256).
    let Some((prefix, max, setting, stream)) = input::split(data) else {
        return;
    };
    let codec = FrameCodec::new(prefix).with_max_frame(max);
    let mut reader = Chunked {
        data: stream,
        chunk: usize::from(setting) + 1,
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
