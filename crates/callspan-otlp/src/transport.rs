//! Where batches go: an OTLP receiver (gRPC or HTTP/protobuf, see `otlp_client.rs`), local
//! outputs — an OTLP-JSON-lines file, the console — or several of them at once
//! (`OTEL_TRACES_EXPORTER=otlp,console`): every batch goes to each; none of them is `none`.
//!
//! Every output takes the same encoded `ExportTraceServiceRequest` (`encode.rs`): the network
//! sends its bytes; the file and the console decode them with prost into opentelemetry-proto's
//! messages, so what they show is exactly what a receiver would have received, and the file
//! writes those messages in the OTLP JSON encoding (opentelemetry-proto's serde: ids as hex,
//! enums as integers, 64-bit integers as strings). Every setting comes from
//! `callspan_core::config`, which has already resolved (and warned about) the `OTEL_*`
//! variables: nothing here reads the environment.

use crate::encode::EncodedRequest;
use crate::otlp_client::OtlpClient;
use crate::semconv;
use crate::signal::Signal;
use callspan_core::config::{Config, ExporterKind};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};
use prost::Message;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The configured destinations of span batches.
#[derive(Debug)]
pub struct Transport {
    /// OTLP over gRPC or HTTP/protobuf, sent on the exporter's tokio runtime.
    pub otlp: Option<Box<OtlpClient>>,
    /// Written on the exporter thread itself, in the order configured.
    pub local: Vec<LocalOutput>,
}

/// An output on this machine, written synchronously.
pub enum LocalOutput {
    /// One `ExportTraceServiceRequest` per line, OTLP JSON encoding.
    File {
        /// The open file, appended to.
        file: std::fs::File,
        /// Its path, for messages.
        path: String,
    },
    /// A readable line per span on stderr.
    Console,
}

impl std::fmt::Debug for LocalOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Transport {
    /// Builds the destinations the configuration asks for; `closing` is the exporter's flag
    /// of a shutdown under way (see [`OtlpClient::gives_up`]). Must run inside the exporter's
    /// tokio runtime: the gRPC channel and the HTTP client connect lazily on it. Problems with
    /// TLS files are logged and worked around (see `tls.rs`); a destination that cannot be
    /// built is left out with a warning, and an error means none could be.
    pub fn build(config: &Config, closing: &Arc<AtomicBool>) -> Result<Transport, String> {
        let mut transport = Transport {
            otlp: None,
            local: Vec::new(),
        };
        let mut failed = Vec::new();
        for kind in &config.exporters {
            let built = match kind {
                ExporterKind::Console => {
                    transport.local.push(LocalOutput::Console);
                    Ok(())
                }
                ExporterKind::File => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&config.file)
                    .map(|file| {
                        transport.local.push(LocalOutput::File {
                            file,
                            path: config.file.clone(),
                        });
                    })
                    .map_err(|e| format!("cannot open {} for spans: {e}", config.file)),
                ExporterKind::Otlp => {
                    OtlpClient::build_closing(config, Signal::Traces, Arc::clone(closing))
                        .map(|c| transport.otlp = Some(Box::new(c)))
                }
            };
            if let Err(e) = built {
                failed.push(e);
            }
        }
        if failed.len() == config.exporters.len() && !failed.is_empty() {
            return Err(failed.join("; "));
        }
        for e in failed {
            tracing::warn!("{e}; spans go to {} only", transport.describe());
        }
        Ok(transport)
    }

    /// Where spans go, for humans: `OTLP/gRPC to http://localhost:4317 and the console
    /// (stderr)`.
    pub fn describe(&self) -> String {
        let mut all: Vec<String> = self.otlp.iter().map(|c| c.describe()).collect();
        all.extend(self.local.iter().map(LocalOutput::describe));
        if all.is_empty() {
            return "nowhere (exporter none)".into();
        }
        all.join(" and ")
    }

    /// Writes one encoded request to every local output; true when all of them took it
    /// (each failure is logged).
    pub fn write_local(&mut self, request: &EncodedRequest) -> bool {
        let mut ok = true;
        for output in &mut self.local {
            if let Err(e) = output.write(request) {
                tracing::warn!("{e}; {} spans not written there", request.spans);
                ok = false;
            }
        }
        ok
    }
}

