//! The instruments the core records, one table for both deliveries: name, unit, description,
//! instrument kind and the semconv bucket boundaries, indexed by `Metric`. `metrics.rs` records
//! into them (the semconv mode chooses which), `hdr.rs` keeps a local HDR histogram per seconds
//! entry, and the metric bridge gets the table (`_core.METRICS` and `_core.LATEST_METRICS`).

use super::semconv as sc;
use crate::config::SemconvMode;

/// An instrument the core records.
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
    // The latest GenAI conventions (OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental):
    // the first replaces OperationDuration for inference, the others replace TokenUsage.
    InferenceDuration,
    UsageInputTokens,
    UsageOutputTokens,
    UsageCacheReadInputTokens,
    OperationInputTokens,
    OperationOutputTokens,
}

/// The instrument a metric is: the latest conventions count token usage with counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Histogram,
    Counter,
}

pub struct MetricSpec {
    pub name: &'static str,
    pub unit: &'static str,
    pub description: &'static str,
    pub buckets: &'static [f64],
    /// Recorded as integers (token counts).
    pub integer: bool,
    pub kind: Kind,
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
        kind: Kind::Histogram,
    }
}

const fn tokens(name: &'static str, description: &'static str, kind: Kind) -> MetricSpec {
    MetricSpec {
        name,
        unit: "{token}",
        description,
        buckets: match kind {
            Kind::Histogram => sc::TOKEN_BUCKETS,
            Kind::Counter => &[],
        },
        integer: true,
        kind,
    }
}

/// How many of the first entries are those of the default conventions (v1.41.1); the rest only
/// the latest conventions have.
pub const DEFAULT_METRICS: usize = Metric::InferenceDuration as usize;

/// Every instrument, indexed by `Metric as usize`: one table for both deliveries.
pub const METRICS: [MetricSpec; 15] = [
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
    tokens(
        sc::METRIC_TOKEN_USAGE,
        "Number of input and output tokens used.",
        Kind::Histogram,
    ),
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
    seconds(
        sc::METRIC_INFERENCE_DURATION,
        "GenAI inference operation duration.",
        sc::DURATION_BUCKETS,
    ),
    tokens(
        sc::METRIC_USAGE_INPUT_TOKENS,
        "The number of input (prompt) tokens used, including cached tokens.",
        Kind::Counter,
    ),
    tokens(
        sc::METRIC_USAGE_OUTPUT_TOKENS,
        "The number of output (completion) tokens used, including reasoning tokens.",
        Kind::Counter,
    ),
    tokens(
        sc::METRIC_USAGE_CACHE_READ_INPUT_TOKENS,
        "The number of input tokens read from the cache.",
        Kind::Counter,
    ),
    tokens(
        sc::METRIC_OPERATION_INPUT_TOKENS,
        "The number of input (prompt) tokens used per inference operation.",
        Kind::Histogram,
    ),
    tokens(
        sc::METRIC_OPERATION_OUTPUT_TOKENS,
        "The number of output (completion) tokens used per inference operation.",
        Kind::Histogram,
    ),
];

impl Metric {
    pub fn spec(self) -> &'static MetricSpec {
        &METRICS[self as usize]
    }

    /// Every metric, in table order.
    pub const ALL: [Metric; METRICS.len()] = [
        Metric::Ttft,
        Metric::Tpot,
        Metric::RequestDuration,
        Metric::OperationDuration,
        Metric::TokenUsage,
        Metric::Queue,
        Metric::Prefill,
        Metric::Decode,
        Metric::Inference,
        Metric::InferenceDuration,
        Metric::UsageInputTokens,
        Metric::UsageOutputTokens,
        Metric::UsageCacheReadInputTokens,
        Metric::OperationInputTokens,
        Metric::OperationOutputTokens,
    ];

    /// Whether the semconv mode emits this metric: each mode has its own names for the client
    /// metrics; the server and `vllm.*` metrics are the same in both.
    pub fn in_mode(self, mode: SemconvMode) -> bool {
        match self {
            Metric::TokenUsage => mode == SemconvMode::V1_41,
            Metric::InferenceDuration
            | Metric::UsageInputTokens
            | Metric::UsageOutputTokens
            | Metric::UsageCacheReadInputTokens
            | Metric::OperationInputTokens
            | Metric::OperationOutputTokens => mode == SemconvMode::Latest,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_entries_come_first() {
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(m.in_mode(SemconvMode::V1_41), i < DEFAULT_METRICS, "{m:?}");
        }
    }

    #[test]
    fn all_is_in_table_order() {
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i);
        }
    }
}
