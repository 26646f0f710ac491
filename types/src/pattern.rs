//! Identity patterns for authorization allow-lists (`inbound.ports[].allow`).
//!
//! A pattern is one of:
//! - an exact SPIFFE ID: `spiffe://cluster.local/ns/shop/sa/web`;
//! - a SPIFFE ID followed by `/*`: every ID strictly below it, e.g.
//!   `spiffe://cluster.local/ns/shop/*` matches `spiffe://cluster.local/ns/shop/sa/web`
//!   but not `spiffe://cluster.local/ns/shop` itself nor `spiffe://cluster.local/ns/shopping/sa/x`;
//!   `spiffe://cluster.local/*` matches every workload of the trust domain;
//! - `*`: any verified identity.
//!
//! A `*` anywhere else is an error, so a typo never widens an allow-list silently.

use std::fmt;
use std::str::FromStr;

use crate::identity::{SpiffeId, SpiffeIdError};

/// Why a string is not a valid identity pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A `*` appears somewhere other than a trailing `/*` or the whole pattern.
    #[error("identity pattern {0:?}: '*' is only allowed as a trailing '/*' or as the whole pattern")]
    MisplacedWildcard(String),
    /// The ID part of the pattern is not a valid SPIFFE ID.
    #[error("identity pattern {pattern:?}: {source}")]
    BadId {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with its ID part.
        source: SpiffeIdError,
    },
}

/// An entry of an allow-list: an exact SPIFFE ID, a `/*` prefix, or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdentityPattern {
    /// Matches this one ID.
    Exact(SpiffeId),
    /// Matches every ID strictly below this one (written `ID/*`).
    Below(SpiffeId),
    /// Matches any verified identity (written `*`).
    Any,
}

impl IdentityPattern {
    /// Parses a pattern; see the module docs for the forms.
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        if s == "*" {
            return Ok(IdentityPattern::Any);
        }
        let (id_part, below) = match s.strip_suffix("/*") {
            Some(prefix) => (prefix, true),
            None => (s, false),
        };
        if id_part.contains('*') {
            return Err(PatternError::MisplacedWildcard(s.to_owned()));
        }
        let id = SpiffeId::parse(id_part)
            .map_err(|source| PatternError::BadId { pattern: s.to_owned(), source })?;
        Ok(if below { IdentityPattern::Below(id) } else { IdentityPattern::Exact(id) })
    }

    /// True when `id` is allowed by this pattern.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            IdentityPattern::Any => true,
            IdentityPattern::Exact(want) => want == id,
            IdentityPattern::Below(prefix) => id
                .as_str()
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/')),
        }
    }

    /// True when any pattern in `patterns` matches `id`.
    pub fn any_matches<'a>(patterns: impl IntoIterator<Item = &'a IdentityPattern>, id: &SpiffeId) -> bool {
        patterns.into_iter().any(|p| p.matches(id))
    }
}

impl fmt::Display for IdentityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityPattern::Any => f.write_str("*"),
            IdentityPattern::Exact(id) => write!(f, "{id}"),
            IdentityPattern::Below(id) => write!(f, "{id}/*"),
        }
    }
}

impl FromStr for IdentityPattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IdentityPattern::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn pat(s: &str) -> IdentityPattern {
        IdentityPattern::parse(s).unwrap()
    }

    #[test]
    fn exact_pattern_matches_only_that_id() {
        let p = pat("spiffe://cluster.local/ns/shop/sa/web");
        assert!(p.matches(&id("spiffe://cluster.local/ns/shop/sa/web")));
        assert!(!p.matches(&id("spiffe://cluster.local/ns/shop/sa/web2")));
        assert!(!p.matches(&id("spiffe://cluster.local/ns/shop/sa/web/x")));
        assert!(!p.matches(&id("spiffe://other.local/ns/shop/sa/web")));
    }

    #[test]
    fn wildcard_pattern_matches_ids_below_it_only() {
        let p = pat("spiffe://cluster.local/ns/shop/*");
        assert!(p.matches(&id("spiffe://cluster.local/ns/shop/sa/web")));
        assert!(p.matches(&id("spiffe://cluster.local/ns/shop/x")));
        assert!(!p.matches(&id("spiffe://cluster.local/ns/shop")));
        assert!(!p.matches(&id("spiffe://cluster.local/ns/shopping/sa/web")));
        assert!(!p.matches(&id("spiffe://other.local/ns/shop/sa/web")));

        let td = pat("spiffe://cluster.local/*");
        assert!(td.matches(&id("spiffe://cluster.local/ns/a/sa/b")));
        assert!(!td.matches(&id("spiffe://cluster.local")));
        assert!(!td.matches(&id("spiffe://cluster.localx/ns/a")));
    }

    #[test]
    fn star_matches_anything_and_displays_back() {
        assert!(pat("*").matches(&id("spiffe://x/y")));
        for s in ["*", "spiffe://td/a/*", "spiffe://td/a/b"] {
            assert_eq!(pat(s).to_string(), s);
        }
        assert!(IdentityPattern::any_matches(
            &[pat("spiffe://td/a"), pat("spiffe://td/b/*")],
            &id("spiffe://td/b/c")
        ));
    }

    #[test]
    fn rejects_misplaced_wildcards_and_bad_ids() {
        for s in ["spiffe://td/*/sa/web", "spiffe://td/ns*", "spiffe://*/a", "**"] {
            assert!(matches!(IdentityPattern::parse(s), Err(PatternError::MisplacedWildcard(_))), "{s}");
        }
        for s in ["spiffe://TD/a", "http://td/a/*", "spiffe://td//*", ""] {
            assert!(matches!(IdentityPattern::parse(s), Err(PatternError::BadId { .. })), "{s}");
        }
    }
}
