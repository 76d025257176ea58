"""Fixtures of the real-vLLM tier: run INSIDE a venv made by tools/install_vllm.sh (run_real_tier.sh does).

- one OTLP/HTTP receiver and one instrumentation pipeline per session: ``VllmInstrumentor().instrument()``
  (the dependency check NOT skipped) exports there; a Python SDK TracerProvider with
  ``service.name=SERVICE_NAME`` is the global provider, so the tests can open parent spans;
- one ``LLM`` per model per test module (engine start is ~30 s on 2 cores), shut down at module end.

vLLM's CPU platform spawns its EngineCore and worker processes, which re-import ``__main__`` (pytest's,
guarded); nothing here starts a process or imports vLLM at import time.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from otlp_receivers import HttpReceiver, ReceivedSpan
from real_helpers import (
    ENGINE_KWARGS,
    SERVICE_NAME,
    VLLM_ENVIRONMENT,
    HistogramSnapshot,
    pooling_engine_kwargs,
    shutdown_llm,
    snapshot,
)

# The tiny-model builder, shared with the benchmarks and the demo.
TOOLS = Path(__file__).resolve().parents[2] / "tools"


def pytest_configure(config: pytest.Config) -> None:
    for name, value in VLLM_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if importlib.util.find_spec("vllm") is not None:
        return
    skip = pytest.mark.skip(reason="vLLM is not installed here: run tests/real/run_real_tier.sh (a venv per version)")
    for item in items:
        if "tests/real/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(skip)


# ---- telemetry --------------------------------------------------------------------------------


class Telemetry:
    """The session's receiver, seen through the instrumentation's flush."""

    def __init__(self, receiver: HttpReceiver) -> None:
        self.receiver = receiver

    def flush(self) -> None:
        from opentelemetry.instrumentation.vllm import force_flush

        assert force_flush(30.0), "force_flush timed out"

    def spans_in_trace(self, trace_id: int) -> list[ReceivedSpan]:
        return [s for s in self.receiver.spans() if s.trace_id == trace_id]

    def histograms(self) -> HistogramSnapshot:
        """Flushes, then the histograms of the latest (cumulative) export."""
        self.flush()
        return snapshot(self.receiver)


@pytest.fixture(scope="session")
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as r:
        yield r


@pytest.fixture(scope="session")
def sdk_tracer_provider() -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    trace.set_tracer_provider(provider)
    assert trace.get_tracer_provider() is provider, "another global TracerProvider was set first"
    return provider


@pytest.fixture(scope="session")
def instrumentor(receiver: HttpReceiver, sdk_tracer_provider: Any) -> Iterator[Any]:
    """Instrumented before any ``LLM`` exists, the way an application does it: no skip_dep_check."""
    from opentelemetry.instrumentation.vllm import VllmInstrumentor, shutdown

    inst = VllmInstrumentor()
    assert not inst.is_instrumented_by_opentelemetry
    inst.instrument(
        endpoint=receiver.endpoint,
        # Exports happen when a test flushes.
        schedule_delay_ms=600_000,
        metric_export_interval_ms=600_000,
    )
    assert inst.is_instrumented_by_opentelemetry, "instrument() did nothing (dependency check?)"
    yield inst
    inst.uninstrument()
    shutdown(10.0)


@pytest.fixture(scope="session")
def telemetry(receiver: HttpReceiver, instrumentor: Any) -> Telemetry:
    return Telemetry(receiver)


@pytest.fixture(scope="session")
def tracer(sdk_tracer_provider: Any) -> Any:
    return sdk_tracer_provider.get_tracer("otel-vllm-real-tier-tests")


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    from tiny_model import build_tiny_model

    base = tmp_path_factory.mktemp("models")
    return {
        "generate": build_tiny_model(str(base / "tiny-llama")),
        "pooling": build_tiny_model(str(base / "tiny-llama-embed"), pooling=True),
    }


@pytest.fixture(scope="module")
def llm(instrumentor: Any, model_dirs: dict[str, str]) -> Iterator[Any]:
    from vllm import LLM

    engine = LLM(model=model_dirs["generate"], **ENGINE_KWARGS)
    yield engine
    shutdown_llm(engine)
    del engine
    gc.collect()
    time.sleep(1.0)  # let the EngineCore and worker processes go before the next engine starts


@pytest.fixture(scope="module")
def pooling_llm(instrumentor: Any, model_dirs: dict[str, str]) -> Iterator[Any]:
    from vllm import LLM

    engine = LLM(model=model_dirs["pooling"], **ENGINE_KWARGS, **pooling_engine_kwargs())
    yield engine
    shutdown_llm(engine)
    del engine
    gc.collect()
    time.sleep(1.0)


@pytest.fixture
def no_pending_requests(instrumentor: Any) -> Iterator[None]:
    """After the test, the instrumentation holds no request it registered (white box: a leak here
    grows without bound in a long-running process)."""
    yield
    offline = getattr(instrumentor, "_offline", None)
    pending = dict(getattr(offline, "_pending", {}) or {})
    assert not pending, f"requests left registered after the call returned: {list(pending)}"
    kept_by_the_core = getattr(offline, "_requests", None)
    assert kept_by_the_core is None or len(kept_by_the_core) == 0, "requests left in the core's store"


class Call:
    """Runs an LLM call inside its own SDK parent span and records the wall-clock window."""

    def __init__(self, tracer: Any, name: str) -> None:
        self.tracer = tracer
        self.name = name
        self.parent: Any = None
        self.start_ns = 0
        self.end_ns = 0

    def __enter__(self) -> Call:
        self._cm = self.tracer.start_as_current_span(self.name)
        self.parent = self._cm.__enter__()
        self.start_ns = time.time_ns()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.end_ns = time.time_ns()
        self._cm.__exit__(*exc)

    @property
    def trace_id(self) -> int:
        return self.parent.get_span_context().trace_id


@pytest.fixture
def call(tracer: Any, request: pytest.FixtureRequest) -> Any:
    """``with call() as c: llm.generate(...)`` -- c.parent, c.start_ns, c.end_ns, c.trace_id."""
    return lambda name=None: Call(tracer, name or request.node.name)
