//! Where batches go: OTLP (opentelemetry-otlp over gRPC with tonic, or over HTTP/protobuf with
//! reqwest), an OTLP-JSON-lines file, the console, or nowhere. Each transport exports one batch
//! per call and reports failure as a string that the exporter logs; none of them retries on its
//! own except opentelemetry-otlp, whose retry policy follows the OTLP spec (retryable codes only,
//! backoff with jitter, RetryInfo / Retry-After honoured, all within the OTLP timeout).
//!
//! # callspan's configuration is the one source of truth
//!
//! opentelemetry-otlp 0.33's span exporter builders also read `OTEL_*` variables on their own,
//! at `build()` (nothing is read later). What they read, and how each is kept from overriding
//! what `callspan_core::config` resolved (and warned about):
//!
//! | read by the builder | gRPC (tonic) | HTTP | neutralised by |
//! |---|---|---|---|
//! | `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT` | only if no endpoint is given | same | always `with_endpoint` |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT` | only if no timeout is given | same | always `with_timeout` |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` | never (`with_tonic` fixes gRPC) | if no protocol is given | `with_protocol(HttpBinary)` |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]INSECURE` | only for an endpoint without a scheme | never | the endpoint always has one |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` | always, merged over ours | always, merged over ours | [`ReplaceMetadata`] / [`OtlpHttpClient`] send exactly callspan's |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION` | if no compression is given | same | gzip: `with_compression`; none: see below |
//!
//! There is no way to tell the builders "no compression", so when callspan resolved `none` they
//! read the compression variables themselves. Over HTTP, [`OtlpHttpClient`] undoes a gzip body
//! that callspan did not ask for. Over gRPC, tonic compresses inside the library: callspan warns
//! once when that happens (only possible when `callspan.configure(compression="none")` overrides a
//! `gzip` variable, or a padded `" none "` shadows one), and the requests are gzip-compressed.
//! Warnings the builders log about variables they could not parse are dropped ([`quietly`]):
//! callspan has already warned about each of them, once, naming what it uses instead.
//!
//! TLS is rustls with the ring provider for both protocols (no OpenSSL): the trusted roots are
//! `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE` when set, else the system's certificate store; a
//! client certificate is sent when the key and certificate files are both set.
//! `OTEL_EXPORTER_OTLP_INSECURE` has already been applied to the endpoint's scheme by the
//! configuration. reqwest honours the usual `HTTPS_PROXY` / `NO_PROXY` variables for OTLP/HTTP.

use callspan_core::config::{
    Config, ExporterKind, PemFile, Protocol, Source, OTEL_EXPORTER_OTLP_COMPRESSION,
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
};
use opentelemetry::Value;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::tonic_types::transport::{ClientTlsConfig, Identity};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use opentelemetry_sdk::Resource;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use std::io::{Read, Write};
use std::sync::Arc;

/// Largest OTLP/HTTP response body read (the spec's responses are tiny).
const MAX_RESPONSE_BODY: usize = 4 * 1024 * 1024;

