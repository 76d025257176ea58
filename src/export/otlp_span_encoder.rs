//! OTLP/HTTP protobuf encoding of span batches (see docs/design/otlp-span-encoder.md).
//!
//! Deliberately not the OTLP crate's encoder: it converts every span into owned prost structs (a
//! String per attribute key and string value, a Vec per id) and then walks them twice (length, then
//! bytes), which with the allocations and frees was most of the span exporter thread's CPU. This
//! writes the same `ExportTraceServiceRequest` bytes straight from the `SpanData` (byte for byte
//! what prost writes: fields in tag order as prost writes them, proto3 defaults omitted, oneof
//! members always written; a test compares the two). The OTLP crate still sends the request
//! (endpoint, headers, retries, throttling, timeout, partial success): `export` hands it an empty
//! batch and the prepared body, which the exporters' HTTP client puts in place of the crate's body.
//! A batch this encoder does not cover (events, links, a value type it does not know) goes the
//! crate's way unchanged.

use std::sync::Arc;

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, Value};
use opentelemetry_http::Bytes;
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;
use parking_lot::Mutex;

/// The OTLP crate's default limit on a request body (`DEFAULT_MAX_REQUEST_BODY_SIZE`).
const MAX_REQUEST_BODY_SIZE: usize = 64 * 1024 * 1024;

/// Where `export` leaves a prepared body for the HTTP client of the same exporter: the encoded
/// request, and whether it has been compressed yet.
#[derive(Debug, Default)]
pub struct PreparedBody(pub(crate) Mutex<Option<(Bytes, bool)>>);

impl PreparedBody {
    /// The prepared body for `request`, compressed as the crate chose for it (its
    /// Content-Encoding: the crate decides compression, from the configuration and, for want of a
    /// way to say "none", the environment), or `None` when nothing was prepared.
    pub(crate) fn body_for(
        &self,
        request: &opentelemetry_http::Request<Bytes>,
    ) -> Result<Option<Bytes>, opentelemetry_http::HttpError> {
        let mut slot = self.0.lock();
        let Some((body, compressed)) = slot.as_mut() else {
            return Ok(None);
        };
        match request.headers().get(http::header::CONTENT_ENCODING) {
            None => {}
            Some(e) if e.as_bytes().eq_ignore_ascii_case(b"gzip") && *compressed => {}
            Some(e) if e.as_bytes().eq_ignore_ascii_case(b"gzip") => {
                use std::io::Write;
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(body)?;
                *body = Bytes::from(encoder.finish()?);
                *compressed = true;
            }
            Some(other) => {
                return Err(format!("unsupported Content-Encoding {other:?}").into());
            }
        }
        Ok(Some(body.clone()))
    }
}

#[derive(Debug)]
pub struct ProtoSpanEncoder {
    pub(crate) body: Arc<PreparedBody>,
    /// The encoded `Resource` message and the resource's schema URL.
    resource: Vec<u8>,
    resource_schema_url: String,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn put_bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A string or bytes field, omitted when empty (proto3 default).
fn put_nonempty(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_bytes_field(out, field, bytes);
    }
}

fn put_fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_tag(out, field, 1);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_tag(out, field, 0);
        put_varint(out, v);
    }
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Length of a length-delimited field (tag below 16) holding `len` bytes.
fn delimited_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Length of the `AnyValue` message of `value`; `None` for a type not covered.
fn any_value_len(value: &Value) -> Option<usize> {
    Some(match value {
        Value::Bool(_) => 2,
        Value::I64(i) => 1 + varint_len(*i as u64),
        Value::F64(_) => 9,
        Value::String(s) => delimited_len(s.as_str().len()),
        Value::Array(array) => delimited_len(array_value_len(array)?),
        _ => return None,
    })
}

/// Length of the `ArrayValue` message of `array`.
fn array_value_len(array: &Array) -> Option<usize> {
    Some(match array {
        Array::Bool(v) => v.len() * delimited_len(2),
        Array::I64(v) => v
            .iter()
            .map(|i| delimited_len(1 + varint_len(*i as u64)))
            .sum(),
        Array::F64(v) => v.len() * delimited_len(9),
        Array::String(v) => v
            .iter()
            .map(|s| delimited_len(delimited_len(s.as_str().len())))
            .sum(),
        _ => return None,
    })
}

