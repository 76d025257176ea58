"""Real vLLM (CPU build, tiny local model): what engine stats and this instrumentation cost.

Configurations, each in its own process, alternating, ``--rounds`` processes each:
  stats-off     uninstrumented, LLM(disable_log_stats=True)   (vLLM's offline default)
  stats-on      uninstrumented, LLM(disable_log_stats=False)
  instrumented  VllmInstrumentor().instrument() (which turns stats on), OTLP/HTTP to a loopback sink
Per process: ``--calls`` calls of ``llm.generate`` (``--prompts`` prompts x ``--tokens`` tokens,
ignore_eos); the first call is a warm-up. Reported per configuration: the median over processes of
each process's median call: wall time, requests/s, and the frontend process's CPU time (user+sys
of all its threads; the engine core runs in another process).

Run with the python of a vLLM venv (tests/real/install_vllm.sh):
    "$VENV/bin/python" benchmarks/bench_vllm_offline.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("stats-off", "stats-on", "instrumented")


def worker(config: str, model: str, prompts: int, tokens: int, calls: int, endpoint: str) -> dict:
    if config == "instrumented":
        from opentelemetry.instrumentation.vllm import VllmInstrumentor

        VllmInstrumentor().instrument(endpoint=endpoint)
    from vllm import LLM, SamplingParams

    kwargs = {} if config == "instrumented" else {"disable_log_stats": config == "stats-off"}
    llm = LLM(model=model, dtype="float32", enforce_eager=True, max_model_len=512, **kwargs)
    params = SamplingParams(max_tokens=tokens, ignore_eos=True)
    batch = [f"Prompt {i} is about" for i in range(prompts)]
    walls, cpus = [], []
    for call in range(calls + 1):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        llm.generate(batch, params, use_tqdm=False)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        if call:  # the first call warms up
            walls.append(wall1 - wall0)
            cpus.append(cpu1 - cpu0)
    if config == "instrumented":
        from opentelemetry.instrumentation.vllm import force_flush, get_stats

        force_flush(30)
        dropped = get_stats().get("spans_dropped", 0)
    else:
        dropped = 0
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "dropped": dropped}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--worker", nargs=3, metavar=("CONFIG", "MODEL", "ENDPOINT"))
    args = parser.parse_args()
    for key, value in {
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
        "TORCHDYNAMO_DISABLE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }.items():
        os.environ.setdefault(key, value)
    if args.worker:
        config, model, endpoint = args.worker
        print(json.dumps(worker(config, model, args.prompts, args.tokens, args.calls, endpoint)))
        return

    sys.path.insert(0, str(ROOT / "tests" / "real"))
    from tiny_model import build_tiny_model

    model = build_tiny_model(str(Path(tempfile.gettempdir()) / "otel-vllm-bench-model"))
    sink = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "bench_core.py"), "--sink"], stdout=subprocess.PIPE, text=True
    )
    endpoint = f"http://127.0.0.1:{sink.stdout.readline().strip()}"
    results: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    try:
        for _ in range(args.rounds):
            for config in CONFIGS:
                command = [sys.executable, __file__, "--worker", config, model, endpoint]
                command += ["--calls", str(args.calls), "--prompts", str(args.prompts), "--tokens", str(args.tokens)]
                out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                results[config].append(json.loads(out.strip().splitlines()[-1]))
    finally:
        sink.kill()

    print(
        f"llm.generate, {args.prompts} prompts x {args.tokens} tokens, median call of {args.calls} per process, "
        f"{args.rounds} processes per row (median [min-max])"
    )
    base = statistics.median(r["cpu"] for r in results["stats-off"])
    base_wall = statistics.median(r["wall"] for r in results["stats-off"])
    print(
        f"{'config':<14} {'wall s':>22} {'requests/s':>10} {'frontend CPU s':>22} "
        f"{'CPU vs off':>10} {'wall vs off':>11}"
    )
    for config, rows in results.items():
        walls = [r["wall"] for r in rows]
        cpus = [r["cpu"] for r in rows]
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        print(
            f"{config:<14} {wall:>8.3f} [{min(walls):.3f}-{max(walls):.3f}] {args.prompts / wall:>10.0f} "
            f"{cpu:>8.3f} [{min(cpus):.3f}-{max(cpus):.3f}] {cpu / base:>9.2f}x {wall / base_wall:>10.2f}x"
        )


if __name__ == "__main__":
    main()
