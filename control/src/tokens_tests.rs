//! The token file's parser, token checks and token making.

use std::path::Path;

use super::*;

/// SHA-256 of "abc" (FIPS 180-2's example).
const ABC: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn parse(text: &str) -> Result<Tokens, TokenFileError> {
    Tokens::parse(text, Path::new("/etc/pillion/tokens"))
}

/// The refusal's problem and line, and its message as printed.
fn refused(text: &str) -> (LineProblem, usize, String) {
    let err = parse(text).unwrap_err();
    let msg = err.to_string();
    match err {
        TokenFileError::Line { line, problem, .. } => (problem, line, msg),
        other => panic!("not a line error: {other}"),
    }
}

#[test]
fn the_digest_is_sha256_in_lowercase_hex() {
    assert_eq!(digest_field("abc"), ABC);
}

#[test]
fn good_lines_with_comments_blanks_and_rotation() {
    let web2 = digest_field("web-new");
    let text = format!(
        "# bootstrap tokens\n\nweb {ABC}\n  orders\t{}  \nweb {web2}\r\n   # indented comment\n",
        digest_field("orders-token")
    );
    let tokens = parse(&text).unwrap();
    assert_eq!(tokens.len(), 3);
    assert_eq!(tokens.check(b"abc", "web"), Verdict::Valid);
    // Both of web's tokens work while it rotates.
    assert_eq!(tokens.check(b"web-new", "web"), Verdict::Valid);
    assert_eq!(tokens.check(b" orders-token\n", "orders"), Verdict::Valid);
    assert_eq!(tokens.check(b"abc", "orders"), Verdict::WrongWorkload("web".into()));
    assert_eq!(tokens.check(b"orders-token", "web"), Verdict::WrongWorkload("orders".into()));
    assert_eq!(tokens.check(b"abd", "web"), Verdict::Unknown);
    assert_eq!(tokens.check(b"", "web"), Verdict::Unknown);
    // The digest itself is not a token.
    assert_eq!(tokens.check(ABC.as_bytes(), "web"), Verdict::Unknown);
}

#[test]
fn the_old_one_token_form_is_refused_at_its_line_without_repeating_it() {
    let (problem, line, msg) = refused("test-bootstrap-token\n");
    assert_eq!((problem, line), (LineProblem::SharedToken, 1));
    assert!(msg.starts_with("/etc/pillion/tokens:1: a bare token"), "{msg}");
    assert!(msg.contains("pillion-control token --workload"), "{msg}");
    assert!(!msg.contains("test-bootstrap-token"), "the secret is not echoed: {msg}");

    let (problem, line, _) = refused(&format!("# comment\n\nweb {ABC}\ns3cret\n"));
    assert_eq!((problem, line), (LineProblem::SharedToken, 4));
}

#[test]
fn bad_digests_are_refused_at_their_line() {
    let upper = format!("web {}", ABC.to_uppercase().replace("SHA256:", "sha256:"));
    let cases = [
        "web s3cret".to_owned(),                  // a raw token, not its digest
        format!("web {}", &ABC[..ABC.len() - 1]), // 63 digits
        format!("web {ABC}0"),                    // 65 digits
        format!("web {}", ABC.replace("sha256:", "sha512:")),
        format!("web {}", ABC.replace("sha256:", "")), // no prefix
        format!("web {}", ABC.replacen('b', "g", 1)),  // not hex
        upper,                                         // the contract says lowercase
    ];
    for case in &cases {
        let (problem, line, msg) = refused(&format!("orders {}\n{case}\n", digest_field("o")));
        assert_eq!((&problem, line), (&LineProblem::BadDigest, 2), "{case}");
        assert!(msg.starts_with("/etc/pillion/tokens:2: the second field"), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
    }
    let (problem, line, _) = refused(&format!("web {ABC} extra\n"));
    assert_eq!((problem, line), (LineProblem::Fields(3), 1));
}

#[test]
fn a_digest_listed_twice_is_refused_at_the_second_line() {
    // For two workloads it would be one token enrolling both; for one, a mistake worth seeing.
    let (problem, line, msg) = refused(&format!("web {ABC}\n# other\norders {ABC}\n"));
    assert_eq!((problem, line), (LineProblem::Duplicate(1), 3));
    assert!(msg.starts_with("/etc/pillion/tokens:3: the same token digest is already on line 1"), "{msg}");
    let (problem, line, _) = refused(&format!("web {ABC}\nweb {ABC}\n"));
    assert_eq!((problem, line), (LineProblem::Duplicate(1), 2));
}

#[test]
fn a_file_without_tokens_or_unreadable_is_refused() {
    let err = parse("# nothing yet\n\n").unwrap_err();
    assert!(matches!(err, TokenFileError::Empty(_)), "{err}");
    assert!(err.to_string().starts_with("/etc/pillion/tokens: the token file holds no tokens"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = Tokens::load(&missing).unwrap_err();
    assert!(matches!(err, TokenFileError::Read { .. }), "{err}");
    assert!(err.to_string().starts_with(&format!("{}: cannot read", missing.display())), "{err}");
    std::fs::write(dir.path().join("binary"), [0xff, 0xfe, b'\n']).unwrap();
    assert!(matches!(Tokens::load(&dir.path().join("binary")), Err(TokenFileError::Read { .. })));
}

#[test]
fn bearer_takes_the_token_from_the_header() {
    assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
    assert_eq!(bearer(b"Bearer  abc \t"), Some(&b"abc"[..]));
    assert_eq!(bearer(b"bearer abc"), Some(&b"abc"[..]));
    assert_eq!(bearer(b"Bearer "), None);
    assert_eq!(bearer(b"Basic abc"), None);
    assert_eq!(bearer(b"abc"), None);
}

#[test]
fn generated_tokens_are_random_and_their_line_parses() {
    let a = generate("web").unwrap();
    let b = generate("web").unwrap();
    assert_ne!(a.token, b.token);
    assert_eq!(a.token.len(), 64);
    assert!(a.token.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{}", a.token);
    assert_eq!(a.line, format!("web {}", digest_field(&a.token)));
    let tokens = parse(&format!("{}\n{}\n", a.line, b.line)).unwrap();
    assert_eq!(tokens.check(a.token.as_bytes(), "web"), Verdict::Valid);
    assert_eq!(tokens.check(b.token.as_bytes(), "web"), Verdict::Valid);
    for bad in ["", "my web", "#web", "web\n"] {
        assert!(matches!(generate(bad), Err(GenerateError::BadWorkload(_))), "{bad:?}");
    }
}
