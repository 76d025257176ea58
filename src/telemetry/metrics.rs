//! Recording the histograms of `metric_table.rs`: a finished request's or an operation's
//! measurements, with their attributes.
//!
//! Metric attributes are per semconv only (operation, provider, request and response model,
//! error.type, token type or modality): never a per-request value, so cardinality stays bounded.
//!
//! Measurements go either into the Rust SDK's histograms (native delivery) or, grouped by metric
//! and attribute set, into a buffer that the recorder hands to the application's Python meter
//! provider (bridge delivery): aggregated histograms cannot be replayed into another SDK.

use opentelemetry::metrics::{BoundCounter, BoundHistogram, Counter, Histogram, Meter};
use opentelemetry::KeyValue;

use super::hdr::LatencyStore;
use super::metric_table::{Kind, Metric, METRICS};
use super::semconv as sc;
use crate::config::SemconvMode;
use crate::record::{BatchHeader, NameSetRef, OperationRecord, PerNameSet, RequestRecord};

/// What a measurement adds to its batch's base attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Series<'a> {
    Base,
    Token(&'static str),
    Modality(&'static str),
    Error(&'a str),
}

/// `gen_ai.token.modality` of the latest conventions' usage counters. vLLM counts a request's
/// prompt tokens without saying which modality each is (a multimodal prompt's placeholders are
/// among them), so input counts are `unknown`, as the conventions ask when the modality cannot be
/// reliably determined; the tokens vLLM generates are text.
const INPUT_MODALITY: &str = "unknown";
const OUTPUT_MODALITY: &str = "text";

/// Every measurement of one finished request, in one place for both deliveries.
fn request_measurements<'a>(
    r: &'a RequestRecord,
    mode: SemconvMode,
    mut emit: impl FnMut(Metric, Series<'a>, f64),
) {
    let t = &r.timings;
    let phases = [
        (Metric::Queue, t.queue),
        (Metric::Prefill, t.prefill),
        (Metric::Decode, t.decode),
        (Metric::Inference, t.inference),
    ];
    for (metric, value) in phases {
        if let Some(v) = value {
            emit(metric, Series::Base, v);
        }
    }
    let duration = r.duration_seconds();
    match &r.error_type {
        None => {
            // Semconv defines TTFT and TPOT for successful responses only.
            if let Some(v) = t.time_to_first_token {
                emit(Metric::Ttft, Series::Base, v);
            }
            if let Some(v) = t.time_per_output_token {
                emit(Metric::Tpot, Series::Base, v);
            }
            emit(Metric::RequestDuration, Series::Base, duration);
        }
        Some(error) => emit(Metric::RequestDuration, Series::Error(error), duration),
    }
    match mode {
        SemconvMode::V1_41 => {
            if let Some(n) = r.input_tokens {
                emit(Metric::TokenUsage, Series::Token("input"), n as f64);
            }
            if let Some(n) = r.output_tokens {
                emit(Metric::TokenUsage, Series::Token("output"), n as f64);
            }
        }
        SemconvMode::Latest => {
            // The per-operation histograms carry error.type (the counters have no such attribute).
            let per_operation = match &r.error_type {
                None => Series::Base,
                Some(error) => Series::Error(error),
            };
            if let Some(n) = r.input_tokens {
                emit(
                    Metric::UsageInputTokens,
                    Series::Modality(INPUT_MODALITY),
                    n as f64,
                );
                emit(Metric::OperationInputTokens, per_operation, n as f64);
            }
            if let Some(n) = r.cached_input_tokens {
                emit(
                    Metric::UsageCacheReadInputTokens,
                    Series::Modality(INPUT_MODALITY),
                    n as f64,
                );
            }
            if let Some(n) = r.output_tokens {
                emit(
                    Metric::UsageOutputTokens,
                    Series::Modality(OUTPUT_MODALITY),
                    n as f64,
                );
                emit(Metric::OperationOutputTokens, per_operation, n as f64);
            }
        }
    }
}

/// The duration metric of an operation: in the latest conventions, inference has its own.
fn operation_metric(op: &OperationRecord, mode: SemconvMode) -> Metric {
    if mode == SemconvMode::Latest && sc::INFERENCE_OPERATIONS.contains(&&*op.operation_name) {
        Metric::InferenceDuration
    } else {
        Metric::OperationDuration
    }
}

fn base_attributes(names: NameSetRef<'_>) -> Vec<KeyValue> {
    let (operation, provider, request_model, response_model) = names;
    let mut attrs = Vec::with_capacity(6);
    attrs.push(KeyValue::new(sc::OPERATION_NAME, operation.to_string()));
    attrs.push(KeyValue::new(sc::PROVIDER_NAME, provider.to_string()));
    if let Some(m) = request_model {
        attrs.push(KeyValue::new(sc::REQUEST_MODEL, m.to_string()));
    }
    if let Some(m) = response_model {
        attrs.push(KeyValue::new(sc::RESPONSE_MODEL, m.to_string()));
    }
    attrs
}

fn series_attributes(base: &[KeyValue], series: Series<'_>) -> Vec<KeyValue> {
    let mut attrs = base.to_vec();
    match series {
        Series::Base => {}
        Series::Token(t) => attrs.push(KeyValue::new(sc::TOKEN_TYPE, t)),
        Series::Modality(m) => attrs.push(KeyValue::new(sc::TOKEN_MODALITY, m)),
        Series::Error(e) => attrs.push(KeyValue::new(sc::ERROR_TYPE, e.to_string())),
    }
    attrs
}

/// One instrument of the table, as the Rust SDK has it.
enum Instrument {
    Seconds(Histogram<f64>),
    Tokens(Histogram<u64>),
    Counter(Counter<u64>),
}

enum Bound {
    Seconds(BoundHistogram<f64>),
    Tokens(BoundHistogram<u64>),
    Counter(BoundCounter<u64>),
}

impl Instrument {
    fn new(meter: &Meter, metric: Metric) -> Instrument {
        let spec = metric.spec();
        match (spec.kind, spec.integer) {
            (Kind::Counter, _) => Instrument::Counter(
                meter
                    .u64_counter(spec.name)
                    .with_unit(spec.unit)
                    .with_description(spec.description)
                    .build(),
            ),
            (Kind::Histogram, true) => Instrument::Tokens(
                meter
                    .u64_histogram(spec.name)
                    .with_unit(spec.unit)
                    .with_description(spec.description)
                    .with_boundaries(spec.buckets.to_vec())
                    .build(),
            ),
            (Kind::Histogram, false) => Instrument::Seconds(
                meter
                    .f64_histogram(spec.name)
                    .with_unit(spec.unit)
                    .with_description(spec.description)
                    .with_boundaries(spec.buckets.to_vec())
                    .build(),
            ),
        }
    }

    fn bind(&self, attributes: &[KeyValue]) -> Bound {
        match self {
            Instrument::Seconds(h) => Bound::Seconds(h.bind(attributes)),
            Instrument::Tokens(h) => Bound::Tokens(h.bind(attributes)),
            Instrument::Counter(c) => Bound::Counter(c.bind(attributes)),
        }
    }

    fn record(&self, value: f64, attributes: &[KeyValue]) {
        match self {
            Instrument::Seconds(h) => h.record(value, attributes),
            Instrument::Tokens(h) => h.record(value as u64, attributes),
            Instrument::Counter(c) => c.add(value as u64, attributes),
        }
    }
}

impl Bound {
    fn record(&self, value: f64) {
        match self {
            Bound::Seconds(h) => h.record(value),
            Bound::Tokens(h) => h.record(value as u64),
            Bound::Counter(c) => c.add(value as u64),
        }
    }
}

/// Slots of a bound set: one per metric, and one more for the second series of
/// `gen_ai.client.token.usage` (its output tokens). Every other metric has one series per set
/// besides errors, which are recorded unbound.
const BOUND_SLOTS: usize = METRICS.len() + 1;

fn bound_slot(metric: Metric, series: Series<'_>) -> usize {
    match series {
        Series::Token("output") => METRICS.len(),
        _ => metric as usize,
    }
}

/// Instruments bound to one attribute set (operation, provider, models): recording into a bound
/// instrument skips the SDK's per-call attribute lookup (hashing and comparing the attribute set),
/// which dominated the recorder's CPU time. Each is bound on its first value: binding creates the
/// time series, and a metric vLLM gave no value for must export no point.
struct BoundSet {
    slots: [Option<Bound>; BOUND_SLOTS],
}

impl Default for BoundSet {
    fn default() -> Self {
        BoundSet {
            slots: std::array::from_fn(|_| None),
        }
    }
}

/// Bound sets kept at most; past that, records go through the unbound path (same result, slower).
const MAX_BOUND_SETS: usize = 256;

/// Native delivery: the Rust SDK's instruments, exported by the pipeline's reader.
pub struct NativeInstruments {
    bound: PerNameSet<BoundSet>,
    /// Indexed by `Metric as usize`; `None` for the metrics of the other semconv mode, so they
    /// are never created (an instrument the SDK knows of is exported).
    instruments: Vec<Option<Instrument>>,
    mode: SemconvMode,
}

impl NativeInstruments {
    pub fn new(meter: &Meter, mode: SemconvMode) -> Self {
        let instruments = Metric::ALL
            .iter()
            .map(|&metric| metric.in_mode(mode).then(|| Instrument::new(meter, metric)))
            .collect();
        NativeInstruments {
            bound: PerNameSet::new(MAX_BOUND_SETS),
            instruments,
            mode,
        }
    }

    fn record_requests(&mut self, header: &BatchHeader, requests: &[RequestRecord]) {
        // Made only to bind an instrument or for an unbound record (an error series).
        let base = || base_attributes(header.names());
        let mut unbound = BoundSet::default();
        let instruments = &self.instruments;
        let bound = match self
            .bound
            .get_or_insert_with(header.names(), BoundSet::default)
        {
            Some(set) => set,
            None => &mut unbound,
        };
        for r in requests {
            request_measurements(r, self.mode, |metric, series, value| {
                let Some(instrument) = &instruments[metric as usize] else {
                    return;
                };
                match series {
                    Series::Error(_) => {
                        instrument.record(value, &series_attributes(&base(), series));
                    }
                    _ => bound.slots[bound_slot(metric, series)]
                        .get_or_insert_with(|| instrument.bind(&series_attributes(&base(), series)))
                        .record(value),
                }
            });
        }
    }

    fn record_operation(&mut self, op: &OperationRecord, seconds: f64) {
        let metric = operation_metric(op, self.mode);
        let Some(instrument) = &self.instruments[metric as usize] else {
            return;
        };
        let base = || base_attributes(op.names());
        if let Some(error) = &op.error_type {
            instrument.record(seconds, &series_attributes(&base(), Series::Error(error)));
            return;
        }
        match self.bound.get_or_insert_with(op.names(), BoundSet::default) {
            Some(set) => set.slots[metric as usize]
                .get_or_insert_with(|| instrument.bind(&base()))
                .record(seconds),
            None => instrument.record(seconds, &base()),
        }
    }
}

/// Measurements of one metric and attribute set, in recording order.
pub struct MeasurementGroup {
    pub metric: Metric,
    pub attributes: Vec<KeyValue>,
    pub values: Vec<f64>,
}

/// Bridge delivery: measurements wait here until the recorder hands them to Python.
#[derive(Default)]
pub struct MeasurementBuffer {
    groups: Vec<MeasurementGroup>,
    mode: SemconvMode,
}

impl MeasurementBuffer {
    pub fn new(mode: SemconvMode) -> Self {
        MeasurementBuffer {
            groups: Vec::new(),
            mode,
        }
    }

    fn record_requests(&mut self, header: &BatchHeader, requests: &[RequestRecord]) {
        let base = base_attributes(header.names());
        // Groups of this batch: a handful (metric x series), so a linear search is cheapest.
        let mut index: Vec<(Metric, Series<'_>, usize)> = Vec::new();
        let mode = self.mode;
        for r in requests {
            request_measurements(r, mode, |metric, series, value| {
                let found = index
                    .iter()
                    .find(|(m, s, _)| *m == metric && *s == series)
                    .map(|(_, _, i)| *i);
                let i = found.unwrap_or_else(|| {
                    self.groups.push(MeasurementGroup {
                        metric,
                        attributes: series_attributes(&base, series),
                        values: Vec::new(),
                    });
                    let i = self.groups.len() - 1;
                    index.push((metric, series, i));
                    i
                });
                self.groups[i].values.push(value);
            });
        }
    }

    fn record(&mut self, metric: Metric, attributes: Vec<KeyValue>, value: f64) {
        self.groups.push(MeasurementGroup {
            metric,
            attributes,
            values: vec![value],
        });
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn take(&mut self) -> Vec<MeasurementGroup> {
        std::mem::take(&mut self.groups)
    }
}

pub enum Instruments {
    Native(NativeInstruments),
    Bridge(MeasurementBuffer),
}

impl Instruments {
    fn mode(&self) -> SemconvMode {
        match self {
            Instruments::Native(native) => native.mode,
            Instruments::Bridge(buffer) => buffer.mode,
        }
    }

    /// Records every metric of one batch of finished requests, and their HDR samples.
    pub fn record_requests(
        &mut self,
        header: &BatchHeader,
        requests: &[RequestRecord],
        hdr: &mut LatencyStore,
    ) {
        match self {
            Instruments::Native(native) => native.record_requests(header, requests),
            Instruments::Bridge(buffer) => buffer.record_requests(header, requests),
        }
        let mode = self.mode();
        let latencies = hdr.model(header.request_model.as_deref().unwrap_or(""));
        for r in requests {
            request_measurements(r, mode, |metric, _, value| {
                if !metric.spec().integer {
                    latencies.record(metric, value);
                }
            });
        }
    }

    pub fn record_operation(&mut self, op: &OperationRecord, hdr: &mut LatencyStore) {
        let seconds = op.end_unix_nanos.saturating_sub(op.start_unix_nanos) as f64 / 1e9;
        let metric = operation_metric(op, self.mode());
        match self {
            Instruments::Native(native) => native.record_operation(op, seconds),
            Instruments::Bridge(buffer) => {
                let base = base_attributes(op.names());
                let attrs = match &op.error_type {
                    Some(error) => series_attributes(&base, Series::Error(error)),
                    None => base,
                };
                buffer.record(metric, attrs, seconds)
            }
        }
        hdr.model(op.request_model.as_deref().unwrap_or(""))
            .record(metric, seconds);
    }

    /// The measurements waiting for the bridge (none in native delivery).
    pub fn take_measurements(&mut self) -> Vec<MeasurementGroup> {
        match self {
            Instruments::Native(_) => Vec::new(),
            Instruments::Bridge(buffer) => buffer.take(),
        }
    }

    pub fn has_measurements(&self) -> bool {
        matches!(self, Instruments::Bridge(buffer) if !buffer.is_empty())
    }
}
