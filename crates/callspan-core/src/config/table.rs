//! The table of settings: one [`Setting`] row per knob, in the README's order, naming its
//! variables (in precedence order), its `callspan.configure()` keyword, its default and what it
//! means. The resolver reads keywords, variables and defaults from these rows; Python's keyword
//! list (`_callspan.settings()`) and the README check (`tests/test_config_table.py`) read the
//! same rows, so a setting is added in one place: a row here, its constants in
//! [`super::variables`], its parser in `Config::resolve`.

use super::variables::*;
use std::borrow::Cow;

/// A telemetry signal with an OTLP destination of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metrics (read and checked; nothing exports them yet).
    Metrics,
}

impl Signal {
    /// `traces`, `metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }

    /// The OTLP/HTTP path the spec appends to a base endpoint: `/v1/traces`, `/v1/metrics`.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }

    /// This signal's OTLP rows.
    pub fn rows(self) -> &'static OtlpRows {
        match self {
            Signal::Traces => &TRACES_OTLP,
            Signal::Metrics => &METRICS_OTLP,
        }
    }
}

/// What a setting's value is, as far as a caller handing it over needs to know (Python turns
/// dicts, lists and seconds into the variable's spelling by kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `true` or `false`.
    Bool,
    /// Any text.
    Text,
    /// A file path.
    Path,
    /// One of the words listed in the row's meaning (case-insensitive).
    Choice,
    /// An integer of milliseconds.
    Milliseconds,
    /// A non-negative integer.
    Integer,
    /// A non-negative number.
    Number,
    /// A number from 0 to 1.
    Ratio,
    /// A number with a unit: `250us`, `2ms`, `1s`, `500ns`.
    Duration,
    /// `key=value,...`, percent-encoded.
    KeyValues,
    /// `glob=rate,...`.
    SampleRules,
    /// A comma-separated list of names.
    Names,
    /// A URL, or `host:port` for gRPC.
    Endpoint,
}

impl Kind {
    /// The kind's name in `_callspan.settings()`: `bool`, `milliseconds`, `key_values`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bool => "bool",
            Kind::Text => "text",
            Kind::Path => "path",
            Kind::Choice => "choice",
            Kind::Milliseconds => "milliseconds",
            Kind::Integer => "integer",
            Kind::Number => "number",
            Kind::Ratio => "ratio",
            Kind::Duration => "duration",
            Kind::KeyValues => "key_values",
            Kind::SampleRules => "sample_rules",
            Kind::Names => "names",
            Kind::Endpoint => "endpoint",
        }
    }
}

/// A setting's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultValue {
    /// A value, spelt as the variable would spell it; the resolver parses it with the setting's
    /// own parser (a unit test resolves every row's default).
    Value(&'static str),
    /// No value: the setting is absent, and this says what that means.
    Absent(&'static str),
    /// The signal's endpoint, which depends on the protocol.
    Endpoint(Signal),
}

impl DefaultValue {
    /// The default as `python -m callspan config` and the README show it.
    pub fn text(self) -> Cow<'static, str> {
        match self {
            DefaultValue::Value(v) | DefaultValue::Absent(v) => Cow::Borrowed(v),
            DefaultValue::Endpoint(signal) => Cow::Owned(format!(
                "{OTEL_EXPORTER_OTLP_ENDPOINT_GRPC_DEFAULT}; HTTP: \
                 {OTEL_EXPORTER_OTLP_ENDPOINT_HTTP_DEFAULT}{}",
                signal.http_path()
            )),
        }
    }
}

/// One row of the table.
#[derive(Debug)]
pub struct Setting {
    /// The `callspan.configure()` keyword, if the setting has one.
    pub keyword: Option<&'static str>,
    /// The variables, highest precedence first; the first one names the setting in
    /// `python -m callspan config`.
    pub variables: &'static [&'static str],
    /// What its value is.
    pub kind: Kind,
    /// Its default.
    pub default: DefaultValue,
    /// What it does, in a line.
    pub doc: &'static str,
}

