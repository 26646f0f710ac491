//! The crate's error type: every failure names the file (or in-memory source) and the problem.
//!
//! Material that arrives in memory (a CSR, a certificate from the control plane)
//! is named by a short label such as `"CSR"` in place of a file path.

use std::path::PathBuf;

use crate::identity::{SpiffeId, SpiffeIdError};

/// Everything that can go wrong loading, checking, issuing or serving certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid PEM.
    #[error("{}: not PEM: {reason}", path.display())]
    NotPem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// The PEM file holds no `CERTIFICATE` block.
    #[error("{}: no certificate in file", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The PEM file holds no private key block.
    #[error("{}: no private key in file", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A certificate could not be parsed as X.509.
    #[error("{}: invalid certificate: {reason}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A private key could not be used (unsupported type or malformed).
    #[error("{}: unusable private key: {reason}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The private key is not the one the certificate was issued for.
    #[error("{}: private key does not match certificate {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate's validity ended.
    #[error("{}: certificate expired at {not_after}", path.display())]
    Expired {
        /// The file.
        path: PathBuf,
        /// Its notAfter, RFC 3339.
        not_after: String,
    },
    /// The certificate's validity has not started yet.
    #[error("{}: certificate not yet valid (valid from {not_before})", path.display())]
    NotYetValid {
        /// The file.
        path: PathBuf,
        /// Its notBefore, RFC 3339.
        not_before: String,
    },
    /// The certificate does not chain to the trust bundle.
    #[error("{}: certificate does not chain to the trust bundle {}: {reason}", path.display(), bundle.display())]
    Untrusted {
        /// The certificate file.
        path: PathBuf,
        /// The trust bundle file.
        bundle: PathBuf,
        /// What the verifier said.
        reason: String,
    },
    /// The certificate carries no SPIFFE ID (URI SAN), or more than one.
    #[error("{}: {reason}", path.display())]
    NoSpiffeId {
        /// The file.
        path: PathBuf,
        /// "no URI SAN", "2 URI SANs", ...
        reason: String,
    },
    /// A string (flag, SAN, CSR) is not a valid SPIFFE ID.
    #[error("{what}: bad SPIFFE ID {value:?}: {source}")]
    BadSpiffeId {
        /// Where the string came from.
        what: String,
        /// The string.
        value: String,
        /// Why it is invalid.
        source: SpiffeIdError,
    },
    /// The identity's trust domain is not the CA's.
    #[error("identity {identity} is not in trust domain {expected:?}")]
    WrongTrustDomain {
        /// The identity asked for.
        identity: SpiffeId,
        /// The CA's trust domain.
        expected: String,
    },
    /// A workload identity must have a path (`spiffe://td/ns/x/sa/y`), not just a trust domain.
    #[error("identity {0} names a trust domain, not a workload")]
    NotAWorkload(SpiffeId),
    /// A CSR is malformed, badly signed, or asks for something other than the expected identity.
    #[error("CSR rejected: {0}")]
    CsrRejected(String),
    /// The CA certificate cannot be used as a Pillion CA.
    #[error("{}: not a usable CA: {reason}", path.display())]
    BadCa {
        /// The CA certificate file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A validity window that ends before it starts, or cannot be represented.
    #[error("bad validity: {0}")]
    BadValidity(String),
    /// Certificate generation failed inside rcgen.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// Building a rustls configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Refused to overwrite an existing file.
    #[error("{}: already exists (remove it or pass --force)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
