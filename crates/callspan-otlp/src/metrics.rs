//! Caller-edge counts as OTLP metrics: `callspan.calls` and `callspan.call.duration`.
//!
//! [`MetricsEncoder::encode`] turns a [`callspan_core::edges::snapshot`] into one
//! `ExportMetricsServiceRequest`: a monotonic sum of calls and an explicit-bucket histogram of
//! durations in seconds, one point per caller edge, with the span attribute names as metric
//! attributes (`code.function.name`, `caller.function.name`, `caller.file.path`,
//! `caller.line.number`, `caller.class.name`, and `error.type` on failed calls). A histogram
//! point carries, for each bucket, the latest sampled span whose duration fell in it as an
//! exemplar, so a backend can jump from "calls by caller" (a slow bucket included) to a real
//! trace. Cumulative by default; delta
//! (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta` or `lowmemory`: both make counters
//! and histograms delta) sends what changed since the last export.
//!
//! Built with prost messages rather than the hand-written span encoder: one request a minute,
//! not a hundred thousand spans a second.

use crate::resource::{int_value, scope, string_value};
use crate::semconv;
use callspan_core::config::Temporality;
use callspan_core::edges::{EdgeKey, EdgeTotals, BUCKETS, BUCKET_BOUNDS_NS};
use callspan_core::registry::RegistryView;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use std::collections::HashMap;

/// The sum of calls per caller edge.
pub const CALLS_METRIC: &str = "callspan.calls";
/// The histogram of call durations per caller edge, in seconds.
pub const DURATION_METRIC: &str = "callspan.call.duration";
/// `error.type`, the class of the exception that ended a failed call.
pub const ERROR_TYPE: &str = "error.type";

/// What an edge had at the last export (delta temporality subtracts it).
#[derive(Clone, Copy, Debug)]
struct Previous {
    calls: u64,
    total_ns: u64,
    buckets: [u64; BUCKETS],
}

/// Encodes edge snapshots, remembering what a delta export needs.
#[derive(Debug)]
pub struct MetricsEncoder {
    resource: Resource,
    delta: bool,
    /// Cumulative points start here (when counting started in this process).
    start_unix_ns: u64,
    /// The previous export's time: the start of a delta point.
    last_unix_ns: u64,
    previous: HashMap<EdgeKey, Previous>,
}

impl MetricsEncoder {
    /// An encoder for `resource`, counting from `start_unix_ns`.
    pub fn new(resource: Resource, temporality: Temporality, start_unix_ns: u64) -> Self {
        MetricsEncoder {
            resource,
            delta: temporality != Temporality::Cumulative,
            start_unix_ns,
            last_unix_ns: start_unix_ns,
            previous: HashMap::new(),
        }
    }

    /// Whether points are deltas (a failed export loses them).
    pub fn is_delta(&self) -> bool {
        self.delta
    }

