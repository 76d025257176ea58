//! Rust core of opentelemetry-instrumentation-vllm, exposed to Python as
//! `opentelemetry.instrumentation.vllm._core` (its stub: `_core.pyi`).
//!
//! This file holds the module declarations and the Python-facing functions; each folder below is
//! one concern, and uses only those listed before it:
//!
//! - `config.rs`, `diagnostics.rs`, `fork.rs`: configuration, self-observability, fork detection;
//! - `record/`: what the shim hands the core (record types, their intake from Python tuples);
//! - `telemetry/`: what a record becomes (spans, histograms, percentiles, engine gauges);
//! - `export/`: delivery (OTLP exporters and encoder, the bridge to Python SDK providers);
//! - `pipeline/`: the per-process pipeline (recorder thread, work queue, process-wide state);
//! - `readers/`: reading vLLM's objects by the attribute names the shim gives;
//! - `offline/`: the offline API's LLM calls, from begin to end.
//!
//! It knows OpenTelemetry (spans, semconv metrics, OTLP) and nothing of vLLM: the shim reads vLLM's
//! objects, or tells the core which attributes to read, and hands over plain records.

mod config;
mod diagnostics;
mod export;
mod fork;
mod offline;
mod pipeline;
mod readers;
mod record;
mod telemetry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::diagnostics::Counters;
use crate::export::{Bridges, PyCallback};
use crate::offline::Operation;
use crate::pipeline::ResourceInput;

fn timeout(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::from_secs(5))
}

/// Builds the pipeline from `overrides` (variable name -> value, from `instrument()` arguments),
/// the environment and the resource attributes given. `span_bridge` / `metric_bridge`: callables
/// that deliver that signal through the application's Python providers instead of our exporters.
/// A pipeline that is already running is kept (returns its state); one that was shut down is
/// replaced. Returns whether telemetry is enabled.
#[pyfunction]
#[pyo3(signature = (overrides=None, python_resource=None, explicit_resource=None, span_bridge=None, metric_bridge=None))]
fn configure(
    py: Python<'_>,
    overrides: Option<HashMap<String, String>>,
    python_resource: Option<&Bound<'_, PyAny>>,
    explicit_resource: Option<&Bound<'_, PyAny>>,
    span_bridge: Option<&Bound<'_, PyAny>>,
    metric_bridge: Option<&Bound<'_, PyAny>>,
) -> PyResult<bool> {
    let callback = |obj: Option<&Bound<'_, PyAny>>| {
        obj.filter(|o| !o.is_none())
            .map(|o| Arc::new(PyCallback::new(o.clone().unbind())))
    };
    let bridges = Bridges {
        spans: callback(span_bridge),
        metrics: callback(metric_bridge),
    };
    let resource = ResourceInput {
        python_sdk: python_resource
            .map(record::attributes)
            .transpose()?
            .unwrap_or_default(),
        explicit: explicit_resource
            .map(record::attributes)
            .transpose()?
            .unwrap_or_default(),
    };
    let _ = py;
    Ok(pipeline::configure(
        overrides.unwrap_or_default(),
        resource,
        bridges,
    ))
}

/// Whether a pipeline is running (not disabled, not shut down).
#[pyfunction]
fn is_enabled() -> bool {
    pipeline::built()
        .map(|p| !p.is_shut_down())
        .unwrap_or(false)
}

/// How the running pipeline delivers (traces, metrics): "bridge", "otlp", "console" or "none";
/// `None` without a running pipeline.
#[pyfunction]
fn delivery() -> Option<(&'static str, &'static str)> {
    pipeline::built()
        .filter(|p| !p.is_shut_down())
        .map(|p| p.delivery)
}

/// Reserves the context of a span recorded later: (trace_id, span_id, trace_flags).
#[pyfunction]
#[pyo3(signature = (parent, operation_name, request_model=None, span_kind=0))]
fn new_span_context(
    parent: &Bound<'_, PyAny>,
    operation_name: &Bound<'_, PyAny>,
    request_model: Option<&Bound<'_, PyAny>>,
    span_kind: i64,
) -> PyResult<(u128, u64, u8)> {
    let parent = record::parent(parent)?;
    // Lossy like every other string the core reads: a lone surrogate must not raise.
    let operation_name = record::opt_string(operation_name)?.unwrap_or_default();
    let request_model = request_model.map(record::opt_string).transpose()?.flatten();
    let (operation_name, request_model) = (operation_name.as_str(), request_model.as_deref());
    let kind = record::span_kind(span_kind);
    Ok(offline::reserve_span_context(
        parent.as_ref(),
        &telemetry::span_name(operation_name, request_model),
        kind,
    ))
}

/// The hot path: one batch of finished requests, one call. Returns how many were accepted.
#[pyfunction]
fn record_requests(header: &Bound<'_, PyAny>, requests: &Bound<'_, PyList>) -> PyResult<usize> {
    let Some(pipeline) = pipeline::current() else {
        return Ok(0);
    };
    let header = record::batch_header(header)?;
    let mut parsed = Vec::with_capacity(requests.len());
    let mut invalid = 0u64;
    for item in requests.iter() {
        match record::request_record(&item) {
            Ok(r) => parsed.push(r),
            Err(_) => invalid += 1,
        }
    }
    if invalid > 0 {
        Counters::add(&pipeline.counters.records_invalid, invalid);
        diagnostics::warn("invalid_record", || {
            format!("skipped {invalid} malformed request records")
        });
    }
    Ok(pipeline.record_requests(Arc::new(header), parsed.into()))
}

