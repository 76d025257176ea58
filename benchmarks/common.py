"""What the benchmark scripts share: running a worker process, medians with their spread, alternating
configurations, keeping the vCPUs awake."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# What vLLM's CPU build needs on a small CPU-only machine (tests/real/smoke_vllm.py says more): a KV cache
# of 1 GiB (by default it is sized as a fraction of the RAM), no model hub, no torch.compile of vLLM's
# helpers (inductor's C++ compilation slows the engine's start), no tokenizer thread pool.
VLLM_ENVIRONMENT = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "TORCHDYNAMO_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def run_worker(command: Sequence[str], env: dict[str, str] | None = None, timeout: float = 900) -> dict:
    """Runs ``command``; its last stdout line is a JSON object. Raises with its stderr tail on failure."""
    done = subprocess.run(
        list(command), capture_output=True, text=True, env=env or dict(os.environ), timeout=timeout, check=False
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command[:4])}... exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def cell(values: Sequence[float], digits: int = 2) -> str:
    """``median [min-max]``."""
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def ratio(numerator: float, denominator: float) -> str:
    if denominator <= 0:
        return "n/a"
    return f"{numerator / denominator:.2f}x"


def python_with(module: str, python: str = sys.executable) -> bool:
    """Whether ``python`` can import ``module`` (without importing it here)."""
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([python, "-c", code], capture_output=True, check=False).returncode == 0


def median_interval(values: list[float]) -> tuple[float, float]:
    """A distribution-free 95% confidence interval of the median: the order statistics n/2 -+ 0.98 sqrt(n)
    (normal approximation of the binomial; needs a dozen values or more to mean much)."""
    ordered = sorted(values)
    n = len(ordered)
    half_width = 0.98 * n**0.5
    return ordered[max(0, int(n / 2 - half_width))], ordered[min(n - 1, int(n / 2 + half_width))]


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """The Wilson score 95% interval of a proportion (a share of profile samples): sound for small
    counts, where the normal approximation's can go below zero."""
    if trials == 0:
        return 0.0, 1.0
    z = 1.96
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * (p * (1 - p) / trials + z * z / (4 * trials * trials)) ** 0.5 / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def alternated(cycles: int, block: Callable[[bool], Any]) -> list[tuple[Any, Any]]:
    """``(block(False), block(True))`` per cycle: an uninstrumented and an instrumented block, the
    order alternating from one cycle to the next so that neither always runs first."""
    pairs = []
    for cycle in range(cycles):
        order = (False, True) if cycle % 2 == 0 else (True, False)
        measured = {instrumented: block(instrumented) for instrumented in order}
        pairs.append((measured[False], measured[True]))
    return pairs


# Wakes every 0.2 ms and does nothing else: keeps the VM's vCPUs from halting between vLLM's
# inter-process round trips.
_WAKER = "import time\nwhile True:\n    time.sleep(0.0002)"


@contextlib.contextmanager
def cpu_waker(enabled: bool = True):
    """A process that keeps the vCPUs from going idle while it runs (what ``idle=poll`` does on a host).

    On the project's VM (Firecracker, 2 vCPUs) an idle vCPU halts, and waking it for the next message
    between vLLM's API server, engine core and worker takes long enough that ``vllm serve`` ran
    1.4-1.5x faster with any thread that wakes often, such as this instrumentation's recorder: the
    benchmark then measured the wake-ups, not the instrumentation. With this process running, both
    configurations get the same awake vCPUs (it takes a few % of one)."""
    if not enabled:
        yield
        return
    waker = subprocess.Popen([sys.executable, "-c", _WAKER])
    try:
        yield
    finally:
        waker.kill()
        waker.wait()
