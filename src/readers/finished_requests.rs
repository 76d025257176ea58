//! Serving: the requests an engine step finished, read and recorded in one call.
//!
//! The shim notes each finished request as vLLM's output processor finishes it (what it knew when
//! the request was added, vLLM's request state, the finish reason, the iteration's end) and hands
//! the step's list here once the step's outputs are processed. This reads each request state by
//! the attribute names the shim gave (`_vllm.FINISHED_REQUEST_FIELDS`: no vLLM knowledge here) and
//! records the requests, grouped by span kind and operation, as the shim's `_record` and `_send`
//! would, without a Python tuple per request or a Python read of its stats on the serving hot path.
//!
//! Only the clean shape is taken (see `request_stats.rs`; exact ints, an exact str reason, a
//! request state whose detokenizer counts its tokens); anything else, a preempted request, or a
//! note of another shape is handed back, and the shim records it field by field with the same
//! rules. Nothing raises into vLLM from here: the shim's caller logs.
//!
//! Python twin: `EngineRequests._record` in `_serving.py`, which reads with `_vllm.timings`,
//! `_vllm.request_state_token_counts` and `_vllm.error_type_of_finish`. Kept equal by
//! tests/test_bad_input.py::test_the_core_reads_a_finished_request_as_the_shim_does (property test)
//! and tests/test_serving_fake.py::test_the_core_records_finished_requests_as_the_shim_would (the
//! same spans either way).

use std::sync::Arc;

use opentelemetry::KeyValue;
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt, PyList, PyString, PyTuple};
use smallvec::SmallVec;

use super::attribute::{optional_count, Attribute, Field, Read, Unclean};
use super::request_stats::{StatsFields, StatsReader};
use crate::pipeline;
use crate::record::{self, BatchHeader, Name, RequestRecord, RequestRecords, Timings};

/// The shim's note of a finished request: (what was known when it was added, its request state,
/// its finish reason, the iteration's end in seconds or None).
const NOTE_LEN: usize = 4;
/// What was known when a request was added (`_serving.ServingRequest`, a named tuple): external
/// id, operation name, parent, reserved trace id, reserved span id, span kind, start ns, attributes.
const ADDED_LEN: usize = 8;

/// The records of one step with the same (span kind, operation object), and the operation's name.
type Group<'py> = (i64, Bound<'py, PyAny>, Name, RequestRecords);

#[pyclass(frozen, module = "opentelemetry.instrumentation.vllm._core")]
pub struct FinishedRequestReader {
    provider: Name,
    model: Option<Name>,
    stats: Attribute,
    prompt_tokens: Attribute,
    cached_tokens: Attribute,
    detokenizer: Attribute,
    /// The detokenizer's method that counts the tokens the client received, and where it has none,
    /// its list of output token ids.
    output_token_count: Attribute,
    output_token_ids: Attribute,
    /// (finish reason, error.type) for the reasons that are errors.
    error_types: Vec<(String, String)>,
    stats_reader: StatsReader,
    /// Span attributes of every request this reader records (constant for the engine).
    attributes: Arc<[KeyValue]>,
}

