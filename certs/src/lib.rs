//! Pillion's workload identity and TLS library.
//!
//! - [`identity`]: SPIFFE IDs; [`pattern`]: allow-list patterns over them (both from
//!   `pillion-types`, re-exported).
//! - [`ca`]: a small CA (create, load, issue, sign CSRs); [`csr`]: key + CSR for bootstrap.
//! - [`pem`]: reading and safely writing PEM files; [`cert`]: facts read from a certificate.
//! - [`bundle`]: the trust bundle; [`credentials`]: cert + key + bundle, cross-checked.
//! - [`verify`]: rustls verifiers that check SPIFFE IDs; [`tls`]: the server and client configs.
//! - [`watch`]: the live credential store and the file watcher that reloads it.
//!
//! A proxy typically does:
//!
//! ```no_run
//! use std::time::Duration;
//! use pillion_certs::{ClientAuth, CredentialPaths, CredentialWatcher, SpiffeId, tls};
//!
//! # async fn example() -> Result<(), pillion_certs::Error> {
//! let paths = CredentialPaths::in_dir("/var/run/pillion".as_ref());
//! let (store, watcher) = CredentialWatcher::start(paths)?;
//! tokio::spawn(watcher.run(Duration::from_secs(1), |result| match result {
//!     Ok(creds) => eprintln!("reloaded {}", creds.identity()),
//!     Err(e) => eprintln!("keeping old certificates: {e}"),
//! }));
//! let inbound = tls::server_config(&store, ClientAuth::Required)?;
//! let orders = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/orders").expect("valid ID");
//! let outbound = tls::client_config(&store, &orders)?;
//! # let _ = (inbound, outbound);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bundle;
pub mod ca;
pub mod cert;
pub mod credentials;
pub mod csr;
pub mod error;
pub mod pem;
pub mod tls;
pub mod validity;
pub mod verify;
pub mod watch;

#[cfg(test)]
mod testutil;
#[cfg(test)]
mod tls_tests;

pub use pillion_types::{
    DurationError, IdentityPattern, PatternError, SpiffeId, SpiffeIdError, duration, identity,
    parse_duration, pattern,
};

pub use bundle::TrustBundle;
pub use ca::{Ca, IssuedCert};
pub use cert::{CertInfo, peer_spiffe_id, spiffe_id_from_der};
pub use credentials::{CredentialPaths, Credentials, TimeCheck};
pub use csr::{KeyAndCsr, create_csr};
pub use error::{Error, Result};
pub use tls::{ClientAuth, ClientConfigs, client_config, server_config};
pub use validity::Validity;
pub use verify::{PeerIdentityError, SpiffeClientVerifier, SpiffeServerVerifier};
pub use watch::{CredentialStore, CredentialWatcher};
