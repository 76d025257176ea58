"""Pooling (LLM.embed / LLM.encode) on real vLLM with the embedding variant of the tiny model."""

from __future__ import annotations

import pytest
from real_helpers import (
    METRIC_OPERATION_DURATION,
    METRIC_REQUEST_DURATION,
    METRIC_TOKEN_USAGE,
    METRIC_TTFT,
    SERVICE_NAME,
    check_batch,
    histogram_delta,
)

pytestmark = pytest.mark.usefixtures("no_pending_requests")

TEXTS = ["hello world", "the quick brown fox", "a", "OpenTelemetry is a collection of APIs"]


def _model(llm) -> str:
    return llm.llm_engine.model_config.model


def test_embed(pooling_llm, telemetry, call):
    model = _model(pooling_llm)
    before = telemetry.histograms()
    with call() as c:
        outputs = pooling_llm.embed(TEXTS, use_tqdm=False)
    after = telemetry.histograms()

    assert len(outputs) == len(TEXTS)
    assert all(len(o.outputs.embedding) == 128 for o in outputs)
    # embed -> encode inside vLLM: one operation span, "embeddings"; pooling outputs carry no
    # per-request stats (PoolingRequestOutput has no metrics), so no latency attributes: the span
    # runs from add_request to the step that finished it.
    _, requests = check_batch(
        telemetry.spans_in_trace(c.trace_id),
        outputs,
        operation="embeddings",
        model=model,
        parent=c.parent,
        call_start_ns=c.start_ns,
        call_end_ns=c.end_ns,
        expect_metrics=False,
        service_name=SERVICE_NAME,
    )
    for span in requests.values():
        # PoolingParams have none of the sampling attributes.
        assert not [k for k in span.attributes if k.startswith("gen_ai.request.") and k != "gen_ai.request.model"]
    base = {"gen_ai__operation__name": "embeddings", "gen_ai__request__model": model}
    assert histogram_delta(before, after, METRIC_OPERATION_DURATION, **base)[0] == 1
    assert histogram_delta(before, after, METRIC_REQUEST_DURATION, **base)[0] == len(TEXTS)
    input_count, input_sum = histogram_delta(before, after, METRIC_TOKEN_USAGE, **base, gen_ai__token__type="input")
    assert (input_count, input_sum) == (len(TEXTS), sum(len(o.prompt_token_ids) for o in outputs))
    assert histogram_delta(before, after, METRIC_TOKEN_USAGE, **base, gen_ai__token__type="output")[0] == 0
    stats = [o for o in outputs if getattr(o, "metrics", None) is not None]
    assert histogram_delta(before, after, METRIC_TTFT, **base)[0] == len(stats)


def test_encode(pooling_llm, telemetry, call):
    import inspect

    kwargs = {}
    if "pooling_task" in inspect.signature(pooling_llm.encode).parameters:
        kwargs["pooling_task"] = "embed"
    with call() as c:
        outputs = pooling_llm.encode(TEXTS[:2], use_tqdm=False, **kwargs)
    telemetry.flush()
    check_batch(
        telemetry.spans_in_trace(c.trace_id),
        outputs,
        operation="embeddings",
        model=_model(pooling_llm),
        parent=c.parent,
        call_start_ns=c.start_ns,
        call_end_ns=c.end_ns,
        expect_metrics=False,
    )
