//! The TLS port: a rustls acceptor built from PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{ServerError, TlsConfig};

fn tls_err(path: &Path, detail: impl std::fmt::Display) -> ServerError {
    ServerError::Tls {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

pub(crate) fn acceptor(t: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert)
        .map_err(|e| tls_err(&t.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(&t.cert, e))?;
    if certs.is_empty() {
        return Err(tls_err(&t.cert, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key).map_err(|e| tls_err(&t.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&t.cert, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_err(&t.key, e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}
