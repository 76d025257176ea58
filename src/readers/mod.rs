//! Reading vLLM's objects from Rust by the attribute names the shim gives (see
//! docs/design/attribute-name-readers.md): which attribute holds what is the shim's knowledge
//! (`_vllm.py`), so nothing here names vLLM. One attribute by name and the clean-shape rule
//! (`attribute.rs`); a request's stats object to its timings (`request_stats.rs`); serving's
//! finished requests of an engine step (`finished_requests.rs`); an engine step's scheduler state
//! (`engine_state.rs`). The offline path's reader of an engine step's outputs is in `offline/`,
//! beside the registered requests it reads them for.

mod attribute;
mod engine_state;
mod finished_requests;
mod request_stats;

pub(crate) use attribute::{optional_count, Attribute, Field, Read, Unclean};
pub(crate) use engine_state::EngineStateRecorder;
pub(crate) use finished_requests::FinishedRequestReader;
pub(crate) use request_stats::{StatsFields, StatsReader};
