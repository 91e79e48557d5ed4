//! Every configuration knob callspan reads, in one place: names, defaults, parsing, precedence.
//!
//! - [`variables`]: one `pub const` per environment variable, named exactly like it, with its
//!   `<NAME>_DEFAULT` beside it — the one place each default is written.
//! - [`table`]: one [`Setting`] row per knob (variables, `callspan.configure()` keyword, kind,
//!   default, meaning), read by the resolver, by Python (`_callspan.settings()`) and by the
//!   README check; [`Signal`] names whose OTLP settings a row belongs to.
//! - `parse`: the value parsers, one per kind of value.
//! - `resolve`: the precedence, coded once: a keyword argument to
//!   `callspan.configure()` > the signal-specific variable (`OTEL_EXPORTER_OTLP_TRACES_*`,
//!   `OTEL_EXPORTER_OTLP_METRICS_*`) > the generic variable (`OTEL_EXPORTER_OTLP_*`) > the
//!   default.
//! - `values`: the resolved [`Config`] and the types of its values.
//!
//! Parsing follows the OpenTelemetry SDK environment specification: an empty variable means
//! unset, enum values are case-insensitive, and a value that cannot be used produces one warning
//! naming the variable, the value and what is used instead; the setting is then treated as not
//! set (the spec's "gracefully ignore"), so the next source in the order above applies, down to
//! the default. The program keeps running.
//!
//! This module is the one place the process environment is read (`clippy.toml` steers
//! `std::env::var` here): the transports take every resolved OTLP value from [`Config`].

mod parse;
mod resolve;
pub mod table;
mod values;
pub mod variables;

pub use parse::{glob_match, parse_endpoint, parse_headers, parse_key_values, signal_url};
pub use resolve::{queue_capacity, Resolver};
pub use table::{DefaultValue, Kind, OtlpRows, Setting, Signal, SETTINGS};
pub use values::{
    sample_rate_for, Capture, Config, ExporterKind, MetricsExporterKind, OtlpSettings, PemFile,
    Protocol, SampleRule, Source, Temporality,
};
pub use variables::*;

#[cfg(test)]
mod tests;
