//! The per-process pipeline: a recorder thread that turns records into spans, metric points and
//! HDR samples (with `telemetry/`), the SDK's batch span processor and periodic metric reader that
//! export them (with `export/`), and the lifecycle around them (flush, shutdown, stats).
//!
//! The caller's thread only converts its Python tuples and enqueues them: spans, histograms and
//! encoding all run on the recorder and exporter threads, off the GIL. The queue is bounded by the
//! number of queued requests; a batch that does not fit is dropped and counted, never waited for
//! (see docs/design/work-queue.md).

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use opentelemetry::metrics::MeterProvider;
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::resource::{ResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;
use parking_lot::Mutex;

use super::process_identity;
use super::work_queue::WorkQueue;
use crate::config::{Config, ExporterKind, Protocol};
use crate::diagnostics::{self, Counters};
use crate::export::{
    self, Bridges, CountingMetricExporter, CountingSpanExporter, PyCallback, SpanSink,
};
use crate::record::{BatchHeader, OperationRecord, ParentContext, RequestRecords};
use crate::telemetry::{
    EngineStates, Instruments, LatencyStore, MeasurementBuffer, NativeInstruments, Percentiles,
    SpanFactory, INSTRUMENTATION_SCOPE,
};

/// How long the recorder waits for the exporter to make room in a full span queue.
const SPAN_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// How long the recorder lets work accumulate after a burst (see `Recorder::run`).
const COALESCE_WINDOW: Duration = Duration::from_millis(1);

// The batch is the large variant on purpose: a one-prompt call's record is held inline, so
// enqueueing it allocates nothing the recorder thread would then free.
#[allow(clippy::large_enum_variant)]
enum Work {
    /// A batch, with the parent of its spans where it is not the header's (see `record_requests_under`).
    Requests(Arc<BatchHeader>, Option<ParentContext>, RequestRecords),
    Operation(OperationRecord),
    /// Answered once everything enqueued before it has been recorded.
    Sync(mpsc::SyncSender<()>),
    Stop,
}

/// Resource attributes supplied from Python, beside the configuration.
#[derive(Clone, Debug, Default)]
pub struct ResourceInput {
    /// Attributes of the application's Python SDK `TracerProvider`, if it has one.
    pub python_sdk: Vec<KeyValue>,
    /// `instrument(resource_attributes=..., service_name=...)`: these win over everything.
    pub explicit: Vec<KeyValue>,
}

/// Builds the resource: our `telemetry.sdk.*` and this process's identity (`service.instance.id`,
/// `process.pid`, `host.name`, see `process_identity.rs`), then OTEL_RESOURCE_ATTRIBUTES,
/// OTEL_SERVICE_NAME, the Python SDK's resource (so our telemetry lands under the application's
/// service and instance), then explicit arguments; `unknown_service:<executable>` when nothing
/// names the service. Built again in a forked child, with the child's id and pid.
pub fn build_resource(config: &Config, input: &ResourceInput) -> Resource {
    let mut attrs: Vec<KeyValue> = TelemetryResourceDetector
        .detect()
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    attrs.extend(process_identity::attributes());
    let pid = i64::from(std::process::id());
    attrs.extend(
        config
            .resource_attributes
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    if let Some(name) = &config.service_name {
        attrs.push(KeyValue::new("service.name", name.clone()));
    }
    for kv in &input.python_sdk {
        let key = kv.key.as_str();
        // Keep the SDK identity of what produced the data (ours), and do not let the Python SDK's
        // placeholder service name hide a real one.
        // Nor a process.pid that is not this process's: the resource was read in the parent of a
        // forked child.
        if key.starts_with("telemetry.sdk.")
            || (key == "service.name" && kv.value.as_str().starts_with("unknown_service"))
            || (key == process_identity::PROCESS_PID && kv.value != opentelemetry::Value::I64(pid))
        {
            continue;
        }
        attrs.push(kv.clone());
    }
    attrs.extend(input.explicit.iter().cloned());
    if !attrs.iter().any(|kv| kv.key.as_str() == "service.name") {
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        attrs.push(KeyValue::new(
            "service.name",
            format!("unknown_service:{exe}"),
        ));
    }
    // Later attributes replace earlier ones with the same key.
    Resource::builder_empty().with_attributes(attrs).build()
}

pub struct Pipeline {
    pub counters: Arc<Counters>,
    pub spans: Arc<SpanFactory>,
    pub engine_states: EngineStates,
    queue: Arc<WorkQueue<Work>>,
    queued_requests: Arc<AtomicUsize>,
    max_queued_requests: usize,
    hdr: Arc<Mutex<LatencyStore>>,
    span_processor: Option<Arc<BatchSpanProcessor>>,
    meter_provider: SdkMeterProvider,
    shut_down: AtomicBool,
    pub latency_summary_at_exit: bool,
    /// The GenAI conventions the pipeline emits; the shim asks once, at instrument().
    pub semconv: crate::config::SemconvMode,
    /// How each signal is delivered: (traces, metrics).
    pub delivery: (&'static str, &'static str),
    // Declared last so it is dropped after the exporters that run on it.
    _runtime: Option<tokio::runtime::Runtime>,
}

struct Recorder {
    queue: Arc<WorkQueue<Work>>,
    queued_requests: Arc<AtomicUsize>,
    counters: Arc<Counters>,
    spans: Arc<SpanFactory>,
    instruments: Instruments,
    hdr: Arc<Mutex<LatencyStore>>,
    span_processor: Option<Arc<BatchSpanProcessor>>,
    spans_in_flight: Arc<AtomicUsize>,
    span_queue_size: usize,
    exporter_stalled: Cell<bool>,
    metric_bridge: Option<Arc<PyCallback>>,
}

impl Recorder {
    fn run(mut self) {
        let mut work = VecDeque::new();
        while self.queue.take_all(&mut work, true) {
            // Record it and what arrived meanwhile, then pause briefly before waiting again: while
            // this thread is not waiting, a sender enqueues without a futex wake-up, which
            // otherwise costs the caller more than recording a small batch does.
            while !work.is_empty() {
                for item in work.drain(..) {
                    if !self.handle(item) {
                        return;
                    }
                }
                self.queue.take_all(&mut work, false);
            }
            self.deliver_measurements();
            thread::sleep(COALESCE_WINDOW);
        }
    }

    /// Handles one work item; false when the recorder must stop.
    fn handle(&mut self, work: Work) -> bool {
        {
            match work {
                Work::Requests(header, parent, requests) => {
                    self.queued_requests
                        .fetch_sub(requests.len(), Ordering::AcqRel);
                    self.instruments
                        .record_requests(&header, &requests, &mut self.hdr.lock());
                    if self.span_processor.is_some() {
                        let batch = self.spans.request_batch(&header, parent);
                        for request in &requests {
                            if let Some(span) = self.spans.batch_request_span(&batch, request) {
                                self.submit(span);
                            }
                        }
                    }
                    Counters::add(&self.counters.requests_recorded, requests.len() as u64);
                }
                Work::Operation(op) => {
                    self.instruments.record_operation(&op, &mut self.hdr.lock());
                    if self.span_processor.is_some() {
                        if let Some(span) = self.spans.operation_span(&op) {
                            self.submit(span);
                        }
                    }
                    Counters::add(&self.counters.operations_recorded, 1);
                }
                Work::Sync(reply) => {
                    self.deliver_measurements();
                    let _ = reply.send(());
                }
                Work::Stop => {
                    self.deliver_measurements();
                    return false;
                }
            }
        }
        true
    }

    /// Hands the measurements of the last burst to the application's meter provider, in one call.
    fn deliver_measurements(&mut self) {
        let Some(bridge) = &self.metric_bridge else {
            return;
        };
        if !self.instruments.has_measurements() {
            return;
        }
        let groups = self.instruments.take_measurements();
        let n: usize = groups.iter().map(|g| g.values.len()).sum();
        let (failed, error) = bridge.deliver_measurements(&groups);
        Counters::add(&self.counters.measurements_bridged, (n - failed) as u64);
        if failed > 0 {
            Counters::add(&self.counters.measurements_bridge_failed, failed as u64);
            let error = error.unwrap_or_default();
            diagnostics::warn("metric_bridge", || {
                format!("recording {failed} of {n} measurements into the meter provider failed: {error}")
            });
        }
    }

    fn submit(&self, span: SpanData) {
        let Some(processor) = &self.span_processor else {
            return;
        };
        // The batch processor would drop a span silently when its queue is full; this thread waits
        // for the exporter to make room instead (it runs off the caller's thread, so waiting costs
        // the application nothing), and drops, counted, only when the exporter makes no progress.
        if !self.wait_for_span_queue_room() {
            Counters::add(&self.counters.spans_dropped, 1);
            diagnostics::warn("span_queue_full", || {
                "the span queue is full (OTEL_BSP_MAX_QUEUE_SIZE) and the exporter is not keeping up; \
                 spans are being dropped"
                    .to_string()
            });
            return;
        }
        self.spans_in_flight.fetch_add(1, Ordering::AcqRel);
        Counters::add(&self.counters.spans_queued, 1);
        processor.on_end(span);
    }

    /// True when the span queue has room, waiting up to `SPAN_QUEUE_WAIT` for the exporter to drain
    /// it. After a wait that timed out, no further waits until the exporter has made progress, so a
    /// dead collector costs one wait, not one per span.
    fn wait_for_span_queue_room(&self) -> bool {
        let full = || self.spans_in_flight.load(Ordering::Acquire) >= self.span_queue_size;
        if !full() {
            self.exporter_stalled.set(false);
            return true;
        }
        if self.exporter_stalled.get() {
            return false;
        }
        let deadline = Instant::now() + SPAN_QUEUE_WAIT;
        while full() {
            if Instant::now() >= deadline {
                self.exporter_stalled.set(true);
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

impl Drop for Recorder {
    /// Senders are refused from now on; what they queued is dropped, as a closed channel did.
    fn drop(&mut self) {
        drop(self.queue.close_and_take());
    }
}

impl Pipeline {
    pub fn start(config: &Config, resource_input: &ResourceInput, bridges: &Bridges) -> Pipeline {
        if !config.warnings.is_empty() {
            // One message for all of them: they share one rate-limit kind.
            diagnostics::warn("configuration", || {
                format!("invalid configuration: {}", config.warnings.join("; "))
            });
        }
        let counters = Arc::new(Counters::default());
        let resource = build_resource(config, resource_input);
        let uses_grpc = (bridges.spans.is_none()
            && config.traces_exporter == ExporterKind::Otlp
            && config.traces.protocol == Protocol::Grpc)
            || (bridges.metrics.is_none()
                && config.metrics_exporter == ExporterKind::Otlp
                && config.metrics.protocol == Protocol::Grpc);
        let runtime = if uses_grpc {
            match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otel-vllm-grpc")
                .enable_all()
                .build()
            {
                Ok(rt) => Some(rt),
                Err(e) => {
                    diagnostics::warn("configuration", || {
                        format!("cannot start the gRPC runtime: {e}")
                    });
                    None
                }
            }
        } else {
            None
        };

        let spans_in_flight = Arc::new(AtomicUsize::new(0));
        let span_sink = match config.traces_exporter {
            _ if bridges.spans.is_some() => bridges.spans.clone().map(|b| Ok(SpanSink::Bridge(b))),
            ExporterKind::None => None,
            ExporterKind::Console => Some(Ok(SpanSink::Console(
                opentelemetry_stdout::SpanExporter::default(),
            ))),
            ExporterKind::Otlp => {
                Some(export::otlp_span_exporter(&config.traces, runtime.as_ref()))
            }
        };
        let span_processor = match span_sink {
            None => None,
            Some(Err(e)) => {
                diagnostics::warn("traces_configuration", || {
                    format!("{e}; traces are disabled")
                });
                None
            }
            Some(Ok(sink)) => {
                let exporter = CountingSpanExporter {
                    sink,
                    counters: counters.clone(),
                    in_flight: spans_in_flight.clone(),
                };
                let mut bsp = BatchSpanProcessor::builder(exporter)
                    .with_batch_config(
                        BatchConfigBuilder::default()
                            .with_max_queue_size(config.bsp_max_queue_size)
                            .with_max_export_batch_size(config.bsp_max_export_batch_size)
                            .with_scheduled_delay(config.bsp_schedule_delay)
                            .build(),
                    )
                    .build();
                bsp.set_resource(&resource);
                Some(Arc::new(bsp))
            }
        };

        let metric_sink = match config.metrics_exporter {
            _ if bridges.metrics.is_some() => None,
            ExporterKind::None => None,
            ExporterKind::Console => Some(Ok(export::console_metric_exporter(config))),
            ExporterKind::Otlp => Some(export::otlp_metric_exporter(config, runtime.as_ref())),
        };
        let mut meter_builder = SdkMeterProvider::builder().with_resource(resource);
        match metric_sink {
            None => {}
            Some(Err(e)) => {
                diagnostics::warn("configuration", || format!("{e}; metrics are disabled"))
            }
            Some(Ok(sink)) => {
                let reader = PeriodicReader::builder(CountingMetricExporter {
                    sink,
                    counters: counters.clone(),
                })
                .with_interval(config.metric_export_interval)
                .build();
                meter_builder = meter_builder.with_reader(reader);
            }
        }
        let meter_provider = meter_builder.build();
        let meter = meter_provider.meter_with_scope(
            opentelemetry::InstrumentationScope::builder(INSTRUMENTATION_SCOPE)
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        );

        let spans = Arc::new(SpanFactory::new(&config.sampler));
        let hdr = Arc::new(Mutex::new(LatencyStore::default()));
        let queued_requests = Arc::new(AtomicUsize::new(0));
        let queue = Arc::new(WorkQueue::default());
        let recorder = Recorder {
            queue: queue.clone(),
            queued_requests: queued_requests.clone(),
            counters: counters.clone(),
            spans: spans.clone(),
            instruments: if bridges.metrics.is_some() {
                Instruments::Bridge(MeasurementBuffer::new(config.semconv))
            } else {
                Instruments::Native(NativeInstruments::new(&meter, config.semconv))
            },
            hdr: hdr.clone(),
            span_processor: span_processor.clone(),
            spans_in_flight,
            span_queue_size: config.bsp_max_queue_size,
            exporter_stalled: Cell::new(false),
            metric_bridge: bridges.metrics.clone(),
        };
        let delivery = |bridged: bool, exporter: ExporterKind| match (bridged, exporter) {
            (true, _) => "bridge",
            (false, ExporterKind::None) => "none",
            (false, ExporterKind::Console) => "console",
            (false, ExporterKind::Otlp) => "otlp",
        };
        let delivery = (
            delivery(bridges.spans.is_some(), config.traces_exporter),
            delivery(bridges.metrics.is_some(), config.metrics_exporter),
        );
        if let Err(e) = thread::Builder::new()
            .name("otel-vllm-recorder".into())
            .spawn(move || recorder.run())
        {
            diagnostics::warn("configuration", || {
                format!("cannot start the recorder thread: {e}")
            });
        }
        Pipeline {
            counters,
            spans,
            engine_states: EngineStates::new(bridges.metrics.is_none().then_some(&meter)),
            queue,
            queued_requests,
            // Requests are queued until the recorder turns them into spans; the span queue bound
            // (OTEL_BSP_MAX_QUEUE_SIZE) bounds this queue too, with a floor for bursty large batches.
            max_queued_requests: config.bsp_max_queue_size.max(8192),
            hdr,
            span_processor,
            meter_provider,
            shut_down: AtomicBool::new(false),
            latency_summary_at_exit: config.latency_summary_at_exit,
            semconv: config.semconv,
            delivery,
            _runtime: runtime,
        }
    }

    fn send(&self, work: Work) -> bool {
        self.queue.push(work).is_ok()
    }

    /// Enqueues a batch; returns how many requests were accepted (0 or all of them).
    pub fn record_requests(&self, header: Arc<BatchHeader>, requests: RequestRecords) -> usize {
        self.record_requests_under(header, None, requests)
    }

    /// `record_requests` for a header many calls share (its names and attributes), each batch with
    /// its own call's span as `parent` (replacing the header's): the caller allocates no header per
    /// call, and so the recorder thread frees none of the caller's (glibc then takes the caller's
    /// arena lock: see docs/design/shared-request-header.md).
    pub fn record_requests_under(
        &self,
        header: Arc<BatchHeader>,
        parent: Option<ParentContext>,
        requests: RequestRecords,
    ) -> usize {
        let n = requests.len();
        if n == 0 {
            return 0;
        }
        if self.shut_down.load(Ordering::Acquire) {
            Counters::add(&self.counters.requests_dropped, n as u64);
            return 0;
        }
        let queued = self.queued_requests.fetch_add(n, Ordering::AcqRel);
        // A batch always fits into an empty queue, so one large offline call (10k prompts) is never
        // lost whole; memory stays bounded by the larger of the limit and one batch.
        if queued > 0 && queued + n > self.max_queued_requests {
            self.queued_requests.fetch_sub(n, Ordering::AcqRel);
            Counters::add(&self.counters.requests_dropped, n as u64);
            diagnostics::warn("request_queue_full", || {
                "the telemetry queue is full; finished requests are being dropped from telemetry"
                    .to_string()
            });
            return 0;
        }
        if self.send(Work::Requests(header, parent, requests)) {
            n
        } else {
            self.queued_requests.fetch_sub(n, Ordering::AcqRel);
            Counters::add(&self.counters.requests_dropped, n as u64);
            0
        }
    }

    pub fn record_operation(&self, op: OperationRecord) -> bool {
        !self.shut_down.load(Ordering::Acquire) && self.send(Work::Operation(op))
    }

    /// Waits until the recorder has processed everything enqueued so far.
    fn sync(&self, timeout: Duration) -> bool {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Work::Sync(tx)) && rx.recv_timeout(timeout).is_ok()
    }

    /// Runs `job` on a helper thread and waits at most `timeout` for it: the SDK's own flush and
    /// shutdown calls can wait on the network longer than a caller may (the meter provider's flush
    /// has no timeout at all). A job that overruns finishes on its own.
    fn bounded<F: FnOnce() -> bool + Send + 'static>(job: F, timeout: Duration) -> bool {
        let (tx, rx) = mpsc::sync_channel(1);
        let spawned = thread::Builder::new()
            .name("otel-vllm-flush".into())
            .spawn(move || {
                let _ = tx.send(job());
            });
        spawned.is_ok() && rx.recv_timeout(timeout).unwrap_or(false)
    }

    pub fn force_flush(self: &Arc<Self>, timeout: Duration) -> bool {
        let me = self.clone();
        Self::bounded(
            move || {
                let synced = me.sync(timeout);
                let spans_ok = me
                    .span_processor
                    .as_ref()
                    .map(|p| p.force_flush().is_ok())
                    .unwrap_or(true);
                let metrics_ok = me.meter_provider.force_flush().is_ok();
                synced && spans_ok && metrics_ok
            },
            timeout,
        )
    }

    pub fn shutdown(self: &Arc<Self>, timeout: Duration) -> bool {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return true;
        }
        let me = self.clone();
        Self::bounded(
            move || {
                let synced = me.sync(timeout);
                me.send(Work::Stop);
                let spans_ok = me
                    .span_processor
                    .as_ref()
                    .map(|p| p.shutdown_with_timeout(timeout).is_ok())
                    .unwrap_or(true);
                let metrics_ok = me.meter_provider.shutdown_with_timeout(timeout).is_ok();
                synced && spans_ok && metrics_ok
            },
            timeout,
        )
    }

    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    pub fn percentiles(&self, timeout: Duration) -> Vec<Percentiles> {
        self.sync(timeout);
        self.hdr.lock().percentiles()
    }

    pub fn stats(&self, timeout: Duration) -> Vec<(&'static str, u64)> {
        self.sync(timeout);
        let mut stats = self.counters.snapshot();
        stats.push((
            "requests_queued",
            self.queued_requests.load(Ordering::Acquire) as u64,
        ));
        stats
    }
}

impl Drop for Pipeline {
    /// The recorder records what is queued, then stops (as when a channel's sender was dropped).
    fn drop(&mut self) {
        self.queue.close();
    }
}
