//! How a message body is delimited on the wire (RFC 9112 section 6), one type for requests and
//! responses, sent and received; and reading a body by it out of a connection's buffer, the
//! one reader both codecs use.

use bytes::BytesMut;

use super::chunked::{ChunkError, Chunked, Step};

/// How a body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (zero: no body).
    Length(u64),
    /// Chunked, ended by a zero-size chunk and an optional trailer section.
    Chunked,
    /// Until the connection closes (a response only: a request body cannot end that way).
    Close,
}

/// A body being read: where it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// This many bytes left.
    Length(u64),
    /// Chunked, at this point of the syntax.
    Chunked(Chunked),
    /// Until the peer closes.
    Close,
    /// Read to its end.
    Done,
}

impl Reading {
    /// The start of a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Length(0) => Self::Done,
            Framing::Length(n) => Self::Length(n),
            Framing::Chunked => Self::Chunked(Chunked::Size),
            Framing::Close => Self::Close,
        }
    }

    /// Takes the next step of the body out of `buf`: data, the trailers, the end, or `More`
    /// when more bytes must be read first. Data that completes a body of known length leaves
    /// it `Done`.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        match self {
            Self::Done => Ok(Step::End),
            Self::Length(_) | Self::Close if buf.is_empty() => Ok(Step::More),
            Self::Length(left) => {
                let n = (*left).min(buf.len() as u64);
                *left -= n;
                if *left == 0 {
                    *self = Self::Done;
                }
                Ok(Step::Data(buf.split_to(n as usize).freeze()))
            }
            Self::Close => Ok(Step::Data(buf.split().freeze())),
            Self::Chunked(c) => {
                let step = c.step(buf)?;
                if matches!(step, Step::Trailers(_) | Step::End) {
                    *self = Self::Done;
                }
                Ok(step)
            }
        }
    }

    /// The peer closed the connection: whether that ends the body (one read until the close)
    /// rather than cutting it short.
    pub fn closed(&mut self) -> bool {
        let ends = matches!(self, Self::Close | Self::Done);
        *self = Self::Done;
        ends
    }

    /// Read to its end.
    pub fn is_done(&self) -> bool {
        *self == Self::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_body_ends_with_its_last_byte() {
        let mut r = Reading::new(Framing::Length(5));
        let mut buf = BytesMut::from(&b"abc"[..]);
        assert!(matches!(r.step(&mut buf), Ok(Step::Data(d)) if d == "abc"));
        assert!(matches!(r.step(&mut buf), Ok(Step::More)));
        buf.extend_from_slice(b"deNEXT");
        assert!(matches!(r.step(&mut buf), Ok(Step::Data(d)) if d == "de"));
        assert!(r.is_done() && buf == "NEXT");
        assert!(matches!(r.step(&mut buf), Ok(Step::End)));
    }

    #[test]
    fn only_a_close_delimited_body_ends_at_the_close() {
        assert!(Reading::new(Framing::Close).closed());
        assert!(!Reading::new(Framing::Length(3)).closed());
        assert!(!Reading::new(Framing::Chunked).closed());
    }

    #[test]
    fn a_chunked_body_is_done_after_its_last_chunk() {
        let mut r = Reading::new(Framing::Chunked);
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n0\r\n\r\n"[..]);
        assert!(matches!(r.step(&mut buf), Ok(Step::Data(d)) if d == "abc"));
        assert!(matches!(r.step(&mut buf), Ok(Step::End)));
        assert!(r.is_done());
    }
}
