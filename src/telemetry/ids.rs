//! Trace and span id generation that stays unique across `fork`.
//!
//! A thread-local generator copied into a forked child would hand out the parent's next ids, so
//! the generator remembers the fork generation it was seeded in (`fork.rs`) and reseeds from the
//! OS when that changes. (The SDK's `RandomIdGenerator` draws from `rand`'s thread RNG, which gives
//! no such guarantee.) See docs/design/fork-safety.md.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;

thread_local! {
    static GENERATOR: RefCell<(u64, SmallRng)> =
        RefCell::new((crate::fork::generation(), SmallRng::from_os_rng()));
}

fn with_rng<T>(f: impl FnOnce(&mut SmallRng) -> T) -> T {
    GENERATOR.with(|cell| {
        let mut state = cell.borrow_mut();
        let generation = crate::fork::generation();
        if state.0 != generation {
            *state = (generation, SmallRng::from_os_rng());
        }
        f(&mut state.1)
    })
}

/// A random non-zero trace id.
pub fn new_trace_id() -> u128 {
    with_rng(|rng| loop {
        let id: u128 = rng.random();
        if id != 0 {
            return id;
        }
    })
}

/// A random non-zero span id.
pub fn new_span_id() -> u64 {
    with_rng(|rng| loop {
        let id: u64 = rng.random();
        if id != 0 {
            return id;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_non_zero_and_distinct() {
        let spans: HashSet<u64> = (0..10_000).map(|_| new_span_id()).collect();
        assert_eq!(spans.len(), 10_000);
        assert!(!spans.contains(&0));
        assert_ne!(new_trace_id(), new_trace_id());
    }
}
