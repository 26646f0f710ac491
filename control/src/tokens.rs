//! Bootstrap tokens: the `--token-file` of `pillion-control serve`, checking the token a
//! certificate request presents, and making new tokens (`pillion-control token`).
//!
//! Each line of the file is `WORKLOAD sha256:HEX`: the SHA-256 (lowercase hex) of a token that
//! enrols only that workload. Only digests are stored, so the file is no secret, and a token that
//! leaks from one pod can get nothing but that pod's own identity. A workload may have several
//! lines (rotation: add the new token, move the pods over, remove the old line). Blank lines and
//! lines starting with `#` are ignored. The old form, one bare token shared by the whole mesh, is
//! refused with the line it is on, and the message never repeats the line: it may be a secret.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// What a digest in the token file starts with.
pub const DIGEST_PREFIX: &str = "sha256:";

/// Random bytes in a new token (256 bits: far beyond guessing, online or offline).
const TOKEN_BYTES: usize = 32;

/// Why the token file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file cannot be read.
    #[error("{}: cannot read the token file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `WORKLOAD sha256:HEX`.
    #[error("{}:{line}: {problem}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based.
        line: usize,
        /// What is wrong with it.
        problem: LineProblem,
    },
    /// Nothing but blank lines and comments.
    #[error(
        "{}: the token file holds no tokens; add `WORKLOAD sha256:HEX` lines (pillion-control token \
         --workload NAME), or leave out --token-file to allow renewal only",
        .0.display()
    )]
    Empty(PathBuf),
}

/// What is wrong with one line of the token file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    /// One field: the old one-token-for-the-whole-mesh form.
    #[error(
        "a bare token (the old one-shared-token form) is no longer accepted: each line is now \
         `WORKLOAD sha256:HEX`, the digest of a token for that workload only; make one per workload \
         with `pillion-control token --workload NAME`"
    )]
    SharedToken,
    /// Neither one field nor two.
    #[error("expected `WORKLOAD sha256:HEX`, found {0} fields")]
    Fields(usize),
    /// The second field is not `sha256:` and 64 lowercase hex digits.
    #[error(
        "the second field must be `sha256:` and 64 lowercase hex digits, the SHA-256 of the token \
         (never the token itself)"
    )]
    BadDigest,
    /// The same digest is on an earlier line (one token would enrol two workloads, or is listed
    /// twice by mistake).
    #[error("the same token digest is already on line {0}; each token enrols exactly one workload")]
    Duplicate(usize),
}

/// One line of the file.
#[derive(Debug, Clone)]
struct Entry {
    workload: String,
    digest: [u8; 32],
}

/// The tokens of a token file, as digests.
#[derive(Debug, Clone)]
pub struct Tokens {
    entries: Vec<Entry>,
}

/// What a presented token is good for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A token of the workload asked for.
    Valid,
    /// A token of another workload, named here (for the log: that workload's token is being
    /// misused, so it has leaked or that workload is compromised).
    WrongWorkload(String),
    /// Not a token in the file.
    Unknown,
}

impl Tokens {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenFileError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parses the text of the file at `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, TokenFileError> {
        let mut entries = Vec::new();
        let mut seen: HashMap<[u8; 32], usize> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let refuse = |problem| TokenFileError::Line { path: path.to_owned(), line, problem };
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = content.split_ascii_whitespace().collect();
            let (workload, digest) = match fields.as_slice() {
                [_] => return Err(refuse(LineProblem::SharedToken)),
                [w, d] => (*w, parse_digest(d).ok_or_else(|| refuse(LineProblem::BadDigest))?),
                _ => return Err(refuse(LineProblem::Fields(fields.len()))),
            };
            if let Some(first) = seen.insert(digest, line) {
                return Err(refuse(LineProblem::Duplicate(first)));
            }
            entries.push(Entry { workload: workload.to_owned(), digest });
        }
        if entries.is_empty() {
            return Err(TokenFileError::Empty(path.to_owned()));
        }
        Ok(Self { entries })
    }

    /// How many tokens the file holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false: an empty file is refused at load.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What `token` (as presented, surrounding whitespace trimmed) may do for `workload`.
    pub fn check(&self, token: &[u8], workload: &str) -> Verdict {
        let digest = sha256(token.trim_ascii());
        // Every digest is compared, each in constant time, so the time taken says nothing about
        // how much of any stored digest the presented one shares. Digests are unique (duplicates
        // are refused at load), so at most one entry matches.
        let mut owner = None;
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&digest)) {
                owner = Some(e.workload.as_str());
            }
        }
        match owner {
            Some(w) if w == workload => Verdict::Valid,
            Some(w) => Verdict::WrongWorkload(w.to_owned()),
            None => Verdict::Unknown,
        }
    }
}

/// The token in an `Authorization: Bearer TOKEN` header value, if it is one (the scheme is
/// case-insensitive, as RFC 9110 has it).
pub fn bearer(authorization: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = authorization.split_at_checked(b"Bearer ".len())?;
    if !scheme.eq_ignore_ascii_case(b"Bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// A token made by [`generate`].
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The secret, for the workload's own token file only.
    pub token: String,
    /// The line for the control plane's token file: `WORKLOAD sha256:HEX`.
    pub line: String,
}

/// Why no token was made.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The name could not be written as the first field of a line.
    #[error("workload name {0:?} cannot go in a token file: it must be non-empty, without spaces, not #...")]
    BadWorkload(String),
    /// The operating system's random source failed.
    #[error("cannot get random bytes from the operating system: {0}")]
    Random(getrandom::Error),
}

/// A fresh random token for `workload` and its token-file line.
pub fn generate(workload: &str) -> Result<NewToken, GenerateError> {
    if workload.is_empty() || workload.starts_with('#') || workload.chars().any(|c| c.is_whitespace()) {
        return Err(GenerateError::BadWorkload(workload.to_owned()));
    }
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(GenerateError::Random)?;
    let token = hex(&bytes);
    let line = format!("{workload} {}", digest_field(&token));
    Ok(NewToken { token, line })
}

/// `sha256:HEX` of `token`, as it appears in the token file.
pub fn digest_field(token: &str) -> String {
    format!("{DIGEST_PREFIX}{}", hex(&sha256(token.as_bytes())))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `sha256:` and exactly 64 lowercase hex digits.
fn parse_digest(field: &str) -> Option<[u8; 32]> {
    let hex = field.strip_prefix(DIGEST_PREFIX)?.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[path = "tokens_tests.rs"]
mod tests;
