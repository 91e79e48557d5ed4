//! The batch exporter: one named OS thread that drains the span sink, fed by it.
//!
//! It wakes when the queue holds [`WAKE_BATCHES`] full batches (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`
//! each), when the schedule delay (`OTEL_BSP_SCHEDULE_DELAY`) has passed, or when asked to flush
//! or shut down. It encodes each batch straight to OTLP protobuf (`encode.rs`), whatever the
//! output. For OTLP the thread runs a single-threaded tokio runtime: the loop itself is a task
//! on it, each request another, and the requests (up to [`MAX_IN_FLIGHT`] on the wire) make
//! progress whenever the loop waits — for the next wake-up, or after handing a request over,
//! when it yields once so that the request is written before the next batch is encoded. So
//! encoding the next batch overlaps the round trip of the last one without a second thread:
//! an I/O thread would have to be woken for every request and would compete for the CPU with
//! this one and the application (see `docs/performance.md`). A file or the console is
//! written on this thread (`transport.rs`); with several destinations each batch goes to every
//! one, and its spans count as exported when all of them took it. Every export is bounded by
//! `OTEL_BSP_EXPORT_TIMEOUT`. A failed export is logged through `tracing` (rate-limited on its
//! way to Python) and its spans are counted as dropped; the application never sees it. Neither
//! thread holds the GIL or touches a Python object.

use crate::drop_report::QueueFullReport;
use crate::encode::{EncodedRequest, Limits, RequestEncoder};
use crate::in_flight::InFlight;
use crate::otlp_client::OtlpClient;
use crate::runtime_thread;
use crate::transport::Transport;
use callspan_core::config::Config;
use callspan_core::registry::Registry;
use callspan_core::sink::{SpanSink, Take};
use callspan_core::stats::Stats;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// OTLP requests on the wire at once. More than one, so that encoding and the receiver's work
/// overlap; few, because each holds a batch's encoded bytes and a receiver under load should
/// see back-pressure rather than a flood.
pub const MAX_IN_FLIGHT: usize = 4;

/// Full batches queued before the exporter is woken. More than one, so that a hot thread wakes
/// it (a system call on the hot thread, a context switch on the exporter's side) once per few
/// batches; few, so that a small queue (`OTEL_BSP_MAX_QUEUE_SIZE`) still has room left when it
/// wakes. Capped at half the queue.
pub const WAKE_BATCHES: usize = 4;

/// Largest estimated request, below the 4 MiB default receive limit of gRPC servers (the
/// OpenTelemetry Collector, Jaeger and Tempo keep it) with room for the resource and framing.
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024 + 512 * 1024;

/// Sends [`Control`] messages to the exporter thread from any thread (its loop awaits them).
type ControlSender = tokio::sync::mpsc::UnboundedSender<Control>;

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

