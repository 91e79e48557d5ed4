//! Fuzzing (proptest) of the record → OTLP protobuf encoder (`encode.rs`).
//!
//! Arbitrary registries (names, files and static attributes in any Unicode) and records (any
//! ids, times, callers, threads, errors, omitted attributes and caller stacks) are encoded
//! under arbitrary limits and request sizes, decoded with prost (strict: invalid UTF-8 or a
//! malformed field fails), and checked against the records: the same spans in the same order
//! with their ids, times, names, status and exception event, the limits kept, and every request
//! within the size limit unless it holds one span. (The byte-for-byte comparison with prost's
//! own encoding of each span shape is the unit test in `encode.rs`.) Bounded for CI by `PROPTEST_CASES` (default 256 cases); failures are kept in
//! `proptest-regressions/` and replayed first on every run.

use callspan_core::record::{CallerSite, ExceptionInfo, SpanRecord, TracebackEntry};
use callspan_core::registry::{
    intern, AttributeValue, CodeInfo, FunctionInfo, Registry, ThreadInfo,
};
use callspan_otlp::encode::{Limits, RequestEncoder};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, Span};
use proptest::prelude::*;
use prost::Message;
use std::sync::Arc;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-zA-Z_.<>]{0,12}", Just(String::new())]
}

fn attribute() -> impl Strategy<Value = AttributeValue> {
    prop_oneof![
        text().prop_map(|s| AttributeValue::Str(intern(&s))),
        any::<i64>().prop_map(AttributeValue::Int),
        // NaN never equals itself: finite floats (and infinities) only.
        (prop::num::f64::NORMAL | prop::num::f64::INFINITE | prop::num::f64::ZERO)
            .prop_map(AttributeValue::Float),
        any::<bool>().prop_map(AttributeValue::Bool),
    ]
}

fn function() -> impl Strategy<Value = FunctionInfo> {
    (
        text(),
        text(),
        prop::option::of(text()),
        any::<u32>(),
        prop::collection::vec((text(), attribute()), 0..5),
    )
        .prop_map(|(span, function, file, line, attributes)| FunctionInfo {
            span_name: intern(&span),
            function_name: intern(&function),
            file: file.as_deref().map(intern),
            line,
            attributes: attributes
                .into_iter()
                .map(|(k, v)| (intern(&k), v))
                .collect(),
        })
}

/// An exception: type name, message, traceback frames (code index, line).
type ErrorPlan = (String, String, Vec<(prop::sample::Index, u32)>);

/// What a record refers to, as indexes into the registry built for the case.
#[derive(Clone, Debug)]
struct RecordPlan {
    ids: (u128, u64, u64, bool),
    times: (u64, u64),
    function: prop::sample::Index,
    caller: Option<(prop::sample::Index, u32, Option<prop::sample::Index>)>,
    thread: Option<prop::sample::Index>,
    error: Option<ErrorPlan>,
    omitted: u8,
    stack: Option<Vec<(prop::sample::Index, u32)>>,
}

fn record_plan() -> impl Strategy<Value = RecordPlan> {
    (
        (any::<u128>(), any::<u64>(), any::<u64>(), any::<bool>()),
        (any::<u64>(), any::<u64>()),
        any::<prop::sample::Index>(),
        prop::option::of((
            any::<prop::sample::Index>(),
            any::<u32>(),
            prop::option::of(any::<prop::sample::Index>()),
        )),
        prop::option::of(any::<prop::sample::Index>()),
        prop::option::of((
            text(),
            text(),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u32>()), 0..4),
        )),
        any::<u8>(),
        prop::option::of(prop::collection::vec(
            (any::<prop::sample::Index>(), any::<u32>()),
            0..4,
        )),
    )
        .prop_map(
            |(ids, times, function, caller, thread, error, omitted, stack)| RecordPlan {
                ids,
                times,
                function,
                caller,
                thread,
                error,
                omitted,
                stack,
            },
        )
}

