//! The OTLP signals callspan can export — traces now, metrics next — and what the one OTLP
//! client (`otlp_client.rs`) needs to know of each: the gRPC method, the OTLP/HTTP path, and
//! how to read the receiver's answer.
//!
//! Everything else (retry, TLS, headers, compression, timeouts) is the same for every signal.
//! A receiver without a signal's service (Jaeger has no metrics service) answers gRPC
//! `UNIMPLEMENTED` or HTTP 404; the client reports that as
//! [`crate::otlp_client::ExportErrorKind::NoService`], so that a caller can say so once and
//! stop sending that signal.

use crate::otlp_client::Accepted;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

/// One kind of OTLP telemetry, sent to its own service: the configuration's signal, whose
/// settings are `Config::otlp(signal)`.
pub use callspan_core::config::Signal;

/// What the OTLP wire protocol says about a signal. A trait, not inherent methods, so that the
/// signal type itself may live in the configuration (`callspan_core::config`).
pub trait OtlpService: Copy {
    /// The signal's name, as in `OTEL_<NAME>_EXPORTER`: `traces`, `metrics`.
    fn name(self) -> &'static str;
    /// The gRPC method an export calls.
    fn grpc_path(self) -> &'static str;
    /// The path appended to an OTLP/HTTP base endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    fn http_path(self) -> &'static str;
    /// The gRPC service, for messages: `MetricsService`.
    fn service_name(self) -> &'static str;
    /// What a request carries, for messages: `spans`, `data points`.
    fn items(self) -> &'static str;
    /// Reads an export response: how many items the receiver rejected
    /// (`partial_success.rejected_spans` / `rejected_data_points`) and why.
    fn accepted(self, response: &[u8]) -> Result<Accepted, prost::DecodeError>;
}

impl OtlpService for Signal {
    fn name(self) -> &'static str {
        Signal::name(self)
    }

    fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }

    fn http_path(self) -> &'static str {
        Signal::http_path(self)
    }

    fn service_name(self) -> &'static str {
        match self {
            Signal::Traces => "TraceService",
            Signal::Metrics => "MetricsService",
        }
    }

    fn items(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "data points",
        }
    }

    fn accepted(self, response: &[u8]) -> Result<Accepted, prost::DecodeError> {
        let (rejected, message) = match self {
            Signal::Traces => ExportTraceServiceResponse::decode(response)?
                .partial_success
                .map(|p| (p.rejected_spans, p.error_message)),
            Signal::Metrics => ExportMetricsServiceResponse::decode(response)?
                .partial_success
                .map(|p| (p.rejected_data_points, p.error_message)),
        }
        .unwrap_or_default();
        Ok(Accepted {
            rejected: u64::try_from(rejected).unwrap_or(0),
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;

    #[test]
    fn each_signal_reads_its_own_partial_success() {
        let traces = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "too old".into(),
            }),
        };
        assert_eq!(
            Signal::Traces.accepted(&traces.encode_to_vec()).unwrap(),
            Accepted {
                rejected: 3,
                message: "too old".into()
            }
        );
        let metrics = ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: 5,
                error_message: "no exemplars".into(),
            }),
        };
        assert_eq!(
            Signal::Metrics.accepted(&metrics.encode_to_vec()).unwrap(),
            Accepted {
                rejected: 5,
                message: "no exemplars".into()
            }
        );
        // An empty body is a full success.
        assert_eq!(Signal::Metrics.accepted(&[]).unwrap(), Accepted::default());
        assert!(Signal::Traces.accepted(&[0xff]).is_err());
    }

    #[test]
    fn paths_name_each_signals_service() {
        for signal in [Signal::Traces, Signal::Metrics] {
            let (grpc, http) = (signal.grpc_path(), signal.http_path());
            assert!(grpc.ends_with(&format!("{}/Export", signal.service_name())));
            let noun = http.trim_start_matches("/v1/");
            assert_eq!(noun, signal.name());
            assert!(
                grpc.contains(&format!(".{}", &noun[..noun.len() - 1])),
                "{grpc}"
            );
        }
    }
}
