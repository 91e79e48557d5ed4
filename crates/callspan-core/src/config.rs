//! Every configuration knob callspan reads, in one place: names, defaults, parsing, precedence.
//!
//! Each environment variable is a `pub const` named exactly like the variable, with its default
//! in the doc comment. Resolution order, coded once in [`Resolver`]: a keyword argument given to
//! `callspan.configure()` > the signal-specific variable (`OTEL_EXPORTER_OTLP_TRACES_*`) > the
//! generic variable (`OTEL_EXPORTER_OTLP_*`) > the default. Parsing follows the OpenTelemetry
//! SDK environment specification: an empty variable means unset, enum values are
//! case-insensitive, and a value that cannot be used produces one warning naming the variable,
//! the value and what is used instead; the setting is then treated as not set (the spec's
//! "gracefully ignore"), so the next source in the order above applies, down to the default. The
//! program keeps running.
//!
//! This module is the one source of truth: the transports hand every resolved OTLP value to
//! opentelemetry-otlp programmatically and neutralise what its builders would read from the
//! environment themselves (see `callspan_otlp::transport`).

use crate::sampler::{RootSampler, Sampler};
use std::collections::HashMap;
use std::time::Duration;

/// `OTEL_SDK_DISABLED` — `true` turns every traced function into a plain call. Default `false`.
pub const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// `OTEL_SERVICE_NAME` — `service.name`. Default `unknown_service:<executable>`.
pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// `OTEL_RESOURCE_ATTRIBUTES` — `key=value,...`, percent-encoded values. Default empty.
pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// `OTEL_TRACES_SAMPLER` — sampler name. Default `parentbased_always_on`.
pub const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// `OTEL_TRACES_SAMPLER_ARG` — the ratio for `*traceidratio`. Default `1.0`.
pub const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// `OTEL_TRACES_EXPORTER` — `otlp`, `console`, `file` or `none`. Default `otlp`.
pub const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// `CALLSPAN_EXPORTER` — overrides `OTEL_TRACES_EXPORTER` for callspan only. Default unset.
pub const CALLSPAN_EXPORTER: &str = "CALLSPAN_EXPORTER";
/// `CALLSPAN_FILE` — the OTLP-JSON-lines file of the `file` exporter. Default `callspan-spans.jsonl`.
pub const CALLSPAN_FILE: &str = "CALLSPAN_FILE";
/// `OTEL_BSP_SCHEDULE_DELAY` — ms between two exports. Default `5000`.
pub const OTEL_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
/// `OTEL_BSP_EXPORT_TIMEOUT` — ms allowed for one export, and for the flush at exit. Default `30000`.
pub const OTEL_BSP_EXPORT_TIMEOUT: &str = "OTEL_BSP_EXPORT_TIMEOUT";
/// `OTEL_BSP_MAX_QUEUE_SIZE` — spans held before new ones are dropped. Default `2048`.
pub const OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` — spans per export request, at most the queue size. Default `512`.
pub const OTEL_BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
/// `OTEL_EXPORTER_OTLP_ENDPOINT` — generic OTLP endpoint: for gRPC the collector's address, for
/// OTLP/HTTP a base URL to which `/v1/traces` is appended. Default `http://localhost:4317` (gRPC)
/// or `http://localhost:4318/v1/traces` (OTLP/HTTP).
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` — trace endpoint, used as given (for OTLP/HTTP the full
/// URL, path included); wins over the generic one.
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_PROTOCOL` — `grpc` (the default) or `http/protobuf`.
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` — trace protocol, wins over the generic one.
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_HEADERS` — `key=value,...` (values percent-encoded) sent with every
/// export, as gRPC metadata or HTTP headers. Default empty.
pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS` — trace headers, win over the generic ones.
pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
/// `OTEL_EXPORTER_OTLP_TIMEOUT` — ms allowed for one OTLP export, retries included. Default `10000`.
pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` — trace request timeout, wins over the generic one.
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_COMPRESSION` — `gzip` or `none` (the default).
pub const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
/// `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION` — trace compression, wins over the generic one.
pub const OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
/// `OTEL_EXPORTER_OTLP_INSECURE` — `true`: a gRPC endpoint given without a scheme
/// (`collector:4317`) is plain text, `http://`; otherwise it is TLS, `https://`. An endpoint with
/// a scheme, and every OTLP/HTTP endpoint, is used as its scheme says. Default `false`.
pub const OTEL_EXPORTER_OTLP_INSECURE: &str = "OTEL_EXPORTER_OTLP_INSECURE";
/// `OTEL_EXPORTER_OTLP_TRACES_INSECURE` — trace insecure flag, wins over the generic one.
pub const OTEL_EXPORTER_OTLP_TRACES_INSECURE: &str = "OTEL_EXPORTER_OTLP_TRACES_INSECURE";
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` — PEM file of the CA certificate(s) trusted to verify the
/// collector's TLS certificate, instead of the system's. Default unset: the system's roots.
pub const OTEL_EXPORTER_OTLP_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
/// `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` — trace CA file, wins over the generic one.
pub const OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";
/// `OTEL_EXPORTER_OTLP_CLIENT_KEY` — PEM file of the client's private key for mutual TLS
/// (with `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`). Default unset: no client certificate.
pub const OTEL_EXPORTER_OTLP_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";
/// `OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY` — trace client key, wins over the generic one.
pub const OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY";
/// `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` — PEM file of the client's certificate (chain) for
/// mutual TLS (with `OTEL_EXPORTER_OTLP_CLIENT_KEY`). Default unset: no client certificate.
pub const OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
/// `OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE` — trace client certificate, wins over the
/// generic one.
pub const OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE: &str =
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE";

/// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT` — longest string attribute value kept; longer ones are
/// truncated. Default: no limit.
pub const OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: &str = "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT";
/// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT` — attributes kept per span (the rest are counted as
/// dropped). Default `128`.
pub const OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_SPAN_EVENT_COUNT_LIMIT` — events kept per span. Default `128`.
pub const OTEL_SPAN_EVENT_COUNT_LIMIT: &str = "OTEL_SPAN_EVENT_COUNT_LIMIT";
/// `CALLSPAN_SAMPLE` — per-function sampling rates by glob over `code.function.name`, first
/// match wins: `imgpipe.apply_transform=0.01,imgpipe.*=0.1`. Default: none (rate 1).
pub const CALLSPAN_SAMPLE: &str = "CALLSPAN_SAMPLE";
/// `CALLSPAN_MAX_SPANS_PER_SECOND` — process-wide limit on sampled spans (token bucket, one
/// second of burst). Default `0`: no limit.
pub const CALLSPAN_MAX_SPANS_PER_SECOND: &str = "CALLSPAN_MAX_SPANS_PER_SECOND";
/// `CALLSPAN_MIN_DURATION` — sampled spans shorter than this are not exported (counted):
/// `250us`, `2ms`, `1s`, `500ns`. Default `0`.
pub const CALLSPAN_MIN_DURATION: &str = "CALLSPAN_MIN_DURATION";
/// `CALLSPAN_CAPTURE` — the caller attributes recorded: a list of `function`, `file`, `line`,
/// `class`, `thread`, or `all` / `none`. Default `all`.
pub const CALLSPAN_CAPTURE: &str = "CALLSPAN_CAPTURE";
/// `CALLSPAN_STACK_DEPTH` — N > 0 adds `code.stacktrace` with the N frames beyond the caller
/// (at most 64). Default `0`.
pub const CALLSPAN_STACK_DEPTH: &str = "CALLSPAN_STACK_DEPTH";
/// `CALLSPAN_OTEL_CONTEXT` — `true` makes each sampled traced call the current span of the
/// OpenTelemetry API while it runs, so that spans OpenTelemetry code starts inside it nest
/// under it (costs an OpenTelemetry context attach/detach per call). Default `false`.
pub const CALLSPAN_OTEL_CONTEXT: &str = "CALLSPAN_OTEL_CONTEXT";

/// The deepest `CALLSPAN_STACK_DEPTH` accepted.
pub const MAX_STACK_DEPTH: usize = 64;

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

/// Which exporter ships spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExporterKind {
    /// OTLP over gRPC or HTTP.
    Otlp,
    /// A readable line per span on stderr.
    Console,
    /// OTLP JSON lines in [`Config::file`].
    File,
    /// Spans are made and counted but not shipped.
    None,
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
    /// The setting's `callspan.configure()` keyword (`certificate`, `client_key`, ...).
    pub key: &'static str,
}

impl PemFile {
    /// The variable (or `callspan.configure(key=...)`) that named this file.
    pub fn setting_name(&self) -> String {
        self.source.setting_name(self.key)
    }
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
    /// Everything.
    pub const ALL: Capture = Capture(31);
    const NAMES: [(&'static str, u8); 5] = [
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

fn parse_capture(s: &str) -> Result<Capture, String> {
    let mut bits = 0;
    for item in s
        .split(',')
        .map(|i| i.trim().to_ascii_lowercase())
        .filter(|i| !i.is_empty())
    {
        match item.as_str() {
            "all" => bits |= Capture::ALL.0,
            "none" => {}
            name => match Capture::NAMES.iter().find(|(n, _)| *n == name) {
                Some((_, bit)) => bits |= bit,
                None => {
                    return Err(format!(
                        "unknown item {name:?}; expected function, file, line, class, thread, all or none"
                    ))
                }
            },
        }
    }
    Ok(Capture(bits))
}

/// One `CALLSPAN_SAMPLE` rule: a glob over `code.function.name` and its rate.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleRule {
    /// `*` matches any run of characters, `?` one character.
    pub pattern: String,
    /// 0..=1.
    pub rate: f64,
}

fn parse_sample_rules(s: &str) -> Result<Vec<SampleRule>, String> {
    let mut rules = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (pattern, rate) = item
            .rsplit_once('=')
            .ok_or_else(|| format!("{item:?} is not pattern=rate"))?;
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err(format!("{item:?} has an empty pattern"));
        }
        let rate = parse_ratio(rate.trim()).map_err(|e| format!("{item:?}: {e}"))?;
        rules.push(SampleRule {
            pattern: pattern.to_owned(),
            rate,
        });
    }
    Ok(rules)
}

/// Whether `text` matches the glob `pattern` (`*` any run, `?` one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The `CALLSPAN_SAMPLE` rate of a function under `rules`: the first matching rule's, else 1.
pub fn sample_rate_for(rules: &[SampleRule], function_name: &str) -> f64 {
    rules
        .iter()
        .find(|rule| glob_match(&rule.pattern, function_name))
        .map_or(1.0, |rule| rule.rate)
}

impl Config {
    /// The `CALLSPAN_SAMPLE` rate of a function: the first matching rule's, else 1.
    pub fn sample_rate_for(&self, function_name: &str) -> f64 {
        sample_rate_for(&self.sample_rules, function_name)
    }
}

/// `250us`, `2ms`, `1.5s`, `500ns`, `0`.
fn parse_duration_with_unit(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| "expected a number and a unit: ns, us, ms or s (e.g. 250us)".to_owned())?;
    let nanos = match unit.trim() {
        "ns" => value,
        "us" | "µs" => value * 1e3,
        "ms" => value * 1e6,
        "s" => value * 1e9,
        "" => return Err("a duration needs a unit: ns, us, ms or s (e.g. 250us)".into()),
        other => return Err(format!("unknown unit {other:?}; expected ns, us, ms or s")),
    };
    if !nanos.is_finite() || nanos < 0.0 {
        return Err("expected a non-negative duration".into());
    }
    Ok(Duration::from_nanos(nanos as u64))
}

fn parse_rate_limit(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err("expected a non-negative number of spans per second (0: no limit)".into()),
    }
}

fn parse_limit(s: &str) -> Result<Option<usize>, String> {
    s.parse::<usize>()
        .map(Some)
        .map_err(|_| "expected a non-negative integer".into())
}

fn parse_stack_depth(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n <= MAX_STACK_DEPTH => Ok(n),
        Ok(_) => Err(format!("at most {MAX_STACK_DEPTH} frames")),
        Err(_) => Err("expected a non-negative integer".into()),
    }
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
    /// `CALLSPAN_EXPORTER` / `OTEL_TRACES_EXPORTER`.
    pub exporter: ExporterKind,
    /// `CALLSPAN_FILE`.
    pub file: String,
    /// The full trace endpoint, always with its scheme: for gRPC the collector's address
    /// (`http://localhost:4317`), for OTLP/HTTP the URL requests are posted to
    /// (`http://localhost:4318/v1/traces`). `https://` means TLS.
    pub endpoint: String,
    /// The OTLP protocol.
    pub protocol: Protocol,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]INSECURE`, already applied to [`Config::endpoint`].
    pub insecure: bool,
    /// Export headers: names lower-cased, values printable ASCII (checked here).
    pub headers: Vec<(String, String)>,
    /// gzip compression of export requests.
    pub gzip: bool,
    /// One OTLP export's timeout (all attempts of one batch).
    pub otlp_timeout: Duration,
    /// CA certificate(s) trusted for the collector's TLS certificate; `None`: the system's.
    /// Only set when the endpoint is `https://`.
    pub certificate: Option<PemFile>,
    /// The client's private key for mutual TLS; set together with
    /// [`Config::client_certificate`] or not at all, and only for an `https://` endpoint.
    pub client_key: Option<PemFile>,
    /// The client's certificate (chain) for mutual TLS.
    pub client_certificate: Option<PemFile>,
    /// `OTEL_BSP_SCHEDULE_DELAY`.
    pub schedule_delay: Duration,
    /// `OTEL_BSP_EXPORT_TIMEOUT`.
    pub export_timeout: Duration,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`.
    pub max_queue_size: usize,
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
    /// `CALLSPAN_OTEL_CONTEXT`.
    pub otel_context: bool,
    /// Every setting as `(name, value, source)`, for `python -m callspan config`.
    pub effective: Vec<(&'static str, String, Source)>,
}

/// Looks up raw values: keyword arguments first, then the environment.
#[derive(Debug)]
pub struct Resolver<'a, E: Fn(&str) -> Option<String>> {
    arguments: &'a HashMap<String, String>,
    env: E,
    /// Warnings about bad values, each naming the variable, the value and what is used instead.
    pub warnings: Vec<String>,
    effective: Vec<(&'static str, String, Source)>,
}

/// How a warning shows a rejected raw value: as given, or with secrets (header values) hidden.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shown {
    AsGiven,
    KeysOnly,
}

impl<'a, E: Fn(&str) -> Option<String>> Resolver<'a, E> {
    /// A resolver over `callspan.configure()` keyword arguments and an environment lookup.
    pub fn new(arguments: &'a HashMap<String, String>, env: E) -> Self {
        Resolver {
            arguments,
            env,
            warnings: Vec::new(),
            effective: Vec::new(),
        }
    }

    /// One variable's value, trimmed; empty means unset.
    fn env_value(&self, var: &'static str) -> Option<String> {
        (self.env)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// Every raw value of a setting, in precedence order: the argument `key` (trimmed, kept even
    /// when empty: an argument is always deliberate), then each non-empty variable.
    fn candidates(&self, key: &str, vars: &[&'static str]) -> Vec<(String, Source)> {
        let mut out = Vec::new();
        if let Some(v) = self.arguments.get(key) {
            out.push((v.trim().to_owned(), Source::Argument));
        }
        for var in vars {
            if let Some(v) = self.env_value(var) {
                out.push((v, Source::Env(var)));
            }
        }
        out
    }

    /// Resolves one setting with `parse`: the first candidate it accepts wins; each one it
    /// rejects before that warns (naming the setting, the value and what is used instead) and
    /// is treated as not set.
    fn get<T: Clone>(
        &mut self,
        key: &'static str,
        vars: &[&'static str],
        default: T,
        show: impl Fn(&T) -> String,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> (T, Source) {
        let candidates = self.candidates(key, vars);
        let row = vars.first().copied().unwrap_or(key);
        self.pick(
            key,
            row,
            candidates,
            default,
            show,
            |raw, _| parse(raw),
            Shown::AsGiven,
        )
    }

    /// The heart of [`Resolver::get`], over explicit candidates; `parse` also sees the source.
    #[allow(clippy::too_many_arguments)]
    fn pick<T: Clone>(
        &mut self,
        key: &'static str,
        row: &'static str,
        candidates: Vec<(String, Source)>,
        default: T,
        show: impl Fn(&T) -> String,
        parse: impl Fn(&str, Source) -> Result<T, String>,
        shown: Shown,
    ) -> (T, Source) {
        let mut rejected = Vec::new();
        let mut chosen = None;
        for (raw, source) in candidates {
            match parse(&raw, source) {
                Ok(value) => {
                    chosen = Some((value, source));
                    break;
                }
                Err(why) => rejected.push((raw, source, why)),
            }
        }
        let (value, source) = chosen.unwrap_or((default, Source::Default));
        let instead = describe_choice(&show(&value), source);
        for (raw, bad, why) in rejected {
            let raw = match shown {
                Shown::AsGiven => format!("{raw:?}"),
                Shown::KeysOnly => format!("{:?}", hide_values(&raw)),
            };
            self.warnings.push(format!(
                "{}: invalid value {raw} ({why}); using {instead}",
                bad.setting_name(key)
            ));
        }
        self.effective.push((row, show(&value), source));
        (value, source)
    }

    fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }

    /// The trace endpoint. The argument and `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` are used as
    /// given; `OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL to which OTLP/HTTP appends
    /// `/v1/traces`. A gRPC endpoint without a scheme takes one from `insecure`.
    fn endpoint(&mut self, protocol: Protocol, insecure: bool) -> (String, Source) {
        let default = match protocol {
            Protocol::Grpc => "http://localhost:4317",
            Protocol::HttpProtobuf => "http://localhost:4318/v1/traces",
        };
        let candidates = self.candidates(
            "endpoint",
            &[
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                OTEL_EXPORTER_OTLP_ENDPOINT,
            ],
        );
        self.pick(
            "endpoint",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
            candidates,
            default.to_owned(),
            String::clone,
            |raw, source| {
                let url = parse_endpoint(raw, protocol, insecure)?;
                let is_base = source == Source::Env(OTEL_EXPORTER_OTLP_ENDPOINT);
                Ok(if is_base && protocol == Protocol::HttpProtobuf {
                    signal_url(&url)
                } else {
                    url
                })
            },
            Shown::AsGiven,
        )
    }

    /// The export headers. Malformed entries are skipped with one warning for the variable (the
    /// rest of it is kept); a variable with no usable entry is treated as not set. Warnings never
    /// show header values: they are often credentials.
    fn headers(&mut self) -> Vec<(String, String)> {
        let candidates = self.candidates(
            "headers",
            &[
                OTEL_EXPORTER_OTLP_TRACES_HEADERS,
                OTEL_EXPORTER_OTLP_HEADERS,
            ],
        );
        let (parsed, source) = self.pick(
            "headers",
            OTEL_EXPORTER_OTLP_TRACES_HEADERS,
            candidates,
            (Vec::new(), Vec::new()),
            |(headers, _): &(Vec<(String, String)>, Vec<String>)| show_header_names(headers),
            |raw, source| {
                let (headers, skipped) = parse_headers(raw);
                // An argument is deliberate even when it lists nothing (`headers={}`).
                if headers.is_empty() && !skipped.is_empty() && source != Source::Argument {
                    return Err(skipped.join(", "));
                }
                Ok((headers, skipped))
            },
            Shown::KeysOnly,
        );
        let (headers, skipped) = parsed;
        if !skipped.is_empty() {
            self.warn(format!(
                "{}: ignoring {}; using {}",
                source.setting_name("headers"),
                skipped.join(", "),
                describe_choice(&show_header_names(&headers), source)
            ));
        }
        headers
    }
}

