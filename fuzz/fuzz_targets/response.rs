//! The HTTP/1.1 client's response decoder on any bytes: a response head (to a GET or, by the
//! second byte, a HEAD), then its body read by the framing the head chose. What they make of the
//! bytes (the head, the body's data and trailers, or a refusal) must not depend on how the bytes
//! were split into reads, the first byte choosing the split; and a body of declared length never
//! yields more than that length.
#![no_main]

use bytes::BytesMut;
use http::Method;
use libfuzzer_sys::fuzz_target;
use pillion_proxy::http1::{
    chunked::Step,
    client::decode,
    framing::{Framing, Reading},
};

/// What was decoded from `chunks` fed in turn, as text to compare.
fn decode(method: &Method, chunks: &[&[u8]]) -> String {
    let mut buf = BytesMut::new();
    let mut chunks = chunks.iter();
    let head = loop {
        match decode::head(&mut buf, method) {
            Err(_) => return "head refused".into(),
            Ok(Some(head)) => break head,
            Ok(None) => match chunks.next() {
                Some(c) => buf.extend_from_slice(c),
                None => return "incomplete head".into(),
            },
        }
    };
    let mut out = format!("{:?} {:?} {:?}", head.parts, head.framing, head.keep_alive);
    let mut reading = Reading::new(head.framing);
    let mut read = 0u64;
    loop {
        match reading.step(&mut buf) {
            Err(_) => return out + " body refused",
            Ok(Step::Data(d)) => {
                read += d.len() as u64;
                if let Framing::Length(n) = head.framing {
                    assert!(read <= n, "{read} bytes of a {n}-byte body");
                }
                out += &format!(" data {d:?}");
            }
            Ok(Step::Trailers(t)) => return out + &format!(" trailers {t:?}"),
            Ok(Step::End) => return out + " end",
            Ok(Step::More) => match chunks.next() {
                Some(c) => buf.extend_from_slice(c),
                None if reading.closed() => return out + " closed",
                None => return out + " incomplete body",
            },
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let Some((&second, bytes)) = rest.split_first() else { return };
    let method = if second & 1 == 0 { Method::GET } else { Method::HEAD };
    let split = usize::from(first).min(bytes.len());
    let (a, b) = bytes.split_at(split);
    let whole = decode(&method, &[bytes]);
    let parts = decode(&method, &[a, b]);
    // Data frames may be cut where the reads were; compare the bytes, not the frames.
    let joined = |s: &str| s.replace("\" data b\"", "");
    assert_eq!(joined(&whole), joined(&parts), "split at {split}");
});
