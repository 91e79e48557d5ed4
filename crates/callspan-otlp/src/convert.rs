//! Span records to OpenTelemetry `SpanData`: where ids become strings again.
//!
//! Runs on the exporter thread only, holding the registry's read lock once per batch. Attribute
//! names are the span contract in DESIGN.md; tests downstream assert them on the wire.

use callspan_core::record::SpanRecord;
use callspan_core::registry::{AttributeValue, RegistryView};
use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn time(unix_ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(unix_ns)
}

fn string(s: &'static str) -> Value {
    Value::String(StringValue::from(s))
}

fn attribute_value(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::Str(s) => string(s),
        AttributeValue::Int(i) => Value::I64(*i),
        AttributeValue::Float(f) => Value::F64(*f),
        AttributeValue::Bool(b) => Value::Bool(*b),
    }
}

fn span_events(mut events: Vec<Event>, limit: usize) -> SpanEvents {
    // SpanEvents is non-exhaustive; its fields are public.
    let mut out = SpanEvents::default();
    out.dropped_count = u32::try_from(events.len().saturating_sub(limit)).unwrap_or(u32::MAX);
    events.truncate(limit);
    out.events = events;
    out
}

/// The OpenTelemetry span limits (`OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`,
/// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`, `OTEL_SPAN_EVENT_COUNT_LIMIT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest string value kept, in characters; `None`: no limit.
    pub value_length: Option<usize>,
    /// Attributes kept per span.
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

    fn truncate(&self, value: Value) -> Value {
        match value {
            Value::String(s) => match self.truncate_str(s.as_str()) {
                Cow::Owned(cut) => Value::String(StringValue::from(cut)),
                Cow::Borrowed(_) => Value::String(s),
            },
            value => value,
        }
    }

    /// Applies the value length and count limits; returns the attributes kept and how many
    /// were dropped.
    fn apply(&self, attributes: Vec<KeyValue>) -> (Vec<KeyValue>, u32) {
        let dropped = attributes.len().saturating_sub(self.attribute_count);
        let kept = attributes
            .into_iter()
            .take(self.attribute_count)
            .map(|kv| {
                if self.value_length.is_some() {
                    KeyValue::new(kv.key, self.truncate(kv.value))
                } else {
                    kv
                }
            })
            .collect();
        (kept, u32::try_from(dropped).unwrap_or(u32::MAX))
    }
}

/// `code.stacktrace`: the frames beyond the caller, most recent call last, the way Python
/// prints a traceback.
fn stacktrace(view: &RegistryView<'_>, frames: &[callspan_core::record::CallerSite]) -> String {
    let mut out = String::new();
    for site in frames.iter().rev() {
        push_frame_line(&mut out, view, site);
    }
    out
}

/// `  File "{file}", line {line}, in {function}` as Python's traceback prints a frame (the
/// function module-qualified, as in `code.function.name`; no source line).
fn push_frame_line(
    out: &mut String,
    view: &RegistryView<'_>,
    site: &callspan_core::record::CallerSite,
) {
    use std::fmt::Write;
    if let Some(code) = view.code(site.code) {
        let _ = writeln!(
            out,
            "  File \"{}\", line {}, in {}",
            code.file, site.line, code.function_name
        );
    } else {
        let _ = writeln!(
            out,
            "  File \"<unknown>\", line {}, in <unknown>",
            site.line
        );
    }
}

/// `exception.stacktrace`: the exception's traceback laid out like Python's
/// `traceback.format_exception` (without source lines or chained exceptions), rendered here on
/// the exporter thread from the code ids and lines captured when it left the traced call.
pub fn exception_stacktrace(
    view: &RegistryView<'_>,
    e: &callspan_core::record::ExceptionInfo,
) -> String {
    let mut out = String::new();
    if let Some(traceback) = &e.traceback {
        out.push_str("Traceback (most recent call last):\n");
        for site in traceback.iter() {
            push_frame_line(&mut out, view, site);
        }
    }
    out.push_str(&e.type_name);
    if !e.message.is_empty() {
        out.push_str(": ");
        out.push_str(&e.message);
    }
    out.push('\n');
    out
}

/// Converts one record with the default limits.
pub fn to_span_data(
    record: SpanRecord,
    view: &RegistryView<'_>,
    scope: &InstrumentationScope,
) -> Option<SpanData> {
    to_span_data_limited(record, view, scope, &Limits::default())
}

