//! TLS material shared by every NoKV process: one CA, and this process's
//! certificate and key, turned into tonic's client and server TLS configs.
//! NoKV always uses mutual TLS: a server configured here requires a client
//! certificate chaining to the CA, and a client presents its own.
//!
//! It lives in the protocol crate because every other crate (node,
//! coordinator, client SDK, CLI) dials or serves gRPC and needs it. What a
//! server does with the client's identity (the admin restriction) belongs
//! to the server crates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Longest a TLS handshake may take, on either side: a peer that connects
/// and then stalls (or speaks plaintext and waits) is dropped instead of
/// holding a task forever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS material could not be loaded. Each variant names the file so
/// an operator can fix the configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {what} {path}: {source}")]
    Read {
        /// Which file: "CA certificate", "certificate" or "private key".
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the expected kind.
    #[error("{what} {origin}: {detail}")]
    BadPem {
        /// Which file.
        what: &'static str,
        /// Its path, or "(in memory)".
        origin: String,
        /// What is wrong with it.
        detail: String,
    },
}

/// A CA certificate plus this process's certificate and private key, all
/// PEM. Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    ca_pem: std::sync::Arc<[u8]>,
    cert_pem: std::sync::Arc<[u8]>,
    key_pem: std::sync::Arc<[u8]>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads and checks the three PEM files: the CA certificate(s) peers
    /// must chain to, this process's certificate (chain) and its private
    /// key.
    ///
    /// # Errors
    /// [`TlsError::Read`] when a file cannot be read, [`TlsError::BadPem`]
    /// when it holds no certificate (or no private key).
    pub fn from_pem_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |what: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let (ca_pem, cert_pem, key_pem) = (
            read("CA certificate", ca)?,
            read("certificate", cert)?,
            read("private key", key)?,
        );
        check_certs("CA certificate", &ca_pem, &ca.display().to_string())?;
        check_certs("certificate", &cert_pem, &cert.display().to_string())?;
        check_key(&key_pem, &key.display().to_string())?;
        Ok(Self::unchecked(ca_pem, cert_pem, key_pem))
    }

    /// Like [`TlsConfig::from_pem_files`], from PEM already in memory.
    ///
    /// # Errors
    /// [`TlsError::BadPem`] when a part holds no certificate or key.
    pub fn from_pem(
        ca_pem: impl Into<Vec<u8>>,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Result<Self, TlsError> {
        let (ca_pem, cert_pem, key_pem) = (ca_pem.into(), cert_pem.into(), key_pem.into());
        check_certs("CA certificate", &ca_pem, "(in memory)")?;
        check_certs("certificate", &cert_pem, "(in memory)")?;
        check_key(&key_pem, "(in memory)")?;
        Ok(Self::unchecked(ca_pem, cert_pem, key_pem))
    }

    fn unchecked(ca_pem: Vec<u8>, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        TlsConfig {
            ca_pem: ca_pem.into(),
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
        }
    }

    /// For dialing: trust only the CA and present this certificate.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(self.identity())
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// For serving: present this certificate and require every client to
    /// present one chaining to the CA (mutual TLS).
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .timeout(HANDSHAKE_TIMEOUT)
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }

    /// For an HTTPS status port: present this certificate. No client
    /// certificate is asked for: health probes and metric scrapers read
    /// it, and it serves nothing but health and metrics.
    ///
    /// # Errors
    /// [`TlsError::BadPem`] when rustls refuses the certificate or key.
    pub fn https_server(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| rustls_refused("certificate", e))?
            .with_no_client_auth()
            .with_single_cert(self.certs()?, self.key()?)
            .map_err(|e| rustls_refused("certificate", e))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// For reading an HTTPS status port: trust only the CA (and present
    /// this certificate, should the server ask).
    ///
    /// # Errors
    /// [`TlsError::BadPem`] when rustls refuses a certificate or the key.
    pub fn https_client(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&self.ca_pem) {
            let ca = ca.map_err(|e| rustls_refused("CA certificate", e))?;
            roots
                .add(ca)
                .map_err(|e| rustls_refused("CA certificate", e))?;
        }
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| rustls_refused("CA certificate", e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(self.certs()?, self.key()?)
            .map_err(|e| rustls_refused("certificate", e))?;
        Ok(Arc::new(cfg))
    }

    fn certs(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| rustls_refused("certificate", e))
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| rustls_refused("private key", e))
    }
}

/// rustls with the ring provider, the one tonic's `tls-ring` uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn rustls_refused(what: &'static str, e: impl std::fmt::Display) -> TlsError {
    TlsError::BadPem {
        what,
        origin: "(loaded)".into(),
        detail: e.to_string(),
    }
}

/// The URL for dialing `addr` (`host:port`, or a URL kept as it is): with
/// TLS the scheme must be `https`, which is what makes tonic use it.
pub fn url_for(addr: &str, tls: Option<&TlsConfig>) -> String {
    if addr.contains("://") {
        return addr.to_string();
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

fn check_certs(what: &'static str, pem: &[u8], origin: &str) -> Result<(), TlsError> {
    let bad = |detail: String| TlsError::BadPem {
        what,
        origin: origin.to_string(),
        detail,
    };
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| bad(format!("not valid PEM: {e}")))?;
        n += 1;
    }
    if n == 0 {
        return Err(bad("no CERTIFICATE block found".into()));
    }
    Ok(())
}

fn check_key(pem: &[u8], origin: &str) -> Result<(), TlsError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map(|_| ())
        .map_err(|e| TlsError::BadPem {
            what: "private key",
            origin: origin.to_string(),
            detail: format!("no usable PRIVATE KEY block: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_PEM: &str = "hello\n";

    #[test]
    fn missing_files_name_the_file() {
        let e = TlsConfig::from_pem_files(
            Path::new("/nonexistent/ca.crt"),
            Path::new("/nonexistent/tls.crt"),
            Path::new("/nonexistent/tls.key"),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("CA certificate /nonexistent/ca.crt"), "{msg}");
    }

    #[test]
    fn text_without_pem_blocks_is_refused() {
        let e = TlsConfig::from_pem(NOT_PEM, NOT_PEM, NOT_PEM).unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::BadPem {
                    what: "CA certificate",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("no CERTIFICATE block"), "{e}");
    }

    #[test]
    fn generated_material_loads_and_swapped_files_are_refused() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        let tls = TlsConfig::from_pem(cert_pem.clone(), cert_pem.clone(), key_pem.clone())
            .expect("valid material");
        assert!(
            !format!("{tls:?}").contains("PRIVATE"),
            "Debug hides the key"
        );
        let swapped = TlsConfig::from_pem(cert_pem.clone(), key_pem.clone(), cert_pem.clone());
        assert!(
            matches!(
                swapped,
                Err(TlsError::BadPem {
                    what: "certificate",
                    ..
                })
            ),
            "a key where the certificate belongs is refused"
        );
        let no_key = TlsConfig::from_pem(cert_pem.clone(), cert_pem.clone(), cert_pem);
        assert!(matches!(
            no_key,
            Err(TlsError::BadPem {
                what: "private key",
                ..
            })
        ));
    }

    #[test]
    fn urls_get_https_only_with_tls() {
        assert_eq!(url_for("127.0.0.1:1", None), "http://127.0.0.1:1");
        assert_eq!(url_for("http://h:1", None), "http://h:1");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["h".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let tls = TlsConfig::from_pem(cert.pem(), cert.pem(), key.serialize_pem()).expect("tls");
        assert_eq!(url_for("h:1", Some(&tls)), "https://h:1");
    }
}
