"""What an in-situ profile needs, for a ``vllm serve`` API server (serving_profile.py) and for an offline
``LLM`` process (offline_profile.py): py-spy's samples of the thread that holds the GIL, attributed to
this instrumentation or not, and the CPU time of a process's threads by name.

py-spy ``--gil`` samples the thread that holds the GIL; its native calls (such as into this package's
core) count to the Python line that made them. A sample is the instrumentation's when the first frame
from the leaf that is not the standard library's is in this package, its generated forwarding functions,
OpenTelemetry or wrapt. The package's own threads (the core's recorder and exporters; native, so py-spy
does not see them) are measured by their CPU time instead, in a run without py-spy: every sample stops
the process, and each of its threads then spends CPU on the stop.

A sample whose leaf is the line of a generated forwarding function that calls the method it replaces is
in native code called from that line: mostly the teardown of the vLLM method's frame and the freeing of
what it made, which without the instrumentation would count to vLLM's caller. Where the profiled process
names those lines (``lines_calling_originals``), such samples are counted apart, not as ours.
"""

from __future__ import annotations

import contextlib
import dis
import gc
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import types
from collections import Counter
from pathlib import Path

from common import median_interval, wilson_interval

# Frames that are this instrumentation's (or run only because of it): its package, the forwarding
# functions it generates (their file name), OpenTelemetry's API and SDK, wrapt.
OURS = re.compile(r"/opentelemetry/|/wrapt/|<opentelemetry-instrumentation-vllm ")
# The standard library's frames are skipped: they count to whoever called them.
STANDARD_LIBRARY = re.compile(r"/lib/python3\.\d+/(?!site-packages/)|^<frozen ")
# The core's native threads (recorder, flush), the OpenTelemetry SDK's (batch span processor, periodic
# metric reader) and its exporters' HTTP/gRPC runtimes; Linux keeps 15 characters of a thread's name.
OUR_THREADS = ("otel-vllm", "OpenTelemetry.", "reqwest-intern", "tokio-runtime")
RATE_HZ = 500
# Profiled loads: the share is taken per load, and their median reported. A rare long event inside one
# line (a full garbage collection, a few hundred ms in a vLLM process; the VM's vCPU descheduled) lands in
# whichever function runs then, and in one load of several it moves that load's share, not the median.
LOADS = 12


def lines_calling_originals() -> list[str]:
    """``file:line`` of every line of this process's generated forwarding functions that calls the method
    it replaces (found in their bytecode), as py-spy names the line."""
    from opentelemetry.instrumentation.vllm._forwarding import GENERATED_FILE, ORIGINAL_NAME

    found = set()
    for function in gc.get_objects():
        if not (isinstance(function, types.FunctionType) and function.__code__.co_filename.startswith(GENERATED_FILE)):
            continue
        codes = [function.__code__]
        while codes:
            code = codes.pop()
            line = code.co_firstlineno
            codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]  # a lambda's body
            for instruction in dis.get_instructions(code):
                # positions: 3.11+ (where starts_line becomes a bool in 3.13); 3.10 marks a line's first one.
                positions = getattr(instruction, "positions", None)
                if positions is None and instruction.starts_line:
                    line = instruction.starts_line
                if instruction.argval == ORIGINAL_NAME:
                    found.add(f"{code.co_filename}:{positions.lineno if positions else line}")
    return sorted(found)


def py_spy() -> str | None:
    """The py-spy executable (benchmarks/requirements.txt): on the PATH or beside this Python's."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return spy if Path(spy).exists() else None


def attribute_samples(raw: str, main_thread_id: int, not_ours: frozenset[str] = frozenset()) -> dict:
    """py-spy ``--format raw --threads`` output: the main thread's samples, the instrumentation's among
    them, and its functions by samples. A leaf line in ``not_ours`` (``lines_calling_originals``) is
    counted apart (``at_original_calls``), not as the instrumentation's."""
    main = ours = at_original_calls = 0
    functions: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        if not (thread.startswith(f"thread ({main_thread_id})") or thread.endswith("MainThread")):
            continue
        main += int(count)
        for frame in reversed(frames):
            location = frame[frame.rfind("(") + 1 :].rstrip(")")
            path = location.rsplit(":", 1)[0]
            if location in not_ours:
                at_original_calls += int(count)
                break
            if OURS.search(path):
                ours += int(count)
                functions[frame[: frame.rfind(" (")]] += int(count)
                break
            if STANDARD_LIBRARY.search(path):
                continue
            break
    return {
        "main_samples": main,
        "our_samples": ours,
        "at_original_calls": at_original_calls,
        "functions": functions.most_common(6),
    }


