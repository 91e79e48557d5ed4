//! Sends encoded OTLP export requests of one signal (`signal.rs`: traces, metrics) to a
//! receiver: over gRPC with tonic, or over HTTP/protobuf with reqwest, with the spec's retry
//! rules (`retry.rs`).
//!
//! The bodies come already serialized (`encode.rs` for spans); gRPC sends them to the signal's
//! service through a codec that copies bytes instead of encoding a prost message. Every request
//! carries exactly callspan's configuration: its endpoint, headers (as gRPC metadata or HTTP
//! headers), gzip or not, TLS (`tls.rs`), and the OTLP timeout, which bounds all attempts of
//! one export together.
//!
//! The response's `partial_success` is read: items the receiver says it rejected are reported
//! and counted by the caller, never retried (the spec forbids it). A receiver that has no
//! service for the signal (gRPC `UNIMPLEMENTED`, HTTP 404) fails with its own
//! [`ExportErrorKind::NoService`], not retried either.
//!
//! Once a shutdown has begun (the exporter's `closing` flag), a collector that refuses
//! connections is not retried and the exporter sends it nothing more ([`OtlpClient::gives_up`]):
//! retrying each queued batch with backoff made exit take the whole export timeout.

use crate::retry::{grpc_verdict, http_verdict, with_retry, RetryPolicy, Verdict};
use crate::signal::{OtlpService, Signal};
use crate::tls::TlsSetup;
use bytes::{Buf, BufMut, Bytes};
use callspan_core::config::Config;
use prost::Message;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest OTLP/HTTP response body read (the spec's responses are tiny).
const MAX_RESPONSE_BODY: usize = 4 * 1024 * 1024;

/// What a receiver accepted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Items the receiver said it rejected (`partial_success.rejected_spans`,
    /// `rejected_data_points`).
    pub rejected: u64,
    /// The receiver's explanation, if it gave one.
    pub message: String,
}

/// Why an export failed, as far as the caller acts on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportErrorKind {
    /// The receiver has no service for this signal (gRPC `UNIMPLEMENTED`, HTTP 404): sending
    /// more of it is pointless until it is reconfigured.
    NoService,
    /// Anything else: this request is lost, the next may go through.
    Failed,
}

/// A failed export: its kind, and a message naming the destination, the cause and the retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportError {
    /// What the caller should make of it.
    pub kind: ExportErrorKind,
    /// For the log.
    pub message: String,
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExportError {}

/// An OTLP exporter's connection, cheap to clone (clones share the connection).
#[derive(Clone, Debug)]
pub enum OtlpClient {
    /// OTLP/gRPC.
    Grpc(GrpcClient),
    /// OTLP/HTTP with protobuf bodies.
    Http(HttpClient),
}

/// Whether a collector is worth trying again; shared by the clones of one client.
#[derive(Debug, Default)]
struct Reachability {
    /// Set by the exporter when its shutdown begins.
    closing: Arc<AtomicBool>,
    /// The last attempt could not connect: the connection was refused (cleared by any answer).
    refused: AtomicBool,
}

impl Reachability {
    /// Notes how an attempt went: `error` is its failure, None when the collector answered.
    fn note(&self, error: Option<&(dyn std::error::Error + 'static)>) {
        let refused = error.is_some_and(connection_refused);
        self.refused.store(refused, Ordering::Relaxed);
    }
}

/// True if `error` or one of its sources is a refused connection.
fn connection_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        next = e.source();
    }
    false
}

impl OtlpClient {
    /// The client of `signal` the configuration asks for, with its TLS material loaded for an
    /// `https://` endpoint (problems are logged and worked around, see `tls.rs`). Must run
    /// inside a tokio runtime (connections are made lazily on it).
    pub fn build(config: &Config, signal: Signal) -> Result<OtlpClient, String> {
        OtlpClient::build_closing(config, signal, Arc::default())
    }