/// A configured destination for span batches.
pub enum Transport {
    /// OTLP over gRPC or HTTP/protobuf.
    Otlp {
        /// The opentelemetry-otlp exporter.
        exporter: Box<opentelemetry_otlp::SpanExporter>,
        /// `OTLP/gRPC to <endpoint>` or `OTLP/HTTP to <url>`, for messages.
        description: String,
        /// OTLP/HTTP: why the last request could not be sent, which opentelemetry-otlp reduces
        /// to "network error" (it logs the cause at debug level only).
        send_error: Option<SendError>,
    },
    /// One `ExportTraceServiceRequest` per line, OTLP JSON encoding.
    File {
        /// The open file, appended to.
        file: std::fs::File,
        /// Its path, for messages.
        path: String,
        /// The resource written with every request.
        resource: ResourceAttributesWithSchema,
    },
    /// A readable line per span on stderr.
    Console,
    /// Spans are discarded (counted as exported: nothing failed).
    None,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Transport {
    /// Builds the transport the configuration asks for. Must run inside the exporter's tokio
    /// runtime: the gRPC channel and the HTTP client connect lazily on it. Problems with TLS
    /// files are logged and worked around (see [`TlsSetup`]); an error means no transport.
    pub fn build(config: &Config, resource: &Resource) -> Result<Transport, String> {
        match config.exporter {
            ExporterKind::None => Ok(Transport::None),
            ExporterKind::Console => Ok(Transport::Console),
            ExporterKind::File => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&config.file)
                    .map_err(|e| format!("cannot open {} for spans: {e}", config.file))?;
                Ok(Transport::File {
                    file,
                    path: config.file.clone(),
                    resource: resource.into(),
                })
            }
            ExporterKind::Otlp => {
                let tls = config
                    .endpoint
                    .starts_with("https://")
                    .then(|| TlsSetup::load(config));
                let (mut exporter, kind, send_error) = match config.protocol {
                    Protocol::Grpc => {
                        warn_if_tonic_compresses_anyway(config, |name| std::env::var(name).ok());
                        let exporter = quietly(|| grpc_exporter(config, tls.as_ref()))?;
                        (exporter, "gRPC", None)
                    }
                    Protocol::HttpProtobuf => {
                        let send_error = SendError::default();
                        let exporter =
                            quietly(|| http_exporter(config, tls.as_ref(), send_error.clone()))?;
                        (exporter, "HTTP", Some(send_error))
                    }
                };
                exporter.set_resource(resource);
                Ok(Transport::Otlp {
                    exporter: Box::new(exporter),
                    description: format!("OTLP/{kind} to {}", config.endpoint),
                    send_error,
                })
            }
        }
    }

    /// Where spans go, for humans: `OTLP/gRPC to http://localhost:4317`.
    pub fn describe(&self) -> String {
        match self {
            Transport::Otlp { description, .. } => description.clone(),
            Transport::File { path, .. } => format!("OTLP JSON lines in {path}"),
            Transport::Console => "the console (stderr)".into(),
            Transport::None => "nowhere (exporter none)".into(),
        }
    }

    /// Exports one batch.
    pub async fn export(&mut self, batch: Vec<SpanData>) -> Result<(), String> {
        match self {
            Transport::Otlp {
                exporter,
                description,
                send_error,
            } => {
                if let Some(send_error) = send_error {
                    send_error.take();
                }
                exporter.export(batch).await.map_err(|e| {
                    let cause = send_error.as_ref().and_then(SendError::take);
                    match cause {
                        Some(cause) => format!("{description} failed: {e} ({cause})"),
                        None => format!("{description} failed: {e}"),
                    }
                })
            }
            Transport::File {
                file,
                path,
                resource,
            } => {
                let request = ExportTraceServiceRequest {
                    resource_spans: group_spans_by_resource_and_scope(batch, resource),
                };
                let mut line = serde_json::to_vec(&request)
                    .map_err(|e| format!("cannot encode spans as OTLP JSON: {e}"))?;
                line.push(b'\n');
                file.write_all(&line)
                    .and_then(|()| file.flush())
                    .map_err(|e| format!("cannot write spans to {path}: {e}"))
            }
            Transport::Console => {
                let mut out = String::new();
                for span in &batch {
                    out.push_str(&console_line(span));
                    out.push('\n');
                }
                std::io::stderr()
                    .write_all(out.as_bytes())
                    .map_err(|e| format!("cannot write spans to stderr: {e}"))
            }
            Transport::None => Ok(()),
        }
    }

    /// Closes the transport; later exports fail.
    pub fn shutdown(&mut self) {
        if let Transport::Otlp { exporter, .. } = self {
            let _ = exporter.shutdown();
        }
    }
}

/// Runs an opentelemetry-otlp builder with its `tracing` output dropped: the only warnings it
/// logs while building are about `OTEL_*` variables it could not parse, and callspan's
/// configuration has already warned about each of those (and decided what to use instead).
fn quietly<T>(build: impl FnOnce() -> T) -> T {
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), build)
}

