//! Reading certificates and keys from PEM, and writing PEM files safely.
//!
//! Parsing goes through rustls-pki-types' `PemObject` (the successor of
//! rustls-pemfile). Every error names the file. Writes go to a temporary file
//! in the same directory and are renamed into place, so a watcher never reads
//! a half-written file; private keys are created with mode 0600.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// Reads a whole file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads every `CERTIFICATE` block of a PEM file, in order.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    parse_certs(&read_file(path)?, path)
}

/// Reads the first private key (PKCS#8, SEC1 or PKCS#1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    parse_key(&read_file(path)?, path)
}

/// Parses every `CERTIFICATE` block of PEM text; `path` names the source in errors.
pub fn parse_certs(pem_bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem(path, &e))?;
    if certs.is_empty() {
        return Err(if has_pem_block(pem_bytes) {
            Error::NoCertificate { path: path.into() }
        } else {
            Error::NotPem { path: path.into(), reason: "no PEM block found".into() }
        });
    }
    Ok(certs)
}

/// Parses the first private key of PEM text; `path` names the source in errors.
pub fn parse_key(pem_bytes: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>> {
    match PrivateKeyDer::from_pem_slice(pem_bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) if has_pem_block(pem_bytes) => {
            Err(Error::NoPrivateKey { path: path.into() })
        }
        Err(pem::Error::NoItemsFound) => {
            Err(Error::NotPem { path: path.into(), reason: "no PEM block found".into() })
        }
        Err(e) => Err(not_pem(path, &e)),
    }
}

fn has_pem_block(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn not_pem(path: &Path, e: &pem::Error) -> Error {
    Error::NotPem { path: path.into(), reason: e.to_string() }
}

/// Writes a public file (certificate, bundle) atomically with mode 0644.
pub fn write_public(path: &Path, contents: &[u8]) -> Result<()> {
    write_atomic(path, contents, 0o644)
}

/// Writes a private key atomically; the file is created with mode 0600 and never
/// exists with wider permissions.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    write_atomic(path, contents, 0o600)
}

fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp.{}.{unique}", std::process::id()));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        {
            // The mode given to open() is masked by umask and ignored for an existing
            // file; set it explicitly.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = TempDir::new("pem-errors");
        let missing = dir.path().join("missing.pem");
        let err = load_certs(&missing).unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().contains("missing.pem"), "{err}");

        let garbage = dir.path().join("garbage.pem");
        write_public(&garbage, b"hello").unwrap();
        let err = load_certs(&garbage).unwrap_err();
        assert!(matches!(err, Error::NotPem { .. }), "{err}");
        assert!(err.to_string().contains("garbage.pem"), "{err}");
        assert!(matches!(load_key(&garbage), Err(Error::NotPem { .. })));

        let broken = dir.path().join("broken.pem");
        write_public(&broken, b"-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        assert!(matches!(load_certs(&broken), Err(Error::NotPem { .. })));

        let key_only = dir.path().join("key.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        write_private(&key_only, key.serialize_pem().as_bytes()).unwrap();
        let err = load_certs(&key_only).unwrap_err();
        assert!(matches!(err, Error::NoCertificate { .. }), "{err}");
        assert!(load_key(&key_only).is_ok());

        let cert_only = dir.path().join("cert.pem");
        let cert = rcgen::CertificateParams::default().self_signed(&key).unwrap();
        write_public(&cert_only, cert.pem().as_bytes()).unwrap();
        assert!(matches!(load_key(&cert_only), Err(Error::NoPrivateKey { .. })));
        assert_eq!(load_certs(&cert_only).unwrap().len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("pem-mode");
        let path = dir.path().join("k.pem");
        write_private(&path, b"secret").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        write_private(&path, b"secret2").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secret2");
    }
}
