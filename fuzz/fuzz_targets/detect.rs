//! Protocol detection on a connection's first bytes: `classify` on any bytes and on every prefix
//! of them. Detection peeks whatever has arrived so far, so an answer given for a prefix (within
//! the bytes it ever looks at) must be the answer for every longer prefix: otherwise the protocol
//! would depend on how the client's bytes were split into packets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pillion_proxy::listen::detect::classify;

/// `detect::PEEK_CAP`: detection never looks further than this.
const PEEK_CAP: usize = 64;

fuzz_target!(|data: &[u8]| {
    let _ = classify(data);
    let mut first = None;
    for n in 0..=data.len().min(PEEK_CAP) {
        match (first, classify(&data[..n])) {
            (None, Some(d)) => first = Some((n, d)),
            (Some((at, was)), now) => {
                assert_eq!(now, Some(was), "{:?} answered {was:?} after {at} bytes", &data[..n]);
            }
            (None, None) => {}
        }
    }
    for n in PEEK_CAP.min(data.len())..data.len() {
        let _ = classify(&data[..n]);
    }
});
