//! Reading what the Python side hands the core: batches of finished requests and operation
//! records, as positional tuples, into the types of `types.rs`.
//!
//! The wire format is positional tuples (documented in `_core.pyi`): building a tuple is the cheapest
//! thing the shim can do per request, and reading it here costs no Python calls. Values are checked
//! as they are read: a malformed field makes that field absent (a NaN, negative or non-finite
//! duration, a negative count), a malformed record is skipped and counted; nothing is guessed.

use std::sync::Arc;

use compact_str::CompactString;
use opentelemetry::trace::SpanKind;
use opentelemetry::{Array, KeyValue, StringValue, Value};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use smallvec::SmallVec;

use super::interned;
use super::types::{
    BatchHeader, FinishReasons, Name, OperationRecord, ParentContext, RequestRecord, Timings,
};

pub const REQUEST_RECORD_LEN: usize = 17;
/// A request record may carry two more fields: its own parent and the trace id of a reserved span.
pub const REQUEST_RECORD_WITH_PARENT_LEN: usize = 19;
pub const BATCH_HEADER_LEN: usize = 7;
pub const OPERATION_RECORD_LEN: usize = 12;

fn is_none(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_none()
}

pub fn opt_string(obj: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    if is_none(obj) {
        return Ok(None);
    }
    // Lossy: a string with lone surrogates must not fail the record.
    Ok(Some(obj.cast::<PyString>()?.to_string_lossy().into_owned()))
}

/// A name that must be a str (an operation's, a provider's); see `interned::name`.
fn required_name(obj: &Bound<'_, PyAny>) -> PyResult<Name> {
    obj.cast::<PyString>()?;
    Ok(interned::name(obj)?.unwrap_or_else(|| Name::from("")))
}

