//! The requests whose finished outputs the core will read: what the offline shim's `add_request`
//! replacement registered for an instrumented LLM call, kept here until `OutputReader` takes them.
//!
//! The shim kept them in a Python dict, a key tuple and a seven-item tuple per request: building,
//! hashing, comparing and freeing those, and the garbage collector visiting them while thousands of
//! a large batch wait, cost the caller's thread more than the reading itself. Here an entry is three
//! words and an inline id in a map.
//!
//! What the shim decides stays in Python: which call is an operation, whether the core reads its
//! outputs (an `Operation` that says so is current exactly then), the request attributes of a set of
//! sampling parameters (`_vllm.request_attributes`, called once per distinct set of values).
//! Every other request, and every one whose registration here fails, goes to the shim's own
//! registration, unchanged. An entry the core cannot record (an output of an unusual shape, a call
//! that ended with requests unfinished) is handed back into the shim's dict in its own layout.
//!
//! No Python object is dropped while a lock is held: dropping one can run Python code that calls
//! back in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use compact_str::CompactString;
use opentelemetry::KeyValue;
use parking_lot::Mutex;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use super::clock::Clock;
use super::current_operation;
use super::known_attributes::KnownAttributes;
use super::operation::{Operation, Parameters};
use crate::record::{BatchHeader, ParentContext};
use crate::telemetry;

/// (engine identity, request id): vLLM's request ids are unique per engine, not per process.
pub type RequestKey = (usize, CompactString);

type Entries = HashMap<RequestKey, Entry, foldhash::fast::RandomState>;

/// The last request header made by merging attributes into an operation's header: (the
/// operation's header, the attributes, the merged header). Headers have no parent (each batch
/// carries its call's), so calls with the same names and parameter values share one.
type MergedHeader = Option<(Arc<BatchHeader>, Arc<[KeyValue]>, Arc<BatchHeader>)>;

/// `base` with `own` attributes merged in (a request's own attributes win, as in `telemetry/spans.rs`): the
/// last one made if made of the very same two, else a new one (kept for the next call).
fn merged_header(
    base: &Arc<BatchHeader>,
    own: &Arc<[KeyValue]>,
    last: &Mutex<MergedHeader>,
) -> Arc<BatchHeader> {
    if let Some((b, o, merged)) = last.lock().as_ref() {
        if Arc::ptr_eq(b, base) && Arc::ptr_eq(o, own) {
            return merged.clone();
        }
    }
    let mut header = BatchHeader::clone(base);
    header.attributes = if header.attributes.is_empty() {
        own.clone()
    } else {
        let mut merged = Vec::with_capacity(header.attributes.len() + own.len());
        telemetry::merge_attributes(&mut merged, &header.attributes, own);
        merged.into()
    };
    let header = Arc::new(header);
    // The one replaced is dropped after the lock is released (it holds no Python object).
    let replaced = last
        .lock()
        .replace((base.clone(), own.clone(), header.clone()));
    drop(replaced);
    header
}

/// The parameters of a request of `operation`: those of the last request registered if they are
/// the same objects, else their attributes (the shim's `request_attributes`, or the same as the
/// last call's, see `known_attributes.rs`) merged into its header.
fn parameters(
    operation: &Operation,
    params: &Bound<'_, PyAny>,
    lora_request: &Bound<'_, PyAny>,
    priority: &Bound<'_, PyAny>,
    known: &KnownAttributes,
    last_merged: &Mutex<MergedHeader>,
) -> PyResult<Arc<Parameters>> {
    let same = |p: &Parameters| {
        p.params.as_ptr() == params.as_ptr()
            && p.lora_request.as_ptr() == lora_request.as_ptr()
            && (p.priority.as_ptr() == priority.as_ptr()
                || p.priority.bind(params.py()).eq(priority).unwrap_or(false))
    };
    if let Some(kept) = operation
        .last_parameters
        .lock()
        .as_ref()
        .filter(|p| same(p))
    {
        return Ok(kept.clone());
    }
    // Python code runs from here on: no lock is held.
    let attributes = known.attributes(params, lora_request, priority)?;
    let own = &attributes.converted;
    let header = if own.is_empty() {
        operation.header.clone()
    } else {
        merged_header(&operation.header, own, last_merged)
    };
    let parameters = Arc::new(Parameters {
        params: params.clone().unbind(),
        lora_request: lora_request.clone().unbind(),
        priority: priority.clone().unbind(),
        attributes: attributes.dict,
        header,
    });
    let replaced = operation.last_parameters.lock().replace(parameters.clone());
    drop(replaced);
    Ok(parameters)
}