    /// [`OtlpClient::build`] for an exporter that sets `closing` when its shutdown begins.
    pub fn build_closing(
        config: &Config,
        signal: Signal,
        closing: Arc<AtomicBool>,
    ) -> Result<OtlpClient, String> {
        let otlp = config.otlp(signal);
        let tls = otlp
            .endpoint
            .starts_with("https://")
            .then(|| TlsSetup::load(otlp));
        let reach = Arc::new(Reachability {
            closing,
            refused: AtomicBool::new(false),
        });
        OtlpClient::with_tls(config, signal, tls.as_ref(), reach)
    }

    /// [`OtlpClient::build`] with the TLS material given.
    fn with_tls(
        config: &Config,
        signal: Signal,
        tls: Option<&TlsSetup>,
        reach: Arc<Reachability>,
    ) -> Result<OtlpClient, String> {
        match config.otlp(signal).protocol {
            callspan_core::config::Protocol::Grpc => {
                GrpcClient::new(config, signal, tls, reach).map(OtlpClient::Grpc)
            }
            callspan_core::config::Protocol::HttpProtobuf => {
                HttpClient::new(config, signal, tls, reach).map(OtlpClient::Http)
            }
        }
    }

    fn reach(&self) -> &Reachability {
        match self {
            OtlpClient::Grpc(c) => &c.reach,
            OtlpClient::Http(c) => &c.reach,
        }
    }

    /// True once a shutdown has begun and the collector refused the last connection: nothing
    /// more is worth sending it (no retry, and the exporter drops what is left, counted).
    pub fn gives_up(&self) -> bool {
        let reach = self.reach();
        reach.closing.load(Ordering::Relaxed) && reach.refused.load(Ordering::Relaxed)
    }

    /// The signal this client sends.
    pub fn signal(&self) -> Signal {
        match self {
            OtlpClient::Grpc(c) => c.signal,
            OtlpClient::Http(c) => c.signal,
        }
    }

    /// The endpoint (gRPC) or URL (HTTP) requests go to.
    fn endpoint(&self) -> &str {
        match self {
            OtlpClient::Grpc(c) => &c.endpoint,
            OtlpClient::Http(c) => &c.url,
        }
    }

    /// `OTLP/gRPC to http://localhost:4317`, for messages.
    pub fn describe(&self) -> String {
        match self {
            OtlpClient::Grpc(c) => format!("OTLP/gRPC to {}", c.endpoint),
            OtlpClient::Http(c) => format!("OTLP/HTTP to {}", c.url),
        }
    }

    /// Sends one encoded request of the client's signal, retrying transient failures within
    /// the OTLP timeout. The error names the destination, the cause, and the retries made.
    pub async fn export(&self, body: Bytes) -> Result<Accepted, ExportError> {
        let policy = RetryPolicy::default();
        let signal = self.signal();
        let fail = |kind, cause: &str, retries| ExportError {
            kind,
            message: failure(&self.describe(), signal, kind, cause, retries)
                + &plain_text_hint(self.endpoint(), cause),
        };
        match self {
            OtlpClient::Grpc(c) => {
                let deadline = Instant::now() + c.timeout;
                let verdict = |status: &tonic::Status| {
                    if self.gives_up() {
                        Verdict::Permanent
                    } else {
                        grpc_verdict(status)
                    }
                };
                with_retry(&policy, deadline, verdict, |left| {
                    c.attempt(body.clone(), left)
                })
                .await
                .map_err(|(status, retries)| {
                    let kind = if status.code() == tonic::Code::Unimplemented {
                        ExportErrorKind::NoService
                    } else {
                        ExportErrorKind::Failed
                    };
                    fail(kind, &describe_status(&status), retries)
                })
            }
            OtlpClient::Http(c) => {
                let body = if c.gzip {
                    gzip(&body).map_err(|e| {
                        fail(
                            ExportErrorKind::Failed,
                            &format!("cannot gzip the request: {e}"),
                            0,
                        )
                    })?
                } else {
                    body
                };
                let deadline = Instant::now() + c.timeout;
                with_retry(
                    &policy,
                    deadline,
                    |f: &HttpFailure| {
                        if self.gives_up() {
                            Verdict::Permanent
                        } else {
                            http_verdict(f.status, f.retry_after.as_deref())
                        }
                    },
                    |left| c.attempt(body.clone(), left),
                )
                .await
                .map_err(|(f, retries)| {
                    let kind = if f.status == 404 {
                        ExportErrorKind::NoService
                    } else {
                        ExportErrorKind::Failed
                    };
                    fail(kind, &f.message, retries)
                })
            }
        }
    }
}

