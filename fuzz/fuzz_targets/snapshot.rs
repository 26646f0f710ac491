//! The control-plane snapshot decoder: one NDJSON line of the watch stream, decoded as the proxy
//! does (`control::Line` is private; `Line` here mirrors its shape over the public schema types),
//! merged into a file the way the proxy overlays it, and validated. Nothing panics.
//!
//! A snapshot that validates must validate again after the control plane's own encoding of it
//! (schema -> JSON), since the control plane re-serialises what it accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pillion_proxy::config::{
    schema::{File, InboundPort, Route, Service},
    validate::validate,
};
use serde::Deserialize;

/// Mirrors `pillion_proxy::control::Line`.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // decoded for fidelity to the real line; not every field is used here
struct Line {
    #[serde(default)]
    keepalive: bool,
    version: Option<u64>,
    #[serde(default)]
    services: Vec<Service>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    inbound: InboundPart,
    #[serde(default)]
    epoch: u64,
}

#[derive(Debug, Default, Deserialize)]
struct InboundPart {
    #[serde(default)]
    ports: Vec<InboundPort>,
}

fuzz_target!(|data: &[u8]| {
    // The parts alone, as other callers decode them.
    let _ = serde_json::from_slice::<Vec<Service>>(data);
    let _ = serde_json::from_slice::<Vec<Route>>(data);
    let _ = serde_json::from_slice::<Vec<InboundPort>>(data);

    let Ok(line) = serde_json::from_slice::<Line>(data) else { return };
    let mut file = File::default();
    file.services = line.services;
    file.routes = line.routes;
    file.inbound.ports = line.inbound.ports;
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
