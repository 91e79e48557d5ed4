//! The environment variables callspan reads: one `pub const` per variable, named exactly like
//! it, and beside it `<NAME>_DEFAULT`, the default spelt as the variable would spell it (or, for
//! a setting whose absence means something, what it means). These constants are the one place
//! each default is written: the table ([`super::table::SETTINGS`]), the resolver, `python -m
//! callspan config`, the README check and the Python keyword list all read them from here.
//!
//! A signal-specific variable (`OTEL_EXPORTER_OTLP_TRACES_*`, `OTEL_EXPORTER_OTLP_METRICS_*`)
//! has no default of its own: it falls back to its generic `OTEL_EXPORTER_OTLP_*` variable.

// -- the SDK and the resource ------------------------------------------------------------------

/// `OTEL_SDK_DISABLED` — `true` turns every traced function into a plain call.
pub const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// Default of [`OTEL_SDK_DISABLED`].
pub const OTEL_SDK_DISABLED_DEFAULT: &str = "false";
/// `OTEL_SERVICE_NAME` — `service.name`.
pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// Default of [`OTEL_SERVICE_NAME`] (`<executable>` is `sys.executable`'s file name).
pub const OTEL_SERVICE_NAME_DEFAULT: &str = "unknown_service:<executable>";
/// `OTEL_RESOURCE_ATTRIBUTES` — `key=value,...`, percent-encoded values.
pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// Default of [`OTEL_RESOURCE_ATTRIBUTES`]: none.
pub const OTEL_RESOURCE_ATTRIBUTES_DEFAULT: &str = "";

// -- traces: sampling and exporter -------------------------------------------------------------

/// `OTEL_TRACES_SAMPLER` — the sampler's name.
pub const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// Default of [`OTEL_TRACES_SAMPLER`].
pub const OTEL_TRACES_SAMPLER_DEFAULT: &str = "parentbased_always_on";
/// `OTEL_TRACES_SAMPLER_ARG` — the ratio of the `*traceidratio` samplers.
pub const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// Default of [`OTEL_TRACES_SAMPLER_ARG`].
pub const OTEL_TRACES_SAMPLER_ARG_DEFAULT: &str = "1.0";
/// `OTEL_TRACES_EXPORTER` — `otlp`, `console`, `file` or `none`.
pub const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// Default of [`OTEL_TRACES_EXPORTER`] (and of [`CALLSPAN_EXPORTER`]).
pub const OTEL_TRACES_EXPORTER_DEFAULT: &str = "otlp";
/// `CALLSPAN_EXPORTER` — overrides `OTEL_TRACES_EXPORTER` for callspan only.
pub const CALLSPAN_EXPORTER: &str = "CALLSPAN_EXPORTER";
/// `CALLSPAN_FILE` — the OTLP-JSON-lines file of the `file` exporter.
pub const CALLSPAN_FILE: &str = "CALLSPAN_FILE";
/// Default of [`CALLSPAN_FILE`].
pub const CALLSPAN_FILE_DEFAULT: &str = "callspan-spans.jsonl";

// -- the batch span processor ------------------------------------------------------------------

