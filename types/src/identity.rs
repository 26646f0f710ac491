//! SPIFFE IDs: the workload identities Pillion puts in certificates and checks on peers.
//!
//! A SPIFFE ID is `spiffe://<trust domain>/<path>`, validated as the SPIFFE ID
//! standard says: lowercase scheme `spiffe`, a trust domain of `[a-z0-9.-_]`, path
//! segments of `[a-zA-Z0-9.-_]` that are neither empty nor `.`/`..`, and no
//! query, fragment, port or userinfo. The ID with an empty path names a trust
//! domain itself (a CA carries one); workloads have a path.

use std::fmt;
use std::str::FromStr;

/// The longest trust domain the SPIFFE standard allows, in bytes.
const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// The longest SPIFFE ID (a URI SAN) the SPIFFE standard allows, in bytes.
const MAX_ID_LEN: usize = 2048;
const SCHEME: &str = "spiffe://";

/// Why a string is not a valid SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    /// The string is empty.
    #[error("empty SPIFFE ID")]
    Empty,
    /// The string is longer than the standard's 2048 bytes.
    #[error("SPIFFE ID is longer than {MAX_ID_LEN} bytes")]
    TooLong,
    /// The scheme is not `spiffe://` (lowercase).
    #[error("scheme must be `spiffe://`")]
    WrongScheme,
    /// Nothing between `spiffe://` and the path.
    #[error("trust domain is missing")]
    MissingTrustDomain,
    /// The trust domain is longer than 255 bytes.
    #[error("trust domain is longer than {MAX_TRUST_DOMAIN_LEN} bytes")]
    TrustDomainTooLong,
    /// The authority has a port (`host:port`).
    #[error("a port is not allowed in a SPIFFE ID")]
    Port,
    /// The authority has userinfo (`user@host`).
    #[error("userinfo is not allowed in a SPIFFE ID")]
    UserInfo,
    /// The trust domain has a character outside `[a-z0-9.-_]`.
    #[error("trust domain has character {0:?}; only lowercase letters, digits, '.', '-' and '_' are allowed")]
    BadTrustDomainChar(char),
    /// The ID has a `?query`.
    #[error("a query is not allowed in a SPIFFE ID")]
    Query,
    /// The ID has a `#fragment`.
    #[error("a fragment is not allowed in a SPIFFE ID")]
    Fragment,
    /// A path segment is empty (`//` or a trailing `/`).
    #[error("path has an empty segment (double or trailing '/')")]
    EmptySegment,
    /// A path segment is `.` or `..`.
    #[error("path segments '.' and '..' are not allowed")]
    DotSegment,
    /// A path segment has a character outside `[a-zA-Z0-9.-_]`.
    #[error("path has character {0:?}; only letters, digits, '.', '-' and '_' are allowed")]
    BadPathChar(char),
}

/// A validated SPIFFE ID such as `spiffe://cluster.local/ns/shop/sa/web`.
///
/// Ordering and equality compare the whole ID as a string, which the standard's
/// strict character set makes exact.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: String,
    /// Byte offset where the path starts (== id.len() for a trust domain ID).
    path_start: usize,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID.
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(SpiffeIdError::WrongScheme)?;
        if rest.contains('#') {
            return Err(SpiffeIdError::Fragment);
        }
        if rest.contains('?') {
            return Err(SpiffeIdError::Query);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        validate_trust_domain(authority)?;
        validate_path(path)?;
        Ok(SpiffeId { id: s.to_owned(), path_start: SCHEME.len() + authority.len() })
    }

    /// The ID naming a trust domain itself: `spiffe://<trust_domain>`.
    pub fn for_trust_domain(trust_domain: &str) -> Result<Self, SpiffeIdError> {
        validate_trust_domain(trust_domain)?;
        Ok(SpiffeId { id: format!("{SCHEME}{trust_domain}"), path_start: SCHEME.len() + trust_domain.len() })
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        &self.id[SCHEME.len()..self.path_start]
    }

    /// The path including its leading `/`, e.g. `/ns/shop/sa/web`; empty for a trust domain ID.
    pub fn path(&self) -> &str {
        &self.id[self.path_start..]
    }

    /// True when the ID names only a trust domain (no path), as a CA's does.
    pub fn is_trust_domain_id(&self) -> bool {
        self.path().is_empty()
    }

    /// The whole ID as a string.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

