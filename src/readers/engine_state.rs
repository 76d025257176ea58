//! Reading an engine step's scheduler state (running and waiting requests, KV-cache usage,
//! preemptions) from the objects vLLM's stat loggers get, and recording it into the pipeline's
//! engine gauges (`telemetry/engine_gauges.rs`). What the attributes are called is the shim's
//! knowledge (`_vllm.ENGINE_STATE_ATTRIBUTES`); `EngineStateRecorder` only reads them.

use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt};

use std::collections::BTreeMap;

use super::attribute::{Attribute, Field};
use crate::pipeline;
use crate::record::Name;
use crate::telemetry::{EngineState, Labels};

/// Reads an engine step's state from the objects vLLM's stat loggers get, by the attribute names
/// the shim gave, and records it: called once per engine step (`StatLoggerManager.record`), the one
/// call the serving path makes per step besides the finished requests'. One Python call reading
/// the attributes here costs less than reading them in Python and passing a tuple: in a running
/// server each step's Python code runs from cold caches, where fewer frames and objects count.
#[pyclass(frozen, module = "opentelemetry.instrumentation.vllm._core")]
pub struct EngineStateRecorder {
    provider: Name,
    model: Option<Name>,
    labels: Labels,
    running: Attribute,
    waiting: Attribute,
    /// Tried in order: the first present one is the usage (vLLM renamed it).
    usage: Vec<Attribute>,
    preempted: Attribute,
}

#[pymethods]
impl EngineStateRecorder {
    /// `running`, `waiting` and `usage` name attributes of vLLM's scheduler stats, `preempted` one of
    /// its iteration stats (see `_core.pyi`); `attributes`: integer attributes of every point of
    /// this engine's gauges (the shim's names and values, constant for the recorder).
    #[new]
    #[pyo3(signature = (provider, model, *, running, waiting, usage, preempted, attributes=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        provider: &str,
        model: Option<&str>,
        running: &str,
        waiting: &str,
        usage: Vec<String>,
        preempted: &str,
        attributes: Option<BTreeMap<String, i64>>,
    ) -> Self {
        EngineStateRecorder {
            provider: Name::from(provider),
            model: model.map(Name::from),
            labels: attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(name, value)| (Name::from(name.as_str()), value))
                .collect(),
            running: Attribute::new(py, running),
            waiting: Attribute::new(py, waiting),
            usage: usage.iter().map(|name| Attribute::new(py, name)).collect(),
            preempted: Attribute::new(py, preempted),
        }
    }

    /// Records one step (`owner`, the stat logger manager, is not read). Nothing here raises: a
    /// value that is missing, of another type or out of range, or whose attribute raised, is
    /// absent; a step with neither stats object records nothing. Returns whether it recorded.
    #[pyo3(signature = (owner, scheduler_stats, iteration_stats, engine_index))]
    fn record(
        &self,
        owner: &Bound<'_, PyAny>,
        scheduler_stats: &Bound<'_, PyAny>,
        iteration_stats: &Bound<'_, PyAny>,
        engine_index: &Bound<'_, PyAny>,
    ) -> bool {
        let _ = owner;
        if scheduler_stats.is_none() && iteration_stats.is_none() {
            return false;
        }
        let Some(pipeline) = pipeline::current() else {
            return false;
        };
        pipeline
            .engine_states
            .record(&self.read(scheduler_stats, iteration_stats, engine_index));
        true
    }
}

impl EngineStateRecorder {
    fn read<'py>(
        &self,
        scheduler_stats: &Bound<'py, PyAny>,
        iteration_stats: &Bound<'py, PyAny>,
        engine_index: &Bound<'py, PyAny>,
    ) -> EngineState {
        // getattr(None, name, None) is None: a missing stats object is not read (a read of None
        // would mark the attribute missing, and read it the slow way from then on).
        let of = |stats: &Bound<'py, PyAny>, attribute: &Attribute| -> Option<Bound<'py, PyAny>> {
            if stats.is_none() {
                return None;
            }
            match attribute.read(stats) {
                Ok(Field::Present(value)) => Some(value),
                _ => None,
            }
        };
        let count = |stats: &Bound<'py, PyAny>, attribute: &Attribute| {
            of(stats, attribute).and_then(|v| non_negative(&v))
        };
        let usage = self
            .usage
            .iter()
            .find_map(|attribute| of(scheduler_stats, attribute))
            .and_then(|v| fraction(&v));
        EngineState {
            provider: self.provider.clone(),
            model: self.model.clone(),
            // vLLM's default (None: its only engine).
            engine_index: engine_index.extract::<i64>().unwrap_or(0),
            labels: self.labels.clone(),
            running: count(scheduler_stats, &self.running),
            waiting: count(scheduler_stats, &self.waiting),
            kv_cache_usage: usage,
            preemptions: count(iteration_stats, &self.preempted).map(|n| n as u64),
        }
    }
}

/// An int in 0..=i64::MAX; anything else is absent.
fn non_negative(value: &Bound<'_, PyAny>) -> Option<i64> {
    if !value.is_instance_of::<PyInt>() {
        return None;
    }
    value.extract::<i64>().ok().filter(|n| *n >= 0)
}

/// A fraction of the cache in use, from an int or float: anything outside [0, 1] is not a usage.
fn fraction(value: &Bound<'_, PyAny>) -> Option<f64> {
    if !(value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>()) {
        return None;
    }
    let v: f64 = value.extract().ok()?;
    (v.is_finite() && (0.0..=1.0).contains(&v)).then_some(v)
}