/// A registered request.
pub struct Entry {
    operation: Py<Operation>,
    pub parameters: Arc<Parameters>,
    /// add_request's wall-clock time: the span's start where vLLM gives no arrival time.
    pub added_ns: u64,
}

impl Entry {
    /// The parent of the request's span: its call's (the header, shared by calls, has none).
    pub fn parent(&self) -> ParentContext {
        self.operation.get().span_parent()
    }

    /// Gives back an entry the reader took but cannot record: into the shim's dict, in its layout.
    pub fn hand_to_shim(
        self,
        py: Python<'_>,
        engine: usize,
        request_id: &str,
        pending: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        pending.set_item((engine, request_id), self.into_shim_pending(py)?)
    }

    /// The entry in the shim's pending layout: (add_request's time, attributes, operation, operation
    /// name, no prompt, no conversation); see `_offline.py`.
    fn into_shim_pending<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let operation = self.operation.bind(py);
        PyTuple::new(
            py,
            [
                self.added_ns.into_pyobject(py)?.into_any(),
                self.parameters.attributes.bind(py).clone(),
                operation.clone().into_any(),
                operation.get().name.bind(py).clone(),
                py.None().into_bound(py),
                py.None().into_bound(py),
            ],
        )
    }
}

#[pyclass(frozen, module = "opentelemetry.instrumentation.vllm._core")]
pub struct PendingRequests {
    entries: Mutex<Entries>,
    /// The shim's registration of every other request: called with add_request's arguments.
    register_otherwise: Py<PyAny>,
    /// The shim's clock (`_vllm.now_ns`).
    clock: Clock,
    /// The shim's attribute reader (`_vllm.request_attributes`), and what it made of the last
    /// parameters it read.
    known_attributes: KnownAttributes,
    last_merged: Mutex<MergedHeader>,
    active: AtomicBool,
}

#[pymethods]
impl PendingRequests {
    /// `sampling_fields` and `lora_fields`: every attribute `request_attributes` reads of the
    /// parameters and of the LoRA request (see `known_attributes.rs`).
    #[new]
    fn new(
        register_otherwise: Py<PyAny>,
        now_ns: Bound<'_, PyAny>,
        request_attributes: Py<PyAny>,
        sampling_fields: Vec<String>,
        lora_fields: Vec<String>,
    ) -> PyResult<Self> {
        let py = now_ns.py();
        Ok(PendingRequests {
            entries: Mutex::new(Entries::default()),
            register_otherwise,
            clock: Clock::of(now_ns)?,
            known_attributes: KnownAttributes::new(
                py,
                request_attributes,
                sampling_fields,
                lora_fields,
            ),
            last_merged: Mutex::new(None),
            active: AtomicBool::new(true),
        })
    }

