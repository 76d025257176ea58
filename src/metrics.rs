//! The histograms the core records, with the semconv bucket boundaries and attributes.
//!
//! Metric attributes are per semconv only (operation, provider, request and response model,
//! error.type, token type): never a per-request value, so cardinality stays bounded.

use std::collections::HashMap;

use opentelemetry::metrics::{BoundHistogram, Histogram, Meter};
use opentelemetry::KeyValue;

use crate::hdr::LatencyStore;
use crate::records::{BatchHeader, OperationRecord, RequestRecord};
use crate::semconv as sc;

/// Histograms bound to one attribute set (operation, provider, models): recording into a bound
/// instrument skips the SDK's per-call attribute lookup, which dominated the recorder's CPU time.
/// Each is bound on its first value: binding creates the time series, and a metric vLLM gave no
/// value for must export no point.
#[derive(Default)]
struct BoundSet {
    seconds: [Option<BoundHistogram<f64>>; 7],
    tokens: [Option<BoundHistogram<u64>>; 2],
}

// Indexes into `BoundSet::seconds` and `BoundSet::tokens`.
const TTFT: usize = 0;
const TPOT: usize = 1;
const REQUEST_DURATION: usize = 2;
const QUEUE: usize = 3;
const PREFILL: usize = 4;
const DECODE: usize = 5;
const INFERENCE: usize = 6;
const INPUT: usize = 0;
const OUTPUT: usize = 1;

fn record_bound<T: Copy>(
    slot: &mut Option<BoundHistogram<T>>,
    histogram: &Histogram<T>,
    attributes: &dyn Fn() -> Vec<KeyValue>,
    value: T,
) {
    slot.get_or_insert_with(|| histogram.bind(&attributes()))
        .record(value);
}

/// Bound sets kept at most; past that, records go through the unbound path (same result, slower).
const MAX_BOUND_SETS: usize = 256;

type AttributeSetKey = (String, String, Option<String>, Option<String>);

pub struct Instruments {
    bound: HashMap<AttributeSetKey, BoundSet>,
    ttft: Histogram<f64>,
    tpot: Histogram<f64>,
    request_duration: Histogram<f64>,
    operation_duration: Histogram<f64>,
    token_usage: Histogram<u64>,
    queue: Histogram<f64>,
    prefill: Histogram<f64>,
    decode: Histogram<f64>,
    inference: Histogram<f64>,
}

fn seconds_histogram(
    meter: &Meter,
    name: &'static str,
    description: &'static str,
    buckets: &[f64],
) -> Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_unit("s")
        .with_description(description)
        .with_boundaries(buckets.to_vec())
        .build()
}