/// Which of the compression variables opentelemetry-otlp 0.33's tonic builder would turn into
/// gzip when it is given no compression (its `resolve_compression_from_env`: the signal variable
/// then the generic one, empty skipped, `none` stops, unparseable or unavailable skipped).
fn otlp_env_gzip(env: impl Fn(&str) -> Option<String>) -> Option<(&'static str, String)> {
    for name in [
        OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
        OTEL_EXPORTER_OTLP_COMPRESSION,
    ] {
        let Some(value) = env(name).filter(|v| !v.is_empty()) else {
            continue;
        };
        if value.eq_ignore_ascii_case("none") {
            return None;
        }
        if value.eq_ignore_ascii_case("gzip") {
            return Some((name, value));
        }
    }
    None
}

/// Warns when tonic will gzip although callspan resolved `none` (see the module docs).
fn warn_if_tonic_compresses_anyway(config: &Config, env: impl Fn(&str) -> Option<String>) {
    if config.gzip {
        return;
    }
    if let Some((name, value)) = otlp_env_gzip(env) {
        let source = config
            .effective
            .iter()
            .find(|row| row.0 == OTEL_EXPORTER_OTLP_TRACES_COMPRESSION)
            .map_or(Source::Default, |row| row.2);
        tracing::warn!(
            "compression: callspan resolved none (from {source}), but opentelemetry-otlp's gRPC \
             exporter reads {name}={value:?} itself and cannot be told otherwise; gRPC requests \
             to {} are gzip-compressed",
            config.endpoint
        );
    }
}

/// The gRPC exporter: tonic channel to the endpoint, callspan's metadata, TLS, gzip.
fn grpc_exporter(
    config: &Config,
    tls: Option<&TlsSetup>,
) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.otlp_timeout)
        .with_interceptor(ReplaceMetadata::new(&config.headers));
    if let Some(tls) = tls {
        builder = builder.with_tls_config(tls.tonic_config());
    }
    if config.gzip {
        builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    builder.build().map_err(|e| {
        format!(
            "cannot build the OTLP/gRPC exporter for {}: {e}",
            config.endpoint
        )
    })
}

/// The OTLP/HTTP exporter: protobuf bodies posted by [`OtlpHttpClient`].
fn http_exporter(
    config: &Config,
    tls: Option<&TlsSetup>,
    send_error: SendError,
) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let mut client = OtlpHttpClient::new(config, tls)?;
    client.send_error = send_error;
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.otlp_timeout)
        .with_http_client(client);
    if config.gzip {
        builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    builder.build().map_err(|e| {
        format!(
            "cannot build the OTLP/HTTP exporter for {}: {e}",
            config.endpoint
        )
    })
}

/// gRPC metadata from callspan's headers. Keys ending in `-bin` are binary metadata (their
/// value's bytes are sent); the configuration already checked names and values.
fn grpc_metadata(headers: &[(String, String)]) -> tonic::metadata::MetadataMap {
    use tonic::metadata::{BinaryMetadataValue, MetadataKey, MetadataMap};
    let mut metadata = MetadataMap::new();
    for (k, v) in headers {
        let inserted = if k.ends_with("-bin") {
            MetadataKey::from_bytes(k.as_bytes())
                .map(|key| metadata.insert_bin(key, BinaryMetadataValue::from_bytes(v.as_bytes())))
                .is_ok()
        } else {
            match (MetadataKey::from_bytes(k.as_bytes()), v.parse()) {
                (Ok(key), Ok(value)) => {
                    metadata.insert(key, value);
                    true
                }
                _ => false,
            }
        };
        if !inserted {
            tracing::warn!("header {k:?} cannot be sent as gRPC metadata; it is left out");
        }
    }
    metadata
}

/// The last interceptor on every gRPC export: replaces the request's metadata with callspan's
/// headers, so that headers opentelemetry-otlp read from the environment itself (see the module
/// docs) are not sent. Only its `user-agent` is kept.
#[derive(Clone, Debug)]
struct ReplaceMetadata {
    metadata: Arc<tonic::metadata::MetadataMap>,
}

impl ReplaceMetadata {
    fn new(headers: &[(String, String)]) -> ReplaceMetadata {
        ReplaceMetadata {
            metadata: Arc::new(grpc_metadata(headers)),
        }
    }
}

