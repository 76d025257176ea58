"""Micro-benchmark of the core's hot path: ``_core.record_requests`` per finished request.

Measures the caller thread's CPU time per request (what the process driving vLLM pays, holding
the GIL) and wall time, for batches of 1, 64 and 4096, with export off (exporters ``none``), with
OTLP/HTTP to a sink in another process, and in bridge delivery (spans and measurements re-created
in a Python SDK TracerProvider / MeterProvider whose exporter discards and whose reader is never
collected, so the figure is the bridge's own cost; it runs on the core's threads and takes the
GIL, hence process CPU). Each configuration runs in its own process, alternating, several rounds;
the table shows medians and the min-max spread.

    python benchmarks/bench_core.py [--requests 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import sinks  # benchmarks/, this script's directory

BATCH_SIZES = (1, 64, 4096)
CONFIGS = ("none", "otlp-http", "bridge")
EXPORT_CONFIGS = ("otlp-http", "otlp-grpc")


def make_records(n: int, parent):
    now = time.time_ns()
    records = []
    for i in range(n):
        records.append(
            (
                str(i),
                None,
                now,
                now + 250_000_000,
                12,
                32,
                0,
                ["length"],
                None,
                0.04,
                0.0065,
                0.001,
                0.039,
                0.2,
                0.239,
                0.25,
                None,
            )
        )
    return records


def bridge_to_python_sdk() -> tuple:
    from opentelemetry.instrumentation.vllm import _bridge
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(Discard()))
    _bridge.SPANS.set_provider(tracer_provider)
    _bridge.METRICS.set_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    return _bridge.SPANS, _bridge.METRICS


def _peak_rss_kib() -> int:
    """VmHWM: the process's peak resident set so far."""
    for line in open("/proc/self/status"):  # noqa: SIM115, PTH123
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def worker(batch: int, total: int, config: str, endpoint: str | None, default_queue: bool = False) -> dict:
    from opentelemetry.instrumentation.vllm import _core

    # A queue that holds every span unless --default-queue (the 2048 default: what memory is bounded by).
    overrides = {} if default_queue else {"OTEL_BSP_MAX_QUEUE_SIZE": str(total + 1)}
    overrides |= {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512", "OTEL_METRIC_EXPORT_INTERVAL": "1000"}
    bridges = ()
    if config == "none":
        overrides |= {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
    elif config == "bridge":
        bridges = bridge_to_python_sdk()
    else:
        overrides |= {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        if config == "otlp-grpc":
            overrides |= {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    _core.configure(overrides, None, None, *bridges)
    trace_id, span_id, flags = _core.new_span_context(None, "text_completion", "bench")
    header = (
        "text_completion",
        "vllm",
        "bench",
        "bench",
        (trace_id, span_id, flags, False),
        0,
        {"gen_ai.request.max_tokens": 32},
    )
    calls = max(1, total // batch)
    if default_queue:  # 1M requests: the same records every call, so that the input costs no memory
        batches = [make_records(batch, None)] * calls
    else:
        batches = [make_records(batch, None) for _ in range(calls)]
    # Warm-up (allocations, first export) outside the measurement.
    _core.record_requests(header, batches[0])
    _core.force_flush(30)
    before = _core.stats()
    rss0 = _peak_rss_kib()
    cpu0, wall0, proc0 = time.thread_time_ns(), time.perf_counter_ns(), time.process_time_ns()
    for records in batches:
        _core.record_requests(header, records)
    cpu1, wall1 = time.thread_time_ns(), time.perf_counter_ns()
    _core.force_flush(120)
    proc1, wall2 = time.process_time_ns(), time.perf_counter_ns()
    after = _core.stats()
    rss1 = _peak_rss_kib()
    n = len(batches) * batch
    _core.shutdown(10)
    return {
        "caller_cpu_us": (cpu1 - cpu0) / n / 1e3,
        "caller_wall_us": (wall1 - wall0) / n / 1e3,
        "process_cpu_us": (proc1 - proc0) / n / 1e3,
        "dropped": after["requests_dropped"]
        - before["requests_dropped"]
        + after["spans_dropped"]
        - before["spans_dropped"],
        "exported": after["spans_exported"] - before["spans_exported"],
        "spans_per_s": (after["spans_exported"] - before["spans_exported"]) / ((wall2 - wall0) / 1e9),
        "peak_rss_growth_mib": (rss1 - rss0) / 1024,
        "requests": n,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", nargs=3, metavar=("BATCH", "CONFIG", "ENDPOINT"))
    parser.add_argument("--default-queue", action="store_true")
    args = parser.parse_args()
    if args.worker:
        batch, config, endpoint = args.worker
        print(json.dumps(worker(int(batch), args.requests, config, endpoint, args.default_queue)))
        return None

    with sinks.sink("http") as endpoint:
        results: dict[tuple[int, str], list[dict]] = {}
        for _ in range(args.rounds):
            for batch in BATCH_SIZES:
                for config in CONFIGS:  # alternate configurations within each round
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--requests",
                            str(args.requests),
                            "--worker",
                            str(batch),
                            config,
                            endpoint,
                        ],
                        check=True,
                        capture_output=True,
                        text=True,
                        env=dict(os.environ),
                    ).stdout
                    results.setdefault((batch, config), []).append(json.loads(out.strip().splitlines()[-1]))

    print(f"record_requests, {args.requests} requests per process, {args.rounds} processes per row (median [min-max])")
    print(
        f"{'batch':>6} {'export':>10} {'caller CPU µs/req':>24} {'caller wall µs/req':>24} "
        f"{'process CPU µs/req':>24} {'dropped':>8}"
    )

    def cell(rows, key):
        values = [r[key] for r in rows]
        return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"

    for (batch, config), rows in results.items():
        print(
            f"{batch:>6} {config:>10} {cell(rows, 'caller_cpu_us'):>24} {cell(rows, 'caller_wall_us'):>24} "
            f"{cell(rows, 'process_cpu_us'):>24} {sum(r['dropped'] for r in rows):>8}"
        )
    return None


if __name__ == "__main__":
    main()