#[pymethods]
impl FinishedRequestReader {
    /// Attribute names, as keyword arguments (see `_core.pyi`).
    #[new]
    #[pyo3(signature = (provider, model, *, stats, prompt_tokens, cached_tokens, detokenizer,
        output_token_count, output_token_ids, error_types, arrival_wall, time_to_first_token,
        generated_tokens, preemptions, queue, prefill, decode, inference, attributes=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        provider: &Bound<'_, PyAny>,
        model: &Bound<'_, PyAny>,
        stats: &str,
        prompt_tokens: &str,
        cached_tokens: &str,
        detokenizer: &str,
        output_token_count: &str,
        output_token_ids: &str,
        error_types: Vec<(String, String)>,
        arrival_wall: &str,
        time_to_first_token: &str,
        generated_tokens: &str,
        preemptions: &str,
        queue: (String, String),
        prefill: (String, String),
        decode: (String, String),
        inference: (String, String),
        attributes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let name = |s: &str| Attribute::new(py, s);
        let attributes = match attributes {
            Some(a) => record::attributes(a)?.into(),
            None => Arc::from([]),
        };
        Ok(FinishedRequestReader {
            attributes,
            provider: record::interned_name(provider)?.unwrap_or_else(|| Name::from("")),
            model: record::interned_name(model)?,
            stats: name(stats),
            prompt_tokens: name(prompt_tokens),
            cached_tokens: name(cached_tokens),
            detokenizer: name(detokenizer),
            output_token_count: name(output_token_count),
            output_token_ids: name(output_token_ids),
            error_types,
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
        })
    }

    /// Records the finished requests of one step (`finished`: the shim's notes) that ended at
    /// `end_ns`, and returns the notes it left to the shim (None where none is left, the usual
    /// case). With telemetry off it records nothing and leaves nothing.
    fn record<'py>(
        &self,
        py: Python<'py>,
        finished: &Bound<'py, PyList>,
        end_ns: u64,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let Some(pipeline) = pipeline::current() else {
            return Ok(None);
        };
        let mut leftovers: Option<Bound<'py, PyList>> = None;
        // Records grouped by (span kind, operation), as the shim's _send groups them. The operation
        // names are the shim's few str objects: a group is found by the object, and its name is
        // converted once per group, not per request.
        let mut groups: SmallVec<[Group<'py>; 2]> = SmallVec::new();
        for note in finished.iter() {
            let Ok((kind, operation, record)) = self.read(&note, end_ns) else {
                leftovers
                    .get_or_insert_with(|| PyList::empty(py))
                    .append(note)?;
                continue;
            };
            if let Some(group) = groups
                .iter_mut()
                .find(|g| g.0 == kind && g.1.is(&operation))
            {
                group.3.push(record);
                continue;
            }
            match record::interned_name(&operation) {
                Ok(Some(name)) => {
                    groups.push((kind, operation, name, SmallVec::from_elem(record, 1)))
                }
                _ => leftovers
                    .get_or_insert_with(|| PyList::empty(py))
                    .append(note)?,
            }
        }
        for (kind, _, operation, records) in groups {
            let header = BatchHeader {
                operation_name: operation,
                provider_name: self.provider.clone(),
                request_model: self.model.clone(),
                response_model: self.model.clone(),
                parent: None,
                span_kind: record::span_kind(kind),
                attributes: self.attributes.clone(),
            };
            // One header per step and group, freed by the recorder thread.
            pipeline.record_requests(Arc::new(header), records);
        }
        Ok(leftovers)
    }

    /// For tests: (span kind, operation name, the record in the shim's layout with attributes None)
    /// of one note, or None where the note would be handed back to the shim.
    fn record_of<'py>(
        &self,
        py: Python<'py>,
        note: &Bound<'py, PyAny>,
        end_ns: u64,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Ok((kind, operation, record)) = self.read(note, end_ns) else {
            return Ok(None);
        };
        let fields = PyTuple::new(py, record::shim_layout(py, &record, true)?)?;
        Ok(Some(PyTuple::new(
            py,
            [
                kind.into_pyobject(py)?.into_any(),
                operation,
                fields.into_any(),
            ],
        )?))
    }
}

