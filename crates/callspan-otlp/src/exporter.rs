//! The batch exporter: one named OS thread with its own tokio runtime, fed by the span sink.
//!
//! It wakes when the queue holds a full batch (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`), when the
//! schedule delay (`OTEL_BSP_SCHEDULE_DELAY`) has passed, or when asked to flush or shut down.
//! Every export is bounded by `OTEL_BSP_EXPORT_TIMEOUT`. A failed export is logged through
//! `tracing` (rate-limited on its way to Python) and its spans are counted as dropped; the
//! application never sees it. The thread holds no GIL and never touches a Python object.

use crate::convert::{split_by_size, to_span_data_limited, Limits};
use crate::transport::Transport;
use callspan_core::config::Config;
use callspan_core::registry::Registry;
use callspan_core::sink::SpanSink;
use callspan_core::stats::Stats;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use opentelemetry_sdk::Resource;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest estimated request, below the 4 MiB default receive limit of gRPC servers (the
/// OpenTelemetry Collector, Jaeger and Tempo keep it) with room for the resource and framing.
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024 + 512 * 1024;

/// Requests to the exporter thread.
#[derive(Debug)]
enum Control {
    /// The queue holds a full batch.
    Wake,
    /// Export everything queued now, then answer whether it all went out.
    Flush(Sender<bool>),
    /// Export everything queued now, close the transport, answer, and end the thread.
    Shutdown(Sender<bool>),
}

/// The batching knobs, from `OTEL_BSP_*`.
#[derive(Clone, Copy, Debug)]
struct Batching {
    schedule_delay: Duration,
    export_timeout: Duration,
    max_batch: usize,
}

/// Owns the exporter thread. Dropping it asks the thread to shut down without waiting.
#[derive(Debug)]
pub struct BatchExporter {
    control: Sender<Control>,
    handle: Option<JoinHandle<()>>,
    destination: String,
}

impl BatchExporter {
    /// Starts the `callspan-export` thread draining `sink`. Returns where spans go, or why the
    /// transport could not be built (the thread then still runs and counts spans as dropped).
    pub fn start(
        config: &Config,
        resource: Resource,
        sink: &'static SpanSink,
        registry: &'static Registry,
    ) -> Result<BatchExporter, String> {
        let (control, control_rx) = crossbeam_channel::unbounded();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let batching = Batching {
            schedule_delay: config.schedule_delay.max(Duration::from_millis(1)),
            export_timeout: config.export_timeout,
            max_batch: config.max_export_batch_size.max(1),
        };
        let config = config.clone();
        let handle = std::thread::Builder::new()
            .name("callspan-export".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(format!("cannot start the exporter runtime: {e}")));
                        return;
                    }
                };
                let transport = runtime.block_on(async { Transport::build(&config, &resource) });
                let _ = ready_tx.send(match &transport {
                    Ok(t) => Ok(t.describe()),
                    Err(e) => Err(e.clone()),
                });
                let mut worker = Worker {
                    runtime,
                    transport: transport.ok(),
                    sink,
                    registry,
                    batching,
                    limits: Limits::from_config(&config),
                };
                worker.run(&control_rx);
            })
            .map_err(|e| format!("cannot start the callspan-export thread: {e}"))?;
        let destination = match ready_rx.recv() {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::warn!("{e}; spans will be dropped and counted");
                format!("nowhere ({e})")
            }
            Err(_) => "nowhere (the exporter thread ended)".to_owned(),
        };
        sink.set_waker(
            batching.max_batch,
            Some(Box::new({
                let control = control.clone();
                move || {
                    let _ = control.send(Control::Wake);
                }
            })),
        );
        Ok(BatchExporter {
            control,
            handle: Some(handle),
            destination,
        })
    }

    /// Where spans go, for humans.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// A handle that can wait for a flush without holding whatever guards the exporter.
    pub fn flusher(&self) -> Flusher {
        Flusher {
            control: self.control.clone(),
        }
    }

    /// Exports everything queued, closes the transport and ends the thread, waiting at most
    /// `timeout`. Returns true when everything went out in time; the thread is left to finish
    /// on its own otherwise (process exit will end it).
    pub fn shutdown(mut self, sink: &SpanSink, timeout: Duration) -> bool {
        sink.set_waker(usize::MAX, None);
        let (ack, done) = crossbeam_channel::bounded(1);
        if self.control.send(Control::Shutdown(ack)).is_err() {
            return false;
        }
        match done.recv_timeout(timeout) {
            Ok(ok) => {
                if let Some(handle) = self.handle.take() {
                    let _ = handle.join();
                }
                ok
            }
            Err(_) => {
                tracing::warn!(
                    "shutdown: spans still unsent after {:?}; {} queued spans are dropped",
                    timeout,
                    sink.len()
                );
                false
            }
        }
    }
}