/// Converts one record; `None` if it names a function the registry does not know (a bug).
pub fn to_span_data_limited(
    record: SpanRecord,
    view: &RegistryView<'_>,
    scope: &InstrumentationScope,
    limits: &Limits,
) -> Option<SpanData> {
    use callspan_core::config::Capture;
    let captured = |bit: u8| record.omitted & bit == 0;
    let function = view.function(record.function)?;
    let mut attributes = Vec::with_capacity(10 + function.attributes.len());
    attributes.push(KeyValue::new(
        "code.function.name",
        string(function.function_name),
    ));
    if let Some(file) = &function.file {
        attributes.push(KeyValue::new("code.file.path", string(file)));
    }
    if function.line > 0 {
        attributes.push(KeyValue::new("code.line.number", i64::from(function.line)));
    }
    if let Some(code) = view.code(record.caller.code) {
        if captured(Capture::FUNCTION) {
            attributes.push(KeyValue::new(
                "caller.function.name",
                string(code.function_name),
            ));
        }
        if captured(Capture::FILE) {
            attributes.push(KeyValue::new("caller.file.path", string(code.file)));
        }
        if captured(Capture::LINE) {
            attributes.push(KeyValue::new(
                "caller.line.number",
                i64::from(record.caller.line),
            ));
        }
    }
    if let Some(class) = view.class(record.caller.class) {
        attributes.push(KeyValue::new("caller.class.name", string(class)));
    }
    if let Some(frames) = &record.stack {
        attributes.push(KeyValue::new("code.stacktrace", stacktrace(view, frames)));
    }
    if let Some(thread) = view.thread(record.thread) {
        // Thread idents are pthread_t values; OTLP ints are signed, so keep the bit pattern.
        attributes.push(KeyValue::new("thread.id", thread.id as i64));
        attributes.push(KeyValue::new("thread.name", string(thread.name)));
    }
    for (key, value) in &function.attributes {
        attributes.push(KeyValue::new(*key, attribute_value(value)));
    }

    let (attributes, dropped_attributes_count) = limits.apply(attributes);
    let (status, events) = match &record.error {
        None => (Status::Unset, Vec::new()),
        Some(e) => {
            let (event_attributes, dropped) = limits.apply(vec![
                KeyValue::new("exception.type", e.type_name.to_string()),
                KeyValue::new("exception.message", e.message.to_string()),
                KeyValue::new("exception.stacktrace", exception_stacktrace(view, e)),
            ]);
            let event = Event::new(
                "exception",
                time(record.end_unix_ns),
                event_attributes,
                dropped,
            );
            let description = if e.message.is_empty() {
                e.type_name.to_string()
            } else {
                format!("{}: {}", e.type_name, e.message)
            };
            (Status::error(description), vec![event])
        }
    };

    Some(SpanData {
        span_context: SpanContext::new(
            TraceId::from(record.trace_id),
            SpanId::from(record.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::from(record.parent_span_id),
        parent_span_is_remote: record.parent_is_remote,
        span_kind: SpanKind::Internal,
        name: Cow::Borrowed(function.span_name),
        start_time: time(record.start_unix_ns),
        end_time: time(record.end_unix_ns),
        attributes,
        dropped_attributes_count,
        events: span_events(events, limits.event_count),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use callspan_core::record::{CallerSite, ExceptionInfo};
    use callspan_core::registry::{intern, CodeInfo, FunctionInfo, Registry, ThreadInfo};

    fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn record_becomes_contract_span() {
        let reg = Registry::new();
        let f = reg.add_function(FunctionInfo {
            span_name: intern("Transformer.apply_transform"),
            function_name: intern("imgpipe.Transformer.apply_transform"),
            file: Some(intern("/app/imgpipe.py")),
            line: 12,
            attributes: vec![(intern("team"), AttributeValue::Str(intern("img")))],
        });
        let code = reg.add_code(
            1,
            CodeInfo {
                function_name: intern("imgpipe.Rotator.rotate_image"),
                file: intern("/app/imgpipe.py"),
            },
        );
        let class = reg.add_class(2, intern("imgpipe.Rotator"));
        let thread = reg.add_thread(ThreadInfo {
            id: 77,
            name: intern("MainThread"),
        });
        let record = SpanRecord {
            trace_id: 5,
            span_id: 6,
            parent_span_id: 0,
            start_unix_ns: 1_000,
            end_unix_ns: 3_000,
            function: f,
            caller: CallerSite {
                code,
                line: 31,
                class,
            },
            thread,
            ..Default::default()
        };
        let span = to_span_data(record, &reg.view(), &crate::resource::scope()).unwrap();
        assert_eq!(span.name, "Transformer.apply_transform");
        assert_eq!(span.span_kind, SpanKind::Internal);
        assert_eq!(attr(&span, "caller.line.number"), Some(&Value::I64(31)));
        assert_eq!(
            attr(&span, "caller.class.name").unwrap().as_str(),
            "imgpipe.Rotator"
        );
        assert_eq!(attr(&span, "code.line.number"), Some(&Value::I64(12)));
        assert_eq!(attr(&span, "thread.name").unwrap().as_str(), "MainThread");
        assert_eq!(attr(&span, "team").unwrap().as_str(), "img");
        assert_eq!(span.parent_span_id, SpanId::INVALID);
        assert_eq!(span.status, Status::Unset);
    }

    #[test]
    fn error_becomes_status_and_event_and_no_class_means_no_attribute() {
        let reg = Registry::new();
        let f = reg.add_function(FunctionInfo {
            span_name: intern("f"),
            function_name: intern("m.f"),
            file: None,
            line: 0,
            attributes: vec![],
        });
        let record = SpanRecord {
            trace_id: 1,
            span_id: 2,
            function: f,
            error: Some(Box::new(ExceptionInfo {
                type_name: "ValueError".into(),
                message: "bad".into(),
                traceback: None,
            })),
            ..Default::default()
        };
        let span = to_span_data(record, &reg.view(), &crate::resource::scope()).unwrap();
        assert_eq!(span.status, Status::error("ValueError: bad"));
        assert_eq!(span.events.events[0].name, "exception");
        assert!(attr(&span, "caller.class.name").is_none());
        assert!(attr(&span, "code.file.path").is_none());
    }

    #[test]
    fn limits_capture_and_stack() {
        use callspan_core::config::Capture;
        let reg = Registry::new();
        let f = reg.add_function(FunctionInfo {
            span_name: intern("f"),
            function_name: intern("m.f"),
            file: Some(intern("/app/m.py")),
            line: 3,
            attributes: vec![(intern("note"), AttributeValue::Str(intern("abcdefghij")))],
        });
        let caller = reg.add_code(
            1,
            CodeInfo {
                function_name: intern("m.g"),
                file: intern("/app/m.py"),
            },
        );
        let outer = reg.add_code(
            2,
            CodeInfo {
                function_name: intern("m.main"),
                file: intern("/app/main.py"),
            },
        );
        let record = SpanRecord {
            trace_id: 1,
            span_id: 2,
            function: f,
            caller: CallerSite {
                code: caller,
                line: 7,
                class: 0,
            },
            omitted: Capture::FILE | Capture::LINE,
            stack: Some(
                vec![CallerSite {
                    code: outer,
                    line: 12,
                    class: 0,
                }]
                .into_boxed_slice(),
            ),
            error: Some(Box::new(ExceptionInfo {
                type_name: "ValueError".into(),
                message: "m".repeat(50).into(),
                traceback: None,
            })),
            ..Default::default()
        };
        let limits = Limits {
            value_length: Some(4),
            attribute_count: 4,
            event_count: 0,
        };
        let span =
            to_span_data_limited(record, &reg.view(), &crate::resource::scope(), &limits).unwrap();
        let keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "code.function.name",
                "code.file.path",
                "code.line.number",
                "caller.function.name"
            ]
        );
        assert_eq!(attr(&span, "code.function.name").unwrap().as_str(), "m.f");
        assert_eq!(attr(&span, "caller.function.name").unwrap().as_str(), "m.g");
        assert_eq!(span.dropped_attributes_count, 2); // code.stacktrace and note
        assert!(span.events.events.is_empty());
        assert_eq!(span.events.dropped_count, 1);

        let text = stacktrace(
            &reg.view(),
            &[CallerSite {
                code: outer,
                line: 12,
                class: 0,
            }],
        );
        assert_eq!(text, "  File \"/app/main.py\", line 12, in m.main\n");
        let long = Limits {
            value_length: Some(4),
            ..Limits::default()
        };
        assert_eq!(long.truncate(Value::from("abcdefghij")).as_str(), "abcd");
    }

    #[test]
    fn exception_stacktrace_has_pythons_layout_from_shared_frames() {
        use callspan_core::record::TracebackEntry;
        use std::sync::Arc;
        let reg = Registry::new();
        let main = reg.add_code(
            1,
            CodeInfo {
                function_name: intern("app.main"),
                file: intern("/app/main.py"),
            },
        );
        let parse = reg.add_code(
            2,
            CodeInfo {
                function_name: intern("app.parse"),
                file: intern("/app/parse.py"),
            },
        );
        let site = |code, line| CallerSite {
            code,
            line,
            class: 0,
        };
        let inner = Arc::new(TracebackEntry {
            site: site(parse, 9),
            next: None,
        });
        let outer = Arc::new(TracebackEntry {
            site: site(main, 3),
            next: Some(inner.clone()),
        });
        let info = |traceback, message: &str| ExceptionInfo {
            type_name: "ValueError".into(),
            message: message.into(),
            traceback,
        };
        assert_eq!(
            exception_stacktrace(&reg.view(), &info(Some(outer), "bad")),
            "Traceback (most recent call last):\n  File \"/app/main.py\", line 3, in app.main\n  \
             File \"/app/parse.py\", line 9, in app.parse\nValueError: bad\n"
        );
        assert_eq!(
            exception_stacktrace(&reg.view(), &info(Some(inner), "")),
            "Traceback (most recent call last):\n  File \"/app/parse.py\", line 9, in app.parse\nValueError\n"
        );
        assert_eq!(
            exception_stacktrace(&reg.view(), &info(None, "x")),
            "ValueError: x\n"
        );
    }

    #[test]
    fn unknown_function_is_rejected() {
        let reg = Registry::new();
        let r = SpanRecord {
            function: 9,
            ..Default::default()
        };
        assert!(to_span_data(r, &reg.view(), &crate::resource::scope()).is_none());
    }
}
