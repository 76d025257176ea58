"""The offline instrumentation (``vllm.LLM`` / ``LLMEngine``) against fake vLLM trees, end to end.

vLLM is not installed in this tier: ``tests/fake_vllm`` reproduces the object shapes and call paths
of vLLM 0.32 and 0.11.0 that the shim reads (see its docstring; tests/real covers real vLLM). Each
test puts one fake tree on ``sys.path``, instruments with the Rust core exporting to a loopback OTLP
receiver, drives ``LLM`` and asserts on the decoded OTLP, field by field.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fake_vllm.engine_core import FORWARD_S, FRONTEND_S, INGEST_S, SCHEDULE_S
from opentelemetry import trace
from opentelemetry.instrumentation.vllm import _offline as offline_module
from opentelemetry.instrumentation.vllm import force_flush
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once
from otlp_receivers import HttpReceiver, ReceivedMetric, ReceivedSpan

MODEL = "fake/tiny-llm"
LOGGER = "opentelemetry.instrumentation.vllm"
BOTH_VERSIONS = pytest.mark.parametrize("vllm_tree", ["0.32", "0.11.0"], indirect=True)
V0_11_0 = pytest.mark.parametrize("vllm_tree", ["0.11.0"], indirect=True)

LATENCY_FROM_STATS = (
    "gen_ai.latency.time_to_first_token",
    "gen_ai.latency.time_per_output_token",
    "gen_ai.latency.time_in_queue",
    "gen_ai.latency.time_in_model_prefill",
    "gen_ai.latency.time_in_model_decode",
    "gen_ai.latency.time_in_model_inference",
)
HISTOGRAMS_FROM_STATS = (
    "gen_ai.server.time_to_first_token",
    "gen_ai.server.time_per_output_token",
    "vllm.request.queue.duration",
    "vllm.request.prefill.duration",
    "vllm.request.decode.duration",
    "vllm.request.inference.duration",
)
CONTENT_KEYS = ("gen_ai.input.messages", "gen_ai.output.messages")


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def app_tracer(monkeypatch: pytest.MonkeyPatch) -> Iterator[trace.Tracer]:
    """An opentelemetry-sdk TracerProvider set as the global one for this test only (the API allows
    setting it once per process; its globals are put back afterwards, as OTel's own tests do)."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    trace.set_tracer_provider(provider)
    yield trace.get_tracer("app")
    provider.shutdown()


# ---- what the receiver got ---------------------------------------------------------------------


@dataclass
class Exported:
    spans: list[ReceivedSpan]
    metrics: dict[str, ReceivedMetric]

    @property
    def operations(self) -> list[ReceivedSpan]:
        return [s for s in self.spans if "gen_ai.response.id" not in s.attributes]

    @property
    def requests(self) -> dict[str, ReceivedSpan]:
        """Request spans by request id (the id LLM gave add_request)."""
        requests = [s for s in self.spans if "gen_ai.response.id" in s.attributes]
        by_id = {s.attributes["gen_ai.response.id"]: s for s in requests}
        assert len(by_id) == len(requests), "a request was recorded twice"
        return by_id

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        metric = self.metrics.get(name)
        return [] if metric is None else list(zip(metric.point_attributes(), metric.points, strict=True))

    def count(self, name: str, **attributes: Any) -> int:
        """Measurements of ``name`` over the points whose attributes include ``attributes``."""
        return sum(p.count for a, p in self.points(name) if attributes.items() <= a.items())


def exported(receiver: HttpReceiver) -> Exported:
    assert force_flush(5.0)
    return Exported(receiver.spans(), {m.name: m for m in receiver.latest_metrics()})


def base_attributes(operation: str = "text_completion", model: str = MODEL) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": "vllm",
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
    }


def timings_of(stats: Any) -> dict[str, float]:
    """The span attributes a RequestStateStats implies, computed as vLLM computes them."""
    decode = stats.last_token_ts - stats.first_token_ts
    timings = {
        "gen_ai.latency.time_to_first_token": stats.first_token_latency,
        "gen_ai.latency.time_in_queue": stats.scheduled_ts - stats.queued_ts,
        "gen_ai.latency.time_in_model_prefill": stats.first_token_ts - stats.scheduled_ts,
        "gen_ai.latency.time_in_model_decode": decode,
        "gen_ai.latency.time_in_model_inference": stats.last_token_ts - stats.scheduled_ts,
    }
    if stats.num_generation_tokens > 1:
        timings["gen_ai.latency.time_per_output_token"] = decode / (stats.num_generation_tokens - 1)
    return timings


def usage_of(output: Any) -> dict[str, Any]:
    return {
        "gen_ai.usage.input_tokens": len(output.prompt_token_ids),
        "gen_ai.usage.output_tokens": sum(len(c.token_ids) for c in output.outputs),
        "gen_ai.usage.cache_read.input_tokens": output.num_cached_tokens,
        "gen_ai.response.finish_reasons": tuple(c.finish_reason for c in output.outputs),
    }


def span_id_of(span: Any) -> int:
    return span.get_span_context().span_id


def patched(owner: type, name: str) -> bool:
    """Wrapped with wrapt, or replaced by a plain function that keeps the original (hot methods)."""
    return hasattr(vars(owner)[name], "__wrapped__")


# ---- generate ----------------------------------------------------------------------------------


