"""Section 3's in-situ profile: where the instrumented ``vllm serve``'s API server spends its time, and how
much of it is this instrumentation's.

Alternating loads within a server (bench_vllm_serving.py) resolve a throughput difference to about ±6%
on the project's 2-vCPU VM, where loads vary from one to the next by a factor of several; the target is
1%. A profile of the running server resolves the instrumentation's own share far more finely: py-spy
samples the API server's thread that holds the GIL (``--gil``; its native calls, such as into this
package's core, count to the Python line that made them), and each sample is the instrumentation's
when the first frame from the leaf that is not the standard library's is in this package, its
generated forwarding functions, OpenTelemetry or wrapt. The package's own threads (the core's recorder
and exporters; native, so py-spy does not see them) are measured by their CPU time in a second load.

Measured this way, the per-step and per-request code of the serving path costs about ten times in the
server what it costs in a loop (bench_fake_serving.py): between two engine steps everything else in the
process and the machine has run, so each step starts from cold caches.

A garbage collection runs inside whichever line allocated last; a full one takes a few hundred
milliseconds in a vLLM server, and one that lands in the instrumentation's line adds 100-200 samples
to one of its functions. Hence shares per load and their median (``LOADS``). py-spy's ``--native``
would show the collector, but in these servers it also put vLLM's time under the instrumentation's
frames (its merge of native and Python stacks), so it is not used.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from common import run_worker
from in_situ import (
    LOADS,
    RATE_HZ,
    cpu_measured,
    loads_together,
    py_spy,
    recorded,
    share_line,
)


def _profiled_load(spy: str, pid: int, client: list[str], env) -> dict:
    """One load with py-spy recording the API server; its samples, attributed."""
    samples: dict = {}
    with recorded(spy, pid, samples):
        run_worker(client, env)
    return samples


def profile_load(python, env, base_url: str, pid: int, spy: str, requests: int, concurrency: int, tokens: int):
    """``LOADS`` profiled loads of requests / LOADS each, then one unprofiled load of ``requests``."""
    client = [str(python), str(Path(__file__).with_name("bench_vllm_serving.py")), "--load", base_url]
    sizes = ["--concurrency", str(concurrency), "--tokens", str(tokens)]
    run_worker([*client, "--requests", str(max(concurrency, requests // 8)), *sizes], env)  # warm-up
    profiles = [
        _profiled_load(spy, pid, [*client, "--requests", str(requests // LOADS), *sizes], env) for _ in range(LOADS)
    ]
    # CPU times from a second load without py-spy: every sample stops the process, and each of its
    # threads then spends CPU on the stop (about 0.2 s per thread over such a load here, idle ones too).
    measured: dict = {}
    with cpu_measured(pid, measured):
        load = run_worker([*client, "--requests", str(requests), *sizes], env)
    return {**loads_together(profiles), **measured, "requests": requests, "tokens": load["tokens"]}


def profile_table(result: dict, concurrency: int, tokens: int) -> list[str]:
    lines = [
        f"in-situ profile: one instrumented server, {result.get('requests', '?')} streaming completions x {tokens} "
        f"tokens, {concurrency} concurrent, in {LOADS} loads, py-spy --gil at {RATE_HZ} Hz on the API server"
    ]
    if "error" in result:
        return lines + [f"not measured: {result['error']}"]
    share, line = share_line(result, "the API server")
    lines.append(line)
    per_request_main = share * result["main_cpu"] / result["requests"] * 1e6
    per_request_threads = result["our_threads_cpu"] / result["requests"] * 1e6
    ours_cpu = share * result["main_cpu"] + result["our_threads_cpu"]
    lines.append(
        "a second load of the same size without py-spy, same server: "
        f"{result['tokens'] / result['wall']:.0f} tokens/s; CPU of the API server's threads by name (s): "
        + ", ".join(f"{name} {cpu:.2f}" for name, cpu in result["threads"])
    )
    lines.append(
        f"its CPU per request: {per_request_main:.1f} µs on the API server's main thread (share x its CPU) + "
        f"{per_request_threads:.1f} µs in its own threads = {100 * ours_cpu / result['machine_busy']:.2f}% of the "
        f"machine's busy CPU ({result['machine_busy']:.1f} s over {result['wall']:.1f} s; API server "
        f"{result['process_cpu']:.1f} s, its main thread {result['main_cpu']:.1f} s)"
    )
    top = ", ".join(f"{name} {n}" for name, n in result["functions"])
    lines.append(f"its functions by samples: {top}")
    return lines


def measure_profile(python, env, model, endpoint, requests: int, concurrency: int, tokens: int) -> dict:
    """Profiles one instrumented server (the same launcher as the alternation's): see ``profile_load``."""
    from bench_vllm_serving import TOGGLED_SERVER, running_server

    spy = py_spy()
    if spy is None:
        return {"error": "py-spy is not installed (benchmarks/requirements.txt)"}
    try:
        with running_server(python, env, model, "instrumented", endpoint, TOGGLED_SERVER) as (base_url, proc):
            return profile_load(python, env, base_url, proc.pid, spy, requests, concurrency, tokens)
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        return {"error": str(error).splitlines()[-1][:160] if str(error) else type(error).__name__}