/// Owns the exporter thread; [`BatchExporter::shutdown`] ends it (dropping it leaves the thread
/// running: the sink's waker holds the other end of its control channel).
#[derive(Debug)]
pub struct BatchExporter {
    control: ControlSender,
    handle: Option<JoinHandle<()>>,
    destination: String,
    /// what the thread has taken from the queue and not yet counted.
    taken: Arc<InFlight>,
    /// Set when the shutdown begins: a collector refusing connections is given up on then.
    closing: Arc<AtomicBool>,
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
        let (control, control_rx) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let batching = Batching {
            schedule_delay: config.schedule_delay.max(Duration::from_millis(1)),
            export_timeout: config.export_timeout,
            max_batch: config.max_export_batch_size.max(1),
        };
        let config = config.clone();
        let taken = Arc::new(InFlight::new(&sink.stats));
        let worker_taken = Arc::clone(&taken);
        let closing = Arc::new(AtomicBool::new(false));
        let worker_closing = Arc::clone(&closing);
        let failed_tx = ready_tx.clone();
        let handle = runtime_thread::spawn(
            "callspan-export",
            config.exporter_nice,
            move |e| {
                let _ = failed_tx.send(Err(e));
            },
            move |runtime| {
                let transport =
                    runtime.block_on(async { Transport::build(&config, &worker_closing) });
                let _ = ready_tx.send(match &transport {
                    Ok(t) => Ok(t.describe()),
                    Err(e) => Err(e.clone()),
                });
                let limits = Limits::from_config(&config);
                let mut worker = Worker {
                    transport: transport.ok(),
                    encoder: RequestEncoder::new(&resource, limits, MAX_REQUEST_BYTES),
                    in_flight: VecDeque::new(),
                    all_ok: true,
                    sink,
                    registry,
                    batching,
                    taken: worker_taken,
                    queue_full: QueueFullReport::default(),
                    given_up: 0,
                };
                runtime.block_on(worker.run(control_rx));
                // The caller may be joining this thread: never wait here for leftovers on the
                // runtime's blocking pool (a DNS lookup of a timed-out attempt, say).
                drop(worker);
                runtime.shutdown_background();
            },
        )?;
        let destination = match ready_rx.recv() {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::warn!("{e}; spans will be dropped and counted");
                format!("nowhere ({e})")
            }
            Err(_) => "nowhere (the exporter thread ended)".to_owned(),
        };
        let wake_at = (batching.max_batch * WAKE_BATCHES)
            .min(sink.capacity() / 2)
            .max(batching.max_batch);
        sink.set_waker(
            wake_at,
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
            taken,
            closing,
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
        // Before the request: exports under way stop retrying a refusing collector now.
        self.closing.store(true, Ordering::Relaxed);
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
                // spans taken by the thread and not yet answered are counted
                // now; the thread takes no more (the caller discards or hands on the queue).
                let in_flight = self.taken.abandon();
                tracing::warn!(
                    "shutdown: spans still unsent after {:?}; {} queued and {in_flight} in-flight \
                     spans are dropped (counted as dropped_shutdown)",
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
    control: ControlSender,
}

impl Flusher {
    /// Exports everything queued now; true when all of it went out within `timeout`.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.request().wait(timeout).unwrap_or(false)
    }

    /// Asks for a flush without waiting for it (the binding waits in slices,
    /// checking for Ctrl-C between them).
    pub fn request(&self) -> PendingFlush {
        let (ack, done) = crossbeam_channel::bounded(1);
        if self.control.send(Control::Flush(ack)).is_err() {
            return PendingFlush::Answered(false);
        }
        PendingFlush::Waiting(done)
    }
}

/// A flush asked for and not yet waited for.
#[derive(Debug)]
pub enum PendingFlush {
    /// The answer is known already.
    Answered(bool),
    /// The exporter thread answers on this channel.
    Waiting(Receiver<bool>),
}

impl PendingFlush {
    /// Waits at most `slice` for the answer: Some(true) when everything queued at the request
    /// went out, Some(false) when some of it failed (or the exporter is gone), None: not yet.
    pub fn wait(&self, slice: Duration) -> Option<bool> {
        match self {
            PendingFlush::Answered(ok) => Some(*ok),
            PendingFlush::Waiting(done) => match done.recv_timeout(slice) {
                Ok(ok) => Some(ok),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(false),
            },
        }
    }
}

struct Worker {
    transport: Option<Transport>,
    encoder: RequestEncoder,
    /// OTLP requests sent and not yet answered, oldest first, with their span counts; each
    /// task tells whether it succeeded.
    in_flight: VecDeque<(tokio::task::JoinHandle<bool>, u64)>,
    /// False once any export failed, until the next flush or shutdown reports it.
    all_ok: bool,
    sink: &'static SpanSink,
    registry: &'static Registry,
    batching: Batching,
    /// Every span popped is recorded here and counted through it, so that a timed-out
    /// shutdown can count what is still in flight.
    taken: Arc<InFlight>,
    /// Warns about spans dropped on a full queue.
    queue_full: QueueFullReport,
    /// Spans dropped unsent during the shutdown because the collector refused connections.
    given_up: u64,
}

