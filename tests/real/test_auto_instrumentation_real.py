"""End to end under the real ``opentelemetry-instrument``: zero-code instrumentation of a script.

The script (written to a temp dir, run as ``opentelemetry-instrument python script.py``) knows nothing
of this package: it opens a span with the tracer the Python SDK configuration installed, runs
``vllm.LLM.generate`` and ``chat`` inside it, prints what vLLM returned as JSON and exits without
flushing anything. The Python SDK exports its span and the instrumentation its spans and metrics to
the same OTLP/HTTP receiver, at exit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from otlp_receivers import HttpReceiver
from real_helpers import (
    METRIC_OPERATION_DURATION,
    METRIC_TTFT,
    SCOPE_NAME,
    HistogramSnapshot,
    by_response_id,
    check_batch,
    expects_metrics,
    otlp_process_environment,
)

SERVICE = "auto-instrumented-vllm-script"

SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    import time

    from opentelemetry import trace


    def as_dict(output):
        m = getattr(output, "metrics", None)
        stats = None
        if m is not None:
            stats = {k: getattr(m, k) for k in (
                "arrival_time", "queued_ts", "scheduled_ts", "first_token_ts", "last_token_ts",
                "first_token_latency", "num_generation_tokens")}
        return {
            "request_id": output.request_id,
            "prompt_token_ids": list(output.prompt_token_ids),
            "num_cached_tokens": getattr(output, "num_cached_tokens", None),
            "outputs": [{"token_ids": list(c.token_ids), "finish_reason": c.finish_reason} for c in output.outputs],
            "metrics": stats,
        }


    def main(model):
        from vllm import LLM, SamplingParams

        provider = trace.get_tracer_provider()
        llm = LLM(model=model, dtype="float32", enforce_eager=True, max_model_len=512)
        tracer = trace.get_tracer("e2e-script")
        params = SamplingParams(max_tokens=6, temperature=0.8, seed=5, ignore_eos=True)
        calls = {}
        with tracer.start_as_current_span("script-parent") as span:
            for name, run in (
                ("generate", lambda: llm.generate(["hello world", "the quick brown fox"], params, use_tqdm=False)),
                ("chat", lambda: llm.chat([{"role": "user", "content": "hi there"}], params, use_tqdm=False)),
            ):
                with tracer.start_as_current_span("script-" + name) as inner:
                    start = time.time_ns()
                    outputs = run()
                    end = time.time_ns()
                ctx = inner.get_span_context()
                calls[name] = {"span_id": ctx.span_id, "start_ns": start, "end_ns": end,
                               "outputs": [as_dict(o) for o in outputs]}
        ctx = span.get_span_context()
        print("E2E_RESULT " + json.dumps({
            "provider": type(provider).__module__ + "." + type(provider).__qualname__,
            "trace_id": ctx.trace_id,
            "parent_span_id": ctx.span_id,
            "calls": calls,
        }), flush=True)
        # No flush, no shutdown: exporting at exit is the instrumentation's job.


    if __name__ == "__main__":
        main(sys.argv[1])
    """
)


class _Parent:
    """The bits of an SDK span ``check_batch`` reads, rebuilt from the script's report."""

    def __init__(self, trace_id: int, span_id: int) -> None:
        self._ctx = SimpleNamespace(trace_id=trace_id, span_id=span_id)

    def get_span_context(self):
        return self._ctx


def _output(d: dict) -> SimpleNamespace:
    m = d["metrics"]
    return SimpleNamespace(
        request_id=d["request_id"],
        prompt_token_ids=d["prompt_token_ids"],
        num_cached_tokens=d["num_cached_tokens"],
        outputs=[SimpleNamespace(**c) for c in d["outputs"]],
        metrics=None if m is None else SimpleNamespace(**m),
    )


