"""A real ``vllm serve`` (tiny model, plugin activation) with the latest GenAI conventions
(``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``): the request span's details the
OpenAI client's requests set (stream, n > 1, structured output, top_k as an int) and the latest
conventions' token metrics, as the OTLP receiver gets them.

Not here: ``gen_ai.usage.reasoning.output_tokens``. The tiny model's tokenizer has no reasoning
markers a reasoning parser could use, and vLLM counts reasoning tokens only in its OpenAI layer,
after the engine finished the request (see docs/telemetry.md): the attribute stays absent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from otlp_receivers import ReceivedSpan
from test_serving_real import MODEL, Server, client, new_traceparent, start_server

LATEST = {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}


@pytest.fixture(scope="module")
def latest_server(model_dirs, tmp_path_factory) -> Iterator[Server]:
    yield from start_server(
        model_dirs["generate"],
        tmp_path_factory.mktemp("latest"),
        plugin=True,
        native_tracing=False,
        auto=False,
        environment=LATEST,
    )


def spans_in_trace(server: Server, trace_id: int, count: int) -> list[ReceivedSpan]:
    spans = server.wait_for_spans(lambda spans: sum(s.trace_id == trace_id for s in spans) >= count)
    mine = [s for s in spans if s.trace_id == trace_id]
    assert len(mine) == count, f"{len(mine)} spans of ours in the trace\n{server.log_tail()}"
    return mine


def test_stream_and_top_k(latest_server):
    traceparent, trace_id, _ = new_traceparent()
    stream = client(latest_server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say something"}],
        max_tokens=4,
        stream=True,
        extra_body={"top_k": 5},
        extra_headers={"traceparent": traceparent},
    )
    assert list(stream)
    (span,) = spans_in_trace(latest_server, trace_id, 1)
    assert span.typed_attributes["gen_ai.request.stream"] == ("bool_value", True)
    assert span.typed_attributes["gen_ai.request.top_k"] == ("int_value", 5)  # a double in v1.41.1
    for absent in ("gen_ai.request.choice.count", "gen_ai.output.type", "gen_ai.usage.reasoning.output_tokens"):
        assert absent not in span.attributes

    traceparent, trace_id, _ = new_traceparent()
    client(latest_server).completions.create(
        model=MODEL, prompt="The quick brown fox", max_tokens=4, extra_headers={"traceparent": traceparent}
    )
    (span,) = spans_in_trace(latest_server, trace_id, 1)
    assert "gen_ai.request.stream" not in span.attributes  # only a streaming request has it
    assert "gen_ai.request.top_k" not in span.attributes  # none requested


def test_n_greater_than_one(latest_server):
    traceparent, trace_id, _ = new_traceparent()
    response = client(latest_server).completions.create(
        model=MODEL,
        prompt="The quick brown fox",
        max_tokens=4,
        n=3,
        temperature=0.9,
        extra_headers={"traceparent": traceparent},
    )
    assert len(response.choices) == 3
    # vLLM runs one engine request per completion: one span each, with the n the client asked for.
    spans = spans_in_trace(latest_server, trace_id, 3)
    assert {s.typed_attributes["gen_ai.request.choice.count"] for s in spans} == {("int_value", 3)}
    assert sum(s.attributes["gen_ai.usage.output_tokens"] for s in spans) == response.usage.completion_tokens


@pytest.mark.parametrize(
    ("extra_body", "expected"),
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}},
            "json",
        ),
        ({"response_format": {"type": "json_object"}}, "json"),
        ({"structured_outputs": {"choice": ["yes", "no"]}}, "text"),
        ({}, None),
    ],
)
def test_output_type_from_structured_outputs(latest_server, extra_body: dict[str, Any], expected: str | None):
    traceparent, trace_id, _ = new_traceparent()
    client(latest_server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Answer"}],
        max_tokens=4,
        extra_body=extra_body,
        extra_headers={"traceparent": traceparent},
    )
    (span,) = spans_in_trace(latest_server, trace_id, 1)
    assert span.attributes.get("gen_ai.output.type") == expected


def test_latest_token_metrics(latest_server):
    """The usage counters count what the request spans say, request by request (every request this
    server has run: the tests before this one's too)."""
    receiver = latest_server.receiver

    def metrics() -> dict[str, Any]:
        return {m.name: m for m in receiver.latest_metrics()}

    def counted() -> tuple[int, int]:
        got = metrics()
        return tuple(  # type: ignore[return-value]
            sum(p.as_int for p in got[name].points) if name in got else 0
            for name in ("gen_ai.client.inference.usage.input_tokens", "gen_ai.client.inference.usage.output_tokens")
        )

    def on_spans() -> tuple[int, int]:
        spans = latest_server.ours()
        return (
            sum(s.attributes["gen_ai.usage.input_tokens"] for s in spans),
            sum(s.attributes["gen_ai.usage.output_tokens"] for s in spans),
        )

    traceparent, trace_id, _ = new_traceparent()
    response = client(latest_server).completions.create(
        model=MODEL, prompt="The quick brown fox", max_tokens=5, extra_headers={"traceparent": traceparent}
    )
    (span,) = spans_in_trace(latest_server, trace_id, 1)
    assert span.attributes["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens
    assert span.attributes["gen_ai.usage.output_tokens"] == response.usage.completion_tokens
    assert receiver.wait_for(lambda _: counted() == on_spans(), timeout=20), (counted(), on_spans())
    got = metrics()
    assert "gen_ai.client.token.usage" not in got
    assert "gen_ai.client.operation.duration" not in got  # serving has no client operation
    for name in ("gen_ai.client.inference.usage.input_tokens", "gen_ai.client.inference.usage.output_tokens"):
        assert got[name].kind == "sum" and got[name].metric.sum.is_monotonic
        for attributes in got[name].point_attributes():
            assert attributes["gen_ai.token.modality"] == ("unknown" if "input" in name else "text")
            assert attributes["gen_ai.request.model"] == MODEL
    for name in ("gen_ai.client.inference.operation.input_tokens", "gen_ai.client.inference.operation.output_tokens"):
        assert got[name].kind == "histogram"
        assert all("gen_ai.token.modality" not in a for a in got[name].point_attributes())
    for name in ("gen_ai.server.request.duration", "gen_ai.server.time_to_first_token"):
        assert name in got  # unchanged in the latest conventions
