//! Engine gauges: what vLLM's scheduler reports once per engine step (running and waiting requests,
//! KV-cache usage, preemptions). Recorded on the caller's thread: one gauge store per value and
//! step costs less than queueing it for the recorder.

use opentelemetry::metrics::{Counter, Gauge, Meter};
use opentelemetry::KeyValue;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::semconv as sc;

pub const ENGINE_STATE_LEN: usize = 7;

/// One engine step's scheduler state; `None` where vLLM reported nothing.
#[derive(Debug, Default, PartialEq)]
pub struct EngineState {
    pub provider: String,
    pub model: Option<String>,
    pub engine_index: i64,
    pub running: Option<i64>,
    pub waiting: Option<i64>,
    pub kv_cache_usage: Option<f64>,
    pub preemptions: Option<u64>,
}

impl EngineState {
    pub fn from_tuple(obj: &Bound<'_, PyAny>) -> PyResult<EngineState> {
        let t = obj.cast::<PyTuple>()?;
        if t.len() != ENGINE_STATE_LEN {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "engine state must have {ENGINE_STATE_LEN} fields, got {}",
                t.len()
            )));
        }
        let f = |i| t.get_borrowed_item(i).map(|b| b.to_owned());
        let count = |v: Bound<'_, PyAny>| -> PyResult<Option<i64>> {
            if v.is_none() {
                return Ok(None);
            }
            let n: i64 = v.extract()?;
            Ok((n >= 0).then_some(n))
        };
        let usage = f(5)?;
        Ok(EngineState {
            provider: crate::records::opt_string(&f(0)?)?.unwrap_or_default(),
            model: crate::records::opt_string(&f(1)?)?,
            engine_index: f(2)?.extract()?,
            running: count(f(3)?)?,
            waiting: count(f(4)?)?,
            kv_cache_usage: if usage.is_none() {
                None
            } else {
                let v: f64 = usage.extract()?;
                // A fraction of the cache in use: anything outside [0, 1] is not a usage.
                (v.is_finite() && (0.0..=1.0).contains(&v)).then_some(v)
            },
            preemptions: count(f(6)?)?.map(|n| n as u64),
        })
    }
}

pub struct EngineGauges {
    running: Gauge<i64>,
    waiting: Gauge<i64>,
    kv_cache_usage: Gauge<f64>,
    preemptions: Counter<u64>,
}

impl EngineGauges {
    pub fn new(meter: &Meter) -> EngineGauges {
        EngineGauges {
            running: meter
                .i64_gauge(sc::METRIC_REQUESTS_RUNNING)
                .with_unit("{request}")
                .with_description("Requests the engine is running (scheduled in the last step).")
                .build(),
            waiting: meter
                .i64_gauge(sc::METRIC_REQUESTS_WAITING)
                .with_unit("{request}")
                .with_description("Requests waiting in the engine's queue.")
                .build(),
            kv_cache_usage: meter
                .f64_gauge(sc::METRIC_KV_CACHE_USAGE)
                .with_unit("1")
                .with_description("Fraction of the KV cache in use (0 to 1).")
                .build(),
            preemptions: meter
                .u64_counter(sc::METRIC_PREEMPTIONS)
                .with_unit("{preemption}")
                .with_description("Requests the scheduler preempted.")
                .build(),
        }
    }

    pub fn record(&self, state: &EngineState) {
        let mut attributes = vec![
            KeyValue::new(sc::PROVIDER_NAME, state.provider.clone()),
            KeyValue::new(sc::ENGINE_INDEX, state.engine_index),
        ];
        if let Some(m) = &state.model {
            attributes.push(KeyValue::new(sc::REQUEST_MODEL, m.clone()));
        }
        if let Some(v) = state.running {
            self.running.record(v, &attributes);
        }
        if let Some(v) = state.waiting {
            self.waiting.record(v, &attributes);
        }
        if let Some(v) = state.kv_cache_usage {
            self.kv_cache_usage.record(v, &attributes);
        }
        if let Some(v) = state.preemptions {
            self.preemptions.add(v, &attributes);
        }
    }
}
