"""Spans as a collector receives them over OTLP/HTTP: names, ids, parents, flags, times, attributes, status."""

from __future__ import annotations

import pytest
from helpers import (
    MS,
    NO_TIMINGS,
    SPAN_KIND_CLIENT,
    SPAN_KIND_CONSUMER,
    SPAN_KIND_INTERNAL,
    SPAN_KIND_PRODUCER,
    SPAN_KIND_SERVER,
    T0,
    as_parent,
    batch_header,
    operation_record,
    request_record,
)
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.vllm import _core
from opentelemetry.instrumentation.vllm._context import current_parent
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from otlp_receivers import SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE, SPAN_FLAGS_CONTEXT_IS_REMOTE

SAMPLED = 0x01


def flush_spans(receiver, expected: int):
    assert _core.force_flush(5.0)
    spans = receiver.spans()
    assert len(spans) == expected, [s.name for s in spans]
    return spans


def test_request_span_carries_every_field_with_its_otlp_type(pipeline, http_receiver):
    assert pipeline(http_receiver)
    operation = _core.new_span_context(None, "text_completion", "tiny")
    header = batch_header(
        parent=as_parent(operation),
        span_kind=SPAN_KIND_CLIENT,
        attributes={
            "gen_ai.request.temperature": 0.5,
            "gen_ai.request.max_tokens": 32,
            "vllm.request.stream": False,
            "vllm.request.stop": ["\n", "END"],
            "vllm.request.stop_token_ids": [2, 7],
            "vllm.request.flags": [True, False],
            "vllm.request.weights": [0.25, 0.75],
            "ignored.none": None,
            "ignored.object": object(),
        },
    )
    record = request_record(
        response_id="cmpl-42",
        start_ns=T0 + 123,
        end_ns=T0 + 250 * MS + 456,
        finish_reasons=["length", "stop"],
        attributes={"gen_ai.request.seed": 3},
    )
    assert _core.record_requests(header, [record]) == 1
    (received,) = flush_spans(http_receiver, 1)
    span = received.span

    assert span.name == "text_completion tiny"
    assert span.kind == Span.SPAN_KIND_CLIENT
    assert received.trace_id == operation[0]
    assert received.parent_span_id == operation[1]
    assert received.span_id not in (0, operation[1])
    assert span.start_time_unix_nano == T0 + 123
    assert span.end_time_unix_nano == T0 + 250 * MS + 456
    assert span.flags & 0xFF == SAMPLED
    assert span.flags & SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE
    assert not span.flags & SPAN_FLAGS_CONTEXT_IS_REMOTE
    assert span.trace_state == ""
    assert span.status.code == Status.STATUS_CODE_UNSET
    assert span.status.message == ""
    assert list(span.events) == [] and list(span.links) == []
    assert span.dropped_attributes_count == 0
    assert received.typed_attributes == {
        "gen_ai.operation.name": ("string_value", "text_completion"),
        "gen_ai.provider.name": ("string_value", "vllm"),
        "gen_ai.request.model": ("string_value", "tiny"),
        "gen_ai.response.model": ("string_value", "tiny"),
        "gen_ai.response.id": ("string_value", "cmpl-42"),
        "gen_ai.response.finish_reasons": ("array_value", (("string_value", "length"), ("string_value", "stop"))),
        "gen_ai.usage.input_tokens": ("int_value", 12),
        "gen_ai.usage.output_tokens": ("int_value", 32),
        "gen_ai.usage.cache_read.input_tokens": ("int_value", 4),
        "gen_ai.latency.time_to_first_token": ("double_value", 0.04),
        "gen_ai.latency.time_per_output_token": ("double_value", 0.007),
        "gen_ai.latency.time_in_queue": ("double_value", 0.002),
        "gen_ai.latency.time_in_model_prefill": ("double_value", 0.03),
        "gen_ai.latency.time_in_model_decode": ("double_value", 0.2),
        "gen_ai.latency.time_in_model_inference": ("double_value", 0.23),
        "gen_ai.latency.e2e": ("double_value", 0.25),
        "gen_ai.request.temperature": ("double_value", 0.5),
        "gen_ai.request.max_tokens": ("int_value", 32),
        "vllm.request.stream": ("bool_value", False),
        "vllm.request.stop": ("array_value", (("string_value", "\n"), ("string_value", "END"))),
        "vllm.request.stop_token_ids": ("array_value", (("int_value", 2), ("int_value", 7))),
        "vllm.request.flags": ("array_value", (("bool_value", True), ("bool_value", False))),
        "vllm.request.weights": ("array_value", (("double_value", 0.25), ("double_value", 0.75))),
        "gen_ai.request.seed": ("int_value", 3),
    }