/// The members of an `AnyValue` (its length is known to be `any_value_len`).
fn put_any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(b) => {
            put_tag(out, 2, 0);
            put_varint(out, u64::from(*b));
        }
        Value::I64(i) => {
            put_tag(out, 3, 0);
            put_varint(out, *i as u64);
        }
        Value::F64(f) => {
            put_tag(out, 4, 1);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::String(s) => put_bytes_field(out, 1, s.as_str().as_bytes()),
        Value::Array(array) => {
            put_tag(out, 5, 2);
            put_varint(out, array_value_len(array).unwrap_or(0) as u64);
            let item = |out: &mut Vec<u8>, v: Value| {
                put_tag(out, 1, 2);
                put_varint(out, any_value_len(&v).unwrap_or(0) as u64);
                put_any_value(out, &v);
            };
            match array {
                Array::Bool(v) => v.iter().for_each(|x| item(out, Value::Bool(*x))),
                Array::I64(v) => v.iter().for_each(|x| item(out, Value::I64(*x))),
                Array::F64(v) => v.iter().for_each(|x| item(out, Value::F64(*x))),
                Array::String(v) => v.iter().for_each(|x| {
                    put_tag(out, 1, 2);
                    put_varint(out, delimited_len(x.as_str().len()) as u64);
                    put_bytes_field(out, 1, x.as_str().as_bytes());
                }),
                _ => {}
            }
        }
        _ => {}
    }
}

/// Repeated `KeyValue` attributes at `field`; false (with `out` partly written) when a value's
/// type is not covered.
fn put_attributes<'a>(
    out: &mut Vec<u8>,
    field: u32,
    attributes: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> bool {
    for (key, value) in attributes {
        let Some(value_len) = any_value_len(value) else {
            return false;
        };
        let key_len = if key.is_empty() {
            0
        } else {
            delimited_len(key.len())
        };
        put_tag(out, field, 2);
        put_varint(out, (key_len + delimited_len(value_len)) as u64);
        put_nonempty(out, 1, key.as_bytes());
        put_tag(out, 2, 2);
        put_varint(out, value_len as u64);
        put_any_value(out, value);
    }
    true
}