/// `OTEL_BSP_SCHEDULE_DELAY` — ms between two exports.
pub const OTEL_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
/// Default of [`OTEL_BSP_SCHEDULE_DELAY`].
pub const OTEL_BSP_SCHEDULE_DELAY_DEFAULT: &str = "5000";
/// `OTEL_BSP_EXPORT_TIMEOUT` — ms allowed for one export, and for the flush at exit.
pub const OTEL_BSP_EXPORT_TIMEOUT: &str = "OTEL_BSP_EXPORT_TIMEOUT";
/// Default of [`OTEL_BSP_EXPORT_TIMEOUT`].
pub const OTEL_BSP_EXPORT_TIMEOUT_DEFAULT: &str = "30000";
/// `OTEL_BSP_MAX_QUEUE_SIZE` — spans held before new ones are dropped. Unset, callspan sizes
/// the queue by [`CALLSPAN_MAX_QUEUE_BYTES`] instead of the spec's 2048 spans.
pub const OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// What an unset [`OTEL_BSP_MAX_QUEUE_SIZE`] means.
pub const OTEL_BSP_MAX_QUEUE_SIZE_DEFAULT: &str = "as many as CALLSPAN_MAX_QUEUE_BYTES holds";
/// `CALLSPAN_MAX_QUEUE_BYTES` — the queue's memory in bytes: it holds this many bytes of span
/// records (the fixed-size part, [`crate::sink::SLOT_BYTES`] each), allocated as it fills.
/// With [`OTEL_BSP_MAX_QUEUE_SIZE`] set as well, the smaller of the two queues applies.
pub const CALLSPAN_MAX_QUEUE_BYTES: &str = "CALLSPAN_MAX_QUEUE_BYTES";
/// Default of [`CALLSPAN_MAX_QUEUE_BYTES`]: 8 MiB, 87,381 spans of 96 bytes — about 159 ms of
/// a hot thread making 550,000 spans/s, enough to ride out an exporter thread kept off the CPU
/// by another process for tens of milliseconds (the spec's 2048 spans last 4 ms at that rate).
pub const CALLSPAN_MAX_QUEUE_BYTES_DEFAULT: &str = "8388608";
/// `CALLSPAN_EXPORTER_NICE` — how many nice levels (Linux, 0–19) callspan's exporter threads
/// run below the application: when the CPUs are all busy, the application's threads run first,
/// and spans that find the queue full meanwhile are dropped and counted. 0 keeps the
/// application's own priority.
pub const CALLSPAN_EXPORTER_NICE: &str = "CALLSPAN_EXPORTER_NICE";
/// Default of [`CALLSPAN_EXPORTER_NICE`].
pub const CALLSPAN_EXPORTER_NICE_DEFAULT: &str = "10";
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` — spans per export request, at most the queue size.
pub const OTEL_BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
/// Default of [`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`].
pub const OTEL_BSP_MAX_EXPORT_BATCH_SIZE_DEFAULT: &str = "512";

// -- OTLP: the generic variables, then each signal's ---------------------------------------------

/// `OTEL_EXPORTER_OTLP_ENDPOINT` — generic OTLP endpoint: for gRPC the collector's address, for
/// OTLP/HTTP a base URL to which the signal's path (`/v1/traces`, `/v1/metrics`) is appended.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Default of [`OTEL_EXPORTER_OTLP_ENDPOINT`] for gRPC.
pub const OTEL_EXPORTER_OTLP_ENDPOINT_GRPC_DEFAULT: &str = "http://localhost:4317";
/// Default of [`OTEL_EXPORTER_OTLP_ENDPOINT`] for OTLP/HTTP: a base URL, the signal's path is
/// appended (`http://localhost:4318/v1/traces`).
pub const OTEL_EXPORTER_OTLP_ENDPOINT_HTTP_DEFAULT: &str = "http://localhost:4318";
/// `OTEL_EXPORTER_OTLP_PROTOCOL` — `grpc` or `http/protobuf`.
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// Default of [`OTEL_EXPORTER_OTLP_PROTOCOL`] (the spec's SDK default is `http/protobuf`; most
/// collectors' default is gRPC).
pub const OTEL_EXPORTER_OTLP_PROTOCOL_DEFAULT: &str = "grpc";
/// `OTEL_EXPORTER_OTLP_HEADERS` — `key=value,...` (values percent-encoded) sent with every
/// export, as gRPC metadata or HTTP headers.
pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// Default of [`OTEL_EXPORTER_OTLP_HEADERS`]: none.
pub const OTEL_EXPORTER_OTLP_HEADERS_DEFAULT: &str = "";
/// `OTEL_EXPORTER_OTLP_COMPRESSION` — `gzip` or `none`.
pub const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
/// Default of [`OTEL_EXPORTER_OTLP_COMPRESSION`].
pub const OTEL_EXPORTER_OTLP_COMPRESSION_DEFAULT: &str = "none";
/// `OTEL_EXPORTER_OTLP_TIMEOUT` — ms allowed for one OTLP export, retries included.
pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// Default of [`OTEL_EXPORTER_OTLP_TIMEOUT`].
pub const OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT: &str = "10000";
/// `OTEL_EXPORTER_OTLP_INSECURE` — `true`: a gRPC endpoint given without a scheme
/// (`collector:4317`) is plain text, `http://`; otherwise it is TLS, `https://`. An endpoint with
/// a scheme, and every OTLP/HTTP endpoint, is used as its scheme says.
pub const OTEL_EXPORTER_OTLP_INSECURE: &str = "OTEL_EXPORTER_OTLP_INSECURE";
/// Default of [`OTEL_EXPORTER_OTLP_INSECURE`].
pub const OTEL_EXPORTER_OTLP_INSECURE_DEFAULT: &str = "false";
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` — PEM file of the CA certificate(s) trusted to verify the
/// collector's TLS certificate, instead of the system's.
pub const OTEL_EXPORTER_OTLP_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
/// What an unset [`OTEL_EXPORTER_OTLP_CERTIFICATE`] means.
pub const OTEL_EXPORTER_OTLP_CERTIFICATE_DEFAULT: &str = "none (the system's trusted roots)";
/// `OTEL_EXPORTER_OTLP_CLIENT_KEY` — PEM file of the client's private key for mutual TLS
/// (with `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`).
pub const OTEL_EXPORTER_OTLP_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";
/// What an unset [`OTEL_EXPORTER_OTLP_CLIENT_KEY`] means.
pub const OTEL_EXPORTER_OTLP_CLIENT_KEY_DEFAULT: &str = "none (no client certificate)";
/// `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` — PEM file of the client's certificate (chain) for
/// mutual TLS (with `OTEL_EXPORTER_OTLP_CLIENT_KEY`).
pub const OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
/// What an unset [`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`] means.
pub const OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE_DEFAULT: &str = "none (no client certificate)";

/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` — trace endpoint, used as given (for OTLP/HTTP the full
/// URL, path included).
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` — trace protocol.
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS` — trace headers.
pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
/// `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION` — trace compression.
pub const OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` — trace request timeout.
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_TRACES_INSECURE` — trace insecure flag.
pub const OTEL_EXPORTER_OTLP_TRACES_INSECURE: &str = "OTEL_EXPORTER_OTLP_TRACES_INSECURE";
/// `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` — trace CA file.
pub const OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";
/// `OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY` — trace client key.
pub const OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY";
/// `OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE` — trace client certificate.
pub const OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE: &str =
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE";

/// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` — metrics endpoint, used as given (for OTLP/HTTP the
/// full URL, path included).
pub const OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL` — metrics protocol.
pub const OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_METRICS_HEADERS` — metrics headers.
pub const OTEL_EXPORTER_OTLP_METRICS_HEADERS: &str = "OTEL_EXPORTER_OTLP_METRICS_HEADERS";
/// `OTEL_EXPORTER_OTLP_METRICS_COMPRESSION` — metrics compression.
pub const OTEL_EXPORTER_OTLP_METRICS_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION";
/// `OTEL_EXPORTER_OTLP_METRICS_TIMEOUT` — metrics request timeout.
pub const OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_METRICS_INSECURE` — metrics insecure flag.
pub const OTEL_EXPORTER_OTLP_METRICS_INSECURE: &str = "OTEL_EXPORTER_OTLP_METRICS_INSECURE";
/// `OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE` — metrics CA file.
pub const OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE";
/// `OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY` — metrics client key.
pub const OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY";
/// `OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE` — metrics client certificate.
pub const OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE: &str =
    "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE";

// -- span limits -------------------------------------------------------------------------------

/// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT` — longest string attribute value kept; longer ones are
/// truncated.
pub const OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: &str = "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT";
/// What an unset [`OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`] means.
pub const OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT_DEFAULT: &str = "no limit";
/// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT` — attributes kept per span (the rest are counted as
/// dropped).
pub const OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT";
/// Default of [`OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`].
pub const OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT_DEFAULT: &str = "128";
/// `OTEL_SPAN_EVENT_COUNT_LIMIT` — events kept per span.
pub const OTEL_SPAN_EVENT_COUNT_LIMIT: &str = "OTEL_SPAN_EVENT_COUNT_LIMIT";
/// Default of [`OTEL_SPAN_EVENT_COUNT_LIMIT`].
pub const OTEL_SPAN_EVENT_COUNT_LIMIT_DEFAULT: &str = "128";

// -- callspan's own ----------------------------------------------------------------------------

/// `CALLSPAN_SAMPLE` — per-function sampling rates by glob over `code.function.name`, first
/// match wins: `imgpipe.apply_transform=0.01,imgpipe.*=0.1`.
pub const CALLSPAN_SAMPLE: &str = "CALLSPAN_SAMPLE";
/// What an unset [`CALLSPAN_SAMPLE`] means.
pub const CALLSPAN_SAMPLE_DEFAULT: &str = "none (every function at rate 1)";
/// `CALLSPAN_MAX_SPANS_PER_SECOND` — process-wide limit on sampled spans (token bucket, one
/// second of burst); `0`: no limit.
pub const CALLSPAN_MAX_SPANS_PER_SECOND: &str = "CALLSPAN_MAX_SPANS_PER_SECOND";
/// Default of [`CALLSPAN_MAX_SPANS_PER_SECOND`]: no limit.
pub const CALLSPAN_MAX_SPANS_PER_SECOND_DEFAULT: &str = "0";
/// `CALLSPAN_MIN_DURATION` — sampled spans shorter than this are not exported (counted):
/// `250us`, `2ms`, `1s`, `500ns`.
pub const CALLSPAN_MIN_DURATION: &str = "CALLSPAN_MIN_DURATION";
/// Default of [`CALLSPAN_MIN_DURATION`].
pub const CALLSPAN_MIN_DURATION_DEFAULT: &str = "0";
/// `CALLSPAN_CAPTURE` — the caller attributes recorded: a list of `function`, `file`, `line`,
/// `class`, `thread`, or `all` / `none`.
pub const CALLSPAN_CAPTURE: &str = "CALLSPAN_CAPTURE";
/// Default of [`CALLSPAN_CAPTURE`].
pub const CALLSPAN_CAPTURE_DEFAULT: &str = "all";
/// `CALLSPAN_STACK_DEPTH` — N > 0 adds `code.stacktrace` with the N frames beyond the caller
/// (at most [`MAX_STACK_DEPTH`]).
pub const CALLSPAN_STACK_DEPTH: &str = "CALLSPAN_STACK_DEPTH";
/// Default of [`CALLSPAN_STACK_DEPTH`].
pub const CALLSPAN_STACK_DEPTH_DEFAULT: &str = "0";
/// The deepest `CALLSPAN_STACK_DEPTH` accepted.
pub const MAX_STACK_DEPTH: usize = 64;
/// `CALLSPAN_OTEL_CONTEXT` — `true` makes each sampled traced call the current span of the
/// OpenTelemetry API while it runs, so that spans OpenTelemetry code starts inside it nest
/// under it (costs an OpenTelemetry context attach/detach per call).
pub const CALLSPAN_OTEL_CONTEXT: &str = "CALLSPAN_OTEL_CONTEXT";
/// Default of [`CALLSPAN_OTEL_CONTEXT`].
pub const CALLSPAN_OTEL_CONTEXT_DEFAULT: &str = "false";

// -- metrics (read and checked; nothing exports metrics yet) ------------------------------------

/// `OTEL_METRICS_EXPORTER` — `otlp`, `console` or `none`.
pub const OTEL_METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
/// Default of [`OTEL_METRICS_EXPORTER`]: `none`, not the spec's `otlp`. Exporting metrics
/// means counting every call; a process that only asked for spans pays nothing for it, and an
/// existing OTLP setup gets no second signal it did not ask for.
pub const OTEL_METRICS_EXPORTER_DEFAULT: &str = "none";
/// `OTEL_METRIC_EXPORT_INTERVAL` — ms between two metric exports.
pub const OTEL_METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// Default of [`OTEL_METRIC_EXPORT_INTERVAL`].
pub const OTEL_METRIC_EXPORT_INTERVAL_DEFAULT: &str = "60000";
/// `OTEL_METRIC_EXPORT_TIMEOUT` — ms allowed for one metric export.
pub const OTEL_METRIC_EXPORT_TIMEOUT: &str = "OTEL_METRIC_EXPORT_TIMEOUT";
/// Default of [`OTEL_METRIC_EXPORT_TIMEOUT`].
pub const OTEL_METRIC_EXPORT_TIMEOUT_DEFAULT: &str = "30000";
/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` — `cumulative`, `delta` or `lowmemory`.
pub const OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: &str =
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
/// Default of [`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`].
pub const OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE_DEFAULT: &str = "cumulative";
/// `CALLSPAN_MAX_EDGES` — caller edges counted separately; edges past it fold into one overflow
/// edge per callee.
pub const CALLSPAN_MAX_EDGES: &str = "CALLSPAN_MAX_EDGES";
/// Default of [`CALLSPAN_MAX_EDGES`].
pub const CALLSPAN_MAX_EDGES_DEFAULT: &str = "10000";
/// `CALLSPAN_REPORT` — print the caller report at exit: `1` (stderr) or a file path. Counting
/// every call is on while it is set (or a metrics exporter is).
pub const CALLSPAN_REPORT: &str = "CALLSPAN_REPORT";
