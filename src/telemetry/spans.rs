//! Builds finished spans (`SpanData`) from records: explicit ids, parents and wall-clock timestamps.
//!
//! Spans are reconstructed after the fact from vLLM's timestamps, so they are built as `SpanData`
//! directly rather than started and ended through a `Tracer` (which can neither take a pre-assigned
//! span id nor a past start time for its id). The configured sampler still decides, through the
//! SDK's own `ShouldSample` implementation.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, Context, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{
    Sampler, SamplingDecision, ShouldSample, SpanData, SpanEvents, SpanLinks,
};
use parking_lot::Mutex;

use super::ids;
use super::semconv as sc;
use crate::config::SamplerConfig;
use crate::record::{
    self, BatchHeader, NameSetRef, OperationRecord, ParentContext, PerNameSet, RequestRecord,
};

pub fn sampler_from_config(config: &SamplerConfig) -> Sampler {
    match *config {
        SamplerConfig::AlwaysOn => Sampler::AlwaysOn,
        SamplerConfig::AlwaysOff => Sampler::AlwaysOff,
        SamplerConfig::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
        SamplerConfig::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        SamplerConfig::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        SamplerConfig::ParentBasedTraceIdRatio(r) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
        }
    }
}

fn unix_nanos(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

pub fn span_name(operation: &str, model: Option<&str>) -> Cow<'static, str> {
    match model {
        Some(m) if !m.is_empty() => Cow::Owned(format!("{operation} {m}")),
        _ => Cow::Owned(operation.to_string()),
    }
}

fn error_status(error_type: Option<&str>) -> Status {
    match error_type {
        Some(e) => Status::error(e.to_string()),
        None => Status::Unset,
    }
}

/// Appends caller-supplied attributes keeping keys unique (OTLP requires it): the attributes the
/// core sets win, and a request's own attributes win over its batch's.
pub(crate) fn merge_attributes(
    attributes: &mut Vec<KeyValue>,
    batch: &[KeyValue],
    request: &[KeyValue],
) {
    let own = attributes.len();
    let taken =
        |attrs: &[KeyValue], key: &opentelemetry::Key| attrs.iter().any(|kv| &kv.key == key);
    for kv in batch {
        if !taken(&attributes[..own], &kv.key) && !taken(request, &kv.key) {
            attributes.push(kv.clone());
        }
    }
    for kv in request {
        if !taken(&attributes[..own], &kv.key) {
            attributes.push(kv.clone());
        }
    }
}

/// What the spans of one (operation, provider, request model, response model) share: their name
/// and those names as attributes, as static strings where they could be interned (`record/interned.rs`).
/// Otherwise the recorder thread would format the name and allocate the four values anew for
/// every operation span and every batch.
struct SharedNames {
    span_name: Cow<'static, str>,
    attributes: Vec<KeyValue>,
}

/// At most this many name sets are kept (a process has a handful); past it, they are made anew.
const MAX_SHARED_NAMES: usize = 64;

pub struct SpanFactory {
    sampler: Sampler,
    scope: InstrumentationScope,
    /// Only the recorder thread builds spans: these locks are never contended.
    shared_names: Mutex<PerNameSet<Arc<SharedNames>>>,
    last_others_keys: Mutex<Option<(Arc<[KeyValue]>, u64)>>,
}

impl SpanFactory {
    pub fn new(sampler: &SamplerConfig) -> Self {
        SpanFactory {
            sampler: sampler_from_config(sampler),
            scope: InstrumentationScope::builder(sc::INSTRUMENTATION_SCOPE)
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            shared_names: Mutex::new(PerNameSet::new(MAX_SHARED_NAMES)),
            last_others_keys: Mutex::new(None),
        }
    }

