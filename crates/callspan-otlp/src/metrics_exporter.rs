//! The metrics exporter: one named OS thread, `callspan-metrics`, that sends the caller-edge
//! counts every `OTEL_METRIC_EXPORT_INTERVAL`, at `callspan.flush()` and at exit.
//!
//! Each export takes a [`callspan_core::edges::snapshot`] (summing the per-thread counters off
//! the hot path), encodes it ([`crate::metrics`]) and sends it with the same OTLP client and
//! retry rules as the spans ([`crate::otlp_client`], signal [`Signal::Metrics`]), bounded by
//! `OTEL_METRIC_EXPORT_TIMEOUT`; `console` prints each export on stderr instead, as one line of
//! OTLP JSON. A receiver without a metrics service (gRPC `UNIMPLEMENTED`, HTTP 404: Jaeger)
//! gets one warning saying so and how to turn metrics off, and no more metric exports; spans
//! are not affected. Like the span exporter it never touches a Python object.

use crate::metrics::MetricsEncoder;
use crate::otlp_client::{ExportErrorKind, OtlpClient};
use crate::runtime_thread;
use crate::signal::Signal;
use bytes::Bytes;
use callspan_core::clock::now_unix_ns;
use callspan_core::config::{Config, MetricsExporterKind};
use callspan_core::registry::Registry;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

enum Control {
    /// Export now, then answer whether it went out.
    Flush(Sender<bool>),
    /// Export now, answer, and end the thread.
    Shutdown(Sender<bool>),
}

/// Where the points go.
enum Output {
    Otlp(Box<OtlpClient>),
    Console,
    /// The receiver has no metrics service, or the client could not be built.
    Stopped,
}

/// Owns the `callspan-metrics` thread; [`MetricsExporter::shutdown`] ends it.
#[derive(Debug)]
pub struct MetricsExporter {
    control: Sender<Control>,
    handle: Option<JoinHandle<()>>,
    timeout: Duration,
}

impl MetricsExporter {
    /// Starts the thread if `config` asks for metrics (`OTEL_METRICS_EXPORTER` otlp or console).
    pub fn start(
        config: &Config,
        resource: Resource,
        registry: &'static Registry,
    ) -> Option<MetricsExporter> {
        if config.disabled {
            return None;
        }
        if config.metrics_exporters.is_empty() {
            return None;
        }
        let (control, control_rx) = crossbeam_channel::unbounded();
        let interval = config.metric_export_interval.max(Duration::from_millis(1));
        let timeout = config.metric_export_timeout;
        let config = config.clone();
        let encoder = MetricsEncoder::new(resource, config.metrics_temporality, now_unix_ns());
        let handle = runtime_thread::spawn(
            "callspan-metrics",
            config.exporter_nice,
            |e| tracing::warn!("{e}"),
            move |runtime| {
                let outputs = config
                    .metrics_exporters
                    .iter()
                    .map(|kind| match kind {
                        MetricsExporterKind::Console => Output::Console,
                        MetricsExporterKind::Otlp => match runtime
                            .block_on(async { OtlpClient::build(&config, Signal::Metrics) })
                        {
                            Ok(client) => Output::Otlp(Box::new(client)),
                            Err(e) => {
                                tracing::warn!("{e}; metrics are not exported over OTLP");
                                Output::Stopped
                            }
                        },
                    })
                    .collect();
                let mut worker = Worker {
                    runtime,
                    outputs,
                    encoder,
                    registry,
                    timeout,
                };
                worker.run(&control_rx, interval);
                let Worker { runtime, .. } = worker;
                runtime.shutdown_background();
            },
        )
        .map_err(|e| tracing::warn!("{e}"))
        .ok()?;
        Some(MetricsExporter {
            control,
            handle: Some(handle),
            timeout,
        })
    }

    /// Exports the counts now; true when they went out within `timeout`.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.request_flush()
            .is_some_and(|answer| answer.recv_timeout(timeout).unwrap_or(false))
    }

    /// Asks for an export now without waiting; the answer (true: it went out) comes on the
    /// returned channel. None: the thread is gone.
    pub fn request_flush(&self) -> Option<crossbeam_channel::Receiver<bool>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.control.send(Control::Flush(tx)).ok().map(|()| rx)
    }

    /// Exports the counts one last time and ends the thread, waiting at most `timeout` (also
    /// bounded by `OTEL_METRIC_EXPORT_TIMEOUT`).
    pub fn shutdown(self, timeout: Duration) -> bool {
        self.begin_shutdown().wait(Instant::now() + timeout)
    }

    /// Asks for the last export and the end of the thread without waiting, so that the spans'
    /// shutdown runs meanwhile; [`ShuttingDown::wait`] collects the answer.
    pub fn begin_shutdown(self) -> ShuttingDown {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let sent = self.control.send(Control::Shutdown(tx)).is_ok();
        ShuttingDown {
            exporter: self,
            answer: sent.then_some(rx),
            started: Instant::now(),
        }
    }

    /// A child process must neither join nor drop the parent's thread: forget it.
    pub fn forget_after_fork(self) {
        std::mem::forget(self);
    }
}

