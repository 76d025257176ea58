//! The request attributes the shim made of the last sampling parameters it was asked about, kept
//! with the very objects they were made from (see docs/design/shared-request-header.md).
//!
//! An application that calls `LLM.generate` with one prompt at a time passes the same parameters
//! (or vLLM makes equal defaults) call after call, and reading them (the shim's
//! `request_attributes`, then the conversion of its dict) is most of what registering that one
//! request costs. A `SamplingParams` object can be changed between calls, so the object itself
//! proves nothing; its values do. The attributes are reused only when every value
//! `request_attributes` reads (the names come from the shim: this knows nothing of vLLM) is the
//! very same object as last time, or a list of the very same items as the list then. The kept
//! objects are held, so no other object can take their address meanwhile. Numbers and strings
//! cannot change; lists are compared item by item; anything else the shim reads only for its
//! numeric or string value (see `_vllm.request_attributes`). tests/test_pending_requests.py checks
//! that the attributes are reused only while every value read is the same object.

use std::sync::Arc;

use opentelemetry::KeyValue;
use parking_lot::Mutex;
use pyo3::exceptions::PyAttributeError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};
use smallvec::SmallVec;

use crate::record;

/// How many types without every field are remembered (a process has one or two: pooling parameters).
const MAX_PARTIAL_TYPES: usize = 8;

/// One value read, and the items it held if it is a list.
struct Input {
    value: Py<PyAny>,
    items: Option<Vec<Py<PyAny>>>,
}

impl Input {
    fn read(value: Bound<'_, PyAny>) -> Input {
        let items = value
            .cast::<PyList>()
            .ok()
            .map(|list| list.iter().map(Bound::unbind).collect());
        Input {
            value: value.unbind(),
            items,
        }
    }

    /// `value` is the same object, or both are lists of the same items (vLLM makes a new empty
    /// `stop` list for every parameters object).
    fn is(&self, value: &Bound<'_, PyAny>) -> bool {
        match (&self.items, value.cast::<PyList>()) {
            (None, Err(_)) => self.value.as_ptr() == value.as_ptr(),
            (Some(items), Ok(list)) => {
                items.len() == list.len()
                    && items
                        .iter()
                        .zip(list.iter())
                        .all(|(x, y)| x.as_ptr() == y.as_ptr())
            }
            _ => false,
        }
    }
}

/// Everything `request_attributes` was given or read.
struct Inputs {
    values: SmallVec<[Input; 12]>,
    lora_request: Py<PyAny>,
    priority: Py<PyAny>,
}

/// The values read for one request, compared with the kept `Inputs` before any is kept: a call
/// with the same parameters as the last one converts nothing.
struct Read<'a, 'py> {
    values: SmallVec<[Bound<'py, PyAny>; 12]>,
    lora_request: &'a Bound<'py, PyAny>,
    priority: &'a Bound<'py, PyAny>,
}

impl Inputs {
    fn is(&self, read: &Read<'_, '_>) -> bool {
        self.lora_request.as_ptr() == read.lora_request.as_ptr()
            && self.priority.as_ptr() == read.priority.as_ptr()
            && self.values.len() == read.values.len()
            && self.values.iter().zip(&read.values).all(|(a, b)| a.is(b))
    }

