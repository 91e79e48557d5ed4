//! The OpenTelemetry resource and instrumentation scope every callspan span is reported under,
//! as the OTLP messages that go on the wire.

use crate::semconv;
use callspan_core::config::Config;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// `unknown_service:<executable>`, the spec's default `service.name`.
fn unknown_service() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "python".into());
    format!("unknown_service:{exe}")
}

/// An OTLP string attribute.
pub(crate) fn string_value(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

/// An OTLP int attribute.
pub(crate) fn int_value(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
    }
}

/// Builds the resource: `OTEL_RESOURCE_ATTRIBUTES` (a key given twice keeps its last value),
/// then `service.name` (`OTEL_SERVICE_NAME` wins over a `service.name` in the attributes),
/// `telemetry.sdk.*` and `process.pid`.
pub fn build_resource(config: &Config) -> Resource {
    let mut attributes: Vec<KeyValue> = Vec::new();
    let mut set = |kv: KeyValue| match attributes.iter_mut().find(|a| a.key == kv.key) {
        Some(existing) => *existing = kv,
        None => attributes.push(kv),
    };
    for (key, value) in &config.resource_attributes {
        if key != semconv::SERVICE_NAME || config.service_name.is_none() {
            set(string_value(key, value.clone()));
        }
    }
    if let Some(name) = &config.service_name {
        set(string_value(semconv::SERVICE_NAME, name.clone()));
    }
    set(string_value(semconv::TELEMETRY_SDK_NAME, "callspan"));
    set(string_value(semconv::TELEMETRY_SDK_LANGUAGE, "python"));
    set(string_value(semconv::TELEMETRY_SDK_VERSION, crate::VERSION));
    set(int_value(
        semconv::PROCESS_PID,
        i64::from(std::process::id()),
    ));
    if !attributes.iter().any(|a| a.key == semconv::SERVICE_NAME) {
        attributes.insert(0, string_value(semconv::SERVICE_NAME, unknown_service()));
    }
    Resource {
        attributes,
        dropped_attributes_count: 0,
        entity_refs: vec![],
    }
}

/// The instrumentation scope: `callspan` and the package version.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: semconv::SCOPE_NAME.to_owned(),
        version: crate::VERSION.to_owned(),
        attributes: vec![],
        dropped_attributes_count: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(r: &'a Resource, key: &str) -> Option<&'a any_value::Value> {
        r.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn text(s: &str) -> Option<any_value::Value> {
        Some(any_value::Value::StringValue(s.to_owned()))
    }

    #[test]
    fn service_name_precedence() {
        let mut c = Config::defaults();
        c.resource_attributes = vec![
            (semconv::SERVICE_NAME.into(), "from-attrs".into()),
            ("team".into(), "img".into()),
            ("team".into(), "imaging".into()),
        ];
        let r = build_resource(&c);
        assert_eq!(get(&r, semconv::SERVICE_NAME).cloned(), text("from-attrs"));
        assert_eq!(get(&r, "team").cloned(), text("imaging"));
        assert_eq!(r.attributes.iter().filter(|a| a.key == "team").count(), 1);
        c.service_name = Some("svc".into());
        let r = build_resource(&c);
        assert_eq!(get(&r, semconv::SERVICE_NAME).cloned(), text("svc"));
        assert_eq!(
            get(&r, semconv::TELEMETRY_SDK_NAME).cloned(),
            text("callspan")
        );
        assert_eq!(
            get(&r, semconv::PROCESS_PID).cloned(),
            Some(any_value::Value::IntValue(i64::from(std::process::id())))
        );
    }

    #[test]
    fn default_service_name_names_the_executable() {
        let r = build_resource(&Config::defaults());
        let Some(any_value::Value::StringValue(name)) = get(&r, semconv::SERVICE_NAME) else {
            panic!("no service.name in {r:?}");
        };
        assert!(name.starts_with("unknown_service:"), "{name}");
    }
}