def test_generate_batch_under_an_app_span(app_tracer, instrument, http_receiver):
    instrument()
    from vllm import LLM, SamplingParams

    llm = LLM(model=MODEL, max_num_seqs=2)  # 4 prompts: two of them wait in the queue
    assert llm.engine_args.disable_log_stats is False and llm.llm_engine.log_stats
    params = SamplingParams(
        n=2,
        temperature=0.5,
        top_p=0.9,
        top_k=0,
        seed=7,
        max_tokens=3,
        stop=["\n\n"],
        frequency_penalty=0.25,
        presence_penalty=0.5,
    )
    prompts = ["Hello there", "The capital of France is", "one two three four", {"prompt_token_ids": [1, 17, 29]}]
    with app_tracer.start_as_current_span("app") as app:
        outputs = llm.generate(prompts, params)
    assert [o.request_id for o in outputs] == ["0", "1", "2", "3"]
    assert all(o.metrics is not None for o in outputs)
    got = exported(http_receiver)

    (operation,) = got.operations
    assert operation.name == f"text_completion {MODEL}"
    assert operation.span.kind == Span.SPAN_KIND_INTERNAL
    assert operation.trace_id == app.get_span_context().trace_id
    assert operation.parent_span_id == span_id_of(app)
    assert operation.span.status.code == Status.STATUS_CODE_UNSET
    assert operation.typed_attributes == {
        **{k: ("string_value", v) for k, v in base_attributes().items()},
        "vllm.operation.request_count": ("int_value", 4),
    }

    requests = got.requests
    assert sorted(requests) == ["0", "1", "2", "3"]
    sampling = {
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.seed": 7,
        "gen_ai.request.max_tokens": 3,
        "gen_ai.request.stop_sequences": ("\n\n",),
        "gen_ai.request.frequency_penalty": 0.25,
        "gen_ai.request.presence_penalty": 0.5,
        "gen_ai.request.choice.count": 2,
    }
    for output in outputs:
        span = requests[output.request_id]
        stats = output.metrics
        assert span.name == f"text_completion {MODEL}"
        assert span.span.kind == Span.SPAN_KIND_INTERNAL
        assert span.trace_id == operation.trace_id
        assert span.parent_span_id == operation.span_id
        assert span.span.status.code == Status.STATUS_CODE_UNSET
        assert span.span.start_time_unix_nano == int(stats.arrival_time * 1e9)
        assert operation.span.start_time_unix_nano <= span.span.start_time_unix_nano
        assert span.span.end_time_unix_nano <= operation.span.end_time_unix_nano
        attributes = span.attributes
        e2e = attributes.pop("gen_ai.latency.e2e")
        assert e2e == pytest.approx((span.span.end_time_unix_nano - span.span.start_time_unix_nano) / 1e9, abs=1e-5)
        assert attributes == {
            **base_attributes(),
            "gen_ai.response.id": output.request_id,
            **usage_of(output),
            **timings_of(stats),
            **sampling,
        }
        assert span.typed_attributes["gen_ai.request.max_tokens"] == ("int_value", 3)
        assert span.typed_attributes["gen_ai.request.choice.count"] == ("int_value", 2)
        assert "gen_ai.request.top_k" not in attributes  # top_k=0: disabled

    # All n=2 completions count, each has its finish reason; the timings are the fake clock's.
    first = requests["0"].attributes
    assert first["gen_ai.usage.output_tokens"] == 5
    assert first["gen_ai.response.finish_reasons"] == ("length", "stop")
    assert first["gen_ai.latency.time_in_queue"] == 3 * INGEST_S + SCHEDULE_S  # 3 later adds, 1 schedule
    assert first["gen_ai.latency.time_in_model_prefill"] == FORWARD_S
    assert first["gen_ai.latency.time_to_first_token"] == FRONTEND_S + 3 * INGEST_S + SCHEDULE_S + FORWARD_S
    assert first["gen_ai.latency.time_in_model_decode"] == 2 * (SCHEDULE_S + FORWARD_S)
    assert first["gen_ai.latency.time_per_output_token"] == SCHEDULE_S + FORWARD_S
    # The 3rd and 4th prompts waited for a free slot (max_num_seqs=2).
    assert requests["2"].attributes["gen_ai.latency.time_in_queue"] > first["gen_ai.latency.time_in_queue"]

    assert got.count("gen_ai.client.operation.duration") == 1
    assert got.count("gen_ai.server.request.duration") == 4
    assert got.count("gen_ai.server.time_to_first_token") == 4
    (ttft,) = got.metrics["gen_ai.server.time_to_first_token"].points
    assert ttft.sum == pytest.approx(sum(o.metrics.first_token_latency for o in outputs))
    assert got.count("gen_ai.server.time_per_output_token") == 4
    for name in HISTOGRAMS_FROM_STATS:
        assert got.count(name) == 4, name
    tokens = {a["gen_ai.token.type"]: p for a, p in got.points("gen_ai.client.token.usage")}
    assert tokens["input"].sum == sum(len(o.prompt_token_ids) for o in outputs)
    assert tokens["output"].sum == sum(len(c.token_ids) for o in outputs for c in o.outputs)


@BOTH_VERSIONS
def test_calls_with_the_same_names_and_parameters_parent_their_requests_to_their_own_span(instrument, http_receiver):
    # The core shares one request-span header (names, attributes) between such calls and gives each
    # call's batches its own span as parent: no request may end up under another call's span.
    instrument()
    from vllm import LLM, SamplingParams

    llm = LLM(MODEL)
    params = SamplingParams(max_tokens=2)
    for prompts in (["a"], ["b", "c"], ["d"], ["e"]):
        llm.generate(prompts, params)
    llm.generate(["f"], SamplingParams(max_tokens=3))  # other values: another header
    got = exported(http_receiver)
    operations = sorted(got.operations, key=lambda s: s.span.start_time_unix_nano)
    children = [[s for s in got.requests.values() if s.parent_span_id == o.span_id] for o in operations]
    assert [len(c) for c in children] == [1, 2, 1, 1, 1]
    assert sum(len(c) for c in children) == len(got.requests)
    for operation, requests in zip(operations, children, strict=True):
        for request in requests:
            assert request.trace_id == operation.trace_id
            assert request.span.start_time_unix_nano >= operation.span.start_time_unix_nano
            assert request.span.end_time_unix_nano <= operation.span.end_time_unix_nano
    assert [r.attributes["gen_ai.request.max_tokens"] for c in children for r in c] == [2, 2, 2, 2, 2, 3]


