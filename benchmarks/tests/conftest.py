"""Fixtures of the benchmarks' own tests (``pytest benchmarks/tests``; tox's bench-smoke env runs them).

They run over the same fake vLLM 0.32 tree as the fast test tier and benchmark section 1
(tests/fake_vllm), instrumented the way tests/conftest.py does it, with the test suite's loopback
OTLP receiver; the benchmark modules are imported from benchmarks/.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
for directory in (ROOT / "benchmarks", ROOT / "tests"):  # the benchmark modules; fake_vllm, otlp_receivers
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))

from fake_vllm import TREES  # noqa: E402
from helpers import QUIET_ARGUMENTS  # noqa: E402
from opentelemetry.instrumentation.vllm import VllmInstrumentor, _core  # noqa: E402
from otlp_receivers import HttpReceiver  # noqa: E402


def _forget_vllm() -> None:
    for name in [n for n in sys.modules if n == "vllm" or n.startswith("vllm.")]:
        del sys.modules[name]


@pytest.fixture
def instrument(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., VllmInstrumentor]]:
    """``instrument(**arguments)`` instruments the fake vLLM 0.32 tree (first on sys.path for the test),
    exporting to a loopback receiver on force_flush only; undone after the test."""
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    tree = str(TREES["0.32"])
    _forget_vllm()
    sys.path.insert(0, tree)
    importlib.invalidate_caches()
    instrumentor = VllmInstrumentor()  # a singleton
    assert not instrumentor.is_instrumented_by_opentelemetry
    with HttpReceiver() as receiver:

        def start(**arguments: Any) -> VllmInstrumentor:
            instrumentor.instrument(skip_dep_check=True, endpoint=receiver.endpoint, **QUIET_ARGUMENTS, **arguments)
            assert instrumentor.is_instrumented_by_opentelemetry
            return instrumentor

        yield start
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        if _core.is_enabled():
            _core.shutdown(5.0)
    _forget_vllm()
    sys.path.remove(tree)
