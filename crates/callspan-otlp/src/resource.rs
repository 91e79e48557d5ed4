//! The OpenTelemetry resource and instrumentation scope every callspan span is reported under.

use callspan_core::config::Config;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;

/// `unknown_service:<executable>`, the spec's default `service.name`.
fn unknown_service() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "python".into());
    format!("unknown_service:{exe}")
}

/// Builds the resource: `OTEL_RESOURCE_ATTRIBUTES`, then `service.name` (`OTEL_SERVICE_NAME`
/// wins over a `service.name` in the attributes), `telemetry.sdk.*` and `process.pid`.
pub fn build_resource(config: &Config) -> Resource {
    let mut attrs: Vec<KeyValue> = config
        .resource_attributes
        .iter()
        .filter(|(k, _)| k != "service.name" || config.service_name.is_none())
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    let has_service = attrs.iter().any(|kv| kv.key.as_str() == "service.name");
    if !has_service {
        let name = config.service_name.clone().unwrap_or_else(unknown_service);
        attrs.push(KeyValue::new("service.name", name));
    }
    attrs.push(KeyValue::new("telemetry.sdk.name", "callspan"));
    attrs.push(KeyValue::new("telemetry.sdk.language", "python"));
    attrs.push(KeyValue::new("telemetry.sdk.version", crate::VERSION));
    attrs.push(KeyValue::new("process.pid", i64::from(std::process::id())));
    Resource::builder_empty().with_attributes(attrs).build()
}

/// The instrumentation scope: `callspan` and the package version.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("callspan")
        .with_version(crate::VERSION)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::{Key, Value};

    fn get(r: &Resource, key: &'static str) -> Option<Value> {
        r.get(&Key::from_static_str(key))
    }

    #[test]
    fn service_name_precedence() {
        let mut c = Config::defaults();
        c.resource_attributes = vec![
            ("service.name".into(), "from-attrs".into()),
            ("team".into(), "img".into()),
        ];
        let r = build_resource(&c);
        assert_eq!(get(&r, "service.name"), Some(Value::from("from-attrs")));
        assert_eq!(get(&r, "team"), Some(Value::from("img")));
        c.service_name = Some("svc".into());
        let r = build_resource(&c);
        assert_eq!(get(&r, "service.name"), Some(Value::from("svc")));
        assert_eq!(get(&r, "telemetry.sdk.name"), Some(Value::from("callspan")));
    }

    #[test]
    fn default_service_name_names_the_executable() {
        let r = build_resource(&Config::defaults());
        let name = get(&r, "service.name").unwrap().to_string();
        assert!(name.starts_with("unknown_service:"), "{name}");
    }
}