impl tonic::service::Interceptor for ReplaceMetadata {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let agent = request.metadata().get("user-agent").cloned();
        let mut metadata = (*self.metadata).clone();
        if let Some(agent) = agent {
            if !metadata.contains_key("user-agent") {
                metadata.insert("user-agent", agent);
            }
        }
        *request.metadata_mut() = metadata;
        Ok(request)
    }
}

/// The OTLP/HTTP client: reqwest's async client, driven by the exporter thread's own tokio
/// runtime (never the blocking client). Every request leaves with exactly callspan's headers
/// and compression, whatever opentelemetry-otlp read from the environment (module docs).
#[derive(Debug)]
struct OtlpHttpClient {
    client: reqwest::Client,
    headers: HeaderMap,
    gzip: bool,
    send_error: SendError,
}

/// The cause of the last OTLP/HTTP request that could not be sent, kept for the export's error
/// message (a retry that then succeeds leaves no trace in the log).
#[derive(Clone, Debug, Default)]
pub struct SendError(Arc<parking_lot::Mutex<Option<String>>>);

impl SendError {
    fn set(&self, cause: String) {
        *self.0.lock() = Some(cause);
    }

    fn take(&self) -> Option<String> {
        self.0.lock().take()
    }
}

impl OtlpHttpClient {
    fn new(config: &Config, tls: Option<&TlsSetup>) -> Result<OtlpHttpClient, String> {
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            match (
                HeaderName::try_from(k.as_str()),
                HeaderValue::try_from(v.as_str()),
            ) {
                (Ok(name), Ok(value)) => {
                    headers.insert(name, value);
                }
                _ => tracing::warn!("header {k:?} cannot be sent over HTTP; it is left out"),
            }
        }
        // Plain http:// needs no TLS, but reqwest (built without a default crypto provider)
        // wants a configuration all the same.
        let rustls = match tls {
            Some(tls) => tls.rustls_config(),
            None => TlsSetup::plain_rustls_config(),
        };
        let client = reqwest::Client::builder()
            .timeout(config.otlp_timeout)
            .connect_timeout(config.otlp_timeout)
            .tls_backend_preconfigured(rustls)
            .build()
            .map_err(|e| format!("cannot build the HTTP client for {}: {e}", config.endpoint))?;
        Ok(OtlpHttpClient {
            client,
            headers,
            gzip: config.gzip,
            send_error: SendError::default(),
        })
    }

    /// The request as callspan configured it: body compressed iff gzip, callspan's headers only.
    fn prepare(&self, request: Request<Bytes>) -> Result<reqwest::Request, HttpError> {
        let (mut parts, body) = request.into_parts();
        let gzipped = parts
            .headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let body = match (gzipped, self.gzip) {
            (true, false) => gunzip(&body)?,
            (false, true) => gzip(&body)?,
            _ => body,
        };
        let mut headers = HeaderMap::new();
        if let Some(agent) = parts.headers.get(reqwest::header::USER_AGENT) {
            headers.insert(reqwest::header::USER_AGENT, agent.clone());
        }
        for (name, value) in &self.headers {
            headers.insert(name, value.clone());
        }
        // The exporter owns the body's description.
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        if self.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        parts.headers = headers;
        Ok(reqwest::Request::try_from(Request::from_parts(
            parts, body,
        ))?)
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = self.prepare(request)?;
        let mut response = self
            .client
            .execute(request)
            .await
            .inspect_err(|e| self.send_error.set(error_chain(e)))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_RESPONSE_BODY {
                return Err(Box::new(opentelemetry_http::ResponseBodyTooLarge::new()));
            }
            body.extend_from_slice(&chunk);
        }
        let mut out = Response::builder().status(status).body(Bytes::from(body))?;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

/// An error and its sources: `error sending request: ...: invalid peer certificate: UnknownIssuer`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

fn gzip(body: &[u8]) -> Result<Bytes, HttpError> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body)?;
    Ok(encoder.finish()?.into())
}

fn gunzip(body: &[u8]) -> Result<Bytes, HttpError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
    Ok(out.into())
}