fn base_attributes(
    operation: &str,
    provider: &str,
    request_model: Option<&str>,
    response_model: Option<&str>,
) -> Vec<KeyValue> {
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

impl Instruments {
    pub fn new(meter: &Meter) -> Self {
        Instruments {
            bound: HashMap::new(),
            ttft: seconds_histogram(meter, sc::METRIC_TTFT, "Time to generate first token for successful responses.", sc::TTFT_BUCKETS),
            tpot: seconds_histogram(meter, sc::METRIC_TPOT, "Time per output token generated after the first token for successful responses.", sc::TPOT_BUCKETS),
            request_duration: seconds_histogram(meter, sc::METRIC_REQUEST_DURATION, "Generative AI server request duration such as time-to-last byte or last output token.", sc::DURATION_BUCKETS),
            operation_duration: seconds_histogram(meter, sc::METRIC_OPERATION_DURATION, "GenAI operation duration.", sc::DURATION_BUCKETS),
            token_usage: meter
                .u64_histogram(sc::METRIC_TOKEN_USAGE)
                .with_unit("{token}")
                .with_description("Number of input and output tokens used.")
                .with_boundaries(sc::TOKEN_BUCKETS.to_vec())
                .build(),
            queue: seconds_histogram(meter, sc::METRIC_QUEUE, "Time a request spent waiting in vLLM's scheduler queue.", sc::TTFT_BUCKETS),
            prefill: seconds_histogram(meter, sc::METRIC_PREFILL, "Time from a request's first scheduling to its first token.", sc::TTFT_BUCKETS),
            decode: seconds_histogram(meter, sc::METRIC_DECODE, "Time from a request's first token to its last token.", sc::DURATION_BUCKETS),
            inference: seconds_histogram(meter, sc::METRIC_INFERENCE, "Time from a request's first scheduling to its last token.", sc::DURATION_BUCKETS),
        }
    }

    /// Records every metric of one batch of finished requests.
    pub fn record_requests(
        &mut self,
        header: &BatchHeader,
        requests: &[RequestRecord],
        hdr: &mut LatencyStore,
    ) {
        let base = base_attributes(
            &header.operation_name,
            &header.provider_name,
            header.request_model.as_deref(),
            header.response_model.as_deref(),
        );
        let key: AttributeSetKey = (
            header.operation_name.clone(),
            header.provider_name.clone(),
            header.request_model.clone(),
            header.response_model.clone(),
        );
        let mut unbound = BoundSet::default();
        let bound = if self.bound.contains_key(&key) || self.bound.len() < MAX_BOUND_SETS {
            self.bound.entry(key).or_default()
        } else {
            &mut unbound
        };
        let base_attrs = || base.clone();
        let token_attrs = |token_type: &'static str| {
            let mut attrs = base.clone();
            attrs.push(KeyValue::new(sc::TOKEN_TYPE, token_type));
            attrs
        };
        let input_attrs = || token_attrs("input");
        let output_attrs = || token_attrs("output");
        let model = header.request_model.as_deref().unwrap_or("");
        let mut with_error = base.clone();
        for r in requests {
            let t = &r.timings;
            let phases = [
                (QUEUE, &self.queue, sc::METRIC_QUEUE, t.queue),
                (PREFILL, &self.prefill, sc::METRIC_PREFILL, t.prefill),
                (DECODE, &self.decode, sc::METRIC_DECODE, t.decode),
                (
                    INFERENCE,
                    &self.inference,
                    sc::METRIC_INFERENCE,
                    t.inference,
                ),
            ];
            for (slot, histogram, name, value) in phases {
                if let Some(v) = value {
                    record_bound(&mut bound.seconds[slot], histogram, &base_attrs, v);
                    hdr.record(name, model, v);
                }
            }
            let duration = r.duration_seconds();
            match &r.error_type {
                None => {
                    // Semconv defines TTFT and TPOT for successful responses only.
                    if let Some(v) = t.time_to_first_token {
                        record_bound(&mut bound.seconds[TTFT], &self.ttft, &base_attrs, v);
                        hdr.record(sc::METRIC_TTFT, model, v);
                    }
                    if let Some(v) = t.time_per_output_token {
                        record_bound(&mut bound.seconds[TPOT], &self.tpot, &base_attrs, v);
                        hdr.record(sc::METRIC_TPOT, model, v);
                    }
                    record_bound(
                        &mut bound.seconds[REQUEST_DURATION],
                        &self.request_duration,
                        &base_attrs,
                        duration,
                    );
                }
                Some(error) => {
                    with_error.truncate(base.len());
                    with_error.push(KeyValue::new(sc::ERROR_TYPE, error.clone()));
                    self.request_duration.record(duration, &with_error);
                }
            }
            hdr.record(sc::METRIC_REQUEST_DURATION, model, duration);
            if let Some(n) = r.input_tokens {
                record_bound(
                    &mut bound.tokens[INPUT],
                    &self.token_usage,
                    &input_attrs,
                    n as u64,
                );
            }
            if let Some(n) = r.output_tokens {
                record_bound(
                    &mut bound.tokens[OUTPUT],
                    &self.token_usage,
                    &output_attrs,
                    n as u64,
                );
            }
        }
    }

    pub fn record_operation(&self, op: &OperationRecord, hdr: &mut LatencyStore) {
        let mut attrs = base_attributes(
            &op.operation_name,
            &op.provider_name,
            op.request_model.as_deref(),
            op.response_model.as_deref(),
        );
        if let Some(e) = &op.error_type {
            attrs.push(KeyValue::new(sc::ERROR_TYPE, e.clone()));
        }
        let seconds = op.end_unix_nanos.saturating_sub(op.start_unix_nanos) as f64 / 1e9;
        self.operation_duration.record(seconds, &attrs);
        hdr.record(
            sc::METRIC_OPERATION_DURATION,
            op.request_model.as_deref().unwrap_or(""),
            seconds,
        );
    }
}