fn unix_nanos_of(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

fn put_scope(out: &mut Vec<u8>, scope: &InstrumentationScope) -> bool {
    let mut inner = Vec::new();
    put_nonempty(&mut inner, 1, scope.name().as_bytes());
    put_nonempty(
        &mut inner,
        2,
        scope.version().unwrap_or_default().as_bytes(),
    );
    if !put_attributes(
        &mut inner,
        3,
        scope.attributes().map(|kv| (kv.key.as_str(), &kv.value)),
    ) {
        return false;
    }
    put_bytes_field(out, 1, &inner);
    true
}

/// One `Span` message (without its tag and length); false for a span this encoder does not cover.
fn put_span(out: &mut Vec<u8>, span: &SpanData) -> bool {
    if !(span.events.is_empty() && span.links.is_empty()) {
        return false;
    }
    let cx = &span.span_context;
    put_bytes_field(out, 1, &cx.trace_id().to_bytes());
    put_bytes_field(out, 2, &cx.span_id().to_bytes());
    put_nonempty(out, 3, cx.trace_state().header().as_bytes());
    if span.parent_span_id != SpanId::INVALID {
        put_bytes_field(out, 4, &span.parent_span_id.to_bytes());
    }
    put_nonempty(out, 5, span.name.as_bytes());
    let kind = match span.span_kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    put_uint(out, 6, kind);
    put_fixed64(out, 7, unix_nanos_of(span.start_time));
    put_fixed64(out, 8, unix_nanos_of(span.end_time));
    if !put_attributes(
        out,
        9,
        span.attributes
            .iter()
            .map(|kv| (kv.key.as_str(), &kv.value)),
    ) {
        return false;
    }
    put_uint(out, 10, u64::from(span.dropped_attributes_count));
    put_uint(out, 12, u64::from(span.events.dropped_count));
    put_uint(out, 14, u64::from(span.links.dropped_count));
    // Status { message = 2, code = 3 }: always present, its members only when not default.
    let (message, code): (&str, u64) = match &span.status {
        Status::Error { description } => (description, 2),
        Status::Ok => ("", 1),
        Status::Unset => ("", 0),
    };
    let message_len = if message.is_empty() {
        0
    } else {
        delimited_len(message.len())
    };
    put_tag(out, 15, 2);
    put_varint(out, (message_len + if code != 0 { 2 } else { 0 }) as u64);
    put_nonempty(out, 2, message.as_bytes());
    put_uint(out, 3, code);
    // SpanFlags (tag 16, written last: prost writes fields in tag order): the trace flags, plus "has is_remote" and "is_remote" of the parent.
    let flags = u32::from(cx.trace_flags().to_u8())
        | 0x100
        | if span.parent_span_is_remote { 0x200 } else { 0 };
    put_tag(out, 16, 5);
    out.extend_from_slice(&flags.to_le_bytes());
    true
}

impl ProtoSpanEncoder {
    pub(crate) fn new(body: Arc<PreparedBody>) -> Self {
        let mut encoder = ProtoSpanEncoder {
            body,
            resource: Vec::new(),
            resource_schema_url: String::new(),
        };
        encoder.set_resource(&Resource::builder_empty().build());
        encoder
    }

    pub(crate) fn set_resource(&mut self, resource: &Resource) {
        let mut out = Vec::new();
        // The same attributes in the same order as the OTLP crate's `resource_attributes`.
        put_attributes(&mut out, 1, resource.iter().map(|(k, v)| (k.as_str(), v)));
        self.resource = out;
        self.resource_schema_url = resource.schema_url().unwrap_or_default().to_string();
    }

    /// The `ExportTraceServiceRequest` of `batch`, or `None` when a span is not covered.
    pub fn encode(&self, batch: &[SpanData]) -> Option<Bytes> {
        let Some(first) = batch.first() else {
            // No spans: the resource alone (the crate writes no ScopeSpans either).
            let mut resource_spans = Vec::new();
            put_bytes_field(&mut resource_spans, 1, &self.resource);
            put_nonempty(&mut resource_spans, 3, self.resource_schema_url.as_bytes());
            let mut body = Vec::new();
            put_bytes_field(&mut body, 1, &resource_spans);
            return Some(body.into());
        };
        let scope = &first.instrumentation_scope;
        if batch.iter().any(|s| &s.instrumentation_scope != scope) {
            return self.encode_scopes(batch).map(Bytes::from);
        }
        // One scope (the core's own): the spans are written once, into the body itself, behind a
        // gap that then takes the enclosing messages' heads, whose lengths are known only then.
        // No second buffer, no copy of the spans (each buffer of this size is fresh memory from
        // the kernel, whose page faults cost more than the encoding).
        let mut resource = Vec::with_capacity(self.resource.len() + 4);
        put_bytes_field(&mut resource, 1, &self.resource);
        let mut scope_head = Vec::new();
        if !put_scope(&mut scope_head, scope) {
            return None;
        }
        let gap = resource.len() + scope_head.len() + 2 * (1 + 10);
        let mut scratch = Vec::with_capacity(1024);
        if !put_span(&mut scratch, first) {
            return None;
        }
        let mut body = Vec::with_capacity(gap + (scratch.len() + 8) * batch.len() * 9 / 8 + 64);
        body.resize(gap, 0);
        put_bytes_field(&mut body, 2, &scratch);
        for span in &batch[1..] {
            scratch.clear();
            if !put_span(&mut scratch, span) {
                return None;
            }
            put_bytes_field(&mut body, 2, &scratch);
        }
        let spans_len = body.len() - gap;
        let scope_tail_start = body.len();
        put_nonempty(
            &mut body,
            3,
            scope.schema_url().unwrap_or_default().as_bytes(),
        );
        let scope_spans_len = scope_head.len() + spans_len + (body.len() - scope_tail_start);
        let resource_tail_start = body.len();
        put_nonempty(&mut body, 3, self.resource_schema_url.as_bytes());
        let resource_spans_len = resource.len()
            + 1
            + varint_len(scope_spans_len as u64)
            + scope_spans_len
            + (body.len() - resource_tail_start);
        let mut head = Vec::with_capacity(gap);
        put_tag(&mut head, 1, 2);
        put_varint(&mut head, resource_spans_len as u64);
        head.extend_from_slice(&resource);
        put_tag(&mut head, 2, 2);
        put_varint(&mut head, scope_spans_len as u64);
        head.extend_from_slice(&scope_head);
        let start = gap - head.len();
        body[start..gap].copy_from_slice(&head);
        Some(Bytes::from(body).slice(start..))
    }

    /// `encode` for spans of several scopes: grouped by scope in order of first appearance, as the
    /// OTLP crate groups them.
    fn encode_scopes(&self, batch: &[SpanData]) -> Option<Vec<u8>> {
        let mut scopes: Vec<(&InstrumentationScope, Vec<u8>)> = Vec::new();
        let mut scratch = Vec::with_capacity(1024);
        for span in batch {
            let i = match scopes
                .iter()
                .position(|(s, _)| *s == &span.instrumentation_scope)
            {
                Some(i) => i,
                None => {
                    scopes.push((&span.instrumentation_scope, Vec::new()));
                    scopes.len() - 1
                }
            };
            scratch.clear();
            if !put_span(&mut scratch, span) {
                return None;
            }
            put_bytes_field(&mut scopes[i].1, 2, &scratch);
        }
        let mut resource_spans = Vec::new();
        put_bytes_field(&mut resource_spans, 1, &self.resource);
        for (scope, spans) in &scopes {
            let mut head = Vec::new();
            if !put_scope(&mut head, scope) {
                return None;
            }
            let mut tail = Vec::new();
            put_nonempty(
                &mut tail,
                3,
                scope.schema_url().unwrap_or_default().as_bytes(),
            );
            put_tag(&mut resource_spans, 2, 2);
            put_varint(
                &mut resource_spans,
                (head.len() + spans.len() + tail.len()) as u64,
            );
            resource_spans.extend_from_slice(&head);
            resource_spans.extend_from_slice(spans);
            resource_spans.extend_from_slice(&tail);
        }
        put_nonempty(&mut resource_spans, 3, self.resource_schema_url.as_bytes());
        let mut body = Vec::with_capacity(resource_spans.len() + 8);
        put_bytes_field(&mut body, 1, &resource_spans);
        Some(body)
    }

    /// Encodes `batch` and leaves it for the client; false when the crate must encode this batch
    /// itself.
    pub(crate) fn prepare(&self, batch: &[SpanData]) -> bool {
        // Over the limit, the crate refuses the batch with its own error: it gets the batch.
        match self.encode(batch) {
            Some(body) if body.len() <= MAX_REQUEST_BODY_SIZE => {
                *self.body.0.lock() = Some((body, false));
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, TraceFlags, TraceId, TraceState};
    use opentelemetry::KeyValue;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message;
    use std::borrow::Cow;
    use std::time::{Duration, UNIX_EPOCH};

    fn span(i: u64, scope: &InstrumentationScope) -> SpanData {
        let kinds = [
            SpanKind::Internal,
            SpanKind::Server,
            SpanKind::Client,
            SpanKind::Producer,
            SpanKind::Consumer,
        ];
        let statuses = [
            Status::Unset,
            Status::Ok,
            Status::error("ValueError"),
            Status::error(""),
        ];
        let state = if i.is_multiple_of(3) {
            TraceState::from_key_value([("vendor", "x1")]).unwrap()
        } else {
            TraceState::NONE
        };
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(0x0123_4567_89ab_cdef_u128 << 64 | u128::from(i + 1)),
                SpanId::from(i * 0x1_0000_0001 + 7),
                TraceFlags::new((i % 2) as u8),
                false,
                state,
            ),
            parent_span_id: if i.is_multiple_of(4) {
                SpanId::INVALID
            } else {
                SpanId::from(i + 99)
            },
            parent_span_is_remote: i % 5 == 1,
            span_kind: kinds[i as usize % kinds.len()].clone(),
            name: if i % 7 == 6 {
                Cow::Borrowed("")
            } else {
                Cow::Owned(format!("text_completion model-{i}"))
            },
            start_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + i),
            end_time: if i % 6 == 5 {
                UNIX_EPOCH
            } else {
                UNIX_EPOCH + Duration::from_nanos(1_700_000_000_250_000_000 + i * 1000)
            },
            attributes: vec![
                KeyValue::new("gen_ai.operation.name", "text_completion"),
                KeyValue::new("gen_ai.request.model", Arc::<str>::from("m")),
                KeyValue::new("gen_ai.response.id", format!("{i}")),
                KeyValue::new("empty", ""),
                KeyValue::new("n", i as i64 - 3),
                KeyValue::new("zero", 0_i64),
                KeyValue::new("min", i64::MIN),
                KeyValue::new("f", 0.25 * i as f64),
                KeyValue::new("fzero", 0.0),
                KeyValue::new("nan", f64::NAN),
                KeyValue::new("b", i.is_multiple_of(2)),
                KeyValue::new("bf", false),
                KeyValue::new(
                    "reasons",
                    Value::Array(Array::String(vec!["length".into(), "".into()])),
                ),
                KeyValue::new("ints", Value::Array(Array::I64(vec![0, -1, 300]))),
                KeyValue::new("floats", Value::Array(Array::F64(vec![1.5, 0.0]))),
                KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
                KeyValue::new("none", Value::Array(Array::String(vec![]))),
                KeyValue::new("long", "x".repeat(300 + i as usize)),
            ],
            dropped_attributes_count: (i % 3) as u32,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: statuses[i as usize % statuses.len()].clone(),
            instrumentation_scope: scope.clone(),
        }
    }

    fn prost_body(batch: Vec<SpanData>, resource: &Resource) -> Vec<u8> {
        let resource = ResourceAttributesWithSchema::from(resource);
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &resource),
        }
        .encode_to_vec()
    }

    #[test]
    fn encodes_the_same_bytes_as_the_otlp_crate() {
        let ours = InstrumentationScope::builder("opentelemetry.instrumentation.vllm")
            .with_version("0.1.0")
            .build();
        let other = InstrumentationScope::builder("other")
            .with_schema_url("https://opentelemetry.io/schemas/1.0.0")
            .with_attributes([KeyValue::new("scope.attr", 1_i64)])
            .build();
        let resources = [
            Resource::builder_empty().build(),
            Resource::builder_empty()
                .with_attributes([
                    KeyValue::new("service.name", "svc"),
                    KeyValue::new("telemetry.sdk.language", "rust"),
                    KeyValue::new("host.count", 3_i64),
                ])
                .with_schema_url(
                    [KeyValue::new("a", "b")],
                    "https://opentelemetry.io/schemas/1.2.0",
                )
                .build(),
        ];
        for resource in &resources {
            let mut encoder = ProtoSpanEncoder::new(Arc::default());
            encoder.set_resource(resource);
            for n in [0_u64, 1, 2, 17, 600] {
                let batch: Vec<SpanData> = (0..n)
                    .map(|i| span(i, if i % 5 == 3 { &other } else { &ours }))
                    .collect();
                let expected = prost_body(batch.clone(), resource);
                assert_eq!(encoder.encode(&batch).unwrap(), expected, "{n} spans");
            }
            // One scope (the single-buffer path), also one with a schema URL and attributes.
            for scope in [&ours, &other] {
                for n in [1_u64, 2, 17, 600] {
                    let batch: Vec<SpanData> = (0..n).map(|i| span(i, scope)).collect();
                    let expected = prost_body(batch.clone(), resource);
                    assert_eq!(encoder.encode(&batch).unwrap(), expected, "{n} spans");
                }
            }
        }
    }

    #[test]
    fn spans_with_events_or_links_are_left_to_the_otlp_crate() {
        let scope = InstrumentationScope::builder("s").build();
        let mut with_event = span(1, &scope);
        with_event
            .events
            .events
            .push(opentelemetry::trace::Event::new("e", UNIX_EPOCH, vec![], 0));
        assert!(ProtoSpanEncoder::new(Arc::default())
            .encode(&[span(0, &scope), with_event])
            .is_none());
    }

    #[test]
    fn the_prepared_body_is_compressed_as_the_request_says() {
        let encoder = ProtoSpanEncoder::new(Arc::default());
        let scope = InstrumentationScope::builder("s").build();
        assert!(encoder.prepare(&[span(0, &scope)]));
        let expected = prost_body(vec![span(0, &scope)], &Resource::builder_empty().build());
        let request = |encoding: Option<&str>| {
            let mut b = http::Request::builder();
            if let Some(e) = encoding {
                b = b.header("Content-Encoding", e);
            }
            b.body(Bytes::new()).unwrap()
        };
        let plain = encoder.body.body_for(&request(None)).unwrap().unwrap();
        assert_eq!(plain.as_ref(), &expected[..]);
        for _ in 0..2 {
            let gzipped = encoder
                .body
                .body_for(&request(Some("gzip")))
                .unwrap()
                .unwrap();
            let mut unzipped = Vec::new();
            use std::io::Read;
            flate2::read::GzDecoder::new(&gzipped[..])
                .read_to_end(&mut unzipped)
                .unwrap();
            assert_eq!(unzipped, expected);
        }
        assert!(encoder.body.body_for(&request(Some("zstd"))).is_err());
        encoder.body.0.lock().take();
        assert!(encoder.body.body_for(&request(None)).unwrap().is_none());
    }
}