/// A metrics exporter making its last export ([`MetricsExporter::begin_shutdown`]).
#[derive(Debug)]
pub struct ShuttingDown {
    exporter: MetricsExporter,
    answer: Option<Receiver<bool>>,
    started: Instant,
}

impl ShuttingDown {
    /// Whether the last export went out, waiting until `deadline` at most (and no longer than
    /// `OTEL_METRIC_EXPORT_TIMEOUT` after the shutdown began).
    pub fn wait(mut self, deadline: Instant) -> bool {
        let Some(answer) = self.answer.take() else {
            return false;
        };
        let limit = self.started + self.exporter.timeout + Duration::from_millis(100);
        let deadline = deadline.min(limit);
        let ok = answer
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or(false);
        if ok {
            if let Some(handle) = self.exporter.handle.take() {
                let _ = handle.join();
            }
        }
        // Not answered in time: the thread is left to end by itself (never joined: exit must
        // not wait on a stuck export).
        ok
    }
}

struct Worker {
    runtime: tokio::runtime::Runtime,
    /// One per `OTEL_METRICS_EXPORTER` entry, in order.
    outputs: Vec<Output>,
    encoder: MetricsEncoder,
    registry: &'static Registry,
    timeout: Duration,
}

impl Worker {
    fn run(&mut self, control: &Receiver<Control>, interval: Duration) {
        let mut next = Instant::now() + interval;
        loop {
            match control.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(Control::Flush(answer)) => {
                    let _ = answer.send(self.export());
                }
                Ok(Control::Shutdown(answer)) => {
                    let _ = answer.send(self.export());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.export();
                    next = Instant::now() + interval;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// What a failed export of `points` data points loses.
    fn lost(&self, points: usize) -> String {
        if self.encoder.is_delta() {
            format!("{points} delta data points lost")
        } else {
            format!("{points} data points; the next export carries the totals")
        }
    }

    /// One export of every edge, encoded once and sent to every output; true when it went out
    /// to all of them (or there was nothing to send).
    fn export(&mut self) -> bool {
        if self.outputs.iter().all(|o| matches!(o, Output::Stopped)) {
            return false;
        }
        let totals = callspan_core::edges::snapshot();
        let view = self.registry.view();
        let Some((body, points)) = self.encoder.encode(&totals, &view, now_unix_ns()) else {
            return true;
        };
        let lost = self.lost(points);
        let body = Bytes::from(body);
        let mut all_ok = true;
        for output in &mut self.outputs {
            all_ok &= send(&self.runtime, output, &body, self.timeout, &lost);
        }
        all_ok
    }
}

/// Sends one encoded export to `output`; true when it went out. `lost` says what a failure
/// loses. A receiver without a metrics service stops that output for good.
fn send(
    runtime: &tokio::runtime::Runtime,
    output: &mut Output,
    body: &Bytes,
    timeout: Duration,
    lost: &str,
) -> bool {
    match output {
        Output::Console => {
            match console_line(body) {
                Ok(line) => {
                    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
                }
                Err(e) => tracing::warn!("cannot print metrics: {e}"),
            }
            true
        }
        Output::Otlp(client) => {
            let client = OtlpClient::clone(client);
            let body = body.clone();
            let result = runtime
                .block_on(async move { tokio::time::timeout(timeout, client.export(body)).await });
            match result {
                Ok(Ok(_)) => true,
                Ok(Err(e)) if e.kind == ExportErrorKind::NoService => {
                    tracing::warn!(
                        "the receiver has no metrics service ({e}): callspan.calls and \
                         callspan.call.duration are not exported from now on; spans are not \
                         affected. Set OTEL_METRICS_EXPORTER=none to turn metrics off, or \
                         point OTEL_EXPORTER_OTLP_METRICS_ENDPOINT at a receiver that takes \
                         metrics"
                    );
                    *output = Output::Stopped;
                    false
                }
                Ok(Err(e)) => {
                    tracing::warn!("metrics export failed ({lost}): {e}");
                    false
                }
                Err(_) => {
                    tracing::warn!(
                        "metrics export timed out after {timeout:?} \
                         (OTEL_METRIC_EXPORT_TIMEOUT; {lost})"
                    );
                    false
                }
            }
        }
        Output::Stopped => false,
    }
}

/// One encoded `ExportMetricsServiceRequest` as a line of OTLP JSON (what the file exporter
/// writes for spans): `OTEL_METRICS_EXPORTER=console`'s output, for people and for tools.
fn console_line(body: &[u8]) -> Result<String, String> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    let request = <ExportMetricsServiceRequest as prost::Message>::decode(body)
        .map_err(|e| format!("cannot decode an encoded request (a bug): {e}"))?;
    let mut line = serde_json::to_string(&request)
        .map_err(|e| format!("cannot encode metrics as OTLP JSON: {e}"))?;
    line.push('\n');
    Ok(line)
}
