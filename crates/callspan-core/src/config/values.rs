//! The resolved configuration: [`Config`] and the types of its values. Plain data; how the
//! values are found is the `resolve` module's job.

use super::parse::glob_match;
use super::table::Signal;
use crate::sampler::Sampler;
use std::time::Duration;

/// Where a setting's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A keyword argument to `callspan.configure()`.
    Argument,
    /// An environment variable (its name).
    Env(&'static str),
    /// The built-in default.
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Argument => f.write_str("callspan.configure()"),
            Source::Env(name) => f.write_str(name),
            Source::Default => f.write_str("default"),
        }
    }
}

impl Source {
    /// How a message names the setting `key` given through this source: the variable, or
    /// `callspan.configure(key=...)`.
    pub fn setting_name(&self, key: &str) -> String {
        match self {
            Source::Env(var) => (*var).to_owned(),
            _ => format!("callspan.configure({key}=...)"),
        }
    }
}

/// One destination of spans; [`Config::exporters`] lists those in use (none: spans are made
/// and counted but not shipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExporterKind {
    /// OTLP over gRPC or HTTP.
    Otlp,
    /// A readable line per span on stderr.
    Console,
    /// OTLP JSON lines in [`Config::file`].
    File,
}

impl ExporterKind {
    /// The name `OTEL_TRACES_EXPORTER` gives it.
    pub fn name(self) -> &'static str {
        match self {
            ExporterKind::Otlp => "otlp",
            ExporterKind::Console => "console",
            ExporterKind::File => "file",
        }
    }
}

/// One destination of the caller-edge metrics; [`Config::metrics_exporters`] lists those in use
/// (none: calls are not counted for metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsExporterKind {
    /// OTLP over gRPC or HTTP, to [`Config::metrics`].
    Otlp,
    /// A line of OTLP JSON per export on stderr.
    Console,
}

impl MetricsExporterKind {
    /// The name `OTEL_METRICS_EXPORTER` gives it.
    pub fn name(self) -> &'static str {
        match self {
            MetricsExporterKind::Otlp => "otlp",
            MetricsExporterKind::Console => "console",
        }
    }
}

/// The aggregation temporality asked of metric exports
/// (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`, the spec's three choices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Temporality {
    /// Every instrument cumulative.
    Cumulative,
    /// Counters and histograms delta; up-down counters cumulative.
    Delta,
    /// Synchronous counters and histograms delta; the rest cumulative.
    LowMemory,
}

/// The OTLP wire protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (the default).
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
}

/// A PEM file named by a TLS setting, and where the name came from (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemFile {
    /// The file, made absolute when the configuration was resolved; it was readable then and
    /// held at least one PEM block of the expected kind.
    pub path: String,
    /// Where the setting came from.
    pub source: Source,
    /// The setting's `callspan.configure()` keyword (`certificate`, `client_key`, ...), or its
    /// variable when it has none.
    pub key: &'static str,
}

impl PemFile {
    /// The variable (or `callspan.configure(key=...)`) that named this file.
    pub fn setting_name(&self) -> String {
        self.source.setting_name(self.key)
    }
}

/// One signal's OTLP destination, resolved from `OTEL_EXPORTER_OTLP_<SIGNAL>_*`, then
/// `OTEL_EXPORTER_OTLP_*`, then the defaults (traces also from `callspan.configure()`).
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpSettings {
    /// Whose settings these are.
    pub signal: Signal,
    /// The full endpoint, always with its scheme: for gRPC the collector's address
    /// (`http://localhost:4317`), for OTLP/HTTP the URL requests are posted to
    /// (`http://localhost:4318/v1/traces`). `https://` means TLS.
    pub endpoint: String,
    /// The OTLP protocol.
    pub protocol: Protocol,
    /// `..._INSECURE`, already applied to [`OtlpSettings::endpoint`].
    pub insecure: bool,
    /// Export headers: names lower-cased, values printable ASCII (checked here).
    pub headers: Vec<(String, String)>,
    /// gzip compression of export requests.
    pub gzip: bool,
    /// One OTLP export's timeout (all attempts of one batch).
    pub timeout: Duration,
    /// CA certificate(s) trusted for the collector's TLS certificate; `None`: the system's.
    /// Only set when the endpoint is `https://`.
    pub certificate: Option<PemFile>,
    /// The client's private key for mutual TLS; set together with
    /// [`OtlpSettings::client_certificate`] or not at all, and only for an `https://` endpoint.
    pub client_key: Option<PemFile>,
    /// The client's certificate (chain) for mutual TLS.
    pub client_certificate: Option<PemFile>,
}

/// Which caller attributes are recorded (`CALLSPAN_CAPTURE`), as bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capture(pub u8);

impl Capture {
    /// `caller.function.name`.
    pub const FUNCTION: u8 = 1;
    /// `caller.file.path`.
    pub const FILE: u8 = 2;
    /// `caller.line.number`.
    pub const LINE: u8 = 4;
    /// `caller.class.name`.
    pub const CLASS: u8 = 8;
    /// `thread.id`, `thread.name`.
    pub const THREAD: u8 = 16;
    /// `caller.instance.id`: the caller's `self` (or `cls`) identity. Off unless named: not
    /// part of `all`.
    pub const INSTANCE: u8 = 32;
    /// Everything but `instance`.
    pub const ALL: Capture = Capture(31);
    pub(super) const NAMES: [(&'static str, u8); 6] = [
        ("instance", Self::INSTANCE),
        ("function", Self::FUNCTION),
        ("file", Self::FILE),
        ("line", Self::LINE),
        ("class", Self::CLASS),
        ("thread", Self::THREAD),
    ];

    /// Whether `bit` is captured.
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// Whether anything about the caller's frame is needed.
    pub fn needs_frame(self) -> bool {
        self.0 & (Self::FUNCTION | Self::FILE | Self::LINE | Self::CLASS) != 0
    }
}

impl std::fmt::Display for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .filter(|(_, bit)| self.has(*bit))
            .map(|(n, _)| *n)
            .collect();
        f.write_str(if names.is_empty() { "none" } else { "" })?;
        f.write_str(&names.join(","))
    }
}

