//! Delivery of what `telemetry/` built: the span and metric exporters made from the configuration
//! (`exporters.rs`: OTLP over HTTP or gRPC, console, each counted), the core's own OTLP span
//! encoding (`otlp_span_encoder.rs`, see docs/design/otlp-span-encoder.md), and delivery through
//! the application's Python SDK providers instead (`bridge.rs`, see docs/design/bridge-delivery.md).

mod bridge;
mod exporters;
mod otlp_span_encoder;

pub(crate) use bridge::{Bridges, PyCallback};
pub(crate) use exporters::{
    console_metric_exporter, otlp_metric_exporter, otlp_span_exporter, CountingMetricExporter,
    CountingSpanExporter, SpanSink,
};
