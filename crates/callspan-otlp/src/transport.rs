//! Where batches go: an OTLP receiver (gRPC or HTTP/protobuf, see `otlp_client.rs`), an
//! OTLP-JSON-lines file, the console, or nowhere.
//!
//! OTLP takes request bodies encoded straight from span records (`encode.rs`); the file and
//! the console take `SpanData` (`convert.rs`), which is slower and fine for them. Every setting
//! comes from `callspan_core::config`, which has already resolved (and warned about) the
//! `OTEL_*` variables: nothing here reads the environment, so a value callspan resolved is the
//! value used. TLS material is loaded once (`tls.rs`).

use crate::otlp_client::OtlpClient;
use crate::tls::TlsSetup;
use callspan_core::config::{Config, ExporterKind};
use opentelemetry::Value;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;
use std::io::Write;

/// A configured destination for span batches.
pub enum Transport {
    /// OTLP over gRPC or HTTP/protobuf: takes encoded requests.
    Otlp(Box<OtlpClient>),
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
                OtlpClient::build(config, tls.as_ref()).map(|c| Transport::Otlp(Box::new(c)))
            }
        }
    }

    /// Where spans go, for humans: `OTLP/gRPC to http://localhost:4317`.
    pub fn describe(&self) -> String {
        match self {
            Transport::Otlp(client) => client.describe(),
            Transport::File { path, .. } => format!("OTLP JSON lines in {path}"),
            Transport::Console => "the console (stderr)".into(),
            Transport::None => "nowhere (exporter none)".into(),
        }
    }

    /// Writes one batch to a file, the console or nowhere (OTLP takes encoded requests).
    pub fn write(&mut self, batch: Vec<SpanData>) -> Result<(), String> {
        match self {
            Transport::Otlp(client) => Err(format!(
                "{} takes encoded requests, not SpanData (a bug)",
                client.describe()
            )),
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
    use crate::tls::tests::{Scratch, CA_PEM};

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
            let args = [
                ("protocol", protocol),
                ("endpoint", endpoint),
                ("compression", "gzip"),
                ("headers", "x-tenant=imaging"),
                ("certificate", &ca),
            ];
            let (config, warnings) = Config::from_pairs(
                &[],
                &args[..if endpoint.starts_with("https") { 5 } else { 4 }],
            );
            assert!(warnings.is_empty(), "{warnings:?}");
            let transport = runtime
                .block_on(async { Transport::build(&config, &resource) })
                .unwrap();
            let kind = if protocol == "grpc" { "gRPC" } else { "HTTP" };
            assert_eq!(transport.describe(), format!("OTLP/{kind} to {endpoint}"));
        }
    }
}
