//! Span records straight to OTLP protobuf: the bytes of `ExportTraceServiceRequest`s, without
//! building `SpanData` or prost structs on the way.
//!
//! Converting each record to `SpanData` and then to opentelemetry-proto's prost messages costs
//! about twenty allocations per span and was most of the exporter's ~1.5 µs per span. Here
//! everything a span repeats from call to call — its name and callee attributes, the caller's
//! function and file, the class, the thread — is encoded once per registry id and kept as a
//! ready-made byte fragment; a span is then its ids, times and line number around a few
//! `memcpy`s. Spans that carry rarer parts (an exception event, a stack, more attributes than
//! `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT` keeps) take the reference path instead: `convert.rs` to
//! `SpanData`, opentelemetry-proto's conversion and prost. Both paths must produce the same
//! message; the tests decode both and compare.
//!
//! Requests hold at most one batch and stay under [`MAX_REQUEST_BYTES`]
//! (`crate::exporter::MAX_REQUEST_BYTES`), the receiver's 4 MiB limit less headroom.

use crate::convert::{to_span_data_limited, Limits};
use crate::protowire::{
    field_len, put_bytes, put_fixed32, put_fixed64, put_key, put_len_prefix, put_varint,
    put_varint_field, FIXED64, VARINT,
};
use callspan_core::config::Capture;
use callspan_core::record::SpanRecord;
use callspan_core::registry::{AttributeValue, RegistryView};
use opentelemetry::InstrumentationScope;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope as ProtoScope;
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use prost::Message;

/// OTLP field numbers used here (opentelemetry-proto's `trace.proto`, `common.proto`).
mod field {
    pub(super) const REQUEST_RESOURCE_SPANS: u32 = 1;
    pub(super) const RESOURCE_SPANS_RESOURCE: u32 = 1;
    pub(super) const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
    pub(super) const RESOURCE_SPANS_SCHEMA_URL: u32 = 3;
    pub(super) const SCOPE_SPANS_SCOPE: u32 = 1;
    pub(super) const SCOPE_SPANS_SPANS: u32 = 2;
    pub(super) const SPAN_TRACE_ID: u32 = 1;
    pub(super) const SPAN_SPAN_ID: u32 = 2;
    pub(super) const SPAN_PARENT_SPAN_ID: u32 = 4;
    pub(super) const SPAN_NAME: u32 = 5;
    pub(super) const SPAN_KIND: u32 = 6;
    pub(super) const SPAN_START: u32 = 7;
    pub(super) const SPAN_END: u32 = 8;
    pub(super) const SPAN_ATTRIBUTES: u32 = 9;
    pub(super) const SPAN_STATUS: u32 = 15;
    pub(super) const SPAN_FLAGS: u32 = 16;
    pub(super) const KEY_VALUE_KEY: u32 = 1;
    pub(super) const KEY_VALUE_VALUE: u32 = 2;
    pub(super) const ANY_STRING: u32 = 1;
    pub(super) const ANY_BOOL: u32 = 2;
    pub(super) const ANY_INT: u32 = 3;
    pub(super) const ANY_DOUBLE: u32 = 4;
}

/// `SPAN_KIND_INTERNAL`.
const KIND_INTERNAL: u64 = 1;
/// Trace flags `sampled`, plus `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`.
const FLAGS_LOCAL_PARENT: u32 = 0x01 | 0x100;
/// `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
const FLAG_REMOTE_PARENT: u32 = 0x200;

/// One encoded request body, ready to send.
#[derive(Debug)]
pub struct EncodedRequest {
    /// The serialized `ExportTraceServiceRequest`.
    pub body: Vec<u8>,
    /// How many spans it carries.
    pub spans: u64,
}

/// The encoded attributes of a traced function: the span name and the callee attributes that
/// come first, and its static attributes that come last.
#[derive(Debug)]
struct FunctionFragments {
    name: Box<[u8]>,
    head: Box<[u8]>,
    head_count: usize,
    tail: Box<[u8]>,
    tail_count: usize,
}

/// The encoded `caller.function.name` and `caller.file.path` of a calling code object (apart,
/// because `CALLSPAN_CAPTURE` can leave out either).
#[derive(Debug)]
struct CodeFragments {
    function: Box<[u8]>,
    file: Box<[u8]>,
}

