"""Real vLLM offline (CPU build, tiny local model): throughput with and without telemetry.

Configurations, each in its own process, alternating, ``--rounds`` processes each:
  stats-off      uninstrumented, LLM(disable_log_stats=True)   (vLLM's offline default)
  stats-on       uninstrumented, LLM(disable_log_stats=False)
  instrumented   VllmInstrumentor().instrument() (which turns stats on), OTLP/HTTP to a loopback sink
  vllm-tracing   uninstrumented, vLLM's own tracing: LLM(otlp_traces_endpoint=<loopback gRPC sink>,
                 disable_log_stats=False) (offline tracing asserts without stats, vLLM #25352)
Per process: ``--calls`` calls of ``llm.generate`` (``--prompts`` prompts x ``--tokens`` tokens,
ignore_eos) after one warm-up call. Per configuration: the median over processes of each process's
median call: wall time, requests/s, tokens/s, and the frontend process's CPU time (user+sys of all
its threads; the engine core runs in another process).

Alternation within one process (``--paired-rounds`` processes; steadier: on two vCPUs one process's
wall time differs from the next by 10-25% whatever the configuration, which hides a 1% effect):
two LLMs, one with stats off, one with stats on; ``--cycles`` cycles of three calls, stats-off,
stats-on and instrumented (the stats-on LLM after ``VllmInstrumentor().instrument()``, which is
undone after the call), each cycle starting one configuration later. Per cycle, the throughput
ratios of instrumented to the other two calls of the same cycle; medians over all cycles. Wall
time is the ``generate`` call's (export runs on the core's own thread meanwhile); frontend CPU
includes a ``force_flush()`` after an instrumented call, so the export's CPU is counted in it.

Run by ``benchmarks/suite.py`` (section 2), or alone with any Python that has this package:
    python benchmarks/bench_vllm_offline.py [--vllm-venv DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from common import ROOT, cell, median_interval, run_worker

CONFIGS = ("stats-off", "stats-on", "instrumented", "vllm-tracing")
PAIRED_CONFIGS = ("stats-off", "stats-on", "instrumented")


def worker(config: str, model: str, prompts: int, tokens: int, calls: int, endpoint: str) -> dict:
    if config == "instrumented":
        from opentelemetry.instrumentation.vllm import VllmInstrumentor

        VllmInstrumentor().instrument(endpoint=endpoint)
    from vllm import LLM, SamplingParams

    kwargs = {}
    if config == "vllm-tracing":
        kwargs = {"disable_log_stats": False, "otlp_traces_endpoint": endpoint}
    elif config != "instrumented":
        kwargs = {"disable_log_stats": config == "stats-off"}
    llm = LLM(model=model, dtype="float32", enforce_eager=True, max_model_len=512, **kwargs)
    params = SamplingParams(max_tokens=tokens, ignore_eos=True)
    batch = [f"Prompt {i} is about" for i in range(prompts)]
    walls, cpus, generated = [], [], []
    for call in range(calls + 1):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        outputs = llm.generate(batch, params, use_tqdm=False)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        if call:  # the first call warms up
            walls.append(wall1 - wall0)
            cpus.append(cpu1 - cpu0)
            generated.append(sum(len(c.token_ids) for o in outputs for c in o.outputs))
    dropped = 0
    if config == "instrumented":
        from opentelemetry.instrumentation.vllm import force_flush, get_stats

        force_flush(30)
        dropped = get_stats().get("spans_dropped", 0)
    return {
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "tokens": statistics.median(generated),
        "dropped": dropped,
    }


def paired_worker(model: str, prompts: int, tokens: int, cycles: int, endpoint: str) -> dict:
    from opentelemetry.instrumentation.vllm import VllmInstrumentor, force_flush, get_stats
    from vllm import LLM, SamplingParams

    def make_llm(stats: bool):
        return LLM(model=model, dtype="float32", enforce_eager=True, max_model_len=512, disable_log_stats=not stats)

    llms = {"stats-off": make_llm(False), "stats-on": make_llm(True)}
    llms["instrumented"] = llms["stats-on"]
    instrumentor = VllmInstrumentor()
    params = SamplingParams(max_tokens=tokens, ignore_eos=True)
    batch = [f"Prompt {i} is about" for i in range(prompts)]

    def call(config: str) -> tuple[float, float, int]:
        if config == "instrumented":
            instrumentor.instrument(endpoint=endpoint)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        outputs = llms[config].generate(batch, params, use_tqdm=False)
        wall1 = time.perf_counter()
        if config == "instrumented":
            force_flush(30)
        cpu1 = time.process_time()
        if config == "instrumented":
            instrumentor.uninstrument()
        return wall1 - wall0, cpu1 - cpu0, sum(len(c.token_ids) for o in outputs for c in o.outputs)

    for config in PAIRED_CONFIGS:  # warm-up
        call(config)
    recorded_before = get_stats().get("spans_exported", 0)
    rows: dict[str, list] = {c: [] for c in PAIRED_CONFIGS}
    for cycle in range(cycles):
        start = cycle % len(PAIRED_CONFIGS)
        for config in PAIRED_CONFIGS[start:] + PAIRED_CONFIGS[:start]:
            rows[config].append(call(config))
    stats = get_stats()
    return {
        "calls": rows,
        # Proof that the instrumented calls were instrumented: a request span per prompt, an operation span per call.
        "spans_exported": stats.get("spans_exported", 0) - recorded_before,
        "dropped": stats.get("spans_dropped", 0),
    }


def measure_paired(python, env, model, endpoint, rounds, cycles, prompts, tokens) -> list[dict]:
    results = []
    for _ in range(rounds):
        command = [str(python), __file__, "--paired-worker", model, endpoint]
        command += ["--cycles", str(cycles), "--prompts", str(prompts), "--tokens", str(tokens)]
        try:
            results.append(run_worker(command, env))
        except RuntimeError as error:
            results.append({"error": str(error).splitlines()[-1][:160]})
    return results


def paired_table(results: list[dict], prompts: int, tokens: int, cycles: int) -> list[str]:
    ok = [r for r in results if "error" not in r]
    lines = [
        f"alternation within a process: {len(results)} processes x {cycles} cycles of stats-off, stats-on, "
        f"instrumented calls (llm.generate, {prompts} prompts x {tokens} tokens); medians [min-max] over all calls",
    ]
    if not ok:
        return lines + [f"failed: {results[0]['error'] if results else 'no process ran'}"]
    calls = {c: [row for r in ok for row in r["calls"][c]] for c in PAIRED_CONFIGS}
    # Ratios of calls in the same cycle: instrumented's throughput over the other configuration's.
    vs = {
        other: [o[0] / i[0] for o, i in zip(calls[other], calls["instrumented"], strict=True)]
        for other in ("stats-on", "stats-off")
    }
    lines.append(
        f"{'config':<13} {'wall s':>20} {'requests/s':>10} {'tokens/s':>9} {'frontend CPU s':>20} "
        f"{'instrumented throughput / this, same cycle':>43}"
    )
    for config in PAIRED_CONFIGS:
        walls, cpus = [c[0] for c in calls[config]], [c[1] for c in calls[config]]
        wall = statistics.median(walls)
        tokens_s = statistics.median(c[2] / c[0] for c in calls[config])
        ratio = cell(vs[config], 4) if config in vs else ""
        lines.append(
            f"{config:<13} {cell(walls, 3):>20} {prompts / wall:>10.0f} {tokens_s:>9.0f} {cell(cpus, 4):>20} "
            f"{ratio:>43}"
        )
    for other, ratios in vs.items():
        low, high = median_interval(ratios)
        lines.append(
            f"instrumented / {other} throughput: median {statistics.median(ratios):.4f} over {len(ratios)} cycles, "
            f"95% confidence interval of the median {low:.4f}-{high:.4f}"
        )
    expected = len(calls["instrumented"]) * (prompts + 1)
    exported = sum(r["spans_exported"] for r in ok)
    lines.append(
        f"spans exported by the instrumented calls: {exported} (expected {expected}: a span per request and per "
        f"call); dropped: {sum(r['dropped'] for r in ok)}"
    )
    failed = len(results) - len(ok)
    if failed:
        lines.append(f"({failed} of {len(results)} processes failed)")
    return lines


def measure(python, env, model, endpoints, rounds, calls, prompts, tokens, configs=CONFIGS) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {c: [] for c in configs}
    for _ in range(rounds):
        for config in configs:  # alternate configurations within each round
            endpoint = endpoints["grpc" if config == "vllm-tracing" else "http"]
            command = [str(python), __file__, "--worker", config, model, endpoint]
            command += ["--calls", str(calls), "--prompts", str(prompts), "--tokens", str(tokens)]
            try:
                results[config].append(run_worker(command, env))
            except RuntimeError as error:
                results[config].append({"error": str(error).splitlines()[-1][:160]})
    return results


def table(results: dict[str, list[dict]], prompts: int, tokens: int, calls: int, rounds: int) -> list[str]:
    lines = [
        f"llm.generate, {prompts} prompts x {tokens} tokens (ignore_eos), median call of {calls} per process, "
        f"{rounds} processes per row, alternating (median [min-max])",
        f"{'config':<13} {'wall s':>20} {'requests/s':>10} {'tokens/s':>9} {'frontend CPU s':>20} "
        f"{'throughput vs stats-on':>23} {'vs stats-off':>12} {'dropped':>7}",
    ]
    ok = {c: [r for r in rows if "error" not in r] for c, rows in results.items()}
    base = {c: statistics.median(r["wall"] for r in rows) for c, rows in ok.items() if rows}
    for config, rows in results.items():
        if not ok[config]:
            lines.append(f"{config:<13} failed: {rows[0]['error']}")
            continue
        walls, cpus = [r["wall"] for r in ok[config]], [r["cpu"] for r in ok[config]]
        wall = statistics.median(walls)
        tokens_s = statistics.median(r["tokens"] / r["wall"] for r in ok[config])
        vs_on = f"{base['stats-on'] / wall:.3f}" if "stats-on" in base else "n/a"
        vs_off = f"{base['stats-off'] / wall:.3f}" if "stats-off" in base else "n/a"
        lines.append(
            f"{config:<13} {cell(walls, 3):>20} {prompts / wall:>10.0f} {tokens_s:>9.0f} {cell(cpus, 3):>20} "
            f"{vs_on:>23} {vs_off:>12} {sum(r['dropped'] for r in ok[config]):>7}"
        )
        failed = len(rows) - len(ok[config])
        if failed:
            lines.append(f"{'':<13} ({failed} of {len(rows)} processes failed)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--cycles", type=int, default=10, help="cycles per process of the in-process alternation")
    parser.add_argument("--paired-rounds", type=int, default=3, help="processes of the in-process alternation")
    parser.add_argument("--vllm-venv")
    parser.add_argument("--worker", nargs=3, metavar=("CONFIG", "MODEL", "ENDPOINT"))
    parser.add_argument("--paired-worker", nargs=2, metavar=("MODEL", "ENDPOINT"))
    args = parser.parse_args()
    if args.paired_worker:
        import json

        model, endpoint = args.paired_worker
        print(json.dumps(paired_worker(model, args.prompts, args.tokens, args.cycles, endpoint)))
        return
    if args.worker:
        import json

        config, model, endpoint = args.worker
        print(json.dumps(worker(config, model, args.prompts, args.tokens, args.calls, endpoint)))
        return
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import real_vllm
    import sinks

    prepared, why = real_vllm.prepare(args.vllm_venv)
    if prepared is None:
        print(f"skipped: {why}")
        return
    python, env, model = prepared
    with sinks.sink("http") as http, sinks.sink("grpc", str(python)) as grpc:
        results = measure(
            python, env, model, {"http": http, "grpc": grpc}, args.rounds, args.calls, args.prompts, args.tokens
        )
        paired = measure_paired(python, env, model, http, args.paired_rounds, args.cycles, args.prompts, args.tokens)
    if args.rounds:
        print("\n".join(table(results, args.prompts, args.tokens, args.calls, args.rounds)))
    if args.paired_rounds:
        print("\n".join(paired_table(paired, args.prompts, args.tokens, args.cycles)))


if __name__ == "__main__":
    main()