    /// add_request's report, after each request vLLM accepted. Never raises an `Exception`: a
    /// request the core cannot register is the shim's (`register_otherwise`), which logs and carries on.
    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        py: Python<'_>,
        engine: &Bound<'_, PyAny>,
        request_id: &Bound<'_, PyAny>,
        prompt: &Bound<'_, PyAny>,
        params: &Bound<'_, PyAny>,
        lora_request: &Bound<'_, PyAny>,
        priority: &Bound<'_, PyAny>,
        prompt_text: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if self.active.load(Ordering::Relaxed) {
            let registered = match current_operation::current(py) {
                Some(operation) if operation.get().reads_outputs() => self
                    .register_core(
                        operation.bind(py),
                        engine,
                        request_id,
                        params,
                        lora_request,
                        priority,
                    )
                    .map(|()| true),
                _ => Ok(false),
            };
            match registered {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                // KeyboardInterrupt and the like are the application's, as anywhere else.
                Err(e) if !e.is_instance_of::<PyException>(py) => return Err(e),
                Err(_) => {}
            }
        }
        match self.register_otherwise.bind(py).call1((
            engine,
            request_id,
            prompt,
            params,
            lora_request,
            priority,
            prompt_text,
        )) {
            Err(e) if !e.is_instance_of::<PyException>(py) => Err(e),
            _ => Ok(()),
        }
    }

    /// Hands the entries of `operation` not taken by the reader (vLLM raised, or aborted them)
    /// into the shim's `pending` dict, in its layout, and returns the operation's request count.
    pub fn release(
        &self,
        py: Python<'_>,
        operation: &Bound<'_, Operation>,
        pending: &Bound<'_, PyDict>,
    ) -> PyResult<usize> {
        let core = operation.get();
        if core.outstanding.load(Ordering::Acquire) > 0 {
            let released: Vec<(RequestKey, Entry)> = self
                .entries
                .lock()
                .extract_if(|_, entry| entry.operation.as_ptr() == operation.as_ptr())
                .collect();
            core.outstanding.fetch_sub(released.len(), Ordering::AcqRel);
            for ((engine, request_id), entry) in released {
                entry.hand_to_shim(py, engine, &request_id, pending)?;
            }
        }
        Ok(core.request_count())
    }

    /// Registration stops (uninstrument): later reports go to the shim, which ignores them, and
    /// what is pending is forgotten.
    fn deactivate(&self) {
        self.active.store(false, Ordering::Relaxed);
        let forgotten = std::mem::take(&mut *self.entries.lock());
        drop(forgotten);
    }

    fn __len__(&self) -> usize {
        self.entries.lock().len()
    }
}

impl PendingRequests {
    fn register_core(
        &self,
        operation: &Bound<'_, Operation>,
        engine: &Bound<'_, PyAny>,
        request_id: &Bound<'_, PyAny>,
        params: &Bound<'_, PyAny>,
        lora_request: &Bound<'_, PyAny>,
        priority: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = operation.py();
        // str(request_id), as the shim keys its own entries.
        let request_id = match request_id.cast_exact::<PyString>() {
            Ok(id) => CompactString::from(id.to_str()?),
            Err(_) => CompactString::from(request_id.str()?.to_str()?),
        };
        let core = operation.get();
        let parameters = parameters(
            core,
            params,
            lora_request,
            priority,
            &self.known_attributes,
            &self.last_merged,
        )?;
        let added_ns = self.clock.now_ns(py)?;
        core.count_request();
        core.outstanding.fetch_add(1, Ordering::AcqRel);
        let entry = Entry {
            operation: operation.clone().unbind(),
            parameters,
            added_ns,
        };
        let replaced = self
            .entries
            .lock()
            .insert((engine.as_ptr() as usize, request_id), entry);
        if let Some(replaced) = replaced {
            // The same id again on the same engine: the new request replaces the old, as in a dict.
            replaced
                .operation
                .get()
                .outstanding
                .fetch_sub(1, Ordering::AcqRel);
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.lock().is_empty()
    }

    /// Removes and returns the entry of a finished request, if it is registered here.
    pub fn take(&self, engine: usize, request_id: &str) -> Option<Entry> {
        // A borrowed key would need a second map type; an id is inline up to 24 bytes.
        let entry = self
            .entries
            .lock()
            .remove(&(engine, CompactString::from(request_id)))?;
        entry
            .operation
            .get()
            .outstanding
            .fetch_sub(1, Ordering::AcqRel);
        Some(entry)
    }
}
