//! The per-process pipeline: the recorder thread that turns records into spans, metric points and
//! HDR samples, the SDK's span processor and metric reader that export them, and the lifecycle
//! around them (`recorder.rs`); the queue from the callers' threads to the recorder
//! (`work_queue.rs`, see docs/design/work-queue.md); and the one pipeline of the process, built
//! lazily and rebuilt after a fork (`state.rs`, see docs/design/fork-safety.md).
//!
//! Everything that records calls `pipeline::current()`, then hands its records to it.

mod process_identity;
mod recorder;
mod state;
mod work_queue;

pub(crate) use recorder::ResourceInput;
pub(crate) use state::{built, configure, current, forget_after_fork};
