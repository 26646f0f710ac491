//! Config YAML -> validated config: what `pillion check`, startup and every reload run on a file an
//! operator wrote. Any text loads or comes back as `file:line:col` errors; nothing panics.
//!
//! A config that loads must also survive the trip the control plane gives it (schema -> JSON ->
//! schema -> validate): one schema, one validator, so what one side accepts the other accepts. The
//! encoding is also checked to be a fixed point (encode, decode, encode gives the same JSON).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pillion_config::{schema, validate, yaml};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Path::new("f.yaml");
    match yaml::load_str(file, text) {
        Err(e) => {
            // The located message is what the operator reads; rendering it must not panic.
            let _ = e.to_string();
        }
        Ok(_) => {
            let parsed = yaml::parse(file, text).expect("a file that loads also parses");
            let json = serde_json::to_vec(&parsed).expect("a parsed config serialises");
            let back: schema::File = serde_json::from_slice(&json).expect("serialised JSON decodes");
            let again = serde_json::to_vec(&back).expect("a decoded config serialises");
            assert_eq!(
                String::from_utf8_lossy(&json),
                String::from_utf8_lossy(&again),
                "the JSON encoding is not stable over a round trip"
            );
            if let Err(problems) = validate::validate(back) {
                panic!("a config that loads is rejected after a JSON round trip: {problems:?}");
            }
        }
    }
});
