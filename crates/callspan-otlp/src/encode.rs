//! Span records straight to OTLP protobuf: the bytes of `ExportTraceServiceRequest`s, without
//! building `SpanData` or prost structs on the way. Every output takes these bytes: the network
//! sends them, the file and the console decode them (`transport.rs`).
//!
//! Converting each record to `SpanData` and then to opentelemetry-proto's prost messages costs
//! about twenty allocations per span and was most of the exporter's ~1.5 µs per span. Here
//! everything a span repeats from call to call — its name and callee attributes, the caller's
//! function and file, the class, the thread — is encoded once per registry id and kept as a
//! ready-made byte fragment; a span is then its ids, times and line number around a few
//! `memcpy`s. The rarer parts are written per span on the same path: the exception event and
//! error status, `code.stacktrace`, and the span limits (`OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`
//! keeps the first attributes and counts the rest in `dropped_attributes_count`,
//! `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT` cuts strings, `OTEL_SPAN_EVENT_COUNT_LIMIT` drops the
//! exception event). The output is byte for byte what prost writes for the same message; the
//! tests build that message field by field and compare.
//!
//! Requests hold at most one batch and stay under `max_request_bytes`
//! (`crate::exporter::MAX_REQUEST_BYTES`, the receiver's 4 MiB limit less headroom).
//!
//! Each span is written once, straight into the pending request's buffer: the buffer starts
//! with room for the envelope (request → resource spans → scope spans, whose lengths are known
//! only at the end), which is written into that room when the request is finished, and the
//! body handed on is the buffer from where the envelope starts ([`Bytes`], no copy). A span's
//! own length is reserved as two bytes (spans of 128 bytes to 16 KiB, nearly all of them) and
//! fixed up in place; a shorter or longer span moves its bytes once. Encoding a span into a
//! scratch buffer, then into the request's spans, then into the request body cost three copies
//! of every byte: a third of the exporter thread's instructions.

use crate::protowire::{
    field_len, first_fields_len, put_bytes, put_fixed32, put_fixed64, put_key, put_len_prefix,
    put_varint, put_varint_field, varint_len, FIXED64, LEN, VARINT,
};
use crate::semconv;
use bytes::Bytes;
use callspan_core::config::Capture;
use callspan_core::record::{CallerSite, ExceptionInfo, SpanRecord};
use callspan_core::registry::{AttributeValue, FunctionInfo, RegistryView};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use std::borrow::Cow;

/// OTLP field numbers used here (opentelemetry-proto's `trace.proto`, `common.proto`).
mod field {
    pub(super) const REQUEST_RESOURCE_SPANS: u32 = 1;
    pub(super) const RESOURCE_SPANS_RESOURCE: u32 = 1;
    pub(super) const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
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
    pub(super) const SPAN_DROPPED_ATTRIBUTES_COUNT: u32 = 10;
    pub(super) const SPAN_EVENTS: u32 = 11;
    pub(super) const SPAN_DROPPED_EVENTS_COUNT: u32 = 12;
    pub(super) const SPAN_STATUS: u32 = 15;
    pub(super) const SPAN_FLAGS: u32 = 16;
    pub(super) const EVENT_TIME: u32 = 1;
    pub(super) const EVENT_NAME: u32 = 2;
    pub(super) const EVENT_ATTRIBUTES: u32 = 3;
    pub(super) const EVENT_DROPPED_ATTRIBUTES_COUNT: u32 = 4;
    pub(super) const STATUS_MESSAGE: u32 = 2;
    pub(super) const STATUS_CODE: u32 = 3;
    pub(super) const KEY_VALUE_KEY: u32 = 1;
    pub(super) const KEY_VALUE_VALUE: u32 = 2;
    pub(super) const ANY_STRING: u32 = 1;
    pub(super) const ANY_BOOL: u32 = 2;
    pub(super) const ANY_INT: u32 = 3;
    pub(super) const ANY_DOUBLE: u32 = 4;
}

/// `SPAN_KIND_INTERNAL`.
const KIND_INTERNAL: u64 = 1;
/// `STATUS_CODE_ERROR`.
const STATUS_ERROR: u64 = 2;
/// Trace flags `sampled`, plus `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`.
const FLAGS_LOCAL_PARENT: u32 = 0x01 | 0x100;
/// `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
const FLAG_REMOTE_PARENT: u32 = 0x200;

/// The OpenTelemetry span limits (`OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`,
/// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`, `OTEL_SPAN_EVENT_COUNT_LIMIT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest string value kept, in characters; `None`: no limit.
    pub value_length: Option<usize>,
    /// Attributes kept per span (and per event).
    pub attribute_count: usize,
    /// Events kept per span.
    pub event_count: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            value_length: None,
            attribute_count: 128,
            event_count: 128,
        }
    }
}

