//! The records the core works on: batches of finished requests (a shared header and one record per
//! request) and operation records, in the core's own form. `intake.rs` makes them from the shim's
//! tuples; the readers in `readers/` and `offline/` make them from vLLM's objects directly.

use std::sync::Arc;

use compact_str::CompactString;
use opentelemetry::trace::SpanKind;
use opentelemetry::{KeyValue, StringValue};
use smallvec::SmallVec;

/// The span context of a parent, as the Python API exposes it (`SpanContext` ints).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParentContext {
    pub trace_id: u128,
    pub span_id: u64,
    pub trace_flags: u8,
    pub is_remote: bool,
}

/// Per-request timings in seconds, as vLLM reports them; `None` when vLLM did not provide one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    pub time_to_first_token: Option<f64>,
    pub time_per_output_token: Option<f64>,
    pub queue: Option<f64>,
    pub prefill: Option<f64>,
    pub decode: Option<f64>,
    pub inference: Option<f64>,
    pub e2e: Option<f64>,
}

/// The requests of one batch: one is held inline (a call of one prompt allocates no list that the
/// recorder thread would free).
pub type RequestRecords = SmallVec<[RequestRecord; 1]>;

/// An operation, provider or model name: shared, since every header and record of a call repeats
/// them (a copy is a reference count, not an allocation).
pub type Name = Arc<str>;

/// The names of a batch header or an operation record, borrowed: (operation, provider, request
/// model, response model). What the recorder keys spans and metrics by (`name_sets.rs`).
pub type NameSetRef<'a> = (&'a Name, &'a Name, &'a Option<Name>, &'a Option<Name>);

/// A request's finish reasons, one per completion: inline for the usual one completion.
pub type FinishReasons = SmallVec<[StringValue; 1]>;

/// Shared by every request of one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchHeader {
    pub operation_name: Name,
    pub provider_name: Name,
    pub request_model: Option<Name>,
    pub response_model: Option<Name>,
    pub parent: Option<ParentContext>,
    pub span_kind: SpanKind,
    /// Span attributes common to all requests (for example sampling parameters shared by a batch);
    /// shared, as the request headers of many calls with the same parameters carry the same ones.
    pub attributes: Arc<[KeyValue]>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    /// Inline up to 24 bytes (offline request ids are short): the caller's thread allocates nothing
    /// for it; the recorder thread, which frees the record, would otherwise free what it allocated.
    pub response_id: Option<CompactString>,
    /// A span id the caller reserved with `new_span_context`, so others could parent to it already.
    pub span_id: Option<u64>,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cached_input_tokens: Option<i64>,
    pub finish_reasons: Option<FinishReasons>,
    pub error_type: Option<String>,
    pub timings: Timings,
    pub attributes: Vec<KeyValue>,
    /// This request's own parent, replacing the batch header's: `Some(None)` for a root span. Set by
    /// the serving path, where every request of an engine step has its own incoming trace context.
    pub own_parent: Option<Option<ParentContext>>,
    /// The trace id `new_span_context` returned with `span_id`, for a root span whose id was reserved.
    pub trace_id: Option<u128>,
}

impl RequestRecord {
    /// The parent of this request's span: its own when it has one, else its batch's.
    pub fn parent<'a>(
        &'a self,
        batch_parent: Option<&'a ParentContext>,
    ) -> Option<&'a ParentContext> {
        match &self.own_parent {
            Some(own) => own.as_ref(),
            None => batch_parent,
        }
    }

    /// The request's duration for `gen_ai.server.request.duration`: vLLM's own end-to-end latency
    /// when it gave one, else the span's duration (both are measured, neither is estimated).
    pub fn duration_seconds(&self) -> f64 {
        self.timings.e2e.unwrap_or_else(|| {
            self.end_unix_nanos.saturating_sub(self.start_unix_nanos) as f64 / 1e9
        })
    }
}

/// One call of the instrumented API (for example one `LLM.generate`), parent of its requests.
#[derive(Clone, Debug, PartialEq)]
pub struct OperationRecord {
    pub trace_id: u128,
    pub span_id: u64,
    pub trace_flags: u8,
    pub parent: Option<ParentContext>,
    pub operation_name: Name,
    pub provider_name: Name,
    pub request_model: Option<Name>,
    pub response_model: Option<Name>,
    pub span_kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub error_type: Option<String>,
    /// How many requests the operation submitted.
    pub request_count: Option<i64>,
    pub attributes: Vec<KeyValue>,
}

impl BatchHeader {
    /// The names its spans and metrics are keyed by (see `name_sets.rs`).
    pub fn names(&self) -> NameSetRef<'_> {
        (
            &self.operation_name,
            &self.provider_name,
            &self.request_model,
            &self.response_model,
        )
    }
}

impl OperationRecord {
    /// The names its span and metric are keyed by (see `name_sets.rs`).
    pub fn names(&self) -> NameSetRef<'_> {
        (
            &self.operation_name,
            &self.provider_name,
            &self.request_model,
            &self.response_model,
        )
    }
}
