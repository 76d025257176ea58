"""The two GenAI convention modes, name by name against the conventions' own tables.

Default: semantic conventions v1.41.1 (``docs/gen-ai/gen-ai-metrics.md``, ``gen-ai-spans.md``).
``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``: the latest GenAI conventions
(semantic-conventions-genai: ``docs/gen-ai/client-inference.md``, ``gen-ai-token-metrics.md`` and
``non-normative/migration.md``). Checked on decoded OTLP payloads (native delivery) and through the
application's Python MeterProvider (bridge delivery), with the fake vLLM for the offline workload.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from helpers import batch_header, operation_record, request_record
from opentelemetry.instrumentation.vllm import VllmInstrumentor, _core, _vllm, force_flush
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.sdk.metrics.export import HistogramDataPoint, NumberDataPoint

LATEST = "gen_ai_latest_experimental"
SCOPE = "opentelemetry.instrumentation.vllm"
MODEL = "fake/tiny-llm"

DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5]
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]

# name -> (instrument, unit, advisory bucket boundaries), as the conventions' tables give them.
SERVER = {  # the same in both (the migration guide changes no gen_ai.server.* metric)
    "gen_ai.server.request.duration": ("Histogram", "s", DURATION_BUCKETS),
    "gen_ai.server.time_to_first_token": ("Histogram", "s", TTFT_BUCKETS),
    "gen_ai.server.time_per_output_token": ("Histogram", "s", TPOT_BUCKETS),
}
V1_41_CLIENT = {
    "gen_ai.client.operation.duration": ("Histogram", "s", DURATION_BUCKETS),
    "gen_ai.client.token.usage": ("Histogram", "{token}", TOKEN_BUCKETS),  # with gen_ai.token.type
}
LATEST_CLIENT = {
    "gen_ai.client.inference.duration": ("Histogram", "s", DURATION_BUCKETS),
    # Stays for operations other than inference (embeddings here).
    "gen_ai.client.operation.duration": ("Histogram", "s", DURATION_BUCKETS),
    "gen_ai.client.inference.usage.input_tokens": ("Counter", "{token}", None),
    "gen_ai.client.inference.usage.output_tokens": ("Counter", "{token}", None),
    "gen_ai.client.inference.usage.cache_read.input_tokens": ("Counter", "{token}", None),
    "gen_ai.client.inference.operation.input_tokens": ("Histogram", "{token}", TOKEN_BUCKETS),
    "gen_ai.client.inference.operation.output_tokens": ("Histogram", "{token}", TOKEN_BUCKETS),
}
# In the latest conventions' table, never emitted: vLLM reports no such count per request
# (see docs/telemetry.md).
LATEST_NOT_EMITTED = (
    "gen_ai.client.inference.usage.cache_write.input_tokens",
    "gen_ai.client.inference.usage.reasoning.output_tokens",
)
OURS = {  # vllm.* (not the conventions'), in both modes
    "vllm.request.queue.duration": ("Histogram", "s", TTFT_BUCKETS),
    "vllm.request.prefill.duration": ("Histogram", "s", TTFT_BUCKETS),
    "vllm.request.decode.duration": ("Histogram", "s", DURATION_BUCKETS),
    "vllm.request.inference.duration": ("Histogram", "s", DURATION_BUCKETS),
}
EXPECTED = {"default": {**SERVER, **V1_41_CLIENT, **OURS}, "latest": {**SERVER, **LATEST_CLIENT, **OURS}}
OTLP_KIND = {"Histogram": "histogram", "Counter": "sum"}

BASE = {
    "gen_ai.operation.name": "text_completion",
    "gen_ai.provider.name": "vllm",
    "gen_ai.request.model": "tiny",
    "gen_ai.response.model": "tiny",
}


def overrides(mode: str) -> dict[str, str]:
    # Another category in the list must not hide ours (a comma-separated list, as the spec has it).
    return {"OTEL_SEMCONV_STABILITY_OPT_IN": f"http, {LATEST}"} if mode == "latest" else {}


def record_workload() -> None:
    """Two successes and an aborted request; a text_completion call, a failed one and an embeddings call."""
    requests = [
        request_record(input_tokens=10, output_tokens=100, cached_input_tokens=4),
        request_record(input_tokens=20, output_tokens=200, cached_input_tokens=0),
        request_record(input_tokens=7, output_tokens=3, cached_input_tokens=None, error_type="aborted"),
    ]
    assert _core.record_requests(batch_header(), requests) == 3
    for operation, error in (("text_completion", None), ("text_completion", "EngineDeadError"), ("embeddings", None)):
        context = _core.new_span_context(None, operation, "tiny")
        assert _core.record_operation(operation_record(context, operation=operation, error_type=error))


def flushed(receiver) -> dict:
    assert _core.force_flush(5.0)
    metrics = receiver.latest_metrics()
    assert len({m.name for m in metrics}) == len(metrics)
    return {m.name: m for m in metrics}


@pytest.mark.parametrize("mode", ["default", "latest"])
def test_native_metrics_are_the_conventions_names_instruments_units_and_buckets(pipeline, http_receiver, mode):
    assert pipeline(http_receiver, overrides(mode))
    assert _core.semconv_latest() is (mode == "latest")
    record_workload()
    metrics = flushed(http_receiver)
    assert set(metrics) == set(EXPECTED[mode])
    for name, (instrument, unit, buckets) in EXPECTED[mode].items():
        metric = metrics[name]
        assert metric.kind == OTLP_KIND[instrument], name
        assert metric.metric.unit == unit, name
        assert metric.metric.description, name
        assert metric.scope.name == SCOPE
        if instrument == "Counter":
            assert metric.metric.sum.is_monotonic, name
            assert (
                metric.metric.sum.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
            )
            assert all(p.WhichOneof("value") == "as_int" for p in metric.points), name
        else:
            assert all(list(p.explicit_bounds) == buckets for p in metric.points), name
    assert not set(LATEST_NOT_EMITTED) & set(metrics)


def test_native_latest_token_metrics_values_and_attributes(pipeline, http_receiver):
    assert pipeline(http_receiver, overrides("latest"))
    record_workload()
    metrics = flushed(http_receiver)

    def points(name: str) -> dict[frozenset, Any]:
        metric = metrics[name]
        return {frozenset(a.items()): p for a, p in zip(metric.point_attributes(), metric.points, strict=True)}

    unknown = frozenset({**BASE, "gen_ai.token.modality": "unknown"}.items())
    text = frozenset({**BASE, "gen_ai.token.modality": "text"}.items())
    # Counters: every request's tokens (the aborted one's too), gen_ai.token.modality, no error.type.
    assert {k: p.as_int for k, p in points("gen_ai.client.inference.usage.input_tokens").items()} == {unknown: 37}
    assert {k: p.as_int for k, p in points("gen_ai.client.inference.usage.output_tokens").items()} == {text: 303}
    assert {k: p.as_int for k, p in points("gen_ai.client.inference.usage.cache_read.input_tokens").items()} == {
        unknown: 4
    }
    # Histograms: no modality (percentiles across modalities do not add up), error.type on failures.
    base, aborted = frozenset(BASE.items()), frozenset({**BASE, "error.type": "aborted"}.items())
    for name, values in (
        ("gen_ai.client.inference.operation.input_tokens", ([10, 20], [7])),
        ("gen_ai.client.inference.operation.output_tokens", ([100, 200], [3])),
    ):
        got = {k: (p.count, p.sum) for k, p in points(name).items()}
        assert got == {base: (2, sum(values[0])), aborted: (1, sum(values[1]))}, name
    for metric in metrics.values():
        assert all("gen_ai.token.type" not in a for a in metric.point_attributes()), metric.name
    # Inference calls on gen_ai.client.inference.duration, embeddings on gen_ai.client.operation.duration.
    inference = {k: p.count for k, p in points("gen_ai.client.inference.duration").items()}
    assert inference == {base: 1, frozenset({**BASE, "error.type": "EngineDeadError"}.items()): 1}
    embeddings = frozenset({**BASE, "gen_ai.operation.name": "embeddings"}.items())
    assert {k: p.count for k, p in points("gen_ai.client.operation.duration").items()} == {embeddings: 1}


def test_the_default_keeps_v1_41_token_usage(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai"})  # not the latest's value
    assert not _core.semconv_latest()
    record_workload()
    metrics = flushed(http_receiver)
    usage = metrics["gen_ai.client.token.usage"]
    sums = {a["gen_ai.token.type"]: p.sum for a, p in zip(usage.point_attributes(), usage.points, strict=True)}
    assert sums == {"input": 37, "output": 303}
    operations = metrics["gen_ai.client.operation.duration"]
    assert sorted(a["gen_ai.operation.name"] for a in operations.point_attributes()) == [
        "embeddings",
        "text_completion",
        "text_completion",
    ]


# ---- the fake vLLM offline, both deliveries ---------------------------------------------------


def generate(top_k: int = 40, structured: Any = None) -> list[Any]:
    from vllm import LLM, SamplingParams

    llm = LLM(model=MODEL, max_num_seqs=2)
    params = SamplingParams(max_tokens=3, top_k=top_k)
    if structured is not None:
        params.structured_outputs = structured  # the fake's SamplingParams has no such field of its own
    return llm.generate(["Hello there", "The capital of France is"], params)


def bridged_points(reader) -> dict[str, tuple[Any, list[Any]]]:
    data = reader.get_metrics_data()
    return {
        m.name: (m, list(m.data.data_points))
        for rm in (data.resource_metrics if data else [])
        for sm in rm.scope_metrics
        if sm.scope.name == SCOPE
        for m in sm.metrics
    }


@pytest.mark.parametrize("mode", ["default", "latest"])
def test_bridged_metrics_are_the_conventions_names_and_instruments(
    vllm_tree, tracer_provider, span_exporter, meter_provider, metric_reader, mode
):
    arguments = {"semconv_stability_opt_in": LATEST} if mode == "latest" else {}
    instrumentor = VllmInstrumentor()
    instrumentor.instrument(
        skip_dep_check=True, tracer_provider=tracer_provider, meter_provider=meter_provider, **arguments
    )
    try:
        assert _core.delivery() == ("bridge", "bridge")
        outputs = generate()
        assert force_flush(5.0)
    finally:
        instrumentor.uninstrument()
    got = bridged_points(metric_reader)
    # One offline generate call of two prompts: no embeddings call, so no operation.duration in latest.
    expected = dict(EXPECTED[mode])
    if mode == "latest":
        del expected["gen_ai.client.operation.duration"]
    assert set(got) == set(expected)
    for name, (instrument, unit, buckets) in expected.items():
        metric, points = got[name]
        assert metric.unit == unit, name
        if instrument == "Counter":
            assert metric.data.is_monotonic, name
            assert all(type(p) is NumberDataPoint and type(p.value) is int for p in points), name
        else:
            assert all(type(p) is HistogramDataPoint and list(p.explicit_bounds) == buckets for p in points), name
    inputs = sum(len(o.prompt_token_ids) for o in outputs)
    generated = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    if mode == "latest":
        (point,) = got["gen_ai.client.inference.usage.input_tokens"][1]
        assert (point.value, point.attributes["gen_ai.token.modality"]) == (inputs, "unknown")
        (point,) = got["gen_ai.client.inference.usage.output_tokens"][1]
        assert (point.value, point.attributes["gen_ai.token.modality"]) == (generated, "text")
        (point,) = got["gen_ai.client.inference.operation.output_tokens"][1]
        assert (point.count, point.sum) == (2, generated)
        (point,) = got["gen_ai.client.inference.duration"][1]
        assert point.count == 1 and point.attributes["gen_ai.operation.name"] == "text_completion"
    else:
        sums = {p.attributes["gen_ai.token.type"]: p.sum for p in got["gen_ai.client.token.usage"][1]}
        assert sums == {"input": inputs, "output": generated}
    # gen_ai.request.top_k: a double in v1.41.1, an int in the latest conventions.
    requests = [s for s in span_exporter.get_finished_spans() if "gen_ai.response.id" in s.attributes]
    assert len(requests) == 2
    for span in requests:
        top_k = span.attributes["gen_ai.request.top_k"]
        assert (type(top_k), top_k) == ((int, 40) if mode == "latest" else (float, 40.0))


@pytest.mark.parametrize("mode", ["default", "latest"])
def test_native_span_top_k_type_per_mode(instrument, http_receiver, monkeypatch, mode):
    if mode == "latest":
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", LATEST)  # the variable, not the argument
    instrument()
    generate(top_k=40)
    assert force_flush(5.0)
    requests = [s for s in http_receiver.spans() if "gen_ai.response.id" in s.attributes]
    assert len(requests) == 2
    for span in requests:
        expected = ("int_value", 40) if mode == "latest" else ("double_value", 40.0)
        assert span.typed_attributes["gen_ai.request.top_k"] == expected
        # v1.41.1 and the latest conventions alike: no cache-write count where vLLM gives none.
        assert "gen_ai.usage.cache_write.input_tokens" not in span.attributes
        assert "gen_ai.usage.cache_creation.input_tokens" not in span.attributes


@pytest.mark.parametrize(
    ("structured", "expected"),
    [
        (None, None),
        (SimpleNamespace(json={"type": "object"}), "json"),
        (SimpleNamespace(json_object=True), "json"),
        (SimpleNamespace(regex="[a-z]+"), "text"),
        (SimpleNamespace(choice=["yes", "no"]), "text"),
        (SimpleNamespace(grammar="root ::= 'a'"), "text"),
        (SimpleNamespace(json=None, disable_any_whitespace=True), None),  # options only: no output format
    ],
)
def test_output_type_from_the_structured_output_constraint(instrument, http_receiver, structured, expected):
    """The fake vLLM (offline): real vLLM's json schema is tests/real/test_request_details_real.py."""
    instrument()
    generate(structured=structured)
    assert force_flush(5.0)
    requests = [s for s in http_receiver.spans() if "gen_ai.response.id" in s.attributes]
    assert len(requests) == 2
    assert {s.attributes.get("gen_ai.output.type") for s in requests} == {expected}


def test_serving_attributes_of_an_engine_request():
    """add_serving_request_attributes and add_parent_choice_count on objects of vLLM's shape (the real
    server: tests/real/test_request_details_real.py): stream from output_kind, n from the parent request."""

    def request(output_kind: str) -> Any:
        return SimpleNamespace(sampling_params=SimpleNamespace(output_kind=SimpleNamespace(name=output_kind), n=1))

    def stream(engine_request: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        _vllm.add_serving_request_attributes(out, engine_request)
        return out

    assert stream(request("FINAL_ONLY")) == {}
    assert stream(request("DELTA")) == {"gen_ai.request.stream": True}
    assert stream(request("CUMULATIVE")) == {"gen_ai.request.stream": True}
    assert stream(SimpleNamespace(sampling_params=None, pooling_params=object())) == {}

    def choice_count(parent: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        _vllm.add_parent_choice_count(out, SimpleNamespace(parent_req=parent))
        return out

    assert choice_count(None) == {}
    assert choice_count(SimpleNamespace(sampling_params=SimpleNamespace(n=3))) == {"gen_ai.request.choice.count": 3}
    assert choice_count(SimpleNamespace(sampling_params=SimpleNamespace(n=1))) == {}