/// The engines' latest states, for the metric bridge's observable instruments:
/// [(provider, model, engine_index, [(attribute, value)], running, waiting, kv_cache_usage,
/// preemptions_total)].
#[pyfunction]
#[allow(clippy::type_complexity)]
fn engine_states() -> Vec<(
    String,
    Option<String>,
    i64,
    Vec<(String, i64)>,
    Option<i64>,
    Option<i64>,
    Option<f64>,
    Option<u64>,
)> {
    match pipeline::built() {
        Some(p) => p
            .engine_states
            .snapshot()
            .into_iter()
            .map(|((provider, model, index, labels), s)| {
                (
                    provider.to_string(),
                    model.map(|m| m.to_string()),
                    index,
                    labels.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                    s.running,
                    s.waiting,
                    s.kv_cache_usage,
                    s.preemptions,
                )
            })
            .collect(),
        None => Vec::new(),
    }
}

/// Records one failure of an engine (`vllm.engine.failures`): its engine-core process died or
/// the handling of its outputs raised, with `error_type` the type of what it failed with. The
/// counter is read at the next metric collection (and the last one, at shutdown).
/// `attributes`: integer attributes of the engine's points (which API-server process), as
/// `EngineStateRecorder` takes them.
#[pyfunction]
#[pyo3(signature = (provider, model, engine_index, error_type, *, attributes=None))]
fn record_engine_failure(
    provider: &Bound<'_, PyAny>,
    model: &Bound<'_, PyAny>,
    engine_index: i64,
    error_type: &Bound<'_, PyAny>,
    attributes: Option<std::collections::BTreeMap<String, i64>>,
) -> PyResult<bool> {
    let Some(pipeline) = pipeline::current() else {
        return Ok(false);
    };
    // Lossy like every other string the core reads: a lone surrogate must not raise.
    let provider = record::opt_string(provider)?.unwrap_or_default();
    let model = record::opt_string(model)?;
    let error_type = record::opt_string(error_type)?.unwrap_or_else(|| "_OTHER".to_string());
    pipeline.engine_states.record_failure(
        (
            record::Name::from(provider.as_str()),
            model.as_deref().map(record::Name::from),
            engine_index,
            attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(name, value)| (record::Name::from(name.as_str()), value))
                .collect(),
        ),
        record::Name::from(error_type.as_str()),
    );
    Ok(true)
}

/// The engines' failures so far, for the metric bridge's observable counter:
/// [(provider, model, engine_index, labels, error_type, count)].
#[pyfunction]
#[allow(clippy::type_complexity)]
fn engine_failures() -> Vec<(String, Option<String>, i64, Vec<(String, i64)>, String, u64)> {
    match pipeline::built() {
        Some(p) => p
            .engine_states
            .failures()
            .into_iter()
            .map(|(((provider, model, index, labels), error_type), count)| {
                (
                    provider.to_string(),
                    model.map(|m| m.to_string()),
                    index,
                    labels
                        .iter()
                        .map(|(name, value)| (name.to_string(), *value))
                        .collect(),
                    error_type.to_string(),
                    count,
                )
            })
            .collect(),
        None => Vec::new(),
    }
}

/// Records an operation span (reserved with `new_span_context`) and its duration metric.
#[pyfunction]
fn record_operation(operation: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Some(pipeline) = pipeline::current() else {
        return Ok(false);
    };
    let op = record::operation_record(operation)?;
    Ok(pipeline.record_operation(op))
}

/// Exports everything recorded so far; waits at most `timeout` seconds, without the GIL.
#[pyfunction]
#[pyo3(signature = (timeout=5.0))]
fn force_flush(py: Python<'_>, timeout: f64) -> bool {
    match pipeline::built() {
        Some(p) => py.detach(move || p.force_flush(self::timeout(timeout))),
        None => true,
    }
}

/// Flushes and stops the pipeline; idempotent; waits at most `timeout` seconds, without the GIL.
#[pyfunction]
#[pyo3(signature = (timeout=5.0))]
fn shutdown(py: Python<'_>, timeout: f64) -> bool {
    match pipeline::built() {
        Some(p) => py.detach(move || p.shutdown(self::timeout(timeout))),
        None => true,
    }
}

/// Self-observability counters (spans and metric exports sent, dropped and failed, ...).
#[pyfunction]
fn stats<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    if let Some(p) = pipeline::built() {
        let rows = py.detach(move || p.stats(Duration::from_secs(5)));
        for (k, v) in rows {
            dict.set_item(k, v)?;
        }
    }
    Ok(dict)
}

