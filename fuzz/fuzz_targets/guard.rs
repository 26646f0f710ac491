//! The guard's framing scanners on any bytes. HTTP/1.1: the verdict (pass, refuse and why, or
//! a protocol switch at an offset) must not depend on how the bytes were split into reads, the
//! first byte choosing the split. HTTP/2: frame walking in both directions never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pillion_proxy::guard::{
    Rejection,
    h1::{Next, Requests},
    h2::Frames,
};

/// Feeds `chunks` in turn; a switch is reported with its offset in the whole input.
fn verdict(chunks: &[&[u8]]) -> Result<Option<(bool, usize)>, Rejection> {
    let mut r = Requests::new(256);
    let mut offset = 0;
    for c in chunks {
        match r.feed(c)? {
            Next::Http1 => offset += c.len(),
            Next::Opaque(at) => return Ok(Some((false, offset + at))),
            Next::Http2(at) => return Ok(Some((true, offset + at))),
        }
    }
    Ok(None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else { return };
    let split = usize::from(first).min(bytes.len());
    let whole = verdict(&[bytes]);
    let (a, b) = bytes.split_at(split);
    assert_eq!(whole, verdict(&[a, b]), "split at {split}");

    let mut f = Frames::new(0);
    let _ = f.feed(bytes);
    f.wrote(bytes);
    let _ = f.goaway();
});
