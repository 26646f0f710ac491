//! The control-plane snapshot decoder: one NDJSON line of the watch stream, decoded by the
//! proxy's own `control::decode_line`, merged into a file by `Overlay::apply_to` as the proxy
//! overlays it, and validated. Nothing panics.
//!
//! A snapshot that validates must validate again after the control plane's own encoding of it
//! (schema -> JSON), since the control plane re-serialises what it accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pillion_config::{
    schema::{File, InboundPort, Route, Service},
    validate::validate,
};
use pillion_proxy::control::decode_line;

fuzz_target!(|data: &[u8]| {
    // The parts alone, as other callers decode them.
    let _ = serde_json::from_slice::<Vec<Service>>(data);
    let _ = serde_json::from_slice::<Vec<Route>>(data);
    let _ = serde_json::from_slice::<Vec<InboundPort>>(data);

    let Ok(Some(overlay)) = decode_line(data) else { return };
    let file = overlay.apply_to(File::default());
    let encoded = serde_json::to_vec(&file).expect("a decoded snapshot serialises");
    if validate(file).is_ok() {
        let back: File = serde_json::from_slice(&encoded).expect("serialised JSON decodes");
        let again = serde_json::to_vec(&back).expect("a decoded snapshot serialises");
        assert_eq!(
            String::from_utf8_lossy(&encoded),
            String::from_utf8_lossy(&again),
            "the JSON encoding is not stable over a round trip"
        );
        if let Err(problems) = validate(back) {
            panic!("a snapshot that validates is rejected after a JSON round trip: {problems:?}");
        }
    }
});
