"""Real ``vllm serve`` (CPU build, tiny model) under a concurrent streaming load from the openai client.

Configurations, each a fresh server, alternating, ``--rounds`` servers each:
  uninstrumented  python -m vllm.entrypoints.openai.api_server (stats on: the server's default)
  instrumented    the same with OTEL_INSTRUMENTATION_VLLM_PLUGIN_ENABLED=true (the vllm.general_plugins
                  entry point), spans and metrics over OTLP/HTTP to a loopback sink
Per server: a warm-up load, then ``--requests`` streaming completions (``--tokens`` tokens each,
ignore_eos), ``--concurrency`` at a time, from ``openai.AsyncOpenAI`` in another process. Reported:
generated tokens/s, TTFT p50/p99 (client side: request sent -> first content chunk), and the API
server process's CPU (user+sys of its threads, /proc/<pid>/stat; the engine core is another
process) per generated token: the amortised cost of the instrumentation per token.

Run by ``benchmarks/suite.py`` (section 3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from common import cell, run_worker

CONFIGS = ("uninstrumented", "instrumented")
START_TIMEOUT_S = 420


def load(base_url: str, requests: int, concurrency: int, tokens: int) -> dict:
    """The client side (runs in the vLLM venv, which has openai)."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=300)
    ttfts: list[float] = []
    generated: list[int] = []
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with semaphore:
            start = time.perf_counter()
            first = None
            usage = 0
            stream = await client.completions.create(
                model="tiny",
                prompt=f"Request {i} asks about the weather in a city",
                max_tokens=tokens,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},
            )
            async for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].text:
                    first = time.perf_counter() - start
                if chunk.usage is not None:
                    usage = chunk.usage.completion_tokens
            ttfts.append(first if first is not None else time.perf_counter() - start)
            generated.append(usage)

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        return time.perf_counter() - start

    wall = asyncio.run(run())
    ttfts.sort()
    return {
        "wall": wall,
        "tokens": sum(generated),
        "ttft_p50": ttfts[len(ttfts) // 2],
        "ttft_p99": ttfts[min(len(ttfts) - 1, int(len(ttfts) * 0.99))],
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def one_server(python, env, model, config, endpoint, requests, concurrency, tokens) -> dict:
    port = _free_port()
    env = dict(env)
    if config == "instrumented":
        env.update(
            OTEL_INSTRUMENTATION_VLLM_PLUGIN_ENABLED="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_SERVICE_NAME="bench-serving",
        )
    command = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", model]
    command += ["--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32"]
    command += ["--enforce-eager", "--max-model-len", "512", "--disable-uvicorn-access-log"]
    log = Path(tempfile.mkstemp(prefix=f"bench-serve-{config}-", suffix=".log")[1])
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited {proc.returncode}: {log.read_text()[-1500:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not healthy after {START_TIMEOUT_S}s")
            time.sleep(1)
        client = [str(python), __file__, "--load", f"http://127.0.0.1:{port}/v1"]
        sizes = ["--concurrency", str(concurrency), "--tokens", str(tokens)]
        run_worker([*client, "--requests", str(max(concurrency, requests // 4)), *sizes], env)  # warm-up
        cpu0 = _cpu_s(proc.pid)
        result = run_worker([*client, "--requests", str(requests), *sizes], env)
        result["server_cpu"] = _cpu_s(proc.pid) - cpu0
        return result
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.unlink(missing_ok=True)


def measure(python, env, model, endpoint, rounds, requests, concurrency, tokens) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    for _ in range(rounds):
        for config in CONFIGS:
            results[config].append(one_server(python, env, model, config, endpoint, requests, concurrency, tokens))
    return results


def table(results: dict[str, list[dict]], requests: int, concurrency: int, tokens: int, rounds: int) -> list[str]:
    lines = [
        f"vllm serve, {requests} streaming completions x {tokens} tokens (ignore_eos), {concurrency} concurrent, "
        f"openai.AsyncOpenAI; {rounds} servers per row, alternating (median [min-max])",
        f"{'config':<15} {'tokens/s':>18} {'TTFT p50 ms':>20} {'TTFT p99 ms':>20} {'API server CPU µs/token':>24} "
        f"{'tokens/s vs uninstr.':>20}",
    ]
    base = statistics.median(r["tokens"] / r["wall"] for r in results["uninstrumented"])
    base_cpu = statistics.median(r["server_cpu"] / r["tokens"] for r in results["uninstrumented"]) * 1e6
    for config, rows in results.items():
        rates = [r["tokens"] / r["wall"] for r in rows]
        cpu = [r["server_cpu"] / r["tokens"] * 1e6 for r in rows]
        lines.append(
            f"{config:<15} {cell(rates, 0):>18} {cell([r['ttft_p50'] * 1e3 for r in rows], 1):>20} "
            f"{cell([r['ttft_p99'] * 1e3 for r in rows], 1):>20} {cell(cpu, 1):>24} "
            f"{statistics.median(rates) / base:>20.3f}"
        )
    inst_cpu = statistics.median(r["server_cpu"] / r["tokens"] for r in results["instrumented"]) * 1e6
    lines.append(f"amortised instrumentation cost: {inst_cpu - base_cpu:+.2f} µs of API-server CPU per generated token")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--load", metavar="BASE_URL")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load(args.load, args.requests, args.concurrency, args.tokens)))


if __name__ == "__main__":
    main()
