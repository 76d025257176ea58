//! Reads one engine step's finished outputs in one call and records them: the hot path of the
//! offline instrumentation without a Python operation per field. It sits here rather than in
//! `readers/` because it takes its requests from `PendingRequests`.
//!
//! Which attribute holds what is the shim's knowledge, not ours (see
//! docs/design/attribute-name-readers.md): Python builds one `OutputReader` from attribute names
//! (`_vllm.FINISHED_OUTPUT_FIELDS`), and this reads generic slots (an output's id, finished flag,
//! token id lists, finish reasons; a stats object's wall-clock arrival, time to first token,
//! generated-token count and the two timestamps each duration is the difference of). It takes only
//! the common, clean shape: exact float timestamps that are positive and finite, exact ints, exact
//! lists, exact strs. Any other value, an attribute that raises, or a request the shim wants to
//! record itself leaves that output to the shim, untouched, which then reads it field by field
//! with the same rules (so both paths give the same record for the same output).
//!
//! Python twin: `OfflineInstrumentation._request_record` in `_offline.py`, which reads with
//! `_vllm.timings`, `_vllm.token_counts`, `_vllm.finish_reasons` and `_vllm.error_type` in
//! `_vllm.py`. tests/test_bad_input.py keeps the two records equal:
//! `test_the_core_reads_an_output_as_the_shim_does` (property test) and
//! `test_the_core_takes_outputs_of_the_usual_shape`.
//!
//! The records it makes are freed on the recorder thread, so it allocates nothing and touches no
//! shared reference count per record (glibc's allocator would take the caller's arena lock, and a
//! count would pass its cache line between the two threads' cores; see
//! docs/design/interned-strings.md): request ids are inline, finish reasons are interned static
//! strings held inline, a batch's shared attribute dict goes into its header, one record is held
//! inline; headers, attributes and reasons are converted once and kept from one read to the next
//! (`Conversions`).

use std::sync::Arc;

use compact_str::CompactString;
use opentelemetry::StringValue;
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString, PyTuple};
use smallvec::SmallVec;

use super::pending_requests::PendingRequests;
use crate::pipeline;
use crate::readers::{optional_count, Attribute, Field, Read, StatsFields, StatsReader, Unclean};
use crate::record::{
    self, BatchHeader, FinishReasons, ParentContext, RequestRecord, RequestRecords, Timings,
};

/// len() of an exact list, or absent.
fn optional_length(value: Field<'_>) -> Read<Option<i64>> {
    match value {
        Field::Absent => Ok(None),
        Field::Present(v) => match v.cast_exact::<PyList>() {
            Ok(list) => Ok(Some(list.len() as i64)),
            Err(_) => Err(Unclean),
        },
    }
}

/// What the reader keeps from one read to the next: the finish reasons seen, each with the Python
/// string it was converted from (held, so that its identity cannot be reused by another).
#[derive(Default)]
struct Conversions {
    reasons: Vec<(Py<PyString>, StringValue)>,
}

/// At most this many finish reasons are kept per reader (vLLM has five).
const MAX_KEPT_REASONS: usize = 16;

impl Conversions {
    fn reason(&mut self, reason: &Bound<'_, PyString>) -> StringValue {
        if let Some((_, value)) = self.reasons.iter().find(|(kept, _)| kept.is(reason)) {
            return value.clone();
        }
        let value = record::interned_string_value(&reason.to_string_lossy());
        if self.reasons.len() < MAX_KEPT_REASONS {
            self.reasons.push((reason.clone().unbind(), value.clone()));
        }
        value
    }
}

#[pyclass(frozen, module = "opentelemetry.instrumentation.vllm._core")]
pub struct OutputReader {
    finished: Attribute,
    request_id: Attribute,
    prompt_token_ids: Attribute,
    completions: Attribute,
    completion_token_ids: Attribute,
    finish_reason: Attribute,
    cached_tokens: Attribute,
    error: Attribute,
    stats: Attribute,
    /// What the stats object holds.
    stats_reader: StatsReader,
    /// Only touched with the GIL held (every method takes `Python`): the lock is never contended.
    conversions: Mutex<Conversions>,
}

/// The outputs of a step that were not recorded here and are the shim's to read.
type Leftovers<'py> = Bound<'py, PyList>;

