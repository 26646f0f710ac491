//! SPIFFE IDs and allow-list patterns, as they come from peer certificates, configs and the control
//! plane. The input is `PATTERN\nID` (or one string used as both). A parsed ID prints back to
//! itself; a pattern's matches stay within what it names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pillion_certs::{IdentityPattern, SpiffeId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (pattern, id) = text.split_once('\n').unwrap_or((text, text));

    let mut ids = Vec::new();
    for s in [pattern, id] {
        if let Ok(parsed) = SpiffeId::parse(s) {
            let again = SpiffeId::parse(&parsed.to_string()).expect("a parsed ID re-parses from Display");
            assert_eq!(again, parsed);
            assert_eq!(again.trust_domain(), parsed.trust_domain());
            assert_eq!(again.path(), parsed.path());
            assert_eq!(format!("spiffe://{}{}", parsed.trust_domain(), parsed.path()), parsed.as_str());
            ids.push(parsed);
        }
    }

    let Ok(p) = IdentityPattern::parse(pattern) else { return };
    let again = IdentityPattern::parse(&p.to_string()).expect("a parsed pattern re-parses from Display");
    assert_eq!(again, p);
    for id in &ids {
        let m = p.matches(id);
        match &p {
            IdentityPattern::Any => assert!(m),
            IdentityPattern::Exact(want) => assert_eq!(m, want == id),
            IdentityPattern::Below(prefix) => {
                if m {
                    // Strictly below: same trust domain, a longer path, on a segment boundary.
                    assert_eq!(prefix.trust_domain(), id.trust_domain(), "{p} matched {id}");
                    assert!(id.path().len() > prefix.path().len(), "{p} matched {id}");
                    assert!(id.path().starts_with(&format!("{}/", prefix.path())), "{p} matched {id}");
                }
            }
        }
    }
});