@BOTH_VERSIONS
def test_each_call_takes_the_parent_current_at_that_call(app_tracer, instrument, http_receiver):
    # The parent is resolved once per context object and reused while the same context is current:
    # calls alternating between no span, two spans and a nested one each get their own.
    instrument()
    from vllm import LLM, SamplingParams

    llm = LLM(MODEL)
    params = SamplingParams(max_tokens=2)
    expected = []
    llm.generate(["a"], params)
    expected.append((0, None))
    with app_tracer.start_as_current_span("first") as first:
        llm.generate(["b"], params)
        llm.generate(["c"], params)
        expected += [(span_id_of(first), first)] * 2
        with app_tracer.start_as_current_span("nested") as nested:
            llm.generate(["d"], params)
            expected.append((span_id_of(nested), nested))
        llm.generate(["e"], params)
        expected.append((span_id_of(first), first))
    llm.generate(["f"], params)
    expected.append((0, None))
    with app_tracer.start_as_current_span("second") as second:
        llm.generate(["g"], params)
        expected.append((span_id_of(second), second))
    operations = sorted(exported(http_receiver).operations, key=lambda s: s.span.start_time_unix_nano)
    assert [o.parent_span_id for o in operations] == [span_id for span_id, _ in expected]
    for operation, (_, parent) in zip(operations, expected, strict=True):
        if parent is not None:
            assert operation.trace_id == parent.get_span_context().trace_id
    roots = [o.trace_id for o, (_, parent) in zip(operations, expected, strict=True) if parent is None]
    assert len(set(roots)) == 2  # a new trace for each call without a parent


def test_per_prompt_sampling_params_lora_and_priority(instrument, http_receiver):
    instrument()
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    llm = LLM(MODEL)
    per_prompt = [SamplingParams(temperature=0.0, max_tokens=2, top_k=-1), SamplingParams(top_k=40, seed=1, stop="END")]
    llm.generate(
        ["first prompt", "second prompt"], per_prompt, lora_request=LoRARequest("sql-adapter", 1), priority=[0, 5]
    )
    requests = exported(http_receiver).requests

    def request_parameters(span: ReceivedSpan) -> dict[str, Any]:
        return {k: v for k, v in span.attributes.items() if k.startswith(("gen_ai.request.", "vllm."))}

    defaults = {
        "gen_ai.request.model": MODEL,
        "gen_ai.request.top_p": 1.0,
        "gen_ai.request.frequency_penalty": 0.0,
        "gen_ai.request.presence_penalty": 0.0,
        "vllm.lora.name": "sql-adapter",
    }
    assert request_parameters(requests["0"]) == {
        **defaults,
        "gen_ai.request.temperature": 0.0,
        "gen_ai.request.max_tokens": 2,
    }
    assert request_parameters(requests["1"]) == {
        **defaults,
        "gen_ai.request.temperature": 1.0,
        "gen_ai.request.max_tokens": 16,
        "gen_ai.request.top_k": 40.0,
        "gen_ai.request.seed": 1,
        "gen_ai.request.stop_sequences": ("END",),
        "vllm.request.priority": 5,
    }
    assert requests["1"].typed_attributes["gen_ai.request.top_k"] == ("double_value", 40.0)


def test_parameters_changed_between_calls_are_recorded(instrument, http_receiver):
    # One SamplingParams object, changed between calls: each call records the values it ran with,
    # although the core keeps converted attributes from one call to the next.
    instrument()
    from vllm import LLM, SamplingParams

    llm = LLM(MODEL)
    params = SamplingParams(temperature=0.5, max_tokens=3)
    llm.generate(["first call"], params)
    params.temperature = 0.25
    params.max_tokens = 4
    llm.generate(["second call"], params)
    llm.generate(["third call"], params)
    params.stop.append("END")  # a list changed in place
    llm.generate(["fourth call"], params)
    requests = exported(http_receiver).requests
    recorded = {
        rid: (
            s.attributes["gen_ai.request.temperature"],
            s.attributes["gen_ai.request.max_tokens"],
            s.attributes.get("gen_ai.request.stop_sequences"),
        )
        for rid, s in requests.items()
    }
    assert recorded == {"0": (0.5, 3, None), "1": (0.25, 4, None), "2": (0.25, 4, None), "3": (0.25, 4, ("END",))}


def test_a_decorated_add_request_is_instrumented_all_the_same(instrument, http_receiver, monkeypatch):
    # A decorator may care which arguments were passed at all, so a decorated add_request gets the
    # generic (*args, **kwargs) replacement instead of one with its own parameters: same telemetry.
    from vllm.v1.engine.llm_engine import LLMEngine

    original = LLMEngine.add_request
    calls = []

    @functools.wraps(original)
    def add_request(self, *args, **kwargs):
        calls.append(sorted(kwargs))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LLMEngine, "add_request", add_request)
    instrument()
    assert LLMEngine.add_request.__wrapped__ is add_request
    assert LLMEngine.add_request.__code__.co_filename == offline_module.__file__  # the generic one
    from vllm import LLM, SamplingParams

    llm = LLM(MODEL)
    llm.generate(["first prompt", "second prompt"], [SamplingParams(seed=7), SamplingParams(top_k=40)], priority=[0, 5])
    assert calls == [["lora_request", "priority"]] * 2  # as vLLM passed them, nothing added
    got = exported(http_receiver)
    (operation,) = got.operations
    requests = got.requests
    assert sorted(requests) == ["0", "1"]
    assert all(r.parent_span_id == operation.span_id for r in requests.values())
    assert requests["0"].attributes["gen_ai.request.seed"] == 7
    assert requests["1"].attributes["gen_ai.request.top_k"] == 40.0
    assert requests["1"].attributes["vllm.request.priority"] == 5
    assert operation.attributes["vllm.operation.request_count"] == 2


