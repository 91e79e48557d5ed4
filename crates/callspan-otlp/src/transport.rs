//! Where batches go: OTLP (opentelemetry-otlp over tonic), an OTLP-JSON-lines file, the console,
//! or nowhere. Each transport exports one batch per call and reports failure as a string that
//! the exporter logs; none of them retries on its own except opentelemetry-otlp, whose retry
//! policy follows the OTLP spec (retryable codes only, backoff with jitter, RetryInfo honoured).

use callspan_core::config::{Config, ExporterKind, Protocol};
use opentelemetry::Value;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use opentelemetry_sdk::Resource;
use std::io::Write;

/// A configured destination for span batches.
pub enum Transport {
    /// OTLP over gRPC.
    Otlp {
        /// The opentelemetry-otlp exporter.
        exporter: Box<opentelemetry_otlp::SpanExporter>,
        /// The endpoint, for messages.
        endpoint: String,
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
    /// runtime: the gRPC channel connects lazily on it.
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
                if config.protocol == Protocol::HttpProtobuf {
                    return Err(format!(
                        "OTLP protocol http/protobuf is not available in this build; \
                         set OTEL_EXPORTER_OTLP_PROTOCOL=grpc (endpoint {})",
                        config.endpoint
                    ));
                }
                let mut metadata = tonic::metadata::MetadataMap::new();
                for (k, v) in &config.headers {
                    let key =
                        tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                            .map_err(|_| format!("invalid header name {k:?}"))?;
                    let value = v
                        .parse()
                        .map_err(|_| format!("invalid value for header {k:?}"))?;
                    metadata.insert(key, value);
                }
                let mut builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(config.endpoint.clone())
                    .with_timeout(config.otlp_timeout)
                    .with_metadata(metadata);
                if config.gzip {
                    builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
                }
                let mut exporter = builder.build().map_err(|e| {
                    format!(
                        "cannot build the OTLP exporter for {}: {e}",
                        config.endpoint
                    )
                })?;
                exporter.set_resource(resource);
                Ok(Transport::Otlp {
                    exporter: Box::new(exporter),
                    endpoint: config.endpoint.clone(),
                })
            }
        }
    }

    /// Where spans go, for humans: `OTLP/gRPC to http://localhost:4317`.
    pub fn describe(&self) -> String {
        match self {
            Transport::Otlp { endpoint, .. } => format!("OTLP/gRPC to {endpoint}"),
            Transport::File { path, .. } => format!("OTLP JSON lines in {path}"),
            Transport::Console => "the console (stderr)".into(),
            Transport::None => "nowhere (exporter none)".into(),
        }
    }

    /// Exports one batch.
    pub async fn export(&mut self, batch: Vec<SpanData>) -> Result<(), String> {
        match self {
            Transport::Otlp { exporter, endpoint } => exporter
                .export(batch)
                .await
                .map_err(|e| format!("OTLP export to {endpoint} failed: {e}")),
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
