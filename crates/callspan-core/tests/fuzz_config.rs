//! Fuzzing (proptest) of the environment-variable parsers through `Config::from_pairs`.
//!
//! Any value of any variable, and any `configure()` keyword value, must give a configuration
//! and warnings, never a panic; every warning names the setting it is about. Bounded for CI by
//! `PROPTEST_CASES` (default 256 cases); failures are kept in `proptest-regressions/` and
//! replayed first on every run.

use callspan_core::config::Config;
use proptest::prelude::*;

const VARIABLES: &[&str] = &[
    "CALLSPAN_CAPTURE",
    "CALLSPAN_EXPORTER",
    "CALLSPAN_FILE",
    "CALLSPAN_MAX_SPANS_PER_SECOND",
    "CALLSPAN_MIN_DURATION",
    "CALLSPAN_OTEL_CONTEXT",
    "CALLSPAN_SAMPLE",
    "CALLSPAN_STACK_DEPTH",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_INSECURE",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
];

/// `callspan.configure()` keywords as the binding passes them (see python/callspan/_config.py).
const KEYWORDS: &[&str] = &[
    "disabled",
    "service_name",
    "resource_attributes",
    "sampler",
    "sampler_arg",
    "exporter",
    "file",
    "endpoint",
    "protocol",
    "headers",
    "compression",
    "timeout",
    "insecure",
    "schedule_delay",
    "export_timeout",
    "max_queue_size",
    "max_export_batch_size",
    "sample",
    "max_spans_per_second",
    "min_duration",
    "capture",
    "stack_depth",
];

/// Values near what parsers look for: numbers, units, lists, key=value, URLs, and noise.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ ,=;:%/.a-z0-9_*-]{0,24}",
        "-?[0-9]{0,20}(\\.[0-9]{0,6})?(e-?[0-9]{1,3})?(ms|s|us|ns|m)?",
        "(https?|grpc|unix)://[a-z0-9.:\\[\\]%-]{0,30}(/[a-z/]{0,10})?",
        "([a-z.*]{1,8}=[0-9.]{0,5},?){0,4}",
        Just("NaN".to_owned()),
        Just("inf".to_owned()),
        Just("18446744073709551616".to_owned()),
    ]
}

fn names_a_setting(warning: &str) -> bool {
    warning.contains("OTEL_")
        || warning.contains("CALLSPAN_")
        || KEYWORDS.iter().any(|k| warning.contains(k))
}

proptest! {
    #[test]
    fn any_environment_gives_a_configuration_and_named_warnings(
        env in prop::collection::vec((prop::sample::select(VARIABLES), value()), 0..12),
        args in prop::collection::vec((prop::sample::select(KEYWORDS), value()), 0..4),
    ) {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (config, warnings) = Config::from_pairs(&env, &args);
        for warning in &warnings {
            prop_assert!(names_a_setting(warning), "a warning that names no setting: {warning}");
        }
        prop_assert!(config.max_queue_size >= 1);
        prop_assert!(config.max_export_batch_size >= 1);
        prop_assert!(!config.export_timeout.is_zero());
    }
}
