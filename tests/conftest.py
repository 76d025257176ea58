"""Fixtures: OTLP receivers, a per-test pipeline of the Rust core, and isolation between tests.

The core builds one pipeline per process; every test that starts one shuts it down afterwards, so
the next ``configure`` builds a fresh one with the next test's settings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from helpers import QUIET_SETTINGS
from opentelemetry.instrumentation.vllm import VllmInstrumentor, _core
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
