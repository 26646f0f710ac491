//! PEM and certificate loading: the workload's cert, key and trust bundle files (written by the
//! control plane or an operator) and peers' DER certificates. The input is tried as PEM and, since
//! base64 hides DER structure from the fuzzer, as one DER certificate too. Errors name the file;
//! nothing panics.
#![no_main]

use std::{
    path::Path,
    time::{Duration, SystemTime},
};

use libfuzzer_sys::fuzz_target;
use pillion_certs::{CertInfo, TrustBundle, cert::format_time, pem, spiffe_id_from_der};
use rustls_pki_types::CertificateDer;

fn inspect(der: &CertificateDer<'_>, path: &Path) {
    let _ = spiffe_id_from_der(der);
    let Ok(info) = CertInfo::parse(der, path) else { return };
    let _ = info.spiffe_id(path);
    // A fixed "now", so that a run replays the same way tomorrow.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let _ = info.check_time(now, path);
    let _ = info.not_after_unix();
    let _ = (format_time(info.not_before), format_time(info.not_after));
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("f.pem");
    if let Ok(certs) = pem::parse_certs(data, path) {
        for der in &certs {
            inspect(der, path);
        }
        let _ = TrustBundle::from_pem(data, path);
    }
    let _ = pem::parse_key(data, path);

    let der = CertificateDer::from(data);
    inspect(&der, path);
    if let Ok(bundle) = TrustBundle::from_certs(vec![der.clone().into_owned()], path) {
        let _ = bundle.allows_trust_domain("cluster.local");
    }
});