@BOTH_VERSIONS
@pytest.mark.parametrize("order", ["instrument_then_import", "import_then_instrument"])
def test_instrument_before_or_after_importing_vllm(instrument, http_receiver, vllm_tree, order):
    if order == "instrument_then_import":
        instrument()
        assert "vllm.entrypoints.llm" not in sys.modules
        import vllm

        assert "vllm.entrypoints.llm" not in sys.modules  # vllm.LLM is a lazy export
        LLM = vllm.LLM  # noqa: N806 - the class, as the application spells it
    else:
        from vllm import LLM

        instrument()
    from vllm.v1.engine.llm_engine import LLMEngine

    assert patched(LLMEngine, "add_request") and patched(LLMEngine, "step")
    generate_owner = next(c for c in LLM.__mro__ if "generate" in vars(c))
    assert generate_owner.__name__ == ("OfflineInferenceMixin" if vllm_tree == "0.32" else "LLM")
    assert patched(generate_owner, "generate") and patched(LLM, "__init__")

    LLM(MODEL).generate("Hello")
    got = exported(http_receiver)
    (operation,) = got.operations
    (request,) = got.requests.values()
    assert request.parent_span_id == operation.span_id
    assert operation.parent_span_id == 0  # no application span: the operation is a root


# ---- per-request stats on / off ------------------------------------------------------------------


def test_stats_are_turned_on_unless_the_user_turned_them_off(instrument, caplog):
    instrument()
    from vllm import LLM

    llm = LLM(MODEL)
    assert llm.engine_args.disable_log_stats is False and llm.llm_engine.log_stats
    assert LLM(MODEL, disable_log_stats=False).llm_engine.log_stats
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_disable_log_stats_is_kept_with_one_warning_and_telemetry_degrades(instrument, http_receiver, caplog):
    instrument()
    from vllm import LLM, SamplingParams

    llm = LLM(MODEL, disable_log_stats=True)
    other = LLM(MODEL, disable_log_stats=True)
    assert not llm.llm_engine.log_stats and not other.llm_engine.log_stats
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "disable_log_stats=True" in warnings[0].getMessage()

    outputs = llm.generate(["a b c", "d e"], SamplingParams(max_tokens=3))
    assert all(o.metrics is None for o in outputs)
    assert_degraded(exported(http_receiver), outputs)


def test_llm_created_before_instrument_is_degraded(instrument, http_receiver, caplog):
    from vllm import LLM, SamplingParams

    llm = LLM(MODEL)  # vLLM's offline default: no per-request stats
    instrument()
    outputs = llm.generate(["a b c", "d e"], SamplingParams(max_tokens=3))
    assert not llm.llm_engine.log_stats and all(o.metrics is None for o in outputs)
    assert not [r for r in caplog.records if r.name == LOGGER]  # the user did not turn stats off
    assert_degraded(exported(http_receiver), outputs)


def assert_degraded(got: Exported, outputs: list, operation: str = "text_completion") -> None:
    """No timing that only vLLM's stats can give; duration, tokens and finish reasons still there."""
    (op,) = got.operations
    requests = got.requests
    assert sorted(requests) == [o.request_id for o in outputs]
    for output in outputs:
        span = requests[output.request_id]
        assert span.parent_span_id == op.span_id
        assert span.attributes["gen_ai.operation.name"] == operation
        for key in LATENCY_FROM_STATS:
            assert key not in span.attributes, key
        assert span.span.end_time_unix_nano > span.span.start_time_unix_nano
        assert op.span.start_time_unix_nano <= span.span.start_time_unix_nano
        assert {k: span.attributes[k] for k in usage_of(output)} == usage_of(output)
    for name in HISTOGRAMS_FROM_STATS:
        assert name not in got.metrics, name
    assert got.count("gen_ai.server.request.duration", **{"gen_ai.operation.name": operation}) == len(outputs)
    assert got.count("gen_ai.client.token.usage", **{"gen_ai.token.type": "output"}) == len(outputs)
    assert got.count("gen_ai.client.operation.duration") == 1


# ---- vLLM 0.11.0: metrics None, chat -> generate --------------------------------------------------


@V0_11_0
def test_v0_11_chat_through_generate_is_one_chat_operation_without_invented_timings(instrument, http_receiver):
    instrument()
    from vllm import LLM

    llm = LLM(MODEL)
    assert llm.llm_engine.log_stats  # stats logging on, yet 0.11.0 attaches no stats to outputs
    conversations = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "how are you"}]]
    outputs = llm.chat(conversations)
    assert all(o.metrics is None for o in outputs)
    got = exported(http_receiver)

    (operation,) = got.operations
    assert operation.name == f"chat {MODEL}"
    assert operation.attributes == {**base_attributes("chat"), "vllm.operation.request_count": 2}
    assert {s.name for s in got.requests.values()} == {f"chat {MODEL}"}
    assert_degraded(got, outputs, operation="chat")
    ((attributes, point),) = got.points("gen_ai.client.operation.duration")
    assert attributes == base_attributes("chat")
    assert point.count == 1


# ---- pooling and beam search -------------------------------------------------------------------

POOLING_CALLS = {
    "encode": lambda llm: llm.encode(["a b", "c d e"]),
    "embed": lambda llm: llm.embed(["a b", "c d e"]),
    "classify": lambda llm: llm.classify(["a b", "c d e"]),
    "score": lambda llm: llm.score("query", ["doc one", "doc two"]),
}


@BOTH_VERSIONS
@pytest.mark.parametrize("method", list(POOLING_CALLS))
def test_pooling_is_one_embeddings_operation_with_input_tokens_only(instrument, http_receiver, vllm_tree, method):
    instrument()
    from vllm import LLM

    llm = LLM(MODEL, runner="pooling")
    POOLING_CALLS[method](llm)
    got = exported(http_receiver)

    (operation,) = got.operations  # embed -> encode, score -> embed -> encode: one operation
    assert operation.name == f"embeddings {MODEL}"
    # 0.11.0's score embeds both sides: 1 + 2 requests; 0.32 scores 2 pairs.
    expected = 3 if (method, vllm_tree) == ("score", "0.11.0") else 2
    assert operation.attributes["vllm.operation.request_count"] == expected
    requests = got.requests
    assert len(requests) == expected
    for request_id, span in requests.items():
        assert span.parent_span_id == operation.span_id
        assert span.attributes == {
            **base_attributes("embeddings"),
            "gen_ai.response.id": request_id,
            "gen_ai.usage.input_tokens": span.attributes["gen_ai.usage.input_tokens"],
            "gen_ai.usage.cache_read.input_tokens": 0,
        }
        assert span.attributes["gen_ai.usage.input_tokens"] >= 2
    assert [a["gen_ai.token.type"] for a, _ in got.points("gen_ai.client.token.usage")] == ["input"]
    assert got.count("gen_ai.client.operation.duration") == 1
    assert "gen_ai.server.time_to_first_token" not in got.metrics