/// The TLS material for an `https://` endpoint, shared by both protocols: the trusted roots and
/// the optional client certificate. Loading never fails: a file that cannot be used is logged
/// (naming its setting) and the setting is dropped, as the configuration does for values.
#[derive(Debug)]
struct TlsSetup {
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
    fn load(config: &Config) -> TlsSetup {
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

    fn tonic_config(&self) -> ClientTlsConfig {
        let mut tls = ClientTlsConfig::new().trust_anchors(self.roots.roots.clone());
        if let Some(id) = &self.identity {
            tls = tls.identity(Identity::from_pem(&id.chain_pem, &id.key_pem));
        }
        tls
    }

    fn rustls_config(&self) -> rustls::ClientConfig {
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

    fn plain_rustls_config() -> rustls::ClientConfig {
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

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// `apply_transform 12.5µs ← imgpipe.Rotator.rotate_image (imgpipe.py:31) [imgpipe.Rotator] ...`
pub fn console_line(span: &SpanData) -> String {
    let micros = span
        .end_time
        .duration_since(span.start_time)
        .map(|d| d.as_secs_f64() * 1e6)
        .unwrap_or(0.0);
    let mut line = format!("callspan: {} {micros:.1}µs", span.name);
    if let Some(caller) = attr(span, "caller.function.name") {
        let file = attr(span, "caller.file.path")
            .map(|v| v.as_str())
            .unwrap_or_default();
        let short = file.rsplit('/').next().unwrap_or_default().to_owned();
        let line_no = attr(span, "caller.line.number")
            .map(|v| v.to_string())
            .unwrap_or_default();
        line.push_str(&format!(" <- {caller} ({short}:{line_no})"));
    }
    if let Some(class) = attr(span, "caller.class.name") {
        line.push_str(&format!(" [{class}]"));
    }
    if let Some(thread) = attr(span, "thread.name") {
        line.push_str(&format!(" thread={thread}"));
    }
    if let opentelemetry::trace::Status::Error { description } = &span.status {
        line.push_str(&format!(" ERROR {description}"));
    }
    line.push_str(&format!(
        " trace={} span={}",
        span.span_context.trace_id(),
        span.span_context.span_id()
    ));
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use callspan_core::config::OTEL_EXPORTER_OTLP_ENDPOINT;

    /// A self-signed CA certificate (public material only), valid until 2126.
    const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
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

    fn config(env: &[(&str, &str)], args: &[(&str, &str)]) -> Config {
        let (config, warnings) = Config::from_pairs(env, args);
        assert!(warnings.is_empty(), "{warnings:?}");
        config
    }

    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir()
                .join(format!("callspan-transport-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn file(&self, name: &str, text: &str) -> String {
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
    fn otlp_env_gzip_mirrors_opentelemetry_otlp() {
        for (signal, generic, expected) in [
            ("", "gzip", Some(OTEL_EXPORTER_OTLP_COMPRESSION)),
            ("GZIP", "none", Some(OTEL_EXPORTER_OTLP_TRACES_COMPRESSION)),
            ("none", "gzip", None),
            ("NoNe", "gzip", None),
            ("brotli", "gzip", Some(OTEL_EXPORTER_OTLP_COMPRESSION)),
            (" none ", "gzip", Some(OTEL_EXPORTER_OTLP_COMPRESSION)),
            ("zstd", "", None),
            ("", "", None),
        ] {
            let env = |name: &str| match name {
                OTEL_EXPORTER_OTLP_TRACES_COMPRESSION => Some(signal.to_owned()),
                OTEL_EXPORTER_OTLP_COMPRESSION => Some(generic.to_owned()),
                _ => None,
            };
            assert_eq!(
                otlp_env_gzip(env).map(|(name, _)| name),
                expected,
                "{signal:?} {generic:?}"
            );
        }
    }

    fn otlp_request(gzipped: bool) -> Request<Bytes> {
        let body = b"protobuf bytes".to_vec();
        let mut builder = Request::builder()
            .method("POST")
            .uri("http://collector:4318/v1/traces")
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(
                reqwest::header::USER_AGENT,
                "OTel-OTLP-Exporter-Rust/0.33.1",
            )
            // What opentelemetry-otlp adds from OTEL_EXPORTER_OTLP_HEADERS on its own.
            .header("x-from-env", "1")
            .header("x-tenant", "from-env");
        let body = if gzipped {
            builder = builder.header(CONTENT_ENCODING, "gzip");
            gzip(&body).unwrap()
        } else {
            Bytes::from(body)
        };
        builder.body(body).unwrap()
    }

    #[test]
    fn http_requests_carry_exactly_callspans_headers_and_compression() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let none = config(
            &[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4318")],
            &[
                ("protocol", "http/protobuf"),
                ("headers", "x-tenant=imaging,authorization=Bearer%20t"),
            ],
        );
        let client = OtlpHttpClient::new(&none, None).unwrap();
        let request = client.prepare(otlp_request(true)).unwrap();
        let headers = request.headers();
        assert_eq!(headers["x-tenant"], "imaging");
        assert_eq!(headers["authorization"], "Bearer t");
        assert_eq!(headers[CONTENT_TYPE], "application/x-protobuf");
        assert!(headers.get("x-from-env").is_none());
        assert!(headers.get(CONTENT_ENCODING).is_none());
        assert!(headers[reqwest::header::USER_AGENT]
            .to_str()
            .unwrap()
            .starts_with("OTel-OTLP-Exporter-Rust"));
        let body = request.body().unwrap().as_bytes().unwrap();
        assert_eq!(body, b"protobuf bytes");

        let mut gzipped = none.clone();
        gzipped.gzip = true;
        let client = OtlpHttpClient::new(&gzipped, None).unwrap();
        let request = client.prepare(otlp_request(false)).unwrap();
        assert_eq!(request.headers()[CONTENT_ENCODING], "gzip");
        let body = request.body().unwrap().as_bytes().unwrap();
        assert_eq!(&gunzip(body).unwrap()[..], b"protobuf bytes");
    }

    #[test]
    fn grpc_metadata_is_replaced_by_callspans() {
        use tonic::service::Interceptor as _;
        let mut interceptor = ReplaceMetadata::new(&[
            ("x-tenant".into(), "imaging".into()),
            ("trace-bin".into(), "\u{1}raw".into()),
        ]);
        let mut request = tonic::Request::new(());
        request
            .metadata_mut()
            .insert("user-agent", "OTel-OTLP-Exporter-Rust".parse().unwrap());
        request
            .metadata_mut()
            .insert("x-from-env", "1".parse().unwrap());
        request
            .metadata_mut()
            .insert("x-tenant", "from-env".parse().unwrap());
        let request = interceptor.call(request).unwrap();
        let metadata = request.metadata();
        assert_eq!(metadata.get("x-tenant").unwrap(), "imaging");
        assert!(metadata.get("x-from-env").is_none());
        assert_eq!(
            metadata.get("user-agent").unwrap(),
            "OTel-OTLP-Exporter-Rust"
        );
        assert_eq!(
            metadata.get_bin("trace-bin").unwrap().to_bytes().unwrap(),
            &b"\x01raw"[..]
        );
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

    #[test]
    fn otlp_transports_build_for_both_protocols_and_tls() {
        let scratch = Scratch::new("build");
        let ca = scratch.file("ca.pem", CA_PEM);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let resource = crate::resource::build_resource(&Config::defaults());
        for (protocol, endpoint) in [
            ("grpc", "http://127.0.0.1:4317"),
            ("grpc", "https://127.0.0.1:4317"),
            ("http/protobuf", "http://127.0.0.1:4318/v1/traces"),
            ("http/protobuf", "https://127.0.0.1:4318/v1/traces"),
        ] {
            let config = config(
                &[],
                &[
                    ("protocol", protocol),
                    ("endpoint", endpoint),
                    ("compression", "gzip"),
                    ("headers", "x-tenant=imaging"),
                    ("certificate", &ca),
                ][..if endpoint.starts_with("https") { 5 } else { 4 }],
            );
            let transport = runtime
                .block_on(async { Transport::build(&config, &resource) })
                .unwrap();
            let kind = if protocol == "grpc" { "gRPC" } else { "HTTP" };
            assert_eq!(transport.describe(), format!("OTLP/{kind} to {endpoint}"));
        }
    }
}
