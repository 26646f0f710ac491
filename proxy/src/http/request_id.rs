//! Request IDs: random UUIDv4s (RFC 9562), made for requests that arrive without one.
//!
//! IDs are formatted 64 at a time into one buffer that each ID's header value then shares:
//! one allocation per 64 requests instead of one per request.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use http::HeaderValue;

/// Length of a formatted UUID.
const LEN: usize = 36;
/// IDs formatted per batch.
const BATCH: usize = 64;
/// Where each of the 16 bytes' two hex digits go in the formatted UUID (around the dashes).
const BYTE_AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

thread_local! {
    /// The formatted IDs not handed out yet.
    static BATCH_LEFT: RefCell<Bytes> = const { RefCell::new(Bytes::new()) };
}

/// A fresh random UUIDv4 as a header value.
pub fn new() -> HeaderValue {
    let id = BATCH_LEFT.with_borrow_mut(|left| {
        if left.is_empty() {
            *left = batch();
        }
        left.split_to(LEN)
    });
    HeaderValue::from_maybe_shared(id).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn batch() -> Bytes {
    let mut out = BytesMut::zeroed(LEN * BATCH);
    for id in out.chunks_exact_mut(LEN) {
        format(fastrand::u128(..), id);
    }
    out.freeze()
}

/// Writes `bits` as a UUIDv4 into `out` (36 bytes).
fn format(bits: u128, out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Version 4 in the 13th hex digit, the RFC 9562 variant (0b10) in the top bits of the 17th.
    let bits = bits & !(0xf << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62);
    for (&at, b) in BYTE_AT.iter().zip(bits.to_be_bytes()) {
        out[at] = HEX[usize::from(b >> 4)];
        out[at + 1] = HEX[usize::from(b & 0xf)];
    }
    for at in [8, 13, 18, 23] {
        out[at] = b'-';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_v4_and_differ() {
        let mut out = [0u8; LEN];
        format(u128::MAX, &mut out);
        assert_eq!(&out, b"ffffffff-ffff-4fff-bfff-ffffffffffff");
        format(0, &mut out);
        assert_eq!(&out, b"00000000-0000-4000-8000-000000000000");
        let ids: Vec<_> = (0..BATCH * 2 + 1).map(|_| new()).collect();
        let mut unique = ids.clone();
        unique.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        assert!(ids.iter().all(|id| id.len() == LEN && id.as_bytes()[14] == b'4'));
    }
}
