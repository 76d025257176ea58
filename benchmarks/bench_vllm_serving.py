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

Alternation within one server (``--paired-servers`` servers; steadier: one server's throughput differs
from the next one's by 20-40% whatever the configuration): a server started instrumented through
the plugin, by ``serve_toggled.py``, whose benchmark-only route calls ``VllmInstrumentor().uninstrument()``
and ``instrument()`` in it; ``--cycles`` cycles of two loads of ``--cycle-requests`` requests, one
uninstrumented, one instrumented, in alternating order, with no request in flight when the
instrumentation changes and a pause of 1.5 s after every load. A load's API-server CPU includes a
``force_flush()`` after it (the instrumented load's spans and metrics exported). Reported: the
ratio of the instrumented load's tokens/s to the uninstrumented one's in the same cycle, with a 95%
confidence interval of its median, TTFT p50/p99 over all requests of each configuration, the API
server's CPU per token, and the content chunks streamed per request.

Run by ``benchmarks/suite.py`` (section 3).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

from common import cell, median_interval, run_worker

CONFIGS = ("uninstrumented", "instrumented")
START_TIMEOUT_S = 420
PAUSE_BETWEEN_LOADS_S = 1.5
TOGGLED_SERVER = Path(__file__).resolve().parent / "serve_toggled.py"


def load(base_url: str, requests: int, concurrency: int, tokens: int) -> dict:
    """The client side (runs in the vLLM venv, which has openai)."""

    async def run() -> dict:
        async with client_of(base_url) as client:
            return await load_with(client, requests, concurrency, tokens)

    return asyncio.run(run())


def client_of(base_url: str):
    import openai

    return openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=300)


async def load_with(client, requests: int, concurrency: int, tokens: int) -> dict:
    ttfts: list[float] = []
    generated: list[int] = []
    chunks = 0  # content chunks streamed: vLLM merges a request's tokens into one chunk when its consumer lags
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        nonlocal chunks
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
                if chunk.choices and chunk.choices[0].text:
                    chunks += 1
                    if first is None:
                        first = time.perf_counter() - start
                if chunk.usage is not None:
                    usage = chunk.usage.completion_tokens
            ttfts.append(first if first is not None else time.perf_counter() - start)
            generated.append(usage)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    wall = time.perf_counter() - start
    ttfts.sort()
    return {
        "wall": wall,
        "tokens": sum(generated),
        "ttft_p50": percentile(ttfts, 50),
        "ttft_p99": percentile(ttfts, 99),
        "ttfts": ttfts,
        "chunks": chunks,
    }


def percentile(ordered: list[float], p: int) -> float:
    return ordered[min(len(ordered) - 1, len(ordered) * p // 100)]


def paired_load(base_url: str, cycles: int, requests: int, concurrency: int, tokens: int) -> dict:
    """The client of the alternation within one server (runs in the vLLM venv, next to the server)."""
    root = base_url.removesuffix("/v1")

    def telemetry(action: str) -> dict:
        request = urllib.request.Request(f"{root}/benchmark/telemetry?action={action}", method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    async def run() -> tuple[dict[str, list[dict]], int]:
        async with client_of(base_url) as client:  # one client: its connections are kept across loads
            for action in ("off", "on"):  # warm-up, both ways
                telemetry(action)
                await load_with(client, max(concurrency, requests // 2), concurrency, tokens)
            exported_before = telemetry("flush")["stats"].get("spans_exported", 0)
            rows: dict[str, list[dict]] = {c: [] for c in CONFIGS}
            for cycle in range(cycles):
                for config in CONFIGS if cycle % 2 == 0 else CONFIGS[::-1]:
                    telemetry("on" if config == "instrumented" else "off")  # blocking: no request is in flight
                    cpu0 = _threads_cpu_s(pid)
                    result = await load_with(client, requests, concurrency, tokens)
                    telemetry("flush")
                    result["server_cpu"] = _threads_cpu_s(pid) - cpu0
                    rows[config].append(result)
                    # Every load starts the same time after the last one ended: without a pause, the load
                    # after an uninstrumented one (no export to flush in between) started at once and
                    # ran slower in 8 cycles of 8 on 2 vCPUs (why was not found; with the pause, not).
                    await asyncio.sleep(PAUSE_BETWEEN_LOADS_S)
            return rows, exported_before

    pid = telemetry("flush")["pid"]  # the API server's process, whatever launched it
    rows, exported_before = asyncio.run(run())
    stats = telemetry("off")["stats"]
    return {
        "loads": rows,
        # Proof that the instrumented loads were instrumented: a span per request.
        "spans_exported": stats.get("spans_exported", 0) - exported_before,
        "expected_spans": cycles * requests,
        "dropped": stats.get("spans_dropped", 0),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _threads_cpu_s(pid: int) -> float:
    """CPU time of the process's live threads in nanoseconds' resolution (schedstat), where
    ``_cpu_s``'s clock ticks (10 ms) would be a few µs per token of one short load; a thread that
    exits during a load takes its time with it, so this is for a server whose threads persist."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # gone meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9 if total else _cpu_s(pid)  # all zero where the kernel keeps no schedstats


@contextlib.contextmanager
def running_server(python, env, model, config, endpoint, launcher=None):
    """A healthy server on a free port (yields its base URL and process); killed with its engine after."""
    port = _free_port()
    env = dict(env)
    if config == "instrumented":
        env.update(
            OTEL_INSTRUMENTATION_VLLM_PLUGIN_ENABLED="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_SERVICE_NAME="bench-serving",
        )
    command = [str(python), *(["-m", "vllm.entrypoints.openai.api_server"] if launcher is None else [str(launcher)])]
    command += ["--model", model]
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
        yield f"http://127.0.0.1:{port}/v1", proc
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone already if it failed to start
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.unlink(missing_ok=True)


def one_server(python, env, model, config, endpoint, requests, concurrency, tokens) -> dict:
    with running_server(python, env, model, config, endpoint) as (base_url, proc):
        client = [str(python), __file__, "--load", base_url]
        sizes = ["--concurrency", str(concurrency), "--tokens", str(tokens)]
        run_worker([*client, "--requests", str(max(concurrency, requests // 4)), *sizes], env)  # warm-up
        cpu0 = _cpu_s(proc.pid)
        result = run_worker([*client, "--requests", str(requests), *sizes], env)
        result["server_cpu"] = _cpu_s(proc.pid) - cpu0
        return result


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


def measure_paired(python, env, model, endpoint, servers, cycles, requests, concurrency, tokens) -> list[dict]:
    results = []
    for _ in range(servers):
        try:
            with running_server(python, env, model, "instrumented", endpoint, TOGGLED_SERVER) as (base_url, _):
                command = [str(python), __file__, "--paired-load", base_url, "--cycles", str(cycles)]
                command += ["--requests", str(requests), "--concurrency", str(concurrency), "--tokens", str(tokens)]
                results.append(run_worker(command, env, timeout=3600))
        except RuntimeError as error:
            results.append({"error": str(error).splitlines()[-1][:160]})
    return results


def paired_table(results: list[dict], requests: int, concurrency: int, tokens: int, cycles: int) -> list[str]:
    ok = [r for r in results if "error" not in r]
    lines = [
        f"alternation within a server: {len(results)} servers x {cycles} cycles of an uninstrumented and an "
        f"instrumented load ({requests} streaming completions x {tokens} tokens, {concurrency} concurrent), "
        "order alternating; medians [min-max] over loads",
    ]
    if not ok:
        return lines + [f"failed: {results[0]['error'] if results else 'no server ran'}"]
    loads = {c: [load for r in ok for load in r["loads"][c]] for c in CONFIGS}
    rates = {c: [x["tokens"] / x["wall"] for x in loads[c]] for c in CONFIGS}
    cpu = {c: [x["server_cpu"] / x["tokens"] * 1e6 for x in loads[c]] for c in CONFIGS}
    lines.append(
        f"{'config':<15} {'tokens/s':>18} {'TTFT p50 ms':>12} {'TTFT p99 ms':>12} {'API server CPU µs/token':>24} "
        f"{'chunks/request':>15}"
    )
    for config in CONFIGS:
        ttfts = sorted(t for x in loads[config] for t in x["ttfts"])
        lines.append(
            f"{config:<15} {cell(rates[config], 0):>18} {percentile(ttfts, 50) * 1e3:>12.1f} "
            f"{percentile(ttfts, 99) * 1e3:>12.1f} {cell(cpu[config], 1):>24} "
            f"{sum(x['chunks'] for x in loads[config]) / (requests * len(loads[config])):>15.1f}"
        )
    # Loads in the same cycle: the instrumented one's over the uninstrumented one's.
    ratios = [i / u for i, u in zip(rates["instrumented"], rates["uninstrumented"], strict=True)]
    low, high = median_interval(ratios)
    lines.append(
        f"instrumented / uninstrumented tokens/s: median {statistics.median(ratios):.4f} over {len(ratios)} cycles, "
        f"95% confidence interval of the median {low:.4f}-{high:.4f}"
    )
    extra = [i - u for i, u in zip(cpu["instrumented"], cpu["uninstrumented"], strict=True)]
    low, high = median_interval(extra)
    lines.append(
        f"instrumented - uninstrumented API-server CPU per generated token: median {statistics.median(extra):+.2f} µs "
        f"(95% interval {low:+.2f} to {high:+.2f}), a flush per load included"
    )
    exported = sum(r["spans_exported"] for r in ok)
    lines.append(
        f"spans exported by the instrumented loads: {exported} (expected {sum(r['expected_spans'] for r in ok)}: "
        f"a span per request); dropped: {sum(r['dropped'] for r in ok)}"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--load", metavar="BASE_URL")
    parser.add_argument("--paired-load", metavar="BASE_URL")
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load(args.load, args.requests, args.concurrency, args.tokens)))
    if args.paired_load:
        print(json.dumps(paired_load(args.paired_load, args.cycles, args.requests, args.concurrency, args.tokens)))


if __name__ == "__main__":
    main()