/// A count: absent when None, negative or an int beyond i64.
fn opt_count(obj: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    if is_none(obj) {
        return Ok(None);
    }
    match obj.extract::<i64>() {
        Ok(n) => Ok((n >= 0).then_some(n)),
        // Out of range is an invalid value, like a negative one: the field is absent, the rest of
        // the record is kept (an error here would skip the whole record).
        Err(_) if obj.is_instance_of::<PyInt>() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A duration in seconds: absent when None, NaN, infinite, negative or an int beyond a float.
fn opt_seconds(obj: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    if is_none(obj) {
        return Ok(None);
    }
    match obj.extract::<f64>() {
        Ok(v) => Ok((v.is_finite() && v >= 0.0).then_some(v)),
        Err(_) if obj.is_instance_of::<PyInt>() => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn nanos(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    // The common case first: an i128 goes through the limited API's slow 128-bit conversion
    // (two shifts, each a new Python int).
    if let Ok(v) = obj.extract::<u64>() {
        return Ok(v);
    }
    let v: i128 = obj.extract()?;
    if v < 0 || v > u64::MAX as i128 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "timestamp out of range",
        ));
    }
    Ok(v as u64)
}

pub fn span_kind(code: i64) -> SpanKind {
    // The values of Python's opentelemetry.trace.SpanKind.
    match code {
        1 => SpanKind::Server,
        2 => SpanKind::Client,
        3 => SpanKind::Producer,
        4 => SpanKind::Consumer,
        _ => SpanKind::Internal,
    }
}

pub fn parent(obj: &Bound<'_, PyAny>) -> PyResult<Option<ParentContext>> {
    if is_none(obj) {
        return Ok(None);
    }
    let t = obj.cast::<PyTuple>()?;
    let ctx = ParentContext {
        trace_id: t.get_borrowed_item(0)?.extract()?,
        span_id: t.get_borrowed_item(1)?.extract()?,
        trace_flags: t.get_borrowed_item(2)?.extract()?,
        is_remote: t.get_borrowed_item(3)?.extract()?,
    };
    // An all-zero context is the API's INVALID_SPAN_CONTEXT: no parent.
    Ok((ctx.trace_id != 0 && ctx.span_id != 0).then_some(ctx))
}

/// A reference-counted string: attributes are copied into every span of a batch, and a copy of
/// these is a counter increment rather than an allocation.
fn shared_string(s: &Bound<'_, PyString>) -> StringValue {
    StringValue::from(Arc::<str>::from(s.to_string_lossy()))
}

fn value(obj: &Bound<'_, PyAny>) -> Option<Value> {
    // bool before int: Python's bool is an int subclass.
    if obj.is_instance_of::<PyBool>() {
        return obj.extract::<bool>().ok().map(Value::Bool);
    }
    if obj.is_instance_of::<PyString>() {
        return obj
            .cast::<PyString>()
            .ok()
            .map(|s| Value::String(shared_string(s)));
    }
    if obj.is_instance_of::<PyInt>() {
        return obj.extract::<i64>().ok().map(Value::I64);
    }
    if obj.is_instance_of::<PyFloat>() {
        return obj.extract::<f64>().ok().map(Value::F64);
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let items: Vec<Bound<'_, PyAny>> = obj.try_iter().ok()?.filter_map(Result::ok).collect();
        // OTLP arrays are homogeneous; the first element decides the type.
        let first = items.first();
        return Some(Value::Array(match first {
            None => Array::String(Vec::new()),
            Some(f) if f.is_instance_of::<PyBool>() => {
                Array::Bool(items.iter().filter_map(|i| i.extract().ok()).collect())
            }
            Some(f) if f.is_instance_of::<PyInt>() => {
                Array::I64(items.iter().filter_map(|i| i.extract().ok()).collect())
            }
            Some(f) if f.is_instance_of::<PyFloat>() => {
                Array::F64(items.iter().filter_map(|i| i.extract().ok()).collect())
            }
            Some(_) => Array::String(
                items
                    .iter()
                    .filter_map(|i| i.cast::<PyString>().ok().map(|s| shared_string(s)))
                    .collect(),
            ),
        }));
    }
    None
}

/// `{key: value}` with str, bool, int, float or homogeneous sequences of them; other values are skipped.
/// Keys are the shim's few names, kept static (see `interned.rs`): a request's attributes then
/// allocate nothing but their list (and any string values).
pub fn attributes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<KeyValue>> {
    if is_none(obj) {
        return Ok(Vec::new());
    }
    let dict = obj.cast::<PyDict>()?;
    let items: SmallVec<[(Bound<'_, PyString>, Bound<'_, PyAny>); 16]> = dict
        .iter()
        .filter(|(_, v)| !v.is_none())
        .filter_map(|(k, v)| Some((k.cast_into::<PyString>().ok()?, v)))
        .collect();
    // All keys under one lock first; converting values can run Python code (a sequence's iterator).
    let keys = interned::attribute_keys(items.iter().map(|(k, _)| k));
    let mut out = Vec::with_capacity(items.len());
    for ((_, v), key) in items.iter().zip(keys) {
        if let Some(val) = value(v) {
            out.push(KeyValue::new(key, val));
        }
    }
    Ok(out)
}

fn finish_reasons(obj: &Bound<'_, PyAny>) -> PyResult<Option<FinishReasons>> {
    if is_none(obj) {
        return Ok(None);
    }
    let mut out = FinishReasons::new();
    for item in obj.try_iter()? {
        let item = item?;
        if let Ok(s) = item.cast::<PyString>() {
            out.push(interned::string_value(&s.to_string_lossy()));
        }
    }
    Ok(Some(out))
}

fn expect_tuple<'a, 'py>(
    obj: &'a Bound<'py, PyAny>,
    len: usize,
    what: &str,
) -> PyResult<&'a Bound<'py, PyTuple>> {
    let t = obj.cast::<PyTuple>()?;
    if t.len() != len {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{what} must have {len} fields, got {}",
            t.len()
        )));
    }
    Ok(t)
}

pub fn batch_header(obj: &Bound<'_, PyAny>) -> PyResult<BatchHeader> {
    let t = expect_tuple(obj, BATCH_HEADER_LEN, "batch header")?;
    let f = |i| t.get_borrowed_item(i).map(|b| b.to_owned());
    Ok(BatchHeader {
        operation_name: required_name(&f(0)?)?,
        provider_name: required_name(&f(1)?)?,
        request_model: interned::name(&f(2)?)?,
        response_model: interned::name(&f(3)?)?,
        parent: parent(&f(4)?)?,
        span_kind: span_kind(f(5)?.extract()?),
        attributes: attributes(&f(6)?)?.into(),
    })
}

