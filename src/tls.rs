//! rustls client configuration: trust anchors, `--ca`, `--insecure`, SNI, resumption, key log,
//! and the mapping of rustls errors to connbench's error classes.
//!
//! Rules:
//! 1. The ring provider is always passed explicitly (`builder_with_provider`): if feature
//!    unification ever enables a second provider, `ClientConfig::builder()` would panic.
//! 2. Each worker gets its own `ClientConfig` with its own session store, so resumption never
//!    takes a lock another worker holds.
//! 3. `--insecure` skips chain and name checks only: handshake signatures are still verified, so
//!    the handshake costs what a verified one costs minus path building.
//! 4. Secret extraction is on: rustls does the handshake, then hands the traffic keys to the
//!    transport's own record layer (`engine::core::record`), which allocates nothing per record.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::metrics::ErrorClass;
use crate::plan::TlsPlan;

/// A TLS setting that cannot be used (shown to the user; exit code 2).
#[derive(Debug)]
pub enum TlsError {
    /// The `--ca` file could not be read.
    CaRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The `--ca` file holds no usable certificate.
    CaEmpty { path: PathBuf },
    /// The `--ca` file holds a certificate rustls rejects as a trust anchor.
    CaInvalid { path: PathBuf, reason: String },
    /// The server name (URL host or `--sni`) is not a valid DNS name or IP address.
    BadServerName(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::CaRead { path, source } => write!(
                f,
                "cannot read CA file {}: {source} (pass an existing PEM file to --ca)",
                path.display()
            ),
            TlsError::CaEmpty { path } => write!(
                f,
                "CA file {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
                path.display()
            ),
            TlsError::CaInvalid { path, reason } => write!(
                f,
                "CA file {} holds a certificate that cannot be a trust anchor: {reason}",
                path.display()
            ),
            TlsError::BadServerName(n) => write!(
                f,
                "invalid TLS server name {n:?} (use a DNS name or an IP address, or set --sni)"
            ),
        }
    }
}

impl std::error::Error for TlsError {}

/// The crypto provider every config uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Build the base client config for a run. Workers derive theirs with [`worker_config`].
pub fn client_config(plan: &TlsPlan) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring provider supports the default protocol versions");
    let mut config = if plan.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SignaturesOnly { provider }))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &plan.ca_file {
            let bytes = std::fs::read(path).map_err(|source| TlsError::CaRead {
                path: path.to_path_buf(),
                source,
            })?;
            add_ca_pem(&mut roots, &bytes, path)?;
        }
        if let Some(pem) = &plan.extra_ca_pem {
            add_ca_pem(&mut roots, pem, Path::new("(built-in target certificate)"))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // SSLKEYLOGFILE, as every TLS tool honours it (for Wireshark).
    if std::env::var_os("SSLKEYLOGFILE").is_some() {
        config.key_log = Arc::new(rustls::KeyLogFile::new());
    }
    config.resumption = resumption(plan.resume);
    // The transport takes the traffic keys over once the handshake is done (rule 4).
    config.enable_secret_extraction = true;
    Ok(Arc::new(config))
}

/// A copy of `base` with a session store of its own (rule 2).
pub fn worker_config(base: &Arc<ClientConfig>, resume: bool) -> Arc<ClientConfig> {
    let mut c = (**base).clone();
    c.resumption = resumption(resume);
    Arc::new(c)
}

fn resumption(resume: bool) -> Resumption {
    if resume {
        Resumption::in_memory_sessions(1024)
    } else {
        Resumption::disabled()
    }
}

fn add_ca_pem(roots: &mut RootCertStore, bytes: &[u8], path: &Path) -> Result<(), TlsError> {
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(bytes) {
        let cert = cert.map_err(|e| TlsError::CaInvalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| TlsError::CaInvalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        added += 1;
    }
    if added == 0 {
        return Err(TlsError::CaEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// The name sent as SNI and verified against the certificate: `--sni` or the URL host.
pub fn server_name(plan: &TlsPlan, host: &str) -> Result<ServerName<'static>, TlsError> {
    let name = plan.sni.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_string()).map_err(|_| TlsError::BadServerName(name.to_string()))
}

/// Map a fatal rustls error during a handshake to an error class.
pub fn classify(e: &rustls::Error) -> ErrorClass {
    match e {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            ErrorClass::TlsCertificate
        }
        rustls::Error::AlertReceived(_) => ErrorClass::TlsAlert,
        _ => ErrorClass::TlsHandshake,
    }
}

/// `--insecure`: accepts any certificate chain and name, still checks handshake signatures.
#[derive(Debug)]
struct SignaturesOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SignaturesOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ca_file_is_a_clear_error() {
        let plan = TlsPlan {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsPlan::default()
        };
        let e = client_config(&plan).unwrap_err();
        assert!(matches!(e, TlsError::CaRead { .. }));
        assert!(e.to_string().contains("--ca"));
    }

    #[test]
    fn ca_file_without_certificates_is_rejected() {
        let dir = std::env::temp_dir().join(format!("connbench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let plan = TlsPlan {
            ca_file: Some(path.clone()),
            ..TlsPlan::default()
        };
        assert!(matches!(
            client_config(&plan).unwrap_err(),
            TlsError::CaEmpty { .. }
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn server_name_prefers_sni() {
        let plan = TlsPlan {
            sni: Some("example.test".into()),
            ..TlsPlan::default()
        };
        let n = server_name(&plan, "127.0.0.1").unwrap();
        assert_eq!(n.to_str(), "example.test");
        let plan = TlsPlan::default();
        assert!(matches!(
            server_name(&plan, "127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(server_name(&plan, "bad name!").is_err());
    }

    #[test]
    fn classify_separates_certificate_and_alert() {
        let cert = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(classify(&cert), ErrorClass::TlsCertificate);
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure);
        assert_eq!(classify(&alert), ErrorClass::TlsAlert);
        assert_eq!(
            classify(&rustls::Error::DecryptError),
            ErrorClass::TlsHandshake
        );
    }
}
