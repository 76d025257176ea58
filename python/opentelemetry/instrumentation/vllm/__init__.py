"""OpenTelemetry instrumentation for vLLM.

Usage::

    from opentelemetry.instrumentation.vllm import VllmInstrumentor

    VllmInstrumentor().instrument()

Telemetry is recorded and exported by a Rust core (``_core``) that owns its own OpenTelemetry
pipeline, configured from the standard OTEL_* environment variables or the arguments of
``instrument()``; see README.rst for every setting.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.vllm import _configuration, _core, _lifecycle
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


class VllmInstrumentor(BaseInstrumentor):
    """Instruments vLLM; configuration arguments override the matching OTEL_* variables.

    A second ``instrument()`` is a no-op; ``uninstrument()`` removes the patches and flushes.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _check_dependency_conflicts(self):
        # Any one of vLLM's distributions will do (the ``instruments-any`` extra).
        return get_dependency_conflicts(_instruments, _instruments_any)

    _offline: OfflineInstrumentation | None = None
    _serving: ServingInstrumentation | None = None

    def _instrument(self, **kwargs: Any) -> None:
        try:
            enabled = _core.configure(
                _configuration.overrides_from_arguments(kwargs),
                _configuration.python_sdk_resource(kwargs.get("tracer_provider")),
                _configuration.explicit_resource(kwargs),
            )
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


def force_flush(timeout: float = 5.0) -> bool:
    """Exports everything recorded so far; waits at most ``timeout`` seconds (without the GIL)."""
    return _core.force_flush(timeout)


def shutdown(timeout: float = 5.0) -> bool:
    """Flushes and stops the pipeline. It also runs at interpreter exit."""
    return _core.shutdown(timeout)


def get_stats() -> dict[str, int]:
    """Counters of the pipeline: requests recorded and dropped, spans exported, dropped and failed,
    metric exports sent and failed, malformed records skipped."""
    return _core.stats()


def get_latency_percentiles() -> list[dict[str, Any]]:
    """Count, p50, p90, p99, p99.9 and max (seconds) of every duration, per metric and model."""
    return list(_core.latency_percentiles())


def get_latency_summary() -> str:
    """The percentiles as a text table in milliseconds."""
    return _core.latency_summary()
