//! TLS material for the target: a fresh rcgen self-signed certificate per start (SANs
//! `127.0.0.1`, `::1`, `localhost`) and the rustls `ServerConfig` built from it.
//!
//! The provider is always passed explicitly (`builder_with_provider` with ring), never
//! `ServerConfig::builder()`, which panics if feature unification ever enables two providers
//! (libs.md §1). Resumption is on for both TLS 1.3 (ring ticketer) and TLS 1.2 (tickets plus a
//! session-ID cache) so clients can measure resumed handshakes. This module does no I/O.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::ServerSessionMemoryCache;
use rustls::ServerConfig;

use super::ServeError;

/// Session-ID cache entries for TLS 1.2 clients that do not take tickets; rustls' default of
/// 256 would evict under a connection storm and turn resumptions into full handshakes.
const SESSION_CACHE: usize = 4096;

/// Generates the certificate and returns its PEM with the matching server configuration.
pub(super) fn build() -> Result<(String, ServerConfig), ServeError> {
    let names = vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| ServeError::Tls(format!("certificate generation failed: {e}")))?;
    let pem = certified.cert.pem();
    let cert_der: CertificateDer<'static> = certified.cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key_der)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    // The target only speaks HTTP/1.1; offering h2 would let a client negotiate something we
    // cannot serve.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    cfg.ticketer = rustls::crypto::ring::Ticketer::new()
        .map_err(|e| ServeError::Tls(format!("ticketer: {e}")))?;
    Ok((pem, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn certificate_pem_parses_and_config_offers_http11() {
        let (pem, cfg) = build().expect("build");
        let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("parseable PEM");
        assert_eq!(certs.len(), 1);
        assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(cfg.ticketer.enabled());
    }
}