    fn of(read: Read<'_, '_>) -> Inputs {
        Inputs {
            values: read.values.into_iter().map(Input::read).collect(),
            lora_request: read.lora_request.clone().unbind(),
            priority: read.priority.clone().unbind(),
        }
    }
}

struct Known {
    inputs: Inputs,
    /// The shim's dict, handed back with entries the core cannot record.
    attributes: Py<PyAny>,
    converted: Arc<[KeyValue]>,
}

/// The attributes of a request's parameters: `request_attributes`' dict, and the same converted.
pub struct RequestAttributes {
    pub dict: Py<PyAny>,
    pub converted: Arc<[KeyValue]>,
}

pub struct KnownAttributes {
    /// The shim's `_vllm.request_attributes(params, lora_request, priority)`.
    request_attributes: Py<PyAny>,
    /// What `request_attributes` reads of the sampling parameters and of the LoRA request.
    sampling_fields: Vec<Py<PyString>>,
    lora_fields: Vec<Py<PyString>>,
    known: Mutex<Option<Arc<Known>>>,
    /// Types of parameters found without one of the fields (pooling parameters): not kept, since
    /// each missing attribute would cost an AttributeError per call to find out again.
    partial_types: Mutex<SmallVec<[usize; 4]>>,
}

impl KnownAttributes {
    pub fn new(
        py: Python<'_>,
        request_attributes: Py<PyAny>,
        sampling_fields: Vec<String>,
        lora_fields: Vec<String>,
    ) -> KnownAttributes {
        let intern = |names: Vec<String>| {
            names
                .iter()
                .map(|n| PyString::intern(py, n).unbind())
                .collect()
        };
        KnownAttributes {
            request_attributes,
            sampling_fields: intern(sampling_fields),
            lora_fields: intern(lora_fields),
            known: Mutex::new(None),
            partial_types: Mutex::new(SmallVec::new()),
        }
    }

    /// The attributes of these parameters: the last ones if made of the very same inputs, else
    /// `request_attributes`' (kept for the next call).
    pub fn attributes(
        &self,
        params: &Bound<'_, PyAny>,
        lora_request: &Bound<'_, PyAny>,
        priority: &Bound<'_, PyAny>,
    ) -> PyResult<RequestAttributes> {
        let read = self.read(params, lora_request, priority)?;
        if let Some(read) = &read {
            let known = self.known.lock().clone();
            if let Some(known) = known.filter(|k| k.inputs.is(read)) {
                return Ok(RequestAttributes {
                    dict: known.attributes.clone_ref(params.py()),
                    converted: known.converted.clone(),
                });
            }
        }
        let inputs = read.map(Inputs::of);
        let dict =
            self.request_attributes
                .bind(params.py())
                .call1((params, lora_request, priority))?;
        let converted: Arc<[KeyValue]> = record::attributes(&dict)?.into();
        if let Some(inputs) = inputs {
            let known = Arc::new(Known {
                inputs,
                attributes: dict.clone().unbind(),
                converted: converted.clone(),
            });
            // The one replaced is dropped after the lock is released: dropping can run Python code.
            let replaced = self.known.lock().replace(known);
            drop(replaced);
        }
        Ok(RequestAttributes {
            dict: dict.unbind(),
            converted,
        })
    }

    /// Reads the inputs; None where some field is missing (nothing is kept for such parameters).
    fn read<'a, 'py>(
        &self,
        params: &Bound<'py, PyAny>,
        lora_request: &'a Bound<'py, PyAny>,
        priority: &'a Bound<'py, PyAny>,
    ) -> PyResult<Option<Read<'a, 'py>>> {
        let py = params.py();
        let params_type = params.get_type().as_ptr() as usize;
        if self.partial_types.lock().contains(&params_type) {
            return Ok(None);
        }
        let mut values = SmallVec::new();
        for name in &self.sampling_fields {
            match params.getattr(name.bind(py)) {
                Ok(value) => values.push(value),
                Err(e) if e.is_instance_of::<PyAttributeError>(py) => {
                    let mut partial = self.partial_types.lock();
                    if partial.len() < MAX_PARTIAL_TYPES {
                        partial.push(params_type);
                    }
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        if !lora_request.is_none() {
            for name in &self.lora_fields {
                match lora_request.getattr(name.bind(py)) {
                    Ok(value) => values.push(value),
                    // Rare (LoRA requests have both names); not worth remembering.
                    Err(e) if e.is_instance_of::<PyAttributeError>(py) => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Some(Read {
            values,
            lora_request,
            priority,
        }))
    }
}
