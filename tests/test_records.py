"""Robustness of the record intake: malformed records, invalid values, odd strings, batch limits."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import MS, T0, batch_header, operation_record, request_record
from opentelemetry.instrumentation.vllm import _core
from otlp_receivers import duplicate_keys


def flushed_spans(receiver):
    assert _core.force_flush(5.0)
    return receiver.spans()


def test_malformed_records_are_skipped_and_counted(pipeline, http_receiver):
    assert pipeline(http_receiver)
    good = request_record(response_id="good")
    malformed = [
        good[:-1],  # a field short
        (*good, None),  # a field too many
        list(good),  # not a tuple
        None,
        "cmpl-1",
        request_record(start_ns="yesterday"),
        request_record(start_ns=-1),
        request_record(end_ns=2**64),
        request_record(input_tokens=1.5),
        request_record(ttft="fast"),
        request_record(span_id=-5),
        request_record(response_id=42),
        request_record(attributes=["not", "a", "dict"]),
    ]
    assert _core.record_requests(batch_header(), [malformed[0], good, *malformed[1:]]) == 1
    stats = _core.stats()
    assert stats["records_invalid"] == len(malformed)
    assert stats["requests_recorded"] == 1
    (span,) = flushed_spans(http_receiver)
    assert span.attributes["gen_ai.response.id"] == "good"


def test_only_malformed_records_record_nothing(pipeline, http_receiver):
    assert pipeline(http_receiver)
    assert _core.record_requests(batch_header(), [(), (1, 2, 3)]) == 0
    assert _core.stats()["records_invalid"] == 2
    assert flushed_spans(http_receiver) == []


def test_a_malformed_header_fails_the_call_without_breaking_the_pipeline(pipeline, http_receiver):
    assert pipeline(http_receiver)
    for header in [("text_completion",), None, batch_header(span_kind="client"), batch_header(parent=(1, 2))]:
        with pytest.raises((TypeError, ValueError, IndexError)):
            _core.record_requests(header, [request_record()])
    assert _core.record_requests(batch_header(), [request_record()]) == 1
    assert len(flushed_spans(http_receiver)) == 1


def test_invalid_durations_and_counts_are_absent_from_the_span(pipeline, http_receiver):
    assert pipeline(http_receiver)
    record = request_record(
        ttft=float("nan"),
        tpot=-0.001,
        queue=float("inf"),
        prefill=float("-inf"),
        decode=-1e-9,
        inference=0.0,
        e2e=1,  # an int is a valid number of seconds
        input_tokens=-1,
        output_tokens=0,
        cached_input_tokens=-100,
    )
    assert _core.record_requests(batch_header(), [record]) == 1
    assert _core.stats()["records_invalid"] == 0
    (span,) = flushed_spans(http_receiver)
    attributes = span.typed_attributes
    for absent in (
        "gen_ai.latency.time_to_first_token",
        "gen_ai.latency.time_per_output_token",
        "gen_ai.latency.time_in_queue",
        "gen_ai.latency.time_in_model_prefill",
        "gen_ai.latency.time_in_model_decode",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.cache_read.input_tokens",
    ):
        assert absent not in attributes
    assert attributes["gen_ai.latency.time_in_model_inference"] == ("double_value", 0.0)
    assert attributes["gen_ai.latency.e2e"] == ("double_value", 1.0)
    assert attributes["gen_ai.usage.output_tokens"] == ("int_value", 0)


def test_out_of_range_counts_and_durations_are_absent_and_the_record_is_kept(pipeline, http_receiver):
    assert pipeline(http_receiver)
    huge = 10**400  # beyond i64 and beyond a float
    record = request_record(response_id="huge", input_tokens=2**63, output_tokens=huge, ttft=huge, e2e=-huge)
    assert _core.record_requests(batch_header(), [record]) == 1
    assert _core.stats()["records_invalid"] == 0
    (span,) = flushed_spans(http_receiver)
    attributes = span.attributes
    assert attributes["gen_ai.response.id"] == "huge"
    for absent in (
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.latency.time_to_first_token",
        "gen_ai.latency.e2e",
    ):
        assert absent not in attributes
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 4


def test_empty_batch_records_nothing(pipeline, http_receiver):
    assert pipeline(http_receiver)
    assert _core.record_requests(batch_header(), []) == 0
    stats = _core.stats()
    assert (stats["requests_recorded"], stats["requests_dropped"], stats["records_invalid"]) == (0, 0, 0)
    assert flushed_spans(http_receiver) == []


def test_lone_surrogates_do_not_raise(pipeline, http_receiver):
    assert pipeline(http_receiver)
    bad = "bad\ud800text"
    header = batch_header(request_model=bad, attributes={bad: bad, "stop": [bad, "ok"]})
    record = request_record(response_id=bad, finish_reasons=[bad], error_type=bad, attributes={"x": "\udfff"})
    assert _core.record_requests(header, [record]) == 1
    assert _core.stats()["records_invalid"] == 0
    (span,) = flushed_spans(http_receiver)
    attributes = span.attributes
    assert span.name.startswith("text_completion bad") and span.name.endswith("text")
    assert "\ufffd" in span.name
    assert attributes["gen_ai.response.id"].startswith("bad") and "\ufffd" in attributes["gen_ai.response.id"]
    assert "\ufffd" in attributes["gen_ai.response.finish_reasons"][0]
    assert attributes["stop"][1] == "ok"
    assert "\ufffd" in attributes["x"]
    assert "\ufffd" in span.span.status.message
    # Metric attributes are repaired the same way, never dropped.
    assert any(
        "\ufffd" in p.get("gen_ai.request.model", "") for m in http_receiver.metrics() for p in m.point_attributes()
    )


def test_unsupported_attribute_values_are_skipped(pipeline, http_receiver):
    assert pipeline(http_receiver)
    attributes = {
        "kept": "yes",
        "none": None,
        "dict": {"a": 1},
        "object": object(),
        "too_big": 2**70,
        "bytes": b"raw",
        1: "non-string key",
    }
    assert _core.record_requests(batch_header(attributes=attributes), [request_record()]) == 1
    (span,) = flushed_spans(http_receiver)
    user_keys = {k for k in span.attributes if not k.startswith("gen_ai.")}
    assert user_keys == {"kept"}


def test_keys_and_finish_reasons_past_what_the_core_keeps_are_exported_as_given(pipeline, http_receiver):
    # The core keeps attribute keys and finish reasons as static strings, a bounded number of them
    # (src/record/interned.rs); past the bounds, and for keys that are new string objects each time or str
    # subclasses, each one must still be exported as given.
    class Key(str):
        pass

    assert pipeline(http_receiver)
    records = [
        request_record(
            response_id=f"r{i}",
            finish_reasons=[f"reason-{i}"],
            attributes={f"user.key.{i}": i, Key("user.subclass"): f"v{i}", "user.same": i},
        )
        for i in range(400)
    ]
    assert _core.record_requests(batch_header(attributes={f"batch.key.{n}": n for n in range(3)}), records) == 400
    spans = {span.attributes["gen_ai.response.id"]: span for span in flushed_spans(http_receiver)}
    assert len(spans) == 400
    for i in range(400):
        attributes = spans[f"r{i}"].attributes
        assert attributes[f"user.key.{i}"] == i
        assert attributes["user.subclass"] == f"v{i}"
        assert attributes["user.same"] == i
        assert attributes["gen_ai.response.finish_reasons"] == (f"reason-{i}",)
        assert [attributes[f"batch.key.{n}"] for n in range(3)] == [0, 1, 2]
        assert not [k for k in attributes if k.startswith("user.key.") and k != f"user.key.{i}"]


def test_heterogeneous_arrays_keep_the_type_of_their_first_element(pipeline, http_receiver):
    assert pipeline(http_receiver)
    attributes = {"mixed": [1, "two", 3], "empty": [], "tuple": ("a", "b")}
    assert _core.record_requests(batch_header(attributes=attributes), [request_record()]) == 1
    (span,) = flushed_spans(http_receiver)
    typed = span.typed_attributes
    assert typed["mixed"] == ("array_value", (("int_value", 1), ("int_value", 3)))
    assert typed["empty"] == ("array_value", ())
    assert typed["tuple"] == ("array_value", (("string_value", "a"), ("string_value", "b")))


def test_big_batches_are_accepted(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_TRACES_EXPORTER": "none"})
    records = [request_record(response_id=str(i), end_ns=T0 + (i + 1) * MS, e2e=None) for i in range(5000)]
    assert _core.record_requests(batch_header(), records) == 5000
    assert _core.stats()["requests_recorded"] == 5000
    (row,) = [r for r in _core.latency_percentiles() if r["metric"] == "gen_ai.server.request.duration"]
    assert row["count"] == 5000


def test_a_batch_larger_than_the_request_queue_is_not_lost(pipeline, http_receiver):
    # One offline LLM.generate over 10k prompts is one batch: it must fit into an empty queue.
    assert pipeline(http_receiver, {"OTEL_TRACES_EXPORTER": "none"})
    records = [request_record(response_id=str(i)) for i in range(10_000)]
    assert _core.record_requests(batch_header(), records) == 10_000
    stats = _core.stats()
    assert stats["requests_recorded"] == 10_000
    assert stats["requests_dropped"] == 0


def test_a_zero_span_id_is_replaced_by_a_valid_one(pipeline, http_receiver):
    assert pipeline(http_receiver)
    assert _core.record_requests(batch_header(), [request_record(span_id=0)]) == 1
    (span,) = flushed_spans(http_receiver)
    assert span.span_id != 0


def test_span_attribute_keys_are_unique(pipeline, http_receiver):
    # The core's own attributes win; a request's attributes win over its batch's.
    assert pipeline(http_receiver)
    header = batch_header(attributes={"gen_ai.request.model": "from-header", "shared": "batch", "batch-only": 1})
    record = request_record(attributes={"gen_ai.response.id": "from-record", "shared": "request"})
    assert _core.record_requests(header, [record]) == 1
    (span,) = flushed_spans(http_receiver)
    assert duplicate_keys(span.span.attributes) == []
    attributes = span.attributes
    assert attributes["gen_ai.request.model"] == "tiny"
    assert attributes["gen_ai.response.id"] == "cmpl-1"
    assert attributes["shared"] == "request"
    assert attributes["batch-only"] == 1


def test_a_batch_attribute_is_kept_only_where_the_core_did_not_set_its_key(pipeline, http_receiver):
    # Requests without attributes of their own: the core decides once per batch which of the
    # batch's attributes a span keeps, for each set of attributes it set; each span must still get
    # exactly what merging would give it.
    assert pipeline(http_receiver)
    header = batch_header(attributes={"gen_ai.usage.input_tokens": -1, "gen_ai.request.model": "x", "batch-only": 1})
    records = [
        request_record(response_id="counted", input_tokens=12),
        request_record(response_id="uncounted", input_tokens=None),
        request_record(response_id="counted-again", input_tokens=7),
        request_record(response_id="uncounted-again", input_tokens=None),
    ]
    assert _core.record_requests(header, records) == 4
    spans = {span.attributes["gen_ai.response.id"]: span for span in flushed_spans(http_receiver)}
    assert set(spans) == {"counted", "uncounted", "counted-again", "uncounted-again"}
    expected_input_tokens = {"counted": 12, "uncounted": -1, "counted-again": 7, "uncounted-again": -1}
    for response_id, span in spans.items():
        assert duplicate_keys(span.span.attributes) == [], response_id
        assert span.attributes["gen_ai.usage.input_tokens"] == expected_input_tokens[response_id], response_id
        assert span.attributes["gen_ai.request.model"] == "tiny", response_id
        assert span.attributes["batch-only"] == 1, response_id


def test_operation_attribute_keys_are_unique(pipeline, http_receiver):
    assert pipeline(http_receiver)
    operation = _core.new_span_context(None, "text_completion", "tiny")
    attributes = {"gen_ai.operation.name": "override", "vllm.operation.request_count": 99, "extra": True}
    assert _core.record_operation(operation_record(operation, request_count=2, attributes=attributes))
    (span,) = flushed_spans(http_receiver)
    assert duplicate_keys(span.span.attributes) == []
    assert span.attributes["gen_ai.operation.name"] == "text_completion"
    assert span.attributes["vllm.operation.request_count"] == 2
    assert span.attributes["extra"] is True


def test_lone_surrogates_in_new_span_context_do_not_raise(pipeline, http_receiver):
    assert pipeline(http_receiver)
    trace_id, span_id, flags = _core.new_span_context(None, "chat\ud800", "model\udfff")
    assert trace_id and span_id and flags == 1


def test_concurrent_callers_lose_nothing(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_TRACES_EXPORTER": "none"})

    def caller(n: int) -> int:
        header = batch_header(request_model=f"model-{n % 2}")
        return sum(_core.record_requests(header, [request_record(e2e=0.1)] * 5) for _ in range(40))

    with ThreadPoolExecutor(max_workers=8) as pool:
        accepted = sum(pool.map(caller, range(8)))
    assert accepted == 8 * 40 * 5
    assert _core.stats()["requests_recorded"] == accepted
    counts = {
        r["model"]: r["count"] for r in _core.latency_percentiles() if r["metric"] == "gen_ai.server.request.duration"
    }
    assert counts == {"model-0": accepted // 2, "model-1": accepted // 2}


def test_a_malformed_operation_record_fails_the_call_without_breaking_the_pipeline(pipeline, http_receiver):
    assert pipeline(http_receiver)
    operation = _core.new_span_context(None, "text_completion", "tiny")
    for record in [(), operation_record(operation)[:-1], operation_record((1, 2), request_count=1)]:
        with pytest.raises((TypeError, ValueError, IndexError)):
            _core.record_operation(record)
    assert _core.record_operation(operation_record(operation))
    (span,) = flushed_spans(http_receiver)
    assert span.span_id == operation[1]
