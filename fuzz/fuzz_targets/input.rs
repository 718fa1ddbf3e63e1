//! How both fuzz targets read their input: byte 0 picks the length prefix
//! (bit 0) and a maximum (0..=127, the other bits); byte 1 is a setting of
//! the target's own; the rest is the stream.

use socketserver::framing::LengthPrefix;

/// `(prefix, max, setting, stream)`, or `None` when there are fewer than
/// the two leading bytes.
pub fn split(data: &[u8]) -> Option<(LengthPrefix, usize, u8, &[u8])> {
    let [choice, setting, stream @ ..] = data else {
        return None;
    };
    let prefix = if choice & 1 == 0 {
        LengthPrefix::BigEndianU32
    } else {
        LengthPrefix::NativeI32
    };
    Some((prefix, usize::from(choice >> 1), *setting, stream))
}
