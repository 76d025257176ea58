"""vLLM general plugin (entry point group ``vllm.general_plugins``): zero-code instrumentation of
``vllm serve`` and offline processes, opt-in through ``OTEL_INSTRUMENTATION_VLLM_PLUGIN_ENABLED``.

vLLM calls every general plugin in every process it starts (API servers, EngineCore, workers), and
may call it more than once per process; this one instruments a frontend process once and does
nothing anywhere else.
"""

from __future__ import annotations

import logging
import multiprocessing
import os

from opentelemetry.instrumentation.vllm import _vllm

PLUGIN_ENABLED_VARIABLE = "OTEL_INSTRUMENTATION_VLLM_PLUGIN_ENABLED"

_logger = logging.getLogger("opentelemetry.instrumentation.vllm")


def plugin_enabled() -> bool:
    return os.environ.get(PLUGIN_ENABLED_VARIABLE, "").strip().lower() in ("true", "1", "yes", "on")


def register() -> None:
    """Called by vLLM's ``load_general_plugins()``; never raises."""
    try:
        if not plugin_enabled() or _vllm.is_engine_process(multiprocessing.current_process().name):
            return
        from opentelemetry.instrumentation.vllm import VllmInstrumentor

        instrumentor = VllmInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:  # e.g. opentelemetry-instrument got here first
            instrumentor.instrument()
    except Exception:  # noqa: BLE001 - a plugin must never stop vLLM from starting
        _logger.warning("the vLLM plugin could not instrument this process", exc_info=True)
