//! Values every Pillion crate shares: [`identity`] (SPIFFE IDs), [`pattern`] (allow-list
//! patterns over them) and [`duration`] (the one grammar for durations in flags and config).
//!
//! A leaf of std, `thiserror` and `time` only: the config crate needs these and nothing of the
//! crypto in `pillion-certs`, so it builds alongside the TLS stack instead of after it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod duration;
pub mod identity;
pub mod pattern;

pub use duration::{DurationError, parse_duration};
pub use identity::{SpiffeId, SpiffeIdError};
pub use pattern::{IdentityPattern, PatternError};
