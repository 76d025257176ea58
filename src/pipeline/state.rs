//! The process-wide pipeline: built lazily, rebuilt in a forked child, replaced after shutdown.
//!
//! Every entry point compares the fork generation the pipeline was built in with the current one
//! (`fork.rs`), so a fork that bypassed Python's at-fork handlers is caught too. A parent's
//! pipeline is leaked in the child on purpose: dropping it would join threads that do not exist
//! there. See docs/design/fork-safety.md.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

use super::recorder::{Pipeline, ResourceInput};
use crate::config::Config;
use crate::diagnostics;
use crate::export::Bridges;

struct State {
    pipeline: Option<Arc<Pipeline>>,
    /// What the last `configure` asked for, to rebuild from in a forked child.
    overrides: HashMap<String, String>,
    resource: ResourceInput,
    /// The Python callables of bridged signals; a forked child's pipeline delivers to them too
    /// (the objects were copied with the process).
    bridges: Bridges,
    /// Built (or found disabled) in this fork generation (this process).
    resolved_for_generation: Option<u64>,
}

// Only taken by Python-facing entry points while they hold the GIL, and never across a wait, so
// `os.fork()` (which holds the GIL) cannot copy it in a locked state.
static STATE: LazyLock<Mutex<State>> = LazyLock::new(|| {
    Mutex::new(State {
        pipeline: None,
        overrides: HashMap::new(),
        resource: ResourceInput::default(),
        bridges: Bridges::default(),
        resolved_for_generation: None,
    })
});

fn build(state: &mut State) {
    // A new pipeline reports its own problems, whatever an earlier one already reported.
    diagnostics::reset_warnings();
    let config = Config::from_overrides_and_env(&state.overrides);
    state.resolved_for_generation = Some(crate::fork::generation());
    state.pipeline = if config.disabled {
        None
    } else {
        Some(Arc::new(Pipeline::start(
            &config,
            &state.resource,
            &state.bridges,
        )))
    };
}

fn leak_if_inherited(state: &mut State) {
    let generation = crate::fork::generation();
    if state
        .resolved_for_generation
        .is_some_and(|g| g != generation)
    {
        if let Some(inherited) = state.pipeline.take() {
            std::mem::forget(inherited);
        }
        state.resolved_for_generation = None;
        diagnostics::reset_warnings();
    }
}

/// Applies a configuration. A running pipeline is kept: the pipeline is built once per process.
pub fn configure(
    overrides: HashMap<String, String>,
    resource: ResourceInput,
    bridges: Bridges,
) -> bool {
    let mut state = STATE.lock();
    leak_if_inherited(&mut state);
    let running = state.pipeline.as_ref().is_some_and(|p| !p.is_shut_down());
    if !running {
        state.overrides = overrides;
        state.resource = resource;
        state.bridges = bridges;
        build(&mut state);
    }
    state.pipeline.as_ref().is_some_and(|p| !p.is_shut_down())
}

/// The pipeline of this process, built from the last configuration (or the environment) if needed;
/// `None` when telemetry is disabled.
pub fn current() -> Option<Arc<Pipeline>> {
    let mut state = STATE.lock();
    leak_if_inherited(&mut state);
    if state.resolved_for_generation.is_none() {
        build(&mut state);
    }
    state.pipeline.clone()
}

/// The pipeline of this process if one was built here; never builds one (for queries and
/// shutdown, which have nothing to do without a pipeline).
pub fn built() -> Option<Arc<Pipeline>> {
    let mut state = STATE.lock();
    leak_if_inherited(&mut state);
    state.pipeline.clone()
}

pub fn forget_after_fork() {
    let mut state = STATE.lock();
    if let Some(inherited) = state.pipeline.take() {
        std::mem::forget(inherited);
    }
    state.resolved_for_generation = None;
    drop(state);
    diagnostics::reset_warnings();
}
