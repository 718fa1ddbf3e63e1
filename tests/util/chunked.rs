//! A reader that hands out at most `chunk` bytes per read (1 and up), as a
//! socket may: shared by tests/framing.rs and the fuzz targets, so that what
//! holds "however the stream is cut" is checked the same way in both.

use std::io::{self, Read};

pub struct Chunked<'a> {
    pub data: &'a [u8],
    pub chunk: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