impl FinishedRequestReader {
    /// (span kind, operation name as the shim's str, record) of one note.
    fn read<'py>(
        &self,
        note: &Bound<'py, PyAny>,
        end_ns: u64,
    ) -> Read<(i64, Bound<'py, PyAny>, RequestRecord)> {
        let note = exact_tuple(note, NOTE_LEN)?;
        let item = |i| {
            note.get_borrowed_item(i)
                .map(|b| b.to_owned())
                .map_err(|_| Unclean)
        };
        let added = item(0)?;
        // A named tuple: a subclass of tuple, read by position.
        let added = added.cast::<PyTuple>().map_err(|_| Unclean)?;
        if added.len() != ADDED_LEN {
            return Err(Unclean);
        }
        let field = |i| {
            added
                .get_borrowed_item(i)
                .map(|b| b.to_owned())
                .map_err(|_| Unclean)
        };
        let state = item(1)?;
        let reason = item(2)?;
        let reason = reason.cast_exact::<PyString>().map_err(|_| Unclean)?;
        let reason = reason.to_str().map_err(|_| Unclean)?;
        let end_wall = match item(3)? {
            wall if wall.is_none() => end_ns as f64 / 1e9,
            wall => wall.cast_exact::<PyFloat>().map_err(|_| Unclean)?.value(),
        };
        let (start, timings) = match self.stats.read(&state)? {
            Field::Absent => (None, Timings::default()),
            Field::Present(stats) => self.stats_reader.timings(&stats, end_wall)?,
        };
        let input_tokens = optional_count(self.prompt_tokens.read(&state)?)?;
        let output_tokens = self.output_tokens(&state)?;
        let cached_input_tokens = optional_count(self.cached_tokens.read(&state)?)?;

        let external_id = field(0)?;
        let external_id = external_id
            .cast_exact::<PyString>()
            .map_err(|_| Unclean)?
            .to_str()
            .map_err(|_| Unclean)?;
        let operation = field(1)?;
        if !operation.is_instance_of::<PyString>() {
            return Err(Unclean);
        }
        let parent = record::parent(&field(2)?).map_err(|_| Unclean)?;
        let trace_id = optional_id::<u128>(&field(3)?)?;
        let span_id = optional_id::<u64>(&field(4)?)?;
        let kind = exact_int(&field(5)?)?;
        let added_ns = u64::try_from(exact_int(&field(6)?)?).map_err(|_| Unclean)?;
        let attributes = record::attributes(&field(7)?).map_err(|_| Unclean)?;
        let record = RequestRecord {
            response_id: Some(external_id.into()),
            span_id,
            start_unix_nanos: start.unwrap_or(added_ns),
            end_unix_nanos: end_ns,
            input_tokens,
            output_tokens,
            cached_input_tokens,
            finish_reasons: Some(SmallVec::from_elem(
                record::interned_string_value(reason),
                1,
            )),
            error_type: self
                .error_types
                .iter()
                .find(|(finish, _)| finish == reason)
                .map(|(_, error)| error.clone()),
            timings,
            attributes,
            own_parent: Some(parent),
            trace_id,
        };
        Ok((kind, operation, record))
    }

    /// The tokens the client received: the detokenizer's count where it has the method, else the
    /// length of its output token ids; absent without a detokenizer.
    fn output_tokens(&self, state: &Bound<'_, PyAny>) -> Read<Option<i64>> {
        let detokenizer = match self.detokenizer.read(state)? {
            Field::Absent => return Ok(None),
            Field::Present(detokenizer) => detokenizer,
        };
        match self.output_token_count.read(&detokenizer)? {
            Field::Present(count) => {
                let count = count.call0().map_err(|_| Unclean)?;
                optional_count(Field::Present(count))
            }
            Field::Absent => match self.output_token_ids.read(&detokenizer)? {
                Field::Present(ids) => Ok(Some(
                    ids.cast_exact::<PyList>().map_err(|_| Unclean)?.len() as i64,
                )),
                Field::Absent => Err(Unclean),
            },
        }
    }
}

fn exact_tuple<'a, 'py>(obj: &'a Bound<'py, PyAny>, len: usize) -> Read<&'a Bound<'py, PyTuple>> {
    let tuple = obj.cast_exact::<PyTuple>().map_err(|_| Unclean)?;
    if tuple.len() == len {
        Ok(tuple)
    } else {
        Err(Unclean)
    }
}

fn exact_int(obj: &Bound<'_, PyAny>) -> Read<i64> {
    if !obj.is_exact_instance_of::<PyInt>() {
        return Err(Unclean);
    }
    obj.extract().map_err(|_| Unclean)
}

/// A reserved id: None (or 0, the invalid id) is none; anything but an exact int in range is unclean.
fn optional_id<T>(obj: &Bound<'_, PyAny>) -> Read<Option<T>>
where
    T: for<'a, 'py> FromPyObject<'a, 'py> + PartialEq + Default,
{
    if obj.is_none() {
        return Ok(None);
    }
    if !obj.is_exact_instance_of::<PyInt>() {
        return Err(Unclean);
    }
    let id: T = obj.extract().map_err(|_| Unclean)?;
    Ok((id != T::default()).then_some(id))
}
