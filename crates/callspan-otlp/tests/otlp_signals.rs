//! One OTLP client for every signal, against real receivers on 127.0.0.1: a tonic gRPC server
//! running opentelemetry-proto's generated `TraceService` and `MetricsService`, and a hyper
//! OTLP/HTTP server with `/v1/traces` and `/v1/metrics`. A metrics request goes through the
//! same client, headers and compression as the spans, to the metrics service, and its
//! `partial_success.rejected_data_points` comes back; a receiver without a metrics service
//! (Jaeger answers `UNIMPLEMENTED` or 404) is reported as its own error kind, at once.

use bytes::Bytes;
use callspan_core::config::Config;
use callspan_otlp::otlp_client::{Accepted, ExportErrorKind, OtlpClient};
use callspan_otlp::resource::{build_resource, scope};
use callspan_otlp::semconv;
use callspan_otlp::signal::Signal;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum,
};
use prost::Message;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tonic::codec::CompressionEncoding;

/// What a receiver got: the decoded requests and the `x-tenant` header each came with.
#[derive(Default)]
struct Received {
    metrics: Mutex<Vec<(ExportMetricsServiceRequest, Option<String>)>>,
    traces: Mutex<Vec<ExportTraceServiceRequest>>,
}

/// The receiver's partial-success answer to every metrics request.
fn metrics_response() -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: Some(ExportMetricsPartialSuccess {
            rejected_data_points: 1,
            error_message: "one exemplar too old".into(),
        }),
    }
}

fn tenant(value: Option<&[u8]>) -> Option<String> {
    value.map(|v| String::from_utf8_lossy(v).into_owned())
}

struct Metrics(Arc<Received>);

#[tonic::async_trait]
impl MetricsService for Metrics {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let header = tenant(request.metadata().get("x-tenant").map(|v| v.as_bytes()));
        self.0
            .metrics
            .lock()
            .unwrap()
            .push((request.into_inner(), header));
        Ok(tonic::Response::new(metrics_response()))
    }
}

struct Traces(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Traces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.traces.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A gRPC receiver with a trace service and, if asked, a metrics service (gzip accepted).
/// It runs on the test's runtime and ends with it.
async fn grpc_receiver(with_metrics: bool) -> (SocketAddr, Arc<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let received = Arc::new(Received::default());
    let traces = TraceServiceServer::new(Traces(received.clone()));
    let metrics = with_metrics.then(|| {
        MetricsServiceServer::new(Metrics(received.clone()))
            .accept_compressed(CompressionEncoding::Gzip)
    });
    let router = tonic::transport::Server::builder()
        .add_service(traces)
        .add_optional_service(metrics);
    tokio::spawn(router.serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)));
    (address, received)
}

