//! A request the HTTP/1.1 server's decoder accepts, with its body, goes upstream as the proxy
//! sends it (hop-by-hop fields and trailer fields not allowed in trailers removed, then the
//! client's encoder and body writer), and the server's decoder, reading those bytes back, must
//! find the same method, target, fields, body and trailers: what the proxy forwards frames one
//! way only.
#![no_main]

use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, header};
use http_body::{Frame, SizeHint};
use libfuzzer_sys::fuzz_target;
use pillion_proxy::{
    http::headers::strip_hop_by_hop,
    http1::{
        chunked::Step,
        client::encode,
        fields::{is_upgrade, keep_trailer_fields},
        framing::{Framing, Reading},
        request::{self, Head, Limits},
        write::{Out, Writer},
    },
};

const LIMITS: Limits = Limits { max_head: 4096, max_headers: 64, max_request_line: 1024 };
/// Reading back: the proxy adds fields (framing, a Host), so the head it sends may be over the
/// limits the client's was under; limits are not what this target checks.
const BACK: Limits = Limits { max_head: 8192, max_headers: 128, max_request_line: 2048 };

/// A body whose frames are all ready, of known size when it was length-framed.
struct Frames {
    frames: VecDeque<Frame<Bytes>>,
    exact: Option<u64>,
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.frames.pop_front().map(Ok))
    }

    fn size_hint(&self) -> SizeHint {
        self.exact.map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// A head and its whole body out of `buf`; `None` if either is refused or incomplete.
fn decode(buf: &mut BytesMut, limits: Limits) -> Option<(Head, Vec<u8>, Option<HeaderMap>)> {
    let head = request::head(buf, limits).ok()??;
    let mut reading = Reading::new(head.body);
    let mut data = Vec::new();
    loop {
        match reading.step(buf).ok()? {
            Step::Data(d) => data.extend_from_slice(&d),
            Step::Trailers(t) => return Some((head, data, Some(t))),
            Step::End => return Some((head, data, None)),
            Step::More => return None,
        }
    }
}

/// The fields that say where the request is for and what it is, framing aside (the encoder
/// frames the body anew).
fn fields(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .filter(|(n, _)| **n != header::CONTENT_LENGTH && **n != header::TRANSFER_ENCODING)
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let Some((head, body, trailers)) = decode(&mut buf, LIMITS) else { return };
    let mut parts = head.parts;
    // The proxy answers CONNECT itself.
    if parts.method == http::Method::CONNECT {
        return;
    }
    let upgrade = is_upgrade(&parts.headers);
    strip_hop_by_hop(&mut parts.headers, upgrade);
    // As the forwarding step does for a request without one (HTTP/1.0).
    if !parts.headers.contains_key(header::HOST) {
        parts.headers.insert(header::HOST, http::HeaderValue::from_static("127.0.0.1:8080"));
    }
    let trailers = trailers.map(|mut t| {
        keep_trailer_fields(&mut t);
        t
    });
    let mut frames = VecDeque::new();
    if !body.is_empty() {
        frames.push_back(Frame::data(Bytes::from(body.clone())));
    }
    if let Some(t) = trailers.clone() {
        frames.push_back(Frame::trailers(t));
    }
    let exact = match head.body {
        Framing::Chunked => None,
        _ => Some(body.len() as u64),
    };
    let sent = Frames { frames, exact };
    let mut out = Out::default();
    let framing = encode::head(&parts, &sent, &mut out.buf);
    let mut wire = Vec::new();
    let mut writer = Writer::new(sent, framing);
    let mut cx = Context::from_waker(Waker::noop());
    match writer.poll(&mut cx, &mut out, &mut wire) {
        Poll::Ready(Ok(())) => {}
        other => panic!("writing to memory: {other:?}"),
    }

    let mut again = BytesMut::from(&wire[..]);
    let (back, body_back, trailers_back) =
        decode(&mut again, BACK).unwrap_or_else(|| panic!("our own request refused: {:?}", String::from_utf8_lossy(&wire)));
    assert!(again.is_empty(), "bytes past the request: {again:?}");
    assert_eq!(back.parts.method, parts.method);
    assert_eq!(back.parts.uri.path_and_query(), parts.uri.path_and_query());
    assert_eq!(fields(&back.parts.headers), fields(&parts.headers));
    assert_eq!(body_back, body);
    let nonempty = |t: Option<HeaderMap>| t.filter(|t| !t.is_empty());
    assert_eq!(nonempty(trailers_back), nonempty(trailers));
});