/// `gzip from OTEL_EXPORTER_OTLP_COMPRESSION`, `5000ms, the default`.
fn describe_choice(shown: &str, source: Source) -> String {
    match source {
        Source::Default => format!("{shown}, the default"),
        _ => format!("{shown} from {source}"),
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn parse_millis(s: &str) -> Result<Duration, String> {
    let ms: u64 = s
        .parse()
        .map_err(|_| "expected a non-negative integer of milliseconds")?;
    Ok(Duration::from_millis(ms))
}

fn parse_positive_millis(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err("expected a positive integer of milliseconds".into()),
    }
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a positive integer".into()),
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        Ok(_) => Err("a ratio must be between 0 and 1".into()),
        Err(_) => Err("expected a number between 0 and 1".into()),
    }
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s.to_ascii_lowercase().as_str() {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "http/json" => Err("http/json is not supported; expected grpc or http/protobuf".into()),
        _ => Err("expected grpc or http/protobuf".into()),
    }
}

fn show_protocol(p: &Protocol) -> String {
    match p {
        Protocol::Grpc => "grpc".into(),
        Protocol::HttpProtobuf => "http/protobuf".into(),
    }
}

fn parse_compression(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "gzip" => Ok(true),
        "none" => Ok(false),
        _ => Err("expected gzip or none".into()),
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("truncated percent escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad percent escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent escapes are not UTF-8".into())
}