impl Limits {
    /// The limits a configuration asks for.
    pub fn from_config(config: &callspan_core::config::Config) -> Limits {
        Limits {
            value_length: config.attribute_value_length_limit,
            attribute_count: config.span_attribute_count_limit,
            event_count: config.span_event_count_limit,
        }
    }

    /// `text` cut to the value length limit (in characters).
    pub(crate) fn truncate_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.value_length {
            Some(max) if text.chars().count() > max => Cow::Owned(text.chars().take(max).collect()),
            _ => Cow::Borrowed(text),
        }
    }
}

/// Bytes reserved for a span's length before it is encoded: a varint of two bytes holds 128 to
/// 16,383, the size of nearly every span.
const RESERVED_LEN_BYTES: usize = 2;

/// One encoded request body, ready to send.
#[derive(Debug)]
pub struct EncodedRequest {
    /// The serialized `ExportTraceServiceRequest`.
    pub body: Bytes,
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

/// How many more attributes a span or event may carry, and how many it has dropped: applies
/// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT` to fragments that hold one or several attributes.
#[derive(Debug)]
struct AttributeBudget {
    room: usize,
    dropped: u32,
}

impl AttributeBudget {
    fn new(limits: &Limits) -> AttributeBudget {
        AttributeBudget {
            room: limits.attribute_count,
            dropped: 0,
        }
    }

    /// Appends a fragment of `count` encoded attributes, or as many of its first ones as fit.
    #[inline(always)]
    fn put(&mut self, out: &mut Vec<u8>, fragment: &[u8], count: usize) {
        if count <= self.room {
            out.extend_from_slice(fragment);
            self.room -= count;
        } else {
            self.put_cut(out, fragment, count);
        }
    }

    /// [`Self::put`] when the fragment does not fit whole (only with a low
    /// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`).
    #[cold]
    #[inline(never)]
    fn put_cut(&mut self, out: &mut Vec<u8>, fragment: &[u8], count: usize) {
        out.extend_from_slice(&fragment[..first_fields_len(fragment, self.room)]);
        self.dropped = self
            .dropped
            .saturating_add(u32::try_from(count - self.room).unwrap_or(u32::MAX));
        self.room = 0;
    }

    /// Makes room for one attribute the caller then writes; false (and counted) if none is left.
    #[inline]
    fn take_one(&mut self) -> bool {
        if self.room > 0 {
            self.room -= 1;
            true
        } else {
            self.dropped = self.dropped.saturating_add(1);
            false
        }
    }
}

/// Turns span records into OTLP request bodies. Lives on the exporter thread; its caches grow
/// with the registry and are never invalidated (registry entries never change).
#[derive(Debug)]
pub struct RequestEncoder {
    limits: Limits,
    /// `ResourceSpans.resource`, encoded.
    resource: Vec<u8>,
    /// `ScopeSpans.scope`, encoded.
    scope: Vec<u8>,
    max_request_bytes: usize,
    functions: Fragments<FunctionFragments>,
    codes: Fragments<CodeFragments>,
    classes: Fragments<Box<[u8]>>,
    threads: Fragments<Box<[u8]>>,
    /// The pending request: [`Self::envelope_bound`] bytes of room for the envelope, then its
    /// spans, each as a `ScopeSpans.spans` field. Empty between requests.
    body: Vec<u8>,
    span_count: u64,
    /// The size of the last request: the next one's buffer is allocated that large at once,
    /// not grown by doubling (each growth copied the request so far: 15 % of the thread's
    /// instructions).
    last_body_len: usize,
    /// One span's `code.stacktrace` while it is written.
    stack_text: String,
    done: Vec<EncodedRequest>,
}

impl RequestEncoder {
    /// An encoder for spans of `resource` under callspan's scope, with `limits` applied and
    /// requests kept under `max_request_bytes`.
    pub fn new(resource: &Resource, limits: Limits, max_request_bytes: usize) -> RequestEncoder {
        RequestEncoder {
            limits,
            resource: resource.encode_to_vec(),
            scope: crate::resource::scope().encode_to_vec(),
            max_request_bytes,
            functions: Fragments::default(),
            codes: Fragments::default(),
            classes: Fragments::default(),
            threads: Fragments::default(),
            body: Vec::new(),
            span_count: 0,
            last_body_len: 0,
            stack_text: String::new(),
            done: Vec::new(),
        }
    }

