//! The instrumented LLM call in progress on this thread (`_core.Operation`), if any.
//!
//! The offline API is synchronous: an LLM call's `add_request` and `step` calls run on the thread
//! that made the call, before it returns, so "the call in progress on this thread" is what a
//! context variable would hold, without a context variable's cost per call (`set` copies the
//! context's map and makes a token, `reset` again). Each thread has its own, as each thread has its
//! own context; asyncio tasks cannot interleave inside a synchronous call. See
//! docs/design/current-operation.md.

use std::cell::RefCell;

use pyo3::prelude::*;

use super::operation::Operation;

thread_local! {
    static CURRENT: RefCell<Option<Py<Operation>>> = const { RefCell::new(None) };
}

/// The operation in progress on this thread.
pub fn current(py: Python<'_>) -> Option<Py<Operation>> {
    CURRENT.with(|current| current.borrow().as_ref().map(|o| o.clone_ref(py)))
}

/// Whether an operation is in progress on this thread.
pub fn is_set() -> bool {
    CURRENT.with(|current| current.borrow().is_some())
}

/// Makes `operation` (or none) the one in progress on this thread; returns the one before, which
/// the caller drops: dropping a Python object can run Python code, which may call back in here.
#[must_use]
pub fn replace(operation: Option<Py<Operation>>) -> Option<Py<Operation>> {
    CURRENT.with(|current| current.replace(operation))
}
