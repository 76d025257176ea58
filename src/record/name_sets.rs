//! What the recorder keeps per set of names of a batch or an operation (operation, provider,
//! request model, response model): the metric instruments bound to those attributes
//! (`telemetry/metrics.rs`), the span name and the names as span attributes (`telemetry/spans.rs`).
//!
//! Consecutive batches nearly always carry the same names, as the very same objects
//! (`interned::name`): the last set found is compared first, by pointer, so the usual lookup
//! neither hashes nor clones the names. Any other set is found by a hash of the names' text.

use std::collections::HashMap;
use std::sync::Arc;

use super::types::{Name, NameSetRef};

/// (operation, provider, request model, response model).
pub type NameSet = (Name, Name, Option<Name>, Option<Name>);

/// The same name: usually the very same object, else the same text.
fn same_name(a: &Name, b: &Name) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

fn same_optional_name(a: &Option<Name>, b: &Option<Name>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_name(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn is(kept: &NameSet, names: NameSetRef<'_>) -> bool {
    same_name(&kept.0, names.0)
        && same_name(&kept.1, names.1)
        && same_optional_name(&kept.2, names.2)
        && same_optional_name(&kept.3, names.3)
}

/// A `T` per set of names, at most `limit` sets.
pub struct PerNameSet<T> {
    entries: Vec<(NameSet, T)>,
    index: HashMap<NameSet, usize, foldhash::fast::RandomState>,
    last: usize,
    limit: usize,
}

impl<T> PerNameSet<T> {
    pub fn new(limit: usize) -> Self {
        PerNameSet {
            entries: Vec::new(),
            index: HashMap::default(),
            last: 0,
            limit,
        }
    }

    /// The `T` of these names, made by `make` the first time; None once `limit` sets are kept
    /// (the caller makes do without).
    pub fn get_or_insert_with(
        &mut self,
        names: NameSetRef<'_>,
        make: impl FnOnce() -> T,
    ) -> Option<&mut T> {
        if self
            .entries
            .get(self.last)
            .is_some_and(|(kept, _)| is(kept, names))
        {
            return Some(&mut self.entries[self.last].1);
        }
        let key: NameSet = (
            names.0.clone(),
            names.1.clone(),
            names.2.clone(),
            names.3.clone(),
        );
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None if self.entries.len() < self.limit => {
                self.entries.push((key.clone(), make()));
                self.index.insert(key, self.entries.len() - 1);
                self.entries.len() - 1
            }
            None => return None,
        };
        self.last = i;
        Some(&mut self.entries[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(model: &str) -> NameSet {
        ("chat".into(), "vllm".into(), Some(model.into()), None)
    }

    fn by_ref(n: &NameSet) -> NameSetRef<'_> {
        (&n.0, &n.1, &n.2, &n.3)
    }

    #[test]
    fn finds_a_set_by_its_text_and_keeps_at_most_the_limit() {
        let mut kept = PerNameSet::new(2);
        let a = names("a");
        let b = names("b");
        *kept.get_or_insert_with(by_ref(&a), || 0).unwrap() += 1;
        *kept.get_or_insert_with(by_ref(&b), || 10).unwrap() += 1;
        // Equal text in other objects is the same set, before and after another set was used.
        let a_again = names("a");
        assert_eq!(
            *kept.get_or_insert_with(by_ref(&a_again), || 99).unwrap(),
            1
        );
        assert_eq!(
            *kept.get_or_insert_with(by_ref(&a_again), || 99).unwrap(),
            1
        );
        assert_eq!(*kept.get_or_insert_with(by_ref(&b), || 99).unwrap(), 11);
        assert!(kept.get_or_insert_with(by_ref(&names("c")), || 0).is_none());
        let no_model: NameSet = ("chat".into(), "vllm".into(), None, None);
        assert!(kept.get_or_insert_with(by_ref(&no_model), || 0).is_none());
    }
}
