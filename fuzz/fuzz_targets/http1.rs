//! The HTTP/1.1 server's decoders on any bytes: a request head, then a chunked body if it says
//! so. What they make of the bytes (the head, the body's data and trailers, or a refusal) must
//! not depend on how the bytes were split into reads, the first byte choosing the split. Which
//! refusal may: with fewer bytes buffered, a parser can meet another fault first.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pillion_proxy::http1::{
    chunked::{Chunked, Step},
    framing::Framing,
    request::{self, Limits},
};

const LIMITS: Limits = Limits { max_head: 2048, max_headers: 32, max_request_line: 256 };

/// What was decoded from `chunks` fed in turn, as text to compare.
fn decode(chunks: &[&[u8]]) -> String {
    let mut buf = BytesMut::new();
    let mut chunks = chunks.iter();
    let head = loop {
        match request::head(&mut buf, LIMITS) {
            Err(_) => return "head refused".into(),
            Ok(Some(head)) => break head,
            Ok(None) => match chunks.next() {
                Some(c) => buf.extend_from_slice(c),
                None => return "incomplete head".into(),
            },
        }
    };
    let mut out = format!("{:?} {:?} {:?}", head.parts, head.body, head.keep_alive);
    if head.body != Framing::Chunked {
        return out;
    }
    let mut state = Chunked::Size;
    loop {
        match state.step(&mut buf) {
            Err(_) => return out + " body refused",
            Ok(Step::Data(d)) => out += &format!(" data {d:?}"),
            Ok(Step::Trailers(t)) => return out + &format!(" trailers {t:?}"),
            Ok(Step::End) => return out + " end",
            Ok(Step::More) => match chunks.next() {
                Some(c) => buf.extend_from_slice(c),
                None => return out + " incomplete body",
            },
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else { return };
    let split = usize::from(first).min(bytes.len());
    let (a, b) = bytes.split_at(split);
    let whole = decode(&[bytes]);
    let parts = decode(&[a, b]);
    // Data frames may be cut where the reads were; compare the bytes, not the frames.
    let joined = |s: &str| s.replace("\" data b\"", "");
    assert_eq!(joined(&whole), joined(&parts), "split at {split}");
});
