//! TLS for the public listener, through rustls with the aws-lc-rs provider. With
//! `tls.client_ca` set, clients must present a certificate issued by one of those CAs
//! (mutual TLS, as Visa uses for issuer endpoints).

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::config::TlsConfig;

/// The one crypto provider of the whole process.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Installs aws-lc-rs as the process-wide rustls provider, so that every rustls user in
/// the tree (sqlx's PostgreSQL TLS among them) agrees on it. Idempotent.
pub fn install_crypto_provider() {
    // Err means one is installed already: by an earlier call, which installed this one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA: {0}")]
    Verifier(String),
}

/// Builds the acceptor for `config`: certificate chain, key, optional client CAs.
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let file_err = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |e: rustls_pki_types::pem::Error| TlsError::File { path: path.clone(), message: e.to_string() }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert)
        .map_err(file_err(&config.cert))?
        .collect::<Result<_, _>>()
        .map_err(file_err(&config.cert))?;
    if chain.is_empty() {
        return Err(TlsError::File { path: config.cert.display().to_string(), message: "no certificate".into() });
    }
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(file_err(&config.key))?;

    let builder = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match &config.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca_path) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca_path).map_err(file_err(ca_path))? {
                roots.add(cert.map_err(file_err(ca_path))?)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder.with_single_cert(chain, key)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}
