//! Every configuration knob callspan reads, in one place: names, defaults, parsing, precedence.
//!
//! Each environment variable is a `pub const` named exactly like the variable, with its default
//! in the doc comment. Resolution order, coded once in [`Resolver`]: a keyword argument given to
//! `callspan.configure()` > the signal-specific variable (`OTEL_EXPORTER_OTLP_TRACES_*`) > the
//! generic variable (`OTEL_EXPORTER_OTLP_*`) > the default. Parsing follows the OpenTelemetry
//! SDK environment specification: an empty value means unset, enum values are case-insensitive,
//! and an unparseable value produces one warning naming the variable, the value and what is used
//! instead — the program keeps running with the default.

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
/// `OTEL_EXPORTER_OTLP_ENDPOINT` — generic OTLP endpoint. Default `http://localhost:4317`.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` — trace endpoint, wins over the generic one.
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_PROTOCOL` — `grpc` (the default) or `http/protobuf`.
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` — trace protocol, wins over the generic one.
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_HEADERS` — `key=value,...` sent with every export. Default empty.
pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS` — trace headers, win over the generic ones.
pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
/// `OTEL_EXPORTER_OTLP_TIMEOUT` — ms allowed for one OTLP request. Default `10000`.
pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` — trace request timeout, wins over the generic one.
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_COMPRESSION` — `gzip` or `none` (the default).
pub const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
/// `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION` — trace compression, wins over the generic one.
pub const OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";

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
    /// The trace endpoint, as the user gave it (default `http://localhost:4317`).
    pub endpoint: String,
    /// The OTLP protocol.
    pub protocol: Protocol,
    /// Export headers.
    pub headers: Vec<(String, String)>,
    /// gzip compression of export requests.
    pub gzip: bool,
    /// One OTLP request's timeout.
    pub otlp_timeout: Duration,
    /// `OTEL_BSP_SCHEDULE_DELAY`.
    pub schedule_delay: Duration,
    /// `OTEL_BSP_EXPORT_TIMEOUT`.
    pub export_timeout: Duration,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`.
    pub max_queue_size: usize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
    pub max_export_batch_size: usize,
    /// Every setting as `(name, value, source)`, for `python -m callspan config`.
    pub effective: Vec<(&'static str, String, Source)>,
}

/// Looks up raw values: keyword arguments first, then the environment.
#[derive(Debug)]
pub struct Resolver<'a, E: Fn(&str) -> Option<String>> {
    arguments: &'a HashMap<String, String>,
    env: E,
    /// Warnings about bad values, each naming the variable, the value and the fallback.
    pub warnings: Vec<String>,
    effective: Vec<(&'static str, String, Source)>,
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

    /// The raw value of a setting: the argument `key`, else the first non-empty variable.
    fn raw(&self, key: &str, vars: &[&'static str]) -> Option<(String, Source)> {
        if let Some(v) = self.arguments.get(key) {
            return Some((v.clone(), Source::Argument));
        }
        vars.iter().find_map(|var| {
            (self.env)(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .map(|v| (v, Source::Env(var)))
        })
    }

    /// Resolves one setting with `parse`; a value `parse` rejects warns and yields the default.
    fn get<T: Clone>(
        &mut self,
        key: &'static str,
        vars: &[&'static str],
        default: T,
        show: impl Fn(&T) -> String,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> (T, Source) {
        let (value, source) = match self.raw(key, vars) {
            None => (default, Source::Default),
            Some((raw, source)) => match parse(&raw) {
                Ok(v) => (v, source),
                Err(why) => {
                    let name = match source {
                        Source::Env(var) => var.to_owned(),
                        _ => format!("callspan.configure({key}=...)"),
                    };
                    self.warnings.push(format!(
                        "{name}: invalid value {raw:?} ({why}); using {}",
                        show(&default)
                    ));
                    (default, Source::Default)
                }
            },
        };
        self.effective
            .push((vars.first().copied().unwrap_or(key), show(&value), source));
        (value, source)
    }

    fn warn(&mut self, message: String) {
        self.warnings.push(message);
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

/// Checks an endpoint has an http(s) scheme and a host.
fn parse_endpoint(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or("an endpoint needs a scheme, http:// or https://")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("the endpoint has no host".into());
    }
    Ok(s.to_owned())
}

impl Config {
    /// The default configuration (no arguments, empty environment).
    pub fn defaults() -> Config {
        Config::resolve(&HashMap::new(), |_| None).0
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
        let (ratio, ratio_source) = if uses_ratio {
            r.get(
                "sampler_arg",
                &[OTEL_TRACES_SAMPLER_ARG],
                1.0,
                |f| f.to_string(),
                parse_ratio,
            )
        } else {
            (1.0, Source::Default)
        };
        let _ = ratio_source;
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
            |p| match p {
                Protocol::Grpc => "grpc".into(),
                Protocol::HttpProtobuf => "http/protobuf".into(),
            },
            |s| match s.to_ascii_lowercase().as_str() {
                "grpc" => Ok(Protocol::Grpc),
                "http/protobuf" => Ok(Protocol::HttpProtobuf),
                _ => Err("expected grpc or http/protobuf".into()),
            },
        );
        let default_endpoint = match protocol {
            Protocol::Grpc => "http://localhost:4317".to_owned(),
            Protocol::HttpProtobuf => "http://localhost:4318/v1/traces".to_owned(),
        };
        let endpoint = match r.raw("endpoint", &[OTEL_EXPORTER_OTLP_TRACES_ENDPOINT]) {
            // The signal-specific endpoint (or an argument) is used as given.
            Some(_) => {
                r.get(
                    "endpoint",
                    &[OTEL_EXPORTER_OTLP_TRACES_ENDPOINT],
                    default_endpoint.clone(),
                    String::clone,
                    parse_endpoint,
                )
                .0
            }
            None => {
                let (generic, source) = r.get(
                    "endpoint",
                    &[OTEL_EXPORTER_OTLP_ENDPOINT],
                    default_endpoint.clone(),
                    String::clone,
                    parse_endpoint,
                );
                // The generic endpoint is a base URL: HTTP appends the signal path.
                if protocol == Protocol::HttpProtobuf && source != Source::Default {
                    format!("{}/v1/traces", generic.trim_end_matches('/'))
                } else {
                    generic
                }
            }
        };
        let (headers, _) = r.get(
            "headers",
            &[
                OTEL_EXPORTER_OTLP_TRACES_HEADERS,
                OTEL_EXPORTER_OTLP_HEADERS,
            ],
            Vec::new(),
            |v| show_pairs(v),
            parse_key_values,
        );
        let (gzip, _) = r.get(
            "compression",
            &[
                OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
                OTEL_EXPORTER_OTLP_COMPRESSION,
            ],
            false,
            |g| if *g { "gzip".into() } else { "none".into() },
            |s| match s.to_ascii_lowercase().as_str() {
                "gzip" => Ok(true),
                "none" => Ok(false),
                _ => Err("expected gzip or none".into()),
            },
        );
        let (otlp_timeout, _) = r.get(
            "timeout",
            &[
                OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
                OTEL_EXPORTER_OTLP_TIMEOUT,
            ],
            Duration::from_millis(10_000),
            show_ms,
            parse_millis,
        );

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
            parse_millis,
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

        let config = Config {
            disabled,
            service_name,
            resource_attributes,
            sampler,
            exporter,
            file,
            endpoint,
            protocol,
            headers,
            gzip,
            otlp_timeout,
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
mod tests {
    use super::*;

    fn resolve(env: &[(&str, &str)], args: &[(&str, &str)]) -> (Config, Vec<String>) {
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
    fn endpoints_need_a_scheme_and_http_appends_the_path() {
        let (c, w) = resolve(&[(OTEL_EXPORTER_OTLP_ENDPOINT, "localhost:4317")], &[]);
        assert_eq!(c.endpoint, "http://localhost:4317");
        assert!(w[0].contains("scheme"), "{w:?}");
        let (c, _) = resolve(
            &[
                (OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4318/"),
                (OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf"),
            ],
            &[],
        );
        assert_eq!(c.endpoint, "http://collector:4318/v1/traces");
    }
}