@BOTH_VERSIONS
def test_beam_search_is_one_operation_without_per_step_request_spans(instrument, http_receiver):
    instrument()
    from vllm import LLM
    from vllm.sampling_params import BeamSearchParams

    llm = LLM(MODEL)
    (result,) = llm.beam_search([{"prompt": "once upon a time"}], BeamSearchParams(beam_width=2, max_tokens=3))
    assert len(result.sequences) == 2
    assert llm.llm_engine.engine_core.steps >= 3  # one engine round per search step
    got = exported(http_receiver)
    (operation,) = got.spans
    assert operation.name == f"text_completion {MODEL}"
    assert operation.span.status.code == Status.STATUS_CODE_UNSET
    assert got.requests == {}
    assert got.count("gen_ai.client.operation.duration") == 1
    assert "gen_ai.server.request.duration" not in got.metrics


# ---- enqueue + wait_for_completion (0.32) ------------------------------------------------------


def test_enqueued_requests_are_children_of_wait_for_completion_with_their_own_operation(
    app_tracer, instrument, http_receiver
):
    instrument()
    from vllm import LLM, SamplingParams

    llm = LLM(MODEL)
    params = SamplingParams(max_tokens=2, ignore_eos=True)  # all finish in the same step
    assert llm.enqueue(["a b", "c d"], params) == ["0", "1"]
    assert llm.enqueue_chat([{"role": "user", "content": "hi"}], params) == ["2"]
    with app_tracer.start_as_current_span("app") as app:
        outputs = llm.wait_for_completion()
    assert [o.request_id for o in outputs] == ["0", "1", "2"]
    got = exported(http_receiver)

    (operation,) = got.operations
    assert operation.parent_span_id == span_id_of(app)
    assert operation.attributes["vllm.operation.request_count"] == 3
    requests = got.requests
    for span in requests.values():
        assert span.parent_span_id == operation.span_id
        assert span.trace_id == operation.trace_id
    names = {i: s.attributes["gen_ai.operation.name"] for i, s in requests.items()}
    assert names == {"0": "text_completion", "1": "text_completion", "2": "chat"}
    assert requests["2"].name == f"chat {MODEL}"


def test_enqueued_requests_finishing_in_separate_steps_keep_their_operation(app_tracer, instrument, http_receiver):
    instrument()
    from vllm import LLM, SamplingParams

    llm = LLM(MODEL)
    llm.enqueue(["a b"], SamplingParams(max_tokens=1, ignore_eos=True))
    llm.enqueue_chat([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=3, ignore_eos=True))
    with app_tracer.start_as_current_span("app") as app:
        llm.wait_for_completion()
    got = exported(http_receiver)
    (operation,) = got.operations
    assert operation.parent_span_id == span_id_of(app)
    assert operation.name == f"text_completion {MODEL}"  # named after the first enqueued request
    requests = got.requests
    assert {i: s.parent_span_id for i, s in requests.items()} == {"0": operation.span_id, "1": operation.span_id}
    assert requests["0"].attributes["gen_ai.operation.name"] == "text_completion"
    assert requests["1"].attributes["gen_ai.operation.name"] == "chat"
    assert got.count("gen_ai.server.request.duration", **{"gen_ai.operation.name": "chat"}) == 1


# ---- errors and aborts -------------------------------------------------------------------------


@BOTH_VERSIONS
def test_engine_error_mid_batch_reaches_the_caller_unchanged_and_ends_pending_requests(
    app_tracer, instrument, http_receiver
):
    instrument()
    from vllm import LLM, SamplingParams
    from vllm.v1.engine.exceptions import EngineDeadError

    llm = LLM(MODEL, max_num_seqs=2)
    error = EngineDeadError("EngineCore encountered an issue")
    # Steps 1-2 finish requests 0 and 1 (2 tokens each); step 3 raises while 2 and 3 run.
    llm.llm_engine.engine_core.raise_at_step(3, error)
    with app_tracer.start_as_current_span("app") as app:
        with pytest.raises(EngineDeadError) as info:
            llm.generate(["a", "b", "c", "d"], SamplingParams(max_tokens=2, ignore_eos=True))

    assert info.value is error
    assert type(info.value) is EngineDeadError
    assert (error.__cause__, error.__context__, error.__suppress_context__) == (None, None, False)
    assert isinstance(error.__traceback__, types.TracebackType)
    assert info.traceback[-1].name == "step"  # raised where the engine raised it
    assert Path(info.traceback[-1].path).name == "engine_core.py"

    got = exported(http_receiver)
    (operation,) = got.operations
    assert operation.parent_span_id == span_id_of(app)
    assert operation.span.status.code == Status.STATUS_CODE_ERROR
    assert operation.attributes["error.type"] == "EngineDeadError"
    assert operation.attributes["vllm.operation.request_count"] == 4
    requests = got.requests
    assert sorted(requests) == ["0", "1", "2", "3"]
    for request_id in ("0", "1"):  # finished before the error
        span = requests[request_id]
        assert span.span.status.code == Status.STATUS_CODE_UNSET
        assert "error.type" not in span.attributes
        assert span.attributes["gen_ai.response.finish_reasons"] == ("length",)
    for request_id in ("2", "3"):  # pending when it raised
        span = requests[request_id]
        assert span.parent_span_id == operation.span_id
        assert span.span.status.code == Status.STATUS_CODE_ERROR
        assert span.attributes["error.type"] == "EngineDeadError"
        assert "gen_ai.response.finish_reasons" not in span.attributes
        assert span.span.end_time_unix_nano <= operation.span.end_time_unix_nano

    ((attributes, point),) = got.points("gen_ai.client.operation.duration")
    assert attributes == {**base_attributes(), "error.type": "EngineDeadError"}
    assert point.count == 1
    assert got.count("gen_ai.server.request.duration", **{"error.type": "EngineDeadError"}) == 2
    assert got.count("gen_ai.server.request.duration") == 4
    # The engine failure itself, once (the step that raised).
    failures = got.metrics["vllm.engine.failures"]
    assert failures.point_attributes() == [
        {
            "gen_ai.provider.name": "vllm",
            "gen_ai.request.model": MODEL,
            "vllm.engine.index": 0,
            "error.type": "EngineDeadError",
        }
    ]
    assert [p.as_int for p in failures.points] == [1]


