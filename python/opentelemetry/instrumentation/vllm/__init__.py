"""OpenTelemetry instrumentation for vLLM.

Usage::

    from opentelemetry.instrumentation.vllm import VllmInstrumentor

    VllmInstrumentor().instrument()

Telemetry is recorded and exported by a Rust core (``_core``) that owns its own OpenTelemetry
pipeline, configured from the standard OTEL_* environment variables or the arguments of
``instrument()``; see README.rst for every setting. With ``tracer_provider`` / ``meter_provider``
(or a Python SDK configured in code) a signal is delivered through those providers instead
(``_delivery`` decides, ``_bridge`` delivers).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.dependencies import DependencyConflict, get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.vllm import _bridge, _configuration, _core, _delivery, _lifecycle, _vllm
from opentelemetry.instrumentation.vllm._content import ContentPolicy
from opentelemetry.instrumentation.vllm._offline import OfflineInstrumentation
from opentelemetry.instrumentation.vllm._serving import ServingInstrumentation
from opentelemetry.instrumentation.vllm.package import _instruments, _instruments_any
from opentelemetry.instrumentation.vllm.version import __version__

__all__ = [
    "VllmInstrumentor",
    "__version__",
    "force_flush",
    "get_latency_percentiles",
    "get_latency_summary",
    "get_stats",
    "shutdown",
]

_logger = logging.getLogger("opentelemetry.instrumentation.vllm")


# BaseInstrumentor is untyped to mypy (opentelemetry-instrumentation opts its module out of type checking).
class VllmInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments vLLM; configuration arguments override the matching OTEL_* variables.

    A second ``instrument()`` is a no-op; ``uninstrument()`` removes the patches and flushes.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _check_dependency_conflicts(self) -> DependencyConflict | None:
        # Any one of vLLM's distributions will do (the ``instruments-any`` extra).
        return get_dependency_conflicts(_instruments, _instruments_any)

    _offline: OfflineInstrumentation | None = None
    _serving: ServingInstrumentation | None = None

    def _instrument(self, **kwargs: Any) -> None:
        try:
            overrides = _configuration.overrides_from_arguments(kwargs)
            bridges = _bridges(_delivery.plan(kwargs, overrides, os.environ), kwargs)
            enabled = _core.configure(
                overrides,
                _configuration.python_sdk_resource(kwargs.get("tracer_provider")),
                _configuration.explicit_resource(kwargs),
                bridges.get("traces"),
                bridges.get("metrics"),
            )
            # The shim's own part of the semconv mode (top_k's type), read once from the core's configuration.
            _vllm.use_latest_semconv(_core.semconv_latest())
            _warn_if_delivery_differs(bridges)
            _lifecycle.register(_configuration.shutdown_timeout_seconds(kwargs))
        except Exception:  # noqa: BLE001 - telemetry must never break the application
            _logger.exception("could not start the telemetry pipeline; vLLM is not instrumented")
            return
        if not enabled:
            _logger.debug("telemetry disabled (OTEL_SDK_DISABLED)")
            return
        try:
            content = ContentPolicy(kwargs.get("capture_message_content"), kwargs.get("content_max_length"))
            self._offline = OfflineInstrumentation(content)
            self._offline.instrument()
            self._serving = ServingInstrumentation(content)
            self._serving.instrument()
        except Exception:  # noqa: BLE001
            _logger.exception("could not instrument vLLM")

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._offline is not None:
            self._offline.uninstrument()
            self._offline = None
        if self._serving is not None:
            self._serving.uninstrument()
            self._serving = None
        force_flush()


def _bridges(plan: dict[str, _delivery.Decision], arguments: dict[str, Any]) -> dict[str, Any]:
    """The bridge callables of the signals the plan bridges, pointed at their providers."""
    bridges: dict[str, Any] = {}
    for signal, bridge in (("traces", _bridge.SPANS), ("metrics", _bridge.METRICS)):
        decision = plan[signal]
        _logger.debug("%s: %s delivery (%s)", signal, decision.mode, decision.reason)
        if decision.mode == _delivery.BRIDGE:
            bridge.set_provider(arguments.get(_delivery.PROVIDER_ARGUMENT[signal]))
            bridges[signal] = bridge
    if "metrics" in bridges:
        _bridge.METRICS.prepare()
    return bridges


def _warn_if_delivery_differs(bridges: dict[str, Any]) -> None:
    # The pipeline is built once per process: a later instrument() cannot switch a running one.
    running = _core.delivery()
    if running is None:
        return
    for signal, mode in zip(_delivery.SIGNALS, running, strict=True):
        if (mode == "bridge") != (signal in bridges):
            _logger.warning(
                "%s keep their %s delivery: the telemetry pipeline is already running (call shutdown() first)",
                signal,
                mode,
            )


def force_flush(timeout: float = 5.0) -> bool:
    """Exports everything recorded so far; waits at most ``timeout`` seconds (without the GIL).

    Bridged signals are handed to their providers, which are then flushed too."""
    flushed = _core.force_flush(timeout)
    running = _core.delivery() or ()
    for mode, bridge in zip(running, (_bridge.SPANS, _bridge.METRICS), strict=False):
        if mode == "bridge":
            flushed = bridge.flush_provider(timeout) and flushed
    return flushed


def shutdown(timeout: float = 5.0) -> bool:
    """Flushes and stops the pipeline. It also runs at interpreter exit."""
    return _core.shutdown(timeout)


def get_stats() -> dict[str, int]:
    """Counters of the pipeline: requests recorded and dropped, spans exported, dropped and failed,
    metric exports sent and failed, malformed records skipped."""
    return _core.stats()


def get_latency_percentiles() -> list[dict[str, Any]]:
    """Count, p50, p90, p99, p99.9 and max (seconds) of every duration, per metric and model."""
    return [dict(row) for row in _core.latency_percentiles()]


def get_latency_summary() -> str:
    """The percentiles as a text table in milliseconds."""
    return _core.latency_summary()