    fn parent_context(parent: Option<&ParentContext>) -> Option<Context> {
        parent.map(|p| {
            Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(p.trace_id),
                SpanId::from(p.span_id),
                TraceFlags::new(p.trace_flags),
                p.is_remote,
                TraceState::NONE,
            ))
        })
    }

    fn sampled(
        &self,
        parent: Option<&ParentContext>,
        trace_id: u128,
        name: &str,
        kind: &SpanKind,
    ) -> bool {
        self.sampled_in(Self::parent_context(parent).as_ref(), trace_id, name, kind)
    }

    fn sampled_in(
        &self,
        cx: Option<&Context>,
        trace_id: u128,
        name: &str,
        kind: &SpanKind,
    ) -> bool {
        let result = self
            .sampler
            .should_sample(cx, TraceId::from(trace_id), name, kind, &[], &[]);
        result.decision == SamplingDecision::RecordAndSample
    }

    /// The span name and the names as the first attributes of spans with these names.
    fn shared_names(&self, names: NameSetRef<'_>) -> Arc<SharedNames> {
        // Interned only when kept: past MAX_SHARED_NAMES sets (a server with many LoRA names),
        // new names must not use up the slots that attribute keys and finish reasons share.
        let make = |intern: bool| {
            let (operation, provider, request_model, response_model) = names;
            let value = |text: &str| match intern.then(|| record::interned(text)).flatten() {
                Some(kept) => Value::String(StringValue::from(kept)),
                None => Value::String(StringValue::from(Arc::<str>::from(text))),
            };
            let mut attributes = Vec::with_capacity(4);
            attributes.push(KeyValue::new(sc::OPERATION_NAME, value(operation)));
            attributes.push(KeyValue::new(sc::PROVIDER_NAME, value(provider)));
            if let Some(m) = request_model {
                attributes.push(KeyValue::new(sc::REQUEST_MODEL, value(m)));
            }
            if let Some(m) = response_model {
                attributes.push(KeyValue::new(sc::RESPONSE_MODEL, value(m)));
            }
            let span_name = span_name(operation, request_model.as_deref());
            let span_name = match intern.then(|| record::interned(&span_name)).flatten() {
                Some(kept) => Cow::Borrowed(kept),
                None => span_name,
            };
            Arc::new(SharedNames {
                span_name,
                attributes,
            })
        };
        let mut kept = self.shared_names.lock();
        match kept.get_or_insert_with(names, || make(true)) {
            Some(shared) => shared.clone(),
            None => {
                drop(kept);
                make(false)
            }
        }
    }

    /// Bit i: the key of `attributes[i]` is none of `REQUEST_SPAN_KEYS`. Kept for the last attribute
    /// set: batches of calls with the same sampling parameters share it (see `offline/pending_requests.rs`).
    fn others_keys(&self, attributes: &Arc<[KeyValue]>) -> u64 {
        let mut last = self.last_others_keys.lock();
        if let Some((kept, bits)) = last.as_ref() {
            if Arc::ptr_eq(kept, attributes) {
                return *bits;
            }
        }
        let bits = attributes
            .iter()
            .take(u64::BITS as usize)
            .enumerate()
            .filter(|(_, kv)| !sc::REQUEST_SPAN_KEYS.contains(&kv.key.as_str()))
            .fold(0, |bits, (i, _)| bits | (1 << i));
        *last = Some((attributes.clone(), bits));
        bits
    }

    /// Reserves the context of a span that will be recorded later (an operation whose requests
    /// must be parented to it before it ends): (trace id, span id, trace flags).
    pub fn new_span_context(
        &self,
        parent: Option<&ParentContext>,
        name: &str,
        kind: SpanKind,
    ) -> (u128, u64, u8) {
        let trace_id = parent.map(|p| p.trace_id).unwrap_or_else(ids::new_trace_id);
        let flags = if self.sampled(parent, trace_id, name, &kind) {
            TraceFlags::SAMPLED.to_u8()
        } else {
            0
        };
        (trace_id, ids::new_span_id(), flags)
    }

    pub fn operation_span(&self, op: &OperationRecord) -> Option<SpanData> {
        if op.trace_flags & TraceFlags::SAMPLED.to_u8() == 0 {
            return None;
        }
        let names = self.shared_names(op.names());
        let mut attributes = Vec::with_capacity(6 + op.attributes.len());
        attributes.extend(names.attributes.iter().cloned());
        if let Some(n) = op.request_count {
            attributes.push(KeyValue::new(sc::OPERATION_REQUEST_COUNT, n));
        }
        if let Some(e) = &op.error_type {
            attributes.push(KeyValue::new(sc::ERROR_TYPE, e.clone()));
        }
        merge_attributes(&mut attributes, &op.attributes, &[]);
        Some(SpanData {
            span_context: SpanContext::new(
                TraceId::from(op.trace_id),
                SpanId::from(op.span_id),
                TraceFlags::new(op.trace_flags),
                false,
                TraceState::NONE,
            ),
            parent_span_id: op
                .parent
                .map(|p| SpanId::from(p.span_id))
                .unwrap_or(SpanId::INVALID),
            parent_span_is_remote: op.parent.map(|p| p.is_remote).unwrap_or(false),
            span_kind: op.span_kind.clone(),
            name: names.span_name.clone(),
            start_time: unix_nanos(op.start_unix_nanos),
            end_time: unix_nanos(op.end_unix_nanos.max(op.start_unix_nanos)),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: error_status(op.error_type.as_deref()),
            instrumentation_scope: self.scope.clone(),
        })
    }

    /// What every request span of one batch shares, computed once per batch: the span name, the
    /// header's names as attributes (static strings where interned, so each span's copy is neither
    /// an allocation nor a shared reference count) and the header parent's context for the sampler.
    /// `parent`, where given, replaces the header's (a header shared by many calls, each batch
    /// under its own call's span: see `Pipeline::record_requests_under`).
    pub fn request_batch<'a>(
        &self,
        header: &'a BatchHeader,
        parent: Option<ParentContext>,
    ) -> RequestBatch<'a> {
        let names = self.shared_names(header.names());
        let parent = parent.or(header.parent);
        RequestBatch {
            header,
            names,
            parent,
            header_context: Self::parent_context(parent.as_ref()),
            others_keys: self.others_keys(&header.attributes),
        }
    }

    /// The span of one request, or `None` when the sampler drops it.
    #[cfg(test)]
    pub fn request_span(&self, header: &BatchHeader, request: &RequestRecord) -> Option<SpanData> {
        self.batch_request_span(&self.request_batch(header, None), request)
    }

    /// The span of one request of a prepared batch, or `None` when the sampler drops it.
    pub fn batch_request_span(
        &self,
        batch: &RequestBatch<'_>,
        request: &RequestRecord,
    ) -> Option<SpanData> {
        let header = batch.header;
        let parent = request.parent(batch.parent.as_ref());
        let trace_id = parent
            .map(|p| p.trace_id)
            .or(request.trace_id)
            .unwrap_or_else(ids::new_trace_id);
        let sampled = match &request.own_parent {
            None => self.sampled_in(
                batch.header_context.as_ref(),
                trace_id,
                &batch.names.span_name,
                &header.span_kind,
            ),
            Some(own) => self.sampled(
                own.as_ref(),
                trace_id,
                &batch.names.span_name,
                &header.span_kind,
            ),
        };
        if !sampled {
            return None;
        }
        let t = &request.timings;
        // The exact count: spans queued for export are the pipeline's largest memory, and a queue
        // that grows costs page faults.
        let present = [
            request.response_id.is_some(),
            request.finish_reasons.is_some(),
            request.input_tokens.is_some(),
            request.output_tokens.is_some(),
            request.cached_input_tokens.is_some(),
            t.time_to_first_token.is_some(),
            t.time_per_output_token.is_some(),
            t.queue.is_some(),
            t.prefill.is_some(),
            t.decode.is_some(),
            t.inference.is_some(),
            t.e2e.is_some(),
            request.error_type.is_some(),
        ];
        let mut attributes = Vec::with_capacity(
            batch.names.attributes.len()
                + present.iter().filter(|p| **p).count()
                + header.attributes.len()
                + request.attributes.len(),
        );
        attributes.extend(batch.names.attributes.iter().cloned());
        if let Some(id) = &request.response_id {
            // String::from, not to_string(): CompactString's Display goes through the formatter.
            attributes.push(KeyValue::new(sc::RESPONSE_ID, String::from(id.as_str())));
        }
        if let Some(reasons) = &request.finish_reasons {
            attributes.push(KeyValue::new(
                sc::RESPONSE_FINISH_REASONS,
                Value::Array(Array::String(reasons.to_vec())),
            ));
        }
        let counts = [
            (sc::USAGE_INPUT_TOKENS, request.input_tokens),
            (sc::USAGE_OUTPUT_TOKENS, request.output_tokens),
            (
                sc::USAGE_CACHE_READ_INPUT_TOKENS,
                request.cached_input_tokens,
            ),
        ];
        for (key, value) in counts {
            if let Some(v) = value {
                attributes.push(KeyValue::new(key, v));
            }
        }
        let timings = [
            (sc::LATENCY_TTFT, t.time_to_first_token),
            (sc::LATENCY_TPOT, t.time_per_output_token),
            (sc::LATENCY_QUEUE, t.queue),
            (sc::LATENCY_PREFILL, t.prefill),
            (sc::LATENCY_DECODE, t.decode),
            (sc::LATENCY_INFERENCE, t.inference),
            (sc::LATENCY_E2E, t.e2e),
        ];
        for (key, value) in timings {
            if let Some(v) = value {
                attributes.push(KeyValue::new(key, v));
            }
        }
        if let Some(e) = &request.error_type {
            attributes.push(KeyValue::new(sc::ERROR_TYPE, e.clone()));
        }
        if request.attributes.is_empty() && header.attributes.len() <= u64::BITS as usize {
            // As merge_attributes, comparing keys only where the core might have set the same.
            let own = attributes.len();
            for (i, kv) in header.attributes.iter().enumerate() {
                if batch.others_keys & (1 << i) != 0
                    || !attributes[..own].iter().any(|set| set.key == kv.key)
                {
                    attributes.push(kv.clone());
                }
            }
        } else {
            merge_attributes(&mut attributes, &header.attributes, &request.attributes);
        }
        Some(SpanData {
            span_context: SpanContext::new(
                TraceId::from(trace_id),
                SpanId::from(request.span_id.unwrap_or_else(ids::new_span_id)),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: parent
                .map(|p| SpanId::from(p.span_id))
                .unwrap_or(SpanId::INVALID),
            parent_span_is_remote: parent.map(|p| p.is_remote).unwrap_or(false),
            span_kind: header.span_kind.clone(),
            name: batch.names.span_name.clone(),
            start_time: unix_nanos(request.start_unix_nanos),
            end_time: unix_nanos(request.end_unix_nanos.max(request.start_unix_nanos)),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: error_status(request.error_type.as_deref()),
            instrumentation_scope: self.scope.clone(),
        })
    }
}

