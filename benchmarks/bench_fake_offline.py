"""Offline overhead against a fake engine with no model compute (the most sensitive case).

The engine is ``tests/fake_vllm`` (the vLLM 0.32 tree of the fast test tier): ``vllm.LLM`` ->
``LLMEngine.add_request`` / ``step`` -> a deterministic Python engine core that schedules, "generates"
2-5 tokens per request without any model, and fills ``RequestOutput.metrics`` when stats are on.
What is measured is ``llm.generate(prompts)`` with batches of ``--batch`` prompts, ``--requests``
requests in all, per configuration (each in its own process):

  stats-off      uninstrumented, LLM(disable_log_stats=True) (vLLM's offline default)
  uninstrumented uninstrumented, stats on (the engine work every other row also does)
  floor          stats on, and a plain Python wrapper of LLMEngine.step that reads, from every
                 finished output, the fields this project reads (ids, stats timestamps, token counts,
                 finish reasons) into a tuple and drops it: the least any in-process
                 instrumentation that reads the outputs in Python can cost
  native         this project, default delivery (the Rust core), spans and metrics exported over
                 OTLP/HTTP to a loopback sink in another process
  bridge         this project, delivery="bridge": spans and metrics re-created in a Python SDK
                 TracerProvider (BatchSpanProcessor + the SDK's OTLP/HTTP exporter to the same sink)
                 and MeterProvider (a PeriodicExportingMetricReader with the OTLP/HTTP exporter)
  openlit        OpenLIT's vLLM instrumentation, the installed package's real code path:
                 ``openlit.init(otlp_endpoint=<sink>, pricing_json=<empty local file>,
                 disabled_instrumentors=<every other one>)`` with its defaults otherwise (batch
                 span processor, metrics on, message content captured); its ``generate`` wrapper
                 runs around the fake LLM.generate

Per process: one warm-up call (not measured), then the calls; caller-thread CPU
(``time.thread_time``), wall, and process CPU (user+sys of all threads) until the telemetry was
flushed (export included). Prints one JSON line.

``--paired CYCLES``: uninstrumented and native (or bridge) alternating within one process instead, because
one process's speed differs from the next by up to 20% here, which is larger than the overhead of
a one-prompt call: ``--requests`` requests in ``2 x CYCLES`` blocks, one LLM (stats on), each cycle a
block without and a block with ``VllmInstrumentor().instrument()`` (undone after the block; the
order alternates from one cycle to the next), after one warm-up block of each. Per cycle, caller
CPU per request of the instrumented block minus the uninstrumented one's; the instrumented block's
process CPU includes its ``force_flush()`` (for bridge, also the Python SDK providers' flush: one
pair of providers serves every instrumented block of the process).

``--decompose CYCLES`` (native only): native taken apart within one process, uninstrumented blocks
alternating with the PARTS configurations below (``decomposed_worker``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import alternated

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("stats-off", "uninstrumented", "floor", "native", "bridge", "openlit")
FAKE_VLLM_VERSION = "0.32.0"


def put_fake_vllm_on_path() -> None:
    sys.path.insert(0, str(ROOT / "tests"))  # the fake_vllm package
    from fake_vllm import TREES

    sys.path.insert(0, str(TREES["0.32"]))
    # OpenLIT asks importlib.metadata for vLLM's version, and BaseInstrumentor checks that a "vllm"
    # distribution satisfies its requirement: give the fake tree a distribution record.
    metadata = Path(tempfile.mkdtemp(prefix="fake-vllm-dist-")) / f"vllm-{FAKE_VLLM_VERSION}.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {FAKE_VLLM_VERSION}\n")
    sys.path.insert(0, str(metadata.parent))
    importlib.invalidate_caches()


def read_fields(outputs) -> None:
    """The floor's work: read from every finished output what this project reads, then drop it."""
    for output in outputs:
        if not output.finished:
            continue
        stats = output.metrics
        completions = output.outputs
        record = (
            str(output.request_id),
            stats.arrival_time,
            stats.queued_ts,
            stats.scheduled_ts,
            stats.first_token_ts,
            stats.last_token_ts,
            stats.first_token_latency,
            stats.num_generation_tokens,
            stats.num_preemptions,
            len(output.prompt_token_ids),
            sum(len(c.token_ids) for c in completions),
            output.num_cached_tokens,
            [c.finish_reason for c in completions],
        )
        del record