    /// One `ExportMetricsServiceRequest` of `totals` at `now_unix_ns`, and its data points;
    /// `None` when there is nothing to send (no edge, or nothing new for delta).
    pub fn encode(
        &mut self,
        totals: &[EdgeTotals],
        view: &RegistryView<'_>,
        now_unix_ns: u64,
    ) -> Option<(Vec<u8>, usize)> {
        let start = if self.delta {
            self.last_unix_ns
        } else {
            self.start_unix_ns
        };
        let mut sums = Vec::with_capacity(totals.len());
        let mut histograms = Vec::with_capacity(totals.len());
        for t in totals {
            let (calls, total_ns, buckets) = if self.delta {
                let before = self.previous.insert(
                    t.key,
                    Previous {
                        calls: t.calls,
                        total_ns: t.total_ns,
                        buckets: t.buckets,
                    },
                );
                match before {
                    Some(p) => {
                        let mut buckets = t.buckets;
                        for (b, p) in buckets.iter_mut().zip(p.buckets) {
                            *b = b.wrapping_sub(p);
                        }
                        (
                            t.calls.wrapping_sub(p.calls),
                            t.total_ns.wrapping_sub(p.total_ns),
                            buckets,
                        )
                    }
                    None => (t.calls, t.total_ns, t.buckets),
                }
            } else {
                (t.calls, t.total_ns, t.buckets)
            };
            if calls == 0 {
                continue;
            }
            let attributes = attributes(&t.key, view);
            sums.push(NumberDataPoint {
                attributes: attributes.clone(),
                start_time_unix_nano: start,
                time_unix_nano: now_unix_ns,
                value: Some(number_data_point::Value::AsInt(calls as i64)),
                ..Default::default()
            });
            let exemplars = t
                .exemplars
                .iter()
                .filter(|e| e.time_unix_ns >= start)
                .map(|e| Exemplar {
                    time_unix_nano: e.time_unix_ns,
                    span_id: e.span_id.to_be_bytes().to_vec(),
                    trace_id: e.trace_id.to_be_bytes().to_vec(),
                    value: Some(exemplar::Value::AsDouble(seconds(e.duration_ns))),
                    ..Default::default()
                })
                .collect();
            histograms.push(HistogramDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: now_unix_ns,
                count: calls,
                sum: Some(seconds(total_ns)),
                bucket_counts: buckets.to_vec(),
                explicit_bounds: BUCKET_BOUNDS_NS.iter().map(|&b| seconds(b)).collect(),
                exemplars,
                ..Default::default()
            });
        }
        self.last_unix_ns = now_unix_ns;
        if sums.is_empty() {
            return None;
        }
        let points = sums.len() + histograms.len();
        let temporality = if self.delta {
            AggregationTemporality::Delta
        } else {
            AggregationTemporality::Cumulative
        } as i32;
        let metrics = vec![
            Metric {
                name: CALLS_METRIC.to_owned(),
                description: "Calls of a traced function, per caller".to_owned(),
                unit: "{call}".to_owned(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: sums,
                    aggregation_temporality: temporality,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            Metric {
                name: DURATION_METRIC.to_owned(),
                description: "Duration of the calls of a traced function, per caller".to_owned(),
                unit: "s".to_owned(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: histograms,
                    aggregation_temporality: temporality,
                })),
                ..Default::default()
            },
        ];
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        Some((request.encode_to_vec(), points))
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The span attributes of an edge, as metric attributes (empty values left out).
fn attributes(key: &EdgeKey, view: &RegistryView<'_>) -> Vec<KeyValue> {
    let n = key.names(view);
    let mut out = vec![string_value(semconv::CODE_FUNCTION_NAME, n.function)];
    if !n.caller_function.is_empty() {
        out.push(string_value(
            semconv::CALLER_FUNCTION_NAME,
            n.caller_function,
        ));
    }
    if !n.caller_file.is_empty() {
        out.push(string_value(semconv::CALLER_FILE_PATH, n.caller_file));
    }
    if n.caller_line != 0 {
        out.push(int_value(
            semconv::CALLER_LINE_NUMBER,
            i64::from(n.caller_line),
        ));
    }
    if !n.caller_class.is_empty() {
        out.push(string_value(semconv::CALLER_CLASS_NAME, n.caller_class));
    }
    if !n.error_type.is_empty() {
        out.push(string_value(ERROR_TYPE, n.error_type));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use callspan_core::edges::Exemplar as EdgeExemplar;
    use callspan_core::registry::{intern, CodeInfo, FunctionInfo, Registry};

    fn registry() -> Registry {
        let r = Registry::new();
        r.add_function(FunctionInfo {
            span_name: intern("f"),
            function_name: intern("m.f"),
            file: Some(intern("/m.py")),
            line: 3,
            attributes: vec![],
        });
        r.add_code(
            1,
            CodeInfo {
                function_name: intern("m.g"),
                file: intern("/m.py"),
            },
        );
        r.add_class(2, intern("ValueError"));
        r
    }

    fn totals(calls: u64, error: u32) -> EdgeTotals {
        let mut buckets = [0; BUCKETS];
        buckets[1] = calls;
        EdgeTotals {
            key: EdgeKey {
                callee: 1,
                code: 1,
                line: 9,
                class: 0,
                error,
            },
            calls,
            total_ns: calls * 2_000,
            buckets,
            exemplars: vec![EdgeExemplar {
                trace_id: 0xabc,
                span_id: 0xdef,
                duration_ns: 2_000,
                time_unix_ns: 50,
            }],
        }
    }

    fn decode(bytes: &[u8]) -> Vec<Metric> {
        let request = ExportMetricsServiceRequest::decode(bytes).unwrap();
        request.resource_metrics[0].scope_metrics[0].metrics.clone()
    }

    #[test]
    fn cumulative_points_carry_the_span_attributes_and_an_exemplar() {
        let r = registry();
        let mut encoder = MetricsEncoder::new(Resource::default(), Temporality::Cumulative, 10);
        let (bytes, points) = encoder
            .encode(&[totals(5, 0), totals(2, 1)], &r.view(), 100)
            .unwrap();
        assert_eq!(points, 4);
        let metrics = decode(&bytes);
        let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
            panic!("not a sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(5))
        );
        let keys: Vec<_> = sum.data_points[1]
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "code.function.name",
                "caller.function.name",
                "caller.file.path",
                "caller.line.number",
                "error.type"
            ]
        );
        let Some(metric::Data::Histogram(h)) = &metrics[1].data else {
            panic!("not a histogram")
        };
        let point = &h.data_points[0];
        assert_eq!(point.count, 5);
        assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
        assert_eq!(point.start_time_unix_nano, 10);
        assert_eq!(point.exemplars[0].span_id, 0xdefu64.to_be_bytes().to_vec());
        assert_eq!(
            point.exemplars[0].trace_id,
            0xabcu128.to_be_bytes().to_vec()
        );
    }

    #[test]
    fn delta_sends_what_changed_since_the_last_export() {
        let r = registry();
        let mut encoder = MetricsEncoder::new(Resource::default(), Temporality::Delta, 10);
        encoder.encode(&[totals(5, 0)], &r.view(), 100).unwrap();
        assert!(encoder.encode(&[totals(5, 0)], &r.view(), 200).is_none());
        let (bytes, _) = encoder.encode(&[totals(8, 0)], &r.view(), 300).unwrap();
        let metrics = decode(&bytes);
        let Some(metric::Data::Histogram(h)) = &metrics[1].data else {
            panic!("not a histogram")
        };
        assert_eq!(h.data_points[0].count, 3);
        assert_eq!(h.data_points[0].start_time_unix_nano, 200);
        assert_eq!(
            h.aggregation_temporality,
            AggregationTemporality::Delta as i32
        );
        // The exemplar is older than this interval.
        assert!(h.data_points[0].exemplars.is_empty());
    }
}