/// Parses the W3C-baggage-like `key=value,key2=value2` lists of `OTEL_RESOURCE_ATTRIBUTES`
/// and `OTEL_EXPORTER_OTLP_HEADERS` (values percent-decoded).
pub fn parse_key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} has no '='"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("{item:?} has an empty key"));
        }
        out.push((percent_decode(k)?, percent_decode(v.trim())?));
    }
    Ok(out)
}

fn show_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// An HTTP header name character (RFC 9110 `tchar`).
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// `key=value` entries as HTTP headers / gRPC metadata: names lower-cased and checked to be
/// header tokens, values percent-decoded and checked to be printable ASCII. Returns the good
/// entries, later duplicates replacing earlier ones, and a description of each skipped entry
/// (values never shown).
pub fn parse_headers(s: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut skipped = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            skipped.push(format!("{:?} (no '=')", item));
            continue;
        };
        let k = k.trim();
        let key = match percent_decode(k) {
            Ok(key) if !key.is_empty() && key.chars().all(is_token_char) => key,
            _ => {
                skipped.push(format!("{:?} (not a valid header name)", format!("{k}=…")));
                continue;
            }
        };
        let key = key.to_ascii_lowercase();
        match percent_decode(v.trim()) {
            Ok(value) if value.chars().all(|c| c == '\t' || (' '..='~').contains(&c)) => {
                headers.retain(|(k, _)| *k != key);
                headers.push((key, value));
            }
            Ok(_) => skipped.push(format!("{key} (value is not printable ASCII)")),
            Err(why) => skipped.push(format!("{key} (value: {why})")),
        }
    }
    (headers, skipped)
}

