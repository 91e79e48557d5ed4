//! The configuration's unit tests: callspan's own knobs, the OTLP settings of each signal, and
//! the table itself.

use super::parse::*;
use super::*;
use crate::sampler::{RootSampler, Sampler};
use std::time::Duration;

impl Config {
    /// This configuration with `other`'s effective table (which names sources).
    fn with_effective(mut self, other: &Config) -> Config {
        self.effective = other.effective.clone();
        self
    }
}

mod callspan_knobs {
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

mod otlp {
    use super::*;

    fn resolve(env: &[(&str, &str)], args: &[(&str, &str)]) -> (Config, Vec<String>) {
        Config::from_pairs(env, args)
    }

    #[test]
    fn spec_defaults() {
        let (c, w) = resolve(&[], &[]);
        assert!(w.is_empty());
        assert_eq!(c.traces.endpoint, "http://localhost:4317");
        assert_eq!(c.traces.protocol, Protocol::Grpc);
        assert_eq!(c.sampler, Sampler::ParentBased(RootSampler::AlwaysOn));
        assert_eq!(c.schedule_delay, Duration::from_millis(5000));
        assert_eq!(c.export_timeout, Duration::from_millis(30000));
        // The queue is sized by bytes, not the spec's 2048 spans (see `queue_sized_by_bytes`).
        let queue = 8 * 1024 * 1024 / crate::sink::SLOT_BYTES;
        assert_eq!((c.max_queue_size, c.max_export_batch_size), (queue, 512));
        assert_eq!(c.exporters, [ExporterKind::Otlp]);
        assert!(!c.disabled);
    }

    #[test]
    fn precedence_argument_signal_generic() {
        let env = [
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://generic:4317"),
            (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "http://signal:4317"),
        ];
        assert_eq!(
            resolve(&env[..1], &[]).0.traces.endpoint,
            "http://generic:4317"
        );
        assert_eq!(resolve(&env, &[]).0.traces.endpoint, "http://signal:4317");
        let (c, _) = resolve(&env, &[("endpoint", "http://arg:1")]);
        assert_eq!(c.traces.endpoint, "http://arg:1");
    }

    #[test]
    fn empty_means_unset_and_enums_ignore_case() {
        let (c, w) = resolve(
            &[(OTEL_TRACES_SAMPLER, ""), (OTEL_TRACES_EXPORTER, "Console")],
            &[],
        );
        assert!(w.is_empty());
        assert_eq!(c.sampler, Sampler::ParentBased(RootSampler::AlwaysOn));
        assert_eq!(c.exporters, [ExporterKind::Console]);
    }

    #[test]
    fn the_traces_exporter_is_a_list_each_named_once() {
        let exporters = |value: &str| {
            let (c, w) = resolve(&[(OTEL_TRACES_EXPORTER, value)], &[]);
            (c.exporters, w)
        };
        use ExporterKind::*;
        assert_eq!(exporters("otlp,console"), (vec![Otlp, Console], vec![]));
        assert_eq!(
            exporters(" File , otlp,,file,console "),
            (vec![File, Otlp, Console], vec![])
        );
        assert_eq!(exporters("none"), (vec![], vec![]));
        // Entries that are not exporters are left out of a list, said once; the rest is used.
        let (kinds, w) = exporters("otlp,zipkin,none");
        assert_eq!(kinds, [Otlp]);
        assert_eq!(
            w,
            [
                "OTEL_TRACES_EXPORTER: ignoring \"zipkin\", \"none\" (the exporters are otlp, \
              console and file, and none means none of them, alone); using otlp"
            ]
        );
        // Nothing usable: the whole value is not set (CALLSPAN_EXPORTER then the default).
        let (kinds, w) = exporters("zipkin,jaeger");
        assert_eq!(kinds, [Otlp]);
        assert!(
            w[0].starts_with("OTEL_TRACES_EXPORTER: invalid value \"zipkin,jaeger\""),
            "{w:?}"
        );
        let (c, w) = resolve(&[], &[("exporter", "console,file")]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.exporters, [Console, File]);
        let shown = c
            .effective
            .iter()
            .find(|(name, ..)| *name == "CALLSPAN_EXPORTER");
        assert_eq!(
            shown.map(|(_, v, _)| v.as_str()),
            Some("console,file"),
            "{:?}",
            c.effective
        );
    }