/// One `CALLSPAN_SAMPLE` rule: a glob over `code.function.name` and its rate.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleRule {
    /// `*` matches any run of characters, `?` one character.
    pub pattern: String,
    /// 0..=1.
    pub rate: f64,
}

/// The effective configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `OTEL_SDK_DISABLED`.
    pub disabled: bool,
    /// `OTEL_SERVICE_NAME`; `None` means `unknown_service:<executable>`.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, in order.
    pub resource_attributes: Vec<(String, String)>,
    /// `OTEL_TRACES_SAMPLER` + `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler: Sampler,
    /// `CALLSPAN_EXPORTER` / `OTEL_TRACES_EXPORTER`, a comma-separated list: every span goes
    /// to each of these, each named once, in the order given; empty for `none`.
    pub exporters: Vec<ExporterKind>,
    /// `CALLSPAN_FILE`.
    pub file: String,
    /// Where OTLP spans go: `OTEL_EXPORTER_OTLP_[TRACES_]*`.
    pub traces: OtlpSettings,
    /// `OTEL_BSP_SCHEDULE_DELAY`.
    pub schedule_delay: Duration,
    /// `OTEL_BSP_EXPORT_TIMEOUT`.
    pub export_timeout: Duration,
    /// The queue's capacity in spans: `OTEL_BSP_MAX_QUEUE_SIZE`, or what
    /// `CALLSPAN_MAX_QUEUE_BYTES` holds (see [`super::resolve::queue_capacity`]).
    pub max_queue_size: usize,
    /// `CALLSPAN_MAX_QUEUE_BYTES`.
    pub max_queue_bytes: usize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
    pub max_export_batch_size: usize,
    /// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`; `None`: no limit.
    pub attribute_value_length_limit: Option<usize>,
    /// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`.
    pub span_attribute_count_limit: usize,
    /// `OTEL_SPAN_EVENT_COUNT_LIMIT`.
    pub span_event_count_limit: usize,
    /// `CALLSPAN_SAMPLE`, in order.
    pub sample_rules: Vec<SampleRule>,
    /// `CALLSPAN_MAX_SPANS_PER_SECOND`; 0: no limit.
    pub max_spans_per_second: f64,
    /// `CALLSPAN_MIN_DURATION`.
    pub min_duration: Duration,
    /// `CALLSPAN_CAPTURE`.
    pub capture: Capture,
    /// `CALLSPAN_STACK_DEPTH`.
    pub stack_depth: usize,
    /// `CALLSPAN_EXPORTER_NICE`: nice levels below the application for the exporter threads.
    pub exporter_nice: i32,
    /// `CALLSPAN_OTEL_CONTEXT`.
    pub otel_context: bool,
    /// `OTEL_METRICS_EXPORTER`: every destination of the metrics, in order (empty: none).
    pub metrics_exporters: Vec<MetricsExporterKind>,
    /// `OTEL_METRIC_EXPORT_INTERVAL` (resolved; nothing exports metrics yet).
    pub metric_export_interval: Duration,
    /// `OTEL_METRIC_EXPORT_TIMEOUT` (resolved; nothing exports metrics yet).
    pub metric_export_timeout: Duration,
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` (resolved; not used yet).
    pub metrics_temporality: Temporality,
    /// `CALLSPAN_MAX_EDGES` (resolved; nothing counts edges yet).
    pub max_edges: usize,
    /// `CALLSPAN_REPORT`: `1` for stderr, else a file; `None`: no report at exit.
    pub report: Option<String>,
    /// Where OTLP metrics would go: `OTEL_EXPORTER_OTLP_[METRICS_]*` (resolved; not used yet).
    pub metrics: OtlpSettings,
    /// Warnings about [`Config::metrics`] caused by generic `OTEL_EXPORTER_OTLP_*` variables
    /// (a bad value the traces did not need, TLS files that do not suit the metrics endpoint):
    /// not said yet, since nothing exports metrics; the metrics exporter says them when it
    /// starts. Problems with `OTEL_EXPORTER_OTLP_METRICS_*` variables are ordinary warnings.
    pub metrics_warnings: Vec<String>,
    /// Every setting as `(name, value, source)`, for `python -m callspan config`.
    pub effective: Vec<(&'static str, String, Source)>,
}

/// The `CALLSPAN_SAMPLE` rate of a function under `rules`: the first matching rule's, else 1.
pub fn sample_rate_for(rules: &[SampleRule], function_name: &str) -> f64 {
    rules
        .iter()
        .find(|rule| glob_match(&rule.pattern, function_name))
        .map_or(1.0, |rule| rule.rate)
}

impl Config {
    /// The OTLP settings of `signal`: [`Config::traces`] or [`Config::metrics`].
    pub fn otlp(&self, signal: Signal) -> &OtlpSettings {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
        }
    }

    /// The `CALLSPAN_SAMPLE` rate of a function: the first matching rule's, else 1.
    pub fn sample_rate_for(&self, function_name: &str) -> f64 {
        sample_rate_for(&self.sample_rules, function_name)
    }
}