/// An OTLP/HTTP receiver with `/v1/traces` and, if asked, `/v1/metrics`; anything else is 404.
async fn http_receiver(with_metrics: bool) -> (SocketAddr, Arc<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let received = Arc::new(Received::default());
    let state = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            let service = hyper::service::service_fn(move |request| {
                handle_http(request, state.clone(), with_metrics)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (address, received)
}

async fn handle_http(
    request: http::Request<hyper::body::Incoming>,
    received: Arc<Received>,
    with_metrics: bool,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    assert_eq!(
        headers[http::header::CONTENT_TYPE],
        "application/x-protobuf"
    );
    let mut body = request
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    if headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip")
    {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(body.as_slice())
            .read_to_end(&mut plain)
            .unwrap();
        body = plain;
    }
    let reply = |status: u16, body: Vec<u8>| {
        Ok(http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .unwrap())
    };
    match path.as_str() {
        "/v1/metrics" if with_metrics => {
            let request = ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
            let header = tenant(headers.get("x-tenant").map(|v| v.as_bytes()));
            received.metrics.lock().unwrap().push((request, header));
            reply(200, metrics_response().encode_to_vec())
        }
        "/v1/traces" => {
            let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
            received.traces.lock().unwrap().push(request);
            reply(200, ExportTraceServiceResponse::default().encode_to_vec())
        }
        _ => reply(404, Vec::new()),
    }
}

/// `callspan.calls` for one caller edge, the way the metrics feature will send it.
fn metrics_request() -> ExportMetricsServiceRequest {
    let text = |key: &str, value: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    };
    let point = NumberDataPoint {
        attributes: vec![
            text(semconv::CODE_FUNCTION_NAME, "imgpipe.apply_transform"),
            text(
                semconv::CALLER_FUNCTION_NAME,
                "imgpipe.Rotator.rotate_image",
            ),
        ],
        start_time_unix_nano: 1_700_000_000_000_000_000,
        time_unix_nano: 1_700_000_060_000_000_000,
        value: Some(number_data_point::Value::AsInt(42)),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(build_resource(&Config::defaults())),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics: vec![Metric {
                    name: "callspan.calls".into(),
                    unit: "{call}".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![point],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn client(protocol: &str, endpoint: &str, gzip: bool, signal: Signal) -> OtlpClient {
    // The signal's own variables: the metrics client reads OTEL_EXPORTER_OTLP_METRICS_*.
    let rows = signal.rows();
    let mut env = vec![
        (rows.protocol.name(), protocol),
        (rows.endpoint.name(), endpoint),
        (rows.headers.name(), "x-tenant=imaging"),
        (rows.timeout.name(), "5000"),
    ];
    if gzip {
        env.push((rows.compression.name(), "gzip"));
    }
    let (config, warnings) = Config::from_pairs(&env, &[]);
    assert!(warnings.is_empty(), "{warnings:?}");
    OtlpClient::build(&config, signal).unwrap()
}

/// The endpoint of a signal on a receiver: the gRPC address, or the full OTLP/HTTP URL.
fn endpoint(protocol: &str, address: SocketAddr, path: &str) -> String {
    match protocol {
        "grpc" => format!("http://{address}"),
        _ => format!("http://{address}{path}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_request_reaches_the_metrics_service_over_grpc_and_http() {
    for protocol in ["grpc", "http/protobuf"] {
        for gzip in [false, true] {
            let (address, received) = match protocol {
                "grpc" => grpc_receiver(true).await,
                _ => http_receiver(true).await,
            };
            let request = metrics_request();
            let metrics = client(
                protocol,
                &endpoint(protocol, address, "/v1/metrics"),
                gzip,
                Signal::Metrics,
            );
            let accepted = metrics
                .export(Bytes::from(request.encode_to_vec()))
                .await
                .unwrap_or_else(|e| panic!("{protocol}, gzip {gzip}: {e}"));
            // The metrics response type, read: rejected_data_points, not rejected_spans.
            assert_eq!(
                accepted,
                Accepted {
                    rejected: 1,
                    message: "one exemplar too old".into()
                },
                "{protocol}"
            );
            let got = received.metrics.lock().unwrap();
            assert_eq!(got.len(), 1, "{protocol}");
            assert_eq!(got[0].0, request, "{protocol}");
            assert_eq!(got[0].1.as_deref(), Some("imaging"), "{protocol}");
            assert!(received.traces.lock().unwrap().is_empty());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_without_a_metrics_service_is_a_distinct_error_at_once() {
    for protocol in ["grpc", "http/protobuf"] {
        let (address, received) = match protocol {
            "grpc" => grpc_receiver(false).await,
            _ => http_receiver(false).await,
        };
        let metrics = client(
            protocol,
            &endpoint(protocol, address, "/v1/metrics"),
            false,
            Signal::Metrics,
        );
        let error = metrics
            .export(Bytes::from(metrics_request().encode_to_vec()))
            .await
            .unwrap_err();
        assert_eq!(
            error.kind,
            ExportErrorKind::NoService,
            "{protocol}: {error}"
        );
        // Not retried: one attempt, no backoff.
        assert!(!error.message.contains("retr"), "{error}");
        assert!(error.message.contains("no OTLP metrics service"), "{error}");

        // The same receiver takes spans: traces are unaffected.
        let traces = client(
            protocol,
            &endpoint(protocol, address, "/v1/traces"),
            false,
            Signal::Traces,
        );
        let spans = ExportTraceServiceRequest::default();
        assert_eq!(
            traces
                .export(Bytes::from(spans.encode_to_vec()))
                .await
                .unwrap(),
            Accepted::default()
        );
        assert_eq!(received.traces.lock().unwrap().len(), 1, "{protocol}");
        assert!(received.metrics.lock().unwrap().is_empty());
    }
}
