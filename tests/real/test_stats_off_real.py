"""``LLM(disable_log_stats=True)``: the user turned vLLM's per-request stats off explicitly.

The instrumentation respects it (RequestOutput.metrics stays None), says once why timings are
missing, and still records what it can: operation and request spans (add_request to the finishing
step), token counts, finish reasons, request and operation durations -- but no TTFT, TPOT, queue,
prefill or decode. The same path runs for every request on vLLM < 0.11.1 (the degraded tier).
"""

from __future__ import annotations

import gc
import logging
import time

import pytest
from real_helpers import (
    ENGINE_KWARGS,
    METRIC_OPERATION_DURATION,
    METRIC_REQUEST_DURATION,
    METRIC_TOKEN_USAGE,
    METRIC_TPOT,
    METRIC_TTFT,
    check_batch,
    histogram_delta,
    shutdown_llm,
)

pytestmark = pytest.mark.usefixtures("no_pending_requests")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def llm_without_stats(instrumentor, model_dirs):
    from vllm import LLM

    handler = _Records()
    logger = logging.getLogger("opentelemetry.instrumentation.vllm")
    logger.addHandler(handler)
    try:
        engine = LLM(model=model_dirs["generate"], disable_log_stats=True, **ENGINE_KWARGS)
    finally:
        logger.removeHandler(handler)
    yield engine, handler.records
    shutdown_llm(engine)
    del engine
    gc.collect()
    time.sleep(1.0)


def test_warns_once_that_timings_are_off(llm_without_stats):
    _, records = llm_without_stats
    warnings = [r for r in records if r.levelno == logging.WARNING and "disable_log_stats=True" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in records]


def test_generate_without_stats(llm_without_stats, telemetry, call):
    from vllm import SamplingParams

    llm, _ = llm_without_stats
    model = llm.llm_engine.model_config.model
    params = SamplingParams(max_tokens=6, temperature=0.8, seed=2, ignore_eos=True)
    prompts = ["The quick brown fox", "What is the capital of France?", "hello"]
    before = telemetry.histograms()
    with call() as c:
        outputs = llm.generate(prompts, params, use_tqdm=False)
    after = telemetry.histograms()

    assert all(getattr(o, "metrics", None) is None for o in outputs), "disable_log_stats=True was overridden"
    check_batch(
        telemetry.spans_in_trace(c.trace_id),
        outputs,
        operation="text_completion",
        model=model,
        parent=c.parent,
        call_start_ns=c.start_ns,
        call_end_ns=c.end_ns,
        params=params,
        expect_metrics=False,
    )
    base = {"gen_ai__operation__name": "text_completion", "gen_ai__request__model": model}
    assert histogram_delta(before, after, METRIC_OPERATION_DURATION, **base)[0] == 1
    assert histogram_delta(before, after, METRIC_REQUEST_DURATION, **base)[0] == len(prompts)
    assert histogram_delta(before, after, METRIC_TOKEN_USAGE, **base)[0] == 2 * len(prompts)
    assert histogram_delta(before, after, METRIC_TTFT, **base)[0] == 0
    assert histogram_delta(before, after, METRIC_TPOT, **base)[0] == 0
