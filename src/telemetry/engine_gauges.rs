//! Engine gauges: what the engine's scheduler reports once per step (running and waiting requests,
//! KV-cache usage, preemptions), kept as each engine's latest state and observed by the SDK's
//! gauges (or read by the metric bridge through `_core.engine_states`). Recorded on the caller's
//! thread: one map update per step costs less than queueing it for the recorder. The states are
//! read from vLLM's objects by `readers/engine_state.rs`. The engine failure counter
//! (`vllm.engine.failures`) is kept here too: a failure is one map update, observed the same way.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry::metrics::{AsyncInstrument, Meter};
use opentelemetry::KeyValue;
use parking_lot::Mutex;

use super::semconv as sc;
use crate::record::Name;

/// One engine step's scheduler state; `None` where vLLM reported nothing.
#[derive(Debug, Default, PartialEq)]
pub struct EngineState {
    pub provider: Name,
    pub model: Option<Name>,
    pub engine_index: i64,
    /// Integer attributes the shim gives per engine (for example which API-server process).
    pub labels: Labels,
    pub running: Option<i64>,
    pub waiting: Option<i64>,
    pub kv_cache_usage: Option<f64>,
    pub preemptions: Option<u64>,
}

/// One engine's latest state, and its preemptions since the process started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatestState {
    pub running: Option<i64>,
    pub waiting: Option<i64>,
    pub kv_cache_usage: Option<f64>,
    pub preemptions: Option<u64>,
}

/// Integer attributes the shim names, constant for one engine's recorder.
pub type Labels = Arc<[(Name, i64)]>;

/// (provider, model, engine index, labels): one engine of one frontend process.
pub type EngineKey = (Name, Option<Name>, i64, Labels);

type StateMap = Arc<Mutex<HashMap<EngineKey, LatestState>>>;
/// Failures since the process started, per engine and `error.type`.
type FailureMap = Arc<Mutex<HashMap<(EngineKey, Name), u64>>>;

/// (name, unit, description) of the engine failure counter (monotonic); the metric bridge builds
/// the same from this.
pub const ENGINE_FAILURE_METRIC: (&str, &str, &str) = (
    sc::METRIC_ENGINE_FAILURES,
    "{failure}",
    "Times the engine failed with requests in flight (its engine-core process died, or the \
     handling of its outputs raised); every request in flight failed with it.",
);

/// (name, unit, description) of the engine metrics; the first three are gauges (two integer, one
/// floating point), the last a monotonic counter. Python's metric bridge builds the same from this.
pub const ENGINE_METRICS: [(&str, &str, &str); 4] = [
    (
        sc::METRIC_REQUESTS_RUNNING,
        "{request}",
        "Requests the engine is running (scheduled in the last step).",
    ),
    (
        sc::METRIC_REQUESTS_WAITING,
        "{request}",
        "Requests waiting in the engine's queue.",
    ),
    (
        sc::METRIC_KV_CACHE_USAGE,
        "1",
        "Fraction of the KV cache in use (0 to 1).",
    ),
    (
        sc::METRIC_PREEMPTIONS,
        "{preemption}",
        "Requests the scheduler preempted.",
    ),
];

pub fn engine_attributes(key: &EngineKey) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new(sc::PROVIDER_NAME, key.0.clone()),
        KeyValue::new(sc::ENGINE_INDEX, key.2),
    ];
    if let Some(m) = &key.1 {
        attributes.push(KeyValue::new(sc::REQUEST_MODEL, m.clone()));
    }
    for (name, value) in key.3.iter() {
        attributes.push(KeyValue::new(name.clone(), *value));
    }
    attributes
}

/// The engines' latest states. Recording one step is a map update; the values are read when
/// metrics are collected, by observable instruments (native export) or by the Python metric bridge.
pub struct EngineStates {
    latest: StateMap,
    failures: FailureMap,
}

impl EngineStates {
    /// `meter`: where to register the observable instruments (native export); `None` when the
    /// metric bridge reads the states instead.
    pub fn new(meter: Option<&Meter>) -> EngineStates {
        let latest: StateMap = Arc::default();
        let failures: FailureMap = Arc::default();
        if let Some(meter) = meter {
            register_observers(meter, &latest);
            register_failure_counter(meter, &failures);
        }
        EngineStates { latest, failures }
    }

    /// One failure of an engine, with the type of what it failed with.
    pub fn record_failure(&self, key: EngineKey, error_type: Name) {
        *self.failures.lock().entry((key, error_type)).or_insert(0) += 1;
    }

