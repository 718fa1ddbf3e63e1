//! `MessageCodec::read_header` and `read_message` (the JSON header parser)
//! on arbitrary bytes, both length prefixes, small maxima: never a panic,
//! never a header above `max_header` or a body above `max_body`, a body
//! always as long as its header says, and what was read, written again,
//! reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socketserver::framing::MessageCodec;

mod input;

fuzz_target!(|data: &[u8]| {
    // The maximum is the maximum header; the setting, the maximum body
    // (0..=255).
    let Some((prefix, max, setting, stream)) = input::split(data) else {
        return;
    };
    let codec = MessageCodec {
        prefix,
        max_header: max,
        max_body: u64::from(setting),
    };

    // The header alone.
    let mut reader = stream;
    if let Ok(Some(header)) = codec.read_header(&mut reader) {
        assert!(header.total_size <= codec.max_body);
        assert!(stream.len() - reader.len() <= 4 + codec.max_header);
    }

    // Whole messages, until the end or an error.
    let mut reader = stream;
    while let Ok(Some((header, body))) = codec.read_message(&mut reader) {
        assert_eq!(body.len() as u64, header.total_size);
        assert!(header.total_size <= codec.max_body);
        // Written again (if it fits: Python's escapes may lengthen it), it
        // reads back the same.
        let mut wire = Vec::new();
        if codec.write_message(&mut wire, &header, &body).is_ok() {
            let again = codec.read_message(&mut &wire[..]).unwrap().unwrap();
            assert_eq!(again, (header, body));
        }
    }
});
