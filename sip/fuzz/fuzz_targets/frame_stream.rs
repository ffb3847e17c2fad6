//! The stream framer as a connection's reader drives it: bytes arrive in chunks of
//! arbitrary sizes, and every complete unit is taken off the front of the buffer.
//!
//! Besides "no panic" and "every reported length lies inside the buffer and is not zero",
//! it checks that framing does not depend on how the stream was cut into reads: the units
//! found when the bytes arrive in chunks are the units found when they arrive at once, up to
//! the first error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::message::{frame_stream, Framed};

/// What the framer made of a stream: the complete units in order, and whether it stopped
/// on an error.
#[derive(Debug, PartialEq, Eq)]
struct Framing {
    units: Vec<(bool, usize)>,
    failed: bool,
}

/// Frames `stream` fed in chunks of the given sizes (cycled; 0 stands for 1).
fn frame_in_chunks(stream: &[u8], chunks: &[u8], max: usize) -> Framing {
    let mut buf: Vec<u8> = Vec::new();
    let mut units = Vec::new();
    let mut offset = 0;
    let mut chunk_index = 0;
    loop {
        // Take every complete unit off the front before reading more.
        loop {
            match frame_stream(&buf, max) {
                Ok(Framed::Message { len }) => {
                    assert!(len > 0 && len <= buf.len(), "message length {len} of {}", buf.len());
                    units.push((true, len));
                    buf.drain(..len);
                }
                Ok(Framed::KeepAlive { len, .. }) => {
                    assert!(len > 0 && len <= buf.len(), "keep-alive length {len} of {}", buf.len());
                    units.push((false, len));
                    buf.drain(..len);
                }
                Ok(Framed::Incomplete) => break,
                Err(_) => return Framing { units, failed: true },
            }
        }
        if offset >= stream.len() {
            return Framing { units, failed: false };
        }
        let size = chunks
            .get(chunk_index % chunks.len().max(1))
            .map_or(stream.len(), |&c| usize::from(c).max(1));
        chunk_index += 1;
        let end = (offset + size).min(stream.len());
        buf.extend_from_slice(&stream[offset..end]);
        offset = end;
    }
}

fuzz_target!(|data: &[u8]| {
    // First byte: how many chunk sizes follow; then the sizes; the rest is the stream.
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 16).min(rest.len());
    let (chunks, stream) = rest.split_at(count);
    for max in [65_535, 300, 16] {
        let whole = frame_in_chunks(stream, &[], max);
        let chunked = frame_in_chunks(stream, chunks, max);
        if whole.failed || chunked.failed {
            // An error may come sooner or later depending on what was buffered; the units
            // before it must agree.
            let shorter = whole.units.len().min(chunked.units.len());
            assert_eq!(whole.units[..shorter], chunked.units[..shorter], "max {max}");
        } else {
            assert_eq!(whole, chunked, "max {max}");
        }
    }
});