/// Checks a trust domain name as the SPIFFE standard defines it.
pub fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if td.contains('@') {
        return Err(SpiffeIdError::UserInfo);
    }
    if td.contains(':') {
        return Err(SpiffeIdError::Port);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    match td.chars().find(|c| !is_trust_domain_char(*c)) {
        Some(c) => Err(SpiffeIdError::BadTrustDomainChar(c)),
        None => Ok(()),
    }
}

fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    // `path` starts with '/', so the first split item is the empty prefix.
    for segment in path.split('/').skip(1) {
        match segment {
            "" => return Err(SpiffeIdError::EmptySegment),
            "." | ".." => return Err(SpiffeIdError::DotSegment),
            _ => {}
        }
        if let Some(c) = segment.chars().find(|c| !is_path_char(*c)) {
            return Err(SpiffeIdError::BadPathChar(c));
        }
    }
    Ok(())
}

fn is_trust_domain_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({:?})", self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_workload_and_trust_domain_ids() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/web").unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.path(), "/ns/shop/sa/web");
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/web");
        assert!(!id.is_trust_domain_id());

        let td = SpiffeId::parse("spiffe://my_td-1.example").unwrap();
        assert_eq!(td.trust_domain(), "my_td-1.example");
        assert_eq!(td.path(), "");
        assert!(td.is_trust_domain_id());
        assert_eq!(SpiffeId::for_trust_domain("my_td-1.example").unwrap(), td);

        let mixed = SpiffeId::parse("spiffe://td/Path.With-Mixed_Case/x..y").unwrap();
        assert_eq!(mixed.path(), "/Path.With-Mixed_Case/x..y");
    }

    #[test]
    fn rejects_ids_the_standard_forbids() {
        use SpiffeIdError::*;
        let cases: &[(&str, SpiffeIdError)] = &[
            ("", Empty),
            ("http://cluster.local/ns/a", WrongScheme),
            ("SPIFFE://cluster.local/ns/a", WrongScheme),
            ("spiffe:/cluster.local", WrongScheme),
            ("spiffe://", MissingTrustDomain),
            ("spiffe:///ns/a", MissingTrustDomain),
            ("spiffe://Cluster.local/ns/a", BadTrustDomainChar('C')),
            ("spiffe://cluster.local:8080/ns/a", Port),
            ("spiffe://user@cluster.local/ns/a", UserInfo),
            ("spiffe://cluster.local/ns/a?x=1", Query),
            ("spiffe://cluster.local/ns/a#frag", Fragment),
            ("spiffe://cluster.local/", EmptySegment),
            ("spiffe://cluster.local/ns//a", EmptySegment),
            ("spiffe://cluster.local/ns/a/", EmptySegment),
            ("spiffe://cluster.local/ns/./a", DotSegment),
            ("spiffe://cluster.local/ns/../a", DotSegment),
            ("spiffe://cluster.local/ns/a%20b", BadPathChar('%')),
            ("spiffe://cluster.local/ns/a b", BadPathChar(' ')),
            ("spiffe://clüster/ns", BadTrustDomainChar('ü')),
        ];
        for (input, want) in cases {
            assert_eq!(SpiffeId::parse(input).as_ref(), Err(want), "input {input:?}");
        }
        let long_td = format!("spiffe://{}/a", "a".repeat(256));
        assert_eq!(SpiffeId::parse(&long_td), Err(TrustDomainTooLong));
        let long_id = format!("spiffe://td/{}", "a".repeat(2048));
        assert_eq!(SpiffeId::parse(&long_id), Err(TooLong));
    }

    #[test]
    fn from_str_matches_parse() {
        let id: SpiffeId = "spiffe://td/a".parse().unwrap();
        assert_eq!(id.as_str(), "spiffe://td/a");
        assert!("spiffe://td/a/".parse::<SpiffeId>().is_err());
    }
}
