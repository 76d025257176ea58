"""The serving hooks' cost on the event loop's thread, against the fake AsyncLLM (no engine, no HTTP).

The engine is ``tests/fake_vllm``'s vLLM 0.32 ``AsyncLLM``: ``add_request`` (through this project's
class patch) registers a request state on the output processor, and ``finish_step`` plays one step of
the output handler (``process_outputs`` finishing the requests, then the stat loggers' ``record``),
where the instrumentation's per-request and per-step hooks run. Steps of ``--step`` requests, each
added and finished with 64 tokens; ``--requests`` requests in ``2 x CYCLES`` blocks within one
process, each cycle a block without and a block with ``VllmInstrumentor().instrument()`` (undone after
the block; order alternating), after a warm-up block of each. Per cycle: the thread's CPU per request
of the instrumented block minus the uninstrumented one's (what a real server's event loop would
spend on top of vLLM's own work; vLLM's real objects are larger than the fake's, so this is the
instrumentation's own cost, not a prediction of a server's). Prints one JSON line.

Run by ``benchmarks/suite.py`` (section 1, after the offline alternation).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from bench_fake_offline import put_fake_vllm_on_path
from common import alternated


def paired_worker(step: int, total: int, cycles: int, endpoint: str) -> dict:
    os.environ.setdefault("OTEL_SERVICE_NAME", "bench-fake-serving")
    put_fake_vllm_on_path()
    from opentelemetry.instrumentation.vllm import VllmInstrumentor, force_flush, get_stats
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason, SamplingParams

    instrumentor = VllmInstrumentor()
    instrumentor.instrument(skip_dep_check=True, endpoint=endpoint)
    engine = AsyncLLM()  # instrumented once; uninstrument() / instrument() toggle its hooks
    params = SamplingParams(max_tokens=64, temperature=0.7)
    steps = max(1, total // (2 * cycles * step))

    async def steps_of_requests() -> None:
        for _ in range(steps):
            requests = [await engine.add_request(f"cmpl-{i}", "a short prompt", params) for i in range(step)]
            engine.finish_step([(request, 64, FinishReason.LENGTH) for request in requests], running=step)

    def block(instrumented: bool) -> float:
        """Thread CPU per request, µs."""
        if instrumented != instrumentor.is_instrumented_by_opentelemetry:
            if instrumented:
                instrumentor.instrument(skip_dep_check=True, endpoint=endpoint)
            else:
                instrumentor.uninstrument()
        cpu0 = time.thread_time_ns()
        asyncio.run(steps_of_requests())
        cpu1 = time.thread_time_ns()
        if instrumented:
            force_flush(120)
        return (cpu1 - cpu0) / (steps * step) / 1e3

    block(False), block(True)  # warm-up
    exported_before = get_stats().get("spans_exported", 0)
    pairs = alternated(cycles, block)
    stats = get_stats()
    return {
        "overheads": [on - off for off, on in pairs],
        "uninstrumented": [off for off, _ in pairs],
        "spans_exported": stats.get("spans_exported", 0) - exported_before,
        "expected_spans": cycles * steps * step,
        "dropped": stats.get("spans_dropped", 0) + stats.get("requests_dropped", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--step", type=int, default=32, help="requests added and finished per engine step")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--endpoint", required=True)
    args = parser.parse_args()
    print(json.dumps(paired_worker(args.step, args.requests, args.cycles, args.endpoint)))


if __name__ == "__main__":
    main()
