//! Value parsers: each turns one raw setting (trimmed, non-empty) into its value or says, in a
//! phrase fit for a warning, why it cannot be used. No parser reads the environment or warns;
//! `resolve` does that, naming the variable.

use super::table::Signal;
use super::values::{
    Capture, ExporterKind, MetricsExporterKind, Protocol, SampleRule, Temporality,
};
use super::variables::MAX_STACK_DEPTH;
use std::time::Duration;

pub(super) fn parse_capture(s: &str) -> Result<Capture, String> {
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
                        "unknown item {name:?}; expected function, file, line, class, thread, instance, all or none"
                    ))
                }
            },
        }
    }
    Ok(Capture(bits))
}

pub(super) fn parse_sample_rules(s: &str) -> Result<Vec<SampleRule>, String> {
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

/// `250us`, `2ms`, `1.5s`, `500ns`, `0`.
pub(super) fn parse_duration_with_unit(s: &str) -> Result<Duration, String> {
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

pub(super) fn parse_rate_limit(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err("expected a non-negative number of spans per second (0: no limit)".into()),
    }
}

pub(super) fn parse_count(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .map_err(|_| "expected a non-negative integer".into())
}

/// The most nice levels a thread can go below another (Linux: 19 is the lowest priority).
pub(super) const MAX_NICE: i32 = 19;

pub(super) fn parse_nice(s: &str) -> Result<i32, String> {
    match s.parse::<i32>() {
        Ok(n) if (0..=MAX_NICE).contains(&n) => Ok(n),
        _ => Err(format!("expected an integer from 0 to {MAX_NICE}")),
    }
}

pub(super) fn parse_stack_depth(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n <= MAX_STACK_DEPTH => Ok(n),
        Ok(_) => Err(format!("at most {MAX_STACK_DEPTH} frames")),
        Err(_) => Err("expected a non-negative integer".into()),
    }
}

pub(super) fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

pub(super) fn parse_millis(s: &str) -> Result<Duration, String> {
    let ms: u64 = s
        .parse()
        .map_err(|_| "expected a non-negative integer of milliseconds")?;
    Ok(Duration::from_millis(ms))
}

pub(super) fn parse_positive_millis(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err("expected a positive integer of milliseconds".into()),
    }
}

pub(super) fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a positive integer".into()),
    }
}

pub(super) fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        Ok(_) => Err("a ratio must be between 0 and 1".into()),
        Err(_) => Err("expected a number between 0 and 1".into()),
    }
}

pub(super) fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s.to_ascii_lowercase().as_str() {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "http/json" => Err("http/json is not supported; expected grpc or http/protobuf".into()),
        _ => Err("expected grpc or http/protobuf".into()),
    }
}

/// A sampler's name, lower-cased (`OTEL_TRACES_SAMPLER`).
pub(super) fn parse_sampler_name(s: &str) -> Result<String, String> {
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
}

/// The exporters of a list setting, and the entries left out of it (each quoted).
pub(super) type ExporterList<K> = (Vec<K>, Vec<String>);

/// A list of exporters (`OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER`): comma-separated
/// names from `names`, each used once in the order given, or `none` alone. Entries that are not
/// names, or `none` beside others, are returned to be said (the rest is used); nothing usable
/// at all is an error (`expected` says what is).
fn parse_exporter_list<K: Copy + PartialEq>(
    s: &str,
    names: &[(&str, K)],
    expected: &str,
) -> Result<ExporterList<K>, String> {
    let mut exporters = Vec::new();
    let mut left_out = Vec::new();
    let mut none = false;
    for entry in list_entries(s) {
        if entry == "none" {
            none = true;
            continue;
        }
        match names.iter().find(|(name, _)| *name == entry) {
            Some(&(_, kind)) if !exporters.contains(&kind) => exporters.push(kind),
            Some(_) => {}
            None => left_out.push(format!("{entry:?}")),
        }
    }
    if none && !exporters.is_empty() {
        left_out.push("\"none\"".into());
    } else if !none && exporters.is_empty() {
        return Err(format!(
            "expected {expected} or none, or a comma-separated list of them"
        ));
    }
    Ok((exporters, left_out))
}

/// `OTEL_TRACES_EXPORTER` (see [`parse_exporter_list`]).
pub(super) fn parse_exporters(s: &str) -> Result<ExporterList<ExporterKind>, String> {
    parse_exporter_list(
        s,
        &[
            ("otlp", ExporterKind::Otlp),
            ("console", ExporterKind::Console),
            ("file", ExporterKind::File),
        ],
        "otlp, console, file",
    )
}

/// `OTEL_METRICS_EXPORTER` (see [`parse_exporter_list`]).
pub(super) fn parse_metrics_exporters(
    s: &str,
) -> Result<ExporterList<MetricsExporterKind>, String> {
    parse_exporter_list(
        s,
        &[
            ("otlp", MetricsExporterKind::Otlp),
            ("console", MetricsExporterKind::Console),
        ],
        "otlp, console",
    )
}

/// The entries of a comma-separated list, trimmed and lower-cased, empty ones skipped.
pub(super) fn list_entries(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
}

/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`.
pub(super) fn parse_temporality(s: &str) -> Result<Temporality, String> {
    match s.to_ascii_lowercase().as_str() {
        "cumulative" => Ok(Temporality::Cumulative),
        "delta" => Ok(Temporality::Delta),
        "lowmemory" => Ok(Temporality::LowMemory),
        _ => Err("expected cumulative, delta or lowmemory".into()),
    }
}

pub(super) fn parse_compression(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "gzip" => Ok(true),
        "none" => Ok(false),
        _ => Err("expected gzip or none".into()),
    }
}

pub(super) fn percent_decode(s: &str) -> Result<String, String> {
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

/// An HTTP header name character (RFC 9110 `tchar`).
pub(super) fn is_token_char(c: char) -> bool {
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
pub(super) fn hide_values(raw: &str) -> String {
    raw.split(',')
        .map(|item| match item.split_once('=') {
            Some((k, _)) => format!("{}=…", k.trim()),
            None => item.trim().to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks `host[:port]` (the authority of a URL; `[v6]` addresses in brackets).
pub(super) fn check_authority(authority: &str) -> Result<(), String> {
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

/// The spec's per-signal URL for a base endpoint: `<base>/v1/traces`, `<base>/v1/metrics` (no
/// doubled slash).
pub fn signal_url(base: &str, signal: Signal) -> String {
    format!("{}{}", base.trim_end_matches('/'), signal.http_path())
}

/// Which PEM blocks a TLS file must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PemKind {
    Certificate,
    PrivateKey,
}

/// Checks that `path` is a readable file holding a PEM block of `kind`; returns it absolute.
/// (The transport parses the blocks themselves; this catches the common mistakes early, with
/// the variable's name at hand.)
pub(super) fn parse_pem_file(path: &str, kind: PemKind) -> Result<String, String> {
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