#[pymethods]
impl OutputReader {
    /// Attribute names, as keyword arguments (see `_core.pyi`).
    #[new]
    #[pyo3(signature = (*, finished, request_id, prompt_token_ids, completions, completion_token_ids,
        finish_reason, cached_tokens, error, stats, arrival_wall, time_to_first_token,
        generated_tokens, preemptions, queue, prefill, decode, inference))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        finished: &str,
        request_id: &str,
        prompt_token_ids: &str,
        completions: &str,
        completion_token_ids: &str,
        finish_reason: &str,
        cached_tokens: &str,
        error: &str,
        stats: &str,
        arrival_wall: &str,
        time_to_first_token: &str,
        generated_tokens: &str,
        preemptions: &str,
        queue: (String, String),
        prefill: (String, String),
        decode: (String, String),
        inference: (String, String),
    ) -> Self {
        let name = |s: &str| Attribute::new(py, s);
        OutputReader {
            finished: name(finished),
            request_id: name(request_id),
            prompt_token_ids: name(prompt_token_ids),
            completions: name(completions),
            completion_token_ids: name(completion_token_ids),
            finish_reason: name(finish_reason),
            cached_tokens: name(cached_tokens),
            error: name(error),
            stats: name(stats),
            stats_reader: StatsReader::new(
                py,
                StatsFields {
                    arrival_wall,
                    time_to_first_token,
                    generated_tokens,
                    preemptions,
                    durations: [queue, prefill, decode, inference],
                },
            ),
            conversions: Mutex::new(Conversions::default()),
        }
    }

    /// For tests: the record this reader builds for one finished `output` whose add_request time
    /// was `start_ns`, in the shim's request-record layout (attributes None), or None where the
    /// output would be left to the shim.
    fn record_of<'py>(
        &self,
        py: Python<'py>,
        output: &Bound<'py, PyAny>,
        start_ns: u64,
        end_ns: u64,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Ok(Some(request_id)) = self.finished_request_id(output) else {
            return Ok(None);
        };
        let Ok(request_id) = request_id.to_str() else {
            return Ok(None);
        };
        let Ok(r) = self.read_record(
            output,
            request_id,
            start_ns,
            end_ns,
            &mut Conversions::default(),
        ) else {
            return Ok(None);
        };
        Ok(Some(PyTuple::new(py, record::shim_layout(py, &r, false)?)?))
    }
}

