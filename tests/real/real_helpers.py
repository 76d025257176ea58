"""Checks shared by the real-vLLM tests: what a span must say about the ``RequestOutput`` it stands for.

Everything here compares decoded OTLP (``otlp_receivers.ReceivedSpan`` / ``ReceivedMetric``) with the
objects real vLLM returned. Importing this module imports neither vLLM nor anything that starts a
process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from otlp_receivers import HttpReceiver, ReceivedMetric, ReceivedSpan

SCOPE_NAME = "opentelemetry.instrumentation.vllm"
OTLP_SPAN_KIND_INTERNAL = 1  # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_CODE_UNSET = 0

TTFT = "gen_ai.latency.time_to_first_token"
TPOT = "gen_ai.latency.time_per_output_token"
QUEUE = "gen_ai.latency.time_in_queue"
PREFILL = "gen_ai.latency.time_in_model_prefill"
DECODE = "gen_ai.latency.time_in_model_decode"
INFERENCE = "gen_ai.latency.time_in_model_inference"
E2E = "gen_ai.latency.e2e"
LATENCY_ATTRIBUTES = (TTFT, TPOT, QUEUE, PREFILL, DECODE, INFERENCE, E2E)

METRIC_TTFT = "gen_ai.server.time_to_first_token"
METRIC_TPOT = "gen_ai.server.time_per_output_token"
METRIC_REQUEST_DURATION = "gen_ai.server.request.duration"
METRIC_OPERATION_DURATION = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE = "gen_ai.client.token.usage"

# Relative tolerance for values the shim must compute exactly as vLLM does (same float operations).
REL = 1e-9
# Span timestamps are integer nanoseconds made from float seconds: allow 1 µs.
TS_SLACK_NS = 1_000


def close(actual: float, expected: float, rel: float = REL) -> bool:
    return actual == expected or math.isclose(actual, expected, rel_tol=rel, abs_tol=0.0)


SERVICE_NAME = "otel-vllm-real-tier"
# What makes vLLM run on a small CPU-only machine (see smoke_vllm.py); the caller's values win.
VLLM_ENVIRONMENT = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "TORCHDYNAMO_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def otlp_process_environment(endpoint: str, service_name: str, **extra: str) -> dict[str, str]:
    """The environment of a vLLM process the test starts: this one's without any OTEL_* variable,
    plus what vLLM needs on this machine, exporting traces and metrics over OTLP/HTTP to ``endpoint``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(VLLM_ENVIRONMENT)
    env.update(
        OTEL_SERVICE_NAME=service_name,
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_LOGS_EXPORTER="none",
    )
    env.update(extra)
    return env


# disable_log_stats is NOT passed: the instrumentation must turn vLLM's per-request stats on itself.
ENGINE_KWARGS: dict[str, Any] = {"dtype": "float32", "enforce_eager": True, "max_model_len": 512}


def vllm_version() -> tuple[int, ...]:
    import vllm
    from packaging.version import Version

    return Version(vllm.__version__).release


def expects_metrics() -> bool:
    """vLLM fills RequestOutput.metrics from 0.11.1 on, when stats are on (the instrumentation's
    default); 0.8 - 0.11.0 always return None (the degraded path)."""
    return vllm_version() >= (0, 11, 1)