    #[test]
    fn a_metrics_exporter_list_uses_every_one_and_says_what_it_leaves_out() {
        let (c, w) = resolve(&[(OTEL_METRICS_EXPORTER, "console,otlp")], &[]);
        assert_eq!(
            c.metrics_exporters,
            [MetricsExporterKind::Console, MetricsExporterKind::Otlp]
        );
        assert!(w.is_empty(), "{w:?}");
        let (c, w) = resolve(&[(OTEL_METRICS_EXPORTER, "otlp,prometheus,otlp")], &[]);
        assert_eq!(c.metrics_exporters, [MetricsExporterKind::Otlp]);
        assert_eq!(
            w,
            [
                "OTEL_METRICS_EXPORTER: ignoring \"prometheus\" (the exporters are otlp and \
                 console, and none means none of them, alone); using otlp"
            ]
        );
        let (c, w) = resolve(&[(OTEL_METRICS_EXPORTER, "none")], &[]);
        assert!(c.metrics_exporters.is_empty());
        assert!(w.is_empty(), "{w:?}");
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
    fn queue_sized_by_bytes() {
        let slot = crate::sink::SLOT_BYTES;
        // Unset: the byte budget decides, 8 MiB by default.
        let (c, _) = resolve(&[], &[]);
        assert_eq!(c.max_queue_size, 8 * 1024 * 1024 / slot);
        assert!(c.max_queue_size > 50_000, "{}", c.max_queue_size);
        // OTEL_BSP_MAX_QUEUE_SIZE alone: the spec's meaning, whatever the default budget holds.
        let (c, _) = resolve(&[(OTEL_BSP_MAX_QUEUE_SIZE, "2048")], &[]);
        assert_eq!(c.max_queue_size, 2048);
        let (c, _) = resolve(&[(OTEL_BSP_MAX_QUEUE_SIZE, "1000000")], &[]);
        assert_eq!(c.max_queue_size, 1_000_000);
        // CALLSPAN_MAX_QUEUE_BYTES alone, as argument or variable.
        let bytes = (1000 * slot).to_string();
        let (c, _) = resolve(&[(CALLSPAN_MAX_QUEUE_BYTES, &bytes)], &[]);
        assert_eq!(c.max_queue_size, 1000);
        let (c, _) = resolve(&[], &[("max_queue_bytes", &bytes)]);
        assert_eq!(c.max_queue_size, 1000);
        // Both set: the smaller queue.
        let (c, _) = resolve(
            &[
                (CALLSPAN_MAX_QUEUE_BYTES, &bytes),
                (OTEL_BSP_MAX_QUEUE_SIZE, "600"),
            ],
            &[],
        );
        assert_eq!(c.max_queue_size, 600);
        let (c, _) = resolve(
            &[
                (CALLSPAN_MAX_QUEUE_BYTES, &bytes),
                (OTEL_BSP_MAX_QUEUE_SIZE, "5000"),
            ],
            &[],
        );
        assert_eq!(c.max_queue_size, 1000);
        // Less than one record still holds one.
        let (c, _) = resolve(
            &[(CALLSPAN_MAX_QUEUE_BYTES, "1")],
            &[("max_export_batch_size", "1")],
        );
        assert_eq!(c.max_queue_size, 1);
        // A batch larger than a byte-sized queue is capped, naming the byte setting.
        let (c, w) = resolve(
            &[(CALLSPAN_MAX_QUEUE_BYTES, &(100 * slot).to_string())],
            &[],
        );
        assert_eq!(c.max_export_batch_size, 100);
        assert!(
            w.len() == 1 && w[0].contains(CALLSPAN_MAX_QUEUE_BYTES),
            "{w:?}"
        );
        // Unusable bytes: one warning naming the variable, then the default.
        let (c, w) = resolve(&[(CALLSPAN_MAX_QUEUE_BYTES, "lots")], &[]);
        assert_eq!(c.max_queue_size, 8 * 1024 * 1024 / slot);
        assert!(
            w.len() == 1 && w[0].starts_with(CALLSPAN_MAX_QUEUE_BYTES),
            "{w:?}"
        );
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
        assert!(c.traces.gzip);
        assert_eq!(c.traces.timeout, Duration::from_millis(2500));
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
        assert_eq!(c.traces.protocol, Protocol::Grpc);
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
        assert_eq!(c.traces.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.traces.headers, vec![("x-signal".into(), "2".into())]);
        assert!(c.traces.gzip);
        assert_eq!(c.traces.timeout, Duration::from_millis(2000));
        assert!(c.traces.insecure);
        let (c, w) = resolve(
            &env,
            &[
                ("protocol", "grpc"),
                ("headers", "x-arg=3"),
                ("compression", "none"),
                ("timeout_ms", "3000"),
                ("insecure", "false"),
            ],
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.traces.protocol, Protocol::Grpc);
        assert_eq!(c.traces.headers, vec![("x-arg".into(), "3".into())]);
        assert!(!c.traces.gzip);
        assert_eq!(c.traces.timeout, Duration::from_millis(3000));
        assert!(!c.traces.insecure);
        // The effective table names the source of each value.
        let row = |name: &str| c.effective.iter().find(|r| r.0 == name).cloned().unwrap();
        assert_eq!(row(OTEL_EXPORTER_OTLP_TRACES_TIMEOUT).2, Source::Argument);
        // An empty argument is deliberate: `headers={}` sends none, whatever the environment says.
        let (c, _) = resolve(&env, &[("headers", "")]);
        assert!(c.traces.headers.is_empty());
    }

    #[test]
    fn http_endpoints_generic_is_a_base_signal_and_argument_are_used_as_given() {
        let http = (OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf");
        assert_eq!(
            resolve(&[http], &[]).0.traces.endpoint,
            "http://localhost:4318/v1/traces"
        );
        for (base, url) in [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            ("https://gw/otlp/", "https://gw/otlp/v1/traces"),
        ] {
            let (c, w) = resolve(&[http, (OTEL_EXPORTER_OTLP_ENDPOINT, base)], &[]);
            assert!(w.is_empty(), "{w:?}");
            assert_eq!(c.traces.endpoint, url);
        }
        let signal = (
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
            "http://collector:4318/custom",
        );
        let (c, _) = resolve(
            &[http, signal, (OTEL_EXPORTER_OTLP_ENDPOINT, "http://x")],
            &[],
        );
        assert_eq!(c.traces.endpoint, "http://collector:4318/custom");
        let (c, _) = resolve(&[http, signal], &[("endpoint", "http://arg:1/in")]);
        assert_eq!(c.traces.endpoint, "http://arg:1/in");
        // gRPC never appends a path.
        let (c, _) = resolve(
            &[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4317")],
            &[],
        );
        assert_eq!(c.traces.endpoint, "http://collector:4317");
    }

    #[test]
    fn grpc_endpoint_without_scheme_takes_it_from_insecure() {
        let bare = (OTEL_EXPORTER_OTLP_ENDPOINT, "collector:4317");
        let (c, w) = resolve(&[bare], &[]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.traces.endpoint, "https://collector:4317");
        let (c, _) = resolve(&[bare, (OTEL_EXPORTER_OTLP_INSECURE, "TRUE")], &[]);
        assert_eq!(c.traces.endpoint, "http://collector:4317");
        // A scheme wins over INSECURE.
        let (c, _) = resolve(
            &[
                (OTEL_EXPORTER_OTLP_ENDPOINT, "https://collector:4317"),
                (OTEL_EXPORTER_OTLP_INSECURE, "true"),
            ],
            &[],
        );
        assert_eq!(c.traces.endpoint, "https://collector:4317");
        let (c, _) = resolve(&[], &[("endpoint", "[::1]:4317"), ("insecure", "true")]);
        assert_eq!(c.traces.endpoint, "http://[::1]:4317");
        // OTLP/HTTP needs the scheme: warned, then the default.
        let (c, w) = resolve(&[bare, (OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf")], &[]);
        assert_eq!(c.traces.endpoint, "http://localhost:4318/v1/traces");
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
            assert_eq!(c.traces.endpoint, "http://fallback:4317", "{bad}");
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
            c.traces.headers,
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
        assert_eq!(c.traces.headers, vec![("x-tenant".into(), "img".into())]);
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
            assert_eq!(c.traces.timeout, Duration::from_millis(10_000), "{bad}");
            assert!(
                w[0].contains(&format!("{bad:?}")) && w[0].ends_with("using 10000ms, the default"),
                "{w:?}"
            );
        }
        let (c, w) = resolve(&[(OTEL_EXPORTER_OTLP_TIMEOUT, " 250 ")], &[]);
        assert!(w.is_empty());
        assert_eq!(c.traces.timeout, Duration::from_millis(250));
    }

    #[test]
    fn insecure_is_a_boolean() {
        let (c, w) = resolve(&[(OTEL_EXPORTER_OTLP_INSECURE, "yes")], &[]);
        assert!(!c.traces.insecure);
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
        let certificate = c.traces.certificate.clone().unwrap();
        assert_eq!(certificate.path, ca);
        assert_eq!(
            certificate.source,
            Source::Env(OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE)
        );
        assert_eq!(c.traces.client_key.unwrap().path, key);
        assert_eq!(c.traces.client_certificate.unwrap().path, client);
        let (c, _) = resolve(&env, &[("certificate", &client)]);
        assert_eq!(c.traces.certificate.unwrap().source, Source::Argument);
        // With a plain-text endpoint they are not used, and that is said once.
        let mut plain = env;
        plain[0] = (OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4317");
        let (c, w) = resolve(&plain, &[]);
        assert!(c.traces.certificate.is_none() && c.traces.client_key.is_none());
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
        assert!(c.traces.certificate.is_none());
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
        assert_eq!(c.traces.certificate.unwrap().path, ca);
        assert!(c.traces.client_key.is_none() && c.traces.client_certificate.is_none());
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
        assert!(c.traces.client_key.is_none() && c.traces.client_certificate.is_none());
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

mod metrics {
    use super::*;

    fn resolve(env: &[(&str, &str)], args: &[(&str, &str)]) -> (Config, Vec<String>) {
        Config::from_pairs(env, args)
    }

    #[test]
    fn metrics_settings_resolve_exactly_like_the_traces_ones() {
        // Defaults: the same destination, with the metrics path for OTLP/HTTP.
        let c = Config::defaults();
        assert_eq!(c.metrics.signal, Signal::Metrics);
        assert_eq!(c.metrics.endpoint, "http://localhost:4317");
        let http = (OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf");
        let (c, w) = resolve(&[http], &[]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.metrics.endpoint, "http://localhost:4318/v1/metrics");
        assert_eq!(c.traces.endpoint, "http://localhost:4318/v1/traces");
        // The generic endpoint is a base URL for HTTP; the signal's is used as given.
        let base = (OTEL_EXPORTER_OTLP_ENDPOINT, "https://gw/otlp/");
        let (c, _) = resolve(&[http, base], &[]);
        assert_eq!(c.metrics.endpoint, "https://gw/otlp/v1/metrics");
        let own = (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, "http://m:4318/custom");
        let (c, _) = resolve(&[http, base, own], &[]);
        assert_eq!(c.metrics.endpoint, "http://m:4318/custom");
        assert_eq!(c.traces.endpoint, "https://gw/otlp/v1/traces");

        // Signal beats generic for every setting, and neither signal sees the other's.
        let env = [
            (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
            (OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, "http/protobuf"),
            (OTEL_EXPORTER_OTLP_HEADERS, "x-generic=1"),
            (OTEL_EXPORTER_OTLP_METRICS_HEADERS, "x-metrics=2"),
            (OTEL_EXPORTER_OTLP_TRACES_HEADERS, "x-traces=3"),
            (OTEL_EXPORTER_OTLP_COMPRESSION, "none"),
            (OTEL_EXPORTER_OTLP_METRICS_COMPRESSION, "gzip"),
            (OTEL_EXPORTER_OTLP_TIMEOUT, "1000"),
            (OTEL_EXPORTER_OTLP_METRICS_TIMEOUT, "2000"),
            (OTEL_EXPORTER_OTLP_METRICS_INSECURE, "true"),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "collector:4317"),
        ];
        let (c, w) = resolve(&env, &[]);
        let m = &c.metrics;
        assert_eq!(m.protocol, Protocol::HttpProtobuf);
        assert_eq!(m.headers, vec![("x-metrics".into(), "2".into())]);
        assert!(m.gzip && m.insecure);
        assert_eq!(m.timeout, Duration::from_millis(2000));
        // The generic `collector:4317` suits gRPC only: the traces (gRPC) use it, the metrics
        // (HTTP) cannot, and will say so when they are exported.
        assert_eq!(m.endpoint, "http://localhost:4318/v1/metrics");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.metrics_warnings,
            vec![
                "OTEL_EXPORTER_OTLP_ENDPOINT: invalid value \"collector:4317\" (an OTLP/HTTP \
                  endpoint needs a scheme, http:// or https://); using \
                  http://localhost:4318/v1/metrics, the default"
                    .to_owned()
            ]
        );
        let t = &c.traces;
        assert_eq!(t.protocol, Protocol::Grpc);
        assert_eq!(t.headers, vec![("x-traces".into(), "3".into())]);
        assert!(!t.gzip && !t.insecure);
        assert_eq!(t.timeout, Duration::from_millis(1000));
        assert_eq!(t.endpoint, "https://collector:4317");
        // Keyword arguments are the traces' only.
        let (c, _) = resolve(&env, &[("timeout_ms", "3000"), ("protocol", "grpc")]);
        assert_eq!(c.traces.timeout, Duration::from_millis(3000));
        assert_eq!(c.metrics.timeout, Duration::from_millis(2000));
        assert_eq!(c.metrics.protocol, Protocol::HttpProtobuf);
        let row = |name: &str| c.effective.iter().find(|r| r.0 == name).cloned().unwrap();
        assert_eq!(
            row(OTEL_EXPORTER_OTLP_METRICS_TIMEOUT).2,
            Source::Env(OTEL_EXPORTER_OTLP_METRICS_TIMEOUT)
        );
    }

    #[test]
    fn a_bad_metrics_value_warns_once_naming_it_and_counts_as_unset() {
        let (c, w) = resolve(
            &[
                (OTEL_EXPORTER_OTLP_METRICS_TIMEOUT, "soon"),
                (OTEL_EXPORTER_OTLP_TIMEOUT, "2500"),
                (OTEL_EXPORTER_OTLP_METRICS_COMPRESSION, "brotli"),
            ],
            &[],
        );
        assert_eq!(c.metrics.timeout, Duration::from_millis(2500));
        assert!(!c.metrics.gzip);
        assert_eq!(
            w,
            vec![
                "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION: invalid value \"brotli\" (expected \
                 gzip or none); using none, the default"
                    .to_owned(),
                "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: invalid value \"soon\" (expected a \
                 positive integer of milliseconds); using 2500ms from OTEL_EXPORTER_OTLP_TIMEOUT"
                    .to_owned(),
            ]
        );
        // A bad generic variable is read for both signals but said once.
        let (c, w) = resolve(&[(OTEL_EXPORTER_OTLP_TIMEOUT, "soon")], &[]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with(OTEL_EXPORTER_OTLP_TIMEOUT), "{w:?}");
        assert_eq!(c.metrics.timeout, Duration::from_millis(10_000));
        assert!(c.metrics_warnings.is_empty(), "{:?}", c.metrics_warnings);
        // ... and kept for the metrics exporter when the traces never needed it.
        let (c, warnings) = resolve(
            &[
                (OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, "500"),
                (OTEL_EXPORTER_OTLP_TIMEOUT, "soon"),
            ],
            &[],
        );
        assert_eq!(c.traces.timeout, Duration::from_millis(500));
        assert!(warnings.is_empty(), "{warnings:?}");
        let w = &c.metrics_warnings;
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("OTEL_EXPORTER_OTLP_TIMEOUT: invalid value \"soon\""),
            "{w:?}"
        );
    }

    #[test]
    fn metric_export_settings() {
        let c = Config::defaults();
        // Not the spec's otlp: metrics (and counting every call) when asked for.
        assert!(c.metrics_exporters.is_empty());
        assert_eq!(c.metric_export_interval, Duration::from_millis(60_000));
        assert_eq!(c.metric_export_timeout, Duration::from_millis(30_000));
        assert_eq!(c.metrics_temporality, Temporality::Cumulative);
        assert_eq!(c.max_edges, 10_000);
        let (c, w) = resolve(
            &[
                (OTEL_METRICS_EXPORTER, "Console"),
                (OTEL_METRIC_EXPORT_INTERVAL, "1000"),
                (OTEL_METRIC_EXPORT_TIMEOUT, "500"),
                (
                    OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
                    "LowMemory",
                ),
                (CALLSPAN_MAX_EDGES, "64"),
            ],
            &[],
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.metrics_exporters, [MetricsExporterKind::Console]);
        assert_eq!(c.metric_export_interval, Duration::from_millis(1000));
        assert_eq!(c.metric_export_timeout, Duration::from_millis(500));
        assert_eq!(c.metrics_temporality, Temporality::LowMemory);
        assert_eq!(c.max_edges, 64);
        for (var, bad) in [
            (OTEL_METRICS_EXPORTER, "file"),
            (OTEL_METRIC_EXPORT_INTERVAL, "0"),
            (OTEL_METRIC_EXPORT_TIMEOUT, "1s"),
            (
                OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
                "sometimes",
            ),
            (CALLSPAN_MAX_EDGES, "0"),
        ] {
            let (c, w) = resolve(&[(var, bad)], &[]);
            assert!(
                w.len() == 1 && w[0].starts_with(var) && w[0].contains(bad),
                "{var}: {w:?}"
            );
            assert_eq!(
                c,
                Config::from_pairs(&[(var, "")], &[]).0.with_effective(&c)
            );
        }
    }
}

mod table {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_default_parses_and_every_row_is_resolved() {
        // Every conditional row resolved too: the ratio samplers read OTEL_TRACES_SAMPLER_ARG.
        let (c, w) = Config::from_pairs(&[(OTEL_TRACES_SAMPLER, "traceidratio")], &[]);
        assert!(w.is_empty(), "{w:?}");
        let resolved: HashSet<&str> = c.effective.iter().map(|r| r.0).collect();
        for row in SETTINGS {
            assert!(
                resolved.contains(row.name()),
                "{} is not resolved",
                row.name()
            );
        }
        assert_eq!(c.effective.len(), SETTINGS.len());
    }

    #[test]
    fn rows_are_unique_and_shown_defaults_are_the_tables() {
        let mut names = HashSet::new();
        let mut keywords = HashSet::new();
        for row in SETTINGS {
            assert!(names.insert(row.name()), "{} twice", row.name());
            if let Some(k) = row.keyword {
                assert!(keywords.insert(k), "keyword {k} twice");
            }
        }
        // Setting a variable to its table default changes nothing: the text is the value used.
        let ratio = (OTEL_TRACES_SAMPLER, "traceidratio");
        let (defaults, _) = Config::from_pairs(&[ratio], &[]);
        for row in SETTINGS {
            match row.default {
                DefaultValue::Value(v) if row.name() != OTEL_TRACES_SAMPLER => {
                    let (c, w) = Config::from_pairs(&[ratio, (row.name(), v)], &[]);
                    assert!(w.is_empty(), "{w:?}");
                    assert_eq!(c.with_effective(&defaults), defaults, "{}={v}", row.name());
                }
                DefaultValue::Absent(what) => {
                    let shown = defaults.effective.iter().find(|r| r.0 == row.name());
                    assert_eq!(shown.unwrap().1, what, "{}", row.name());
                }
                _ => {}
            }
        }
        assert_eq!(
            crate::config::table::by_keyword("timeout_ms").map(Setting::name),
            Some(OTEL_EXPORTER_OTLP_TRACES_TIMEOUT)
        );
        assert!(crate::config::table::by_keyword("timeout").is_none());
        assert_eq!(
            DefaultValue::Endpoint(Signal::Metrics).text(),
            "http://localhost:4317; HTTP: http://localhost:4318/v1/metrics"
        );
    }
}
