//! One instrumented LLM call in progress (`_core.Operation`): the shim makes one per call of the
//! offline API and keeps it current on its thread while the call runs (`current_operation.rs`, see
//! docs/design/current-operation.md).
//!
//! It holds what the call's spans need in the core's own form, built once when the call starts:
//! the reserved span context, the batch header of its request spans (parented to it), its start
//! time, the parameters of its last request; `end` records the operation span from these directly.
//! A call of one prompt would otherwise convert the same ids, names and model from Python tuples
//! three times (reserve, register, record).
//!
//! The shim's slow paths (content capture, enqueued requests, calls that end with requests
//! unfinished) read and set the remaining fields as attributes. Nothing here knows vLLM: names,
//! model and provider come from the shim.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use opentelemetry::trace::SpanKind;
use parking_lot::Mutex;
use pyo3::prelude::*;

use crate::record::{self, BatchHeader, Name, OperationRecord, ParentContext};
use crate::{pipeline, telemetry};

/// A request's parameters (by identity, as given to add_request) and the header of its spans, with
/// the attributes they make merged in (a request's own attributes win, as in `telemetry/spans.rs`).
pub struct Parameters {
    pub(super) params: Py<PyAny>,
    pub(super) lora_request: Py<PyAny>,
    pub(super) priority: Py<PyAny>,
    /// The shim's attribute dict (or None), handed back with entries the core cannot record.
    pub(super) attributes: Py<PyAny>,
    pub(super) header: Arc<BatchHeader>,
}

/// Reserves the context of a span named `name` (see `telemetry::span_name`) recorded later: (trace_id,
/// span_id, trace_flags), sampled by the pipeline's sampler; ids that are never sampled when
/// telemetry is off.
pub fn reserve_span_context(
    parent: Option<&ParentContext>,
    name: &str,
    kind: SpanKind,
) -> (u128, u64, u8) {
    match pipeline::current() {
        Some(p) => p.spans.new_span_context(parent, name, kind),
        None => (
            parent
                .map(|p| p.trace_id)
                .unwrap_or_else(telemetry::new_trace_id),
            telemetry::new_span_id(),
            0,
        ),
    }
}

