//! TLS for OTLP exports: the trusted roots and the optional client certificate, loaded once
//! from `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`, `..._CLIENT_CERTIFICATE` and
//! `..._CLIENT_KEY` (or the system's store), and handed to tonic (gRPC) and rustls/reqwest
//! (HTTP) alike. rustls with the ring provider: no OpenSSL.

use callspan_core::config::{OtlpSettings, PemFile};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use std::sync::Arc;
use tonic::transport::{ClientTlsConfig, Identity};

/// The TLS material for an `https://` endpoint, shared by both protocols: the trusted roots and
/// the optional client certificate. Loading never fails: a file that cannot be used is logged
/// (naming its setting) and the setting is dropped, as the configuration does for values.
#[derive(Debug)]
pub(crate) struct TlsSetup {
    roots: RootCertStore,
    identity: Option<ClientIdentity>,
}

#[derive(Debug)]
struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    chain_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsSetup {
    pub(crate) fn load(config: &OtlpSettings) -> TlsSetup {
        let roots = match config.certificate.as_ref().map(read_roots) {
            Some(Ok(roots)) => roots,
            Some(Err((file, why))) => {
                tracing::warn!(
                    "{}: cannot use {:?} ({why}); using the system's trusted roots",
                    file.setting_name(),
                    file.path
                );
                system_roots(&config.endpoint)
            }
            None => system_roots(&config.endpoint),
        };
        let identity = match (&config.client_certificate, &config.client_key) {
            (Some(cert), Some(key)) => match read_identity(cert, key) {
                Ok(identity) => Some(identity),
                Err(why) => {
                    tracing::warn!(
                        "{} {:?} / {} {:?}: {why}; using no client certificate",
                        cert.setting_name(),
                        cert.path,
                        key.setting_name(),
                        key.path
                    );
                    None
                }
            },
            _ => None,
        };
        TlsSetup { roots, identity }
    }

    pub(crate) fn tonic_config(&self) -> ClientTlsConfig {
        let mut tls = ClientTlsConfig::new().trust_anchors(self.roots.roots.clone());
        if let Some(id) = &self.identity {
            tls = tls.identity(Identity::from_pem(&id.chain_pem, &id.key_pem));
        }
        tls
    }

    pub(crate) fn rustls_config(&self) -> rustls::ClientConfig {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(self.roots.clone());
        let mut config = match &self.identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .expect("the client identity was checked when it was loaded"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    pub(crate) fn plain_rustls_config() -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth()
    }
}

/// The CA certificates of `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`.
fn read_roots(file: &PemFile) -> Result<RootCertStore, (&PemFile, String)> {
    let fail = |why: String| (file, why);
    let pem = std::fs::read(&file.path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| fail(format!("bad PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(fail("no certificate in it".into()));
    }
    Ok(roots)
}

/// The system's trusted roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured).
fn system_roots(endpoint: &str) -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        tracing::warn!(
            "no trusted CA certificates found on this system; TLS connections to {endpoint} \
             will fail (set OTEL_EXPORTER_OTLP_CERTIFICATE to a CA file)"
        );
    }
    roots
}

/// The client certificate chain and key, checked to belong together.
fn read_identity(cert: &PemFile, key: &PemFile) -> Result<ClientIdentity, String> {
    let chain_pem = std::fs::read(&cert.path).map_err(|e| format!("cannot read it: {e}"))?;
    let key_pem = std::fs::read(&key.path).map_err(|e| format!("cannot read the key: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the certificate file".into());
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("bad private key: {e}"))?;
    // Loading the pair the way the TLS handshake will catches a key of the wrong kind, or one
    // that does not belong to the certificate.
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(RootCertStore::empty())
        .with_client_auth_cert(chain.clone(), key_der.clone_key())
        .map_err(|e| format!("the key and certificate cannot be used together: {e}"))?;
    Ok(ClientIdentity {
        chain,
        key: key_der,
        chain_pem,
        key_pem,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use callspan_core::config::Source;

    /// A self-signed CA certificate (public material only), valid until 2126.
    pub(crate) const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBkTCCATegAwIBAgIUImj6Ao2nb7Vu/rfigKglMrpjkRgwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSY2FsbHNwYW4gdW5pdCB0ZXN0MCAXDTI2MTEyNDE1MTczOFoY
DzIxMjYxMDMxMTUxNzM4WjAdMRswGQYDVQQDDBJjYWxsc3BhbiB1bml0IHRlc3Qw
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARn2O0E4PafP5Dlh4i0PNaZ4930qkaI
7skxPbBH+HdQthHqAXDB1vm7jpyEySeJHkAJKsPZIl/UC6D/YmjB7ltho1MwUTAd
BgNVHQ4EFgQU6/0NmFXgJwslBjLKF6lxxA0zZjQwHwYDVR0jBBgwFoAU6/0NmFXg
JwslBjLKF6lxxA0zZjQwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBF
AiB8ohwtJ2UwPiE4QaPbXNy3svD1l/wEf499FUXg8+frKgIhALS4ZCxjPrYuxYvr
UqkYLGdq7vcODbEm80QqS/KKFZop
-----END CERTIFICATE-----
";

    pub(crate) struct Scratch(pub(crate) std::path::PathBuf);

    impl Scratch {
        pub(crate) fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir()
                .join(format!("callspan-transport-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        pub(crate) fn file(&self, name: &str, text: &str) -> String {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path.to_string_lossy().into_owned()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn ca_files_are_parsed_and_bad_ones_explained() {
        let scratch = Scratch::new("roots");
        let file = |path: String| PemFile {
            path,
            source: Source::Env("OTEL_EXPORTER_OTLP_CERTIFICATE"),
            key: "certificate",
        };
        let good = file(scratch.file("ca.pem", CA_PEM));
        assert_eq!(read_roots(&good).unwrap().len(), 1);
        let corrupt = CA_PEM.replace("MIIBkTCC", "AAAAAAAA");
        let bad = file(scratch.file("bad.pem", &corrupt));
        let (named, why) = read_roots(&bad).unwrap_err();
        assert_eq!(named.setting_name(), "OTEL_EXPORTER_OTLP_CERTIFICATE");
        assert!(why.starts_with("not a usable CA certificate"), "{why}");
        let empty = file(scratch.file("empty.pem", "nothing here"));
        assert_eq!(read_roots(&empty).unwrap_err().1, "no certificate in it");
        let gone = file(scratch.0.join("gone.pem").to_string_lossy().into_owned());
        assert!(read_roots(&gone)
            .unwrap_err()
            .1
            .starts_with("cannot read it"));
    }

    #[test]
    fn a_client_identity_needs_a_readable_matching_key() {
        let scratch = Scratch::new("identity");
        let cert = PemFile {
            path: scratch.file("client.pem", CA_PEM),
            source: Source::Argument,
            key: "client_certificate",
        };
        let key = |path: String| PemFile {
            path,
            source: Source::Argument,
            key: "client_key",
        };
        let missing = key(scratch.0.join("none.key").to_string_lossy().into_owned());
        let why = read_identity(&cert, &missing).unwrap_err();
        assert!(why.starts_with("cannot read the key"), "{why}");
        let not_a_key = key(scratch.file("client.key", CA_PEM));
        let why = read_identity(&cert, &not_a_key).unwrap_err();
        assert!(why.starts_with("bad private key"), "{why}");
    }
}
