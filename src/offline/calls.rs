//! The begin and end of an instrumented LLM call and the report of an engine step, for calls whose
//! outputs the core reads: what the offline shim's `begin`, `_end_operation` and `_record_step` do
//! (`_offline.py`), called directly by the shim's generated replacements of the LLM methods and of
//! `LLMEngine.step` (see docs/design/generated-forwarding.md). Done here, they save the Python frames
//! of those steps on every call; the shim keeps its Python versions for the calls this does not
//! cover (content capture, `wait_for_completion`'s enqueued requests).
//!
//! What is vLLM's stays the shim's: the engine's attribute name, the model name (`_vllm.model_name`,
//! called once per engine), the caller's parent (`_context.parent_of`, called once per context),
//! and the slow paths (requests the shim registered itself, requests left unfinished), which are
//! called back. The call in progress is this thread's (`current_operation.rs`).
//!
//! Nothing here raises an `Exception` into the application: a failure is handed to the shim's
//! logger and the call goes on untraced. A `BaseException` that is not one (KeyboardInterrupt)
//! raised by a callback propagates, as it would from the shim's Python.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyWeakrefReference};

use super::clock::Clock;
use super::current_operation;
use super::operation::Operation;
use super::output_reader::OutputReader;
use super::pending_requests::PendingRequests;

#[pyclass(frozen, module = "opentelemetry.instrumentation.vllm._core")]
pub struct OfflineCalls {
    active: AtomicBool,
    /// The LLM's attribute holding its engine.
    engine_attribute: Py<PyString>,
    /// The shim's `model_name(engine)`, and its last answer with a weak reference to the engine it
    /// was for: an engine's model does not change, and the reference must not keep a deleted LLM's
    /// engine (and its engine-core process) alive.
    model_name: Py<PyAny>,
    last_model: Mutex<Option<(Py<PyWeakrefReference>, Py<PyAny>)>>,
    /// What reads OpenTelemetry's current Context (`_context.current_context_getter()`) and the
    /// shim's `parent_of(context)` (the caller's span context in the core's form, or None), with
    /// its last answer: a Context is immutable, so the same object holds the same span.
    current_context: Py<PyAny>,
    parent_of: Py<PyAny>,
    last_parent: Mutex<Option<(Py<PyAny>, Py<PyAny>)>>,
    provider_name: Py<PyAny>,
    clock: Clock,
    requests: Py<PendingRequests>,
    reader: Py<OutputReader>,
    /// The shim's own pending requests (its dict) and what reads and ends them.
    shim_pending: Py<PyDict>,
    /// `record_finished(engine, outputs, end_ns)`: the outputs the core did not record.
    record_otherwise: Py<PyAny>,
    /// `end_unfinished(operation, end_ns, error_type)`: the shim's requests left when a call ends.
    end_unfinished: Py<PyAny>,
    /// `log_failure(what, exception)`.
    log_failure: Py<PyAny>,
}

#[pymethods]
impl OfflineCalls {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (*, engine_attribute, model_name, current_context,
        parent_of, provider_name, now_ns, requests, reader, shim_pending, record_otherwise, end_unfinished,
        log_failure))]
    fn new(
        engine_attribute: Bound<'_, PyString>,
        model_name: Py<PyAny>,
        current_context: Py<PyAny>,
        parent_of: Py<PyAny>,
        provider_name: Py<PyAny>,
        now_ns: Bound<'_, PyAny>,
        requests: Py<PendingRequests>,
        reader: Py<OutputReader>,
        shim_pending: Py<PyDict>,
        record_otherwise: Py<PyAny>,
        end_unfinished: Py<PyAny>,
        log_failure: Py<PyAny>,
    ) -> PyResult<Self> {
        Ok(OfflineCalls {
            active: AtomicBool::new(true),
            engine_attribute: engine_attribute.unbind(),
            model_name,
            last_model: Mutex::new(None),
            current_context,
            parent_of,
            last_parent: Mutex::new(None),
            provider_name,
            clock: Clock::of(now_ns)?,
            requests,
            reader,
            shim_pending,
            record_otherwise,
            end_unfinished,
            log_failure,
        })
    }

    /// Ends the operation `OperationStart.begin` made current and returned: the core's and the
    /// shim's requests of it that never finished end with it (the shim's `end_unfinished`), then
    /// its span, with `error`'s type name where the call raised.
    #[pyo3(signature = (operation, error=None))]
    fn end(
        &self,
        py: Python<'_>,
        operation: &Bound<'_, Operation>,
        error: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        // `begin` made it current only where none was: none is current once it ended.
        drop(current_operation::replace(None));
        let ended = self.end_operation(py, operation, error);
        self.absorb(py, "record an operation span", ended)
    }

    /// `LLMEngine.step`'s report of the outputs it returned: the finished ones are recorded, by
    /// the core where it registered the request, else by the shim (`record_otherwise`).
    fn record_step(
        &self,
        py: Python<'_>,
        engine: &Bound<'_, PyAny>,
        outputs: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if self.requests.get().is_empty() && self.shim_pending.bind(py).is_empty() {
            return Ok(());
        }
        let recorded = self.record_outputs(py, engine, outputs);
        self.absorb(py, "record finished requests", recorded)
    }

    /// Stops beginning operations (uninstrument); calls in progress still end.
    fn deactivate(&self) {
        self.active.store(false, Ordering::Relaxed);
    }
}