/// A cache of fragments indexed by a registry id (dense, 1-based; entries never change).
#[derive(Debug)]
struct Fragments<T>(Vec<Option<T>>);

impl<T> Fragments<T> {
    fn get_or_insert(&mut self, id: u32, build: impl FnOnce() -> Option<T>) -> Option<&T> {
        let index = id as usize;
        if index >= self.0.len() {
            self.0.resize_with(index + 1, || None);
        }
        let slot = &mut self.0[index];
        if slot.is_none() {
            *slot = build();
        }
        slot.as_ref()
    }
}

impl<T> Default for Fragments<T> {
    fn default() -> Self {
        Fragments(Vec::new())
    }
}

/// Turns span records into OTLP request bodies. Lives on the exporter thread; its caches grow
/// with the registry and are never invalidated (registry entries never change).
#[derive(Debug)]
pub struct RequestEncoder {
    limits: Limits,
    scope: InstrumentationScope,
    /// `ResourceSpans.resource`, encoded.
    resource: Vec<u8>,
    /// `ResourceSpans.schema_url`.
    resource_schema_url: String,
    /// `ScopeSpans.scope`, encoded.
    scope_bytes: Vec<u8>,
    max_request_bytes: usize,
    functions: Fragments<FunctionFragments>,
    codes: Fragments<CodeFragments>,
    classes: Fragments<Box<[u8]>>,
    threads: Fragments<Box<[u8]>>,
    /// The pending request's spans, each as a `ScopeSpans.spans` field.
    spans: Vec<u8>,
    span_count: u64,
    /// One span's body while it is encoded.
    scratch: Vec<u8>,
    done: Vec<EncodedRequest>,
}

impl RequestEncoder {
    /// An encoder for spans of `resource` under callspan's scope, with `limits` applied and
    /// requests kept under `max_request_bytes`.
    pub fn new(
        resource: &opentelemetry_sdk::Resource,
        limits: Limits,
        max_request_bytes: usize,
    ) -> RequestEncoder {
        let scope = crate::resource::scope();
        let with_schema = ResourceAttributesWithSchema::from(resource);
        let resource_bytes = ProtoResource {
            attributes: with_schema.attributes.0.clone(),
            dropped_attributes_count: 0,
            entity_refs: vec![],
        }
        .encode_to_vec();
        let scope_bytes = ProtoScope::from((&scope, None)).encode_to_vec();
        RequestEncoder {
            limits,
            scope,
            resource: resource_bytes,
            resource_schema_url: with_schema.schema_url.unwrap_or_default(),
            scope_bytes,
            max_request_bytes,
            functions: Fragments::default(),
            codes: Fragments::default(),
            classes: Fragments::default(),
            threads: Fragments::default(),
            spans: Vec::new(),
            span_count: 0,
            scratch: Vec::new(),
            done: Vec::new(),
        }
    }

    /// Adds one span to the pending request (starting a new one first if it would outgrow the
    /// size limit). False if the record names a function the registry does not know.
    pub fn add(&mut self, record: SpanRecord, view: &RegistryView<'_>) -> bool {
        self.scratch.clear();
        let encoded = if record.error.is_some() || record.stack.is_some() {
            self.encode_reference(record, view)
        } else {
            match self.encode_fast(&record, view) {
                Some(true) => true,
                Some(false) => self.encode_reference(record, view),
                None => false,
            }
        };
        if !encoded {
            return false;
        }
        let size = field_len(field::SCOPE_SPANS_SPANS, self.scratch.len());
        if self.span_count > 0
            && self.spans.len() + size + self.envelope_bound() > self.max_request_bytes
        {
            self.finish_request();
        }
        put_len_prefix(
            &mut self.spans,
            field::SCOPE_SPANS_SPANS,
            self.scratch.len(),
        );
        self.spans.extend_from_slice(&self.scratch);
        self.span_count += 1;
        true
    }

    /// The requests made since the last call, the pending one included.
    pub fn finish(&mut self) -> Vec<EncodedRequest> {
        if self.span_count > 0 {
            self.finish_request();
        }
        std::mem::take(&mut self.done)
    }

    /// Bytes the envelope around the spans can take, at most.
    fn envelope_bound(&self) -> usize {
        // Keys and lengths of the five envelope fields (≤ 6 bytes each), the resource, the scope.
        5 * 6 + self.resource.len() + self.scope_bytes.len() + self.resource_schema_url.len() + 6
    }

