//! The guard's HTTP/2 frame walking, in both directions, never panics on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pillion_proxy::http2::guard::Frames;

fuzz_target!(|data: &[u8]| {
    let mut f = Frames::new(0);
    let _ = f.feed(data);
    f.wrote(data);
    let _ = f.goaway();
});
