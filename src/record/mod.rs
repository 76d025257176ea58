//! What the Python side hands the core, in the core's own form: the record types (`types.rs`),
//! their intake from the shim's positional tuples (`intake.rs`), the strings they repeat, kept
//! static or shared (`interned.rs`, see docs/design/interned-strings.md), and the per-name-set
//! lookup the recorder keys its instruments and span names by (`name_sets.rs`).
//!
//! The lowest layer of the core: it uses no other folder.

mod intake;
mod interned;
mod name_sets;
mod types;

pub(crate) use intake::{
    attributes, batch_header, nanos, operation_record, opt_string, parent, request_record,
    shim_layout, span_kind, BATCH_HEADER_LEN, OPERATION_RECORD_LEN, REQUEST_RECORD_LEN,
    REQUEST_RECORD_WITH_PARENT_LEN,
};
pub(crate) use interned::{interned, name as interned_name, string_value as interned_string_value};
pub(crate) use name_sets::PerNameSet;
pub(crate) use types::{
    BatchHeader, FinishReasons, Name, NameSetRef, OperationRecord, ParentContext, RequestRecord,
    RequestRecords, Timings,
};