    fn finish_request(&mut self) {
        let scope_spans_len =
            field_len(field::SCOPE_SPANS_SCOPE, self.scope_bytes.len()) + self.spans.len();
        let mut resource_spans_len = field_len(field::RESOURCE_SPANS_RESOURCE, self.resource.len())
            + field_len(field::RESOURCE_SPANS_SCOPE_SPANS, scope_spans_len);
        if !self.resource_schema_url.is_empty() {
            resource_spans_len += field_len(
                field::RESOURCE_SPANS_SCHEMA_URL,
                self.resource_schema_url.len(),
            );
        }
        let mut body =
            Vec::with_capacity(field_len(field::REQUEST_RESOURCE_SPANS, resource_spans_len));
        put_len_prefix(&mut body, field::REQUEST_RESOURCE_SPANS, resource_spans_len);
        put_bytes(&mut body, field::RESOURCE_SPANS_RESOURCE, &self.resource);
        put_len_prefix(
            &mut body,
            field::RESOURCE_SPANS_SCOPE_SPANS,
            scope_spans_len,
        );
        put_bytes(&mut body, field::SCOPE_SPANS_SCOPE, &self.scope_bytes);
        body.extend_from_slice(&self.spans);
        if !self.resource_schema_url.is_empty() {
            put_bytes(
                &mut body,
                field::RESOURCE_SPANS_SCHEMA_URL,
                self.resource_schema_url.as_bytes(),
            );
        }
        self.spans.clear();
        self.done.push(EncodedRequest {
            body,
            spans: std::mem::take(&mut self.span_count),
        });
    }

    /// The common span from cached fragments into `scratch`. `None`: unknown function;
    /// `Some(false)`: the span needs the reference path (too many attributes).
    fn encode_fast(&mut self, record: &SpanRecord, view: &RegistryView<'_>) -> Option<bool> {
        let limits = self.limits;
        let function = self.functions.get_or_insert(record.function, || {
            view.function(record.function)
                .map(|f| function_fragments(f, &limits))
        })?;
        let captured = |bit: u8| record.omitted & bit == 0;
        let code = if record.caller.code == 0 {
            None
        } else {
            self.codes.get_or_insert(record.caller.code, || {
                view.code(record.caller.code).map(|c| CodeFragments {
                    function: string_attribute("caller.function.name", c.function_name, &limits),
                    file: string_attribute("caller.file.path", c.file, &limits),
                })
            })
        };
        let class = if record.caller.class == 0 {
            None
        } else {
            self.classes.get_or_insert(record.caller.class, || {
                view.class(record.caller.class)
                    .map(|name| string_attribute("caller.class.name", name, &limits))
            })
        };
        let thread = if record.thread == 0 {
            None
        } else {
            self.threads.get_or_insert(record.thread, || {
                view.thread(record.thread).map(|t| {
                    let mut out = int_attribute("thread.id", t.id as i64).into_vec();
                    out.extend_from_slice(&string_attribute("thread.name", t.name, &limits));
                    out.into_boxed_slice()
                })
            })
        };

        let caller_count = code.map_or(0, |_| {
            usize::from(captured(Capture::FUNCTION))
                + usize::from(captured(Capture::FILE))
                + usize::from(captured(Capture::LINE))
        });
        let count = function.head_count
            + caller_count
            + usize::from(class.is_some())
            + 2 * usize::from(thread.is_some())
            + function.tail_count;
        if count > limits.attribute_count {
            return Some(false);
        }

        let out = &mut self.scratch;
        put_bytes(out, field::SPAN_TRACE_ID, &record.trace_id.to_be_bytes());
        put_bytes(out, field::SPAN_SPAN_ID, &record.span_id.to_be_bytes());
        if record.parent_span_id != 0 {
            put_bytes(
                out,
                field::SPAN_PARENT_SPAN_ID,
                &record.parent_span_id.to_be_bytes(),
            );
        }
        out.extend_from_slice(&function.name);
        put_varint_field(out, field::SPAN_KIND, KIND_INTERNAL);
        put_fixed64(out, field::SPAN_START, record.start_unix_ns);
        put_fixed64(out, field::SPAN_END, record.end_unix_ns);
        out.extend_from_slice(&function.head);
        if let Some(code) = code {
            if captured(Capture::FUNCTION) {
                out.extend_from_slice(&code.function);
            }
            if captured(Capture::FILE) {
                out.extend_from_slice(&code.file);
            }
            if captured(Capture::LINE) {
                put_int_attribute(out, "caller.line.number", i64::from(record.caller.line));
            }
        }
        if let Some(class) = class {
            out.extend_from_slice(class);
        }
        if let Some(thread) = thread {
            out.extend_from_slice(thread);
        }
        out.extend_from_slice(&function.tail);
        // Status UNSET with no message: an empty message, as opentelemetry-proto sends it.
        put_len_prefix(out, field::SPAN_STATUS, 0);
        let flags = FLAGS_LOCAL_PARENT
            | if record.parent_is_remote {
                FLAG_REMOTE_PARENT
            } else {
                0
            };
        put_fixed32(out, field::SPAN_FLAGS, flags);
        Some(true)
    }

