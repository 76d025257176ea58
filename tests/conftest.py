"""Fixtures: OTLP receivers, a per-test pipeline of the Rust core, and isolation between tests.

The core builds one pipeline per process; every test that starts one shuts it down afterwards, so
the next ``configure`` builds a fresh one with the next test's settings.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fake_vllm import TREES
from helpers import QUIET_ARGUMENTS, QUIET_SETTINGS
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.vllm import VllmInstrumentor, _core
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once
from otlp_receivers import GrpcReceiver, HttpReceiver

REAL_TESTS = Path(__file__).parent / "real"


@pytest.fixture(scope="session")
def _core_resolved_once() -> None:
    # Until something configures it, any call into the core builds a pipeline from the process
    # environment (exporting to localhost:4318). Resolve it once, disabled, so that a test which
    # only inspects the core (is_enabled, stats) never starts such a pipeline.
    _core.configure({"OTEL_SDK_DISABLED": "true"})


@pytest.fixture(autouse=True)
def _isolated(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* variable of the outer environment leaks in; nothing a test started outlives it.

    Tests under tests/real (a real vLLM, maintained separately) are left alone.
    """
    if Path(request.node.path).is_relative_to(REAL_TESTS):
        yield
        return
    request.getfixturevalue("_core_resolved_once")
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    yield
    instrumentor = VllmInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    _shutdown_core()


def _shutdown_core() -> None:
    if _core.is_enabled():
        _core.shutdown(5.0)


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver
        # A test requests its receiver after the pipeline, so the receiver would stop first: shut the
        # pipeline down while its final export can still arrive.
        _shutdown_core()


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcReceiver]:
    with GrpcReceiver() as receiver:
        yield receiver
        _shutdown_core()


PipelineFactory = Callable[..., bool]


@pytest.fixture
def pipeline() -> Iterator[PipelineFactory]:
    """``pipeline(receiver, overrides, python_resource=..., explicit_resource=...)`` configures the core.

    Exports go to ``receiver`` (gRPC for a ``GrpcReceiver``) and happen only on ``force_flush`` unless
    ``overrides`` say otherwise; the pipeline is shut down after the test.
    """

    def start(
        receiver: HttpReceiver | GrpcReceiver | None = None,
        overrides: Mapping[str, str] | None = None,
        *,
        python_resource: Mapping[str, Any] | None = None,
        explicit_resource: Mapping[str, Any] | None = None,
    ) -> bool:
        assert not _core.is_enabled(), "a pipeline of an earlier test is still running"
        settings = dict(QUIET_SETTINGS)
        if receiver is not None:
            settings["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
            if isinstance(receiver, GrpcReceiver):
                settings["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
        settings.update(overrides or {})
        return _core.configure(
            settings,
            dict(python_resource) if python_resource is not None else None,
            dict(explicit_resource) if explicit_resource is not None else None,
        )

    yield start
    _shutdown_core()


@pytest.fixture
def fresh_core_warnings() -> None:
    """Forgets the core's warning rate limits (one warning per kind and minute, process-wide).

    The only hook that resets them is the after-fork one, which also forgets the current pipeline;
    that is harmless here because no pipeline is running between tests.
    """
    assert not _core.is_enabled()
    _core._after_fork_child()
    # Resolve the core again (disabled), as the session fixture does.
    _core.configure({"OTEL_SDK_DISABLED": "true"})


# ---- fake vLLM (tests/fake_vllm), for the offline instrumentation tests --------------------------


def _forget_vllm() -> None:
    for name in [n for n in sys.modules if n == "vllm" or n.startswith("vllm.")]:
        del sys.modules[name]


@pytest.fixture
def vllm_tree(request: pytest.FixtureRequest) -> Iterator[str]:
    """Puts a fake vLLM tree (0.32 unless parametrised) first on sys.path; imports nothing."""
    version = getattr(request, "param", "0.32")
    path = str(TREES[version])
    imported = sys.modules.get("vllm")
    location = Path(getattr(imported, "__file__", None) or "/")
    if imported is not None and not any(location.is_relative_to(t) for t in TREES.values()):
        pytest.skip("a real vLLM is imported in this process; the fake trees would replace it")
    _forget_vllm()
    sys.path.insert(0, path)
    importlib.invalidate_caches()
    yield version
    _forget_vllm()
    sys.path.remove(path)


# ---- the application's Python SDK, as the contrib instrumentations' tests set it up ---------------

APP_RESOURCE = Resource.create({"service.name": "bridge-test-app"})


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider(resource=APP_RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(metric_reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[metric_reader], resource=APP_RESOURCE, shutdown_on_exit=False)
    yield provider
    provider.shutdown()


@pytest.fixture
def global_sdk_providers(
    monkeypatch: pytest.MonkeyPatch, tracer_provider: TracerProvider, meter_provider: MeterProvider
) -> tuple[TracerProvider, MeterProvider]:
    """``tracer_provider`` and ``meter_provider`` set as the global ones for this test only (the API
    allows setting each once per process; its globals are put back afterwards)."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(metrics._internal, "_METER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(metrics._internal, "_METER_PROVIDER", None)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider


@pytest.fixture
def instrument(vllm_tree: str, http_receiver: HttpReceiver) -> Iterator[Callable[..., VllmInstrumentor]]:
    """``instrument(**arguments)`` instruments, exporting to ``http_receiver`` on force_flush only;
    uninstrumented after the test (before the fake tree goes away)."""
    instrumentor = VllmInstrumentor()  # a singleton
    assert not instrumentor.is_instrumented_by_opentelemetry

    def start(**arguments: Any) -> VllmInstrumentor:
        instrumentor.instrument(skip_dep_check=True, endpoint=http_receiver.endpoint, **QUIET_ARGUMENTS, **arguments)
        assert instrumentor.is_instrumented_by_opentelemetry
        return instrumentor

    yield start
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
