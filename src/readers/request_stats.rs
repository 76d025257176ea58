//! Reads vLLM's per-request stats object (a `RequestStateStats`) by the attribute names the shim
//! gave, and computes the request's timings from it: what the offline output reader and the serving
//! finished-request reader share.
//!
//! Python twin: `_vllm.timings` in `_vllm.py` (its fast path `_timings_of_clean_stats`): each
//! duration the difference of two of vLLM's timestamps (`_difference`), the time per output token
//! decode / (generated tokens - 1) (`_per_token`), the end-to-end latency from the wall-clock
//! arrival to the iteration's end. Kept equal through both readers' records by
//! tests/test_bad_input.py::test_the_core_reads_an_output_as_the_shim_does and
//! ::test_the_core_reads_a_finished_request_as_the_shim_does.
//!
//! Only the clean shape is taken (every timestamp, the arrival and the time to first token a
//! positive finite float, the generated-token count an exact int, no preemption); anything else is
//! `Unclean`, and the shim reads that request field by field instead (a preempted request gets an
//! attribute more there).

use pyo3::prelude::*;
use pyo3::types::PyFloat;

use super::attribute::{optional_count, Attribute, Field, Read, Unclean};
use crate::record::Timings;

/// A positive finite float (the shim's clean-stats test); anything else is unclean.
fn positive_float(value: Field<'_>) -> Read<f64> {
    match value {
        Field::Present(v) if v.is_exact_instance_of::<PyFloat>() => {
            let x = v.cast_exact::<PyFloat>().map_err(|_| Unclean)?.value();
            if x > 0.0 && x.is_finite() {
                Ok(x)
            } else {
                Err(Unclean)
            }
        }
        _ => Err(Unclean),
    }
}

fn difference(later: f64, earlier: f64) -> Option<f64> {
    (later >= earlier).then_some(later - earlier)
}

/// The attribute names of a stats object (see `_vllm.FINISHED_OUTPUT_FIELDS`): durations are
/// (earlier, later) timestamp names of queue, prefill, decode and inference time, in that order.
pub struct StatsFields<'a> {
    pub arrival_wall: &'a str,
    pub time_to_first_token: &'a str,
    pub generated_tokens: &'a str,
    pub preemptions: &'a str,
    pub durations: [(String, String); 4],
}

pub struct StatsReader {
    arrival_wall: Attribute,
    time_to_first_token: Attribute,
    generated_tokens: Attribute,
    preemptions: Attribute,
    /// Indexes into `timestamps` of each duration's (earlier, later) timestamp.
    durations: [(usize, usize); 4],
    /// The distinct timestamp attributes the durations name, each read once per request.
    timestamps: Vec<Attribute>,
}

impl StatsReader {
    pub fn new(py: Python<'_>, fields: StatsFields<'_>) -> StatsReader {
        let mut timestamp_names: Vec<String> = Vec::new();
        let mut index = |n: String| match timestamp_names.iter().position(|t| *t == n) {
            Some(i) => i,
            None => {
                timestamp_names.push(n);
                timestamp_names.len() - 1
            }
        };
        // At most 8 distinct names (4 pairs): the fixed array in timings() holds them all.
        let durations = fields.durations.map(|(a, b)| (index(a), index(b)));
        StatsReader {
            arrival_wall: Attribute::new(py, fields.arrival_wall),
            time_to_first_token: Attribute::new(py, fields.time_to_first_token),
            generated_tokens: Attribute::new(py, fields.generated_tokens),
            preemptions: Attribute::new(py, fields.preemptions),
            durations,
            timestamps: timestamp_names
                .iter()
                .map(|n| Attribute::new(py, n))
                .collect(),
        }
    }

    /// (start from the stats' wall-clock arrival, timings) of a request that ended at `end_wall`
    /// (seconds since the epoch: vLLM's end-to-end latency ends there).
    pub fn timings(&self, stats: &Bound<'_, PyAny>, end_wall: f64) -> Read<(Option<u64>, Timings)> {
        let read = |attribute: &Attribute| attribute.read(stats);
        let arrival = positive_float(read(&self.arrival_wall)?)?;
        let mut values = [0.0f64; 8];
        for (value, attribute) in values.iter_mut().zip(&self.timestamps) {
            *value = positive_float(read(attribute)?)?;
        }
        let [queue, prefill, decode, inference] =
            self.durations.map(|(a, b)| (values[a], values[b]));
        let (queued, scheduled) = queue;
        let (prefill_start, prefill_end) = prefill;
        let (decode_start, decode_end) = decode;
        let (inference_start, inference_end) = inference;
        let time_to_first_token = positive_float(read(&self.time_to_first_token)?)?;
        let generated = optional_count(read(&self.generated_tokens)?)?.ok_or(Unclean)?;
        // A request that was preempted gets an attribute more: the shim's path adds it.
        if !matches!(optional_count(read(&self.preemptions)?)?, None | Some(0)) {
            return Err(Unclean);
        }
        let decode = difference(decode_end, decode_start);
        // Time per output token after the first (semconv): none without a second token.
        let time_per_output_token = match decode {
            Some(d) if generated > 1 => Some(d / (generated - 1) as f64),
            _ => None,
        };
        // An arrival after the request finished is no start time (the shim's add_request time is);
        // under 1 ns after the epoch is none either.
        let start = (arrival <= end_wall)
            .then_some((arrival * 1e9) as u64)
            .filter(|ns| *ns > 0);
        Ok((
            start,
            Timings {
                time_to_first_token: Some(time_to_first_token),
                time_per_output_token,
                queue: difference(scheduled, queued),
                prefill: difference(prefill_end, prefill_start),
                decode,
                inference: difference(inference_end, inference_start),
                e2e: difference(end_wall, arrival),
            },
        ))
    }
}