impl Worker {
    /// The exporter's loop, a task on the thread's runtime: the requests it sends run while
    /// it awaits.
    async fn run(&mut self, mut control: tokio::sync::mpsc::UnboundedReceiver<Control>) {
        let mut next_export = Instant::now() + self.batching.schedule_delay;
        loop {
            let wait = next_export.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(wait, control.recv()).await;
            // at a flush or shutdown, every drop so far is reported.
            let force = matches!(message, Ok(Some(Control::Flush(_) | Control::Shutdown(_))));
            self.queue_full
                .check(&self.sink.stats, self.sink.capacity(), force);
            match message {
                Ok(Some(Control::Wake)) => {
                    self.sink.clear_wake();
                    // Under a sustained flood the queue never drops below a batch: let a
                    // waiting flush or shutdown in between batches.
                    while self.sink.len() >= self.batching.max_batch && control.is_empty() {
                        self.export_batch(self.batching.max_batch, Take::Any).await;
                    }
                }
                Ok(Some(Control::Flush(ack))) => {
                    let _ = ack.send(self.export_all().await);
                }
                Ok(Some(Control::Shutdown(ack))) => {
                    let ok = self.export_all().await;
                    if self.given_up > 0 {
                        let destination = self.transport.as_ref().map(Transport::describe);
                        tracing::warn!(
                            "shutdown: {} refuses connections; {} queued spans were dropped \
                             without trying it again (counted as dropped_export_failed)",
                            destination.unwrap_or_default(),
                            self.given_up
                        );
                    }
                    self.transport = None;
                    let _ = ack.send(ok);
                    return;
                }
                Err(_elapsed) => {
                    self.export_queued().await;
                    next_export = Instant::now() + self.batching.schedule_delay;
                }
                Ok(None) => {
                    self.export_all().await;
                    return;
                }
            }
        }
    }

    /// Exports what is queued right now (not what arrives meanwhile) and waits for every
    /// request in flight; true if no export failed since the last call.
    async fn export_all(&mut self) -> bool {
        self.export_queued().await;
        while !self.in_flight.is_empty() {
            self.reap_oldest().await;
        }
        std::mem::replace(&mut self.all_ok, true)
    }

    /// Exports what is queued right now (not what arrives meanwhile), without waiting for the
    /// OTLP requests to be answered.
    async fn export_queued(&mut self) {
        let mut remaining = self.sink.mark_queued();
        while remaining > 0 {
            let n = remaining.min(self.batching.max_batch);
            self.export_batch(n, Take::Queued).await;
            remaining -= n;
        }
    }

    /// Pops up to `n` records and exports them as one request (more if they outgrow the
    /// request size limit). Failures are counted and noted for the next flush.
    async fn export_batch(&mut self, n: usize, take: Take) {
        let ok = self.try_export_batch(n, take).await;
        self.all_ok &= ok;
    }

    /// [`Self::export_batch`]; false if something failed already (OTLP requests report later).
    async fn try_export_batch(&mut self, n: usize, take: Take) -> bool {
        let sink = self.sink;
        // At shutdown, a collector that refuses connections gets nothing more: retrying
        // batch after batch would hold the exit for the whole export timeout.
        let gave_up = self
            .transport
            .as_ref()
            .and_then(|t| t.otlp.as_deref())
            .is_some_and(OtlpClient::gives_up);
        let Some(transport) = self.transport.as_mut().filter(|_| !gave_up) else {
            let popped = self.taken.take(|| {
                let dropped = sink.pop_each(n, take, drop) as u64;
                (dropped, dropped)
            });
            let dropped = popped.unwrap_or(0);
            if gave_up {
                self.given_up += dropped;
            }
            if dropped > 0 {
                self.taken.settle(dropped, |stats| {
                    Stats::add(&stats.dropped_export_failed, dropped);
                    Stats::add(&stats.export_errors, 1);
                });
            }
            return dropped == 0;
        };
        let mut unresolved = 0u64;
        let registry = self.registry;
        let encoder = &mut self.encoder;
        let taken = self.taken.take(|| {
            let view = registry.view();
            let popped = sink.pop_each(n, take, |record| {
                if !encoder.add(&record, &view) {
                    unresolved += 1;
                }
            });
            (popped as u64, ())
        });
        if taken.is_none() {
            // Abandoned by a timed-out shutdown: nothing more is taken or sent.
            return false;
        }
        let requests = self.encoder.finish();
        let written: Vec<bool> = requests.iter().map(|r| transport.write_local(r)).collect();
        let client = transport.otlp.as_deref().cloned();
        let mut ok = true;
        for (request, written) in requests.into_iter().zip(written) {
            match &client {
                Some(client) => self.dispatch(client.clone(), request, written).await,
                None => ok &= settle_local(request.spans, written, &self.taken),
            }
        }
        self.unresolved(unresolved) & ok
    }