/// Asks the exporter thread to flush and waits for its answer.
#[derive(Clone, Debug)]
pub struct Flusher {
    control: Sender<Control>,
}

impl Flusher {
    /// Exports everything queued now; true when all of it went out within `timeout`.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = crossbeam_channel::bounded(1);
        if self.control.send(Control::Flush(ack)).is_err() {
            return false;
        }
        done.recv_timeout(timeout).unwrap_or(false)
    }
}

struct Worker {
    runtime: tokio::runtime::Runtime,
    transport: Option<Transport>,
    sink: &'static SpanSink,
    registry: &'static Registry,
    batching: Batching,
    limits: Limits,
}

impl Worker {
    fn run(&mut self, control: &Receiver<Control>) {
        let mut next_export = Instant::now() + self.batching.schedule_delay;
        loop {
            let wait = next_export.saturating_duration_since(Instant::now());
            match control.recv_timeout(wait) {
                Ok(Control::Wake) => {
                    self.sink.clear_wake();
                    while self.sink.len() >= self.batching.max_batch {
                        self.export_batch(self.batching.max_batch);
                    }
                }
                Ok(Control::Flush(ack)) => {
                    let ok = self.export_queued();
                    let _ = ack.send(ok);
                }
                Ok(Control::Shutdown(ack)) => {
                    let ok = self.export_queued();
                    if let Some(t) = self.transport.as_mut() {
                        t.shutdown();
                    }
                    let _ = ack.send(ok);
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.export_queued();
                    next_export = Instant::now() + self.batching.schedule_delay;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.export_queued();
                    return;
                }
            }
        }
    }

    /// Exports what is queued right now (not what arrives meanwhile); true if all succeeded.
    fn export_queued(&mut self) -> bool {
        let mut remaining = self.sink.len();
        let mut ok = true;
        while remaining > 0 {
            let n = remaining.min(self.batching.max_batch);
            ok &= self.export_batch(n);
            remaining -= n;
        }
        ok
    }

    /// Pops up to `n` records and exports them as one request.
    fn export_batch(&mut self, n: usize) -> bool {
        let stats = &self.sink.stats;
        let mut records = Vec::with_capacity(n);
        while records.len() < n {
            match self.sink.pop() {
                Some(r) => records.push(r),
                None => break,
            }
        }
        if records.is_empty() {
            return true;
        }
        let count = records.len() as u64;
        let scope = crate::resource::scope();
        let batch: Vec<_> = {
            let view = self.registry.view();
            records
                .into_iter()
                .filter_map(|r| to_span_data_limited(r, &view, &scope, &self.limits))
                .collect()
        };
        let unresolved = count - batch.len() as u64;
        if unresolved > 0 {
            tracing::error!("{unresolved} span records named an unregistered function; dropped");
            Stats::add(&stats.dropped_export_failed, unresolved);
        }
        if self.transport.is_none() {
            Stats::add(&stats.dropped_export_failed, batch.len() as u64);
            Stats::add(&stats.export_errors, 1);
            return false;
        }
        let mut ok = unresolved == 0;
        for chunk in split_by_size(batch, MAX_REQUEST_BYTES) {
            ok &= self.send(chunk);
        }
        ok
    }

    /// Sends one request's worth of spans, counting the outcome.
    fn send(&mut self, chunk: Vec<opentelemetry_sdk::trace::SpanData>) -> bool {
        let stats = &self.sink.stats;
        let Some(transport) = self.transport.as_mut() else {
            return false;
        };
        let exported = chunk.len() as u64;
        let timeout = self.batching.export_timeout;
        let result = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, transport.export(chunk)).await });
        match result {
            Ok(Ok(())) => {
                Stats::add(&stats.spans_exported, exported);
                Stats::add(&stats.export_batches, 1);
                true
            }
            Ok(Err(e)) => {
                tracing::warn!("{e}; {exported} spans dropped");
                Stats::add(&stats.dropped_export_failed, exported);
                Stats::add(&stats.export_errors, 1);
                false
            }
            Err(_) => {
                tracing::warn!(
                    "export to {} timed out after {timeout:?} (OTEL_BSP_EXPORT_TIMEOUT); {exported} spans dropped",
                    transport.describe()
                );
                Stats::add(&stats.dropped_export_failed, exported);
                Stats::add(&stats.export_errors, 1);
                false
            }
        }
    }
}
