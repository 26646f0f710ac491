//! Listeners: accepting connections (`accept`), telling what each is for (`inbound`,
//! `outbound`; the protocol detected once, `detect`, and the original destination of redirected
//! traffic, `original_dst`), guarding the client's bytes (`guard`), counting them (`metered`),
//! and serving them: HTTP through a codec (`serve`) or opaque TCP (`tcp`).

pub mod accept;
pub mod detect;
pub mod guard;
pub mod inbound;
pub mod metered;
pub mod original_dst;
pub mod outbound;
pub mod serve;
pub mod tcp;
