//! Self-observability: counters for the stats API, and warnings delivered to Python `logging`.
//!
//! Warnings are rate-limited per kind and never written to stderr from Rust: an application's
//! logging configuration decides where they go. They are handed to the logger
//! `opentelemetry.instrumentation.vllm` from whichever thread raises them (export failures come
//! from the exporter threads), only if the interpreter can be attached to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::prelude::*;

pub const LOGGER_NAME: &str = "opentelemetry.instrumentation.vllm";
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Default, Debug)]
pub struct Counters {
    pub requests_recorded: AtomicU64,
    pub requests_dropped: AtomicU64,
    pub records_invalid: AtomicU64,
    pub operations_recorded: AtomicU64,
    pub spans_queued: AtomicU64,
    pub spans_exported: AtomicU64,
    pub spans_dropped: AtomicU64,
    pub spans_export_failed: AtomicU64,
    pub metric_exports: AtomicU64,
    pub metric_exports_failed: AtomicU64,
    pub measurements_bridged: AtomicU64,
    pub measurements_bridge_failed: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("requests_recorded", get(&self.requests_recorded)),
            ("requests_dropped", get(&self.requests_dropped)),
            ("records_invalid", get(&self.records_invalid)),
            ("operations_recorded", get(&self.operations_recorded)),
            ("spans_queued", get(&self.spans_queued)),
            ("spans_exported", get(&self.spans_exported)),
            ("spans_dropped", get(&self.spans_dropped)),
            ("spans_export_failed", get(&self.spans_export_failed)),
            ("metric_exports", get(&self.metric_exports)),
            ("metric_exports_failed", get(&self.metric_exports_failed)),
            ("measurements_bridged", get(&self.measurements_bridged)),
            (
                "measurements_bridge_failed",
                get(&self.measurements_bridge_failed),
            ),
        ]
    }
}

struct WarningState {
    last: Instant,
    suppressed: u64,
}

static WARNINGS: Mutex<Option<HashMap<&'static str, WarningState>>> = Mutex::new(None);

/// Logs `message` at WARNING through Python logging, at most once per minute per `kind`; the
/// next message of that kind says how many were suppressed in between.
pub fn warn(kind: &'static str, message: impl FnOnce() -> String) {
    let suppressed = {
        // try_lock: warnings are best effort, and a lock inherited across fork from a thread that
        // does not exist in the child must not block it forever.
        let Some(mut guard) = WARNINGS.try_lock() else {
            return;
        };
        let states = guard.get_or_insert_with(HashMap::new);
        let now = Instant::now();
        match states.get_mut(kind) {
            Some(state) if now.duration_since(state.last) < WARNING_INTERVAL => {
                state.suppressed += 1;
                return;
            }
            Some(state) => {
                let n = state.suppressed;
                *state = WarningState {
                    last: now,
                    suppressed: 0,
                };
                n
            }
            None => {
                states.insert(
                    kind,
                    WarningState {
                        last: now,
                        suppressed: 0,
                    },
                );
                0
            }
        }
    };
    let mut text = message();
    if suppressed > 0 {
        text.push_str(&format!(" ({suppressed} similar warnings suppressed)"));
    }
    // No lock is held here: attaching may wait for the GIL.
    log_to_python(&text);
}

/// Forgets the rate-limiting state (a forked child starts with its own).
pub fn reset_warnings() {
    if let Some(mut guard) = WARNINGS.try_lock() {
        *guard = None;
    }
}

fn log_to_python(text: &str) {
    let _ = Python::try_attach(|py| -> PyResult<()> {
        let logger = py
            .import("logging")?
            .call_method1("getLogger", (LOGGER_NAME,))?;
        logger.call_method1("warning", ("%s", text))?;
        Ok(())
    });
}
