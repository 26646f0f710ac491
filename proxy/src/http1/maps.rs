//! Header maps kept for reuse. Every proxied HTTP/1.1 request decodes two heads (the client's
//! request, the upstream's response) into maps that live only until they are written on; each
//! map is two allocations, and allocating and freeing them cost more than clearing one.
//! A map the codecs are done with is given back here, cleared, and taken by the next decode.

use std::cell::RefCell;

use http::HeaderMap;

/// Maps kept per thread: enough for the requests one thread has between decode and write at
/// once in the common case; past that, maps are allocated and freed as usual.
const KEEP: usize = 32;
/// A map that grew for a large head is freed rather than kept, so the spares stay small.
const MAX_CAPACITY: usize = 48;

thread_local! {
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for `fields` without regrowing: a spare one if there is one.
pub fn take(fields: usize) -> HeaderMap {
    let spare = SPARE.with_borrow_mut(Vec::pop);
    match spare {
        Some(mut map) => {
            map.reserve(fields);
            map
        }
        None => HeaderMap::with_capacity(fields),
    }
}

/// Keeps `map` for a later [`take`], cleared, unless enough are kept or it is large.
pub fn give(mut map: HeaderMap) {
    if map.capacity() > MAX_CAPACITY {
        return;
    }
    map.clear();
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < KEEP {
            if spare.capacity() == 0 {
                spare.reserve_exact(KEEP);
            }
            spare.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, header::HOST};

    use super::*;

    #[test]
    fn given_maps_come_back_empty_and_large_ones_are_not_kept() {
        let mut map = take(4);
        map.insert(HOST, HeaderValue::from_static("a"));
        let room = map.capacity();
        give(map);
        let again = take(2);
        assert!(again.is_empty());
        assert!(again.capacity() >= room);

        give(HeaderMap::with_capacity(MAX_CAPACITY * 4));
        assert!(take(0).capacity() <= MAX_CAPACITY);
    }
}
