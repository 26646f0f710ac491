//! HTTP/2 (RFC 9113), served and sent by hyper and h2: the server for a listener's clients
//! (`server`), the client connection to an endpoint (`client`), the control-frame budget hyper
//! does not keep (`guard`), and write coalescing under the codec on both sides (`coalesce`).

pub mod client;
pub mod coalesce;
pub mod guard;
pub mod server;

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