/// `a=1,b=2` → `a=…,b=…`: a header list as it may appear in a log.
fn hide_values(raw: &str) -> String {
    raw.split(',')
        .map(|item| match item.split_once('=') {
            Some((k, _)) => format!("{}=…", k.trim()),
            None => item.trim().to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn show_header_names(headers: &[(String, String)]) -> String {
    if headers.is_empty() {
        "no headers".into()
    } else {
        headers
            .iter()
            .map(|(k, _)| format!("{k}=…"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Checks `host[:port]` (the authority of a URL; `[v6]` addresses in brackets).
fn check_authority(authority: &str) -> Result<(), String> {
    if authority.is_empty() {
        return Err("the endpoint has no host".into());
    }
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(rest) = host_port.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs a closing ']'")?;
        if v6.is_empty() {
            return Err("the endpoint has no host".into());
        }
        match after {
            "" => (v6, None),
            _ => (
                v6,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("expected ':' and a port after ']'")?,
                ),
            ),
        }
    } else {
        match host_port.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err("an IPv6 address must be written in brackets, [::1]".into())
            }
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("the endpoint has no host".into());
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("the port {port:?} is not a number from 1 to 65535")),
        }
    }
    Ok(())
}

/// Checks an endpoint and returns it with an explicit scheme. `http://` and `https://` URLs are
/// accepted for both protocols; a gRPC endpoint may also be a bare `host:port` (the spec's "any
/// form the gRPC client accepts"), which becomes `http://` when `insecure`, else `https://`.
pub fn parse_endpoint(s: &str, protocol: Protocol, insecure: bool) -> Result<String, String> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("an endpoint cannot contain spaces or control characters".into());
    }
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None if protocol == Protocol::Grpc => {
            if s.contains(['/', '?', '#']) {
                return Err("expected host:port or a URL with http:// or https://".into());
            }
            check_authority(s).map_err(|why| {
                format!("{why}; expected host:port or a URL with http:// or https://")
            })?;
            let scheme = if insecure { "http" } else { "https" };
            return Ok(format!("{scheme}://{s}"));
        }
        None => return Err("an OTLP/HTTP endpoint needs a scheme, http:// or https://".into()),
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "unsupported scheme {scheme:?}; expected http:// or https://"
        ));
    }
    check_authority(rest.split(['/', '?', '#']).next().unwrap_or_default())?;
    Ok(format!("{scheme}://{rest}"))
}

/// The spec's per-signal URL for a base endpoint: `<base>/v1/traces` (no doubled slash).
pub fn signal_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

/// Which PEM blocks a TLS file must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PemKind {
    Certificate,
    PrivateKey,
}

/// Checks that `path` is a readable file holding a PEM block of `kind`; returns it absolute.
/// (The transport parses the blocks themselves; this catches the common mistakes early, with
/// the variable's name at hand.)
fn parse_pem_file(path: &str, kind: PemKind) -> Result<String, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let text = String::from_utf8_lossy(&text);
    let found = match kind {
        PemKind::Certificate => text.contains("-----BEGIN CERTIFICATE-----"),
        PemKind::PrivateKey => text
            .lines()
            .any(|l| l.starts_with("-----BEGIN ") && l.ends_with("PRIVATE KEY-----")),
    };
    if !found {
        return Err(match kind {
            PemKind::Certificate => "no PEM certificate in it (-----BEGIN CERTIFICATE-----)",
            PemKind::PrivateKey => "no PEM private key in it (-----BEGIN ... PRIVATE KEY-----)",
        }
        .into());
    }
    Ok(std::fs::canonicalize(path)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| path.to_owned()))
}