    /// Adds one span to the pending request (starting a new one first if it would outgrow the
    /// size limit). False if the record names a function the registry does not know.
    pub fn add(&mut self, record: &SpanRecord, view: &RegistryView<'_>) -> bool {
        let room = self.envelope_bound();
        if self.body.is_empty() {
            self.body
                .reserve(self.last_body_len.max(room) + self.last_body_len / 8);
            self.body.resize(room, 0);
        }
        let start = self.body.len();
        put_key(&mut self.body, field::SCOPE_SPANS_SPANS, LEN);
        let len_at = self.body.len();
        self.body.extend_from_slice(&[0; RESERVED_LEN_BYTES]);
        if !self.encode_span(record, view) {
            self.body.truncate(start);
            return false;
        }
        let len = self.body.len() - len_at - RESERVED_LEN_BYTES;
        if varint_len(len as u64) == RESERVED_LEN_BYTES {
            self.body[len_at] = (len as u8) | 0x80;
            self.body[len_at + 1] = (len >> 7) as u8;
        } else {
            let mut varint = Vec::new();
            put_varint(&mut varint, len as u64);
            self.body
                .splice(len_at..len_at + RESERVED_LEN_BYTES, varint);
        }
        if self.span_count > 0 && self.body.len() > self.max_request_bytes {
            // This span goes into the next request (its bytes are copied once: rare).
            let span = self.body.split_off(start);
            self.finish_request();
            self.body
                .reserve(self.last_body_len + self.last_body_len / 8);
            self.body.resize(room, 0);
            self.body.extend_from_slice(&span);
        }
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
        // Keys and lengths of the four envelope fields (≤ 6 bytes each), the resource, the scope.
        4 * 6 + self.resource.len() + self.scope.len()
    }

    /// Writes the envelope into the room before the pending spans and moves the request to
    /// `done`.
    fn finish_request(&mut self) {
        let room = self.envelope_bound();
        let spans_len = self.body.len() - room;
        let scope_spans_len = field_len(field::SCOPE_SPANS_SCOPE, self.scope.len()) + spans_len;
        let resource_spans_len = field_len(field::RESOURCE_SPANS_RESOURCE, self.resource.len())
            + field_len(field::RESOURCE_SPANS_SCOPE_SPANS, scope_spans_len);
        let mut envelope = Vec::with_capacity(room);
        put_len_prefix(
            &mut envelope,
            field::REQUEST_RESOURCE_SPANS,
            resource_spans_len,
        );
        put_bytes(
            &mut envelope,
            field::RESOURCE_SPANS_RESOURCE,
            &self.resource,
        );
        put_len_prefix(
            &mut envelope,
            field::RESOURCE_SPANS_SCOPE_SPANS,
            scope_spans_len,
        );
        put_bytes(&mut envelope, field::SCOPE_SPANS_SCOPE, &self.scope);
        let begin = room - envelope.len();
        self.body[begin..room].copy_from_slice(&envelope);
        self.last_body_len = self.body.len();
        let body = Bytes::from(std::mem::take(&mut self.body)).slice(begin..);
        self.done.push(EncodedRequest {
            body,
            spans: std::mem::take(&mut self.span_count),
        });
    }