fn failure(
    destination: &str,
    signal: Signal,
    kind: ExportErrorKind,
    cause: &str,
    retries: u32,
) -> String {
    let mut out = match retries {
        0 => format!("{destination} failed: {cause}"),
        1 => format!("{destination} failed after 1 retry: {cause}"),
        n => format!("{destination} failed after {n} retries: {cause}"),
    };
    if kind == ExportErrorKind::NoService {
        out.push_str(&format!(
            " (the receiver has no OTLP {} service: {} over gRPC, {} over HTTP)",
            signal.name(),
            signal.service_name(),
            signal.http_path()
        ));
    }
    out
}

/// What to do when a TLS handshake was answered in plain text: rustls names a first byte that
/// is no TLS record type `InvalidContentType`, which is what an HTTP/1 or HTTP/2 (gRPC) server
/// sends back. Empty for any other failure.
fn plain_text_hint(endpoint: &str, cause: &str) -> String {
    match endpoint.strip_prefix("https://") {
        Some(rest) if cause.contains("InvalidContentType") => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
            format!(
                " (the collector at {host} speaks plain text, not TLS: use http://{rest}; for a \
                 gRPC host:port endpoint, OTEL_EXPORTER_OTLP_INSECURE=true)"
            )
        }
        _ => String::new(),
    }
}

/// OTLP/gRPC over a tonic channel.
#[derive(Clone, Debug)]
pub struct GrpcClient {
    signal: Signal,
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
    metadata: tonic::metadata::MetadataMap,
    endpoint: String,
    timeout: Duration,
    reach: Arc<Reachability>,
}

impl GrpcClient {
    fn new(
        config: &Config,
        signal: Signal,
        tls: Option<&TlsSetup>,
        reach: Arc<Reachability>,
    ) -> Result<GrpcClient, String> {
        let otlp = config.otlp(signal);
        let bad = |e: tonic::transport::Error| {
            format!(
                "cannot use {} as an OTLP/gRPC endpoint: {}",
                otlp.endpoint,
                error_chain(&e)
            )
        };
        let mut endpoint = tonic::transport::Endpoint::from_shared(otlp.endpoint.clone())
            .map_err(bad)?
            .connect_timeout(otlp.timeout)
            .user_agent(format!("callspan/{}", crate::VERSION))
            .map_err(bad)?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls.tonic_config()).map_err(bad)?;
        }
        let mut grpc = tonic::client::Grpc::new(endpoint.connect_lazy());
        if otlp.gzip {
            use tonic::codec::CompressionEncoding::Gzip;
            grpc = grpc.send_compressed(Gzip).accept_compressed(Gzip);
        }
        Ok(GrpcClient {
            signal,
            grpc,
            metadata: grpc_metadata(&otlp.headers),
            endpoint: otlp.endpoint.clone(),
            timeout: otlp.timeout,
            reach,
        })
    }

    /// One attempt, given `left` of the export's time.
    async fn attempt(&self, body: Bytes, left: Duration) -> Result<Accepted, tonic::Status> {
        let mut grpc = self.grpc.clone();
        let call = async {
            grpc.ready().await.map_err(|e| {
                self.reach.note(Some(&e));
                tonic::Status::unavailable(format!("connection not ready: {}", error_chain(&e)))
            })?;
            let mut request = tonic::Request::new(body);
            *request.metadata_mut() = self.metadata.clone();
            request.set_timeout(left);
            let path = http::uri::PathAndQuery::from_static(self.signal.grpc_path());
            let answer = grpc.unary(request, path, PreEncoded).await;
            self.reach.note(answer.as_ref().err().map(|s| s as _));
            answer
        };
        match tokio::time::timeout(left, call).await {
            Ok(result) => result.and_then(|response| {
                self.signal
                    .accepted(&response.into_inner())
                    .map_err(|e| tonic::Status::internal(format!("undecodable response: {e}")))
            }),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {left:?} (OTEL_EXPORTER_OTLP_TIMEOUT)"
            ))),
        }
    }
}