fn limits() -> impl Strategy<Value = Limits> {
    (prop::option::of(0usize..40), 0usize..20, 0usize..3).prop_map(
        |(value_length, attribute_count, event_count)| Limits {
            value_length,
            attribute_count,
            event_count,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn encoded_requests_decode_to_the_records_within_the_limits(
        functions in prop::collection::vec(function(), 1..4),
        codes in prop::collection::vec((text(), text()), 1..4),
        classes in prop::collection::vec(text(), 1..3),
        threads in prop::collection::vec((any::<u64>(), text()), 1..3),
        plans in prop::collection::vec(record_plan(), 1..12),
        limits in prop_oneof![Just(Limits::default()), limits()],
        max_request_bytes in prop_oneof![Just(usize::MAX), 64usize..4096],
    ) {
        let registry = Registry::new();
        let function_ids: Vec<_> = functions.into_iter().map(|f| registry.add_function(f)).collect();
        let code_ids: Vec<_> = codes
            .iter()
            .enumerate()
            .map(|(i, (name, file))| {
                registry.add_code(i + 1, CodeInfo { function_name: intern(name), file: intern(file) })
            })
            .collect();
        let class_ids: Vec<_> = classes
            .iter()
            .enumerate()
            .map(|(i, name)| registry.add_class(i + 1, intern(name)))
            .collect();
        let thread_ids: Vec<_> = threads
            .iter()
            .map(|(id, name)| registry.add_thread(ThreadInfo { id: *id, name: intern(name) }))
            .collect();
        let site = |(code, line, class): &(prop::sample::Index, u32, Option<prop::sample::Index>)| {
            CallerSite {
                code: *code.get(&code_ids),
                line: *line,
                class: class.as_ref().map_or(0, |c| *c.get(&class_ids)),
            }
        };
        let records: Vec<SpanRecord> = plans
            .iter()
            .map(|p| SpanRecord {
                trace_id: p.ids.0,
                span_id: p.ids.1,
                parent_span_id: p.ids.2,
                parent_is_remote: p.ids.3,
                start_unix_ns: p.times.0.min(p.times.1),
                end_unix_ns: p.times.0.max(p.times.1),
                function: *p.function.get(&function_ids),
                caller: p.caller.as_ref().map(site).unwrap_or_default(),
                thread: p.thread.as_ref().map_or(0, |t| *t.get(&thread_ids)),
                error: p.error.as_ref().map(|(t, m, frames)| {
                    let traceback = frames.iter().rev().fold(None, |next, (code, line)| {
                        Some(Arc::new(TracebackEntry { site: site(&(*code, *line, None)), next }))
                    });
                    Box::new(ExceptionInfo {
                        type_name: t.as_str().into(),
                        message: m.as_str().into(),
                        traceback,
                    })
                }),
                omitted: p.omitted,
                instance: 0,
                stack: p.stack.as_ref().map(|frames| {
                    Box::new(
                        frames.iter().map(|(code, line)| site(&(*code, *line, None))).collect(),
                    )
                }),
            })
            .collect();

        let resource = Resource::default();
        let view = registry.view();
        let mut encoder = RequestEncoder::new(&resource, limits, max_request_bytes);
        for record in &records {
            prop_assert!(encoder.add(record, &view));
        }
        let requests = encoder.finish();

        let mut decoded_spans: Vec<Span> = Vec::new();
        for request in &requests {
            let decoded = ExportTraceServiceRequest::decode(&request.body[..])
                .expect("a request prost decodes");
            let spans: Vec<Span> = decoded
                .resource_spans
                .into_iter()
                .flat_map(|r| r.scope_spans)
                .flat_map(|s| s.spans)
                .collect();
            prop_assert_eq!(spans.len() as u64, request.spans);
            prop_assert!(request.body.len() <= max_request_bytes || request.spans == 1);
            decoded_spans.extend(spans);
        }
        prop_assert_eq!(decoded_spans.len(), records.len());
        for (span, record) in decoded_spans.iter().zip(&records) {
            prop_assert_eq!(&span.trace_id, &record.trace_id.to_be_bytes().to_vec());
            prop_assert_eq!(&span.span_id, &record.span_id.to_be_bytes().to_vec());
            prop_assert_eq!(span.start_time_unix_nano, record.start_unix_ns);
            prop_assert_eq!(span.end_time_unix_nano, record.end_unix_ns);
            let function = view.function(record.function).unwrap();
            prop_assert_eq!(&span.name, function.span_name);
            prop_assert!(span.attributes.len() <= limits.attribute_count);
            if let Some(length) = limits.value_length {
                for kv in &span.attributes {
                    if let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(v)) =
                        kv.value.as_ref().and_then(|v| v.value.as_ref())
                    {
                        prop_assert!(v.chars().count() <= length);
                    }
                }
            }
            let status = span.status.as_ref().map_or(0, |s| s.code);
            match &record.error {
                Some(error) => {
                    prop_assert_eq!(status, status::StatusCode::Error as i32);
                    let message = span.status.as_ref().unwrap().message.clone();
                    prop_assert!(message.starts_with(&*error.type_name));
                    prop_assert_eq!(span.events.len() + span.dropped_events_count as usize, 1);
                }
                None => prop_assert_eq!(status, 0),
            }
        }
    }
}