impl LocalOutput {
    /// Where spans go, for humans.
    pub fn describe(&self) -> String {
        match self {
            LocalOutput::File { path, .. } => format!("OTLP JSON lines in {path}"),
            LocalOutput::Console => "the console (stderr)".into(),
        }
    }

    /// Writes one encoded request.
    pub fn write(&mut self, request: &EncodedRequest) -> Result<(), String> {
        let decode = || {
            ExportTraceServiceRequest::decode(&request.body[..])
                .map_err(|e| format!("cannot decode an encoded request (a bug): {e}"))
        };
        match self {
            LocalOutput::File { file, path } => {
                let mut line = serde_json::to_vec(&decode()?)
                    .map_err(|e| format!("cannot encode spans as OTLP JSON: {e}"))?;
                line.push(b'\n');
                file.write_all(&line)
                    .and_then(|()| file.flush())
                    .map_err(|e| format!("cannot write spans to {path}: {e}"))
            }
            LocalOutput::Console => {
                let mut out = String::new();
                for resource_spans in decode()?.resource_spans {
                    for scope_spans in resource_spans.scope_spans {
                        for span in &scope_spans.spans {
                            out.push_str(&console_line(span));
                            out.push('\n');
                        }
                    }
                }
                std::io::stderr()
                    .write_all(out.as_bytes())
                    .map_err(|e| format!("cannot write spans to stderr: {e}"))
            }
        }
    }
}