    /// Any span, through `SpanData` and opentelemetry-proto's prost messages, into `scratch`.
    fn encode_reference(&mut self, record: SpanRecord, view: &RegistryView<'_>) -> bool {
        let Some(data) = to_span_data_limited(record, view, &self.scope, &self.limits) else {
            return false;
        };
        self.scratch.clear();
        ProtoSpan::from(data)
            .encode(&mut self.scratch)
            .expect("a Vec grows as needed");
        true
    }
}

fn function_fragments(
    function: &callspan_core::registry::FunctionInfo,
    limits: &Limits,
) -> FunctionFragments {
    let mut name = Vec::new();
    put_bytes(&mut name, field::SPAN_NAME, function.span_name.as_bytes());
    let mut head = Vec::new();
    let mut head_count = 1;
    head.extend_from_slice(&string_attribute(
        "code.function.name",
        function.function_name,
        limits,
    ));
    if let Some(file) = function.file {
        head.extend_from_slice(&string_attribute("code.file.path", file, limits));
        head_count += 1;
    }
    if function.line > 0 {
        put_int_attribute(&mut head, "code.line.number", i64::from(function.line));
        head_count += 1;
    }
    let mut tail = Vec::new();
    for (key, value) in &function.attributes {
        match value {
            AttributeValue::Str(s) => tail.extend_from_slice(&string_attribute(key, s, limits)),
            AttributeValue::Int(i) => put_int_attribute(&mut tail, key, *i),
            AttributeValue::Float(f) => put_attribute(&mut tail, key, |v| {
                put_key(v, field::ANY_DOUBLE, FIXED64);
                v.extend_from_slice(&f.to_bits().to_le_bytes());
            }),
            AttributeValue::Bool(b) => put_attribute(&mut tail, key, |v| {
                put_key(v, field::ANY_BOOL, VARINT);
                put_varint(v, u64::from(*b));
            }),
        }
    }
    FunctionFragments {
        name: name.into_boxed_slice(),
        head: head.into_boxed_slice(),
        head_count,
        tail: tail.into_boxed_slice(),
        tail_count: function.attributes.len(),
    }
}

/// Appends a `Span.attributes` field: `key` and the `AnyValue` that `value` writes.
fn put_attribute(out: &mut Vec<u8>, key: &str, value: impl FnOnce(&mut Vec<u8>)) {
    let mut any = Vec::with_capacity(16);
    value(&mut any);
    let mut kv = Vec::with_capacity(key.len() + any.len() + 8);
    if !key.is_empty() {
        put_bytes(&mut kv, field::KEY_VALUE_KEY, key.as_bytes());
    }
    put_bytes(&mut kv, field::KEY_VALUE_VALUE, &any);
    put_bytes(out, field::SPAN_ATTRIBUTES, &kv);
}

/// A string attribute, its value cut to the length limit.
fn string_attribute(key: &str, value: &str, limits: &Limits) -> Box<[u8]> {
    let value = limits.truncate_str(value);
    let mut out = Vec::new();
    put_attribute(&mut out, key, |v| {
        put_bytes(v, field::ANY_STRING, value.as_bytes())
    });
    out.into_boxed_slice()
}

/// An int attribute (int64 as its two's-complement bits, as protobuf writes it).
fn int_attribute(key: &str, value: i64) -> Box<[u8]> {
    let mut out = Vec::new();
    put_int_attribute(&mut out, key, value);
    out.into_boxed_slice()
}