impl OfflineCalls {
    fn begin_operation(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        records_requests: bool,
        llm: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<Operation>>> {
        // A call made inside another one (chat -> generate in older vLLM) is not an operation.
        if current_operation::is_set() {
            return Ok(None);
        }
        let engine = match llm.getattr(self.engine_attribute.bind(py)) {
            Ok(engine) => engine,
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) => {
                py.None().into_bound(py)
            }
            Err(e) => return Err(e),
        };
        let model = self.model_of(&engine)?;
        let parent = self.current_parent(py)?;
        let start_ns = self.clock.now_ns(py)?;
        let operation = Operation::start(
            name,
            self.provider_name.bind(py),
            &model,
            &parent,
            records_requests,
            // This object exists only where the core reads outputs (the shim made a reader).
            records_requests,
            start_ns,
        )?;
        let operation = Py::new(py, operation)?;
        drop(current_operation::replace(Some(operation.clone_ref(py))));
        Ok(Some(operation))
    }

    /// The engine's model name: the last one's if it is the same engine, else the shim's reading.
    fn model_of<'py>(&self, engine: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = engine.py();
        if let Some((reference, model)) = self.last_model.lock().as_ref() {
            if reference
                .bind(py)
                .upgrade()
                .is_some_and(|known| known.is(engine))
            {
                return Ok(model.bind(py).clone());
            }
        }
        let model = self.model_name.bind(py).call1((engine,))?;
        // An object without weak references (None: no engine) is read every time.
        if let Ok(reference) = PyWeakrefReference::new(engine) {
            let replaced = self
                .last_model
                .lock()
                .replace((reference.unbind(), model.clone().unbind()));
            // Dropped after the lock is released: dropping can run Python code that calls back in.
            drop(replaced);
        }
        Ok(model)
    }

    fn current_parent<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let context = self.current_context.bind(py).call0()?;
        if let Some((known, parent)) = self.last_parent.lock().as_ref() {
            if known.is(&context) {
                return Ok(parent.bind(py).clone());
            }
        }
        let parent = self.parent_of.bind(py).call1((&context,))?;
        let replaced = self
            .last_parent
            .lock()
            .replace((context.unbind(), parent.clone().unbind()));
        drop(replaced);
        Ok(parent)
    }

    fn end_operation(
        &self,
        py: Python<'_>,
        operation: &Bound<'_, Operation>,
        error: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let end_ns = self.clock.now_ns(py)?;
        let error_type = match error {
            Some(e) if !e.is_none() => Some(e.get_type().qualname()?.to_string()),
            _ => None,
        };
        let shim_pending = self.shim_pending.bind(py);
        if operation.get().reads_outputs() {
            // The core's unfinished requests of this operation join the shim's, which end below.
            self.requests.get().release(py, operation, shim_pending)?;
        }
        if !shim_pending.is_empty() {
            self.end_unfinished
                .bind(py)
                .call1((operation, end_ns, error_type.as_deref()))?;
        }
        operation.get().finish(end_ns, error_type);
        Ok(())
    }

    fn record_outputs(
        &self,
        py: Python<'_>,
        engine: &Bound<'_, PyAny>,
        outputs: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let end_ns = self.clock.now_ns(py)?;
        let shim_pending = self.shim_pending.bind(py);
        let leftovers = match outputs.cast_exact::<PyList>() {
            Ok(list) => {
                let leftovers = self.reader.get().record_outputs(
                    py,
                    list,
                    self.requests.bind(py),
                    shim_pending,
                    engine.as_ptr() as usize,
                    end_ns,
                )?;
                match leftovers {
                    Some(leftovers) if !shim_pending.is_empty() => leftovers.into_any(),
                    _ => return Ok(()),
                }
            }
            Err(_) => outputs.clone(),
        };
        self.record_otherwise
            .bind(py)
            .call1((engine, leftovers, end_ns))?;
        Ok(())
    }

    /// An `Exception` goes to the shim's logger (which never raises here) and no further: the
    /// caller gets `T`'s default (nothing done; for `begin`, no operation).
    fn absorb<T: Default>(&self, py: Python<'_>, what: &str, result: PyResult<T>) -> PyResult<T> {
        match result {
            Err(e) if !e.is_instance_of::<PyException>(py) => Err(e),
            Err(e) => {
                let _ = self.log_failure.bind(py).call1((what, e.value(py)));
                Ok(T::default())
            }
            ok => ok,
        }
    }
}

/// The beginning of one LLM method's calls: its operation name and whether its requests are the
/// user's (see `_vllm.OPERATIONS_WITHOUT_REQUEST_SPANS`).
#[pyclass(frozen, module = "opentelemetry.instrumentation.vllm._core")]
pub struct OperationStart {
    calls: Py<OfflineCalls>,
    name: Py<PyAny>,
    records_requests: bool,
}

#[pymethods]
impl OperationStart {
    #[new]
    fn new(calls: Py<OfflineCalls>, name: Py<PyAny>, records_requests: bool) -> Self {
        OperationStart {
            calls,
            name,
            records_requests,
        }
    }

    /// Makes a new operation current on this thread for a call of the method on `llm` and returns
    /// it, for `OfflineCalls.end`; None where the call is not an operation
    /// (instrumentation off, a call inside another one, or the operation could not start).
    /// `messages` (chat's) is not read: conversations are captured only with content, by the shim.
    #[pyo3(signature = (llm, messages=None))]
    fn begin(
        &self,
        py: Python<'_>,
        llm: &Bound<'_, PyAny>,
        messages: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Py<Operation>>> {
        let _ = messages;
        let calls = self.calls.get();
        if !calls.active.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let begun = calls.begin_operation(py, self.name.bind(py), self.records_requests, llm);
        calls.absorb(py, "start an operation span", begun)
    }
}
