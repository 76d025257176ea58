//! Reading one attribute of a vLLM object from Rust by a name the shim gave (the shim knows which
//! attribute holds what; the core only reads, see docs/design/attribute-name-readers.md): what every
//! reader shares, with the clean-shape rules they apply to a value (`Unclean`: leave it to the shim).

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::PyAttributeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyInt, PyString};

/// What one read returns for a field: absent is a value (None / missing attribute); `Unclean` means
/// "not the common shape" (the attribute raised, or a reader's own check failed), which each reader
/// handles its way (the output reader leaves the output to the shim).
pub enum Field<'py> {
    Absent,
    Present(Bound<'py, PyAny>),
}

pub struct Unclean;

pub type Read<T> = Result<T, Unclean>;

/// One attribute name the shim gave. Reading it is `getattr(obj, name, None)`: only a missing
/// attribute counts as absent. `PyObject_GetAttr` builds (and formats) an AttributeError for a
/// missing one, which costs more than everything else read per output; the limited API has no
/// lookup without it before 3.13. So an attribute once found missing is read from then on through
/// the builtin `getattr` with a default, which looks it up without raising.
pub struct Attribute {
    name: Py<PyString>,
    often_missing: AtomicBool,
}

impl Attribute {
    pub fn new(py: Python<'_>, name: &str) -> Self {
        Attribute {
            name: PyString::intern(py, name).unbind(),
            often_missing: AtomicBool::new(false),
        }
    }

    pub fn read<'py>(&self, obj: &Bound<'py, PyAny>) -> Read<Field<'py>> {
        let py = obj.py();
        let name = self.name.bind(py);
        let value = if self.often_missing.load(Ordering::Relaxed) {
            static GETATTR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            let getattr = GETATTR
                .get_or_try_init(py, || {
                    Ok::<_, PyErr>(py.import("builtins")?.getattr("getattr")?.unbind())
                })
                .map_err(|_| Unclean)?;
            getattr
                .bind(py)
                .call1((obj, name, py.None()))
                .map_err(|_| Unclean)?
        } else {
            match obj.getattr(name) {
                Ok(v) => v,
                Err(e) if e.is_instance_of::<PyAttributeError>(py) => {
                    self.often_missing.store(true, Ordering::Relaxed);
                    return Ok(Field::Absent);
                }
                Err(_) => return Err(Unclean),
            }
        };
        Ok(if value.is_none() {
            Field::Absent
        } else {
            Field::Present(value)
        })
    }
}

/// An exact int in 0..=i64::MAX, or absent; anything else (bools, negatives, huge ints) is unclean.
pub fn optional_count(value: Field<'_>) -> Read<Option<i64>> {
    match value {
        Field::Absent => Ok(None),
        Field::Present(v) if v.is_exact_instance_of::<PyInt>() => match v.extract::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(Unclean),
        },
        Field::Present(_) => Err(Unclean),
    }
}