def shutdown_llm(llm: Any) -> None:
    """Stops the EngineCore process (``LLM`` has no public shutdown in every version)."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        with contextlib.suppress(Exception):
            core.shutdown()
    gc.collect()


def pooling_engine_kwargs() -> dict[str, Any]:
    from vllm.engine.arg_utils import EngineArgs

    fields = {f.name for f in dataclasses.fields(EngineArgs)}
    return {"runner": "pooling"} if "runner" in fields else {"task": "embed"}


# ---- what vLLM itself says --------------------------------------------------------------------


def expected_timings(metrics: Any) -> dict[str, float | None]:
    """The per-request latencies exactly as vLLM derives them from a ``RequestStateStats`` for its stat
    loggers when a request finishes (vllm/v1/metrics/stats.py). TPOT is None for fewer than two generated
    tokens: vLLM records 0 there, the instrumentation records nothing (no token after the first)."""
    generated = metrics.num_generation_tokens
    decode = metrics.last_token_ts - metrics.first_token_ts
    return {
        TTFT: metrics.first_token_latency,
        QUEUE: metrics.scheduled_ts - metrics.queued_ts,
        PREFILL: metrics.first_token_ts - metrics.scheduled_ts,
        DECODE: decode,
        INFERENCE: metrics.last_token_ts - metrics.scheduled_ts,
        TPOT: decode / (generated - 1) if generated > 1 else None,
    }


def completions(output: Any) -> list | None:
    outputs = getattr(output, "outputs", None)
    return outputs if isinstance(outputs, list) else None


# ---- spans ------------------------------------------------------------------------------------


def children(spans: Iterable[ReceivedSpan], parent_span_id: int) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_span_id == parent_span_id]


def by_response_id(spans: Iterable[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    out: dict[str, ReceivedSpan] = {}
    for s in spans:
        rid = s.attributes.get("gen_ai.response.id")
        if rid is not None:
            assert rid not in out, f"two spans with gen_ai.response.id={rid!r}"
            out[rid] = s
    return out


def check_common(span: ReceivedSpan, operation: str, model: str, service_name: str | None) -> None:
    a = span.attributes
    assert span.name == f"{operation} {model}", span.name
    assert a["gen_ai.operation.name"] == operation
    assert a["gen_ai.provider.name"] == "vllm"
    assert a["gen_ai.request.model"] == model
    assert a["gen_ai.response.model"] == model
    assert span.span.kind == OTLP_SPAN_KIND_INTERNAL
    assert span.scope.name == SCOPE_NAME
    if service_name is not None:
        assert span.resource.get("service.name") == service_name, span.resource
    assert span.span.end_time_unix_nano >= span.span.start_time_unix_nano > 0


def check_operation_span(
    span: ReceivedSpan,
    *,
    operation: str,
    model: str,
    parent: Any | None,
    request_count: int | None,
    call_start_ns: int,
    call_end_ns: int,
    service_name: str | None = None,
) -> None:
    """``parent``: the SDK span (``opentelemetry.sdk.trace.Span``) that was current during the call,
    or None for a root operation."""
    check_common(span, operation, model, service_name)
    if parent is None:
        assert span.parent_span_id == 0, "operation span has a parent although no span was current"
    else:
        ctx = parent.get_span_context()
        assert span.trace_id == ctx.trace_id, "operation span is not in the caller's trace"
        assert span.parent_span_id == ctx.span_id, "operation span is not a child of the caller's span"
    if request_count is None:  # no user requests (beam search): no count, or 0
        assert span.attributes.get("vllm.operation.request_count", 0) == 0, span.attributes
    else:
        assert span.attributes.get("vllm.operation.request_count") == request_count, span.attributes
    assert span.span.status.code == STATUS_CODE_UNSET, span.span.status
    # The span covers the call (its start and end are taken inside the wrapper).
    assert call_start_ns <= span.span.start_time_unix_nano <= span.span.end_time_unix_nano <= call_end_ns


def check_request_span(
    span: ReceivedSpan,
    output: Any,
    operation_span: ReceivedSpan,
    *,
    operation: str,
    model: str,
    params: Any = None,
    expect_metrics: bool,
    service_name: str | None = None,
    enqueued_before: int | None = None,
) -> None:
    """One request span against the ``RequestOutput`` (or ``PoolingRequestOutput``) vLLM returned.

    ``enqueued_before``: the request was added (LLM.enqueue) before its operation
    (wait_for_completion) started, no earlier than this wall-clock time (ns); its span then starts
    before its operation span."""
    a = span.attributes
    check_common(span, operation, model, service_name)
    assert a["gen_ai.response.id"] == str(output.request_id)
    assert span.trace_id == operation_span.trace_id
    assert span.parent_span_id == operation_span.span_id, "request span is not a child of its operation span"
    assert span.span.status.code == STATUS_CODE_UNSET, span.span.status
    assert "error.type" not in a

    # Tokens, from the token ids vLLM returned.
    assert a["gen_ai.usage.input_tokens"] == len(output.prompt_token_ids)
    outs = completions(output)
    if outs is not None:
        assert a["gen_ai.usage.output_tokens"] == sum(len(c.token_ids) for c in outs)
        assert list(a["gen_ai.response.finish_reasons"]) == [c.finish_reason for c in outs]
    else:  # pooling: nothing generated
        assert "gen_ai.usage.output_tokens" not in a
        assert "gen_ai.response.finish_reasons" not in a
    cached = getattr(output, "num_cached_tokens", None)
    if isinstance(cached, int):
        assert a["gen_ai.usage.cache_read.input_tokens"] == cached

    # Request parameters, from the SamplingParams this request ran with.
    if params is not None and hasattr(params, "max_tokens"):
        check_request_parameters(a, params)

    # Timings.
    start, end = span.span.start_time_unix_nano, span.span.end_time_unix_nano
    op_start, op_end = operation_span.span.start_time_unix_nano, operation_span.span.end_time_unix_nano
    metrics = getattr(output, "metrics", None)
    if expect_metrics:
        assert metrics is not None, (
            "RequestOutput.metrics is None: the instrumentation did not turn vLLM's per-request stats on"
        )
    if metrics is None:
        present = [k for k in LATENCY_ATTRIBUTES if k in a]
        assert not present, f"latency attributes without per-request stats: {present}"
        # Without stats the span runs from add_request to the step that finished the request.
        assert (op_start if enqueued_before is None else enqueued_before) <= start <= end <= op_end
        return
    for key, value in expected_timings(metrics).items():
        if value is None:
            assert key not in a, f"{key}={a.get(key)} although vLLM has no value for it"
        else:
            assert key in a, f"{key} missing; vLLM says {value}"
            assert close(a[key], value), f"{key}: span {a[key]!r} != vLLM {value!r}"
    assert abs(start - int(metrics.arrival_time * 1e9)) <= TS_SLACK_NS, (
        f"span start {start} != arrival_time {metrics.arrival_time}"
    )
    duration = (end - start) / 1e9
    assert abs(a[E2E] - duration) <= 0.005, f"e2e {a[E2E]} vs span duration {duration}"
    assert a[TTFT] <= a[E2E] + 1e-6
    # The request happened inside the call (or, when enqueued, between the enqueue and the call's end).
    earliest = op_start if enqueued_before is None else enqueued_before
    assert earliest - TS_SLACK_NS <= start <= end <= op_end, (earliest, start, end, op_end)


def check_request_parameters(a: Mapping[str, Any], params: Any) -> None:
    assert a.get("gen_ai.request.max_tokens") == params.max_tokens
    assert a.get("gen_ai.request.temperature") == float(params.temperature)
    assert a.get("gen_ai.request.top_p") == float(params.top_p)
    if params.seed is None:
        assert "gen_ai.request.seed" not in a
    else:
        assert a.get("gen_ai.request.seed") == params.seed
    if params.n == 1:
        assert "gen_ai.request.choice.count" not in a
    else:
        assert a.get("gen_ai.request.choice.count") == params.n
    if params.top_k and params.top_k > 0:
        assert a.get("gen_ai.request.top_k") == float(params.top_k)
    else:
        assert "gen_ai.request.top_k" not in a


def check_batch(
    trace_spans: Sequence[ReceivedSpan],
    outputs: Sequence[Any],
    *,
    operation: str,
    model: str,
    parent: Any,
    call_start_ns: int,
    call_end_ns: int,
    params: Any = None,
    expect_metrics: bool,
    service_name: str | None = None,
    enqueued: bool = False,
) -> tuple[ReceivedSpan, dict[str, ReceivedSpan]]:
    """One LLM call made inside ``parent``: exactly one operation span under ``parent`` and exactly
    one request span per output under it, each checked. ``params``: one SamplingParams for all, or a
    list (one per output). Returns (operation span, request spans by response id)."""
    ctx = parent.get_span_context()
    ops = children(trace_spans, ctx.span_id)
    assert len(ops) == 1, f"expected one operation span under the caller's span, got {[s.name for s in ops]}"
    op = ops[0]
    check_operation_span(
        op,
        operation=operation,
        model=model,
        parent=parent,
        request_count=len(outputs),
        call_start_ns=call_start_ns,
        call_end_ns=call_end_ns,
        service_name=service_name,
    )
    requests = children(trace_spans, op.span_id)
    assert len(requests) == len(outputs), f"{len(requests)} request spans for {len(outputs)} outputs"
    ids = by_response_id(requests)
    assert set(ids) == {str(o.request_id) for o in outputs}
    # Nothing else in the trace (e.g. no span per engine step, no second operation span).
    assert len(trace_spans) == 1 + len(outputs), [s.name for s in trace_spans]
    for i, output in enumerate(outputs):
        p = params[i] if isinstance(params, (list, tuple)) else params
        check_request_span(
            ids[str(output.request_id)],
            output,
            op,
            operation=operation,
            model=model,
            params=p,
            expect_metrics=expect_metrics,
            service_name=service_name,
            enqueued_before=call_start_ns if enqueued else None,
        )
    return op, ids


# ---- metrics ----------------------------------------------------------------------------------


class HistogramSnapshot:
    """Counts and sums of every histogram point of the latest (cumulative) export."""

    def __init__(self, metrics: Iterable[ReceivedMetric]) -> None:
        self.points: list[tuple[str, dict[str, Any], int, float]] = []
        for m in metrics:
            if m.kind != "histogram":
                continue
            for p, attrs in zip(m.points, m.point_attributes(), strict=True):
                self.points.append((m.name, attrs, p.count, p.sum))

    def total(self, name: str, **match: Any) -> tuple[int, float]:
        """(count, sum) over the points of ``name`` whose attributes include ``match``
        (keys with dots spelled with ``__``: gen_ai__operation__name=...)."""
        want = {k.replace("__", "."): v for k, v in match.items()}
        count, total = 0, 0.0
        for metric, attrs, c, s in self.points:
            if metric == name and all(attrs.get(k) == v for k, v in want.items()):
                count += c
                total += s
        return count, total


def histogram_delta(before: HistogramSnapshot, after: HistogramSnapshot, name: str, **match: Any) -> tuple[int, float]:
    c0, s0 = before.total(name, **match)
    c1, s1 = after.total(name, **match)
    return c1 - c0, s1 - s0


def snapshot(receiver: HttpReceiver) -> HistogramSnapshot:
    return HistogramSnapshot(receiver.latest_metrics())