/// See `SpanFactory::request_batch`.
pub struct RequestBatch<'a> {
    header: &'a BatchHeader,
    names: Arc<SharedNames>,
    /// The parent of the batch's spans (the header's, or the one the batch came with).
    parent: Option<ParentContext>,
    header_context: Option<Context>,
    /// Bit i: the key of the header's attribute i is none the core sets on a request span, so a
    /// span keeps that attribute without comparing keys.
    others_keys: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Timings;

    fn header(parent: Option<ParentContext>) -> BatchHeader {
        BatchHeader {
            operation_name: "text_completion".into(),
            provider_name: "vllm".into(),
            request_model: Some("tiny".into()),
            response_model: Some("tiny".into()),
            parent,
            span_kind: SpanKind::Internal,
            attributes: vec![KeyValue::new("gen_ai.request.temperature", 0.0)].into(),
        }
    }

    fn request() -> RequestRecord {
        RequestRecord {
            response_id: Some("7".into()),
            span_id: None,
            start_unix_nanos: 1_700_000_000_000_000_000,
            end_unix_nanos: 1_700_000_000_250_000_000,
            input_tokens: Some(12),
            output_tokens: Some(32),
            cached_input_tokens: Some(0),
            finish_reasons: Some(["length".into(), "stop".into()].into_iter().collect()),
            error_type: None,
            timings: Timings {
                time_to_first_token: Some(0.04),
                e2e: Some(0.25),
                ..Default::default()
            },
            attributes: vec![KeyValue::new("gen_ai.request.seed", 3)],
            own_parent: None,
            trace_id: None,
        }
    }

    fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn names_past_the_kept_sets_are_not_interned() {
        // Past MAX_SHARED_NAMES name sets, a span's name and names are its own strings: the
        // interned slots shared with attribute keys and finish reasons are not used up.
        let factory = SpanFactory::new(&SamplerConfig::AlwaysOn);
        let span_of = |model: &str| {
            let mut h = header(None);
            h.request_model = Some(model.into());
            h.response_model = Some(model.into());
            factory.request_span(&h, &request()).unwrap()
        };
        for i in 0..MAX_SHARED_NAMES {
            let span = span_of(&format!("kept-model-{i}"));
            assert!(
                matches!(span.name, Cow::Borrowed(_)),
                "set {i} is kept and interned"
            );
        }
        let span = span_of("one-model-too-many");
        assert!(matches!(span.name, Cow::Owned(_)));
        assert_eq!(span.name, "text_completion one-model-too-many");
        assert_eq!(
            attr(&span, sc::REQUEST_MODEL),
            Some(&Value::from("one-model-too-many"))
        );
    }

    #[test]
    fn request_span_keys_lists_every_key_the_core_sets() {
        // A header attribute whose key is not in the list is kept without comparing keys: a key
        // the core sets that the list lacks would let a batch attribute duplicate it.
        let factory = SpanFactory::new(&SamplerConfig::AlwaysOn);
        let mut full = request();
        full.attributes.clear();
        full.error_type = Some("ValueError".into());
        full.timings = Timings {
            time_to_first_token: Some(0.01),
            time_per_output_token: Some(0.02),
            queue: Some(0.03),
            prefill: Some(0.04),
            decode: Some(0.05),
            inference: Some(0.06),
            e2e: Some(0.07),
        };
        let mut without_header_attributes = header(None);
        without_header_attributes.attributes = Arc::from([]);
        let span = factory
            .request_span(&without_header_attributes, &full)
            .unwrap();
        let mut keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
        keys.sort_unstable();
        let mut listed = sc::REQUEST_SPAN_KEYS.to_vec();
        listed.sort_unstable();
        assert_eq!(keys, listed);
    }

    #[test]
    fn a_request_own_parent_replaces_the_header_parent() {
        let factory = SpanFactory::new(&SamplerConfig::ParentBasedAlwaysOn);
        let header_parent = ParentContext {
            trace_id: 0xaaa,
            span_id: 0x1,
            trace_flags: 1,
            is_remote: false,
        };
        let own = ParentContext {
            trace_id: 0xbbb,
            span_id: 0x2,
            trace_flags: 1,
            is_remote: true,
        };
        let mut record = request();
        record.own_parent = Some(Some(own));
        let span = factory
            .request_span(&header(Some(header_parent)), &record)
            .unwrap();
        assert_eq!(span.span_context.trace_id(), TraceId::from(0xbbb_u128));
        assert_eq!(span.parent_span_id, SpanId::from(0x2_u64));
        assert!(span.parent_span_is_remote);
        // A root request whose span id was reserved keeps the reserved trace id.
        record.own_parent = Some(None);
        record.span_id = Some(0x77);
        record.trace_id = Some(0xccc);
        let span = factory
            .request_span(&header(Some(header_parent)), &record)
            .unwrap();
        assert_eq!(span.span_context.trace_id(), TraceId::from(0xccc_u128));
        assert_eq!(span.span_context.span_id(), SpanId::from(0x77_u64));
        assert_eq!(span.parent_span_id, SpanId::INVALID);
    }

    #[test]
    fn a_batch_parent_replaces_the_header_parent_and_yields_to_the_request_own() {
        // A shared header (no parent, or a stale one) with each call's span given beside it.
        let factory = SpanFactory::new(&SamplerConfig::ParentBasedAlwaysOn);
        let parent = |trace_id: u128, span_id: u64| ParentContext {
            trace_id,
            span_id,
            trace_flags: 1,
            is_remote: false,
        };
        let call = parent(0xaaa, 0x1);
        for shared in [header(None), header(Some(parent(0xddd, 0x9)))] {
            let batch = factory.request_batch(&shared, Some(call));
            let span = factory.batch_request_span(&batch, &request()).unwrap();
            assert_eq!(span.span_context.trace_id(), TraceId::from(0xaaa_u128));
            assert_eq!(span.parent_span_id, SpanId::from(0x1_u64));
            let mut record = request();
            record.own_parent = Some(Some(parent(0xbbb, 0x2)));
            let span = factory.batch_request_span(&batch, &record).unwrap();
            assert_eq!(span.span_context.trace_id(), TraceId::from(0xbbb_u128));
            assert_eq!(span.parent_span_id, SpanId::from(0x2_u64));
        }
        // Without one, the header's parent stands.
        let own_parent = header(Some(call));
        let batch = factory.request_batch(&own_parent, None);
        let span = factory.batch_request_span(&batch, &request()).unwrap();
        assert_eq!(span.parent_span_id, SpanId::from(0x1_u64));
    }

    #[test]
    fn request_span_has_parent_times_and_attributes() {
        let factory = SpanFactory::new(&SamplerConfig::ParentBasedAlwaysOn);
        let parent = ParentContext {
            trace_id: 0xabc,
            span_id: 0x123,
            trace_flags: 1,
            is_remote: false,
        };
        let span = factory
            .request_span(&header(Some(parent)), &request())
            .unwrap();
        assert_eq!(span.name, "text_completion tiny");
        assert_eq!(span.span_context.trace_id(), TraceId::from(0xabc_u128));
        assert_eq!(span.parent_span_id, SpanId::from(0x123_u64));
        assert!(!span.parent_span_is_remote);
        assert_eq!(
            span.start_time,
            UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000)
        );
        assert_eq!(
            span.end_time,
            UNIX_EPOCH + Duration::from_nanos(1_700_000_000_250_000_000)
        );
        assert_eq!(attr(&span, sc::USAGE_OUTPUT_TOKENS), Some(&Value::I64(32)));
        assert_eq!(attr(&span, sc::LATENCY_TTFT), Some(&Value::F64(0.04)));
        assert_eq!(
            attr(&span, sc::LATENCY_QUEUE),
            None,
            "absent timings stay absent"
        );
        assert_eq!(
            attr(&span, sc::RESPONSE_FINISH_REASONS),
            Some(&Value::Array(Array::String(vec![
                "length".into(),
                "stop".into()
            ])))
        );
        assert_eq!(
            attr(&span, "gen_ai.request.temperature"),
            Some(&Value::F64(0.0))
        );
        assert_eq!(attr(&span, "gen_ai.request.seed"), Some(&Value::I64(3)));
        assert_eq!(span.status, Status::Unset);
    }

    #[test]
    fn unsampled_parent_drops_children_and_errors_set_status() {
        let factory = SpanFactory::new(&SamplerConfig::ParentBasedAlwaysOn);
        let parent = ParentContext {
            trace_id: 1,
            span_id: 2,
            trace_flags: 0,
            is_remote: true,
        };
        assert!(factory
            .request_span(&header(Some(parent)), &request())
            .is_none());

        let mut failed = request();
        failed.error_type = Some("ValueError".into());
        let span = factory.request_span(&header(None), &failed).unwrap();
        assert_eq!(span.status, Status::error("ValueError"));
        assert_eq!(span.parent_span_id, SpanId::INVALID);
        assert_eq!(
            attr(&span, sc::ERROR_TYPE),
            Some(&Value::from("ValueError"))
        );
    }

    #[test]
    fn reserved_context_follows_the_sampler() {
        let on = SpanFactory::new(&SamplerConfig::ParentBasedAlwaysOn);
        let off = SpanFactory::new(&SamplerConfig::AlwaysOff);
        let parent = ParentContext {
            trace_id: 9,
            span_id: 8,
            trace_flags: 1,
            is_remote: true,
        };
        let (trace_id, span_id, flags) =
            on.new_span_context(Some(&parent), "chat m", SpanKind::Internal);
        assert_eq!((trace_id, flags), (9, 1));
        assert_ne!(span_id, 0);
        assert_eq!(off.new_span_context(None, "chat", SpanKind::Internal).2, 0);
    }
}
