//! The `date` field of responses (RFC 9110 section 6.6.1), formatted once a second per thread
//! rather than once per response.

use std::{
    cell::RefCell,
    time::{SystemTime, UNIX_EPOCH},
};

/// An IMF-fixdate is always this long.
const LEN: usize = 29;

struct Cached {
    second: u64,
    text: [u8; LEN],
}

thread_local! {
    static NOW: RefCell<Cached> = const { RefCell::new(Cached { second: u64::MAX, text: [0; LEN] }) };
}

/// Calls `f` with the current date as a `date` field value.
pub fn with_now<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NOW.with_borrow_mut(|c| {
        if c.second != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == LEN {
                c.text.copy_from_slice(text.as_bytes());
            }
            c.second = second;
        }
        f(&c.text)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_date_is_an_imf_fixdate_of_now() {
        let text = super::with_now(|d| String::from_utf8(d.to_vec()).unwrap());
        let parsed = httpdate::parse_http_date(&text).unwrap();
        let age = std::time::SystemTime::now().duration_since(parsed).unwrap_or_default();
        assert!(age.as_secs() <= 2, "{text}");
        assert!(text.ends_with(" GMT"), "{text}");
    }
}
