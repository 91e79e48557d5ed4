//! Resolution: for each row of the table, the first usable value in precedence order — a
//! `callspan.configure()` keyword argument > the signal-specific variable > the generic
//! variable > the default — coded once, in [`Resolver`]. A value that cannot be used produces
//! one warning naming the variable, the value and what is used instead, and then counts as not
//! set (the spec's "gracefully ignore"), so the next source applies.

use super::parse::*;
use super::table::{self, DefaultValue, OtlpRows, Setting, Signal};
use super::values::{
    Config, ExporterKind, MetricsExporterKind, OtlpSettings, PemFile, Protocol, SampleRule, Source,
};
use super::variables::{
    CALLSPAN_MAX_QUEUE_BYTES, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT_GRPC_DEFAULT,
    OTEL_EXPORTER_OTLP_ENDPOINT_HTTP_DEFAULT,
};
use crate::sampler::{RootSampler, Sampler};
use std::collections::HashMap;
use std::time::Duration;

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

    /// Every raw value of a setting, in precedence order: its keyword argument (trimmed, kept
    /// even when empty: an argument is always deliberate), then each non-empty variable.
    fn candidates(&self, row: &Setting) -> Vec<(String, Source)> {
        let mut out = Vec::new();
        if let Some(v) = row.keyword.and_then(|k| self.arguments.get(k)) {
            out.push((v.trim().to_owned(), Source::Argument));
        }
        for var in row.variables {
            if let Some(v) = self.env_value(var) {
                out.push((v, Source::Env(var)));
            }
        }
        out
    }

    /// Resolves a setting whose default is a value ([`DefaultValue::Value`], parsed with the
    /// same `parse`): the first candidate `parse` accepts wins; each one it rejects before that
    /// warns and is treated as not set.
    fn get<T: Clone>(
        &mut self,
        row: &'static Setting,
        show: impl Fn(&T) -> String,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        self.get_sourced(row, show, parse).0
    }

    /// [`Self::get`], also telling where the value came from.
    fn get_sourced<T: Clone>(
        &mut self,
        row: &'static Setting,
        show: impl Fn(&T) -> String,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> (T, Source) {
        // The table's defaults are constants, each resolved by a unit test
        // (`every_default_parses`): failing here is a bug in the table, not a user's mistake.
        let default = match row.default {
            DefaultValue::Value(text) => parse(text).unwrap_or_else(|why| {
                panic!(
                    "the default {text:?} of {} does not parse: {why}",
                    row.name()
                )
            }),
            other => panic!("{} has no default value ({other:?})", row.name()),
        };
        let candidates = self.candidates(row);
        self.pick(
            row,
            candidates,
            default,
            show,
            |raw, _| parse(raw),
            Shown::AsGiven,
        )
    }

    /// Resolves a setting whose default is its absence ([`DefaultValue::Absent`], shown as the
    /// table says).
    fn get_optional<T: Clone>(
        &mut self,
        row: &'static Setting,
        show: impl Fn(&T) -> String,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> (Option<T>, Source) {
        let candidates = self.candidates(row);
        self.pick(
            row,
            candidates,
            None,
            |v: &Option<T>| {
                v.as_ref()
                    .map_or_else(|| row.default.text().into_owned(), &show)
            },
            |raw, _| parse(raw).map(Some),
            Shown::AsGiven,
        )
    }

    /// The heart of [`Resolver::get`], over explicit candidates; `parse` also sees the source.
    fn pick<T: Clone>(
        &mut self,
        row: &'static Setting,
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
                bad.setting_name(row.key())
            ));
        }
        self.effective.push((row.name(), show(&value), source));
        (value, source)
    }

    fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }

    /// A signal's endpoint. The argument and the signal's variable are used as given; the
    /// generic `OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL to which OTLP/HTTP appends the
    /// signal's path. A gRPC endpoint without a scheme takes one from `insecure`.
    fn endpoint(&mut self, signal: Signal, protocol: Protocol, insecure: bool) -> String {
        let default = match protocol {
            Protocol::Grpc => OTEL_EXPORTER_OTLP_ENDPOINT_GRPC_DEFAULT.to_owned(),
            Protocol::HttpProtobuf => signal_url(OTEL_EXPORTER_OTLP_ENDPOINT_HTTP_DEFAULT, signal),
        };
        let row = &signal.rows().endpoint;
        let candidates = self.candidates(row);
        self.pick(
            row,
            candidates,
            default,
            String::clone,
            |raw, source| {
                let url = parse_endpoint(raw, protocol, insecure)?;
                let is_base = source == Source::Env(OTEL_EXPORTER_OTLP_ENDPOINT);
                Ok(if is_base && protocol == Protocol::HttpProtobuf {
                    signal_url(&url, signal)
                } else {
                    url
                })
            },
            Shown::AsGiven,
        )
        .0
    }

    /// The export headers. Malformed entries are skipped with one warning for the variable (the
    /// rest of it is kept); a variable with no usable entry is treated as not set. Warnings never
    /// show header values: they are often credentials.
    fn headers(&mut self, row: &'static Setting) -> Vec<(String, String)> {
        let candidates = self.candidates(row);
        let (parsed, source) = self.pick(
            row,
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
                source.setting_name(row.key()),
                skipped.join(", "),
                describe_choice(&show_header_names(&headers), source)
            ));
        }
        headers
    }

    /// The traces exporters (see [`parse_exporters`]).
    fn exporters(&mut self) -> Vec<ExporterKind> {
        self.exporter_list(
            &table::EXPORTER,
            parse_exporters,
            ExporterKind::name,
            "otlp, console and file",
        )
    }

    /// The metrics exporters (see [`parse_metrics_exporters`]).
    fn metrics_exporters(&mut self) -> Vec<MetricsExporterKind> {
        self.exporter_list(
            &table::METRICS_EXPORTER,
            parse_metrics_exporters,
            MetricsExporterKind::name,
            "otlp and console",
        )
    }

    /// A list of exporters (`names` says which there are): entries left out of the list are
    /// said in one warning naming the setting, the rest of the list is used.
    fn exporter_list<K: Copy>(
        &mut self,
        row: &'static Setting,
        parse: fn(&str) -> Result<ExporterList<K>, String>,
        name: fn(K) -> &'static str,
        names: &str,
    ) -> Vec<K> {
        let show = |exporters: &[K]| -> String {
            if exporters.is_empty() {
                return "none".into();
            }
            exporters
                .iter()
                .map(|&e| name(e))
                .collect::<Vec<_>>()
                .join(",")
        };
        let ((exporters, left_out), source) =
            self.get_sourced(row, |(e, _): &ExporterList<K>| show(e), parse);
        if !left_out.is_empty() {
            self.warn(format!(
                "{}: ignoring {} (the exporters are {names}, and none means none of them, \
                 alone); using {}",
                source.setting_name(row.key()),
                left_out.join(", "),
                show(&exporters)
            ));
        }
        exporters
    }

    /// One TLS file setting (see [`parse_pem_file`]).
    fn pem_file(&mut self, row: &'static Setting, kind: PemKind) -> Option<PemFile> {
        let (path, source) = self.get_optional(row, String::clone, |s| parse_pem_file(s, kind));
        path.map(|path| PemFile {
            path,
            source,
            key: row.key(),
        })
    }

    /// A signal's OTLP settings, each from its own variable, then the generic one, then the
    /// default (and for traces first from `callspan.configure()`).
    fn otlp(&mut self, signal: Signal) -> OtlpSettings {
        let rows: &'static OtlpRows = signal.rows();
        let show_bool = |b: &bool| b.to_string();
        let protocol = self.get(&rows.protocol, show_protocol, parse_protocol);
        let insecure = self.get(&rows.insecure, show_bool, parse_bool);
        let endpoint = self.endpoint(signal, protocol, insecure);
        let headers = self.headers(&rows.headers);
        let gzip = self.get(
            &rows.compression,
            |g| if *g { "gzip".into() } else { "none".into() },
            parse_compression,
        );
        let timeout = self.get(&rows.timeout, show_ms, parse_positive_millis);
        let mut certificate = self.pem_file(&rows.certificate, PemKind::Certificate);
        let mut client_key = self.pem_file(&rows.client_key, PemKind::PrivateKey);
        let mut client_certificate = self.pem_file(&rows.client_certificate, PemKind::Certificate);
        let signal_variable = |what: &str| {
            format!(
                "OTEL_EXPORTER_OTLP_[{}_]{what}",
                signal.name().to_ascii_uppercase()
            )
        };
        let lone = match (&client_key, &client_certificate) {
            (Some(key), None) => Some((key, "a client certificate", "CLIENT_CERTIFICATE")),
            (None, Some(cert)) => Some((cert, "a client key", "CLIENT_KEY")),
            _ => None,
        };
        if let Some((one, missing, variable)) = lone {
            let message = format!(
                "{}: {:?} is set without {missing} ({}); using no client certificate",
                one.setting_name(),
                one.path,
                signal_variable(variable)
            );
            self.warn(message);
            client_key = None;
            client_certificate = None;
        }
        if !endpoint.starts_with("https://") {
            let unused: Vec<String> = [&certificate, &client_key, &client_certificate]
                .into_iter()
                .flatten()
                .map(PemFile::setting_name)
                .collect();
            if !unused.is_empty() {
                self.warn(format!(
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
        OtlpSettings {
            signal,
            endpoint,
            protocol,
            insecure,
            headers,
            gzip,
            timeout,
            certificate,
            client_key,
            client_certificate,
        }
    }
}

/// `gzip from OTEL_EXPORTER_OTLP_COMPRESSION`, `5000ms, the default`.
fn describe_choice(shown: &str, source: Source) -> String {
    match source {
        Source::Default => format!("{shown}, the default"),
        _ => format!("{shown} from {source}"),
    }
}

/// What a warning is about: the setting names before its first `": "`.
fn subject(warning: &str) -> &str {
    warning.split_once(": ").map_or(warning, |(s, _)| s)
}

fn show_ms(d: &Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn show_protocol(p: &Protocol) -> String {
    match p {
        Protocol::Grpc => "grpc".into(),
        Protocol::HttpProtobuf => "http/protobuf".into(),
    }
}

fn show_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
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
    #[allow(
        clippy::disallowed_methods,
        reason = "the configuration module is the one place the environment is read"
    )]
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
        let show_n = |n: &usize| n.to_string();

        let disabled = r.get(&table::DISABLED, show_bool, parse_bool);
        let (service_name, _) =
            r.get_optional(&table::SERVICE_NAME, String::clone, |s| Ok(s.to_owned()));
        let resource_attributes = r.get(
            &table::RESOURCE_ATTRIBUTES,
            |v| show_pairs(v),
            parse_key_values,
        );

        let sampler_name = r.get(&table::SAMPLER, String::clone, parse_sampler_name);
        // The ratio is only read (and only warned about) for a sampler that uses it.
        let mut ratio = || r.get(&table::SAMPLER_ARG, |f| f.to_string(), parse_ratio);
        let sampler = match sampler_name.as_str() {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::TraceIdRatio(ratio()),
            "parentbased_always_off" => Sampler::ParentBased(RootSampler::AlwaysOff),
            "parentbased_traceidratio" => Sampler::ParentBased(RootSampler::TraceIdRatio(ratio())),
            _ => Sampler::ParentBased(RootSampler::AlwaysOn),
        };

        let exporters = r.exporters();
        let file = r.get(&table::FILE, String::clone, |s| Ok(s.to_owned()));
        let traces = r.otlp(Signal::Traces);

        let schedule_delay = r.get(&table::SCHEDULE_DELAY, show_ms, parse_millis);
        // 0 would fail every export at once.
        let export_timeout = r.get(&table::EXPORT_TIMEOUT, show_ms, parse_positive_millis);
        let (queue_spans, _) = r.get_optional(&table::MAX_QUEUE_SIZE, show_n, parse_positive);
        let (max_queue_bytes, bytes_source) = r.get_sourced(
            &table::MAX_QUEUE_BYTES,
            |b| format!("{b} ({} spans)", queue_capacity(None, *b, true)),
            parse_positive,
        );
        let max_queue_size = queue_capacity(
            queue_spans,
            max_queue_bytes,
            bytes_source != Source::Default,
        );
        let mut max_export_batch_size =
            r.get(&table::MAX_EXPORT_BATCH_SIZE, show_n, parse_positive);
        if max_export_batch_size > max_queue_size {
            let queue = if queue_spans == Some(max_queue_size) {
                OTEL_BSP_MAX_QUEUE_SIZE
            } else {
                CALLSPAN_MAX_QUEUE_BYTES
            };
            r.warn(format!(
                "{OTEL_BSP_MAX_EXPORT_BATCH_SIZE}: {max_export_batch_size} is larger than \
                 the queue ({max_queue_size} spans, set by {queue}); using {max_queue_size}"
            ));
            max_export_batch_size = max_queue_size;
        }

        let (attribute_value_length_limit, _) =
            r.get_optional(&table::ATTRIBUTE_VALUE_LENGTH_LIMIT, show_n, parse_count);
        let span_attribute_count_limit =
            r.get(&table::SPAN_ATTRIBUTE_COUNT_LIMIT, show_n, parse_count);
        let span_event_count_limit = r.get(&table::SPAN_EVENT_COUNT_LIMIT, show_n, parse_count);
        let (sample_rules, _) = r.get_optional(
            &table::SAMPLE,
            |rules: &Vec<SampleRule>| {
                let shown: Vec<String> = rules
                    .iter()
                    .map(|r| format!("{}={}", r.pattern, r.rate))
                    .collect();
                shown.join(",")
            },
            parse_sample_rules,
        );
        let max_spans_per_second = r.get(
            &table::MAX_SPANS_PER_SECOND,
            |r: &f64| {
                if *r == 0.0 {
                    "0 (no limit)".to_owned()
                } else {
                    r.to_string()
                }
            },
            parse_rate_limit,
        );
        let min_duration = r.get(
            &table::MIN_DURATION,
            |d: &Duration| format!("{d:?}"),
            parse_duration_with_unit,
        );
        let capture = r.get(&table::CAPTURE, |c| c.to_string(), parse_capture);
        let stack_depth = r.get(&table::STACK_DEPTH, show_n, parse_stack_depth);
        let exporter_nice = r.get(&table::EXPORTER_NICE, |n| n.to_string(), parse_nice);
        let otel_context = r.get(&table::OTEL_CONTEXT, show_bool, parse_bool);

        let metrics_exporters = r.metrics_exporters();
        // 0 would export without pause.
        let metric_export_interval = r.get(
            &table::METRIC_EXPORT_INTERVAL,
            show_ms,
            parse_positive_millis,
        );
        let metric_export_timeout = r.get(
            &table::METRIC_EXPORT_TIMEOUT,
            show_ms,
            parse_positive_millis,
        );
        let metrics_temporality = r.get(
            &table::METRICS_TEMPORALITY,
            |t| format!("{t:?}").to_ascii_lowercase(),
            parse_temporality,
        );
        let max_edges = r.get(&table::MAX_EDGES, show_n, parse_positive);
        let (report, _) = r.get_optional(&table::REPORT, String::clone, |s| Ok(s.to_owned()));
        // What is wrong with a metrics variable is said now; what is wrong for metrics only
        // because of a generic variable (which the traces may not even read: a keyword or a
        // TRACES_ variable wins) waits until metrics are exported, so that users of traces
        // alone see what they saw before metrics existed.
        let before = r.warnings.len();
        let metrics = r.otlp(Signal::Metrics);
        let (said, mut metrics_warnings): (Vec<String>, Vec<String>) = r
            .warnings
            .drain(before..)
            .partition(|w| subject(w).contains("_METRICS_"));
        // A generic variable's problem already said for the traces is not said again.
        metrics_warnings.retain(|m| !r.warnings.iter().any(|w| subject(w) == subject(m)));
        r.warnings.extend(said);

        let config = Config {
            disabled,
            service_name,
            resource_attributes,
            sampler,
            exporters,
            file,
            traces,
            schedule_delay,
            export_timeout,
            max_queue_size,
            max_queue_bytes,
            max_export_batch_size,
            attribute_value_length_limit,
            span_attribute_count_limit,
            span_event_count_limit,
            sample_rules: sample_rules.unwrap_or_default(),
            max_spans_per_second,
            min_duration,
            capture,
            stack_depth,
            exporter_nice,
            otel_context,
            metrics_exporters,
            metric_export_interval,
            metric_export_timeout,
            metrics_temporality,
            max_edges,
            report,
            metrics,
            metrics_warnings,
            effective: std::mem::take(&mut r.effective),
        };
        (config, r.warnings)
    }
}

/// The span queue's capacity in records: `OTEL_BSP_MAX_QUEUE_SIZE` when it is set (the spec's
/// meaning), else as many records as `CALLSPAN_MAX_QUEUE_BYTES` holds; with both set, the
/// smaller. The default byte budget does not cap a queue size asked for explicitly.
pub fn queue_capacity(spans: Option<usize>, bytes: usize, bytes_set: bool) -> usize {
    let by_bytes = (bytes / crate::sink::SLOT_BYTES).max(1);
    match spans {
        Some(n) if bytes_set => n.min(by_bytes),
        Some(n) => n,
        None => by_bytes,
    }
}