pub fn request_record(obj: &Bound<'_, PyAny>) -> PyResult<RequestRecord> {
    let t = obj.cast::<PyTuple>()?;
    let with_parent = t.len() == REQUEST_RECORD_WITH_PARENT_LEN;
    if !with_parent {
        expect_tuple(obj, REQUEST_RECORD_LEN, "request record")?;
    }
    let f = |i| t.get_borrowed_item(i).map(|b| b.to_owned());
    let span_id = f(1)?;
    let (own_parent, trace_id) = if with_parent {
        let trace_id = f(18)?;
        (
            Some(parent(&f(17)?)?),
            if trace_id.is_none() {
                None
            } else {
                Some(trace_id.extract::<u128>()?).filter(|id| *id != 0)
            },
        )
    } else {
        (None, None)
    };
    Ok(RequestRecord {
        response_id: opt_string(&f(0)?)?.map(CompactString::from),
        // 0 is the invalid span id: treated as "let the core assign one".
        span_id: if span_id.is_none() {
            None
        } else {
            Some(span_id.extract::<u64>()?).filter(|id| *id != 0)
        },
        start_unix_nanos: nanos(&f(2)?)?,
        end_unix_nanos: nanos(&f(3)?)?,
        input_tokens: opt_count(&f(4)?)?,
        output_tokens: opt_count(&f(5)?)?,
        cached_input_tokens: opt_count(&f(6)?)?,
        finish_reasons: finish_reasons(&f(7)?)?,
        error_type: opt_string(&f(8)?)?,
        timings: Timings {
            time_to_first_token: opt_seconds(&f(9)?)?,
            time_per_output_token: opt_seconds(&f(10)?)?,
            queue: opt_seconds(&f(11)?)?,
            prefill: opt_seconds(&f(12)?)?,
            decode: opt_seconds(&f(13)?)?,
            inference: opt_seconds(&f(14)?)?,
            e2e: opt_seconds(&f(15)?)?,
        },
        attributes: attributes(&f(16)?)?,
        own_parent,
        trace_id,
    })
}

pub fn operation_record(obj: &Bound<'_, PyAny>) -> PyResult<OperationRecord> {
    let t = expect_tuple(obj, OPERATION_RECORD_LEN, "operation record")?;
    let f = |i| t.get_borrowed_item(i).map(|b| b.to_owned());
    let ids = f(0)?;
    let ids = ids.cast::<PyTuple>()?;
    Ok(OperationRecord {
        trace_id: ids.get_borrowed_item(0)?.extract()?,
        span_id: ids.get_borrowed_item(1)?.extract()?,
        trace_flags: ids.get_borrowed_item(2)?.extract()?,
        parent: parent(&f(1)?)?,
        operation_name: required_name(&f(2)?)?,
        provider_name: required_name(&f(3)?)?,
        request_model: interned::name(&f(4)?)?,
        response_model: interned::name(&f(5)?)?,
        span_kind: span_kind(f(6)?.extract()?),
        start_unix_nanos: nanos(&f(7)?)?,
        end_unix_nanos: nanos(&f(8)?)?,
        error_type: opt_string(&f(9)?)?,
        request_count: opt_count(&f(10)?)?,
        attributes: attributes(&f(11)?)?,
    })
}

/// For tests: a record in the shim's request-record layout (see `_core.pyi`), attributes None, so
/// that a reader's record can be compared with the shim's tuple; with `with_parent`, the two
/// serving fields too (its own parent, or None for a root span, and the reserved trace id).
pub fn shim_layout<'py>(
    py: Python<'py>,
    r: &RequestRecord,
    with_parent: bool,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let t = &r.timings;
    let reasons: Option<Vec<&str>> = r
        .finish_reasons
        .as_ref()
        .map(|v| v.iter().map(|s| s.as_str()).collect());
    let mut fields: Vec<Bound<'py, PyAny>> = vec![
        r.response_id.as_deref().into_pyobject(py)?.into_any(),
        r.span_id.into_pyobject(py)?.into_any(),
        r.start_unix_nanos.into_pyobject(py)?.into_any(),
        r.end_unix_nanos.into_pyobject(py)?.into_any(),
        r.input_tokens.into_pyobject(py)?.into_any(),
        r.output_tokens.into_pyobject(py)?.into_any(),
        r.cached_input_tokens.into_pyobject(py)?.into_any(),
        reasons.into_pyobject(py)?.into_any(),
        r.error_type.as_deref().into_pyobject(py)?.into_any(),
        t.time_to_first_token.into_pyobject(py)?.into_any(),
        t.time_per_output_token.into_pyobject(py)?.into_any(),
        t.queue.into_pyobject(py)?.into_any(),
        t.prefill.into_pyobject(py)?.into_any(),
        t.decode.into_pyobject(py)?.into_any(),
        t.inference.into_pyobject(py)?.into_any(),
        t.e2e.into_pyobject(py)?.into_any(),
        py.None().into_bound(py),
    ];
    if with_parent {
        let parent = r
            .own_parent
            .flatten()
            .map(|p| (p.trace_id, p.span_id, p.trace_flags, p.is_remote));
        fields.push(parent.into_pyobject(py)?.into_any());
        fields.push(r.trace_id.into_pyobject(py)?.into_any());
    }
    Ok(fields)
}