    /// One span's fields appended to `body`: cached fragments, then the per-span parts. False
    /// (and nothing written): unknown function.
    fn encode_span(&mut self, record: &SpanRecord, view: &RegistryView<'_>) -> bool {
        let limits = self.limits;
        let Some(function) = self.functions.get_or_insert(record.function, || {
            view.function(record.function)
                .map(|f| function_fragments(f, &limits))
        }) else {
            return false;
        };
        let captured = |bit: u8| record.omitted & bit == 0;
        let code = if record.caller.code == 0 {
            None
        } else {
            self.codes.get_or_insert(record.caller.code, || {
                view.code(record.caller.code).map(|c| CodeFragments {
                    function: string_attribute(
                        semconv::CALLER_FUNCTION_NAME,
                        c.function_name,
                        &limits,
                    ),
                    file: string_attribute(semconv::CALLER_FILE_PATH, c.file, &limits),
                })
            })
        };
        let class = if record.caller.class == 0 {
            None
        } else {
            self.classes.get_or_insert(record.caller.class, || {
                view.class(record.caller.class)
                    .map(|name| string_attribute(semconv::CALLER_CLASS_NAME, name, &limits))
            })
        };
        let thread = if record.thread == 0 {
            None
        } else {
            self.threads.get_or_insert(record.thread, || {
                view.thread(record.thread).map(|t| {
                    let mut out = Vec::new();
                    // Thread idents are pthread_t values; OTLP ints are signed: keep the bits.
                    put_int_attribute(
                        &mut out,
                        field::SPAN_ATTRIBUTES,
                        semconv::THREAD_ID,
                        t.id as i64,
                    );
                    put_string_attribute(
                        &mut out,
                        field::SPAN_ATTRIBUTES,
                        semconv::THREAD_NAME,
                        &limits.truncate_str(t.name),
                    );
                    out.into_boxed_slice()
                })
            })
        };

        let out = &mut self.body;
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

        // The span contract's order: callee, caller, class, stack, thread, static attributes.
        let mut budget = AttributeBudget::new(&limits);
        budget.put(out, &function.head, function.head_count);
        if let Some(code) = code {
            if captured(Capture::FUNCTION) {
                budget.put(out, &code.function, 1);
            }
            if captured(Capture::FILE) {
                budget.put(out, &code.file, 1);
            }
            if captured(Capture::LINE) && budget.take_one() {
                put_int_attribute(
                    out,
                    field::SPAN_ATTRIBUTES,
                    semconv::CALLER_LINE_NUMBER,
                    i64::from(record.caller.line),
                );
            }
        }
        if let Some(class) = class {
            budget.put(out, class, 1);
        }
        if record.instance != 0 && budget.take_one() {
            put_string_attribute(
                out,
                field::SPAN_ATTRIBUTES,
                semconv::CALLER_INSTANCE_ID,
                &limits.truncate_str(&format!("{:#x}", record.instance)),
            );
        }
        if let Some(frames) = &record.stack {
            if budget.take_one() {
                let text = &mut self.stack_text;
                text.clear();
                write_stacktrace(text, view, frames);
                put_string_attribute(
                    out,
                    field::SPAN_ATTRIBUTES,
                    semconv::CODE_STACKTRACE,
                    &limits.truncate_str(text),
                );
            }
        }
        if let Some(thread) = thread {
            budget.put(out, thread, 2);
        }
        budget.put(out, &function.tail, function.tail_count);
        if budget.dropped > 0 {
            put_varint_field(
                out,
                field::SPAN_DROPPED_ATTRIBUTES_COUNT,
                u64::from(budget.dropped),
            );
        }

        match &record.error {
            // Status UNSET with no message: an empty message, as opentelemetry-proto sends it.
            None => put_len_prefix(out, field::SPAN_STATUS, 0),
            Some(error) => {
                if limits.event_count > 0 {
                    let text = &mut self.stack_text;
                    text.clear();
                    write_exception_stacktrace(text, view, error);
                    put_exception_event(out, record.end_unix_ns, error, text, &limits);
                } else {
                    put_varint_field(out, field::SPAN_DROPPED_EVENTS_COUNT, 1);
                }
                put_error_status(out, error);
            }
        }
        let flags = FLAGS_LOCAL_PARENT
            | if record.parent_is_remote {
                FLAG_REMOTE_PARENT
            } else {
                0
            };
        put_fixed32(out, field::SPAN_FLAGS, flags);
        true
    }
}

/// `code.stacktrace`: the frames beyond the caller, most recent call last, the way Python
/// prints a traceback, appended to `out` (pieces pushed, not formatted: this runs per frame).
fn write_stacktrace(out: &mut String, view: &RegistryView<'_>, frames: &[CallerSite]) {
    for site in frames.iter().rev() {
        push_frame_line(out, view, site);
    }
}

/// `exception.stacktrace`: the exception's traceback laid out like Python's
/// `traceback.format_exception` (without source lines or chained exceptions), rendered here on
/// the exporter thread from the code ids and lines captured when it left the traced call.
pub fn write_exception_stacktrace(out: &mut String, view: &RegistryView<'_>, e: &ExceptionInfo) {
    if let Some(traceback) = &e.traceback {
        out.push_str("Traceback (most recent call last):\n");
        for site in traceback.iter() {
            push_frame_line(out, view, site);
        }
    }
    out.push_str(&e.type_name);
    if !e.message.is_empty() {
        out.push_str(": ");
        out.push_str(&e.message);
    }
    out.push('\n');
}

/// `  File "{file}", line {line}, in {function}` as Python's traceback prints a frame (the
/// function module-qualified, as in `code.function.name`; no source line).
fn push_frame_line(out: &mut String, view: &RegistryView<'_>, site: &CallerSite) {
    let (file, function) = match view.code(site.code) {
        Some(code) => (code.file, code.function_name),
        None => ("<unknown>", "<unknown>"),
    };
    out.push_str("  File \"");
    out.push_str(file);
    out.push_str("\", line ");
    push_decimal(out, site.line);
    out.push_str(", in ");
    out.push_str(function);
    out.push('\n');
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// The `exception` event (OpenTelemetry's exception semantic conventions) at the span's end.
fn put_exception_event(
    out: &mut Vec<u8>,
    time_unix_ns: u64,
    error: &ExceptionInfo,
    stacktrace: &str,
    limits: &Limits,
) {
    let mut event =
        Vec::with_capacity(64 + error.type_name.len() + error.message.len() + stacktrace.len());
    put_fixed64(&mut event, field::EVENT_TIME, time_unix_ns);
    put_bytes(
        &mut event,
        field::EVENT_NAME,
        semconv::EXCEPTION_EVENT.as_bytes(),
    );
    let mut budget = AttributeBudget::new(limits);
    for (key, value) in [
        (semconv::EXCEPTION_TYPE, &*error.type_name),
        (semconv::EXCEPTION_MESSAGE, &*error.message),
        (semconv::EXCEPTION_STACKTRACE, stacktrace),
    ] {
        if budget.take_one() {
            put_string_attribute(
                &mut event,
                field::EVENT_ATTRIBUTES,
                key,
                &limits.truncate_str(value),
            );
        }
    }
    if budget.dropped > 0 {
        put_varint_field(
            &mut event,
            field::EVENT_DROPPED_ATTRIBUTES_COUNT,
            u64::from(budget.dropped),
        );
    }
    put_bytes(out, field::SPAN_EVENTS, &event);
}

/// `STATUS_CODE_ERROR` with `Type: message` (or `Type` when the message is empty).
fn put_error_status(out: &mut Vec<u8>, error: &ExceptionInfo) {
    let separator = if error.message.is_empty() { "" } else { ": " };
    let message_len = error.type_name.len() + separator.len() + error.message.len();
    let status_len = field_len(field::STATUS_MESSAGE, message_len) + 1 + varint_len(STATUS_ERROR);
    put_len_prefix(out, field::SPAN_STATUS, status_len);
    put_len_prefix(out, field::STATUS_MESSAGE, message_len);
    out.extend_from_slice(error.type_name.as_bytes());
    out.extend_from_slice(separator.as_bytes());
    out.extend_from_slice(error.message.as_bytes());
    put_varint_field(out, field::STATUS_CODE, STATUS_ERROR);
}

fn function_fragments(function: &FunctionInfo, limits: &Limits) -> FunctionFragments {
    let mut name = Vec::new();
    put_bytes(&mut name, field::SPAN_NAME, function.span_name.as_bytes());
    let mut head = Vec::new();
    let mut head_count = 1;
    head.extend_from_slice(&string_attribute(
        semconv::CODE_FUNCTION_NAME,
        function.function_name,
        limits,
    ));
    if let Some(file) = function.file {
        head.extend_from_slice(&string_attribute(semconv::CODE_FILE_PATH, file, limits));
        head_count += 1;
    }
    if function.line > 0 {
        put_int_attribute(
            &mut head,
            field::SPAN_ATTRIBUTES,
            semconv::CODE_LINE_NUMBER,
            i64::from(function.line),
        );
        head_count += 1;
    }
    let mut tail = Vec::new();
    for (key, value) in &function.attributes {
        let attributes = field::SPAN_ATTRIBUTES;
        match value {
            AttributeValue::Str(s) => {
                put_string_attribute(&mut tail, attributes, key, &limits.truncate_str(s));
            }
            AttributeValue::Int(i) => put_int_attribute(&mut tail, attributes, key, *i),
            AttributeValue::Float(f) => put_key_value(&mut tail, attributes, key, 1 + 8, |v| {
                put_key(v, field::ANY_DOUBLE, FIXED64);
                v.extend_from_slice(&f.to_bits().to_le_bytes());
            }),
            AttributeValue::Bool(b) => put_key_value(&mut tail, attributes, key, 1 + 1, |v| {
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

/// Appends a `KeyValue` as field `number` (`Span.attributes`, `Event.attributes`): `key` and
/// the `AnyValue` of `any_len` bytes that `write_any` appends. Lengths are known up front, so
/// nothing is allocated. An empty key is left out, as prost leaves out empty strings; a oneof
/// value is always written, even when it is a default (`""`, `0`, `false`).
#[inline(always)]
fn put_key_value(
    out: &mut Vec<u8>,
    number: u32,
    key: &str,
    any_len: usize,
    write_any: impl FnOnce(&mut Vec<u8>),
) {
    let key_len = if key.is_empty() {
        0
    } else {
        field_len(field::KEY_VALUE_KEY, key.len())
    };
    put_len_prefix(
        out,
        number,
        key_len + field_len(field::KEY_VALUE_VALUE, any_len),
    );
    if !key.is_empty() {
        put_bytes(out, field::KEY_VALUE_KEY, key.as_bytes());
    }
    put_len_prefix(out, field::KEY_VALUE_VALUE, any_len);
    write_any(out);
}

/// Appends a string attribute (already cut to the length limit).
#[inline]
fn put_string_attribute(out: &mut Vec<u8>, number: u32, key: &str, value: &str) {
    let any_len = field_len(field::ANY_STRING, value.len());
    put_key_value(out, number, key, any_len, |v| {
        put_bytes(v, field::ANY_STRING, value.as_bytes());
    });
}

/// Appends an int attribute (int64 as its two's-complement bits, as protobuf writes it).
#[inline]
fn put_int_attribute(out: &mut Vec<u8>, number: u32, key: &str, value: i64) {
    let bits = value as u64;
    put_key_value(out, number, key, 1 + varint_len(bits), |v| {
        put_key(v, field::ANY_INT, VARINT);
        put_varint(v, bits);
    });
}

/// A span string attribute, its value cut to the length limit, as a fragment.
fn string_attribute(key: &str, value: &str, limits: &Limits) -> Box<[u8]> {
    let mut out = Vec::new();
    put_string_attribute(
        &mut out,
        field::SPAN_ATTRIBUTES,
        key,
        &limits.truncate_str(value),
    );
    out.into_boxed_slice()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::resource::{int_value, scope, string_value};
    use callspan_core::registry::{intern, CodeInfo, Registry, ThreadInfo};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{
        span, status, ResourceSpans, ScopeSpans, Span, Status,
    };

    pub(crate) struct Fixture {
        pub(crate) registry: Registry,
        pub(crate) resource: Resource,
        /// Plain; decorated with a remote parent; no caller or thread; caller function and
        /// line left out; no file or class; failed (twice); with a stack; failed with a stack.
        pub(crate) records: Vec<SpanRecord>,
    }

    /// A registry with two functions (one with static attributes of every kind), a caller,
    /// a class, a thread, and records covering every part of the contract.
    pub(crate) fn fixture() -> Fixture {
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
                (intern(""), AttributeValue::Int(0)),
            ],
        });
        let code = registry.add_code(
            1,
            CodeInfo {
                function_name: intern("imgpipe.Rotator.rotate_image"),
                file: intern("/app/imgpipe.py"),
            },
        );
        let outer = registry.add_code(
            3,
            CodeInfo {
                function_name: intern("imgpipe.main"),
                file: intern("/app/main.py"),
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
            instance: 0,
            stack: None,
        };
        let error = |message: &str| {
            Some(Box::new(ExceptionInfo {
                type_name: "ValueError".into(),
                message: message.into(),
                traceback: Some(std::sync::Arc::new(callspan_core::record::TracebackEntry {
                    site: CallerSite {
                        code: 1,
                        line: 12,
                        class: 0,
                    },
                    next: None,
                })),
            }))
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
                error: error("bad pixel"),
                ..base.clone()
            },
            SpanRecord {
                error: error(""),
                function: decorated,
                ..base.clone()
            },
            SpanRecord {
                stack: Some(
                    vec![
                        CallerSite {
                            code: outer,
                            line: 12,
                            class: 0,
                        },
                        base.caller,
                    ]
                    .into_boxed_slice()
                    .into(),
                ),
                ..base.clone()
            },
            SpanRecord {
                stack: Some(Box::new(Box::new([]))),
                error: error("both"),
                function: decorated,
                ..base.clone()
            },
            SpanRecord {
                instance: 0x7f12_3456_789a,
                ..base.clone()
            },
        ];
        let resource = Resource {
            attributes: vec![
                string_value(semconv::SERVICE_NAME, "imgpipe"),
                int_value(semconv::PROCESS_PID, 42),
            ],
            dropped_attributes_count: 0,
            entity_refs: vec![],
        };
        Fixture {
            registry,
            resource,
            records,
        }
    }

    fn any(value: any_value::Value) -> Option<AnyValue> {
        Some(AnyValue { value: Some(value) })
    }

    /// The span contract of DESIGN.md written out as opentelemetry-proto's message, field by
    /// field: what the encoder must produce.
    fn reference_span(r: &SpanRecord, view: &RegistryView<'_>, limits: &Limits) -> Span {
        let text = |key: &str, value: &str| string_value(key, limits.truncate_str(value));
        let captured = |bit: u8| r.omitted & bit == 0;
        let function = view.function(r.function).unwrap();
        let mut attributes = vec![text(semconv::CODE_FUNCTION_NAME, function.function_name)];
        if let Some(file) = function.file {
            attributes.push(text(semconv::CODE_FILE_PATH, file));
        }
        if function.line > 0 {
            attributes.push(int_value(
                semconv::CODE_LINE_NUMBER,
                i64::from(function.line),
            ));
        }
        if let Some(code) = view.code(r.caller.code) {
            if captured(Capture::FUNCTION) {
                attributes.push(text(semconv::CALLER_FUNCTION_NAME, code.function_name));
            }
            if captured(Capture::FILE) {
                attributes.push(text(semconv::CALLER_FILE_PATH, code.file));
            }
            if captured(Capture::LINE) {
                attributes.push(int_value(
                    semconv::CALLER_LINE_NUMBER,
                    i64::from(r.caller.line),
                ));
            }
        }
        if let Some(class) = view.class(r.caller.class) {
            attributes.push(text(semconv::CALLER_CLASS_NAME, class));
        }
        if r.instance != 0 {
            attributes.push(text(
                semconv::CALLER_INSTANCE_ID,
                &format!("{:#x}", r.instance),
            ));
        }
        if let Some(frames) = &r.stack {
            let mut trace = String::new();
            for site in frames.iter().rev() {
                let code = view.code(site.code).unwrap();
                trace += &format!(
                    "  File \"{}\", line {}, in {}\n",
                    code.file, site.line, code.function_name
                );
            }
            attributes.push(text(semconv::CODE_STACKTRACE, &trace));
        }
        if let Some(thread) = view.thread(r.thread) {
            attributes.push(int_value(semconv::THREAD_ID, thread.id as i64));
            attributes.push(text(semconv::THREAD_NAME, thread.name));
        }
        for (key, value) in &function.attributes {
            attributes.push(match value {
                AttributeValue::Str(s) => text(key, s),
                AttributeValue::Int(i) => int_value(key, *i),
                AttributeValue::Float(f) => KeyValue {
                    key: key.to_string(),
                    key_strindex: 0,
                    value: any(any_value::Value::DoubleValue(*f)),
                },
                AttributeValue::Bool(b) => KeyValue {
                    key: key.to_string(),
                    key_strindex: 0,
                    value: any(any_value::Value::BoolValue(*b)),
                },
            });
        }
        let dropped_attributes_count = attributes.len().saturating_sub(limits.attribute_count);
        attributes.truncate(limits.attribute_count);

        let (mut events, status) = match &r.error {
            None => (vec![], Status::default()),
            Some(e) => {
                let mut event_attributes = vec![
                    text(semconv::EXCEPTION_TYPE, &e.type_name),
                    text(semconv::EXCEPTION_MESSAGE, &e.message),
                    text(semconv::EXCEPTION_STACKTRACE, &{
                        let mut t = String::new();
                        write_exception_stacktrace(&mut t, view, e);
                        t
                    }),
                ];
                let dropped = event_attributes
                    .len()
                    .saturating_sub(limits.attribute_count);
                event_attributes.truncate(limits.attribute_count);
                let event = span::Event {
                    time_unix_nano: r.end_unix_ns,
                    name: semconv::EXCEPTION_EVENT.into(),
                    attributes: event_attributes,
                    dropped_attributes_count: dropped as u32,
                };
                let message = if e.message.is_empty() {
                    e.type_name.to_string()
                } else {
                    format!("{}: {}", e.type_name, e.message)
                };
                let status = Status {
                    message,
                    code: status::StatusCode::Error as i32,
                };
                (vec![event], status)
            }
        };
        let dropped_events_count = events.len().saturating_sub(limits.event_count) as u32;
        events.truncate(limits.event_count);
        Span {
            trace_id: r.trace_id.to_be_bytes().to_vec(),
            span_id: r.span_id.to_be_bytes().to_vec(),
            trace_state: String::new(),
            parent_span_id: if r.parent_span_id == 0 {
                vec![]
            } else {
                r.parent_span_id.to_be_bytes().to_vec()
            },
            flags: 0x101 | if r.parent_is_remote { 0x200 } else { 0 },
            name: function.span_name.to_owned(),
            kind: span::SpanKind::Internal as i32,
            start_time_unix_nano: r.start_unix_ns,
            end_time_unix_nano: r.end_unix_ns,
            attributes,
            dropped_attributes_count: dropped_attributes_count as u32,
            events,
            dropped_events_count,
            links: vec![],
            dropped_links_count: 0,
            status: Some(status),
        }
    }

    fn reference(
        f: &Fixture,
        records: &[SpanRecord],
        limits: &Limits,
    ) -> ExportTraceServiceRequest {
        let view = f.registry.view();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(f.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans: records
                        .iter()
                        .map(|r| reference_span(r, &view, limits))
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    pub(crate) fn encode_all(
        f: &Fixture,
        records: &[SpanRecord],
        limits: Limits,
        max: usize,
    ) -> Vec<EncodedRequest> {
        let mut encoder = RequestEncoder::new(&f.resource, limits, max);
        let view = f.registry.view();
        for r in records {
            assert!(encoder.add(r, &view));
        }
        encoder.finish()
    }

    #[test]
    fn every_kind_of_span_is_byte_for_byte_what_prost_writes() {
        // Not only equal once decoded: the same bytes, so receivers see nothing unusual.
        let f = fixture();
        for limits in [
            Limits::default(),
            // Cuts every string attribute, the fragments' and the exception's included.
            Limits {
                value_length: Some(5),
                ..Limits::default()
            },
            // Cuts inside the thread fragment and the static attributes.
            Limits {
                attribute_count: 8,
                ..Limits::default()
            },
            // Cuts inside the function's fragment; the exception event keeps two attributes.
            Limits {
                attribute_count: 2,
                ..Limits::default()
            },
            Limits {
                attribute_count: 0,
                event_count: 0,
                value_length: Some(0),
            },
        ] {
            for (i, record) in f.records.iter().enumerate() {
                let requests = encode_all(&f, std::slice::from_ref(record), limits, usize::MAX);
                let expected = reference(&f, std::slice::from_ref(record), &limits);
                let decoded = ExportTraceServiceRequest::decode(&requests[0].body[..]).unwrap();
                assert_eq!(decoded, expected, "record {i}, {limits:?}");
                assert_eq!(
                    requests[0].body,
                    expected.encode_to_vec(),
                    "record {i}, {limits:?}"
                );
            }
            let requests = encode_all(&f, &f.records, limits, usize::MAX);
            assert_eq!(requests.len(), 1);
            assert_eq!(requests[0].spans, f.records.len() as u64);
            assert_eq!(
                requests[0].body,
                reference(&f, &f.records, &limits).encode_to_vec(),
                "{limits:?}"
            );
        }
    }

    #[test]
    fn the_encoder_is_reused_across_batches_with_the_same_result() {
        let f = fixture();
        let mut encoder = RequestEncoder::new(&f.resource, Limits::default(), usize::MAX);
        let view = f.registry.view();
        let expected = reference(&f, &f.records, &Limits::default()).encode_to_vec();
        for _ in 0..3 {
            for r in &f.records {
                assert!(encoder.add(r, &view));
            }
            let requests = encoder.finish();
            assert_eq!(requests.len(), 1);
            assert_eq!(requests[0].body, expected);
        }
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
            let decoded = ExportTraceServiceRequest::decode(&request.body[..]).unwrap();
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
    fn spans_shorter_than_128_bytes_or_longer_than_16_kib_keep_prosts_bytes() {
        // Their lengths do not take the two bytes reserved for them: moved, not mangled.
        let f = fixture();
        let long = SpanRecord {
            error: Some(Box::new(ExceptionInfo {
                type_name: "ValueError".into(),
                message: "x".repeat(20_000).into(),
                traceback: None,
            })),
            ..f.records[0].clone()
        };
        let bare = Limits {
            attribute_count: 0,
            event_count: 0,
            value_length: Some(0),
        };
        let mixed = vec![long.clone(), f.records[0].clone(), long];
        for (records, limits, short, large) in [
            (mixed, Limits::default(), false, true),
            (f.records.clone(), bare, true, false),
        ] {
            let expected = reference(&f, &records, &limits);
            let lengths: Vec<usize> = expected.resource_spans[0].scope_spans[0]
                .spans
                .iter()
                .map(Message::encoded_len)
                .collect();
            assert_eq!(lengths.iter().any(|&n| n < 128), short, "{lengths:?}");
            assert_eq!(lengths.iter().any(|&n| n > 16_383), large, "{lengths:?}");
            let requests = encode_all(&f, &records, limits, usize::MAX);
            assert_eq!(requests[0].body, expected.encode_to_vec(), "{limits:?}");
        }
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
        assert!(encoder.add(&f.records[0], &view));
        let unknown = SpanRecord {
            function: 99,
            ..f.records[0].clone()
        };
        assert!(!encoder.add(&unknown, &view));
        let requests = encoder.finish();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].spans, 1);
        assert_eq!(
            requests[0].body,
            reference(&f, &f.records[..1], &Limits::default()).encode_to_vec()
        );
        assert!(encoder.finish().is_empty());
    }

    #[test]
    fn the_stack_reads_like_a_python_traceback() {
        let f = fixture();
        let view = f.registry.view();
        let frames = f.records[7].stack.as_deref().unwrap();
        let mut text = String::new();
        write_stacktrace(&mut text, &view, frames);
        assert_eq!(
            text,
            "  File \"/app/imgpipe.py\", line 31, in imgpipe.Rotator.rotate_image\n  \
             File \"/app/main.py\", line 12, in imgpipe.main\n"
        );
        for n in [0, 7, 10, 4_294_967_295] {
            let mut decimal = String::new();
            push_decimal(&mut decimal, n);
            assert_eq!(decimal, n.to_string());
        }
        let cut = Limits {
            value_length: Some(4),
            ..Limits::default()
        };
        assert_eq!(cut.truncate_str("résumé"), "résu");
    }
}
