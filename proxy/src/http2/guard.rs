//! HTTP/2 frames as the guard sees them: frame boundaries in both directions and a budget for
//! the frames that cost the server work but carry no request (SETTINGS and PING without ACK,
//! PRIORITY, empty DATA). h2 answers each of them without limit, so a flood of them would keep a
//! core busy for as long as the client cares to send; over the budget the guard ends the
//! connection with GOAWAY(ENHANCE_YOUR_CALM). Knowing where the server's own frames end is what
//! lets that GOAWAY go between two frames rather than into the middle of one.
//!
//! Clients that estimate bandwidth (gRPC's BDP estimator, hyper's adaptive window) send a PING
//! for every round trip while data reaches them, which on a fast network is thousands a second.
//! So every DATA frame the server sends also earns one frame of budget: a client pinging as it
//! receives never runs out, while one flooding with nothing coming back gets the base rate.

use tokio::time::Instant;

/// The client sent more control frames than its budget allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flood;

/// Length of a frame header.
const HEADER: usize = 9;
/// Control frames a client may send at once; well above what browsers and gRPC send when a
/// connection opens.
const BURST: f64 = 1000.0;
/// Control frames a client may send per second, sustained.
const PER_SECOND: f64 = 100.0;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Where a byte stream is within its frames.
#[derive(Debug, Default)]
struct Framing {
    header: [u8; HEADER],
    have: usize,
    payload_left: usize,
}

impl Framing {
    /// Walks `bytes`, calling `on_header` for each complete frame header.
    fn walk(
        &mut self,
        mut bytes: &[u8],
        mut on_header: impl FnMut(&[u8; HEADER]) -> Result<(), Flood>,
    ) -> Result<(), Flood> {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == HEADER {
                self.have = 0;
                let h = &self.header;
                self.payload_left = frame_len(h);
                on_header(h)?;
            }
        }
        Ok(())
    }

    fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }
}

/// The HTTP/2 side of one client connection.
#[derive(Debug)]
pub struct Frames {
    /// Preface bytes still to pass before frames start.
    skip: usize,
    inbound: Framing,
    outbound: Framing,
    /// Highest stream a request opened: the last one a GOAWAY lets finish.
    last_stream: u32,
    tokens: f64,
    refilled: Instant,
}

impl Frames {
    /// Frames start after `skip` more bytes of the preface.
    pub fn new(skip: usize) -> Self {
        Self {
            skip,
            inbound: Framing::default(),
            outbound: Framing::default(),
            last_stream: 0,
            tokens: BURST,
            refilled: Instant::now(),
        }
    }

    /// Takes the next bytes from the client.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Flood> {
        let skip = self.skip.min(bytes.len());
        self.skip -= skip;
        let Self { inbound, last_stream, tokens, refilled, .. } = self;
        inbound.walk(&bytes[skip..], |h| {
            let (len, kind, flags) = (frame_len(h), h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let costly = match kind {
                SETTINGS | PING => flags & FLAG_ACK == 0,
                PRIORITY => true,
                DATA => len == 0 && flags & FLAG_END_STREAM == 0,
                HEADERS => {
                    *last_stream = (*last_stream).max(stream);
                    false
                }
                _ => false,
            };
            if costly { spend(tokens, refilled) } else { Ok(()) }
        })
    }

    /// Follows the bytes the server wrote; each DATA frame with a payload earns budget.
    pub fn wrote(&mut self, bytes: &[u8]) {
        let tokens = &mut self.tokens;
        let _ = self.outbound.walk(bytes, |h| {
            if h[3] == DATA && frame_len(h) > 0 {
                *tokens = (*tokens + 1.0).min(BURST);
            }
            Ok(())
        });
    }

    /// A GOAWAY(ENHANCE_YOUR_CALM) frame, if the server's output is between frames.
    pub fn goaway(&self) -> Option<Vec<u8>> {
        if !self.outbound.at_boundary() {
            return None;
        }
        let debug = b"control frame flood";
        let len = 8 + debug.len();
        let mut f = Vec::with_capacity(HEADER + len);
        f.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        f.extend_from_slice(&[0x7, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&self.last_stream.to_be_bytes());
        f.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        f.extend_from_slice(debug);
        Some(f)
    }
}

fn frame_len(h: &[u8; HEADER]) -> usize {
    usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2])
}

/// Takes one control frame from the budget, refilled at `PER_SECOND` up to `BURST`.
fn spend(tokens: &mut f64, refilled: &mut Instant) -> Result<(), Flood> {
    let now = Instant::now();
    *tokens = (*tokens + now.duration_since(*refilled).as_secs_f64() * PER_SECOND).min(BURST);
    *refilled = now;
    if *tokens < 1.0 {
        return Err(Flood);
    }
    *tokens -= 1.0;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[tokio::test(start_paused = true)]
    async fn a_ping_flood_runs_out_of_budget_and_a_slow_pinger_never_does() {
        let mut f = Frames::new(crate::http2::PREFACE.len());
        f.feed(crate::http2::PREFACE).unwrap();
        let ping = frame(PING, 0, 0, b"12345678");
        for _ in 0..BURST as usize {
            f.feed(&ping).unwrap();
        }
        assert_eq!(f.feed(&ping), Err(Flood));

        let mut f = Frames::new(0);
        for _ in 0..5000 {
            f.feed(&ping).unwrap();
            tokio::time::advance(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_pinging_while_it_receives_data_never_runs_out() {
        let mut f = Frames::new(0);
        let ping = frame(PING, 0, 0, b"12345678");
        let data = frame(DATA, 0, 1, &[0; 100]);
        for _ in 0..10 * BURST as usize {
            f.feed(&ping).unwrap();
            f.wrote(&data);
        }
        // Once the data stops, the base budget is all there is.
        let spent = (0..2 * BURST as usize).take_while(|_| f.feed(&ping).is_ok()).count();
        assert_eq!(spent, BURST as usize);
    }

    #[tokio::test(start_paused = true)]
    async fn acks_requests_and_data_are_free_and_split_frames_are_followed() {
        let mut f = Frames::new(0);
        let mut bytes = Vec::new();
        for i in 0..3000u32 {
            bytes.extend(frame(SETTINGS, FLAG_ACK, 0, b""));
            bytes.extend(frame(HEADERS, 0x4, 2 * i + 1, b"\x82\x84"));
            bytes.extend(frame(DATA, FLAG_END_STREAM, 2 * i + 1, &[7; 300]));
        }
        for chunk in bytes.chunks(7) {
            f.feed(chunk).unwrap();
        }
        assert_eq!(f.last_stream, 5999);
        for _ in 0..BURST as usize {
            f.feed(&frame(DATA, 0, 1, b"")).unwrap();
        }
        assert_eq!(f.feed(&frame(PRIORITY, 0, 1, &[0; 5])), Err(Flood));
    }

    #[test]
    fn goaway_waits_for_a_frame_boundary_in_the_output() {
        let mut f = Frames::new(0);
        f.last_stream = 7;
        let out = frame(DATA, 0, 1, &[1; 100]);
        f.wrote(&out[..50]);
        assert!(f.goaway().is_none());
        f.wrote(&out[50..]);
        let g = f.goaway().unwrap();
        assert_eq!(&g[3..5], &[0x7, 0]);
        assert_eq!(&g[9..13], &7u32.to_be_bytes());
        assert_eq!(&g[13..17], &ENHANCE_YOUR_CALM.to_be_bytes());
        assert_eq!(g.len(), 9 + u32::from_be_bytes([0, g[0], g[1], g[2]]) as usize);
    }
}
