"""``_core.Operation``, the core's object for one instrumented LLM call, on its own: the operation
span it records as a collector receives it, the request count it keeps, and the fields the shim's
slow paths read and set. End to end it runs in every offline test (tests/test_offline_fake.py)."""

from __future__ import annotations

from helpers import MS, T0, as_parent, batch_header, request_record
from opentelemetry.instrumentation.vllm import _core
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

SAMPLED = 0x01


def operation(parent=None, records_requests=True, name="text_completion", model="tiny", start_ns=T0):
    return _core.Operation(name, "vllm", model, parent, records_requests, False, start_ns)


def test_the_operation_span_carries_the_calls_fields_and_parents_its_requests(pipeline, http_receiver):
    assert pipeline(http_receiver)
    parent = (0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, SAMPLED, False)
    call = operation(parent)
    trace_id, span_id, flags = call.context
    assert (trace_id, flags) == (parent[0], SAMPLED)
    assert call.as_parent() == (trace_id, span_id, flags, False)
    # The shim's slow path records requests under it with the header it builds from as_parent().
    header = batch_header(parent=call.as_parent())
    assert _core.record_requests(header, [request_record(response_id="cmpl-1", start_ns=T0 + MS)]) == 1
    call.request_count += 1
    assert call.end(T0 + 400 * MS, None)

    assert _core.force_flush(5.0)
    spans = http_receiver.spans()
    (op,) = [s for s in spans if s.span_id == span_id]
    (request,) = [s for s in spans if s is not op]
    assert op.name == "text_completion tiny"
    assert op.span.kind == Span.SPAN_KIND_INTERNAL
    assert (op.trace_id, op.parent_span_id) == (parent[0], parent[1])
    assert (op.span.start_time_unix_nano, op.span.end_time_unix_nano) == (T0, T0 + 400 * MS)
    assert op.typed_attributes == {
        "gen_ai.operation.name": ("string_value", "text_completion"),
        "gen_ai.provider.name": ("string_value", "vllm"),
        "gen_ai.request.model": ("string_value", "tiny"),
        "gen_ai.response.model": ("string_value", "tiny"),
        "vllm.operation.request_count": ("int_value", 1),
    }
    assert op.span.status.code == Status.STATUS_CODE_UNSET
    assert (request.trace_id, request.parent_span_id) == (parent[0], span_id)


def test_an_operation_ends_once_with_its_error_and_without_a_count_where_requests_are_internal(pipeline, http_receiver):
    assert pipeline(http_receiver)
    call = operation(records_requests=False, name="text_completion", model=None)
    call.request_count = 7  # beam search's engine requests: not the user's
    assert call.end(T0 + 5 * MS, "ValueError")
    assert not call.end(T0 + 9 * MS, None)  # a second end records nothing
    assert _core.force_flush(5.0)
    (op,) = http_receiver.spans()
    assert op.name == "text_completion"
    assert op.parent_span_id == 0  # no parent: a root span, its own trace
    assert op.trace_id == call.context[0] != 0
    assert op.span.end_time_unix_nano == T0 + 5 * MS
    assert op.typed_attributes == {
        "gen_ai.operation.name": ("string_value", "text_completion"),
        "gen_ai.provider.name": ("string_value", "vllm"),
        "error.type": ("string_value", "ValueError"),
    }
    assert op.span.status.code == Status.STATUS_CODE_ERROR


def test_the_shims_fields_read_back_what_was_given_and_set():
    parent = (5, 6, SAMPLED, True)
    call = _core.Operation("chat", "vllm", "m\udfff", parent, True, True, T0)  # a lone surrogate does not raise
    assert (call.name, call.model, call.parent, call.start_ns) == ("chat", "m\udfff", parent, T0)
    assert (call.records_requests, call.core_reads) == (True, True)
    assert (call.request_count, call.engine_id, call.runs_enqueued, call.conversations) == (0, 0, False, None)
    conversations = [[{"role": "user", "content": "hi"}]]
    call.request_count, call.engine_id, call.runs_enqueued, call.conversations = 3, 42, True, conversations
    assert (call.request_count, call.engine_id, call.runs_enqueued) == (3, 42, True)
    assert call.conversations is conversations
    assert call.context[0] == 5 and call.context[1] not in (0, 6)


def test_without_telemetry_an_operation_still_has_ids_and_records_nothing():
    assert not _core.configure({"OTEL_SDK_DISABLED": "true"})
    call = operation()
    trace_id, span_id, flags = call.context
    assert trace_id != 0 and span_id != 0 and flags == 0
    assert not call.end(T0 + MS, None)


def test_as_parent_is_the_header_form_the_core_takes():
    call = operation()
    assert batch_header(parent=call.as_parent())[4] == as_parent(call.context)


class ModelName(str):
    """A str subclass (mutable attributes, so never kept by identity in the core)."""


def test_each_operation_records_its_own_names_across_many_models(pipeline, http_receiver):
    # The core keeps the names of recent calls by their string objects (a bounded set): more
    # models than it keeps, each seen twice, and a str subclass, still give every span its own.
    assert pipeline(http_receiver)
    models = [f"model-{i}" for i in range(40)] + [ModelName("subclassed")]
    expected = {}
    for model in models + models:
        call = operation(model=model)
        assert call.end(T0 + MS, None)
        expected[call.context[1]] = model
    assert _core.force_flush(5.0)
    spans = http_receiver.spans()
    assert len(spans) == len(expected)
    for span in spans:
        model = expected[span.span_id]
        assert span.name == f"text_completion {model}"
        assert span.attributes["gen_ai.request.model"] == model
        assert span.attributes["gen_ai.response.model"] == model
