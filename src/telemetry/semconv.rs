//! Names and bucket boundaries of the telemetry the core emits.
//!
//! GenAI names and boundaries follow OpenTelemetry semantic conventions v1.41.1
//! (the GenAI metrics of the conventions) by default, and the latest GenAI conventions
//! (semantic-conventions-genai) with `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`; the `gen_ai.latency.*` span attributes are the names vLLM's own
//! `llm_request` span uses, kept so dashboards built on it keep working; `vllm.*` metrics are ours.

pub const INSTRUMENTATION_SCOPE: &str = "opentelemetry.instrumentation.vllm";

// Span and metric attributes.
pub const OPERATION_NAME: &str = "gen_ai.operation.name";
pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
pub const REQUEST_MODEL: &str = "gen_ai.request.model";
pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
pub const RESPONSE_ID: &str = "gen_ai.response.id";
pub const RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
pub const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
pub const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
pub const USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
pub const TOKEN_TYPE: &str = "gen_ai.token.type";
/// Latest conventions: the modality of the tokens a usage counter counts (`text`, `unknown`, ...).
pub const TOKEN_MODALITY: &str = "gen_ai.token.modality";
pub const ERROR_TYPE: &str = "error.type";
pub const OPERATION_REQUEST_COUNT: &str = "vllm.operation.request_count";

// vLLM's native span attribute names for the per-request timings (seconds).
pub const LATENCY_TTFT: &str = "gen_ai.latency.time_to_first_token";
pub const LATENCY_TPOT: &str = "gen_ai.latency.time_per_output_token";
pub const LATENCY_QUEUE: &str = "gen_ai.latency.time_in_queue";
pub const LATENCY_PREFILL: &str = "gen_ai.latency.time_in_model_prefill";
pub const LATENCY_DECODE: &str = "gen_ai.latency.time_in_model_decode";
pub const LATENCY_INFERENCE: &str = "gen_ai.latency.time_in_model_inference";
pub const LATENCY_E2E: &str = "gen_ai.latency.e2e";

/// Every key the core sets on a request span (`spans.rs` checks each span's against it in tests).
pub const REQUEST_SPAN_KEYS: [&str; 17] = [
    OPERATION_NAME,
    PROVIDER_NAME,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    RESPONSE_ID,
    RESPONSE_FINISH_REASONS,
    USAGE_INPUT_TOKENS,
    USAGE_OUTPUT_TOKENS,
    USAGE_CACHE_READ_INPUT_TOKENS,
    LATENCY_TTFT,
    LATENCY_TPOT,
    LATENCY_QUEUE,
    LATENCY_PREFILL,
    LATENCY_DECODE,
    LATENCY_INFERENCE,
    LATENCY_E2E,
    ERROR_TYPE,
];

// Metric names.
pub const METRIC_TTFT: &str = "gen_ai.server.time_to_first_token";
pub const METRIC_TPOT: &str = "gen_ai.server.time_per_output_token";
pub const METRIC_REQUEST_DURATION: &str = "gen_ai.server.request.duration";
pub const METRIC_OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
pub const METRIC_TOKEN_USAGE: &str = "gen_ai.client.token.usage";
// The latest conventions' replacements (semantic-conventions-genai #521, #374).
pub const METRIC_INFERENCE_DURATION: &str = "gen_ai.client.inference.duration";
pub const METRIC_USAGE_INPUT_TOKENS: &str = "gen_ai.client.inference.usage.input_tokens";
pub const METRIC_USAGE_OUTPUT_TOKENS: &str = "gen_ai.client.inference.usage.output_tokens";
pub const METRIC_USAGE_CACHE_READ_INPUT_TOKENS: &str =
    "gen_ai.client.inference.usage.cache_read.input_tokens";
pub const METRIC_OPERATION_INPUT_TOKENS: &str = "gen_ai.client.inference.operation.input_tokens";
pub const METRIC_OPERATION_OUTPUT_TOKENS: &str = "gen_ai.client.inference.operation.output_tokens";
/// The `gen_ai.operation.name` values of inference: `gen_ai.client.inference.duration` replaces
/// `gen_ai.client.operation.duration` for these only (embeddings keep the latter).
pub const INFERENCE_OPERATIONS: [&str; 3] = ["chat", "text_completion", "generate_content"];
pub const METRIC_QUEUE: &str = "vllm.request.queue.duration";
pub const METRIC_PREFILL: &str = "vllm.request.prefill.duration";
pub const METRIC_DECODE: &str = "vllm.request.decode.duration";
pub const METRIC_INFERENCE: &str = "vllm.request.inference.duration";
// Engine gauges (from the scheduler's per-step stats) and their engine attribute.
pub const METRIC_REQUESTS_RUNNING: &str = "vllm.requests.running";
pub const METRIC_REQUESTS_WAITING: &str = "vllm.requests.waiting";
pub const METRIC_KV_CACHE_USAGE: &str = "vllm.kv_cache.usage";
pub const METRIC_PREEMPTIONS: &str = "vllm.preemptions";
// The engine failed: every request in flight failed with it (its engine-core process died, or
// the frontend's handling of its outputs raised).
pub const METRIC_ENGINE_FAILURES: &str = "vllm.engine.failures";
pub const ENGINE_INDEX: &str = "vllm.engine.index";

/// `gen_ai.client.operation.duration` and `gen_ai.server.request.duration`.
pub const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// `gen_ai.server.time_to_first_token`; also used for the queue and prefill phases, which are parts of it.
pub const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// `gen_ai.server.time_per_output_token`.
pub const TPOT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
/// `gen_ai.client.token.usage`, `gen_ai.client.inference.operation.{input,output}_tokens`.
pub const TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
