//! TLS material from PEM files: the listener's certificate (and optional client CA for
//! mutual TLS), and per-backend CA and client certificates for the ERP side. Built at
//! config load, so a bad file is a config error, and rebuilt on every reload.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{} is not a PEM private key: {e}", path.display()))
}

fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for c in certs(path)? {
        store.add(c).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(store)
}

/// The listener's TLS config: certificate chain and key, and when `client_ca` is given,
/// client certificates signed by it (required, or optional when `require` is false).
pub fn server_config(
    cert: &Path,
    key_file: &Path,
    client_ca: Option<&Path>,
    require: bool,
) -> Result<Arc<rustls::ServerConfig>, String> {
    // An explicit provider: never depend on which one is installed process-wide.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider);
            let verifier = if require { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("client CA {}: {e}", ca.display()))?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs(cert)?, key(key_file)?)
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reads a CA bundle for a backend.
pub(crate) fn backend_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    certs(path)
}

/// Reads a client certificate chain and its key for a backend.
pub(crate) fn backend_identity(
    cert: &Path,
    key_file: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    Ok((certs(cert)?, key(key_file)?))
}

/// A TLS client config trusting `ca` (the edge broker's CA), presenting a client certificate
/// when `identity` is given.
pub(crate) fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca)?);
    let config = match identity {
        Some((cert, key_file)) => builder
            .with_client_auth_cert(certs(cert)?, key(key_file)?)
            .map_err(|e| format!("client certificate {} / key {}: {e}", cert.display(), key_file.display()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