/// A span attribute's value, for reading.
fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// An attribute value as a human reads it.
fn display(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        Value::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// `callspan: apply_transform 12.5µs <- imgpipe.Rotator.rotate_image (imgpipe.py:31)
/// [imgpipe.Rotator] thread=MainThread trace=… span=…`
pub fn console_line(span: &Span) -> String {
    let micros = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano) as f64
        / 1e3;
    let mut line = format!("callspan: {} {micros:.1}µs", span.name);
    let text = |key| attribute(span, key).map(display);
    if let Some(caller) = text(semconv::CALLER_FUNCTION_NAME) {
        let file = text(semconv::CALLER_FILE_PATH).unwrap_or_default();
        let short = file.rsplit('/').next().unwrap_or_default();
        let line_no = text(semconv::CALLER_LINE_NUMBER).unwrap_or_default();
        let _ = write!(line, " <- {caller} ({short}:{line_no})");
    }
    if let Some(class) = text(semconv::CALLER_CLASS_NAME) {
        let _ = write!(line, " [{class}]");
    }
    if let Some(thread) = text(semconv::THREAD_NAME) {
        let _ = write!(line, " thread={thread}");
    }
    if let Some(status) = span
        .status
        .as_ref()
        .filter(|s| s.code == StatusCode::Error as i32)
    {
        let _ = write!(line, " ERROR {}", status.message);
    }
    let _ = write!(
        line,
        " trace={} span={}",
        hex(&span.trace_id),
        hex(&span.span_id)
    );
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::tests::{encode_all, fixture};
    use crate::encode::Limits;
    use crate::tls::tests::{Scratch, CA_PEM};

    #[test]
    fn otlp_transports_build_for_both_protocols_and_tls() {
        let scratch = Scratch::new("build");
        let ca = scratch.file("ca.pem", CA_PEM);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
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
            let closing = Arc::new(AtomicBool::new(false));
            let transport = runtime
                .block_on(async { Transport::build(&config, &closing) })
                .unwrap();
            let kind = if protocol == "grpc" { "gRPC" } else { "HTTP" };
            assert_eq!(transport.describe(), format!("OTLP/{kind} to {endpoint}"));
        }
    }

    #[test]
    fn several_exporters_build_together_and_one_that_cannot_is_left_out() {
        let scratch = Scratch::new("several");
        let path = scratch.file("spans.jsonl", "");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let closing = Arc::new(AtomicBool::new(false));
        let build = |exporter: &str, file: &str| {
            let args = [
                ("exporter", exporter),
                ("file", file),
                ("endpoint", "http://127.0.0.1:4317"),
            ];
            let (config, warnings) = Config::from_pairs(&[], &args);
            assert!(warnings.is_empty(), "{warnings:?}");
            runtime.block_on(async { Transport::build(&config, &closing) })
        };
        let all = build("console,otlp,file", &path).unwrap();
        assert_eq!(
            all.describe(),
            format!(
                "OTLP/gRPC to http://127.0.0.1:4317 and the console (stderr) and OTLP JSON \
                 lines in {path}"
            )
        );
        let missing = "/nonexistent-callspan-dir/spans.jsonl";
        assert_eq!(
            build("file,console", missing).unwrap().describe(),
            "the console (stderr)"
        );
        assert!(build("file", missing)
            .unwrap_err()
            .starts_with("cannot open /nonexistent-callspan-dir/spans.jsonl"));
        let none = build("none", &path).unwrap();
        assert_eq!(none.describe(), "nowhere (exporter none)");
    }

    /// One encoded request of every kind of span, as the network would send it.
    fn encoded() -> EncodedRequest {
        let f = fixture();
        encode_all(&f, &f.records, Limits::default(), usize::MAX)
            .pop()
            .unwrap()
    }

    #[test]
    fn the_file_holds_the_sent_request_as_otlp_json() {
        let scratch = Scratch::new("file");
        let path = scratch.file("spans.jsonl", "");
        let request = encoded();
        let mut output = LocalOutput::File {
            file: std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap(),
            path: path.clone(),
        };
        output.write(&request).unwrap();
        output.write(&request).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        // The JSON parses back to the very request the network sends.
        let parsed: ExportTraceServiceRequest = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(parsed.encode_to_vec(), request.body);
        // OTLP JSON, not protobuf's canonical JSON: hex ids, integer enums, camelCase keys.
        let json: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        let spans = &json["resourceSpans"][0]["scopeSpans"][0]["spans"];
        assert_eq!(spans[1]["traceId"], "0123456789abcdef0011223344556677");
        assert_eq!(spans[1]["spanId"], "1122334455667788");
        assert_eq!(spans[1]["parentSpanId"], "0000000000000099");
        assert_eq!(spans[1]["kind"], 1);
        assert_eq!(spans[5]["status"]["code"], 2);
        assert_eq!(spans[5]["events"][0]["name"], semconv::EXCEPTION_EVENT);
        assert_eq!(
            json["resourceSpans"][0]["scopeSpans"][0]["scope"]["name"],
            semconv::SCOPE_NAME
        );
    }

    #[test]
    fn the_console_shows_each_sent_span_on_a_line() {
        let request = encoded();
        let spans = ExportTraceServiceRequest::decode(&request.body[..])
            .unwrap()
            .resource_spans
            .remove(0)
            .scope_spans
            .remove(0)
            .spans;
        assert_eq!(
            console_line(&spans[0]),
            "callspan: Transformer.apply_transform 12.5µs <- imgpipe.Rotator.rotate_image \
             (imgpipe.py:31) [imgpipe.Rotator] thread=MainThread \
             trace=0123456789abcdef0011223344556677 span=1122334455667788"
        );
        assert_eq!(
            console_line(&spans[2]),
            "callspan: Transformer.apply_transform 12.5µs trace=0123456789abcdef0011223344556677 \
             span=1122334455667788"
        );
        assert!(
            console_line(&spans[5]).contains(" ERROR ValueError: bad pixel trace="),
            "{}",
            console_line(&spans[5])
        );
        assert!(LocalOutput::Console.write(&request).is_ok());
    }
}