def test_operation_span_is_a_child_of_the_python_sdk_span_and_parents_the_requests(pipeline, http_receiver):
    assert pipeline(http_receiver)
    app_spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(app_spans))
    tracer = provider.get_tracer("app")

    with tracer.start_as_current_span("handle request") as app_span:
        parent = current_parent()
        operation = _core.new_span_context(parent, "text_completion", "tiny", SPAN_KIND_INTERNAL)
        header = batch_header(parent=as_parent(operation))
        records = [request_record(response_id=f"cmpl-{i}", start_ns=T0 + i * MS) for i in range(3)]
        assert _core.record_requests(header, records) == 3
        assert _core.record_operation(
            operation_record(operation, parent=parent, start_ns=T0 - 5 * MS, end_ns=T0 + 400 * MS, request_count=3)
        )
    app = app_span.get_span_context()
    assert parent == (app.trace_id, app.span_id, int(app.trace_flags), False)
    assert [s.name for s in app_spans.get_finished_spans()] == ["handle request"]

    spans = flush_spans(http_receiver, 4)
    (op,) = [s for s in spans if "vllm.operation.request_count" in s.attributes]
    requests = [s for s in spans if s is not op]

    assert operation[2] == SAMPLED
    assert op.name == "text_completion tiny"
    assert op.span.kind == Span.SPAN_KIND_INTERNAL
    assert op.trace_id == app.trace_id
    assert op.span_id == operation[1]
    assert op.parent_span_id == app.span_id
    assert op.span.flags == SAMPLED | SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE
    assert (op.span.start_time_unix_nano, op.span.end_time_unix_nano) == (T0 - 5 * MS, T0 + 400 * MS)
    assert op.typed_attributes == {
        "gen_ai.operation.name": ("string_value", "text_completion"),
        "gen_ai.provider.name": ("string_value", "vllm"),
        "gen_ai.request.model": ("string_value", "tiny"),
        "gen_ai.response.model": ("string_value", "tiny"),
        "vllm.operation.request_count": ("int_value", 3),
    }
    assert op.span.status.code == Status.STATUS_CODE_UNSET

    assert sorted(s.attributes["gen_ai.response.id"] for s in requests) == ["cmpl-0", "cmpl-1", "cmpl-2"]
    for span in requests:
        assert span.trace_id == app.trace_id
        assert span.parent_span_id == op.span_id
        assert span.span.start_time_unix_nano == T0 + int(span.attributes["gen_ai.response.id"][-1]) * MS
    assert len({s.span_id for s in spans}) == 4


def test_remote_parent_is_flagged_remote_and_keeps_its_trace(pipeline, http_receiver):
    assert pipeline(http_receiver)
    trace_id, span_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
    incoming = {"traceparent": f"00-{trace_id:032x}-{span_id:016x}-01"}
    token = otel_context.attach(TraceContextTextMapPropagator().extract(incoming))
    try:
        parent = current_parent()
    finally:
        otel_context.detach(token)
    assert parent == (trace_id, span_id, 1, True)

    operation = _core.new_span_context(parent, "chat", "tiny", SPAN_KIND_SERVER)
    assert operation[0] == trace_id
    assert _core.record_requests(batch_header(operation="chat", parent=as_parent(operation)), [request_record()]) == 1
    assert _core.record_operation(
        operation_record(operation, parent=parent, operation="chat", span_kind=SPAN_KIND_SERVER)
    )
    spans = flush_spans(http_receiver, 2)
    (op,) = [s for s in spans if s.span_id == operation[1]]
    (request,) = [s for s in spans if s is not op]

    assert op.name == "chat tiny"
    assert op.span.kind == Span.SPAN_KIND_SERVER
    assert op.parent_span_id == span_id
    assert op.span.flags == SAMPLED | SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE | SPAN_FLAGS_CONTEXT_IS_REMOTE
    assert request.trace_id == trace_id
    assert request.parent_span_id == op.span_id
    assert request.span.flags == SAMPLED | SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE


@pytest.mark.parametrize(
    ("kind", "otlp_kind"),
    [
        (SPAN_KIND_INTERNAL, Span.SPAN_KIND_INTERNAL),
        (SPAN_KIND_SERVER, Span.SPAN_KIND_SERVER),
        (SPAN_KIND_CLIENT, Span.SPAN_KIND_CLIENT),
        (SPAN_KIND_PRODUCER, Span.SPAN_KIND_PRODUCER),
        (SPAN_KIND_CONSUMER, Span.SPAN_KIND_CONSUMER),
        (99, Span.SPAN_KIND_INTERNAL),
    ],
)
def test_span_kind_of_the_python_api_maps_to_otlp(pipeline, http_receiver, kind, otlp_kind):
    assert pipeline(http_receiver)
    assert _core.record_requests(batch_header(span_kind=kind), [request_record()]) == 1
    (span,) = flush_spans(http_receiver, 1)
    assert span.span.kind == otlp_kind