    /// Failures so far: ((provider, model, engine index, labels), error.type) -> count.
    pub fn failures(&self) -> Vec<((EngineKey, Name), u64)> {
        let failures = self.failures.lock();
        failures.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    pub fn record(&self, state: &EngineState) {
        let key = (
            state.provider.clone(),
            state.model.clone(),
            state.engine_index,
            state.labels.clone(),
        );
        let mut latest = self.latest.lock();
        let entry = latest.entry(key).or_default();
        if state.running.is_some() {
            entry.running = state.running;
        }
        if state.waiting.is_some() {
            entry.waiting = state.waiting;
        }
        if state.kv_cache_usage.is_some() {
            entry.kv_cache_usage = state.kv_cache_usage;
        }
        if let Some(n) = state.preemptions {
            entry.preemptions = Some(entry.preemptions.unwrap_or(0) + n);
        }
    }

    pub fn snapshot(&self) -> Vec<(EngineKey, LatestState)> {
        let latest = self.latest.lock();
        latest.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// A collection callback that observes one field of every engine's latest state.
fn observe_field<T: Copy + 'static>(
    latest: &StateMap,
    field: fn(&LatestState) -> Option<T>,
) -> impl Fn(&dyn AsyncInstrument<T>) + Send + Sync + 'static {
    let map = latest.clone();
    move |observer| {
        for (key, state) in map.lock().iter() {
            if let Some(v) = field(state) {
                observer.observe(v, &engine_attributes(key));
            }
        }
    }
}

fn register_observers(meter: &Meter, latest: &StateMap) {
    // The SDK keeps the callbacks registered for the meter provider's lifetime.
    let [running, waiting, usage, preemptions] = ENGINE_METRICS;
    meter
        .i64_observable_gauge(running.0)
        .with_unit(running.1)
        .with_description(running.2)
        .with_callback(observe_field(latest, |s| s.running))
        .build();
    meter
        .i64_observable_gauge(waiting.0)
        .with_unit(waiting.1)
        .with_description(waiting.2)
        .with_callback(observe_field(latest, |s| s.waiting))
        .build();
    meter
        .f64_observable_gauge(usage.0)
        .with_unit(usage.1)
        .with_description(usage.2)
        .with_callback(observe_field(latest, |s| s.kv_cache_usage))
        .build();
    meter
        .u64_observable_counter(preemptions.0)
        .with_unit(preemptions.1)
        .with_description(preemptions.2)
        .with_callback(observe_field(latest, |s| s.preemptions))
        .build();
}

fn register_failure_counter(meter: &Meter, failures: &FailureMap) {
    let (name, unit, description) = ENGINE_FAILURE_METRIC;
    let map = failures.clone();
    meter
        .u64_observable_counter(name)
        .with_unit(unit)
        .with_description(description)
        .with_callback(move |observer| {
            for ((key, error_type), count) in map.lock().iter() {
                let mut attributes = engine_attributes(key);
                attributes.push(KeyValue::new(sc::ERROR_TYPE, error_type.clone()));
                observer.observe(*count, &attributes);
            }
        })
        .build();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(running: Option<i64>, usage: Option<f64>, preemptions: Option<u64>) -> EngineState {
        EngineState {
            provider: "vllm".into(),
            model: Some("m".into()),
            engine_index: 0,
            labels: Arc::from([(Name::from("server"), 1)]),
            running,
            waiting: Some(2),
            kv_cache_usage: usage,
            preemptions,
        }
    }

    #[test]
    fn latest_values_are_kept_and_preemptions_add_up() {
        let states = EngineStates::new(None);
        states.record(&step(Some(3), Some(0.5), Some(1)));
        states.record(&step(None, Some(0.25), Some(2)));
        let snapshot = states.snapshot();
        assert_eq!(snapshot.len(), 1);
        let (key, latest) = &snapshot[0];
        assert_eq!(
            key,
            &(
                Name::from("vllm"),
                Some(Name::from("m")),
                0,
                Arc::from([(Name::from("server"), 1)])
            )
        );
        let attributes = engine_attributes(key);
        assert!(attributes
            .iter()
            .any(|kv| kv.key.as_str() == "server" && kv.value == opentelemetry::Value::I64(1)));
        // A step that reported no running count keeps the last one reported.
        assert_eq!(latest.running, Some(3));
        assert_eq!(latest.waiting, Some(2));
        assert_eq!(latest.kv_cache_usage, Some(0.25));
        assert_eq!(latest.preemptions, Some(3));
    }

    #[test]
    fn failures_add_up_per_engine_and_error_type() {
        let states = EngineStates::new(None);
        let labels: Labels = Arc::from([(Name::from("server"), 1)]);
        let key = (Name::from("vllm"), Some(Name::from("m")), 0, labels);
        states.record_failure(key.clone(), Name::from("EngineDeadError"));
        states.record_failure(key.clone(), Name::from("EngineDeadError"));
        states.record_failure(key.clone(), Name::from("RuntimeError"));
        let mut failures = states.failures();
        failures.sort_by(|a, b| a.0 .1.cmp(&b.0 .1));
        assert_eq!(
            failures,
            vec![
                ((key.clone(), Name::from("EngineDeadError")), 2),
                ((key, Name::from("RuntimeError")), 1),
            ]
        );
    }
}
