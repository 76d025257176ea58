//! Bridge delivery: hands finished spans and raw metric measurements to Python callables that
//! re-create them through the application's SDK providers (`_bridge.py`).
//!
//! Each callable is called once per batch, from the core's own threads (the batch span processor
//! for spans, the recorder for measurements), never from the thread that recorded: only those
//! threads attach to the interpreter. A callable returns `(undelivered, first_error)`; a batch it
//! could not be called for (an exception, an interpreter shutting down) is undelivered whole.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::telemetry::MeasurementGroup;

/// The Python callables of the signals delivered through the application's providers.
#[derive(Clone, Debug, Default)]
pub struct Bridges {
    pub spans: Option<Arc<PyCallback>>,
    pub metrics: Option<Arc<PyCallback>>,
}

#[derive(Debug)]
pub struct PyCallback(Py<PyAny>);

impl PyCallback {
    pub fn new(callable: Py<PyAny>) -> Self {
        PyCallback(callable)
    }

    /// Calls the callable with one list; `(undelivered, error)` where `undelivered` is at most `n`.
    fn deliver(
        &self,
        n: usize,
        build: impl FnOnce(Python<'_>) -> PyResult<Bound<'_, PyList>>,
    ) -> (usize, Option<String>) {
        let outcome = Python::try_attach(|py| -> PyResult<(usize, Option<String>)> {
            let batch = build(py)?;
            let (undelivered, error): (usize, Option<String>) =
                self.0.bind(py).call1((batch,))?.extract()?;
            Ok((undelivered.min(n), error))
        });
        match outcome {
            Some(Ok(result)) => result,
            Some(Err(e)) => (n, Some(e.to_string())),
            None => (
                n,
                Some("the Python interpreter is shutting down".to_string()),
            ),
        }
    }

    /// Delivers finished spans; see `span_tuple` for the fields.
    pub fn deliver_spans(&self, batch: &[SpanData]) -> (usize, Option<String>) {
        self.deliver(batch.len(), |py| {
            let list = PyList::empty(py);
            for span in batch {
                list.append(span_tuple(py, span)?)?;
            }
            Ok(list)
        })
    }

    /// Delivers measurements as `(metric_index, attributes, values)`, one per group.
    pub fn deliver_measurements(&self, groups: &[MeasurementGroup]) -> (usize, Option<String>) {
        let n = groups.iter().map(|g| g.values.len()).sum();
        self.deliver(n, |py| {
            let list = PyList::empty(py);
            for group in groups {
                let values = if group.metric.spec().integer {
                    PyList::new(py, group.values.iter().map(|v| *v as u64))?
                } else {
                    PyList::new(py, &group.values)?
                };
                let item = (
                    group.metric as usize,
                    attributes_dict(py, &group.attributes)?,
                    values,
                );
                list.append(item)?;
            }
            Ok(list)
        })
    }
}

fn unix_nanos(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The value of Python's `opentelemetry.trace.SpanKind`.
fn span_kind_code(kind: &SpanKind) -> u8 {
    match kind {
        SpanKind::Internal => 0,
        SpanKind::Server => 1,
        SpanKind::Client => 2,
        SpanKind::Producer => 3,
        SpanKind::Consumer => 4,
    }
}

/// `(name, kind, trace_id, span_id, parent_span_id, parent_is_remote, trace_flags, start_ns,
/// end_ns, attributes, status_code, status_description)`; parent 0 for a root span, status codes
/// as Python's `StatusCode` (0 unset, 1 ok, 2 error).
fn span_tuple<'py>(py: Python<'py>, span: &SpanData) -> PyResult<Bound<'py, PyTuple>> {
    let cx = &span.span_context;
    let (status_code, description) = match &span.status {
        Status::Unset => (0u8, None),
        Status::Ok => (1, None),
        Status::Error { description } => (2, Some(description.to_string())),
    };
    (
        span.name.as_ref(),
        span_kind_code(&span.span_kind),
        u128::from_be_bytes(cx.trace_id().to_bytes()),
        u64::from_be_bytes(cx.span_id().to_bytes()),
        u64::from_be_bytes(span.parent_span_id.to_bytes()),
        span.parent_span_is_remote,
        cx.trace_flags().to_u8(),
        unix_nanos(span.start_time),
        unix_nanos(span.end_time),
        attributes_dict(py, &span.attributes)?,
        status_code,
        description,
    )
        .into_pyobject(py)
}

fn attributes_dict<'py>(py: Python<'py>, attributes: &[KeyValue]) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for kv in attributes {
        let key = kv.key.as_str();
        match &kv.value {
            Value::Bool(v) => dict.set_item(key, v)?,
            Value::I64(v) => dict.set_item(key, v)?,
            Value::F64(v) => dict.set_item(key, v)?,
            Value::String(v) => dict.set_item(key, v.as_str())?,
            Value::Array(Array::Bool(v)) => dict.set_item(key, PyTuple::new(py, v)?)?,
            Value::Array(Array::I64(v)) => dict.set_item(key, PyTuple::new(py, v)?)?,
            Value::Array(Array::F64(v)) => dict.set_item(key, PyTuple::new(py, v)?)?,
            Value::Array(Array::String(v)) => {
                dict.set_item(key, PyTuple::new(py, v.iter().map(|s| s.as_str()))?)?
            }
            // Values the records cannot produce.
            _ => {}
        }
    }
    Ok(dict)
}