/// HDR percentiles per (metric, model), in seconds.
#[pyfunction]
fn latency_percentiles<'py>(py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let Some(p) = pipeline::built() else {
        return Ok(Vec::new());
    };
    let rows = py.detach(move || p.percentiles(Duration::from_secs(5)));
    rows.into_iter()
        .map(|r| {
            let d = PyDict::new(py);
            d.set_item("metric", r.metric)?;
            d.set_item("model", r.model)?;
            d.set_item("count", r.count)?;
            d.set_item("p50", r.p50)?;
            d.set_item("p90", r.p90)?;
            d.set_item("p99", r.p99)?;
            d.set_item("p99.9", r.p999)?;
            d.set_item("max", r.max)?;
            Ok(d)
        })
        .collect()
}

/// The percentiles as a text table (milliseconds).
#[pyfunction]
fn latency_summary(py: Python<'_>) -> String {
    match pipeline::built() {
        Some(p) => {
            py.detach(move || telemetry::summary_table(&p.percentiles(Duration::from_secs(5))))
        }
        None => String::new(),
    }
}

/// Whether OTEL_INSTRUMENTATION_VLLM_LATENCY_SUMMARY (or the argument) asked for a table at exit.
#[pyfunction]
fn latency_summary_at_exit() -> bool {
    pipeline::built()
        .map(|p| p.latency_summary_at_exit)
        .unwrap_or(false)
}

/// Whether the running pipeline emits the latest GenAI conventions
/// (`OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`); the shim asks once, at instrument().
#[pyfunction]
fn semconv_latest() -> bool {
    pipeline::built()
        .map(|p| p.semconv == crate::config::SemconvMode::Latest)
        .unwrap_or(false)
}

/// `os.register_at_fork(after_in_child=...)`: forget the parent's pipeline (its threads do not
/// exist here) without joining or dropping anything; the next call builds a new one.
#[pyfunction]
fn _after_fork_child() {
    pipeline::forget_after_fork();
}

/// The LLM call in progress on this thread, or None (the shim's slow paths).
#[pyfunction]
fn current_operation(py: Python<'_>) -> Option<Py<Operation>> {
    offline::current_operation(py)
}

/// Makes `operation` (or None) the LLM call in progress on this thread.
#[pyfunction]
#[pyo3(signature = (operation))]
fn set_current_operation(operation: Option<Py<Operation>>) {
    drop(offline::replace_current_operation(operation));
}

#[pymodule]
mod _core {
    #[pymodule_export]
    use super::{
        _after_fork_child, configure, current_operation, delivery, engine_failures, engine_states,
        force_flush, is_enabled, latency_percentiles, latency_summary, latency_summary_at_exit,
        new_span_context, record_engine_failure, record_operation, record_requests, semconv_latest,
        set_current_operation, shutdown, stats,
    };
    #[pymodule_export]
    use crate::offline::Operation;
    #[pymodule_export]
    use crate::offline::OutputReader;
    #[pymodule_export]
    use crate::offline::PendingRequests;
    #[pymodule_export]
    use crate::offline::{OfflineCalls, OperationStart};
    #[pymodule_export]
    use crate::readers::EngineStateRecorder;
    #[pymodule_export]
    use crate::readers::FinishedRequestReader;

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("REQUEST_RECORD_LEN", crate::record::REQUEST_RECORD_LEN)?;
        m.add(
            "REQUEST_RECORD_WITH_PARENT_LEN",
            crate::record::REQUEST_RECORD_WITH_PARENT_LEN,
        )?;
        m.add("BATCH_HEADER_LEN", crate::record::BATCH_HEADER_LEN)?;
        m.add("OPERATION_RECORD_LEN", crate::record::OPERATION_RECORD_LEN)?;
        m.add("ENGINE_METRICS", crate::telemetry::ENGINE_METRICS.to_vec())?;
        m.add(
            "ENGINE_FAILURE_METRIC",
            crate::telemetry::ENGINE_FAILURE_METRIC,
        )?;
        // (name, unit, description, bucket boundaries, integer) of every instrument, in the order
        // the metric bridge's indexes refer to: METRICS, those of the default conventions (v1.41.1),
        // then LATEST_METRICS, those only the latest conventions have (indexes len(METRICS) on).
        // COUNTER_METRICS: the indexes of the counters; every other instrument is a histogram.
        let spec = |s: &crate::telemetry::MetricSpec| {
            (s.name, s.unit, s.description, s.buckets.to_vec(), s.integer)
        };
        let (default, latest) =
            crate::telemetry::METRICS.split_at(crate::telemetry::DEFAULT_METRICS);
        m.add(
            "METRICS",
            pyo3::types::PyTuple::new(m.py(), default.iter().map(spec))?,
        )?;
        m.add(
            "LATEST_METRICS",
            pyo3::types::PyTuple::new(m.py(), latest.iter().map(spec))?,
        )?;
        let counters: Vec<usize> = crate::telemetry::METRICS
            .iter()
            .enumerate()
            .filter(|(_, s)| s.kind == crate::telemetry::Kind::Counter)
            .map(|(i, _)| i)
            .collect();
        m.add(
            "COUNTER_METRICS",
            pyo3::types::PyTuple::new(m.py(), counters)?,
        )?;
        Ok(())
    }
}