def test_errors_inside_the_instrumentation_on_an_engine_failure_never_reach_the_caller(
    instrument, http_receiver, monkeypatch
):
    # Tokens so far come from the engine's request states, which only real vLLM has
    # (tests/real/test_failures_real.py); here, what the shim does when reading them breaks.
    instrumentor = instrument()
    from opentelemetry.instrumentation.vllm import _vllm
    from vllm import LLM, SamplingParams
    from vllm.v1.engine.exceptions import EngineDeadError

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(_vllm, "unfinished_request_states", broken)
    llm = LLM(MODEL, max_num_seqs=2)
    error = EngineDeadError("EngineCore encountered an issue")
    llm.llm_engine.engine_core.raise_at_step(2, error)
    with pytest.raises(EngineDeadError) as info:
        llm.generate(["a", "b"], SamplingParams(max_tokens=3, ignore_eos=True))
    assert info.value is error
    assert instrumentor._offline._failed_engines == {}
    requests = exported(http_receiver).requests
    assert {rid: s.attributes.get("error.type") for rid, s in requests.items()} == {
        "0": "EngineDeadError",
        "1": "EngineDeadError",
    }


def test_aborted_requests(instrument, http_receiver):
    instrument()
    from vllm import LLM, SamplingParams

    llm = LLM(MODEL)
    core = llm.llm_engine.engine_core
    core.abort_at_step(2, ["1"])  # reported: finished, finish_reason "abort"
    core.abort_at_step(3, ["2"], reported=False)  # vanishes without an output
    outputs = llm.generate(["a", "b", "c"], SamplingParams(max_tokens=4, ignore_eos=True))
    assert [(o.request_id, o.outputs[0].finish_reason) for o in outputs] == [("0", "length"), ("1", "abort")]
    got = exported(http_receiver)
    (operation,) = got.operations
    assert operation.span.status.code == Status.STATUS_CODE_UNSET
    requests = got.requests
    assert requests["1"].attributes["gen_ai.response.finish_reasons"] == ("abort",)
    assert requests["1"].attributes["gen_ai.usage.output_tokens"] == 1
    assert "error.type" not in requests["1"].attributes
    # Never reported by vLLM: its span ends with the operation, marked aborted.
    assert requests["2"].attributes["error.type"] == "aborted"
    assert requests["2"].span.status.code == Status.STATUS_CODE_ERROR
    assert requests["2"].span.end_time_unix_nano <= operation.span.end_time_unix_nano


def test_a_request_the_core_does_not_read_is_recorded_by_the_shim_within_its_operation(instrument, http_receiver):
    # A preempted request's stats count the preemption, an attribute only the shim adds: the core's
    # reader hands that request back (its operation, parameters and add time) and the shim records
    # it field by field, in the same operation, beside the requests the core recorded.
    instrumentor = instrument()
    from vllm import LLM, SamplingParams

    llm = LLM(MODEL)
    llm.llm_engine.engine_core.preempt_at_step(1, ["1"])
    params = SamplingParams(temperature=0.5, seed=7, max_tokens=3, ignore_eos=True)
    outputs = llm.generate(["a b", "c d", "e f"], params)
    assert [o.metrics.num_preemptions for o in outputs] == [0, 1, 0]
    got = exported(http_receiver)

    (operation,) = got.operations
    assert operation.attributes["vllm.operation.request_count"] == 3
    requests = got.requests
    assert sorted(requests) == ["0", "1", "2"]
    for output in outputs:
        span = requests[output.request_id]
        assert span.trace_id == operation.trace_id
        assert span.parent_span_id == operation.span_id
        assert span.span.start_time_unix_nano == int(output.metrics.arrival_time * 1e9)
        attributes = span.attributes
        attributes.pop("gen_ai.latency.e2e")
        preemptions = {"vllm.request.num_preemptions": 1} if output.request_id == "1" else {}
        assert attributes == {
            **base_attributes(),
            "gen_ai.response.id": output.request_id,
            **usage_of(output),
            **timings_of(output.metrics),
            "gen_ai.request.temperature": 0.5,
            "gen_ai.request.top_p": 1.0,
            "gen_ai.request.frequency_penalty": 0.0,
            "gen_ai.request.presence_penalty": 0.0,
            "gen_ai.request.seed": 7,
            "gen_ai.request.max_tokens": 3,
            **preemptions,
        }
    assert got.count("gen_ai.server.request.duration") == 3
    # Nothing is left behind in either store.
    assert instrumentor._offline._pending == {}
    assert len(instrumentor._offline._requests) == 0


def test_nothing_is_left_pending_after_calls_that_fail_or_abort(instrument, http_receiver):
    instrumentor = instrument()
    from vllm import LLM, SamplingParams
    from vllm.v1.engine.exceptions import EngineDeadError

    llm = LLM(MODEL, max_num_seqs=2)
    core = llm.llm_engine.engine_core
    core.abort_at_step(2, ["1"], reported=False)
    llm.generate(["a", "b", "c"], SamplingParams(max_tokens=4, ignore_eos=True))
    # Steps +1 to +3 finish "3" and "4" (3 tokens each); step +4 raises while "5" and "6" run.
    core.raise_at_step(core.steps + 4, EngineDeadError("EngineCore encountered an issue"))
    with pytest.raises(EngineDeadError):
        llm.generate(["d", "e", "f", "g"], SamplingParams(max_tokens=3, ignore_eos=True))
    assert instrumentor._offline._pending == {}
    assert len(instrumentor._offline._requests) == 0
    requests = exported(http_receiver).requests
    assert {rid: s.attributes.get("error.type") for rid, s in requests.items()} == {
        "0": None,
        "1": "aborted",
        "2": None,
        "3": None,
        "4": None,
        "5": "EngineDeadError",
        "6": "EngineDeadError",
    }