/// Appends an int attribute without allocating: its lengths are known up front.
#[inline]
fn put_int_attribute(out: &mut Vec<u8>, key: &str, value: i64) {
    let bits = value as u64;
    let any_len = 1 + crate::protowire::varint_len(bits);
    let kv_len =
        field_len(field::KEY_VALUE_KEY, key.len()) + field_len(field::KEY_VALUE_VALUE, any_len);
    put_len_prefix(out, field::SPAN_ATTRIBUTES, kv_len);
    put_bytes(out, field::KEY_VALUE_KEY, key.as_bytes());
    put_len_prefix(out, field::KEY_VALUE_VALUE, any_len);
    put_key(out, field::ANY_INT, VARINT);
    put_varint(out, bits);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::to_span_data_limited;
    use callspan_core::record::{CallerSite, ExceptionInfo};
    use callspan_core::registry::{intern, CodeInfo, FunctionInfo, Registry, ThreadInfo};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;

    struct Fixture {
        registry: Registry,
        resource: opentelemetry_sdk::Resource,
        records: Vec<SpanRecord>,
    }

    /// A registry with two functions (one with static attributes of every kind), a caller,
    /// a class, a thread, and records covering every part of the contract.
    fn fixture() -> Fixture {
        let registry = Registry::new();
        let plain = registry.add_function(FunctionInfo {
            span_name: intern("Transformer.apply_transform"),
            function_name: intern("imgpipe.Transformer.apply_transform"),
            file: Some(intern("/app/imgpipe.py")),
            line: 12,
            attributes: vec![],
        });
        let decorated = registry.add_function(FunctionInfo {
            span_name: intern("resize"),
            function_name: intern("imgpipe.resize"),
            file: None,
            line: 0,
            attributes: vec![
                (intern("stage"), AttributeValue::Str(intern("résumé ✓"))),
                (intern("weight"), AttributeValue::Int(-3)),
                (intern("ratio"), AttributeValue::Float(0.25)),
                (intern("hot"), AttributeValue::Bool(true)),
                (intern("cold"), AttributeValue::Bool(false)),
                (intern("empty"), AttributeValue::Str(intern(""))),
            ],
        });
        let code = registry.add_code(
            1,
            CodeInfo {
                function_name: intern("imgpipe.Rotator.rotate_image"),
                file: intern("/app/imgpipe.py"),
            },
        );
        let class = registry.add_class(2, intern("imgpipe.Rotator"));
        let thread = registry.add_thread(ThreadInfo {
            // A pthread_t with the top bit set: negative as an OTLP int.
            id: 0x8000_7f00_1234_5678,
            name: intern("MainThread"),
        });
        let base = SpanRecord {
            trace_id: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            span_id: 0x1122_3344_5566_7788,
            parent_span_id: 0,
            parent_is_remote: false,
            start_unix_ns: 1_700_000_000_000_000_000,
            end_unix_ns: 1_700_000_000_000_012_500,
            function: plain,
            caller: CallerSite {
                code,
                line: 31,
                class,
            },
            thread,
            error: None,
            omitted: 0,
            stack: None,
        };
        let records = vec![
            base.clone(),
            SpanRecord {
                parent_span_id: 0x99,
                parent_is_remote: true,
                function: decorated,
                ..base.clone()
            },
            SpanRecord {
                caller: CallerSite::default(),
                thread: 0,
                parent_span_id: 7,
                ..base.clone()
            },
            SpanRecord {
                omitted: Capture::FUNCTION | Capture::LINE,
                ..base.clone()
            },
            SpanRecord {
                omitted: Capture::FILE,
                caller: CallerSite {
                    class: 0,
                    ..base.caller
                },
                ..base.clone()
            },
            SpanRecord {
                error: Some(Box::new(ExceptionInfo {
                    type_name: "ValueError".into(),
                    message: "bad pixel".into(),
                    traceback: None,
                })),
                ..base.clone()
            },
            SpanRecord {
                stack: Some(vec![base.caller, base.caller].into_boxed_slice()),
                ..base.clone()
            },
        ];
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_attributes([
                opentelemetry::KeyValue::new("service.name", "imgpipe"),
                opentelemetry::KeyValue::new("process.pid", 42i64),
            ])
            .build();
        Fixture {
            registry,
            resource,
            records,
        }
    }

    /// What opentelemetry-otlp would send for `records`: SpanData and opentelemetry-proto.
    fn reference(
        f: &Fixture,
        records: &[SpanRecord],
        limits: &Limits,
    ) -> ExportTraceServiceRequest {
        let view = f.registry.view();
        let scope = crate::resource::scope();
        let spans = records
            .iter()
            .map(|r| to_span_data_limited(r.clone(), &view, &scope, limits).unwrap())
            .collect();
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans, &(&f.resource).into()),
        }
    }

    fn encode_all(
        f: &Fixture,
        records: &[SpanRecord],
        limits: Limits,
        max: usize,
    ) -> Vec<EncodedRequest> {
        let mut encoder = RequestEncoder::new(&f.resource, limits, max);
        let view = f.registry.view();
        for r in records {
            assert!(encoder.add(r.clone(), &view));
        }
        encoder.finish()
    }

    #[test]
    fn every_kind_of_span_decodes_to_what_the_reference_path_sends() {
        let f = fixture();
        for limits in [
            Limits::default(),
            // Cuts every string attribute, the fragments' included.
            Limits {
                value_length: Some(5),
                ..Limits::default()
            },
            // Pushes the spans with many attributes onto the reference path.
            Limits {
                attribute_count: 6,
                ..Limits::default()
            },
        ] {
            let requests = encode_all(&f, &f.records, limits, usize::MAX);
            assert_eq!(requests.len(), 1);
            assert_eq!(requests[0].spans, f.records.len() as u64);
            let decoded = ExportTraceServiceRequest::decode(requests[0].body.as_slice()).unwrap();
            assert_eq!(decoded, reference(&f, &f.records, &limits), "{limits:?}");
        }
    }

    #[test]
    fn the_fast_path_is_byte_for_byte_prost() {
        // Not only equal once decoded: the same bytes, so receivers see nothing unusual.
        let f = fixture();
        let common = &f.records[..5];
        let requests = encode_all(&f, common, Limits::default(), usize::MAX);
        assert_eq!(
            requests[0].body,
            reference(&f, common, &Limits::default()).encode_to_vec()
        );
    }

    #[test]
    fn requests_stay_under_the_size_limit_and_keep_every_span_in_order() {
        let f = fixture();
        let records: Vec<SpanRecord> = (0..100u64)
            .map(|i| SpanRecord {
                span_id: i + 1,
                ..f.records[i as usize % f.records.len()].clone()
            })
            .collect();
        let max = 4096;
        let requests = encode_all(&f, &records, Limits::default(), max);
        assert!(requests.len() > 3, "{}", requests.len());
        let mut ids = Vec::new();
        for request in &requests {
            assert!(request.body.len() <= max, "{}", request.body.len());
            let decoded = ExportTraceServiceRequest::decode(request.body.as_slice()).unwrap();
            let spans = &decoded.resource_spans[0].scope_spans[0].spans;
            assert_eq!(spans.len() as u64, request.spans);
            ids.extend(
                spans
                    .iter()
                    .map(|s| u64::from_be_bytes(s.span_id[..].try_into().unwrap())),
            );
        }
        assert_eq!(ids, (1..=100).collect::<Vec<_>>());
    }

    #[test]
    fn a_span_larger_than_the_limit_travels_alone() {
        let f = fixture();
        let requests = encode_all(&f, &f.records[..3], Limits::default(), 10);
        assert_eq!(
            requests.iter().map(|r| r.spans).collect::<Vec<_>>(),
            [1, 1, 1]
        );
    }

    #[test]
    fn an_unknown_function_is_refused_and_the_request_goes_on() {
        let f = fixture();
        let mut encoder = RequestEncoder::new(&f.resource, Limits::default(), usize::MAX);
        let view = f.registry.view();
        assert!(encoder.add(f.records[0].clone(), &view));
        let unknown = SpanRecord {
            function: 99,
            ..f.records[0].clone()
        };
        assert!(!encoder.add(unknown.clone(), &view));
        assert!(!encoder.add(
            SpanRecord {
                stack: Some(Box::new([])),
                ..unknown
            },
            &view
        ));
        let requests = encoder.finish();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].spans, 1);
        assert!(encoder.finish().is_empty());
    }
}
