//! The histograms the core records, one table for both deliveries: name, unit, description and
//! the semconv bucket boundaries, indexed by `Metric`. `metrics.rs` records into them, `hdr.rs`
//! keeps a local HDR histogram per entry, and the metric bridge gets the table (`_core.METRICS`).

use super::semconv as sc;

/// A histogram the core records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Ttft,
    Tpot,
    RequestDuration,
    OperationDuration,
    TokenUsage,
    Queue,
    Prefill,
    Decode,
    Inference,
}

pub struct MetricSpec {
    pub name: &'static str,
    pub unit: &'static str,
    pub description: &'static str,
    pub buckets: &'static [f64],
    /// Recorded as integers (token counts).
    pub integer: bool,
}

const fn seconds(
    name: &'static str,
    description: &'static str,
    buckets: &'static [f64],
) -> MetricSpec {
    MetricSpec {
        name,
        unit: "s",
        description,
        buckets,
        integer: false,
    }
}

/// Every histogram, indexed by `Metric as usize`: one table for both deliveries.
pub const METRICS: [MetricSpec; 9] = [
    seconds(
        sc::METRIC_TTFT,
        "Time to generate first token for successful responses.",
        sc::TTFT_BUCKETS,
    ),
    seconds(
        sc::METRIC_TPOT,
        "Time per output token generated after the first token for successful responses.",
        sc::TPOT_BUCKETS,
    ),
    seconds(
        sc::METRIC_REQUEST_DURATION,
        "Generative AI server request duration such as time-to-last byte or last output token.",
        sc::DURATION_BUCKETS,
    ),
    seconds(
        sc::METRIC_OPERATION_DURATION,
        "GenAI operation duration.",
        sc::DURATION_BUCKETS,
    ),
    MetricSpec {
        name: sc::METRIC_TOKEN_USAGE,
        unit: "{token}",
        description: "Number of input and output tokens used.",
        buckets: sc::TOKEN_BUCKETS,
        integer: true,
    },
    seconds(
        sc::METRIC_QUEUE,
        "Time a request spent waiting in vLLM's scheduler queue.",
        sc::TTFT_BUCKETS,
    ),
    seconds(
        sc::METRIC_PREFILL,
        "Time from a request's first scheduling to its first token.",
        sc::TTFT_BUCKETS,
    ),
    seconds(
        sc::METRIC_DECODE,
        "Time from a request's first token to its last token.",
        sc::DURATION_BUCKETS,
    ),
    seconds(
        sc::METRIC_INFERENCE,
        "Time from a request's first scheduling to its last token.",
        sc::DURATION_BUCKETS,
    ),
];

impl Metric {
    pub fn spec(self) -> &'static MetricSpec {
        &METRICS[self as usize]
    }
}