def test_wait_for_completion_error_ends_the_enqueued_requests(instrument, http_receiver):
    instrument()
    from vllm import LLM, SamplingParams
    from vllm.v1.engine.exceptions import EngineDeadError

    llm = LLM(MODEL)
    llm.enqueue(["a b", "c d"], SamplingParams(max_tokens=2, ignore_eos=True))
    error = EngineDeadError("EngineCore encountered an issue")
    llm.llm_engine.engine_core.raise_at_step(1, error)
    with pytest.raises(EngineDeadError) as info:
        llm.wait_for_completion()
    assert info.value is error
    got = exported(http_receiver)
    (operation,) = got.operations
    assert operation.attributes["error.type"] == "EngineDeadError"
    assert operation.attributes["vllm.operation.request_count"] == 2
    requests = got.requests
    assert sorted(requests) == ["0", "1"]
    for span in requests.values():
        assert span.parent_span_id == operation.span_id
        assert span.attributes["error.type"] == "EngineDeadError"


# ---- metrics across calls ----------------------------------------------------------------------


def test_metric_counts_follow_requests_with_stats_and_calls(instrument, http_receiver):
    instrument()
    from vllm import LLM

    with_stats, without_stats = LLM(MODEL), LLM(MODEL, disable_log_stats=True)
    with_stats.generate(["a b", "c d", "e f"])
    without_stats.generate(["g h", "i j"])
    with_stats.chat([{"role": "user", "content": "hi"}])
    with_stats.embed(["k l"])
    got = exported(http_receiver)

    text, chat, embeddings = ({"gen_ai.operation.name": o} for o in ("text_completion", "chat", "embeddings"))
    assert got.count("gen_ai.server.time_to_first_token", **text) == 3  # the 3 requests with stats
    assert got.count("gen_ai.server.time_to_first_token", **chat) == 1
    assert got.count("gen_ai.server.time_to_first_token") == 4
    assert got.count("gen_ai.server.request.duration", **text) == 5
    assert got.count("gen_ai.server.request.duration") == 7
    assert got.count("gen_ai.client.operation.duration", **text) == 2  # one per call
    assert got.count("gen_ai.client.operation.duration", **chat) == 1
    assert got.count("gen_ai.client.operation.duration", **embeddings) == 1
    assert got.count("gen_ai.client.operation.duration") == 4
    assert len(got.operations) == 4


# ---- content capture ---------------------------------------------------------------------------


def test_content_is_not_captured_by_default(instrument, http_receiver):
    instrument()
    from vllm import LLM

    llm = LLM(MODEL)
    llm.generate(["secret prompt"])
    llm.chat([{"role": "user", "content": "secret question"}])
    spans = exported(http_receiver).spans
    assert len(spans) == 4
    for span in spans:
        for key in CONTENT_KEYS:
            assert key not in span.attributes


@BOTH_VERSIONS
def test_content_capture_records_prompts_completions_and_roles_truncated(instrument, http_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_VLLM_CONTENT_MAX_LENGTH", "12")
    instrument()
    from vllm import LLM, SamplingParams

    llm = LLM(MODEL)
    outputs = llm.generate(
        ["Hello there, how are you?", {"prompt_token_ids": list(range(1, 16))}], SamplingParams(n=2, max_tokens=3)
    )
    (chat_output,) = llm.chat(
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Name a colour please"}]},
        ]
    )
    requests = exported(http_receiver).requests

    def content(request_id: str) -> tuple[Any, Any]:
        attributes = requests[request_id].attributes
        return json.loads(attributes["gen_ai.input.messages"]), json.loads(attributes["gen_ai.output.messages"])

    def completions(output: Any) -> list[dict]:
        return [
            {"role": "assistant", "parts": [{"type": "text", "content": c.text[:12]}], "finish_reason": c.finish_reason}
            for c in output.outputs
        ]

    assert content("0") == (
        [{"role": "user", "parts": [{"type": "text", "content": "Hello there,"}]}],
        completions(outputs[0]),
    )
    assert len(content("0")[1]) == 2  # n=2: both completions
    assert content("1") == (
        [{"role": "user", "parts": [{"type": "token_ids", "token_ids": list(range(1, 13))}]}],
        completions(outputs[1]),
    )
    assert content("2") == (
        [
            {"role": "system", "parts": [{"type": "text", "content": "You are ters"}]},
            {"role": "user", "parts": [{"type": "text", "content": "Name a colou"}]},
        ],
        completions(chat_output),
    )


# ---- uninstrument ------------------------------------------------------------------------------

PATCHED = {
    "0.32": {
        ("LLM", "__init__"),
        ("OfflineInferenceMixin", "generate"),
        ("OfflineInferenceMixin", "chat"),
        ("OfflineInferenceMixin", "enqueue"),
        ("OfflineInferenceMixin", "enqueue_chat"),
        ("OfflineInferenceMixin", "wait_for_completion"),
        ("PoolingOfflineMixin", "encode"),
        ("PoolingOfflineMixin", "embed"),
        ("PoolingOfflineMixin", "classify"),
        ("PoolingOfflineMixin", "score"),
        ("BeamSearchOfflineMixin", "beam_search"),
        ("LLMEngine", "add_request"),
        ("LLMEngine", "step"),
    },
    "0.11.0": {
        ("LLM", "__init__"),
        ("LLM", "generate"),
        ("LLM", "chat"),
        ("LLM", "encode"),
        ("LLM", "embed"),
        ("LLM", "classify"),
        ("LLM", "score"),
        ("LLM", "beam_search"),
        ("LLMEngine", "add_request"),
        ("LLMEngine", "step"),
    },
}