/// `Code: message (transport cause)`, the way an operator wants to read a gRPC failure.
fn describe_status(status: &tonic::Status) -> String {
    let mut out = format!("{:?}", status.code());
    if !status.message().is_empty() {
        out.push_str(": ");
        out.push_str(status.message());
    }
    if let Some(source) = std::error::Error::source(status) {
        let chain = error_chain(source);
        if !out.contains(&chain) {
            out.push_str(&format!(" ({chain})"));
        }
    }
    out
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

/// The gRPC codec of pre-encoded requests: the body's bytes go out as they are, and the
/// response's come back as they are (the signal decodes them).
#[derive(Clone, Copy, Debug, Default)]
struct PreEncoded;

impl tonic::codec::Codec for PreEncoded {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = PreEncoded;
    type Decoder = PreEncoded;

    fn encoder(&mut self) -> PreEncoded {
        PreEncoded
    }

    fn decoder(&mut self) -> PreEncoded {
        PreEncoded
    }
}

impl tonic::codec::Encoder for PreEncoded {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for PreEncoded {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// OTLP/HTTP with protobuf bodies: reqwest's async client on the exporter's tokio runtime.
#[derive(Clone, Debug)]
pub struct HttpClient {
    signal: Signal,
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    gzip: bool,
    timeout: Duration,
    reach: Arc<Reachability>,
}

/// A failed OTLP/HTTP attempt: the status (0 when no response came), the server's
/// `Retry-After`, and a message for the log.
#[derive(Debug)]
struct HttpFailure {
    status: u16,
    retry_after: Option<String>,
    message: String,
}

impl HttpClient {
    fn new(
        config: &Config,
        signal: Signal,
        tls: Option<&TlsSetup>,
        reach: Arc<Reachability>,
    ) -> Result<HttpClient, String> {
        let otlp = config.otlp(signal);
        let mut headers = HeaderMap::new();
        for (k, v) in &otlp.headers {
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
        // The exporter owns the body's description.
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        if otlp.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        // Plain http:// needs no TLS, but reqwest (built without a default crypto provider)
        // wants a configuration all the same.
        let rustls = match tls {
            Some(tls) => tls.rustls_config(),
            None => TlsSetup::plain_rustls_config(),
        };
        let client = reqwest::Client::builder()
            .connect_timeout(otlp.timeout)
            .user_agent(format!("callspan/{}", crate::VERSION))
            .tls_backend_preconfigured(rustls)
            .build()
            .map_err(|e| format!("cannot build the HTTP client for {}: {e}", otlp.endpoint))?;
        Ok(HttpClient {
            signal,
            client,
            url: otlp.endpoint.clone(),
            headers,
            gzip: otlp.gzip,
            timeout: otlp.timeout,
            reach,
        })
    }

    /// The request of one attempt.
    fn request(&self, body: Bytes, left: Duration) -> reqwest::RequestBuilder {
        self.client
            .post(&self.url)
            .headers(self.headers.clone())
            .timeout(left)
            .body(body)
    }

    /// One attempt, given `left` of the export's time.
    async fn attempt(&self, body: Bytes, left: Duration) -> Result<Accepted, HttpFailure> {
        let unsent = |e: reqwest::Error| {
            self.reach.note(Some(&e));
            HttpFailure {
                status: 0,
                retry_after: None,
                message: error_chain(&e),
            }
        };
        let mut response = self.request(body, left).send().await.map_err(unsent)?;
        self.reach.note(None);
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_RESPONSE_BODY => {
                    body.extend_from_slice(&chunk);
                }
                Ok(_) => break,
                // The status says whether the spans were taken; a 2xx must not be retried
                // (that would send them twice) because its body broke off.
                Err(_) if status.is_success() => break,
                Err(e) => return Err(unsent(e)),
            }
        }
        if status.is_success() {
            // An empty body is a full success; a body that is not a response is one too (the
            // spec's server MUST send one, but the spans were accepted either way).
            return Ok(self.signal.accepted(&body).unwrap_or_default());
        }
        let mut message = format!("HTTP {status}");
        // OTLP/HTTP error bodies are a google.rpc.Status.
        if let Ok(rpc) = tonic_types::Status::decode(body.as_slice()) {
            if !rpc.message.is_empty() {
                message.push_str(": ");
                message.push_str(&rpc.message);
            }
        }
        Err(HttpFailure {
            status: status.as_u16(),
            retry_after,
            message,
        })
    }
}

/// An error and its sources: `error sending request: ...: invalid peer certificate: UnknownIssuer`.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
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

fn gzip(body: &[u8]) -> std::io::Result<Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    encoder.write_all(body)?;
    Ok(encoder.finish()?.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use callspan_core::config::OTEL_EXPORTER_OTLP_ENDPOINT;
    use std::io::Read;

    fn config(env: &[(&str, &str)], args: &[(&str, &str)]) -> Config {
        let (config, warnings) = Config::from_pairs(env, args);
        assert!(warnings.is_empty(), "{warnings:?}");
        config
    }

    #[test]
    fn http_requests_carry_exactly_callspans_headers_and_compression() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let plain = config(
            &[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4318")],
            &[
                ("protocol", "http/protobuf"),
                ("headers", "x-tenant=imaging,authorization=Bearer%20t"),
            ],
        );
        let OtlpClient::Http(client) = OtlpClient::build(&plain, Signal::Traces).unwrap() else {
            panic!("not HTTP");
        };
        let request = client
            .request(
                Bytes::from_static(b"protobuf bytes"),
                Duration::from_secs(1),
            )
            .build()
            .unwrap();
        assert_eq!(request.url().as_str(), "http://collector:4318/v1/traces");
        let headers = request.headers();
        assert_eq!(headers["x-tenant"], "imaging");
        assert_eq!(headers["authorization"], "Bearer t");
        assert_eq!(headers[CONTENT_TYPE], "application/x-protobuf");
        assert!(headers.get(CONTENT_ENCODING).is_none());
        assert_eq!(request.timeout(), Some(&Duration::from_secs(1)));

        let mut gzipped = plain.clone();
        gzipped.traces.gzip = true;
        let OtlpClient::Http(client) = OtlpClient::build(&gzipped, Signal::Traces).unwrap() else {
            panic!("not HTTP");
        };
        let request = client
            .request(gzip(b"protobuf bytes").unwrap(), Duration::from_secs(1))
            .build()
            .unwrap();
        assert_eq!(request.headers()[CONTENT_ENCODING], "gzip");
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(request.body().unwrap().as_bytes().unwrap())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"protobuf bytes");
    }

    #[test]
    fn grpc_metadata_is_callspans_headers() {
        let metadata = grpc_metadata(&[
            ("x-tenant".into(), "imaging".into()),
            ("trace-bin".into(), "\u{1}raw".into()),
        ]);
        assert_eq!(metadata.get("x-tenant").unwrap(), "imaging");
        assert_eq!(
            metadata.get_bin("trace-bin").unwrap().to_bytes().unwrap(),
            &b"\x01raw"[..]
        );
        assert_eq!(metadata.len(), 2);
    }

    #[test]
    fn failures_name_the_destination_the_cause_and_the_retries() {
        assert_eq!(
            failure(
                "OTLP/gRPC to http://x:4317",
                Signal::Traces,
                ExportErrorKind::Failed,
                "Unavailable: down",
                0
            ),
            "OTLP/gRPC to http://x:4317 failed: Unavailable: down"
        );
        assert_eq!(
            failure(
                "OTLP/HTTP to http://x/v1/traces",
                Signal::Traces,
                ExportErrorKind::Failed,
                "HTTP 503",
                3
            ),
            "OTLP/HTTP to http://x/v1/traces failed after 3 retries: HTTP 503"
        );
        assert_eq!(
            failure(
                "OTLP/HTTP to http://x/v1/metrics",
                Signal::Metrics,
                ExportErrorKind::NoService,
                "HTTP 404 Not Found",
                0
            ),
            "OTLP/HTTP to http://x/v1/metrics failed: HTTP 404 Not Found (the receiver has no \
             OTLP metrics service: MetricsService over gRPC, /v1/metrics over HTTP)"
        );
        assert_eq!(
            describe_status(&tonic::Status::unavailable("tcp connect error")),
            "Unavailable: tcp connect error"
        );
        let corrupt = "Unavailable: received corrupt message of type InvalidContentType";
        assert_eq!(
            plain_text_hint("https://collector:4318/v1/traces", corrupt),
            " (the collector at collector:4318 speaks plain text, not TLS: use \
             http://collector:4318/v1/traces; for a gRPC host:port endpoint, \
             OTEL_EXPORTER_OTLP_INSECURE=true)"
        );
        assert_eq!(plain_text_hint("http://collector:4317", corrupt), "");
        assert_eq!(
            plain_text_hint("https://collector:4317", "Unavailable: down"),
            ""
        );
    }

    #[test]
    fn clients_build_for_both_protocols() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        for (protocol, endpoint, described) in [
            (
                "grpc",
                "http://127.0.0.1:4317",
                "OTLP/gRPC to http://127.0.0.1:4317",
            ),
            (
                "http/protobuf",
                "http://127.0.0.1:4318/v1/traces",
                "OTLP/HTTP to http://127.0.0.1:4318/v1/traces",
            ),
        ] {
            let config = config(
                &[],
                &[
                    ("protocol", protocol),
                    ("endpoint", endpoint),
                    ("compression", "gzip"),
                    ("headers", "x-tenant=imaging"),
                ],
            );
            assert_eq!(
                OtlpClient::build(&config, Signal::Traces)
                    .unwrap()
                    .describe(),
                described
            );
        }
    }

    #[test]
    fn a_refused_connection_fails_within_the_timeout_after_retries() {
        // Nothing listens on this port (bound and closed just now).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (protocol, endpoint) in [
            ("grpc", format!("http://127.0.0.1:{port}")),
            (
                "http/protobuf",
                format!("http://127.0.0.1:{port}/v1/traces"),
            ),
        ] {
            let config = config(
                &[],
                &[
                    ("protocol", protocol),
                    ("endpoint", &endpoint),
                    ("timeout", "1500"),
                ],
            );
            let started = Instant::now();
            let error = runtime
                .block_on(async {
                    OtlpClient::build(&config, Signal::Traces)
                        .unwrap()
                        .export(Bytes::new())
                        .await
                })
                .unwrap_err();
            let took = started.elapsed();
            assert_eq!(error.kind, ExportErrorKind::Failed);
            assert!(
                error.message.contains(&endpoint) && error.message.contains("failed after"),
                "{error}"
            );
            assert!(took < Duration::from_millis(2500), "{took:?}");
        }
    }
}