    /// Counts and reports records that named an unregistered function (a bug); true if none.
    fn unresolved(&self, unresolved: u64) -> bool {
        if unresolved > 0 {
            tracing::error!("{unresolved} span records named an unregistered function; dropped");
            self.taken.settle(unresolved, |stats| {
                Stats::add(&stats.dropped_export_failed, unresolved);
            });
        }
        unresolved == 0
    }

    /// Puts one OTLP request on the wire, first waiting for the oldest one in flight if
    /// [`MAX_IN_FLIGHT`] are; `written`: whether the local outputs took it.
    async fn dispatch(&mut self, client: OtlpClient, request: EncodedRequest, written: bool) {
        while self.in_flight.front().is_some_and(|(h, _)| h.is_finished())
            || self.in_flight.len() >= MAX_IN_FLIGHT
        {
            self.reap_oldest().await;
        }
        let timeout = self.batching.export_timeout;
        let spans = request.spans;
        let taken = Arc::clone(&self.taken);
        let handle = tokio::spawn(send(client, request, written, taken, timeout));
        self.in_flight.push_back((handle, spans));
        // Let the request (and the connection's tasks) run now, so it is on the wire while
        // the next batch is encoded.
        tokio::task::yield_now().await;
    }

    /// Waits for the oldest request in flight and notes whether it succeeded.
    async fn reap_oldest(&mut self) {
        if let Some((handle, spans)) = self.in_flight.pop_front() {
            let ok = handle.await.unwrap_or_else(|e| {
                // A send task does not panic; if one did, its spans were never counted.
                tracing::error!("an export task failed ({e}); {spans} spans dropped");
                self.taken.settle(spans, |stats| {
                    Stats::add(&stats.dropped_export_failed, spans);
                });
                false
            });
            self.all_ok &= ok;
        }
    }
}

/// Counts a request that went to local outputs only: exported if `written` (they all took it,
/// or there are none), else dropped (the failure was logged); returns `written`.
fn settle_local(spans: u64, written: bool, taken: &InFlight) -> bool {
    taken.settle(spans, |stats| {
        if written {
            Stats::add(&stats.spans_exported, spans);
            Stats::add(&stats.export_batches, 1);
        } else {
            Stats::add(&stats.dropped_export_failed, spans);
            Stats::add(&stats.export_errors, 1);
        }
    });
    written
}

/// Sends one request on the I/O thread and counts the outcome; true if every span arrived
/// (`written`: the local outputs, if any, took the request already; a span counts as exported
/// when every destination took it).
async fn send(
    client: OtlpClient,
    request: EncodedRequest,
    written: bool,
    taken: Arc<InFlight>,
    timeout: Duration,
) -> bool {
    let spans = request.spans;
    let result = tokio::time::timeout(timeout, client.export(request.body)).await;
    match result {
        Ok(Ok(accepted)) => {
            let rejected = accepted.rejected.min(spans);
            let missed = if written { rejected } else { spans };
            taken.settle(spans, |stats| {
                Stats::add(&stats.spans_exported, spans - missed);
                Stats::add(&stats.export_batches, 1);
                Stats::add(&stats.dropped_export_failed, missed);
                if !written {
                    Stats::add(&stats.export_errors, 1);
                }
            });
            if rejected > 0 || !accepted.message.is_empty() {
                tracing::warn!(
                    "{} rejected {rejected} of {spans} spans: {}",
                    client.describe(),
                    if accepted.message.is_empty() {
                        "no reason given"
                    } else {
                        &accepted.message
                    }
                );
            }
            missed == 0
        }
        Ok(Err(e)) => {
            tracing::warn!("{e}; {spans} spans dropped");
            taken.settle(spans, |stats| {
                Stats::add(&stats.dropped_export_failed, spans);
                Stats::add(&stats.export_errors, 1);
            });
            false
        }
        Err(_) => {
            tracing::warn!(
                "export to {} timed out after {timeout:?} (OTEL_BSP_EXPORT_TIMEOUT); {spans} spans dropped",
                client.describe()
            );
            taken.settle(spans, |stats| {
                Stats::add(&stats.dropped_export_failed, spans);
                Stats::add(&stats.export_errors, 1);
            });
            false
        }
    }
}
