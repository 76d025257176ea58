//! What a record becomes: its span (`spans.rs`: the code that turns a finished request or an
//! operation into a span), its histogram measurements (`metric_table.rs`, `metrics.rs`), its local
//! HDR percentiles (`hdr.rs`), and the engines' gauges (`engine_gauges.rs`), with the semconv
//! names they use (`semconv.rs`) and fork-safe ids (`ids.rs`).
//!
//! Built on the recorder thread from records (`record/`); delivered by `export/`.

mod engine_gauges;
mod hdr;
mod ids;
mod metric_table;
mod metrics;
mod semconv;
mod spans;

pub(crate) use engine_gauges::{
    EngineState, EngineStates, Labels, ENGINE_FAILURE_METRIC, ENGINE_METRICS,
};
pub(crate) use hdr::{summary_table, LatencyStore, Percentiles};
pub(crate) use ids::{new_span_id, new_trace_id};
pub(crate) use metric_table::{Kind, MetricSpec, DEFAULT_METRICS, METRICS};
pub(crate) use metrics::{Instruments, MeasurementBuffer, MeasurementGroup, NativeInstruments};
pub(crate) use semconv::INSTRUMENTATION_SCOPE;
pub(crate) use spans::{merge_attributes, span_name, SpanFactory};