def _floor() -> None:
    """Wraps LLMEngine.step with a plain function that reads what this project reads."""
    from vllm.v1.engine.llm_engine import LLMEngine

    step = LLMEngine.step

    def read_step(self, *args, **kwargs):
        outputs = step(self, *args, **kwargs)
        read_fields(outputs)
        return outputs

    LLMEngine.step = read_step


def _python_sdk_providers(endpoint: str):
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"))
    return tracer_provider, MeterProvider(metric_readers=[reader])


def _openlit(endpoint: str):
    import openlit
    from openlit import MODULE_NAME_MAP

    pricing = Path(tempfile.mkdtemp(prefix="openlit-")) / "pricing.json"
    pricing.write_text("{}")
    openlit.init(
        otlp_endpoint=endpoint,
        pricing_json=str(pricing),
        disabled_instrumentors=[name for name in MODULE_NAME_MAP if name != "vllm"],
    )
    from opentelemetry import metrics, trace

    return trace.get_tracer_provider(), metrics.get_meter_provider()


def worker(config: str, batch: int, total: int, endpoint: str) -> dict:
    os.environ.setdefault("OTEL_SERVICE_NAME", "bench-fake-offline")
    put_fake_vllm_on_path()
    flush = []
    if config == "native":
        from opentelemetry.instrumentation.vllm import VllmInstrumentor, force_flush

        # A queue that holds every span: drops would make the row cheaper than the work it claims.
        os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(max(2048, total + batch + 1))
        VllmInstrumentor().instrument(skip_dep_check=True, endpoint=endpoint)
        flush.append(lambda: force_flush(120))
    elif config == "bridge":
        from opentelemetry.instrumentation.vllm import VllmInstrumentor, force_flush

        os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(max(2048, total + batch + 1))
        tracer_provider, meter_provider = _python_sdk_providers(endpoint)
        VllmInstrumentor().instrument(
            skip_dep_check=True, delivery="bridge", tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        flush += [lambda: force_flush(120), lambda: tracer_provider.force_flush(120_000)]
        flush.append(lambda: meter_provider.force_flush(120_000))
    elif config == "openlit":
        os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(max(2048, total + batch + 1))
        tracer_provider, meter_provider = _openlit(endpoint)
        flush += [lambda: tracer_provider.force_flush(120_000), lambda: meter_provider.force_flush(120_000)]
    elif config == "floor":
        _floor()

    from vllm import LLM, SamplingParams

    if config == "openlit":
        from openlit.instrumentation.vllm.vllm import generate  # noqa: F401 - fails loudly if OpenLIT moved

        if not hasattr(LLM.generate, "__wrapped__"):
            raise RuntimeError("openlit.init() did not wrap LLM.generate")
    if config in ("native", "bridge") and not hasattr(LLM.generate, "__wrapped__"):
        raise RuntimeError("instrument() did not wrap LLM.generate")

    llm = LLM(model="bench-model", disable_log_stats=config == "stats-off")
    params = SamplingParams(max_tokens=16)
    prompts = [f"prompt number {i} is about benchmarks" for i in range(batch)]
    calls = max(1, total // batch)
    llm.generate(prompts, params, use_tqdm=False)  # warm-up
    for f in flush:
        f()
    outputs = 0
    last = []
    cpu0, wall0, proc0 = time.thread_time_ns(), time.perf_counter_ns(), time.process_time_ns()
    for _ in range(calls):
        last = llm.generate(prompts, params, use_tqdm=False)
        outputs += len(last)
    cpu1, wall1, proc1 = time.thread_time_ns(), time.perf_counter_ns(), time.process_time_ns()
    for f in flush:
        f()
    wall2, proc2 = time.perf_counter_ns(), time.process_time_ns()
    stats = {}
    if config in ("native", "bridge"):
        from opentelemetry.instrumentation.vllm import get_stats

        stats = get_stats()
    n = calls * batch
    assert outputs == n, (outputs, n)
    read_us = None
    if config == "floor":  # the floor's own work alone, in a loop: a steadier figure than a difference
        many = (last * (4096 // len(last) + 1))[:4096]
        t0 = time.thread_time_ns()
        for _ in range(20):
            read_fields(many)
        read_us = (time.thread_time_ns() - t0) / (20 * len(many)) / 1e3
    return {
        "caller_cpu_us": (cpu1 - cpu0) / n / 1e3,
        "wall_us": (wall1 - wall0) / n / 1e3,
        "process_cpu_us": (proc1 - proc0) / n / 1e3,
        "process_cpu_flushed_us": (proc2 - proc0) / n / 1e3,
        "wall_flushed_us": (wall2 - wall0) / n / 1e3,
        "dropped": stats.get("spans_dropped", 0) + stats.get("requests_dropped", 0),
        "requests": n,
        "read_us": read_us,
    }


def paired_worker(config: str, batch: int, total: int, cycles: int, endpoint: str) -> dict:
    os.environ.setdefault("OTEL_SERVICE_NAME", "bench-fake-offline")
    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(max(2048, total + batch + 1))
    put_fake_vllm_on_path()
    from opentelemetry.instrumentation.vllm import VllmInstrumentor, force_flush, get_stats
    from vllm import LLM, SamplingParams

    instrumentor = VllmInstrumentor()
    # Bridge: one pair of Python SDK providers for the process, given to every instrument(); each
    # instrumented block is flushed through them too, so its process CPU includes their export.
    providers = _python_sdk_providers(endpoint) if config == "bridge" else None
    options = {"endpoint": endpoint}
    flushes = [lambda: force_flush(120)]
    if providers is not None:
        tracer_provider, meter_provider = providers
        options = {"delivery": "bridge", "tracer_provider": tracer_provider, "meter_provider": meter_provider}
        flushes += [lambda: tracer_provider.force_flush(120_000), lambda: meter_provider.force_flush(120_000)]
    llm = LLM(model="bench-model", disable_log_stats=False)
    params = SamplingParams(max_tokens=16)
    prompts = [f"prompt number {i} is about benchmarks" for i in range(batch)]
    calls = max(1, total // (2 * cycles * batch))

    def block(instrumented: bool) -> tuple[float, float]:
        """(caller CPU, process CPU) per request, µs."""
        if instrumented:
            instrumentor.instrument(skip_dep_check=True, **options)
        cpu0, proc0 = time.thread_time_ns(), time.process_time_ns()
        for _ in range(calls):
            llm.generate(prompts, params, use_tqdm=False)
        cpu1 = time.thread_time_ns()
        if instrumented:
            for flush in flushes:
                flush()
        proc1 = time.process_time_ns()
        if instrumented:
            instrumentor.uninstrument()
        n = calls * batch
        return (cpu1 - cpu0) / n / 1e3, (proc1 - proc0) / n / 1e3

    block(False), block(True)  # warm-up
    pairs = alternated(cycles, block)
    stats = get_stats()
    return {
        "overheads": [on[0] - off[0] for off, on in pairs],
        "process_overheads": [on[1] - off[1] for off, on in pairs],
        "uninstrumented": [off[0] for off, _ in pairs],
        "requests_per_block": calls * batch,
        "dropped": stats.get("spans_dropped", 0) + stats.get("requests_dropped", 0),
    }


# Section 1's decomposition of the overhead (``--decompose``): which callbacks of the generated
# functions around LLM.generate, LLMEngine.add_request and LLMEngine.step are real in each configuration.
# The others are ``"".format``: a C function that takes any arguments and does next to nothing (begin
# returns "", so end is called as with a real operation), cheaper than any real callback.
PARTS = {
    "hooks": (),  # the generated functions alone: frames, forwarding, a trivial call per callback
    "operation": ("begin", "end"),  # + the LLM call's operation span (begun, ended, recorded)
    "full": ("begin", "end", "report"),  # + the requests' registration and finished outputs' reading
}
CALLBACKS = PARTS["full"]


def _generated_functions(*objects) -> list[tuple[type, str, Any]]:
    """(class, name, generated function) of each of this project's generated replacements of a method of
    ``objects``, found on the class in their MRO that holds it."""
    from opentelemetry.instrumentation.vllm._forwarding import GENERATED_FILE

    found = []
    for obj in objects:
        for owner in type(obj).__mro__:
            for name, function in vars(owner).items():
                code = getattr(function, "__code__", None)
                if code is not None and code.co_filename.startswith(GENERATED_FILE):
                    found.append((owner, name, function))
    return found


def decomposed_worker(batch: int, total: int, cycles: int, endpoint: str) -> dict:
    """Uninstrumented blocks and the PARTS configurations alternating in one process (the order rotating
    from one cycle to the next): per configuration, the caller CPU per request of each cycle's block
    minus that cycle's uninstrumented block's. One instrument(); an uninstrumented block puts vLLM's
    own methods back on their classes, the others put the generated functions back with the
    configuration's callbacks."""
    from opentelemetry.instrumentation.vllm._forwarding import callback_global

    os.environ.setdefault("OTEL_SERVICE_NAME", "bench-fake-offline")
    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(max(2048, total + batch + 1))
    put_fake_vllm_on_path()
    from opentelemetry.instrumentation.vllm import VllmInstrumentor, force_flush, get_stats
    from vllm import LLM, SamplingParams

    llm = LLM(model="bench-model", disable_log_stats=False)
    VllmInstrumentor().instrument(skip_dep_check=True, endpoint=endpoint)
    generated = _generated_functions(llm, llm.llm_engine)
    if not {"generate", "add_request", "step"} <= {name for _, name, _ in generated}:
        raise RuntimeError(f"instrument() did not replace generate, add_request and step: {generated}")
    trivial = "".format
    hooked = []  # each generated function with its real callbacks, by the name it was given them under
    for owner, name, function in generated:
        names = function.__globals__
        callbacks = {c: names[callback_global(c)] for c in CALLBACKS if callback_global(c) in names}
        hooked.append((owner, name, function, callbacks))
    params = SamplingParams(max_tokens=16)
    prompts = [f"prompt number {i} is about benchmarks" for i in range(batch)]
    configs = ["uninstrumented", *PARTS]
    calls = max(1, total // (len(configs) * cycles * batch))

    def block(config: str) -> float:
        """Caller CPU per request, µs."""
        for owner, name, function, callbacks in hooked:
            setattr(owner, name, function.__wrapped__ if config == "uninstrumented" else function)
            for callback, real in callbacks.items():
                kept = config != "uninstrumented" and callback in PARTS[config]
                function.__globals__[callback_global(callback)] = real if kept else trivial
        cpu0 = time.thread_time_ns()
        for _ in range(calls):
            llm.generate(prompts, params, use_tqdm=False)
        cpu = time.thread_time_ns() - cpu0
        if config == "full":
            force_flush(120)
        return cpu / (calls * batch) / 1e3

    for config in configs:  # warm-up
        block(config)
    measured: dict[str, list[float]] = {config: [] for config in configs}
    for cycle in range(cycles):
        shift = cycle % len(configs)
        for config in configs[shift:] + configs[:shift]:
            measured[config].append(block(config))
    stats = get_stats()
    base = measured["uninstrumented"]
    return {
        "uninstrumented": base,
        **{config: [m - b for m, b in zip(measured[config], base, strict=True)] for config in PARTS},
        "requests_per_block": calls * batch,
        "dropped": stats.get("spans_dropped", 0) + stats.get("requests_dropped", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", choices=CONFIGS)
    parser.add_argument("batch", type=int)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--paired", type=int, metavar="CYCLES", help="alternate with uninstrumented in one process")
    parser.add_argument(
        "--decompose", type=int, metavar="CYCLES", help="native's parts (PARTS) alternating with uninstrumented"
    )
    args = parser.parse_args()
    if args.decompose:
        if args.config != "native":
            parser.error("--decompose takes native apart")
        print(json.dumps(decomposed_worker(args.batch, args.requests, args.decompose, args.endpoint)))
        return
    if args.paired:
        if args.config not in ("native", "bridge"):
            parser.error("--paired alternates native or bridge with uninstrumented")
        print(json.dumps(paired_worker(args.config, args.batch, args.requests, args.paired, args.endpoint)))
        return
    print(json.dumps(worker(args.config, args.batch, args.requests, args.endpoint)))


if __name__ == "__main__":
    main()