@pytest.fixture(scope="module")
def auto_run(model_dirs, tmp_path_factory):
    script = Path(tmp_path_factory.mktemp("e2e")) / "script.py"
    script.write_text(SCRIPT)
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    assert instrument.exists(), f"{instrument} missing (opentelemetry-instrumentation not in this venv?)"
    with HttpReceiver() as receiver:
        env = otlp_process_environment(receiver.endpoint, SERVICE)
        t0 = time.monotonic()
        proc = subprocess.run(
            [str(instrument), sys.executable, str(script), model_dirs["generate"]],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        elapsed = time.monotonic() - t0
        # Exports at exit are synchronous, but give a straggling child process's export a moment.
        time.sleep(1.0)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("E2E_RESULT ")]
    result = json.loads(lines[-1][len("E2E_RESULT ") :]) if lines else None
    return SimpleNamespace(proc=proc, result=result, receiver=receiver, elapsed=elapsed, model=model_dirs["generate"])


def _diagnostics(run) -> str:
    return f"exit {run.proc.returncode} after {run.elapsed:.0f}s\n--- stderr (tail)\n{run.proc.stderr[-6000:]}"


def test_script_ran(auto_run):
    assert auto_run.proc.returncode == 0, _diagnostics(auto_run)
    assert auto_run.result is not None, _diagnostics(auto_run)
    assert auto_run.result["provider"] == "opentelemetry.sdk.trace.TracerProvider"


def test_spans_nest_under_the_scripts_sdk_span(auto_run):
    result = auto_run.result
    assert result is not None, _diagnostics(auto_run)
    spans = auto_run.receiver.spans()
    ids = [s.span_id for s in spans]
    assert len(ids) == len(set(ids)), "a span was exported twice"
    trace_spans = [s for s in spans if s.trace_id == result["trace_id"]]

    # The Python SDK exported its own spans to the same receiver, with the service name.
    sdk = {s.name: s for s in trace_spans if s.scope.name == "e2e-script"}
    assert set(sdk) == {"script-parent", "script-generate", "script-chat"}, sorted(sdk)
    assert sdk["script-parent"].span_id == result["parent_span_id"]
    assert sdk["script-parent"].resource["service.name"] == SERVICE

    ours = [s for s in trace_spans if s.scope.name == SCOPE_NAME]
    assert ours, f"no span of {SCOPE_NAME} in the script's trace; scopes seen: {sorted({s.scope.name for s in spans})}"
    for name, operation in (("generate", "text_completion"), ("chat", "chat")):
        call = result["calls"][name]
        outputs = [_output(d) for d in call["outputs"]]
        inner = sdk[f"script-{name}"]
        assert inner.span_id == call["span_id"]
        subtree = [s for s in ours if s.parent_span_id == inner.span_id]
        subtree += [s for s in ours if s.parent_span_id in {x.span_id for x in subtree}]
        check_batch(
            subtree,
            outputs,
            operation=operation,
            model=auto_run.model,  # the path the script passed to LLM()
            parent=_Parent(result["trace_id"], inner.span_id),
            call_start_ns=call["start_ns"],
            call_end_ns=call["end_ns"],
            expect_metrics=expects_metrics(),
            service_name=SERVICE,  # the resource of the SDK that opentelemetry-instrument configured
        )
    assert len(ours) == 2 + 3, [s.name for s in ours]


def test_metrics_exported_at_exit(auto_run):
    result = auto_run.result
    assert result is not None, _diagnostics(auto_run)
    requests = [
        r
        for r in auto_run.receiver.metric_requests()
        if any(sm.scope.name == SCOPE_NAME for rm in r.resource_metrics for sm in rm.scope_metrics)
    ]
    assert requests, "the instrumentation exported no metrics"
    from otlp_receivers import metrics_of

    ours = [m for m in metrics_of(requests[-1:]) if m.scope.name == SCOPE_NAME]
    assert {m.resource.get("service.name") for m in ours} == {SERVICE}
    histograms = HistogramSnapshot(ours)
    n_requests = sum(len(c["outputs"]) for c in result["calls"].values())
    with_stats = sum(1 for c in result["calls"].values() for o in c["outputs"] if o["metrics"] is not None)
    assert histograms.total(METRIC_TTFT)[0] == with_stats
    assert histograms.total(METRIC_OPERATION_DURATION, gen_ai__operation__name="text_completion")[0] == 1
    assert histograms.total(METRIC_OPERATION_DURATION, gen_ai__operation__name="chat")[0] == 1
    assert with_stats == (n_requests if expects_metrics() else 0)
    spans = by_response_id(s for s in auto_run.receiver.spans() if s.scope.name == SCOPE_NAME)
    assert len(spans) == n_requests
