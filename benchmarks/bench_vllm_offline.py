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

Run by ``benchmarks/suite.py`` (section 2), or alone with any Python that has this package:
    python benchmarks/bench_vllm_offline.py [--vllm-venv DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from common import ROOT, cell, run_worker

CONFIGS = ("stats-off", "stats-on", "instrumented", "vllm-tracing")


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
    parser.add_argument("--vllm-venv")
    parser.add_argument("--worker", nargs=3, metavar=("CONFIG", "MODEL", "ENDPOINT"))
    args = parser.parse_args()
    if args.worker:
        import json

        config, model, endpoint = args.worker
        print(json.dumps(worker(config, model, args.prompts, args.tokens, args.calls, endpoint)))
        return
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import real_vllm
    import sinks

    python, why = real_vllm.find_venv(args.vllm_venv)
    if python is None:
        print(f"skipped: {why}")
        return
    env = real_vllm.worker_environment(real_vllm.overlay_site())
    model = real_vllm.build_model(python, env)
    with sinks.sink("http") as http, sinks.sink("grpc", str(python)) as grpc:
        results = measure(
            python, env, model, {"http": http, "grpc": grpc}, args.rounds, args.calls, args.prompts, args.tokens
        )
    print("\n".join(table(results, args.prompts, args.tokens, args.calls, args.rounds)))


if __name__ == "__main__":
    main()