def test_failed_request_has_error_status_and_error_type(pipeline, http_receiver):
    assert pipeline(http_receiver)
    records = [request_record(response_id="ok"), request_record(response_id="bad", error_type="ValueError")]
    assert _core.record_requests(batch_header(), records) == 2
    spans = {s.attributes["gen_ai.response.id"]: s for s in flush_spans(http_receiver, 2)}

    failed = spans["bad"]
    assert failed.span.status.code == Status.STATUS_CODE_ERROR
    assert failed.span.status.message == "ValueError"
    assert failed.typed_attributes["error.type"] == ("string_value", "ValueError")
    # The timings vLLM measured stay on the span even when the request failed.
    assert failed.attributes["gen_ai.latency.time_to_first_token"] == 0.04

    ok = spans["ok"]
    assert ok.span.status.code == Status.STATUS_CODE_UNSET
    assert ok.span.status.message == ""
    assert "error.type" not in ok.attributes


def test_failed_operation_has_error_status_and_error_type(pipeline, http_receiver):
    assert pipeline(http_receiver)
    operation = _core.new_span_context(None, "text_completion", "tiny")
    assert _core.record_operation(operation_record(operation, error_type="TimeoutError", request_count=None))
    (op,) = flush_spans(http_receiver, 1)
    assert op.span.status.code == Status.STATUS_CODE_ERROR
    assert op.span.status.message == "TimeoutError"
    assert op.attributes["error.type"] == "TimeoutError"
    assert "vllm.operation.request_count" not in op.attributes
    assert op.parent_span_id == 0
    assert op.span.parent_span_id == b""


def test_reserved_request_span_id_is_the_exported_one(pipeline, http_receiver):
    assert pipeline(http_receiver)
    operation = _core.new_span_context(None, "text_completion", "tiny")
    reserved = _core.new_span_context(as_parent(operation), "text_completion", "tiny")
    assert reserved[0] == operation[0] and reserved[1] != operation[1]
    record = request_record(span_id=reserved[1])
    assert _core.record_requests(batch_header(parent=as_parent(operation)), [record]) == 1
    (span,) = flush_spans(http_receiver, 1)
    assert span.span_id == reserved[1]
    assert span.trace_id == operation[0]


def test_span_name_and_attributes_without_a_model(pipeline, http_receiver):
    assert pipeline(http_receiver)
    header = batch_header(operation="embeddings", request_model=None, response_model=None)
    record = request_record(response_id=None, finish_reasons=None, input_tokens=None, output_tokens=None)
    assert _core.record_requests(header, [record]) == 1
    (span,) = flush_spans(http_receiver, 1)
    assert span.name == "embeddings"
    for absent in (
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.response.id",
        "gen_ai.response.finish_reasons",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
    ):
        assert absent not in span.attributes
    assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == 4


def test_absent_timings_are_absent_from_the_span(pipeline, http_receiver):
    assert pipeline(http_receiver)
    assert _core.record_requests(batch_header(), [request_record(**NO_TIMINGS)]) == 1
    (span,) = flush_spans(http_receiver, 1)
    assert not [k for k in span.attributes if k.startswith("gen_ai.latency.")]


def test_end_before_start_is_clamped_to_a_zero_length_span(pipeline, http_receiver):
    assert pipeline(http_receiver)
    assert _core.record_requests(batch_header(), [request_record(start_ns=T0, end_ns=T0 - 5 * MS)]) == 1
    (span,) = flush_spans(http_receiver, 1)
    assert span.span.start_time_unix_nano == T0
    assert span.span.end_time_unix_nano == T0


def test_requests_without_a_parent_are_roots_of_their_own_traces(pipeline, http_receiver):
    assert pipeline(http_receiver)
    # (0, 0, 0, False) is the Python API's INVALID_SPAN_CONTEXT: no parent either.
    assert _core.record_requests(batch_header(parent=None), [request_record()] * 2) == 2
    assert _core.record_requests(batch_header(parent=(0, 0, 0, False)), [request_record()]) == 1
    spans = flush_spans(http_receiver, 3)
    assert all(s.span.parent_span_id == b"" for s in spans)
    assert len({s.trace_id for s in spans}) == 3
    assert all(s.trace_id != 0 and s.span_id != 0 for s in spans)
