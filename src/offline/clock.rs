//! The shim's wall clock (`_vllm.now_ns`), read from Rust, so that the core's timestamps and the
//! shim's come from the same clock.

use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;

/// `time.time_ns` itself is read here (the same clock, `CLOCK_REALTIME`, without a call and an int
/// to convert); any other (a test's) is called.
pub enum Clock {
    System,
    Python(Py<PyAny>),
}

impl Clock {
    pub fn of(now_ns: Bound<'_, PyAny>) -> PyResult<Self> {
        let system_clock = now_ns.py().import("time")?.getattr("time_ns")?;
        Ok(if now_ns.is(&system_clock) {
            Clock::System
        } else {
            Clock::Python(now_ns.unbind())
        })
    }

    pub fn now_ns(&self, py: Python<'_>) -> PyResult<u64> {
        match self {
            Clock::System => Ok(SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)),
            Clock::Python(now_ns) => now_ns.bind(py).call0()?.extract(),
        }
    }
}
