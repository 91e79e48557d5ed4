//! callspan's exporter: the thread that turns span records into OTLP and ships them.
//!
//! [`pipeline::Pipeline`] is the process-wide entry point the binding talks to: it owns the
//! bounded [`callspan_core::sink::SpanSink`], starts the [`exporter::BatchExporter`] thread
//! lazily (and afresh in a forked child), and answers flush, shutdown and stats. The exporter
//! thread, named `callspan-export`, owns its own tokio runtime, batches records by count and time,
//! resolves ids through the registry ([`convert`]) and hands batches to a [`transport`]: OTLP
//! over gRPC (opentelemetry-otlp on tonic), OTLP-JSON lines in a file, or the console. It never
//! touches a Python object. [`diagnostic`] collects its warnings, rate-limited, for the binding
//! to forward to Python's `logging`.

pub mod convert;
pub mod diagnostic;
pub mod exporter;
pub mod pipeline;
pub mod resource;
pub mod transport;

/// The version reported as `telemetry.sdk.version` and as the instrumentation scope version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