@BOTH_VERSIONS
def test_uninstrument_restores_every_patched_attribute(instrument, http_receiver, vllm_tree):
    from vllm.entrypoints.llm import LLM
    from vllm.v1.engine.llm_engine import LLMEngine

    classes = [c for c in LLM.__mro__ if c is not object] + [LLMEngine]
    before = {c: dict(vars(c)) for c in classes}
    instrumentor = instrument()
    changed = {(c.__name__, n) for c in classes for n, v in vars(c).items() if v is not before[c].get(n)}
    assert changed == PATCHED[vllm_tree]
    assert all(patched(c, n) for c in classes for n in vars(c) if (c.__name__, n) in changed)

    instrumentor.uninstrument()
    for cls in classes:
        assert vars(cls).keys() == before[cls].keys(), cls
        for name, value in before[cls].items():
            assert vars(cls)[name] is value, (cls, name)
    http_receiver.requests.clear()
    LLM(MODEL).generate(["after uninstrument"])
    assert force_flush(5.0)
    assert http_receiver.spans() == []

    instrument()  # again, on the classes already imported
    assert all(patched(c, n) for c in classes for n in vars(c) if (c.__name__, n) in PATCHED[vllm_tree])
    LLM(MODEL).generate(["instrumented again"])
    assert len(exported(http_receiver).spans) == 2


@BOTH_VERSIONS
def test_instrument_uninstrument_cycles_leave_vllm_exactly_as_it_was(instrument, http_receiver, vllm_tree):
    from vllm.entrypoints.llm import LLM
    from vllm.v1.engine.llm_engine import LLMEngine

    classes = [c for c in LLM.__mro__ if c is not object] + [LLMEngine]
    before = {c: dict(vars(c)) for c in classes}
    for cycle in range(3):
        instrumentor = instrument()
        # Exactly the same patches each time: never a wrapper around an earlier wrapper.
        changed = {(c.__name__, n) for c in classes for n, v in vars(c).items() if v is not before[c].get(n)}
        assert changed == PATCHED[vllm_tree], cycle
        for cls in classes:
            for name in vars(cls):
                if (cls.__name__, name) in changed:
                    assert vars(cls)[name].__wrapped__ is before[cls][name], (cycle, cls, name)
        LLM(MODEL).generate([f"cycle {cycle}"])
        instrumentor.uninstrument()
        for cls in classes:
            assert vars(cls) == before[cls], (cycle, cls)
            assert all(vars(cls)[name] is value for name, value in before[cls].items()), (cycle, cls)
    # Each instrumented cycle recorded its call once; uninstrumented calls record nothing.
    LLM(MODEL).generate(["not instrumented"])
    assert force_flush(5.0)
    names = sorted(s.attributes.get("gen_ai.response.id", "operation") for s in http_receiver.spans())
    assert names == ["0", "0", "0", "operation", "operation", "operation"]


# ---- threads -----------------------------------------------------------------------------------


@BOTH_VERSIONS
def test_concurrent_generate_calls_keep_their_requests_apart(app_tracer, instrument, http_receiver):
    instrument()
    from vllm import LLM, SamplingParams

    threads_count, prompts_per_thread = 8, 3
    llms = [LLM(f"fake/model-{i}") for i in range(threads_count)]
    for llm in llms:
        llm.llm_engine.engine_core.forward_delay_s = 0.001  # let the threads interleave step by step
    barrier = threading.Barrier(threads_count)
    app_span_ids: dict[str, int] = {}
    failures: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with app_tracer.start_as_current_span(f"thread {i}") as span:
                app_span_ids[f"fake/model-{i}"] = span_id_of(span)
                barrier.wait(timeout=5)
                prompts = [f"thread {i} prompt {j}" for j in range(prompts_per_thread)]
                llms[i].generate(prompts, SamplingParams(max_tokens=4, ignore_eos=True))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert failures == []
    got = exported(http_receiver)

    operations = {s.attributes["gen_ai.request.model"]: s for s in got.operations}
    assert sorted(operations) == sorted(app_span_ids)
    requests = [s for s in got.spans if "gen_ai.response.id" in s.attributes]
    assert len(requests) == threads_count * prompts_per_thread
    assert len({(s.attributes["gen_ai.request.model"], s.attributes["gen_ai.response.id"]) for s in requests}) == len(
        requests
    )
    for model, operation in operations.items():
        assert operation.parent_span_id == app_span_ids[model]
        assert operation.attributes["vllm.operation.request_count"] == prompts_per_thread
        mine = [s for s in requests if s.parent_span_id == operation.span_id]
        assert sorted(s.attributes["gen_ai.response.id"] for s in mine) == ["0", "1", "2"]
        assert {s.attributes["gen_ai.request.model"] for s in mine} == {model}
        assert got.count("gen_ai.server.request.duration", **{"gen_ai.request.model": model}) == prompts_per_thread
        assert got.count("gen_ai.client.operation.duration", **{"gen_ai.request.model": model}) == 1
    assert got.count("gen_ai.server.request.duration") == threads_count * prompts_per_thread


def test_no_operation_is_lost_when_threads_switch_often(instrument, http_receiver, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    instrument()
    from vllm import LLM, SamplingParams

    threads_count = 8
    llms = [LLM(f"fake/model-{i}", max_num_seqs=512) for i in range(threads_count)]
    prompts = [f"prompt {j}" for j in range(200)]
    params = SamplingParams(max_tokens=2, ignore_eos=True)
    failures: list[BaseException] = []

    def run(llm: Any) -> None:
        try:
            llm.generate(prompts, params)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    calls = 0
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and "could not record an operation span" not in caplog.text:
            threads = [threading.Thread(target=run, args=(llm,)) for llm in llms]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            calls += threads_count
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
    # Counted on the metric: thousands of request spans may exceed the span queue, metrics do not.
    assert exported(http_receiver).count("gen_ai.client.operation.duration") == calls