@contextlib.contextmanager
def recorded(spy: str, pid: int, samples: dict, not_ours: frozenset[str] = frozenset()):
    """py-spy records process ``pid`` (whose main thread's id is ``pid``) while the block runs; then
    ``samples`` holds ``attribute_samples`` of what it recorded."""
    raw = Path(f"/tmp/otel-vllm-bench-profile-{pid}-{time.monotonic_ns()}.txt")
    command = [spy, "record", "--gil", "--threads", "--full-filenames", "--format", "raw"]
    command += ["--rate", str(RATE_HZ), "--output", str(raw), "--pid", str(pid)]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # attached
        if recorder.poll() is not None:
            raise RuntimeError(f"py-spy: {recorder.stderr.read().strip()[-200:]}")
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        recorder.wait(60)
    try:
        samples.update(attribute_samples(raw.read_text(), pid, not_ours))
    finally:
        raw.unlink(missing_ok=True)


def _thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (name, CPU seconds) of a process's live threads (schedstat: nanoseconds)."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            name = (task / "comm").read_text().strip()
            threads[int(task.name)] = (name, int((task / "schedstat").read_text().split()[0]) / 1e9)
    return threads


def _machine_busy_s() -> float:
    """CPU seconds all CPUs spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _cpu_by_name(threads) -> list[tuple[str, float]]:
    """CPU seconds per thread name (threads of a pool share one), busiest first."""
    totals: Counter[str] = Counter()
    for name, cpu in threads:
        totals[name] += cpu
    return [(name, cpu) for name, cpu in totals.most_common() if cpu >= 0.01]


@contextlib.contextmanager
def cpu_measured(pid: int, result: dict):
    """While the block runs, the CPU of process ``pid`` (whose main thread's id is ``pid``) and of the
    machine; then ``result`` holds ``wall``, ``machine_busy``, ``main_cpu``, ``process_cpu``,
    ``our_threads_cpu`` (the instrumentation's own threads) and ``threads`` (CPU by thread name), in
    seconds."""
    before, busy0, wall0 = _thread_cpu(pid), _machine_busy_s(), time.monotonic()
    yield
    delta = [(tid, name, cpu - before.get(tid, (name, 0.0))[1]) for tid, (name, cpu) in _thread_cpu(pid).items()]
    result.update(
        wall=time.monotonic() - wall0,
        machine_busy=_machine_busy_s() - busy0,
        main_cpu=sum(cpu for tid, _, cpu in delta if tid == pid),
        process_cpu=sum(cpu for _, _, cpu in delta),
        our_threads_cpu=sum(cpu for _, name, cpu in delta if name.startswith(OUR_THREADS)),
        threads=_cpu_by_name((name, cpu) for _, name, cpu in delta),
    )


def loads_together(profiles: list[dict]) -> dict:
    """The ``attribute_samples`` of several loads: each load's share, and the sums."""
    return {
        "shares": [p["our_samples"] / p["main_samples"] for p in profiles if p["main_samples"]],
        "main_samples": sum(p["main_samples"] for p in profiles),
        "our_samples": sum(p["our_samples"] for p in profiles),
        "at_original_calls": sum(p["at_original_calls"] for p in profiles),
        "functions": sum((Counter(dict(p["functions"])) for p in profiles), Counter()).most_common(6),
    }


def share_line(result: dict, thread: str) -> tuple[float, str]:
    """The median share of ``loads_together``'s loads, and a line on it and its spread."""
    main, ours, shares = result["main_samples"], result["our_samples"], result["shares"]
    share = statistics.median(shares)
    low, high = median_interval(shares)
    pooled_low, pooled_high = wilson_interval(ours, main)
    return share, (
        f"instrumentation's share of {thread}'s GIL-holding samples: median {100 * share:.2f}% over "
        f"{len(shares)} loads (95% interval of the median {100 * low:.2f}-{100 * high:.2f}%; per load "
        f"{', '.join(f'{100 * x:.2f}' for x in shares)}); all loads pooled {100 * ours / max(main, 1):.2f}% "
        f"({ours} of {main}, Wilson 95% {100 * pooled_low:.2f}-{100 * pooled_high:.2f}%)"
    )
