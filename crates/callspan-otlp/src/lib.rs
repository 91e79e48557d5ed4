//! callspan's exporter: the thread that turns span records into OTLP and ships them.
//!
//! [`pipeline::Pipeline`] is the process-wide entry point the binding talks to: it owns the
//! bounded [`callspan_core::sink::SpanSink`], starts the [`exporter::BatchExporter`] thread
//! lazily (and afresh in a forked child), and answers flush, shutdown and stats. The exporter
//! thread, named `callspan-export`, runs its own single-threaded tokio runtime (the requests on
//! the wire progress while it waits, no I/O thread), batches records by count and time,
//! encodes them straight to OTLP protobuf ([`encode`], attribute names from [`semconv`]) and
//! sends them with [`otlp_client`] (gRPC on tonic, or HTTP/protobuf on reqwest, with the OTLP
//! [`retry`] rules and [`tls`]; one client for every [`signal`]); the file and console
//! [`transport`]s decode and render those same bytes. It never touches a Python object.
//! Every call counted per caller edge (`callspan_core::edges`) goes out as OTLP [`metrics`]
//! from a second thread, `callspan-metrics` ([`metrics_exporter`]), through the same client.
//! [`diagnostic`] collects its warnings, rate-limited, for the binding to forward to Python's
//! `logging`.

pub mod diagnostic;
mod drop_report;
pub mod encode;
pub mod exporter;
mod in_flight;
pub mod metrics;
pub mod metrics_exporter;
pub mod otlp_client;
pub mod pipeline;
pub mod protowire;
pub mod resource;
pub mod retry;
mod runtime_thread;
pub mod semconv;
pub mod signal;
pub mod tls;
pub mod transport;

/// The version reported as `telemetry.sdk.version` and as the instrumentation scope version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