/// The very same name objects (the shim's names are interned, so calls that repeat them pass the
/// same ones).
fn same_objects(a: Option<&Name>, b: Option<&Name>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// What the calls of the last (operation, provider, model) names share: the header of their
/// request spans, without a parent (each call's batches carry its span as their parent, see
/// `Pipeline::record_requests_under`), and the span name the sampler is given. Made per call, the
/// header was freed by the recorder thread, which then took the caller's glibc arena lock (see
/// docs/design/shared-request-header.md), and the span name was formatted again for every call.
static LAST_CALL_NAMES: Mutex<Option<(Arc<BatchHeader>, Name)>> = Mutex::new(None);

fn call_names(
    operation_name: Name,
    provider_name: Name,
    model: Option<Name>,
) -> (Arc<BatchHeader>, Name) {
    let mut last = LAST_CALL_NAMES.lock();
    if let Some((header, span_name)) = last.as_ref() {
        if Arc::ptr_eq(&header.operation_name, &operation_name)
            && Arc::ptr_eq(&header.provider_name, &provider_name)
            && same_objects(header.request_model.as_ref(), model.as_ref())
        {
            return (header.clone(), span_name.clone());
        }
    }
    let span_name = Name::from(telemetry::span_name(&operation_name, model.as_deref()));
    let header = Arc::new(BatchHeader {
        operation_name,
        provider_name,
        response_model: model.clone(),
        request_model: model,
        parent: None,
        span_kind: SpanKind::Internal,
        attributes: Arc::from([]),
    });
    // The ones replaced are dropped after the lock is released (they hold no Python object).
    let replaced = last.replace((header.clone(), span_name.clone()));
    drop(last);
    drop(replaced);
    (header, span_name)
}

#[pyclass(frozen, module = "opentelemetry.instrumentation.vllm._core")]
pub struct Operation {
    /// As the shim gave them: its slow paths read them back.
    pub name: Py<PyAny>,
    model: Py<PyAny>,
    parent: Py<PyAny>,
    records_requests: bool,
    core_reads: bool,
    start_ns: u64,
    trace_id: u128,
    span_id: u64,
    trace_flags: u8,
    /// The header of this call's request spans, without request attributes and without a parent:
    /// shared with other calls of the same names; their parent is this span (`span_parent`).
    pub header: Arc<BatchHeader>,
    /// The parent of this span, in the core's form.
    parent_context: Option<ParentContext>,
    /// Requests of this call: counted by the core's registration and by the shim.
    request_count: AtomicUsize,
    /// Registered in the core (`PendingRequests`) and not yet taken by the reader.
    pub outstanding: AtomicUsize,
    /// The sampling parameters of the last request registered in the core, and what they became: a
    /// batch usually shares one parameters object, so its attributes are read once, not per request.
    pub last_parameters: Mutex<Option<Arc<Parameters>>>,
    /// The shim's own fields (see `_offline.py`).
    engine_id: AtomicUsize,
    runs_enqueued: AtomicBool,
    conversations: Mutex<Option<Py<PyAny>>>,
    ended: AtomicBool,
}

#[pymethods]
impl Operation {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &Bound<'_, PyAny>,
        provider_name: &Bound<'_, PyAny>,
        model: &Bound<'_, PyAny>,
        parent: &Bound<'_, PyAny>,
        records_requests: bool,
        core_reads: bool,
        start_ns: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let start_ns = record::nanos(start_ns)?;
        Operation::start(
            name,
            provider_name,
            model,
            parent,
            records_requests,
            core_reads,
            start_ns,
        )
    }

    #[getter]
    fn name(&self, py: Python<'_>) -> Py<PyAny> {
        self.name.clone_ref(py)
    }

    #[getter]
    fn model(&self, py: Python<'_>) -> Py<PyAny> {
        self.model.clone_ref(py)
    }

    /// The caller's span context this call's span is a child of, as given (or None).
    #[getter]
    fn parent(&self, py: Python<'_>) -> Py<PyAny> {
        self.parent.clone_ref(py)
    }

    #[getter]
    fn records_requests(&self) -> bool {
        self.records_requests
    }

    /// Whether the core reads this call's finished outputs (its requests register in the core).
    #[getter]
    fn core_reads(&self) -> bool {
        self.core_reads
    }

    #[getter]
    fn start_ns(&self) -> u64 {
        self.start_ns
    }

    /// The reserved span context: (trace_id, span_id, trace_flags).
    #[getter]
    fn context(&self) -> (u128, u64, u8) {
        (self.trace_id, self.span_id, self.trace_flags)
    }

    /// This span as the parent of request spans, in a batch header's form.
    fn as_parent(&self) -> (u128, u64, u8, bool) {
        let p = self.span_parent();
        (p.trace_id, p.span_id, p.trace_flags, p.is_remote)
    }

    #[getter]
    fn get_request_count(&self) -> usize {
        self.request_count.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_request_count(&self, count: usize) {
        self.request_count.store(count, Ordering::Relaxed);
    }

    #[getter]
    fn get_engine_id(&self) -> usize {
        self.engine_id.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_engine_id(&self, engine_id: usize) {
        self.engine_id.store(engine_id, Ordering::Relaxed);
    }

    #[getter]
    fn get_runs_enqueued(&self) -> bool {
        self.runs_enqueued.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_runs_enqueued(&self, runs_enqueued: bool) {
        self.runs_enqueued.store(runs_enqueued, Ordering::Relaxed);
    }

    #[getter]
    fn get_conversations(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.conversations.lock().as_ref().map(|c| c.clone_ref(py))
    }

    #[setter]
    fn set_conversations(&self, conversations: Option<Py<PyAny>>) {
        // The old value is dropped after the lock is released: dropping can run Python code.
        let old = std::mem::replace(&mut *self.conversations.lock(), conversations);
        drop(old);
    }

    /// Records the operation span (with its request count where `records_requests`) and its
    /// duration. Once: a second call records nothing and returns False.
    #[pyo3(signature = (end_ns, error_type=None))]
    fn end(
        &self,
        end_ns: &Bound<'_, PyAny>,
        error_type: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let end_unix_nanos = record::nanos(end_ns)?;
        let error_type = error_type.map(record::opt_string).transpose()?.flatten();
        Ok(self.finish(end_unix_nanos, error_type))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let name = self.name.bind(py).repr()?;
        Ok(format!(
            "<Operation {name} span {:016x} of trace {:032x}>",
            self.span_id, self.trace_id
        ))
    }
}

impl Operation {
    /// A call that starts now (`start_ns`): its span context is reserved and sampled, the header
    /// of its request spans built. The names are the shim's strings (see `interned::name`), `parent`
    /// the caller's span context in the core's form (or None).
    pub fn start(
        name: &Bound<'_, PyAny>,
        provider_name: &Bound<'_, PyAny>,
        model: &Bound<'_, PyAny>,
        parent: &Bound<'_, PyAny>,
        records_requests: bool,
        core_reads: bool,
        start_ns: u64,
    ) -> PyResult<Self> {
        let operation_name = record::interned_name(name)?.unwrap_or_else(|| Name::from(""));
        let provider_name = record::interned_name(provider_name)?.unwrap_or_else(|| Name::from(""));
        let request_model = record::interned_name(model)?;
        let parent_context = record::parent(parent)?;
        let (header, span_name) = call_names(operation_name, provider_name, request_model);
        let (trace_id, span_id, trace_flags) =
            reserve_span_context(parent_context.as_ref(), &span_name, SpanKind::Internal);
        Ok(Operation {
            name: name.clone().unbind(),
            model: model.clone().unbind(),
            parent: parent.clone().unbind(),
            records_requests,
            core_reads,
            start_ns,
            trace_id,
            span_id,
            trace_flags,
            header,
            parent_context,
            request_count: AtomicUsize::new(0),
            outstanding: AtomicUsize::new(0),
            last_parameters: Mutex::new(None),
            engine_id: AtomicUsize::new(0),
            runs_enqueued: AtomicBool::new(false),
            conversations: Mutex::new(None),
            ended: AtomicBool::new(false),
        })
    }

    /// Records the operation span (see `end`); false when it had ended before or telemetry is off.
    pub fn finish(&self, end_unix_nanos: u64, error_type: Option<String>) -> bool {
        if self.ended.swap(true, Ordering::AcqRel) {
            return false;
        }
        let Some(pipeline) = pipeline::current() else {
            return false;
        };
        let header = &self.header;
        let record = OperationRecord {
            trace_id: self.trace_id,
            span_id: self.span_id,
            trace_flags: self.trace_flags,
            parent: self.parent_context,
            operation_name: header.operation_name.clone(),
            provider_name: header.provider_name.clone(),
            request_model: header.request_model.clone(),
            response_model: header.response_model.clone(),
            span_kind: SpanKind::Internal,
            start_unix_nanos: self.start_ns,
            end_unix_nanos,
            error_type,
            // No count where the engine's requests are not the user's (beam search steps).
            request_count: self
                .records_requests
                .then(|| self.request_count.load(Ordering::Relaxed) as i64),
            attributes: Vec::new(),
        };
        pipeline.record_operation(record)
    }

    /// This call's span as the parent of its request spans.
    pub fn span_parent(&self) -> ParentContext {
        ParentContext {
            trace_id: self.trace_id,
            span_id: self.span_id,
            trace_flags: self.trace_flags,
            is_remote: false,
        }
    }

    /// One more request of this call (registered in the core).
    pub fn count_request(&self) {
        self.request_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn request_count(&self) -> usize {
        self.request_count.load(Ordering::Relaxed)
    }

    pub fn reads_outputs(&self) -> bool {
        self.core_reads
    }
}
