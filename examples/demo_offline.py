"""Demo: an instrumented offline batch on real vLLM (CPU, a tiny locally built model).

Run through ``bash examples/demo.sh`` (installs what it needs). Prints one request's span tree as an
OTLP receiver on loopback got it, and p50/p90/p99 of TTFT, TPOT, queue time and end-to-end latency
from the core's HDR histograms.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The loopback OTLP receiver of the test suite and the tiny-model builder.
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tools")]

for key, value in {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "TORCHDYNAMO_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(key, value)

ROWS = {
    "gen_ai.server.time_to_first_token": "TTFT",
    "gen_ai.server.time_per_output_token": "TPOT",
    "vllm.request.queue.duration": "queue",
    "gen_ai.server.request.duration": "end-to-end",
}


def print_tree(spans, root, depth=0):
    duration_ms = (root.span.end_time_unix_nano - root.span.start_time_unix_nano) / 1e6
    print(f"{'  ' * depth}- {root.name}  [{duration_ms:.1f} ms]")
    for key, value in sorted(root.attributes.items()):
        if key.startswith(("gen_ai.latency", "gen_ai.usage", "gen_ai.response", "vllm.")):
            print(f"{'  ' * depth}    {key} = {value}")
    for child in spans:
        if child.parent_span_id == root.span_id:
            print_tree(spans, child, depth + 1)
            break  # one request of the batch


def main() -> None:
    from otlp_receivers import HttpReceiver
    from tiny_model import build_tiny_model

    receiver = HttpReceiver().start()
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())
    from opentelemetry.instrumentation import vllm as otel_vllm

    otel_vllm.VllmInstrumentor().instrument(endpoint=receiver.endpoint)
    from vllm import LLM, SamplingParams

    model = build_tiny_model(str(Path(tempfile.gettempdir()) / "otel-vllm-demo-model"))
    llm = LLM(model=model, dtype="float32", enforce_eager=True, max_model_len=512)
    prompts = [f"Request number {i} asks about" for i in range(64)]
    with trace.get_tracer("demo").start_as_current_span("batch-job"):
        llm.generate(prompts, SamplingParams(max_tokens=32, ignore_eos=True), use_tqdm=False)
    otel_vllm.force_flush(10)

    spans = receiver.spans()
    (operation,) = [s for s in spans if s.attributes.get("vllm.operation.request_count")]
    print(f"\nSpans received: {len(spans)} (1 operation span, {len(spans) - 1} request spans)\n")
    print_tree(spans, operation)
    print("\nLatency over the batch (HDR, milliseconds):")
    print(f"{'':<12} {'count':>6} {'p50':>9} {'p90':>9} {'p99':>9}")
    for row in otel_vllm.get_latency_percentiles():
        label = ROWS.get(row["metric"])
        if label:
            print(
                f"{label:<12} {row['count']:>6} {row['p50'] * 1e3:>9.2f} {row['p90'] * 1e3:>9.2f} "
                f"{row['p99'] * 1e3:>9.2f}"
            )
    # Export the last metric points while the receiver still listens (exit would retry without it).
    otel_vllm.shutdown(10)
    receiver.stop()


if __name__ == "__main__":
    main()
