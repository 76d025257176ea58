//! Strings that repeat from record to record (finish reasons, attribute keys), kept for the life of
//! the process as static strings; names (operation, provider, model) found by the Python string
//! they were read from.
//!
//! Records are made on the caller's thread and freed on the recorder's. A string allocated for a
//! record is then freed by the other thread: glibc puts it back into the caller's arena under that
//! arena's lock, which the caller's own allocations take too, so the caller ends up waiting for
//! the recorder thread on that lock. A static string is copied, not allocated, and its copy touches
//! no shared reference count. See docs/design/interned-strings.md.

use std::sync::{Arc, Mutex};

use opentelemetry::{Key, StringValue};
use pyo3::prelude::*;
use pyo3::types::PyString;
use smallvec::SmallVec;

use super::types::Name;

/// At most this many distinct strings are kept (vLLM has five finish reasons; the shim writes a few
/// dozen attribute keys). Past it, strings are reference-counted, as before.
const MAX_INTERNED: usize = 256;

/// `text` as a static string, leaked the first time; None once the limit is reached.
pub fn interned(text: &str) -> Option<&'static str> {
    static INTERNED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut interned = INTERNED.lock().ok()?;
    if let Some(kept) = interned.iter().find(|kept| **kept == text) {
        return Some(kept);
    }
    if interned.len() >= MAX_INTERNED {
        return None;
    }
    let kept: &'static str = Box::leak(text.into());
    interned.push(kept);
    Some(kept)
}

/// `text` as an attribute value or finish reason: static where it could be interned.
pub fn string_value(text: &str) -> StringValue {
    match interned(text) {
        Some(kept) => StringValue::from(kept),
        None => StringValue::from(Arc::<str>::from(text)),
    }
}

/// At most this many Python key strings are remembered by identity.
const MAX_KNOWN_KEYS: usize = 64;

/// Attribute keys by the Python string they were read from: the shim's dicts are built with the
/// same literal key objects every time, so a key is found by its address without reading its text.
/// The strings are held, so none can be freed and its address taken by another.
static KNOWN_KEYS: parking_lot::Mutex<Vec<(Py<PyString>, Key)>> =
    parking_lot::Mutex::new(Vec::new());

/// The attribute keys of `keys`, in order, with one lock for all of them. Runs no Python code (only
/// reads the strings), so no other call into the core can start while the lock is held.
pub fn attribute_keys<'a, 'py: 'a>(
    keys: impl Iterator<Item = &'a Bound<'py, PyString>>,
) -> SmallVec<[Key; 16]> {
    let mut known = KNOWN_KEYS.lock();
    keys.map(|key| {
        if let Some((_, kept)) = known.iter().find(|(k, _)| k.as_ptr() == key.as_ptr()) {
            return kept.clone();
        }
        let text = key.to_string_lossy();
        let converted = match interned(&text) {
            Some(kept) => Key::from_static_str(kept),
            None => Key::from(Arc::<str>::from(text)),
        };
        // Only exact str objects are immutable (a subclass could carry other state).
        if known.len() < MAX_KNOWN_KEYS && key.is_exact_instance_of::<PyString>() {
            known.push((key.clone().unbind(), converted.clone()));
        }
        converted
    })
    .collect()
}

/// Names by the Python string they were read from. Every LLM call passes the same few string
/// objects (the operation names, the provider, the engine's model name), and every serving step's
/// batch header the same ones, so a name is a reference count, not an allocation. Only exact `str`
/// objects (immutable) are kept, and they are held, so none can be freed and its address taken by
/// another string.
static KNOWN_NAMES: parking_lot::Mutex<Vec<(Py<PyAny>, Name)>> =
    parking_lot::Mutex::new(Vec::new());
/// Enough for every operation name, the provider and a few models; the oldest goes first.
const MAX_KNOWN_NAMES: usize = 16;

/// An operation, provider or model name (None for None), read lossily like every other string the
/// core reads (a lone surrogate must not raise).
pub fn name(obj: &Bound<'_, PyAny>) -> PyResult<Option<Name>> {
    if obj.is_none() {
        return Ok(None);
    }
    if let Some((_, name)) = KNOWN_NAMES
        .lock()
        .iter()
        .find(|(known, _)| known.as_ptr() == obj.as_ptr())
    {
        return Ok(Some(name.clone()));
    }
    // Lossy like `intake::opt_string` (None was handled above).
    let name = Name::from(&*obj.cast::<PyString>()?.to_string_lossy());
    if obj.is_exact_instance_of::<PyString>() {
        let mut known = KNOWN_NAMES.lock();
        let evicted = (known.len() >= MAX_KNOWN_NAMES).then(|| known.remove(0));
        known.push((obj.clone().unbind(), name.clone()));
        drop(known);
        // Dropped after the lock is released: dropping a Python object can run Python code.
        drop(evicted);
    }
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_interned_once_then_copied() {
        let first = string_value("a reason only this test uses");
        let again = string_value("a reason only this test uses");
        assert_eq!(first.as_str(), "a reason only this test uses");
        // The same leaked string: a copy, no allocation and no reference count.
        assert!(std::ptr::eq(first.as_str(), again.as_str()));
        assert!(!std::ptr::eq(
            first.as_str(),
            string_value("another").as_str()
        ));
    }
}
