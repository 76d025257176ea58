//! The offline API (`LLM.generate` and its kin): one instrumented LLM call from its begin to its
//! end. `calls.rs` is what the shim's generated replacements call (see
//! docs/design/generated-forwarding.md); `operation.rs` is the call in progress and
//! `current_operation.rs` keeps it per thread (see docs/design/current-operation.md);
//! `pending_requests.rs` holds the requests it registered, with their request headers
//! (`known_attributes.rs`, see docs/design/shared-request-header.md), until `output_reader.rs`
//! reads their finished outputs and records them; `clock.rs` is the shim's clock.

mod calls;
mod clock;
mod current_operation;
mod known_attributes;
mod operation;
mod output_reader;
mod pending_requests;

pub(crate) use calls::{OfflineCalls, OperationStart};
pub(crate) use current_operation::{
    current as current_operation, replace as replace_current_operation,
};
pub(crate) use operation::{reserve_span_context, Operation};
pub(crate) use output_reader::OutputReader;
pub(crate) use pending_requests::PendingRequests;