impl OutputReader {
    /// Records the finished outputs of one step whose request is registered in `requests`, and
    /// returns the other finished outputs, which are the shim's: those of requests it registered
    /// itself, and those of an unusual shape, whose entry is handed into the shim's `pending` dict
    /// (see `PendingRequests`), or None where none is left (most steps). Unfinished outputs are
    /// neither. Called by `OfflineCalls.record_step`.
    pub fn record_outputs<'py>(
        &self,
        py: Python<'py>,
        outputs: &Bound<'py, PyList>,
        requests: &Bound<'py, PendingRequests>,
        pending: &Bound<'py, PyDict>,
        engine_key: usize,
        end_ns: u64,
    ) -> PyResult<Option<Leftovers<'py>>> {
        // Made when the first output is left: most steps leave none.
        let mut leftovers: Option<Leftovers<'py>> = None;
        let mut leave = |output: Bound<'py, PyAny>| {
            leftovers
                .get_or_insert_with(|| PyList::empty(py))
                .append(output)
        };
        let requests = requests.get();
        // Records grouped by their header and parent (one per operation and parameters object).
        let mut groups: SmallVec<[(Arc<BatchHeader>, ParentContext, RequestRecords); 2]> =
            SmallVec::new();
        // A getattr can run Python code, and with it another thread's read of this reader: that
        // one must not wait for this lock (it holds the GIL this thread needs), so it converts
        // afresh instead.
        let mut kept = self.conversions.try_lock();
        let mut fresh = Conversions::default();
        let conversions = match kept.as_deref_mut() {
            Some(kept) => kept,
            None => &mut fresh,
        };
        for output in outputs.iter() {
            let request_id = match self.finished_request_id(&output) {
                Ok(None) => continue,
                Ok(Some(request_id)) => request_id,
                Err(Unclean) => {
                    leave(output)?;
                    continue;
                }
            };
            let Ok(request_id) = request_id.to_str() else {
                leave(output)?;
                continue;
            };
            let Some(entry) = requests.take(engine_key, request_id) else {
                leave(output)?;
                continue;
            };
            match self.read_record(&output, request_id, entry.added_ns, end_ns, conversions) {
                Ok(record) => {
                    let header = &entry.parameters.header;
                    let parent = entry.parent();
                    match groups
                        .iter_mut()
                        .find(|g| Arc::ptr_eq(&g.0, header) && g.1 == parent)
                    {
                        Some(group) => group.2.push(record),
                        None => {
                            let mut records = RequestRecords::with_capacity(outputs.len());
                            records.push(record);
                            groups.push((header.clone(), parent, records));
                        }
                    }
                }
                Err(Unclean) => {
                    entry.hand_to_shim(py, engine_key, request_id, pending)?;
                    leave(output)?;
                }
            }
        }
        if let Some(pipeline) = pipeline::current() {
            for (header, parent, requests) in groups {
                pipeline.record_requests_under(header, Some(parent), requests);
            }
        }
        Ok(leftovers)
    }

    /// The request id of a finished output; `Ok(None)` when it is not finished. `Err`: the shim's.
    fn finished_request_id<'py>(
        &self,
        output: &Bound<'py, PyAny>,
    ) -> Read<Option<Bound<'py, PyString>>> {
        match self.finished.read(output)? {
            Field::Present(v) if v.is_exact_instance_of::<PyBool>() => {
                if !v.is_truthy().map_err(|_| Unclean)? {
                    return Ok(None);
                }
            }
            Field::Absent => return Ok(None),
            Field::Present(_) => return Err(Unclean),
        }
        match self.request_id.read(output)? {
            Field::Present(v) if v.is_exact_instance_of::<PyString>() => {
                Ok(Some(v.cast_into::<PyString>().map_err(|_| Unclean)?))
            }
            _ => Err(Unclean),
        }
    }

    /// The record of a finished output whose request was added at `added_ns`.
    fn read_record(
        &self,
        output: &Bound<'_, PyAny>,
        request_id: &str,
        added_ns: u64,
        end_ns: u64,
        conversions: &mut Conversions,
    ) -> Read<RequestRecord> {
        if matches!(self.error.read(output)?, Field::Present(_)) {
            return Err(Unclean);
        }
        let (start, timings) = self.timings(output, end_ns)?;
        let input_tokens = optional_length(self.prompt_token_ids.read(output)?)?;
        let (output_tokens, finish_reasons) = self.completions(output, conversions)?;
        let cached_input_tokens = optional_count(self.cached_tokens.read(output)?)?;
        Ok(RequestRecord {
            response_id: Some(CompactString::from(request_id)),
            span_id: None,
            start_unix_nanos: start.unwrap_or(added_ns),
            end_unix_nanos: end_ns,
            input_tokens,
            output_tokens,
            cached_input_tokens,
            finish_reasons,
            error_type: None,
            timings,
            attributes: Vec::new(),
            own_parent: None,
            trace_id: None,
        })
    }

    /// (start from the stats' wall-clock arrival, timings); all absent without stats.
    fn timings(&self, output: &Bound<'_, PyAny>, end_ns: u64) -> Read<(Option<u64>, Timings)> {
        match self.stats.read(output)? {
            Field::Absent => Ok((None, Timings::default())),
            // The shim's end_ns / 1e9: the same float (an int divided by a float converts it first).
            Field::Present(stats) => self.stats_reader.timings(&stats, end_ns as f64 / 1e9),
        }
    }

    /// (output tokens, finish reasons) over the completions; both absent when there is no list of
    /// them (pooling outputs).
    fn completions<'py>(
        &self,
        output: &Bound<'py, PyAny>,
        conversions: &mut Conversions,
    ) -> Read<(Option<i64>, Option<FinishReasons>)> {
        let completions = match self.completions.read(output)? {
            Field::Absent => return Ok((None, None)),
            Field::Present(v) => v,
        };
        let Ok(list) = completions.cast_exact::<PyList>() else {
            // A list subclass is the shim's to judge; any other object is not a list of completions.
            return if completions.is_instance_of::<PyList>() {
                Err(Unclean)
            } else {
                Ok((None, None))
            };
        };
        let mut tokens: Option<i64> = None;
        let mut reasons = FinishReasons::new();
        for completion in list.iter() {
            if let Some(n) = optional_length(self.completion_token_ids.read(&completion)?)? {
                tokens = Some(tokens.unwrap_or(0).checked_add(n).ok_or(Unclean)?);
            }
            match self.finish_reason.read(&completion)? {
                Field::Absent => {}
                Field::Present(v) if v.is_exact_instance_of::<PyString>() => {
                    reasons.push(conversions.reason(v.cast::<PyString>().map_err(|_| Unclean)?))
                }
                Field::Present(_) => return Err(Unclean),
            }
        }
        Ok((tokens, Some(reasons)))
    }
}