/// Resolves one TLS file setting (see [`parse_pem_file`]); `none` describes its absence.
fn pem_setting<E: Fn(&str) -> Option<String>>(
    r: &mut Resolver<'_, E>,
    key: &'static str,
    vars: &[&'static str],
    kind: PemKind,
    none: &str,
) -> Option<PemFile> {
    let (path, source) = r.get(
        key,
        vars,
        None,
        |p: &Option<String>| p.clone().unwrap_or_else(|| none.to_owned()),
        |s| parse_pem_file(s, kind).map(Some),
    );
    path.map(|path| PemFile { path, source, key })
}

impl Config {
    /// The default configuration (no arguments, empty environment).
    pub fn defaults() -> Config {
        Config::resolve(&HashMap::new(), |_| None).0
    }

    /// Resolves the configuration from `(variable, value)` environment pairs and
    /// `(keyword, value)` arguments instead of the process environment (tests, tools).
    pub fn from_pairs(env: &[(&str, &str)], args: &[(&str, &str)]) -> (Config, Vec<String>) {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::resolve(&args, move |k| env.get(k).cloned())
    }

    /// Resolves the configuration from keyword arguments and the process environment.
    pub fn from_env(arguments: &HashMap<String, String>) -> (Config, Vec<String>) {
        Config::resolve(arguments, |name| std::env::var(name).ok())
    }

    /// Resolves the configuration from keyword arguments and `env`; returns it with the
    /// warnings about bad values.
    pub fn resolve(
        arguments: &HashMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> (Config, Vec<String>) {
        let mut r = Resolver::new(arguments, env);
        let show_bool = |b: &bool| b.to_string();
        let show_ms = |d: &Duration| format!("{}ms", d.as_millis());
        let show_n = |n: &usize| n.to_string();

        let (disabled, _) = r.get(
            "disabled",
            &[OTEL_SDK_DISABLED],
            false,
            show_bool,
            parse_bool,
        );
        let (service_name, _) = r.get(
            "service_name",
            &[OTEL_SERVICE_NAME],
            None,
            |s: &Option<String>| {
                s.clone()
                    .unwrap_or_else(|| "unknown_service:<executable>".into())
            },
            |s| Ok(Some(s.to_owned())),
        );
        let (resource_attributes, _) = r.get(
            "resource_attributes",
            &[OTEL_RESOURCE_ATTRIBUTES],
            Vec::new(),
            |v| show_pairs(v),
            parse_key_values,
        );

        let (sampler_name, _) = r.get(
            "sampler",
            &[OTEL_TRACES_SAMPLER],
            "parentbased_always_on".to_owned(),
            String::clone,
            |s| {
                let s = s.to_ascii_lowercase();
                match s.as_str() {
                    "always_on"
                    | "always_off"
                    | "traceidratio"
                    | "parentbased_always_on"
                    | "parentbased_always_off"
                    | "parentbased_traceidratio" => Ok(s),
                    _ => Err("unknown sampler".into()),
                }
            },
        );
        let uses_ratio = sampler_name.ends_with("traceidratio");
        let ratio = if uses_ratio {
            r.get(
                "sampler_arg",
                &[OTEL_TRACES_SAMPLER_ARG],
                1.0,
                |f| f.to_string(),
                parse_ratio,
            )
            .0
        } else {
            1.0
        };
        let sampler = match sampler_name.as_str() {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::TraceIdRatio(ratio),
            "parentbased_always_off" => Sampler::ParentBased(RootSampler::AlwaysOff),
            "parentbased_traceidratio" => Sampler::ParentBased(RootSampler::TraceIdRatio(ratio)),
            _ => Sampler::ParentBased(RootSampler::AlwaysOn),
        };

        let (exporter, _) = r.get(
            "exporter",
            &[CALLSPAN_EXPORTER, OTEL_TRACES_EXPORTER],
            ExporterKind::Otlp,
            |e| format!("{e:?}").to_ascii_lowercase(),
            |s| {
                // The spec allows a comma-separated list; callspan ships to one exporter.
                let first = s
                    .split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                match first.as_str() {
                    "otlp" => Ok(ExporterKind::Otlp),
                    "console" => Ok(ExporterKind::Console),
                    "file" => Ok(ExporterKind::File),
                    "none" => Ok(ExporterKind::None),
                    _ => Err("expected otlp, console, file or none".into()),
                }
            },
        );
        let (file, _) = r.get(
            "file",
            &[CALLSPAN_FILE],
            "callspan-spans.jsonl".to_owned(),
            String::clone,
            |s| Ok(s.to_owned()),
        );

        let (protocol, _) = r.get(
            "protocol",
            &[
                OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
                OTEL_EXPORTER_OTLP_PROTOCOL,
            ],
            Protocol::Grpc,
            show_protocol,
            parse_protocol,
        );
        let (insecure, _) = r.get(
            "insecure",
            &[
                OTEL_EXPORTER_OTLP_TRACES_INSECURE,
                OTEL_EXPORTER_OTLP_INSECURE,
            ],
            false,
            show_bool,
            parse_bool,
        );
        let (endpoint, _) = r.endpoint(protocol, insecure);
        let headers = r.headers();
        let (gzip, _) = r.get(
            "compression",
            &[
                OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
                OTEL_EXPORTER_OTLP_COMPRESSION,
            ],
            false,
            |g| if *g { "gzip".into() } else { "none".into() },
            parse_compression,
        );
        let (otlp_timeout, _) = r.get(
            "timeout",
            &[
                OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
                OTEL_EXPORTER_OTLP_TIMEOUT,
            ],
            Duration::from_millis(10_000),
            show_ms,
            parse_positive_millis,
        );

        let mut certificate = pem_setting(
            &mut r,
            "certificate",
            &[
                OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
                OTEL_EXPORTER_OTLP_CERTIFICATE,
            ],
            PemKind::Certificate,
            "none (the system's trusted roots)",
        );
        let mut client_key = pem_setting(
            &mut r,
            "client_key",
            &[
                OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
                OTEL_EXPORTER_OTLP_CLIENT_KEY,
            ],
            PemKind::PrivateKey,
            "none (no client certificate)",
        );
        let mut client_certificate = pem_setting(
            &mut r,
            "client_certificate",
            &[
                OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
                OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
            ],
            PemKind::Certificate,
            "none (no client certificate)",
        );
        match (&client_key, &client_certificate) {
            (Some(one), None) | (None, Some(one)) => {
                let missing = if one.key == "client_key" {
                    "a client certificate (OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE)"
                } else {
                    "a client key (OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_KEY)"
                };
                r.warn(format!(
                    "{}: {:?} is set without {missing}; using no client certificate",
                    one.setting_name(),
                    one.path
                ));
                client_key = None;
                client_certificate = None;
            }
            _ => {}
        }
        if !endpoint.starts_with("https://") {
            let unused: Vec<String> = [&certificate, &client_key, &client_certificate]
                .into_iter()
                .flatten()
                .map(PemFile::setting_name)
                .collect();
            if !unused.is_empty() {
                r.warn(format!(
                    "{}: the endpoint {endpoint} does not use TLS (it is not https://), so {} \
                     not used",
                    unused.join(", "),
                    if unused.len() == 1 {
                        "it is"
                    } else {
                        "they are"
                    }
                ));
            }
            certificate = None;
            client_key = None;
            client_certificate = None;
        }

        let (schedule_delay, _) = r.get(
            "schedule_delay",
            &[OTEL_BSP_SCHEDULE_DELAY],
            Duration::from_millis(5_000),
            show_ms,
            parse_millis,
        );
        let (export_timeout, _) = r.get(
            "export_timeout",
            &[OTEL_BSP_EXPORT_TIMEOUT],
            Duration::from_millis(30_000),
            show_ms,
            // 0 would fail every export at once.
            parse_positive_millis,
        );
        let (max_queue_size, _) = r.get(
            "max_queue_size",
            &[OTEL_BSP_MAX_QUEUE_SIZE],
            2048,
            show_n,
            parse_positive,
        );
        let (mut max_export_batch_size, _) = r.get(
            "max_export_batch_size",
            &[OTEL_BSP_MAX_EXPORT_BATCH_SIZE],
            512,
            show_n,
            parse_positive,
        );
        if max_export_batch_size > max_queue_size {
            r.warn(format!(
                "{OTEL_BSP_MAX_EXPORT_BATCH_SIZE}: {max_export_batch_size} is larger than \
                 {OTEL_BSP_MAX_QUEUE_SIZE} ({max_queue_size}); using {max_queue_size}"
            ));
            max_export_batch_size = max_queue_size;
        }

        let (attribute_value_length_limit, _) = r.get(
            "attribute_value_length_limit",
            &[OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT],
            None,
            |l: &Option<usize>| l.map_or_else(|| "no limit".to_owned(), |n| n.to_string()),
            parse_limit,
        );
        let (span_attribute_count_limit, _) = r.get(
            "span_attribute_count_limit",
            &[OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT],
            Some(128),
            |l: &Option<usize>| l.map_or_else(String::new, |n| n.to_string()),
            parse_limit,
        );
        let (span_event_count_limit, _) = r.get(
            "span_event_count_limit",
            &[OTEL_SPAN_EVENT_COUNT_LIMIT],
            Some(128),
            |l: &Option<usize>| l.map_or_else(String::new, |n| n.to_string()),
            parse_limit,
        );
        let (sample_rules, _) = r.get(
            "sample",
            &[CALLSPAN_SAMPLE],
            Vec::new(),
            |rules: &Vec<SampleRule>| {
                if rules.is_empty() {
                    return "none (every function at rate 1)".to_owned();
                }
                let shown: Vec<String> = rules
                    .iter()
                    .map(|r| format!("{}={}", r.pattern, r.rate))
                    .collect();
                shown.join(",")
            },
            parse_sample_rules,
        );
        let (max_spans_per_second, _) = r.get(
            "max_spans_per_second",
            &[CALLSPAN_MAX_SPANS_PER_SECOND],
            0.0,
            |r: &f64| {
                if *r == 0.0 {
                    "0 (no limit)".to_owned()
                } else {
                    r.to_string()
                }
            },
            parse_rate_limit,
        );
        let (min_duration, _) = r.get(
            "min_duration",
            &[CALLSPAN_MIN_DURATION],
            Duration::ZERO,
            |d: &Duration| format!("{d:?}"),
            parse_duration_with_unit,
        );
        let (capture, _) = r.get(
            "capture",
            &[CALLSPAN_CAPTURE],
            Capture::ALL,
            Capture::to_string,
            parse_capture,
        );
        let (stack_depth, _) = r.get(
            "stack_depth",
            &[CALLSPAN_STACK_DEPTH],
            0,
            show_n,
            parse_stack_depth,
        );
        let (otel_context, _) = r.get(
            "otel_context",
            &[CALLSPAN_OTEL_CONTEXT],
            false,
            show_bool,
            parse_bool,
        );

        let config = Config {
            attribute_value_length_limit,
            span_attribute_count_limit: span_attribute_count_limit.unwrap_or(128),
            span_event_count_limit: span_event_count_limit.unwrap_or(128),
            sample_rules,
            max_spans_per_second,
            min_duration,
            capture,
            stack_depth,
            otel_context,
            disabled,
            service_name,
            resource_attributes,
            sampler,
            exporter,
            file,
            endpoint,
            protocol,
            insecure,
            headers,
            gzip,
            otlp_timeout,
            certificate,
            client_key,
            client_certificate,
            schedule_delay,
            export_timeout,
            max_queue_size,
            max_export_batch_size,
            effective: std::mem::take(&mut r.effective),
        };
        (config, r.warnings)
    }
}

#[cfg(test)]
mod callspan_knob_tests {
    use super::*;

    fn resolve(env: &[(&str, &str)]) -> (Config, Vec<String>) {
        Config::from_pairs(env, &[])
    }

    #[test]
    fn defaults() {
        let c = Config::defaults();
        assert_eq!(c.capture, Capture::ALL);
        assert_eq!(
            (c.stack_depth, c.min_duration, c.max_spans_per_second),
            (0, Duration::ZERO, 0.0)
        );
        assert_eq!(
            (c.span_attribute_count_limit, c.span_event_count_limit),
            (128, 128)
        );
        assert_eq!(c.attribute_value_length_limit, None);
        assert!(c.sample_rules.is_empty() && !c.otel_context);
    }

    #[test]
    fn sample_rules_first_match_wins() {
        let (c, w) = resolve(&[(
            CALLSPAN_SAMPLE,
            "imgpipe.apply_transform=0.01, imgpipe.*=0.1",
        )]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.sample_rate_for("imgpipe.apply_transform"), 0.01);
        assert_eq!(c.sample_rate_for("imgpipe.Rotator.rotate"), 0.1);
        assert_eq!(c.sample_rate_for("other.f"), 1.0);
        for bad in ["imgpipe.*", "=0.5", "a=2", "a=x"] {
            let (c, w) = resolve(&[(CALLSPAN_SAMPLE, bad)]);
            assert!(c.sample_rules.is_empty());
            assert!(
                w.len() == 1 && w[0].contains(CALLSPAN_SAMPLE) && w[0].contains(bad),
                "{w:?}"
            );
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("a.*", "a.b.c"));
        assert!(glob_match("*.apply_*", "m.C.apply_transform"));
        assert!(glob_match("a.?", "a.b"));
        assert!(!glob_match("a.?", "a.bc"));
        assert!(!glob_match("b.*", "a.b"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn durations_need_units() {
        let (c, w) = resolve(&[(CALLSPAN_MIN_DURATION, "250us")]);
        assert!(w.is_empty());
        assert_eq!(c.min_duration, Duration::from_micros(250));
        assert_eq!(
            parse_duration_with_unit("2ms").unwrap(),
            Duration::from_millis(2)
        );
        assert_eq!(
            parse_duration_with_unit("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_duration_with_unit("500ns").unwrap(),
            Duration::from_nanos(500)
        );
        for bad in ["250", "2 weeks", "-1ms", "ms"] {
            let (c, w) = resolve(&[(CALLSPAN_MIN_DURATION, bad)]);
            assert_eq!(c.min_duration, Duration::ZERO);
            assert!(w[0].contains(CALLSPAN_MIN_DURATION), "{w:?}");
        }
    }

    #[test]
    fn capture_lists() {
        let (c, _) = resolve(&[(CALLSPAN_CAPTURE, "function, LINE")]);
        assert_eq!(c.capture, Capture(Capture::FUNCTION | Capture::LINE));
        assert!(!c.capture.has(Capture::CLASS));
        let (c, _) = resolve(&[(CALLSPAN_CAPTURE, "none")]);
        assert!(!c.capture.needs_frame());
        let (c, w) = resolve(&[(CALLSPAN_CAPTURE, "function,stack")]);
        assert_eq!(c.capture, Capture::ALL);
        assert!(w[0].contains("stack"), "{w:?}");
        assert_eq!(
            Capture(Capture::FILE | Capture::THREAD).to_string(),
            "file,thread"
        );
    }

    #[test]
    fn limits_and_depth_and_rate() {
        let (c, w) = resolve(&[
            (OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, "64"),
            (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, "5"),
            (OTEL_SPAN_EVENT_COUNT_LIMIT, "0"),
            (CALLSPAN_STACK_DEPTH, "3"),
            (CALLSPAN_MAX_SPANS_PER_SECOND, "1000"),
            (CALLSPAN_OTEL_CONTEXT, "TRUE"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.attribute_value_length_limit, Some(64));
        assert_eq!(
            (c.span_attribute_count_limit, c.span_event_count_limit),
            (5, 0)
        );
        assert_eq!(
            (c.stack_depth, c.max_spans_per_second, c.otel_context),
            (3, 1000.0, true)
        );
        for (var, bad) in [
            (CALLSPAN_STACK_DEPTH, "65"),
            (CALLSPAN_STACK_DEPTH, "deep"),
            (CALLSPAN_MAX_SPANS_PER_SECOND, "-1"),
            (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, "many"),
            (CALLSPAN_OTEL_CONTEXT, "yes"),
        ] {
            let (_, w) = resolve(&[(var, bad)]);
            assert!(
                w.len() == 1 && w[0].contains(var) && w[0].contains(bad),
                "{var}: {w:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(env: &[(&str, &str)], args: &[(&str, &str)]) -> (Config, Vec<String>) {
        Config::from_pairs(env, args)
    }

    #[test]
    fn spec_defaults() {
        let (c, w) = resolve(&[], &[]);
        assert!(w.is_empty());
        assert_eq!(c.endpoint, "http://localhost:4317");
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.sampler, Sampler::ParentBased(RootSampler::AlwaysOn));
        assert_eq!(c.schedule_delay, Duration::from_millis(5000));
        assert_eq!(c.export_timeout, Duration::from_millis(30000));
        assert_eq!((c.max_queue_size, c.max_export_batch_size), (2048, 512));
        assert_eq!(c.exporter, ExporterKind::Otlp);
        assert!(!c.disabled);
    }

    #[test]
    fn precedence_argument_signal_generic() {
        let env = [
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://generic:4317"),
            (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "http://signal:4317"),
        ];
        assert_eq!(resolve(&env[..1], &[]).0.endpoint, "http://generic:4317");
        assert_eq!(resolve(&env, &[]).0.endpoint, "http://signal:4317");
        let (c, _) = resolve(&env, &[("endpoint", "http://arg:1")]);
        assert_eq!(c.endpoint, "http://arg:1");
    }

    #[test]
    fn empty_means_unset_and_enums_ignore_case() {
        let (c, w) = resolve(
            &[(OTEL_TRACES_SAMPLER, ""), (OTEL_TRACES_EXPORTER, "Console")],
            &[],
        );
        assert!(w.is_empty());
        assert_eq!(c.sampler, Sampler::ParentBased(RootSampler::AlwaysOn));
        assert_eq!(c.exporter, ExporterKind::Console);
    }

    #[test]
    fn bad_values_warn_with_name_value_and_fallback() {
        let (c, w) = resolve(
            &[
                (OTEL_BSP_SCHEDULE_DELAY, "soon"),
                (OTEL_TRACES_SAMPLER, "sometimes"),
            ],
            &[],
        );
        assert_eq!(c.schedule_delay, Duration::from_millis(5000));
        assert_eq!(w.len(), 2);
        assert!(
            w[0].contains(OTEL_TRACES_SAMPLER) && w[0].contains("sometimes"),
            "{w:?}"
        );
        assert!(
            w[1].contains(OTEL_BSP_SCHEDULE_DELAY) && w[1].contains("5000ms"),
            "{w:?}"
        );
        // An export timeout of 0 would fail every export: warned about, default used.
        let (c, w) = resolve(&[(OTEL_BSP_EXPORT_TIMEOUT, "0")], &[]);
        assert_eq!(c.export_timeout, Duration::from_millis(30000));
        assert!(
            w.len() == 1 && w[0].contains(OTEL_BSP_EXPORT_TIMEOUT),
            "{w:?}"
        );
    }

    #[test]
    fn ratio_sampler_and_bad_ratio() {
        let (c, w) = resolve(
            &[
                (OTEL_TRACES_SAMPLER, "traceidratio"),
                (OTEL_TRACES_SAMPLER_ARG, "0.25"),
            ],
            &[],
        );
        assert!(w.is_empty());
        assert_eq!(c.sampler, Sampler::TraceIdRatio(0.25));
        let (c, w) = resolve(
            &[
                (OTEL_TRACES_SAMPLER, "traceidratio"),
                (OTEL_TRACES_SAMPLER_ARG, "1.5"),
            ],
            &[],
        );
        assert_eq!(c.sampler, Sampler::TraceIdRatio(1.0));
        assert!(w[0].contains(OTEL_TRACES_SAMPLER_ARG), "{w:?}");
    }

    #[test]
    fn batch_larger_than_queue_is_capped() {
        let (c, w) = resolve(
            &[
                (OTEL_BSP_MAX_QUEUE_SIZE, "100"),
                (OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "200"),
            ],
            &[],
        );
        assert_eq!(c.max_export_batch_size, 100);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn key_values_are_percent_decoded() {
        let kv = parse_key_values("service.version=1.2,team=img%20pipe").unwrap();
        assert_eq!(kv[1], ("team".into(), "img pipe".into()));
        assert!(parse_key_values("novalue").is_err());
        assert!(parse_key_values("=x").is_err());
        let (c, w) = resolve(&[(OTEL_RESOURCE_ATTRIBUTES, "a=1,broken")], &[]);
        assert!(c.resource_attributes.is_empty());
        assert!(w[0].contains(OTEL_RESOURCE_ATTRIBUTES));
    }

    #[test]
    fn invalid_signal_value_falls_back_to_the_generic_variable() {
        // The spec: a value that cannot be used is ignored, i.e. treated as not set.
        let (c, w) = resolve(
            &[
                (OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, "brotli"),
                (OTEL_EXPORTER_OTLP_COMPRESSION, "GZIP"),
                (OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, "2s"),
                (OTEL_EXPORTER_OTLP_TIMEOUT, "2500"),
            ],
            &[],
        );
        assert!(c.gzip);
        assert_eq!(c.otlp_timeout, Duration::from_millis(2500));
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(
            w[0],
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: invalid value \"brotli\" (expected gzip or \
             none); using gzip from OTEL_EXPORTER_OTLP_COMPRESSION"
        );
        assert!(
            w[1].starts_with("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: invalid value \"2s\"")
                && w[1].ends_with("using 2500ms from OTEL_EXPORTER_OTLP_TIMEOUT"),
            "{w:?}"
        );
        // Both bad: two warnings, each naming what is finally used.
        let (c, w) = resolve(
            &[
                (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "http/json"),
                (OTEL_EXPORTER_OTLP_PROTOCOL, "thrift"),
            ],
            &[],
        );
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("http/json is not supported"), "{w:?}");
        assert!(w[1].contains("\"thrift\"") && w[1].ends_with("using grpc, the default"));
    }

    #[test]
    fn otlp_settings_signal_beats_generic_and_argument_beats_both() {
        let env = [
            (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
            (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "http/protobuf"),
            (OTEL_EXPORTER_OTLP_HEADERS, "x-generic=1"),
            (OTEL_EXPORTER_OTLP_TRACES_HEADERS, "x-signal=2"),
            (OTEL_EXPORTER_OTLP_COMPRESSION, "none"),
            (OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, "gzip"),
            (OTEL_EXPORTER_OTLP_TIMEOUT, "1000"),
            (OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, "2000"),
            (OTEL_EXPORTER_OTLP_INSECURE, "false"),
            (OTEL_EXPORTER_OTLP_TRACES_INSECURE, "true"),
        ];
        let (c, w) = resolve(&env, &[]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.headers, vec![("x-signal".into(), "2".into())]);
        assert!(c.gzip);
        assert_eq!(c.otlp_timeout, Duration::from_millis(2000));
        assert!(c.insecure);
        let (c, w) = resolve(
            &env,
            &[
                ("protocol", "grpc"),
                ("headers", "x-arg=3"),
                ("compression", "none"),
                ("timeout", "3000"),
                ("insecure", "false"),
            ],
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.headers, vec![("x-arg".into(), "3".into())]);
        assert!(!c.gzip);
        assert_eq!(c.otlp_timeout, Duration::from_millis(3000));
        assert!(!c.insecure);
        // The effective table names the source of each value.
        let row = |name: &str| c.effective.iter().find(|r| r.0 == name).cloned().unwrap();
        assert_eq!(row(OTEL_EXPORTER_OTLP_TRACES_TIMEOUT).2, Source::Argument);
        // An empty argument is deliberate: `headers={}` sends none, whatever the environment says.
        let (c, _) = resolve(&env, &[("headers", "")]);
        assert!(c.headers.is_empty());
    }

    #[test]
    fn http_endpoints_generic_is_a_base_signal_and_argument_are_used_as_given() {
        let http = (OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf");
        assert_eq!(
            resolve(&[http], &[]).0.endpoint,
            "http://localhost:4318/v1/traces"
        );
        for (base, url) in [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            ("https://gw/otlp/", "https://gw/otlp/v1/traces"),
        ] {
            let (c, w) = resolve(&[http, (OTEL_EXPORTER_OTLP_ENDPOINT, base)], &[]);
            assert!(w.is_empty(), "{w:?}");
            assert_eq!(c.endpoint, url);
        }
        let signal = (
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
            "http://collector:4318/custom",
        );
        let (c, _) = resolve(
            &[http, signal, (OTEL_EXPORTER_OTLP_ENDPOINT, "http://x")],
            &[],
        );
        assert_eq!(c.endpoint, "http://collector:4318/custom");
        let (c, _) = resolve(&[http, signal], &[("endpoint", "http://arg:1/in")]);
        assert_eq!(c.endpoint, "http://arg:1/in");
        // gRPC never appends a path.
        let (c, _) = resolve(
            &[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4317")],
            &[],
        );
        assert_eq!(c.endpoint, "http://collector:4317");
    }

    #[test]
    fn grpc_endpoint_without_scheme_takes_it_from_insecure() {
        let bare = (OTEL_EXPORTER_OTLP_ENDPOINT, "collector:4317");
        let (c, w) = resolve(&[bare], &[]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.endpoint, "https://collector:4317");
        let (c, _) = resolve(&[bare, (OTEL_EXPORTER_OTLP_INSECURE, "TRUE")], &[]);
        assert_eq!(c.endpoint, "http://collector:4317");
        // A scheme wins over INSECURE.
        let (c, _) = resolve(
            &[
                (OTEL_EXPORTER_OTLP_ENDPOINT, "https://collector:4317"),
                (OTEL_EXPORTER_OTLP_INSECURE, "true"),
            ],
            &[],
        );
        assert_eq!(c.endpoint, "https://collector:4317");
        let (c, _) = resolve(&[], &[("endpoint", "[::1]:4317"), ("insecure", "true")]);
        assert_eq!(c.endpoint, "http://[::1]:4317");
        // OTLP/HTTP needs the scheme: warned, then the default.
        let (c, w) = resolve(&[bare, (OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf")], &[]);
        assert_eq!(c.endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(
            w,
            vec![
                "OTEL_EXPORTER_OTLP_ENDPOINT: invalid value \"collector:4317\" (an OTLP/HTTP \
                 endpoint needs a scheme, http:// or https://); using \
                 http://localhost:4318/v1/traces, the default"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn bad_endpoints_warn_and_fall_back() {
        for (bad, why) in [
            ("ftp://collector:21", "unsupported scheme"),
            ("http://", "no host"),
            ("http://:4317", "no host"),
            ("http://collector:99999", "not a number from 1 to 65535"),
            ("http://collector:grpc", "not a number"),
            ("http://coll ector:4317", "spaces"),
            ("::1:4317", "brackets"),
            ("collector:", "not a number"),
            ("collector/v1/traces", "expected host:port"),
        ] {
            let (c, w) = resolve(
                &[
                    (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, bad),
                    (OTEL_EXPORTER_OTLP_ENDPOINT, "http://fallback:4317"),
                ],
                &[],
            );
            assert_eq!(c.endpoint, "http://fallback:4317", "{bad}");
            assert_eq!(w.len(), 1, "{bad}: {w:?}");
            assert!(
                w[0].starts_with(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
                    && w[0].contains(&format!("{bad:?}"))
                    && w[0].contains(why)
                    && w[0]
                        .ends_with("using http://fallback:4317 from OTEL_EXPORTER_OTLP_ENDPOINT"),
                "{bad}: {w:?}"
            );
        }
        // A bad argument names the keyword.
        let (_, w) = resolve(&[], &[("endpoint", "http//nowhere")]);
        assert!(
            w[0].starts_with("callspan.configure(endpoint=...): invalid value \"http//nowhere\""),
            "{w:?}"
        );
    }

    #[test]
    fn headers_are_checked_entry_by_entry_and_values_stay_out_of_warnings() {
        let (c, w) = resolve(
            &[(
                OTEL_EXPORTER_OTLP_HEADERS,
                "Authorization=Bearer%20s3cret, broken ,x-tenant=img,bad key=v,x-utf=%C3%A9,\
                 x-tenant=imaging",
            )],
            &[],
        );
        assert_eq!(
            c.headers,
            vec![
                ("authorization".into(), "Bearer s3cret".into()),
                ("x-tenant".into(), "imaging".into())
            ]
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("OTEL_EXPORTER_OTLP_HEADERS: ignoring "),
            "{w:?}"
        );
        for part in [
            "\"broken\" (no '=')",
            "bad key",
            "x-utf (value is not printable ASCII)",
        ] {
            assert!(w[0].contains(part), "{part}: {w:?}");
        }
        assert!(w[0].ends_with("using authorization=…,x-tenant=… from OTEL_EXPORTER_OTLP_HEADERS"));
        assert!(!w[0].contains("s3cret"), "{w:?}");
        // No usable entry at all: the variable counts as not set, the generic one applies.
        let (c, w) = resolve(
            &[
                (
                    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
                    "token=s3cret=x\u{7},junk",
                ),
                (OTEL_EXPORTER_OTLP_HEADERS, "x-tenant=img"),
            ],
            &[],
        );
        assert_eq!(c.headers, vec![("x-tenant".into(), "img".into())]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("OTEL_EXPORTER_OTLP_TRACES_HEADERS: invalid value \"token=…,junk\""),
            "{w:?}"
        );
        assert!(!w[0].contains("s3cret"), "{w:?}");
        // The configuration table hides values too.
        let row = c
            .effective
            .iter()
            .find(|r| r.0 == OTEL_EXPORTER_OTLP_TRACES_HEADERS);
        assert_eq!(row.unwrap().1, "x-tenant=…");
    }

    #[test]
    fn otlp_timeout_must_be_a_positive_integer() {
        for bad in ["0", "-5", "1.5", "10s", "ten"] {
            let (c, w) = resolve(&[(OTEL_EXPORTER_OTLP_TIMEOUT, bad)], &[]);
            assert_eq!(c.otlp_timeout, Duration::from_millis(10_000), "{bad}");
            assert!(
                w[0].contains(&format!("{bad:?}")) && w[0].ends_with("using 10000ms, the default"),
                "{w:?}"
            );
        }
        let (c, w) = resolve(&[(OTEL_EXPORTER_OTLP_TIMEOUT, " 250 ")], &[]);
        assert!(w.is_empty());
        assert_eq!(c.otlp_timeout, Duration::from_millis(250));
    }

    #[test]
    fn insecure_is_a_boolean() {
        let (c, w) = resolve(&[(OTEL_EXPORTER_OTLP_INSECURE, "yes")], &[]);
        assert!(!c.insecure);
        assert!(w[0].contains("OTEL_EXPORTER_OTLP_INSECURE: invalid value \"yes\""));
    }

    /// A scratch directory with a CA certificate, a client certificate and key, and junk.
    struct TlsFiles {
        dir: std::path::PathBuf,
    }

    impl TlsFiles {
        fn new(name: &str) -> TlsFiles {
            let dir =
                std::env::temp_dir().join(format!("callspan-config-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
            let key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
            std::fs::write(dir.join("ca.pem"), cert).unwrap();
            std::fs::write(dir.join("client.pem"), cert).unwrap();
            std::fs::write(dir.join("client.key"), key).unwrap();
            std::fs::write(dir.join("junk.pem"), "not pem").unwrap();
            TlsFiles { dir }
        }

        fn path(&self, name: &str) -> String {
            self.dir.join(name).to_string_lossy().into_owned()
        }
    }

    impl Drop for TlsFiles {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn tls_files_resolve_with_precedence_and_only_for_https() {
        let files = TlsFiles::new("precedence");
        let https = (OTEL_EXPORTER_OTLP_ENDPOINT, "https://collector:4317");
        let (ca, client, key) = (
            files.path("ca.pem"),
            files.path("client.pem"),
            files.path("client.key"),
        );
        let env = [
            https,
            (OTEL_EXPORTER_OTLP_CERTIFICATE, client.as_str()),
            (OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, ca.as_str()),
            (OTEL_EXPORTER_OTLP_CLIENT_KEY, key.as_str()),
            (
                OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
                client.as_str(),
            ),
        ];
        let (c, w) = resolve(&env, &[]);
        assert!(w.is_empty(), "{w:?}");
        let certificate = c.certificate.clone().unwrap();
        assert_eq!(certificate.path, ca);
        assert_eq!(
            certificate.source,
            Source::Env(OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE)
        );
        assert_eq!(c.client_key.unwrap().path, key);
        assert_eq!(c.client_certificate.unwrap().path, client);
        let (c, _) = resolve(&env, &[("certificate", &client)]);
        assert_eq!(c.certificate.unwrap().source, Source::Argument);
        // With a plain-text endpoint they are not used, and that is said once.
        let mut plain = env;
        plain[0] = (OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4317");
        let (c, w) = resolve(&plain, &[]);
        assert!(c.certificate.is_none() && c.client_key.is_none());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("does not use TLS") && w[0].contains(OTEL_EXPORTER_OTLP_CLIENT_KEY),
            "{w:?}"
        );
    }

    #[test]
    fn unreadable_or_wrong_tls_files_warn_and_fall_back() {
        let files = TlsFiles::new("bad");
        let https = (OTEL_EXPORTER_OTLP_ENDPOINT, "https://collector:4317");
        let missing = files.path("missing.pem");
        let (c, w) = resolve(&[https, (OTEL_EXPORTER_OTLP_CERTIFICATE, &missing)], &[]);
        assert!(c.certificate.is_none());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(&format!(
                "OTEL_EXPORTER_OTLP_CERTIFICATE: invalid value {missing:?} (cannot read it: "
            )) && w[0].ends_with("using none (the system's trusted roots), the default"),
            "{w:?}"
        );
        // A directory, and a file with no PEM block; the signal variable falls back to the
        // generic one.
        let ca = files.path("ca.pem");
        let (c, w) = resolve(
            &[
                https,
                (
                    OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
                    &files.path("junk.pem"),
                ),
                (OTEL_EXPORTER_OTLP_CERTIFICATE, &ca),
                (OTEL_EXPORTER_OTLP_CLIENT_KEY, &files.path("ca.pem")),
                (
                    OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
                    files.dir.to_str().unwrap(),
                ),
            ],
            &[],
        );
        assert_eq!(c.certificate.unwrap().path, ca);
        assert!(c.client_key.is_none() && c.client_certificate.is_none());
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("no PEM certificate in it"), "{w:?}");
        assert!(w[1].contains("no PEM private key in it"), "{w:?}");
        assert!(
            w[2].starts_with(OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)
                && w[2].contains("cannot read it"),
            "{w:?}"
        );
    }

    #[test]
    fn a_client_key_needs_its_certificate() {
        let files = TlsFiles::new("pair");
        let key = files.path("client.key");
        let (c, w) = resolve(
            &[
                (OTEL_EXPORTER_OTLP_ENDPOINT, "https://collector:4317"),
                (OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY, &key),
            ],
            &[],
        );
        assert!(c.client_key.is_none() && c.client_certificate.is_none());
        assert_eq!(
            w,
            vec![format!(
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY: {key:?} is set without a client \
                 certificate (OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE); using no client \
                 certificate"
            )]
        );
    }
}
