//! Recording the histograms of `metric_table.rs`: a finished request's or an operation's
//! measurements, with their attributes.
//!
//! Metric attributes are per semconv only (operation, provider, request and response model,
//! error.type, token type): never a per-request value, so cardinality stays bounded.
//!
//! Measurements go either into the Rust SDK's histograms (native delivery) or, grouped by metric
//! and attribute set, into a buffer that the recorder hands to the application's Python meter
//! provider (bridge delivery): aggregated histograms cannot be replayed into another SDK.

use opentelemetry::metrics::{BoundHistogram, Histogram, Meter};
use opentelemetry::KeyValue;

use super::hdr::LatencyStore;
use super::metric_table::{Metric, METRICS};
use super::semconv as sc;
use crate::record::{BatchHeader, NameSetRef, OperationRecord, PerNameSet, RequestRecord};

/// What a measurement adds to its batch's base attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Series<'a> {
    Base,
    Token(&'static str),
    Error(&'a str),
}

/// Every measurement of one finished request, in one place for both deliveries.
fn request_measurements<'a>(r: &'a RequestRecord, mut emit: impl FnMut(Metric, Series<'a>, f64)) {
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
    if let Some(n) = r.input_tokens {
        emit(Metric::TokenUsage, Series::Token("input"), n as f64);
    }
    if let Some(n) = r.output_tokens {
        emit(Metric::TokenUsage, Series::Token("output"), n as f64);
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
        Series::Error(e) => attrs.push(KeyValue::new(sc::ERROR_TYPE, e.to_string())),
    }
    attrs
}

/// Histograms bound to one attribute set (operation, provider, models): recording into a bound
/// instrument skips the SDK's per-call attribute lookup (hashing and comparing the attribute set),
/// which dominated the recorder's CPU time. Each is bound on its first value: binding creates the
/// time series, and a metric vLLM gave no value for must export no point.
#[derive(Default)]
struct BoundSet {
    seconds: [Option<BoundHistogram<f64>>; 9],
    tokens: [Option<BoundHistogram<u64>>; 2],
}

/// Bound sets kept at most; past that, records go through the unbound path (same result, slower).
const MAX_BOUND_SETS: usize = 256;

/// Native delivery: the Rust SDK's histograms, exported by the pipeline's reader.
pub struct NativeInstruments {
    bound: PerNameSet<BoundSet>,
    /// Indexed by `Metric as usize`; `None` at the token usage slot.
    seconds: Vec<Option<Histogram<f64>>>,
    token_usage: Histogram<u64>,
}

impl NativeInstruments {
    pub fn new(meter: &Meter) -> Self {
        let seconds = METRICS
            .iter()
            .map(|spec| {
                (!spec.integer).then(|| {
                    meter
                        .f64_histogram(spec.name)
                        .with_unit(spec.unit)
                        .with_description(spec.description)
                        .with_boundaries(spec.buckets.to_vec())
                        .build()
                })
            })
            .collect();
        let spec = Metric::TokenUsage.spec();
        NativeInstruments {
            bound: PerNameSet::new(MAX_BOUND_SETS),
            seconds,
            token_usage: meter
                .u64_histogram(spec.name)
                .with_unit(spec.unit)
                .with_description(spec.description)
                .with_boundaries(spec.buckets.to_vec())
                .build(),
        }
    }

    fn record_requests(&mut self, header: &BatchHeader, requests: &[RequestRecord]) {
        // Made only to bind an instrument or for an unbound record (an error series).
        let base = || base_attributes(header.names());
        let mut unbound = BoundSet::default();
        let seconds = &self.seconds;
        let token_usage = &self.token_usage;
        let bound = match self
            .bound
            .get_or_insert_with(header.names(), BoundSet::default)
        {
            Some(set) => set,
            None => &mut unbound,
        };
        for r in requests {
            request_measurements(r, |metric, series, value| match series {
                Series::Base => {
                    if let Some(histogram) = &seconds[metric as usize] {
                        bound.seconds[metric as usize]
                            .get_or_insert_with(|| histogram.bind(&base()))
                            .record(value);
                    }
                }
                Series::Token(token_type) => {
                    let slot = usize::from(token_type == "output");
                    bound.tokens[slot]
                        .get_or_insert_with(|| {
                            token_usage.bind(&series_attributes(&base(), series))
                        })
                        .record(value as u64);
                }
                Series::Error(_) => {
                    if let Some(histogram) = &seconds[metric as usize] {
                        histogram.record(value, &series_attributes(&base(), series));
                    }
                }
            });
        }
    }

    fn record_operation(&mut self, op: &OperationRecord, seconds: f64) {
        let Some(histogram) = &self.seconds[Metric::OperationDuration as usize] else {
            return;
        };
        let base = || base_attributes(op.names());
        if let Some(error) = &op.error_type {
            histogram.record(seconds, &series_attributes(&base(), Series::Error(error)));
            return;
        }
        match self.bound.get_or_insert_with(op.names(), BoundSet::default) {
            Some(set) => set.seconds[Metric::OperationDuration as usize]
                .get_or_insert_with(|| histogram.bind(&base()))
                .record(seconds),
            None => histogram.record(seconds, &base()),
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
}

impl MeasurementBuffer {
    fn record_requests(&mut self, header: &BatchHeader, requests: &[RequestRecord]) {
        let base = base_attributes(header.names());
        // Groups of this batch: a handful (metric x series), so a linear search is cheapest.
        let mut index: Vec<(Metric, Series<'_>, usize)> = Vec::new();
        for r in requests {
            request_measurements(r, |metric, series, value| {
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
        let latencies = hdr.model(header.request_model.as_deref().unwrap_or(""));
        for r in requests {
            request_measurements(r, |metric, _, value| {
                if metric != Metric::TokenUsage {
                    latencies.record(metric, value);
                }
            });
        }
    }

    pub fn record_operation(&mut self, op: &OperationRecord, hdr: &mut LatencyStore) {
        let seconds = op.end_unix_nanos.saturating_sub(op.start_unix_nanos) as f64 / 1e9;
        match self {
            Instruments::Native(native) => native.record_operation(op, seconds),
            Instruments::Bridge(buffer) => {
                let base = base_attributes(op.names());
                let attrs = match &op.error_type {
                    Some(error) => series_attributes(&base, Series::Error(error)),
                    None => base,
                };
                buffer.record(Metric::OperationDuration, attrs, seconds)
            }
        }
        hdr.model(op.request_model.as_deref().unwrap_or(""))
            .record(Metric::OperationDuration, seconds);
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