impl Setting {
    /// The variable that names the setting (its first).
    pub fn name(&self) -> &'static str {
        self.variables[0]
    }

    /// How messages name an argument for it: the keyword, else the variable.
    pub fn key(&self) -> &'static str {
        self.keyword.unwrap_or(self.variables[0])
    }
}

/// The rows of one signal's OTLP settings.
#[derive(Debug)]
pub struct OtlpRows {
    /// `OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Setting,
    /// `..._PROTOCOL`.
    pub protocol: Setting,
    /// `..._HEADERS`.
    pub headers: Setting,
    /// `..._COMPRESSION`.
    pub compression: Setting,
    /// `..._TIMEOUT`.
    pub timeout: Setting,
    /// `..._INSECURE`.
    pub insecure: Setting,
    /// `..._CERTIFICATE`.
    pub certificate: Setting,
    /// `..._CLIENT_KEY`.
    pub client_key: Setting,
    /// `..._CLIENT_CERTIFICATE`.
    pub client_certificate: Setting,
}

const fn keyword(has_keywords: bool, keyword: &'static str) -> Option<&'static str> {
    if has_keywords {
        Some(keyword)
    } else {
        None
    }
}

/// A signal's nine OTLP rows: its own variable first, then the generic one; the keywords only
/// for a signal that has them.
macro_rules! otlp_rows {
    ($signal:expr, keywords: $kw:expr, $endpoint:ident, $protocol:ident, $headers:ident,
     $compression:ident, $timeout:ident, $insecure:ident, $certificate:ident,
     $client_key:ident, $client_certificate:ident) => {
        OtlpRows {
            endpoint: Setting {
                keyword: keyword($kw, "endpoint"),
                variables: &[$endpoint, OTEL_EXPORTER_OTLP_ENDPOINT],
                kind: Kind::Endpoint,
                default: DefaultValue::Endpoint($signal),
                doc: "collector endpoint; the signal variable and the keyword are used as given, \
                      the generic one is a base URL for OTLP/HTTP",
            },
            protocol: Setting {
                keyword: keyword($kw, "protocol"),
                variables: &[$protocol, OTEL_EXPORTER_OTLP_PROTOCOL],
                kind: Kind::Choice,
                default: DefaultValue::Value(OTEL_EXPORTER_OTLP_PROTOCOL_DEFAULT),
                doc: "grpc or http/protobuf",
            },
            headers: Setting {
                keyword: keyword($kw, "headers"),
                variables: &[$headers, OTEL_EXPORTER_OTLP_HEADERS],
                kind: Kind::KeyValues,
                default: DefaultValue::Value(OTEL_EXPORTER_OTLP_HEADERS_DEFAULT),
                doc: "gRPC metadata / HTTP headers sent with every export",
            },
            compression: Setting {
                keyword: keyword($kw, "compression"),
                variables: &[$compression, OTEL_EXPORTER_OTLP_COMPRESSION],
                kind: Kind::Choice,
                default: DefaultValue::Value(OTEL_EXPORTER_OTLP_COMPRESSION_DEFAULT),
                doc: "gzip or none",
            },
            timeout: Setting {
                keyword: keyword($kw, "timeout_ms"),
                variables: &[$timeout, OTEL_EXPORTER_OTLP_TIMEOUT],
                kind: Kind::Milliseconds,
                default: DefaultValue::Value(OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT),
                doc: "ms per OTLP export, retries included",
            },
            insecure: Setting {
                keyword: keyword($kw, "insecure"),
                variables: &[$insecure, OTEL_EXPORTER_OTLP_INSECURE],
                kind: Kind::Bool,
                default: DefaultValue::Value(OTEL_EXPORTER_OTLP_INSECURE_DEFAULT),
                doc: "true: a gRPC host:port endpoint is plain text, else TLS",
            },
            certificate: Setting {
                keyword: keyword($kw, "certificate"),
                variables: &[$certificate, OTEL_EXPORTER_OTLP_CERTIFICATE],
                kind: Kind::Path,
                default: DefaultValue::Absent(OTEL_EXPORTER_OTLP_CERTIFICATE_DEFAULT),
                doc: "PEM file of the CA certificate(s) trusted for the collector",
            },
            client_key: Setting {
                keyword: keyword($kw, "client_key"),
                variables: &[$client_key, OTEL_EXPORTER_OTLP_CLIENT_KEY],
                kind: Kind::Path,
                default: DefaultValue::Absent(OTEL_EXPORTER_OTLP_CLIENT_KEY_DEFAULT),
                doc: "PEM private key for mutual TLS (with the client certificate)",
            },
            client_certificate: Setting {
                keyword: keyword($kw, "client_certificate"),
                variables: &[$client_certificate, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE],
                kind: Kind::Path,
                default: DefaultValue::Absent(OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE_DEFAULT),
                doc: "PEM certificate (chain) for mutual TLS (with the client key)",
            },
        }
    };
}

/// The traces' OTLP rows (with `callspan.configure()` keywords).
pub static TRACES_OTLP: OtlpRows = otlp_rows!(
    Signal::Traces,
    keywords: true,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    OTEL_EXPORTER_OTLP_TRACES_INSECURE,
    OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE
);

/// The metrics' OTLP rows (environment only until metrics are exported).
pub static METRICS_OTLP: OtlpRows = otlp_rows!(
    Signal::Metrics,
    keywords: false,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_METRICS_HEADERS,
    OTEL_EXPORTER_OTLP_METRICS_COMPRESSION,
    OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
    OTEL_EXPORTER_OTLP_METRICS_INSECURE,
    OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE,
    OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE
);

/// `OTEL_SDK_DISABLED`.
pub static DISABLED: Setting = Setting {
    keyword: Some("disabled"),
    variables: &[OTEL_SDK_DISABLED],
    kind: Kind::Bool,
    default: DefaultValue::Value(OTEL_SDK_DISABLED_DEFAULT),
    doc: "true: traced functions become plain calls",
};
/// `OTEL_SERVICE_NAME`.
pub static SERVICE_NAME: Setting = Setting {
    keyword: Some("service_name"),
    variables: &[OTEL_SERVICE_NAME],
    kind: Kind::Text,
    default: DefaultValue::Absent(OTEL_SERVICE_NAME_DEFAULT),
    doc: "service.name",
};
/// `OTEL_RESOURCE_ATTRIBUTES`.
pub static RESOURCE_ATTRIBUTES: Setting = Setting {
    keyword: Some("resource_attributes"),
    variables: &[OTEL_RESOURCE_ATTRIBUTES],
    kind: Kind::KeyValues,
    default: DefaultValue::Value(OTEL_RESOURCE_ATTRIBUTES_DEFAULT),
    doc: "resource attributes, key=value,... (percent-encoded)",
};
/// `OTEL_TRACES_SAMPLER`.
pub static SAMPLER: Setting = Setting {
    keyword: Some("sampler"),
    variables: &[OTEL_TRACES_SAMPLER],
    kind: Kind::Choice,
    default: DefaultValue::Value(OTEL_TRACES_SAMPLER_DEFAULT),
    doc: "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off \
          or parentbased_traceidratio",
};
/// `OTEL_TRACES_SAMPLER_ARG`.
pub static SAMPLER_ARG: Setting = Setting {
    keyword: Some("sampler_arg"),
    variables: &[OTEL_TRACES_SAMPLER_ARG],
    kind: Kind::Ratio,
    default: DefaultValue::Value(OTEL_TRACES_SAMPLER_ARG_DEFAULT),
    doc: "the ratio of the traceidratio samplers",
};
/// `CALLSPAN_EXPORTER` / `OTEL_TRACES_EXPORTER`.
pub static EXPORTER: Setting = Setting {
    keyword: Some("exporter"),
    variables: &[CALLSPAN_EXPORTER, OTEL_TRACES_EXPORTER],
    kind: Kind::Choice,
    default: DefaultValue::Value(OTEL_TRACES_EXPORTER_DEFAULT),
    doc: "where spans go: otlp, console, file, a comma-separated list of them (each span \
          goes to every one), or none",
};
/// `CALLSPAN_FILE`.
pub static FILE: Setting = Setting {
    keyword: Some("file"),
    variables: &[CALLSPAN_FILE],
    kind: Kind::Path,
    default: DefaultValue::Value(CALLSPAN_FILE_DEFAULT),
    doc: "the file exporter's OTLP-JSON-lines file",
};
/// `OTEL_BSP_SCHEDULE_DELAY`.
pub static SCHEDULE_DELAY: Setting = Setting {
    keyword: Some("schedule_delay_ms"),
    variables: &[OTEL_BSP_SCHEDULE_DELAY],
    kind: Kind::Milliseconds,
    default: DefaultValue::Value(OTEL_BSP_SCHEDULE_DELAY_DEFAULT),
    doc: "ms between exports",
};
/// `OTEL_BSP_EXPORT_TIMEOUT`.
pub static EXPORT_TIMEOUT: Setting = Setting {
    keyword: Some("export_timeout_ms"),
    variables: &[OTEL_BSP_EXPORT_TIMEOUT],
    kind: Kind::Milliseconds,
    default: DefaultValue::Value(OTEL_BSP_EXPORT_TIMEOUT_DEFAULT),
    doc: "ms for one export, and for the flush at exit (positive)",
};
/// `OTEL_BSP_MAX_QUEUE_SIZE`.
pub static MAX_QUEUE_SIZE: Setting = Setting {
    keyword: Some("max_queue_size"),
    variables: &[OTEL_BSP_MAX_QUEUE_SIZE],
    kind: Kind::Integer,
    default: DefaultValue::Absent(OTEL_BSP_MAX_QUEUE_SIZE_DEFAULT),
    doc: "spans held before new ones are dropped (counted)",
};
/// `CALLSPAN_MAX_QUEUE_BYTES`.
pub static MAX_QUEUE_BYTES: Setting = Setting {
    keyword: Some("max_queue_bytes"),
    variables: &[CALLSPAN_MAX_QUEUE_BYTES],
    kind: Kind::Integer,
    default: DefaultValue::Value(CALLSPAN_MAX_QUEUE_BYTES_DEFAULT),
    doc: "the queue's size in bytes of span records (the smaller queue applies when OTEL_BSP_MAX_QUEUE_SIZE is set too)",
};
/// `CALLSPAN_EXPORTER_NICE`.
pub static EXPORTER_NICE: Setting = Setting {
    keyword: Some("exporter_nice"),
    variables: &[CALLSPAN_EXPORTER_NICE],
    kind: Kind::Integer,
    default: DefaultValue::Value(CALLSPAN_EXPORTER_NICE_DEFAULT),
    doc: "nice levels (Linux, 0-19) the exporter threads run below the application, so that \
          a busy CPU runs the application first; 0: the application's own priority",
};
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
pub static MAX_EXPORT_BATCH_SIZE: Setting = Setting {
    keyword: Some("max_export_batch_size"),
    variables: &[OTEL_BSP_MAX_EXPORT_BATCH_SIZE],
    kind: Kind::Integer,
    default: DefaultValue::Value(OTEL_BSP_MAX_EXPORT_BATCH_SIZE_DEFAULT),
    doc: "spans per export request (at most the queue size)",
};
/// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`.
pub static ATTRIBUTE_VALUE_LENGTH_LIMIT: Setting = Setting {
    keyword: Some("attribute_value_length_limit"),
    variables: &[OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT],
    kind: Kind::Integer,
    default: DefaultValue::Absent(OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT_DEFAULT),
    doc: "longer string attribute values are truncated",
};
/// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`.
pub static SPAN_ATTRIBUTE_COUNT_LIMIT: Setting = Setting {
    keyword: Some("span_attribute_count_limit"),
    variables: &[OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT],
    kind: Kind::Integer,
    default: DefaultValue::Value(OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT_DEFAULT),
    doc: "attributes kept per span (the rest counted as dropped)",
};
/// `OTEL_SPAN_EVENT_COUNT_LIMIT`.
pub static SPAN_EVENT_COUNT_LIMIT: Setting = Setting {
    keyword: Some("span_event_count_limit"),
    variables: &[OTEL_SPAN_EVENT_COUNT_LIMIT],
    kind: Kind::Integer,
    default: DefaultValue::Value(OTEL_SPAN_EVENT_COUNT_LIMIT_DEFAULT),
    doc: "events kept per span",
};
/// `CALLSPAN_SAMPLE`.
pub static SAMPLE: Setting = Setting {
    keyword: Some("sample"),
    variables: &[CALLSPAN_SAMPLE],
    kind: Kind::SampleRules,
    default: DefaultValue::Absent(CALLSPAN_SAMPLE_DEFAULT),
    doc: "per-function rates by glob over code.function.name, first match wins",
};
/// `CALLSPAN_MAX_SPANS_PER_SECOND`.
pub static MAX_SPANS_PER_SECOND: Setting = Setting {
    keyword: Some("max_spans_per_second"),
    variables: &[CALLSPAN_MAX_SPANS_PER_SECOND],
    kind: Kind::Number,
    default: DefaultValue::Value(CALLSPAN_MAX_SPANS_PER_SECOND_DEFAULT),
    doc: "process-wide limit on sampled spans (0: no limit)",
};
/// `CALLSPAN_MIN_DURATION`.
pub static MIN_DURATION: Setting = Setting {
    keyword: Some("min_duration"),
    variables: &[CALLSPAN_MIN_DURATION],
    kind: Kind::Duration,
    default: DefaultValue::Value(CALLSPAN_MIN_DURATION_DEFAULT),
    doc: "sampled spans shorter than this are not exported (counted)",
};
/// `CALLSPAN_CAPTURE`.
pub static CAPTURE: Setting = Setting {
    keyword: Some("capture"),
    variables: &[CALLSPAN_CAPTURE],
    kind: Kind::Names,
    default: DefaultValue::Value(CALLSPAN_CAPTURE_DEFAULT),
    doc: "caller attributes recorded: function, file, line, class, thread, all or none",
};
/// `CALLSPAN_STACK_DEPTH`.
pub static STACK_DEPTH: Setting = Setting {
    keyword: Some("stack_depth"),
    variables: &[CALLSPAN_STACK_DEPTH],
    kind: Kind::Integer,
    default: DefaultValue::Value(CALLSPAN_STACK_DEPTH_DEFAULT),
    doc: "N > 0 adds code.stacktrace with the N frames beyond the caller (at most 64)",
};
/// `CALLSPAN_OTEL_CONTEXT`.
pub static OTEL_CONTEXT: Setting = Setting {
    keyword: Some("otel_context"),
    variables: &[CALLSPAN_OTEL_CONTEXT],
    kind: Kind::Bool,
    default: DefaultValue::Value(CALLSPAN_OTEL_CONTEXT_DEFAULT),
    doc: "true: a sampled traced call is the OpenTelemetry API's current span while it runs",
};
/// `OTEL_METRICS_EXPORTER`.
pub static METRICS_EXPORTER: Setting = Setting {
    keyword: Some("metrics_exporter"),
    variables: &[OTEL_METRICS_EXPORTER],
    kind: Kind::Choice,
    default: DefaultValue::Value(OTEL_METRICS_EXPORTER_DEFAULT),
    doc: "where the caller-edge metrics go: otlp, console, both as a comma-separated list \
          (each export goes to every one), or none (the default: not exported)",
};
/// `OTEL_METRIC_EXPORT_INTERVAL`.
pub static METRIC_EXPORT_INTERVAL: Setting = Setting {
    keyword: None,
    variables: &[OTEL_METRIC_EXPORT_INTERVAL],
    kind: Kind::Milliseconds,
    default: DefaultValue::Value(OTEL_METRIC_EXPORT_INTERVAL_DEFAULT),
    doc: "ms between metric exports, positive",
};
/// `OTEL_METRIC_EXPORT_TIMEOUT`.
pub static METRIC_EXPORT_TIMEOUT: Setting = Setting {
    keyword: None,
    variables: &[OTEL_METRIC_EXPORT_TIMEOUT],
    kind: Kind::Milliseconds,
    default: DefaultValue::Value(OTEL_METRIC_EXPORT_TIMEOUT_DEFAULT),
    doc: "ms for one metric export, positive",
};
/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`.
pub static METRICS_TEMPORALITY: Setting = Setting {
    keyword: None,
    variables: &[OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE],
    kind: Kind::Choice,
    default: DefaultValue::Value(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE_DEFAULT),
    doc: "cumulative, delta or lowmemory",
};
/// `CALLSPAN_MAX_EDGES`.
pub static MAX_EDGES: Setting = Setting {
    keyword: None,
    variables: &[CALLSPAN_MAX_EDGES],
    kind: Kind::Integer,
    default: DefaultValue::Value(CALLSPAN_MAX_EDGES_DEFAULT),
    doc: "caller edges counted apart; the rest fold into one per callee",
};

/// The setting a `callspan.configure()` keyword sets, if it is one.
pub fn by_keyword(keyword: &str) -> Option<&'static Setting> {
    SETTINGS
        .iter()
        .copied()
        .find(|row| row.keyword == Some(keyword))
}

/// `CALLSPAN_REPORT`.
pub static REPORT: Setting = Setting {
    keyword: Some("report"),
    variables: &[CALLSPAN_REPORT],
    kind: Kind::Path,
    default: DefaultValue::Absent("no report at exit"),
    doc: "the caller report at exit: 1 (stderr) or a file path",
};

/// Every setting, in the README's order.
pub static SETTINGS: &[&Setting] = &[
    &DISABLED,
    &SERVICE_NAME,
    &RESOURCE_ATTRIBUTES,
    &SAMPLER,
    &SAMPLER_ARG,
    &EXPORTER,
    &FILE,
    &TRACES_OTLP.endpoint,
    &TRACES_OTLP.protocol,
    &TRACES_OTLP.headers,
    &TRACES_OTLP.compression,
    &TRACES_OTLP.timeout,
    &TRACES_OTLP.insecure,
    &TRACES_OTLP.certificate,
    &TRACES_OTLP.client_key,
    &TRACES_OTLP.client_certificate,
    &SCHEDULE_DELAY,
    &EXPORT_TIMEOUT,
    &MAX_QUEUE_SIZE,
    &MAX_QUEUE_BYTES,
    &MAX_EXPORT_BATCH_SIZE,
    &EXPORTER_NICE,
    &ATTRIBUTE_VALUE_LENGTH_LIMIT,
    &SPAN_ATTRIBUTE_COUNT_LIMIT,
    &SPAN_EVENT_COUNT_LIMIT,
    &SAMPLE,
    &MAX_SPANS_PER_SECOND,
    &MIN_DURATION,
    &CAPTURE,
    &STACK_DEPTH,
    &OTEL_CONTEXT,
    &METRICS_EXPORTER,
    &METRIC_EXPORT_INTERVAL,
    &METRIC_EXPORT_TIMEOUT,
    &METRICS_TEMPORALITY,
    &MAX_EDGES,
    &REPORT,
    &METRICS_OTLP.endpoint,
    &METRICS_OTLP.protocol,
    &METRICS_OTLP.headers,
    &METRICS_OTLP.compression,
    &METRICS_OTLP.timeout,
    &METRICS_OTLP.insecure,
    &METRICS_OTLP.certificate,
    &METRICS_OTLP.client_key,
    &METRICS_OTLP.client_certificate,
];
